"""Import TotalSegmentator output into the spectrack region vocabulary.

TotalSegmentator writes a folder of binary masks ``<structure>.nii.gz`` (or,
with ``--ml``, one multilabel NIfTI whose class names are a label-table XML in
the NIfTI header extension), or a DICOM-SEG / RTSTRUCT named by class.
:func:`map_totalsegmentator_labels` maps the class names of any of these.
Structures are mapped onto :mod:`spectrack.regions.vocabulary`:

==============================================  ====================
TotalSegmentator                                spectrack
==============================================  ====================
brain, liver, stomach, skull                    same name
kidney_left, kidney_right                       kidneys
urinary_bladder                                 bladder
thyroid_gland                                   thyroid
parotid_gland_*, submandibular_gland_*          salivary_glands
vertebrae_C1..C7, T1..T12, L1..L5, S1, sacrum   vertebrae
spinal_cord                                     canal_cervical / _thoracic / _lumbar / _sacral
==============================================  ====================

The spinal cord is split by level: each cord voxel takes the level (C, T, L
or sacral) of the nearest vertebra mask voxel. Without any vertebra masks
the levels cannot be told and the cord is kept as ``spinal_cord``. Note that
TotalSegmentator's cord is the cord itself, not the whole CSF-filled canal.
Structures with no spectrack counterpart keep their own names (indices from
17 upwards, in alphabetical order).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ...errors import InputError, LabelError
from ...geometry import Image
from ...io_utils import nifti_stem
from ..labelmap import LabelMap
from ..vocabulary import INDEX
from .names import names_sidecar, read_names
from .nifti import read_label_image

__all__ = ["read_totalsegmentator", "map_structure_name", "TOTALSEG_TO_SPECTRACK", "normalise_class_name",
           "is_totalsegmentator_vocabulary", "map_totalsegmentator_labels"]

#: Direct TotalSegmentator -> spectrack name mapping (the vertebrae and cord follow rules).
TOTALSEG_TO_SPECTRACK = {
    "brain": "brain",
    "liver": "liver",
    "stomach": "stomach",
    "skull": "skull",
    "kidney_left": "kidneys",
    "kidney_right": "kidneys",
    "urinary_bladder": "bladder",
    "thyroid_gland": "thyroid",
    "parotid_gland_left": "salivary_glands",
    "parotid_gland_right": "salivary_glands",
    "submandibular_gland_left": "salivary_glands",
    "submandibular_gland_right": "salivary_glands",
    "sacrum": "vertebrae",
}

_VERTEBRA_RE = re.compile(r"^vertebrae_([CTLS])(\d+)$")
_LEVEL_CANAL = {"C": "canal_cervical", "T": "canal_thoracic", "L": "canal_lumbar", "S": "canal_sacral"}


def _vertebra_level(name: str) -> str | None:
    """``'C'``, ``'T'``, ``'L'`` or ``'S'`` for a vertebra (or sacrum) mask name."""
    if name == "sacrum":
        return "S"
    m = _VERTEBRA_RE.match(name)
    return m.group(1) if m else None


def map_structure_name(name: str) -> str:
    """spectrack name for a TotalSegmentator structure (its own name if unmapped).

    Examples
    --------
    >>> map_structure_name("kidney_left"), map_structure_name("vertebrae_T7"), map_structure_name("aorta")
    ('kidneys', 'vertebrae', 'aorta')
    """
    if name in TOTALSEG_TO_SPECTRACK:
        return TOTALSEG_TO_SPECTRACK[name]
    if _vertebra_level(name):
        return "vertebrae"
    return name


def normalise_class_name(name: str) -> str:
    """A TotalSegmentator class name as its folder output spells it.

    Its ITK-SNAP label file title-cases names (``"Kidney Left"``), some
    viewers use spaces or hyphens: all become ``kidney_left``.

    Examples
    --------
    >>> normalise_class_name("Kidney Left"), normalise_class_name("vertebrae_C1"), normalise_class_name("Urinary-Bladder")
    ('kidney_left', 'vertebrae_C1', 'urinary_bladder')
    """
    s = re.sub(r"[\s\-]+", "_", str(name).strip())
    m = re.match(r"^vertebrae_([cCtTlLsS])(\d+)$", s)
    if m:
        return f"vertebrae_{m.group(1).upper()}{m.group(2)}"
    return s.lower()


def is_totalsegmentator_vocabulary(names) -> bool:
    """True when some of ``names`` are TotalSegmentator classes that spectrack renames.

    Names spectrack uses itself (``brain``, ``liver``) do not count: a
    spectrack label map is left as it is.

    Examples
    --------
    >>> is_totalsegmentator_vocabulary(["kidney_left", "liver"]), is_totalsegmentator_vocabulary(["brain", "liver"])
    (True, False)
    """
    for n in names:
        c = normalise_class_name(n)
        if c == "spinal_cord" or _vertebra_level(c) or (c in TOTALSEG_TO_SPECTRACK and TOTALSEG_TO_SPECTRACK[c] != c):
            return True
    return False


def map_totalsegmentator_labels(labels: LabelMap) -> LabelMap:
    """Map a label map holding TotalSegmentator class names onto spectrack's vocabulary.

    Whatever format TotalSegmentator's output came in (its DICOM-SEG,
    RTSTRUCT, ``--ml`` NIfTI with the names in the header, an ITK-SNAP label
    file), the classes are combined as for its folder output (see the module
    docstring). A label map without TotalSegmentator names is returned as is.

    Returns
    -------
    LabelMap
        With ``meta["name_mapping"]`` naming the rule and
        ``meta["source_names"]`` the file's own names.
    """
    if not is_totalsegmentator_vocabulary(labels.names.values()):
        return labels
    grid = labels.image.with_array(np.zeros(labels.image.array.shape, dtype=np.uint8), units="label")
    structures: dict[str, _Crop | None] = {}
    for idx in labels.present():
        name = normalise_class_name(labels.names[idx])
        crop = _Crop.from_full(labels.mask(idx))
        if name in structures and structures[name] is not None and crop is not None:
            full = structures[name].full(grid.array.shape) | crop.full(grid.array.shape)
            crop = _Crop.from_full(full)
        structures[name] = crop
    out = _to_label_map(structures, grid, source=labels.source)
    out.meta = dict(labels.meta)
    out.meta["name_mapping"] = "TotalSegmentator class names -> spectrack vocabulary (spectrack.regions.formats.totalseg)"
    out.meta["source_names"] = {str(k): v for k, v in sorted(labels.names.items())}
    out.warnings = list(labels.warnings)
    return out


def _load_nifti(path: Path) -> Image:
    return read_label_image(path, what="mask")


class _Crop:
    """A binary mask kept as its bounding box and the cropped array (saves memory:
    a TotalSegmentator folder holds about a hundred full-size masks)."""

    __slots__ = ("box", "mask", "count")

    def __init__(self, box, mask):
        self.box, self.mask = box, mask
        self.count = int(mask.sum())

    @classmethod
    def from_full(cls, full: np.ndarray) -> "_Crop | None":
        from scipy import ndimage

        objs = ndimage.find_objects(full.astype(np.uint8, copy=False))
        if not objs or objs[0] is None:
            return None
        return cls(objs[0], np.ascontiguousarray(full[objs[0]]))

    def paint(self, arr: np.ndarray, value) -> None:
        arr[self.box][self.mask] = value

    def full(self, shape) -> np.ndarray:
        out = np.zeros(shape, dtype=bool)
        out[self.box] = self.mask
        return out


def _split_cord(cord: _Crop, vertebrae: dict[str, list[_Crop]], shape, spacing_mm) -> dict[str, _Crop] | None:
    """Cord voxels per canal level by the nearest vertebra voxel, or None."""
    from scipy import ndimage

    levels = sorted(vertebrae)
    if not levels:
        return None
    level_map = np.zeros(shape, dtype=np.int8)
    for n, lv in enumerate(levels, start=1):
        for part in vertebrae[lv]:
            part.paint(level_map, n)
    # work inside the bounding box of cord and vertebrae
    lo = [min([cord.box[d].start] + [p.box[d].start for ps in vertebrae.values() for p in ps]) for d in range(3)]
    hi = [max([cord.box[d].stop] + [p.box[d].stop for ps in vertebrae.values() for p in ps]) for d in range(3)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    sub = level_map[box]
    _, nearest = ndimage.distance_transform_edt(sub == 0, sampling=np.asarray(spacing_mm, float)[::-1],
                                                return_indices=True)
    nearest_level = sub[tuple(nearest)]
    del nearest
    sub_cord = cord.full(shape)[box]
    out = {}
    for n, lv in enumerate(levels, start=1):
        m = sub_cord & (nearest_level == n)
        if m.any():
            full = np.zeros(shape, dtype=bool)
            full[box] = m
            out[_LEVEL_CANAL[lv]] = _Crop.from_full(full)
    return out


def _to_label_map(structures: dict[str, _Crop], grid: Image, source: str) -> LabelMap:
    """Map structure masks to the vocabulary and combine (smaller regions win)."""
    shape = grid.array.shape
    regions: dict[str, list[_Crop]] = {}
    vertebrae: dict[str, list[_Crop]] = {}
    cord = None
    for name, crop in structures.items():
        if crop is None or crop.count == 0:
            continue  # TotalSegmentator writes empty masks for absent structures
        lv = _vertebra_level(name)
        if lv:
            vertebrae.setdefault(lv, []).append(crop)
        if name == "spinal_cord":
            cord = crop
            continue
        regions.setdefault(map_structure_name(name), []).append(crop)
    if cord is not None:
        parts = _split_cord(cord, vertebrae, shape, grid.spacing_mm)
        if parts is None:
            regions.setdefault("spinal_cord", []).append(cord)
        else:
            for name, crop in parts.items():
                regions.setdefault(name, []).append(crop)
    extra = sorted(n for n in regions if n not in INDEX)
    index = {n: INDEX[n] for n in regions if n in INDEX}
    index.update({n: max(INDEX.values()) + 1 + k for k, n in enumerate(extra)})
    arr = np.zeros(shape, dtype=np.int32)
    for name in sorted(regions, key=lambda n: -sum(c.count for c in regions[n])):
        for crop in regions[name]:
            crop.paint(arr, index[name])
    names = {v: k for k, v in index.items()}
    return LabelMap(grid.with_array(arr, units="label"), names, source=source)


def read_totalsegmentator(folder, reference: Image | None = None, *, names=None) -> LabelMap:
    """Read TotalSegmentator output as a spectrack label map.

    Parameters
    ----------
    folder : path-like
        A TotalSegmentator output folder of ``<structure>.nii.gz`` masks, or
        one multilabel NIfTI (``--ml``; class names from its header extension).
    reference : Image, optional
        Return the labels on this grid (nearest-neighbour resampling when the
        grids differ).
    names : dict, path-like or None
        Multilabel file only: class index -> TotalSegmentator name, as a
        mapping or a TSV/JSON/ITK-SNAP file; by default a names file beside
        it, else the label table TotalSegmentator writes into the NIfTI
        header extension.

    Returns
    -------
    LabelMap
        Regions in the spectrack vocabulary (see the module docstring).

    Raises
    ------
    InputError
        If the path does not exist or holds no masks.
    LabelError
        For a multilabel file without a names table.
    """
    path = Path(folder)
    if not path.exists():
        raise InputError(f"TotalSegmentator output {path} does not exist: check the path")
    structures: dict[str, _Crop | None] = {}
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.name.endswith((".nii.gz", ".nii")))
        if not files:
            raise InputError(f"{path} holds no .nii.gz masks: give a TotalSegmentator output folder")
        grid = None
        for f in files:
            img = _load_nifti(f)
            if grid is None:
                grid = img.with_array(np.zeros(img.array.shape, dtype=np.uint8), units="label")
            elif not img.same_grid(grid):
                from ...align.resample import resample_labels

                img = resample_labels(img.with_array((img.array > 0).astype(np.int32)), grid)
            structures[nifti_stem(f)] = _Crop.from_full(np.asarray(img.array) > 0)
    else:
        img = _load_nifti(path)
        if names is None:
            names = names_sidecar(path)
        if names is None:
            import nibabel as nib

            from .names import names_from_nifti_extensions

            names = names_from_nifti_extensions(nib.load(str(path)).header)
        if names is None:
            raise LabelError(f"multilabel TotalSegmentator file {path} has no class names (none in its header "
                             "extension, no names file beside it): give names= (a TSV 'index<TAB>name' or JSON) "
                             "or put <stem>.tsv beside it")
        if isinstance(names, (str, Path)):
            names = read_names(Path(names))
        arr = np.asarray(img.array)
        if not np.issubdtype(arr.dtype, np.integer):
            arr = np.round(arr).astype(np.int32)
        unnamed = sorted(set(int(v) for v in np.unique(arr)) - set(int(k) for k in names) - {0})
        if unnamed:
            raise LabelError(f"multilabel file {path}: class indices {unnamed[:5]} have no name in the names "
                             "table: give the table written for this TotalSegmentator task")
        from scipy import ndimage

        boxes = ndimage.find_objects(np.clip(arr, 0, None))
        for k, n in names.items():
            k = int(k)
            if 0 < k <= len(boxes) and boxes[k - 1] is not None:
                box = boxes[k - 1]
                structures[normalise_class_name(n)] = _Crop(box, np.ascontiguousarray(arr[box] == k))
        grid = img.with_array(np.zeros(arr.shape, dtype=np.uint8), units="label")
    out = _to_label_map(structures, grid, source=f"totalsegmentator:{path}")
    if reference is not None:
        out = out.resampled_to(reference)
    return out
