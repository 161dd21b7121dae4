"""Reading a NIfTI file's voxels with nibabel, and the checks that the voxel data is what the header
declares (shape and size before anything is allocated, the gzip stream, the file length, pixdim, a
finite, non-singular affine, finite voxels)."""

from __future__ import annotations

import contextlib
import zlib
from pathlib import Path

import numpy as np

from ...errors import InputError

__all__ = ["verify_gzip_stream", "verify_voxel_data", "MAX_BYTES"]

#: Refuse volumes whose float32 values would exceed this (a corrupt header, not an image).
MAX_BYTES = 8 * 1024**3


def _gz_length(path: Path, limit: int) -> int:
    """Uncompressed length of a gzip file, counted up to ``limit`` bytes in 16 MiB chunks."""
    import gzip

    n = 0
    with gzip.open(path, "rb") as f:
        while n < limit:
            chunk = f.read(min(1 << 24, limit - n))
            if not chunk:
                break
            n += len(chunk)
    return n


def verify_gzip_stream(path: Path, what: str = "image") -> int | None:
    """Decompress a ``.gz`` file to its end so a corrupt stream is refused, not read.

    nibabel reads only the bytes the header declares, so the gzip trailer
    (CRC-32 and length of the whole stream) is never checked and a damaged
    deflate stream gives wrong voxels without complaint. Reading to the end
    checks both.

    Returns
    -------
    int or None
        The length of the decompressed stream in bytes; None for a file that
        is not ``.gz``.

    Raises
    ------
    InputError
        If the stream is truncated, its CRC or length is wrong, or it is not
        gzip at all.
    """
    import gzip

    path = Path(path)
    if not path.name.lower().endswith(".gz"):
        return None
    size = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 24):
                size += len(chunk)
    except (OSError, EOFError, zlib.error) as e:
        reason = " ".join(str(e).split())[:160] or type(e).__name__
        raise InputError(f"{path}: the gzip stream of this {what} is corrupt ({reason}): the voxels cannot be "
                         "trusted; copy or export the file again") from None
    return size


def verify_voxel_data(img, path: Path, what: str = "image") -> None:
    """Refuse a NIfTI file whose voxel data does not match its header: a corrupt gzip stream, or more bytes than
    the header declares.

    nibabel reads the declared voxels from the start of the data and ignores the rest, so a header whose
    datatype or size was changed (int16 data declared uint8, a dimension made smaller) reads other values as if
    fine; a file shorter than its header is refused when its voxels are read.

    Raises
    ------
    InputError
        The stream is corrupt, or the file holds more than the header's offset plus its voxels.
    """
    path = Path(path)
    size = verify_gzip_stream(path, what)
    try:
        itemsize = np.dtype(img.get_data_dtype()).itemsize
        offset = int(getattr(img.dataobj, "offset", 0) or 0)
        if size is None:
            size = path.stat().st_size
    except (TypeError, ValueError, AttributeError, OSError):
        return
    end = offset + int(np.prod(img.shape)) * itemsize
    if size > end:
        raise InputError(f"{what} {path}: the header declares {end} bytes of header and voxels "
                         f"({'x'.join(map(str, img.shape))} {img.get_data_dtype()}) but the file holds {size}: the "
                         "header does not describe the data (datatype or size changed?); export the file again")


def _check_header(img, path: Path) -> None:
    """Refuse, before any voxel is read, a header whose voxels cannot be in the file or in memory."""
    shape = tuple(int(n) for n in img.shape)
    if len(shape) < 3 or any(n <= 0 for n in shape):
        raise InputError(f"{path}: NIfTI header declares shape {shape}: a 3-D volume is needed")
    if len(shape) > 3 and int(np.prod(shape[3:])) != 1:
        raise InputError(f"{path} has shape {shape}: one 3-D volume per file is needed "
                         "(split 4-D series into one file per time point)")
    n_vox = int(np.prod(shape[:3]))
    if n_vox * 4 > MAX_BYTES:
        raise InputError(f"{path}: NIfTI header declares {'x'.join(map(str, shape[:3]))} voxels "
                         f"({n_vox * 4 / 1024**3:.0f} GiB as float32), above {MAX_BYTES // 1024**3} GiB: "
                         "refusing to allocate it (corrupt header?)")
    try:
        itemsize = np.dtype(img.get_data_dtype()).itemsize
        offset = int(getattr(img.dataobj, "offset", 0) or 0)
    except (TypeError, ValueError, AttributeError):
        return
    end = offset + n_vox * itemsize
    try:
        size = path.stat().st_size
        if path.name.endswith(".gz"):
            if end < 2**32 and size >= 18:
                with open(path, "rb") as f:
                    f.seek(-4, 2)
                    size = int.from_bytes(f.read(4), "little")  # gzip ISIZE: uncompressed length
            else:
                size = _gz_length(path, end)  # ISIZE is the length modulo 2**32: count
    except (OSError, EOFError, zlib.error):
        return  # nibabel reports the corrupt stream
    if size < end:
        raise InputError(f"{path}: truncated: the header declares {end} bytes of header and voxels "
                         f"({'x'.join(map(str, shape[:3]))} {img.get_data_dtype()}) but the file holds {size}")


@contextlib.contextmanager
def _nibabel_log(warn: list[str], name: str):
    """Collect what nibabel logs about a header (e.g. fixed-up pixdim) as load warnings, not stderr lines."""
    import logging

    class _ToList(logging.Handler):
        def emit(self, record):
            warn.append(f"{name}: nibabel: {' '.join(record.getMessage().split())[:200]}")

    from nibabel.imageglobals import LoggingOutputSuppressor

    logger = logging.getLogger("nibabel")
    handler = _ToList(logging.WARNING)
    logger.addHandler(handler)
    try:
        with LoggingOutputSuppressor():  # nibabel's own stderr handler: off while we collect
            yield
    finally:
        logger.removeHandler(handler)


def _check_pixdim(img, path: Path, warn: list[str]) -> None:
    """Without an sform the voxel size is pixdim[1:4]: refuse zero, negative or non-finite values.

    (nibabel would silently take 1 mm.) Without qform and sform the position is
    unknown: warn.
    """
    import nibabel as nib

    hdr = img.header
    try:  # the header as written: nibabel's loaded header has zero pixdim already replaced by 1
        with nib.openers.ImageOpener(str(path)) as f:
            hdr = type(img.header).from_fileobj(f, check=False)
    except Exception:  # noqa: BLE001 - then the loaded header is all there is
        pass
    try:
        sform, qform = int(hdr["sform_code"]), int(hdr["qform_code"])
        pixdim = np.asarray(hdr["pixdim"][1:4], dtype=float)
    except (KeyError, TypeError, ValueError):
        return  # not a NIfTI-1/2 header (e.g. Analyze): nibabel's affine is all there is
    if sform > 0:
        return
    if not np.all(np.isfinite(pixdim)) or np.any(pixdim <= 0):
        raise InputError(f"{path}: voxel size pixdim[1:4] = {pixdim.tolist()} is not positive and there is no "
                         "sform: the voxel size is unknown; fix the header")
    if qform == 0:
        warn.append(f"{path.name}: no qform or sform in the NIfTI header: voxel size from pixdim, position "
                    "and orientation unknown (alignment with other images from the header is not possible)")


def _read_voxels(path: Path, warn: list[str]):
    """(float32 array [i, j, k], RAS affine) of a NIfTI file; non-finite voxels become 0 with a warning."""
    import warnings

    import nibabel as nib

    with warnings.catch_warnings(record=True) as caught, _nibabel_log(warn, path.name):
        warnings.simplefilter("always")
        try:
            img = nib.load(str(path))
            _check_header(img, path)
            verify_voxel_data(img, path)
            _check_pixdim(img, path, warn)
            with np.errstate(all="ignore"):
                arr = np.asarray(img.dataobj, dtype=np.float32)
            affine = np.asarray(img.affine, dtype=float)
        except InputError:
            raise
        except MemoryError:
            raise InputError(f"{path}: not enough memory for the {img.shape} volume it declares") from None
        except Exception as e:  # nibabel raises many exception types for corrupt files
            raise InputError(f"cannot read {path} as NIfTI ({type(e).__name__}: "
                             f"{' '.join(str(e).split())[:200]})") from None
    for w in caught:
        warn.append(f"{path.name}: {' '.join(str(w.message).split())[:200]}")
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise InputError(f"{path} has shape {arr.shape}: one 3-D volume per file is needed "
                         "(split 4-D series into one file per time point)")
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InputError(f"{path}: the NIfTI affine (qform/sform) has non-finite values: fix the header")
    m = affine[:3, :3]
    scale = np.linalg.norm(m, axis=0)
    if np.all(scale > 0) and abs(np.linalg.det(m / scale)) < 1e-3:
        raise InputError(f"{path}: the NIfTI affine (qform/sform) is singular (two axes point the same way): "
                         "fix the header")
    bad = ~np.isfinite(arr)
    n_bad = int(np.count_nonzero(bad))
    if n_bad:
        if not arr.flags.writeable:
            arr = arr.copy()
        arr[bad] = 0.0
        warn.append(f"{path.name}: {n_bad} voxels are not finite (NaN or infinite): set to 0")
    return arr, affine
