"""The label map: an integer image with region names, its checks, and the region metadata of DICOM sources.

A :class:`LabelMap` is an integer :class:`~spectrack.geometry.Image` plus a
``{index: name}`` mapping. Reading and writing files is in
:mod:`spectrack.regions.formats.nifti` (images) and
:mod:`spectrack.regions.formats.names` (names files).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import LabelError
from ..geometry import Image

__all__ = ["LabelMap", "note_regions_without_voxels", "dicom_region_meta", "RESERVED_NAMES", "MAX_LABEL"]

@dataclass(eq=False)
class LabelMap:
    """An integer label image with region names.

    Parameters
    ----------
    image : Image
        Integer labels, 0 = background: an exclusive partition (each voxel
        belongs to at most one region).
    names : dict of int to str
        Region name of each index present. Indices without a name are called
        ``label_<index>``.
    source : str
        Where the labels came from (file path, "automatic", "drawn").
    overlaps : dict of int to numpy.ndarray, optional
        The region's own full mask (bool, same shape as ``image``) for the
        regions whose source shape overlaps another region's (a BODY contour
        around organs, nested targets). ``image`` then gives each shared voxel
        to the smallest region (see :meth:`from_masks`); each region in
        ``overlaps`` is quantified over its own mask, while groups and the
        remainder use the exclusive partition so every voxel counts once.
    meta : dict, optional
        What the file said about where it belongs: ``frame_of_reference_uid``,
        ``patient_id``, ``study_uid``, ``referenced_series_uid``, and the rules
        a reader applied (e.g. ``fraction_rule``), all JSON-ready.
    warnings : list of str, optional
        What the reader assumed or dropped (missing names, regions without
        voxels on the grid, overlaps): shown in ``study.json``, the report and
        the CLI.
    """

    image: Image
    names: dict[int, str] = field(default_factory=dict)
    source: str = ""
    overlaps: dict[int, np.ndarray] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self):
        arr = _integer_labels(self.image.array, self.source)
        if arr is not self.image.array:
            self.image = self.image.with_array(arr, units="label")
        present = [int(v) for v in _values_present(self.image.array) if v != 0]
        self.names = {int(k): str(v) for k, v in self.names.items()}
        _check_names(self.names, self.source)
        given = dict(self.names)
        for v in present:
            self.names.setdefault(v, f"label_{v}")
        if len(self.names) != len(given):  # a default label_<v> must not be the name of another region
            by_name = {name: k for k, name in given.items()}
            for v in present:
                if v not in given and f"label_{v}" in by_name:
                    where = f"label map {self.source}" if self.source else "label map"
                    raise LabelError(f"{where}: label {by_name[f'label_{v}']} is called 'label_{v}', the name of "
                                     f"unnamed label {v}: rename it or name label {v}")
        own = {}
        for k, m in (self.overlaps or {}).items():
            m = np.asarray(m, dtype=bool)
            if m.shape != self.image.array.shape:
                raise LabelError(f"label map {self.source or ''}: the own mask of region {k} has shape {m.shape}, "
                                 f"not the label image's {self.image.array.shape}")
            if int(k) not in self.names:
                raise LabelError(f"label map {self.source or ''}: own mask for region {k}, which has no name")
            own[int(k)] = m
        self.overlaps = own

    @classmethod
    def from_masks(cls, grid: Image, masks, names: dict[int, str], *, source: str = "", meta: dict | None = None,
                   warnings: list[str] | None = None) -> "LabelMap":
        """Labels from one boolean mask per region, which may overlap.

        Parameters
        ----------
        grid : Image
            The grid of the masks (its values are not used).
        masks : dict of int to numpy.ndarray
            ``{index: bool mask}`` on ``grid``.
        names : dict of int to str
            Region names.
        source, meta, warnings
            As in :class:`LabelMap`.

        Returns
        -------
        LabelMap
            The exclusive partition gives a voxel shared by several regions to
            the smallest of them (the nested target inside the body outline);
            every region that lost voxels to a smaller one keeps its own full
            mask in ``overlaps``, and one warning per overlapping pair gives the
            shared volume.

        Examples
        --------
        >>> import numpy as np
        >>> g = Image(np.zeros((1, 1, 4)), (0, 0, 0), (1, 1, 1), np.eye(3))
        >>> body = np.array([[[1, 1, 1, 1]]], bool)
        >>> organ = np.array([[[0, 1, 1, 0]]], bool)
        >>> lm = LabelMap.from_masks(g, {1: body, 2: organ}, {1: "body", 2: "liver"})
        >>> lm.image.array.tolist(), sorted(lm.overlaps), int(lm.mask("body").sum())
        ([[[1, 2, 2, 1]]], [1], 4)
        """
        masks = {int(k): np.asarray(m, dtype=bool) for k, m in masks.items()}
        shape = grid.array.shape
        arr = np.zeros(shape, dtype=np.int32)
        sizes = {k: int(np.count_nonzero(m)) for k, m in masks.items()}
        for k in sorted(masks, key=lambda k: (-sizes[k], k)):  # largest first: smaller regions overwrite
            arr[masks[k]] = k
        warn = list(warnings or [])
        overlaps: dict[int, np.ndarray] = {}
        keys = [k for k in sorted(masks) if sizes[k]]
        vox_ml = float(np.prod(grid.spacing_mm)) / 1000.0
        total = np.zeros(shape, dtype=np.int16)
        for k in keys:
            total += masks[k]
        if keys and int(total.max()) > 1:
            shared = total > 1
            for a_pos, a in enumerate(keys):
                ma = masks[a] & shared
                if not ma.any():
                    continue
                for b in keys[a_pos + 1:]:
                    n = int(np.count_nonzero(ma & masks[b]))
                    if n:
                        warn.append(f"regions {names.get(a, a)} and {names.get(b, b)} overlap in {n} voxels "
                                    f"({n * vox_ml:.3g} mL): each is quantified over its own mask; groups and "
                                    f"the remainder count a shared voxel once, for the smaller region")
            counts = np.bincount(arr.ravel(), minlength=max(keys) + 1)
            overlaps = {k: masks[k] for k in keys if counts[k] < sizes[k]}  # regions that lost shared voxels
        return cls(grid.with_array(arr, units="label"), dict(names), source, overlaps, dict(meta or {}), warn)

    @property
    def indices(self) -> list[int]:
        """Sorted label indices that have a name (present or not)."""
        return sorted(self.names)

    def present(self) -> list[int]:
        """Indices that occur in the image (or in an own mask)."""
        found = {int(v) for v in _values_present(self.image.array) if v != 0}
        found |= {k for k, m in self.overlaps.items() if m.any()}
        return sorted(found)

    def mask(self, name_or_index) -> np.ndarray:
        """Boolean mask of one region (its own full mask where it overlaps others)."""
        idx = name_or_index
        if isinstance(name_or_index, str):
            rev = {v: k for k, v in self.names.items()}
            if name_or_index not in rev:
                raise LabelError(f"no region named {name_or_index!r}; have {sorted(rev)}")
            idx = rev[name_or_index]
        if int(idx) in self.overlaps:
            return self.overlaps[int(idx)]
        return self.image.array == idx

    def _derived(self, image: Image, overlaps: dict, source: str | None = None) -> "LabelMap":
        return LabelMap(image, dict(self.names), self.source if source is None else source, overlaps,
                        dict(self.meta), list(self.warnings))

    def resampled_to(self, reference: Image, transform=None, *, method: str = "nearest") -> "LabelMap":
        """These labels on ``reference``'s grid.

        Parameters
        ----------
        reference : Image
            The target grid.
        transform : SimpleITK.Transform, optional
            Maps ``reference`` points into the labels' space (a registration's
            inverse); ``method`` then chooses the interpolator (see
            :func:`spectrack.align.resample.resample_labels`). Without one the
            labels are taken by nearest neighbour (themselves on the same grid).
        method : str
            Interpolator used through ``transform``. Own masks of overlapping
            regions are resampled the same way, each as a one-region label image.
        """
        from ..align.resample import resample_labels

        if transform is None:
            if self.image.same_grid(reference):
                return self
            method = "nearest"
        image = resample_labels(self.image, reference, transform, method=method)
        overlaps = {k: resample_labels(self.image.with_array(m.astype(np.uint8), units="label"), reference,
                                       transform, method=method).array > 0
                    for k, m in self.overlaps.items()}
        return self._derived(image, overlaps)


#: Largest label value kept (the labels are held as int64).
MAX_LABEL = np.iinfo(np.int64).max


def _integer_labels(arr, source: str = "") -> np.ndarray:
    """``arr`` as non-negative integer labels (int64 where the stored type is not a signed integer type).

    Float labels within 1e-3 of integers are rounded (a map saved as float); complex labels are taken by their
    real part when the imaginary part is 0. NaN, infinite, non-integer, negative and complex labels, and labels
    above 2**63 - 1, raise :class:`LabelError`: no region can be read from them.
    """
    where = f"label map {source}" if source else "label map"
    arr = np.asarray(arr)
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if np.iscomplexobj(arr):
        if np.any(arr.imag != 0):
            raise LabelError(f"{where} holds complex values: give an integer label image (one value per region)")
        arr = np.ascontiguousarray(arr.real)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.size and np.issubdtype(arr.dtype, np.signedinteger) and int(arr.min()) < 0:
            raise LabelError(f"{where} holds negative values (down to {int(arr.min())}): labels must be >= 0")
        if arr.dtype.kind == "u" and arr.dtype.itemsize >= 8:
            if arr.size and int(arr.max()) > MAX_LABEL:
                raise LabelError(f"{where} holds label value {int(arr.max())}, above 2**63 - 1: renumber the "
                                 "regions (one small integer per region)")
            return arr.astype(np.int64)
        return arr
    if not np.issubdtype(arr.dtype, np.floating):
        raise LabelError(f"{where} holds {arr.dtype} values: give an integer label image (one value per region)")
    if not np.all(np.isfinite(arr)):
        raise LabelError(f"{where} holds NaN or infinite values: give an integer label image (one value per region)")
    if arr.size and float(arr.min()) < -1e-3:
        raise LabelError(f"{where} holds negative values (down to {float(arr.min()):g}): labels must be >= 0")
    if arr.size and float(arr.max()) >= 2.0**63:
        raise LabelError(f"{where} holds label value {float(arr.max()):g}, above 2**63 - 1: renumber the regions "
                         "(one small integer per region)")
    rounded = np.round(arr)
    if np.any(np.abs(arr - rounded) > 1e-3):
        raise LabelError(f"{where} holds non-integer values: give an integer label image (one value per region)")
    return np.abs(rounded).astype(np.int64)  # abs: -0.0004 rounds to -0.0


def _values_present(arr) -> np.ndarray:
    """Sorted distinct values of a non-negative integer array: counted in chunks (``np.unique`` sorts or hashes
    the whole array, several times slower on a CT-sized label map)."""
    flat = np.ravel(arr, order="K")  # memory order: a view of a NIfTI's Fortran-ordered array, not a copy
    if flat.size == 0:
        return np.zeros(0, np.int64)
    top = int(flat.max())
    if not np.issubdtype(flat.dtype, np.integer) or int(flat.min()) < 0 or top > (1 << 20):
        return np.unique(flat)
    counts = np.zeros(top + 1, np.int64)
    step = 1 << 22
    for start in range(0, flat.size, step):
        counts += np.bincount(flat[start:start + step], minlength=top + 1)
    return np.flatnonzero(counts)


#: Row names spectrack itself writes into the region table: a region may not take them.
RESERVED_NAMES = frozenset({"field_of_view", "outside_regions"})


def _check_names(names: dict[int, str], source: str) -> None:
    """Refuse empty, duplicate and reserved region names (they would make the table ambiguous)."""
    from .vocabulary import GROUPS

    where = f"label map {source}" if source else "label map"
    seen: dict[str, int] = {}
    for k, name in sorted(names.items()):
        if not name.strip():
            raise LabelError(f"{where}: label {k} has an empty name: name every region")
        if any(unicodedata.category(c) == "Cc" for c in name):
            raise LabelError(f"{where}: the name of label {k}, {name!r}, holds a control character (a line break, "
                             "tab or NUL): rename it")
        if name in seen:
            raise LabelError(f"{where}: labels {seen[name]} and {k} are both called {name!r}: give each region its "
                             "own name (or merge them into one label value)")
        if name in RESERVED_NAMES or name in GROUPS:
            raise LabelError(f"{where}: label {k} is called {name!r}, a name spectrack reserves for "
                             f"{'a group of regions' if name in GROUPS else 'a row of its own'}: rename it")
        seen[name] = k


def note_regions_without_voxels(labels: LabelMap, data: dict[int, str]) -> LabelMap:
    """Warn about every region the file holds data for that covers no voxel of the label grid.

    Readers call this after rasterising or resampling, so a region that
    vanished (a contour thinner than the voxels, a segment outside the
    grid) is never dropped silently: one warning per region goes into
    ``labels.warnings`` (and so into ``study.json``, the report and the CLI),
    and its name into ``labels.meta["regions_without_voxels"]``.

    Parameters
    ----------
    labels : LabelMap
        The labels as read (changed in place).
    data : dict of int to str
        ``{index: what the file holds for it}``, e.g. ``{4: "3 contours"}``.

    Returns
    -------
    LabelMap
        ``labels``.

    Examples
    --------
    >>> g = Image(np.zeros((1, 2, 2)), (0, 0, 0), (4, 4, 4), np.eye(3))
    >>> lm = LabelMap(g.with_array(np.zeros((1, 2, 2), int)), {1: "canal_sacral"})
    >>> note_regions_without_voxels(lm, {1: "2 contours"}).meta["regions_without_voxels"]
    ['canal_sacral']
    """
    present = set(labels.present())
    spacing = "x".join(f"{v:.3g}" for v in labels.image.spacing_mm)
    missing = labels.meta.setdefault("regions_without_voxels", [])
    for idx in sorted(data):
        name = labels.names.get(int(idx), f"label_{idx}")
        if int(idx) in present or name in missing:
            continue
        labels.warnings.append(f"region {name}: {Path(labels.source).name or 'the file'} has {data[idx]} for it but "
                               f"no voxel of the {spacing} mm grid lies inside: it is not quantified")
        missing.append(name)
    if not missing:
        del labels.meta["regions_without_voxels"]
    return labels


def dicom_region_meta(ds) -> dict:
    """Where a DICOM region file (RTSTRUCT, SEG) says it belongs, for :attr:`LabelMap.meta`.

    Returns
    -------
    dict
        ``frame_of_reference_uid`` (the data set's FrameOfReferenceUID, else
        the first of its ReferencedFrameOfReferenceSequence), ``patient_id``,
        ``study_uid``, ``referenced_series_uid`` (the first series of
        ReferencedSeriesSequence or of the RTSTRUCT's RT Referenced Series
        Sequence) and ``sop_class_uid``, each only when the file has it.
    """
    meta: dict = {}
    frame = ds.get("FrameOfReferenceUID")
    if not frame:
        for item in ds.get("ReferencedFrameOfReferenceSequence", []):
            if item.get("FrameOfReferenceUID"):
                frame = item.FrameOfReferenceUID
                break
    series = None
    for item in ds.get("ReferencedSeriesSequence", []):
        series = series or item.get("SeriesInstanceUID")
    for fr in ds.get("ReferencedFrameOfReferenceSequence", []):
        for st in fr.get("RTReferencedStudySequence", []):
            for se in st.get("RTReferencedSeriesSequence", []):
                series = series or se.get("SeriesInstanceUID")
    for key, value in (("frame_of_reference_uid", frame), ("patient_id", ds.get("PatientID")),
                       ("study_uid", ds.get("StudyInstanceUID")), ("referenced_series_uid", series),
                       ("sop_class_uid", ds.get("SOPClassUID"))):
        if value is not None and str(value).strip():
            meta[key] = str(value).strip()
    return meta


#: Label image file endings spectrack reads (NIfTI by nibabel, the others by SimpleITK; ``.seg.nrrd`` by slicerio).
