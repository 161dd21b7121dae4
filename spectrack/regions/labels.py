"""Label maps with region names: reading, writing, and resampling onto a grid.

A :class:`LabelMap` is an integer :class:`~spectrack.geometry.Image` plus a
``{index: name}`` mapping. Names come from a sidecar beside the NIfTI file:
``<stem>.tsv`` (``index<TAB>name`` lines, an optional header) or
``<stem>.json`` (``{"1": "brain", ...}``), or are given explicitly.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError, LabelError
from ..geometry import Image, from_nifti_affine, to_nifti_affine

__all__ = ["LabelMap", "read_label_map", "read_label_image", "names_sidecar", "write_label_map", "read_names", "nifti_stem"]


@dataclass(eq=False)
class LabelMap:
    """An integer label image with region names.

    Parameters
    ----------
    image : Image
        Integer labels, 0 = background.
    names : dict of int to str
        Region name of each index present. Indices without a name are called
        ``label_<index>``.
    source : str
        Where the labels came from (file path, "automatic", "drawn").
    """

    image: Image
    names: dict[int, str] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self):
        arr = self.image.array
        if not np.issubdtype(arr.dtype, np.integer):
            if np.any(np.abs(arr - np.round(arr)) > 1e-3):
                raise LabelError(f"label map {self.source or ''} holds non-integer values: "
                                 "give an integer label image (one value per region)")
            self.image = self.image.with_array(np.round(arr).astype(np.int32), units="label")
        if np.any(self.image.array < 0):
            raise LabelError(f"label map {self.source or ''} holds negative values: labels must be >= 0")
        present = [int(v) for v in np.unique(self.image.array) if v != 0]
        self.names = {int(k): str(v) for k, v in self.names.items()}
        for v in present:
            self.names.setdefault(v, f"label_{v}")

    @property
    def indices(self) -> list[int]:
        """Sorted label indices that have a name (present or not)."""
        return sorted(self.names)

    def present(self) -> list[int]:
        """Indices that occur in the image."""
        return [int(v) for v in np.unique(self.image.array) if v != 0]

    def mask(self, name_or_index) -> np.ndarray:
        """Boolean mask of one region."""
        idx = name_or_index
        if isinstance(name_or_index, str):
            rev = {v: k for k, v in self.names.items()}
            if name_or_index not in rev:
                raise LabelError(f"no region named {name_or_index!r}; have {sorted(rev)}")
            idx = rev[name_or_index]
        return self.image.array == idx

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
            Interpolator used through ``transform``.
        """
        from ..align.resample import resample_labels

        if transform is None:
            if self.image.same_grid(reference):
                return self
            method = "nearest"
        return LabelMap(resample_labels(self.image, reference, transform, method=method), dict(self.names),
                        self.source)


def nifti_stem(path: Path) -> str:
    """File name without ``.nii`` / ``.nii.gz``."""
    name = Path(path).name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return Path(path).stem


def names_sidecar(path) -> Path | None:
    """The names file beside a NIfTI label map: ``<stem>.tsv``, else ``<stem>.json``, else ``None``."""
    path = Path(path)
    for ext in (".tsv", ".json"):
        cand = path.with_name(nifti_stem(path) + ext)
        if cand.exists():
            return cand
    return None


def read_names(path: Path) -> dict[int, str]:
    """Read ``{index: name}`` from a TSV (``index<TAB>name``) or JSON file.

    The TSV may have a header line and extra columns; lines starting with
    ``#`` are ignored. The JSON is an object ``{"1": "brain"}`` or a list of
    ``{"index": 1, "name": "brain"}``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise InputError(f"cannot read label names {path}: {e.strerror}") from None
    names: dict[int, str] = {}
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise LabelError(f"label names {path} is not valid JSON (line {e.lineno}): fix the file") from None
        items = data.items() if isinstance(data, dict) else ((d.get("index"), d.get("name")) for d in data)
        for k, v in items:
            try:
                names[int(k)] = str(v)
            except (TypeError, ValueError):
                raise LabelError(f"label names {path}: key {k!r} is not an integer index") from None
        return names
    rows = [r for r in csv.reader(text.splitlines(), delimiter="\t") if r and not r[0].startswith("#")]
    for n, row in enumerate(rows):
        if len(row) < 2:
            raise LabelError(f"label names {path} line {n + 1}: expected 'index<TAB>name'")
        try:
            idx = int(row[0])
        except ValueError:
            if n == 0:
                continue  # header
            raise LabelError(f"label names {path} line {n + 1}: {row[0]!r} is not an integer index") from None
        names[idx] = row[1].strip()
    return names


def read_label_image(path, what: str = "label map") -> Image:
    """Read a 3-D integer NIfTI (labels or a mask) onto the LPS grid.

    The header is checked before any voxel is read: a declared size that
    cannot be in the file or in memory is refused (see
    :func:`spectrack.load.nifti.read_nifti_series`).
    """
    import nibabel as nib

    from ..load.nifti import _check_header

    path = Path(path)
    try:
        img = nib.load(str(path))
    except Exception as e:  # nibabel raises many types for corrupt files
        raise InputError(f"cannot read {what} {path} as NIfTI ({type(e).__name__}: {e})") from None
    _check_header(img, path)
    try:
        arr = np.asanyarray(img.dataobj)
    except Exception as e:  # truncated or corrupt voxel data
        raise InputError(f"cannot read {what} {path} as NIfTI ({type(e).__name__}: {e})") from None
    if arr.ndim == 4 and arr.shape[3] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise LabelError(f"{what} {path} has shape {arr.shape}: a 3-D integer image is needed")
    try:
        return from_nifti_affine(arr, img.affine, units="label")
    except ValueError as e:
        raise InputError(f"{what} {path}: {e}") from None


def read_label_map(path, names=None) -> LabelMap:
    """Read a NIfTI label map and its names.

    Parameters
    ----------
    path : path-like
        ``.nii`` or ``.nii.gz`` file with integer labels.
    names : dict, path-like or None
        Names as a mapping, or a TSV/JSON file; by default the sidecar
        ``<stem>.tsv`` or ``<stem>.json`` beside the image is used if present.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"label map {path} does not exist: check the --labels path")
    image = read_label_image(path)
    if names is None:
        names = names_sidecar(path)
    if isinstance(names, (str, Path)):
        names = read_names(Path(names))
    return LabelMap(image, dict(names or {}), source=str(path))


def write_label_map(labels: LabelMap, path) -> Path:
    """Write labels as NIfTI plus a ``<stem>.tsv`` names sidecar (atomically)."""
    import nibabel as nib

    from ..io_utils import atomic_path

    path = Path(path)
    arr, aff = to_nifti_affine(labels.image)
    img = nib.Nifti1Image(arr.astype(np.int16 if arr.max(initial=0) < 32767 else np.int32), aff)
    img.header.set_xyzt_units("mm")
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    tsv = path.with_name(nifti_stem(path) + ".tsv")
    with atomic_path(tsv) as tmp:
        Path(tmp).write_text("index\tname\n" + "".join(f"{k}\t{v}\n" for k, v in sorted(labels.names.items())))
    return path
