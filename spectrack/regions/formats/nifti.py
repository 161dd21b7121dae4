"""Label maps with region names: reading and writing label images (NIfTI here; NRRD, MetaImage and 3D Slicer
segmentations through :mod:`spectrack.regions.formats.itk`).

A :class:`~spectrack.regions.labelmap.LabelMap` (defined in
:mod:`spectrack.regions.labelmap`) is an integer
:class:`~spectrack.geometry.Image` plus a ``{index: name}`` mapping. Names
(:mod:`spectrack.regions.formats.names`) come from a sidecar beside the file:
``<stem>.tsv`` (``index<TAB>name`` lines, an optional header) or
``<stem>.json`` (``{"1": "brain", ...}``), or are given explicitly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import InputError, LabelError
from ...geometry import Image, from_nifti_affine, to_nifti_affine
from ...io_utils import nifti_stem
from ..labelmap import LabelMap
from .names import _integer_key, names_sidecar, read_names

__all__ = ["read_label_map", "read_label_image", "write_label_map"]


def read_label_image(path, what: str = "label map") -> Image:
    """Read a 3-D integer NIfTI (labels or a mask) onto the LPS grid.

    The header is checked before any voxel is read: a declared size that
    cannot be in the file or in memory is refused (see
    :func:`spectrack.load.nifti.read_nifti_series`).
    """
    import nibabel as nib

    from ...load.nifti import _check_header, verify_voxel_data

    path = Path(path)
    try:
        img = nib.load(str(path))
    except Exception as e:  # nibabel raises many types for corrupt files
        raise InputError(f"cannot read {what} {path} as NIfTI ({type(e).__name__}: {e})") from None
    _check_header(img, path)
    verify_voxel_data(img, path, what)
    slope, inter = img.dataobj.slope, img.dataobj.inter
    if not (np.isfinite(slope) and np.isfinite(inter)) or (slope, inter) != (1.0, 0.0):
        raise LabelError(f"{what} {path} has intensity scaling (scl_slope {slope:g}, scl_inter {inter:g}): label "
                         "values would be renumbered; write it without scaling (slope 1, intercept 0)")
    try:
        arr = np.asanyarray(img.dataobj)
    except Exception as e:  # truncated or corrupt voxel data
        raise InputError(f"cannot read {what} {path} as NIfTI ({type(e).__name__}: {e})") from None
    if arr.ndim == 4 and arr.shape[3] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise LabelError(f"{what} {path} has shape {arr.shape}: a 3-D integer image is needed")
    hdr = img.header
    if int(hdr.get("sform_code", 0)) <= 0:  # the affine comes from pixdim (qform, or the fallback): nibabel
        pixdim = _raw_pixdim(path, hdr)  # turns a zero spacing into 1 mm without a word
        if not np.all(np.isfinite(pixdim)) or np.any(pixdim == 0):
            raise InputError(f"{what} {path}: the NIfTI header gives voxel spacing (pixdim) "
                             f"{' x '.join(f'{v:g}' for v in pixdim)} mm and no sform: the voxels cannot be placed; "
                             "fix the header")
    affine = np.asarray(img.affine, dtype=float)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InputError(f"{what} {path}: the NIfTI affine (qform/sform) has non-finite values: fix the header")
    m = affine[:3, :3]
    scale = np.linalg.norm(m, axis=0)
    if np.any(scale <= 0) or abs(np.linalg.det(m / np.where(scale > 0, scale, 1))) < 1e-3:
        raise InputError(f"{what} {path}: the NIfTI affine (qform/sform) is singular (an axis of zero length, or "
                         "two axes pointing the same way): fix the header")
    try:
        return from_nifti_affine(arr, affine, units="label")
    except ValueError as e:
        raise InputError(f"{what} {path}: {e}") from None


def _raw_pixdim(path: Path, header) -> np.ndarray:
    """pixdim[1:4] as stored in the file (nibabel's header has already replaced a zero by 1)."""
    from nibabel.openers import ImageOpener

    try:
        with ImageOpener(str(path), "rb") as f:
            raw = f.read(348)
        endian = "<" if int.from_bytes(raw[:4], "little") in (348, 540) else ">"
        return np.frombuffer(raw[76:108], dtype=f"{endian}f4").astype(float)[1:4]
    except Exception:  # unreadable here means nibabel read it: its values
        return np.asarray(header["pixdim"][1:4], dtype=float)


def _checked_names_argument(names):
    """``names`` of :func:`read_label_map`: None, a path, or a mapping of integer label values to names."""
    from collections.abc import Mapping

    if names is None or isinstance(names, (str, Path)) or hasattr(names, "__fspath__"):
        return Path(names) if hasattr(names, "__fspath__") and not isinstance(names, Path) else names
    if not isinstance(names, Mapping):
        raise InputError(f"read_label_map(): names must be a mapping of label value to name ({{1: 'brain'}}) or a "
                         f"path to a names file, not {type(names).__name__}")
    out = {}
    for key, name in names.items():
        if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer, str)):
            raise InputError(f"read_label_map(): names key {key!r} is not a label value: use integers, "
                             "e.g. {1: 'brain'}")
        value = _integer_key(int(key) if isinstance(key, np.integer) else key)
        if value is None:
            raise InputError(f"read_label_map(): names key {key!r} is not a label value: use integers, "
                             "e.g. {1: 'brain'}")
        if not isinstance(name, str):
            raise InputError(f"read_label_map(): the name of label {value} must be text, not {type(name).__name__}")
        out[value] = name
    return out


def read_label_map(path, names=None) -> LabelMap:
    """Read a label image (NIfTI, NRRD, MetaImage, 3D Slicer ``.seg.nrrd``) and its names.

    Parameters
    ----------
    path : path-like
        ``.nii``/``.nii.gz`` (nibabel), ``.nrrd``/``.nhdr``/``.mha``/``.mhd``
        (SimpleITK) with integer labels, or a 3D Slicer segmentation
        ``.seg.nrrd`` (segment names and label values from its header, see
        :func:`spectrack.regions.formats.itk.read_slicer_segmentation`).
    names : dict, path-like or None
        Names as a mapping, or a TSV/JSON/ITK-SNAP file; by default the
        sidecar ``<stem>.tsv``, ``<stem>.json`` or ``<stem>.txt`` beside the
        image, else a label table in the NIfTI header extension (as
        TotalSegmentator ``--ml`` writes).

    Returns
    -------
    LabelMap
        When no names are found the regions are called ``label_<index>``
        and a warning says so (it reaches ``study.json``, the report and the
        command line).
    """
    if not isinstance(path, (str, Path)) and not hasattr(path, "__fspath__"):
        raise InputError(f"read_label_map(): path must be a path to a label map (str or pathlib.Path), not "
                         f"{type(path).__name__}")
    names = _checked_names_argument(names)
    path = Path(path)
    if not path.exists():
        raise InputError(f"label map {path} does not exist: check the --labels path")
    lname = path.name.lower()
    if lname.endswith(".seg.nrrd"):
        from .itk import read_slicer_segmentation

        return read_slicer_segmentation(path, names=names)
    meta: dict = {}
    if lname.endswith((".nii", ".nii.gz")):
        image = read_label_image(path)
    elif lname.endswith((".nrrd", ".nhdr", ".mha", ".mhd")):
        from .itk import read_itk_label_image

        image = read_itk_label_image(path)
    else:
        raise InputError(f"label map {path}: unknown file type; give NIfTI (.nii.gz), NRRD (.nrrd, .seg.nrrd) "
                         "or MetaImage (.mha)")
    if names is None:
        names = names_sidecar(path)
        if names is not None:
            meta["names_file"] = str(names)
    if names is None and lname.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        from .names import names_from_nifti_extensions

        names = names_from_nifti_extensions(nib.load(str(path)).header)
        if names is not None:
            meta["names_from"] = "NIfTI header extension label table"
    if isinstance(names, (str, Path)):
        names = read_names(Path(names))
    out = LabelMap(image, dict(names or {}), source=str(path), meta=meta)
    # the labels present without a name: LabelMap named them label_<value> (counting them again costs a pass
    # over a CT-sized map)
    unnamed = [k for k in out.names if k not in (names or {})]
    if unnamed:
        shown = ", ".join(str(k) for k in unnamed[:8]) + (" ..." if len(unnamed) > 8 else "")
        out.warnings.append(
            f"label map {path.name}: no name for label value(s) {shown} (no {nifti_stem(path)}.tsv/.json/.txt beside "
            f"it{' and no label table in its header' if lname.endswith(('.nii', '.nii.gz')) else ''}): they are "
            "called label_<value>; give the names file to name them")
    return out


def write_label_map(labels: LabelMap, path) -> Path:
    """Write labels as NIfTI plus a ``<stem>.tsv`` names sidecar (atomically)."""
    import nibabel as nib

    from ...io_utils import atomic_path

    path = Path(path)
    arr, aff = to_nifti_affine(labels.image)
    top = int(arr.max(initial=0))
    dtype = np.int16 if top < 32767 else np.int32 if top <= np.iinfo(np.int32).max else np.int64
    img = nib.Nifti1Image(arr.astype(dtype), aff, dtype=dtype)
    img.header.set_xyzt_units("mm")
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    tsv = path.with_name(nifti_stem(path) + ".tsv")
    with atomic_path(tsv) as tmp:
        Path(tmp).write_text("index\tname\n" + "".join(f"{k}\t{v}\n" for k, v in sorted(labels.names.items())))
    return path
