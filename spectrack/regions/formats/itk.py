"""Label images written by ITK tools and 3D Slicer: ``.nrrd``, ``.mha`` and ``.seg.nrrd``.

Plain label images (``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``) are read by
SimpleITK, whose world coordinates are LPS like spectrack's. A 3D Slicer
segmentation (``.seg.nrrd``) carries the name, label value and layer of each
segment in its header; it is read with ``slicerio``. Overlapping segments
sit in different layers (a 4-D voxel array): each segment then keeps its
own mask (:meth:`~spectrack.regions.labelmap.LabelMap.from_masks`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import InputError, LabelError
from ...geometry import Image, from_sitk
from ..labelmap import LabelMap, note_regions_without_voxels
from .names import names_sidecar, read_names

__all__ = ["read_itk_label_image", "read_slicer_segmentation"]


def read_itk_label_image(path) -> Image:
    """Read a 3-D integer label image with SimpleITK (NRRD, MetaImage).

    Raises
    ------
    InputError
        If SimpleITK cannot read the file.
    LabelError
        If the image is not 3-D with one value per voxel.
    """
    import SimpleITK as sitk

    path = Path(path)
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise InputError(f"cannot read label map {path} ({first[:200]})") from None
    _check_data_length(path, img)
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise LabelError(f"label map {path} has {img.GetNumberOfComponentsPerPixel()} values per voxel: a "
                         "one-value integer label image is needed (a 3D Slicer segmentation should end in .seg.nrrd)")
    if img.GetDimension() == 4 and img.GetSize()[3] == 1:
        img = img[:, :, :, 0]
    if img.GetDimension() != 3:
        raise LabelError(f"label map {path} is {img.GetDimension()}-D: a 3-D integer image is needed")
    try:
        return from_sitk(img, units="label")
    except ValueError as e:
        raise InputError(f"label map {path}: {e}") from None


def _header_fields(path: Path) -> tuple[dict[str, str], int] | None:
    """The text header of an ``.mha``/``.mhd`` (``key = value``) or ``.nrrd`` (``key: value``) file and the
    offset where its voxel data starts (None when the file is not one of these or the header is unreadable)."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    name = path.name.lower()
    fields: dict[str, str] = {}
    if name.endswith((".mha", ".mhd")):
        pos = 0
        for line in head.split(b"\n"):
            pos += len(line) + 1
            key, sep, value = line.decode("latin-1").partition("=")
            if not sep:
                continue
            fields[key.strip().lower()] = value.strip()
            if key.strip().lower() == "elementdatafile":
                return fields, pos
        return None
    if name.endswith((".nrrd", ".nhdr")):
        end = head.find(b"\n\n")
        if end < 0:
            return None
        for line in head[:end].decode("latin-1").splitlines()[1:]:
            if line.startswith("#") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.lstrip("=").strip()
        return fields, end + 2
    return None


def _check_data_length(path: Path, img) -> None:
    """Refuse an ITK label file whose voxel data is longer or shorter than its header declares.

    SimpleITK reads the declared number of voxels and ignores what follows, so a header whose size was changed
    (or data appended) reads other voxels as if fine. Checked for data in the file itself (MetaImage ``LOCAL``,
    attached NRRD) and for a MetaImage's separate raw file, uncompressed or (NRRD) gzip-compressed.
    """
    import SimpleITK as sitk
    import zlib

    try:
        got = _header_fields(path)
    except OSError:
        return
    if got is None:
        return
    fields, offset = got
    declared = (img.GetNumberOfPixels() * img.GetNumberOfComponentsPerPixel()
                * sitk.GetArrayViewFromImage(img).dtype.itemsize)
    data_path, compressed = path, False
    if path.name.lower().endswith((".mha", ".mhd")):
        target = fields.get("elementdatafile", "")
        if fields.get("compresseddata", "false").lower() == "true" or fields.get("headersize", "0") not in ("0", ""):
            return
        if target.upper() != "LOCAL":
            if not target or " " in target or "%" in target or target.upper() == "LIST":
                return
            data_path, offset = path.with_name(target), 0
    else:
        if any(k in fields for k in ("data file", "datafile", "line skip", "lineskip", "byte skip", "byteskip")):
            return
        enc = fields.get("encoding", "raw").lower()
        if enc in ("gzip", "gz"):
            compressed = True
        elif enc != "raw":
            return
    try:
        if compressed:
            with open(data_path, "rb") as f:
                f.seek(offset)
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)  # checks the stream's CRC and length at its end
                size = 0
                while chunk := f.read(1 << 22):
                    size += len(d.decompress(chunk))
                    if d.eof:
                        break
                size += len(d.flush())
                if not d.eof:
                    raise zlib.error("the gzip stream ends early")
                if d.unused_data or f.read(1):
                    raise zlib.error("bytes follow the end of the gzip stream")
        else:
            size = data_path.stat().st_size - offset
    except (OSError, zlib.error) as e:
        raise InputError(f"cannot read label map {path}: its voxel data is corrupt ({e})") from None
    if size != declared:
        raise InputError(f"label map {path}: the header declares {declared} bytes of voxel data "
                         f"({'x'.join(map(str, img.GetSize()))} voxels) but the file holds {size}: the header "
                         "does not describe the data; export the file again")


def read_slicer_segmentation(path, names=None) -> LabelMap:
    """Read a 3D Slicer segmentation (``.seg.nrrd``) as a label map.

    Parameters
    ----------
    path : path-like
        The ``.seg.nrrd`` file (Slicer's *Save* of a Segmentation node, or
        ``slicerio.write_segmentation``).
    names : dict, path-like or None
        Override the segment names: ``{label value: name}``; by default the
        names in the header (``SegmentN_Name``).

    Returns
    -------
    LabelMap
        One region per segment. With a single layer the index is the
        segment's label value; with several layers (overlapping segments)
        segments are numbered in header order and keep their own masks.

    Raises
    ------
    InputError
        If the file cannot be read as a Slicer segmentation.
    LabelError
        If it has no segments or two segments share a name.
    """
    import slicerio

    path = Path(path)
    try:
        seg = slicerio.read_segmentation(str(path))
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"cannot read 3D Slicer segmentation {path} ({e})") from None
    except Exception as e:  # pynrrd's own error types for a corrupt header or payload
        raise InputError(f"cannot read 3D Slicer segmentation {path} ({type(e).__name__}: {e})") from None
    segments = list(seg.get("segments") or [])
    voxels = seg.get("voxels")
    if voxels is None or not segments:
        raise LabelError(f"3D Slicer segmentation {path} has no segments")
    voxels = np.asarray(voxels)
    if voxels.ndim not in (3, 4):
        raise LabelError(f"3D Slicer segmentation {path} has a {voxels.ndim}-D voxel array: 3-D or layered 4-D expected")
    ijk_to_lps = np.asarray(seg["ijkToLPS"], dtype=float)
    m = ijk_to_lps[:3, :3]
    spacing = np.linalg.norm(m, axis=0)
    shape_ijk = voxels.shape[-3:]
    grid = Image(np.zeros(shape_ijk[::-1], dtype=np.uint8), ijk_to_lps[:3, 3], spacing, m / spacing[None, :],
                 units="label")
    if isinstance(names, (str, Path)):
        names = read_names(Path(names))
    elif names is None:
        side = names_sidecar(path)
        names = read_names(side) if side is not None else None
    layered = voxels.ndim == 4 and voxels.shape[0] > 1
    masks: dict[int, np.ndarray] = {}
    region_names: dict[int, str] = {}
    described = []
    for n, s in enumerate(segments, start=1):
        value = int(s.get("labelValue", 1))
        idx = n if layered else value
        name = str((names or {}).get(value, s.get("name") or s.get("id") or f"label_{idx}"))
        if name in region_names.values():
            raise LabelError(f"3D Slicer segmentation {path}: two segments are called {name!r}; rename one in Slicer")
        layer = int(s.get("layer", 0))
        vol = voxels[layer] if voxels.ndim == 4 else voxels
        masks[idx] = np.ascontiguousarray((vol == value).transpose(2, 1, 0))  # slicerio gives [i, j, k]
        if idx in region_names:
            raise LabelError(f"3D Slicer segmentation {path}: two segments share label value {value} in one layer")
        region_names[idx] = name
        described.append({"name": name, "index": idx, "label_value": value, "layer": layer})
    meta = {"segments": described}
    out = LabelMap.from_masks(grid, masks, region_names, source=str(path), meta=meta)
    return note_regions_without_voxels(out, {k: "a segment" for k in region_names})
