"""Reading DICOM files, deferred pixel data, and what kind of object a data set is.

pydicom leaves values above ``_DEFER_BYTES`` (the pixel data) in the file;
they are read straight into numpy when needed, so a folder's data sets never
hold every file's pixels at once.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError
from .tags import _as_list, _int, _quiet, _raw, _SkipSeries, _text


#: SOP Class UIDs this module recognises (PS3.4), with what is done with them.
SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.20": "NM",
    "1.2.840.10008.5.1.4.1.1.2": "CT",
    "1.2.840.10008.5.1.4.1.1.128": "PT",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT",
    "1.2.840.10008.5.1.4.1.1.130": "Enhanced PET",
    "1.2.840.10008.5.1.4.1.1.128.1": "Legacy Converted Enhanced PET",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture",
}
_IMAGE_KINDS = ("CT", "NM", "PT")
_MAX_BYTES = 8 * 1024**3  # refuse declared pixel data above 8 GiB
_DICOMDIR_SOP = "1.2.840.10008.1.3.10"
# values above this size (pixel data) are left in the file by pydicom and read
# straight into numpy when needed, so a folder's datasets do not hold every
# file's pixels at once
_DEFER_BYTES = 64 * 1024
_PIXEL_TAGS = {"PixelData": 0x7FE00010, "FloatPixelData": 0x7FE00008, "DoubleFloatPixelData": 0x7FE00009}


def _deferred(ds, tag: int):
    """The raw element of ``tag`` when pydicom left its value in the file, else ``None``."""
    try:
        elem = ds.get_item(tag, keep_deferred=True)
    except TypeError:  # pydicom < 3: no keep_deferred; look in the element store
        elem = getattr(ds, "_dict", {}).get(tag)
    except (KeyError, ValueError):
        return None
    if elem is None or not getattr(elem, "is_raw", False) or elem.value is not None:
        return None
    if not elem.length or elem.length == 0xFFFFFFFF or elem.value_tell is None:
        return None
    if not isinstance(getattr(ds, "filename", None), (str, os.PathLike)):
        return None
    return elem


def _converted(ds, tag: int, where: str):
    """pydicom's value of ``tag``; a corrupt element (bad VR, bad length) raises InputError."""
    try:
        return ds[tag].value
    except Exception as e:  # noqa: BLE001 - pydicom raises NotImplementedError, ValueError... on corrupt bytes
        raise InputError(f"{where}: element ({tag >> 16:04X},{tag & 0xFFFF:04X}) is malformed "
                         f"({type(e).__name__})") from None


def _value_length(ds, tag: int) -> int:
    """Bytes present of an element's value, without loading a value left in the file."""
    elem = _deferred(ds, tag)
    if elem is None:
        return len(_converted(ds, tag, "file") or b"")
    try:
        size = os.path.getsize(ds.filename)
    except OSError:
        return 0
    return max(0, min(int(elem.length), size - int(elem.value_tell)))


def _value_bytes(ds, tag: int, nbytes: int, where: str):
    """The first ``nbytes`` of an element's value (fewer if the file is short).

    A value left in the file is read into a fresh numpy buffer, not into the
    dataset, so it is freed with the array.
    """
    elem = _deferred(ds, tag)
    if elem is None:
        return _converted(ds, tag, where) or b""
    buf = np.empty(max(0, min(int(nbytes), int(elem.length))), dtype=np.uint8)
    try:
        with open(ds.filename, "rb") as f:
            f.seek(int(elem.value_tell))
            got = f.readinto(buf)
    except OSError as e:
        raise InputError(f"{where}: cannot read the pixel data ({e.strerror or e})") from None
    return buf[:got or 0]


#: First bytes of a DICOM data set stored without the 128-byte preamble and "DICM" (old ACR-NEMA style, or
#: written without file meta): an element of group 0008 or 0002, little or big endian.
_BARE_DICOM_HEADS = (b"\x08\x00", b"\x02\x00", b"\x00\x08", b"\x00\x02")


def dcmread_lenient(path, **kwargs):
    """:func:`pydicom.dcmread` that also reads a file without preamble and file meta.

    Such a data set gets the TransferSyntaxUID of the encoding pydicom found
    in its (otherwise empty) file meta, as readers like highdicom expect one.

    Parameters
    ----------
    path : path-like
        The file.
    **kwargs
        Passed to :func:`pydicom.dcmread` (``stop_before_pixels`` ...).

    Raises
    ------
    pydicom.errors.InvalidDicomError
        If the file is neither DICOM nor a bare data set starting with group 0008 or 0002.
    OSError
        If the file cannot be read.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path), **kwargs)
    except InvalidDicomError:
        with open(path, "rb") as f:
            head = f.read(2)
        if head not in _BARE_DICOM_HEADS:
            raise
        ds = pydicom.dcmread(str(path), force=True, **kwargs)
        if "TransferSyntaxUID" not in ds.file_meta:  # the encoding pydicom found, for code that asks for it
            from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

            implicit, little = ds.original_encoding
            ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                              ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        return ds


def looks_like_dicom(path) -> bool:
    """True for a DICOM file: the "DICM" marker after the preamble, or a bare data set with a SOPClassUID.

    Never raises; reads at most the first elements of a file without a marker.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    if len(head) == 132 and head[128:132] == b"DICM":
        return True
    if head[:2] not in _BARE_DICOM_HEADS:
        return False
    try:
        with _quiet():
            ds = dcmread_lenient(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
        return bool(str(ds.get("SOPClassUID", "")).strip())
    except Exception:  # noqa: BLE001 - pydicom raises many types for data that is not DICOM
        return False


def _read_file(path: Path):
    """``(dataset, None)`` or ``(None, reason)``; never raises for a bad file."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    with _quiet():
        try:
            ds = pydicom.dcmread(path, defer_size=_DEFER_BYTES)
        except InvalidDicomError:
            # files without the 128-byte preamble (old ACR-NEMA style) start with group 0008
            try:
                with open(path, "rb") as f:
                    head = f.read(4)
            except OSError as e:
                return None, f"unreadable ({e.strerror})"
            if head[:2] not in _BARE_DICOM_HEADS:
                return None, "not a DICOM file"
            try:
                ds = pydicom.dcmread(path, force=True, defer_size=_DEFER_BYTES)
            except Exception as e:  # pydicom raises many types for corrupt data
                return None, f"corrupt DICOM ({type(e).__name__})"
        except OSError as e:
            return None, f"unreadable ({e.strerror or e})"
        except Exception as e:  # truncated or corrupt: never a traceback
            return None, f"corrupt DICOM ({type(e).__name__}: {e})"
        if _is_deflated(ds):  # offsets of a deflated data set are not file offsets: read it all now
            try:
                ds = pydicom.dcmread(path, force=True)
            except Exception as e:  # noqa: BLE001 - corrupt deflate stream
                return None, f"corrupt DICOM ({type(e).__name__})"
        try:
            media = str(ds.file_meta.get("MediaStorageSOPClassUID", "")) if hasattr(ds, "file_meta") else ""
        except Exception:  # noqa: BLE001 - malformed file meta
            media = ""
        if media == _DICOMDIR_SOP:
            return None, "DICOMDIR (a directory index, not an image)"
        reason = _pixel_problem(ds)
        if reason:
            return None, reason
    return ds, None


def _is_deflated(ds) -> bool:
    try:
        return str(ds.file_meta.get("TransferSyntaxUID", "")).strip("\x00 ") == "1.2.840.10008.1.2.1.99"
    except Exception:  # noqa: BLE001 - no or malformed file meta
        return False


def _transfer_syntax(ds, where: str = "file"):
    """The dataset's transfer syntax (implicit VR little endian when absent)."""
    try:
        ts = ds.file_meta.get("TransferSyntaxUID")
    except Exception:  # noqa: BLE001 - no or malformed file meta
        ts = None
    uid = _checked_transfer_syntax(str(ts).strip("\x00 ") if ts else None)
    if uid is None:
        bad = str(ts).strip("\x00 ")
        raise InputError(f"{where}: TransferSyntaxUID (0002,0010) {bad!r} is not a transfer syntax") from None
    return uid


@lru_cache(maxsize=64)
def _checked_transfer_syntax(text: str | None):
    """The UID of a transfer syntax's text (implicit VR little endian for ``None`` or empty), ``None`` when it
    is not a transfer syntax. Cached: a folder's files share a few syntaxes, and the UID's checks cost as much
    as reading a header's numbers (a UID is an immutable ``str``)."""
    from pydicom.uid import UID, ImplicitVRLittleEndian

    uid = UID(text) if text else UID(ImplicitVRLittleEndian)
    try:
        uid.is_compressed  # noqa: B018 - raises for a UID that is not a transfer syntax
    except ValueError:
        return None
    return uid


def _declared(ds, where: str) -> tuple[int, int, int, int, int]:
    """(frames, rows, columns, bits allocated, samples per pixel), checked."""
    rows, cols = _int(ds, "Rows", where), _int(ds, "Columns", where)
    if rows is None or cols is None:
        raise InputError(f"{where}: Rows (0028,0010) / Columns (0028,0011) missing")
    frames = _int(ds, "NumberOfFrames", where) or 1
    bits = _int(ds, "BitsAllocated", where) or 16
    spp = _int(ds, "SamplesPerPixel", where) or 1
    if rows <= 0 or cols <= 0 or frames <= 0 or bits <= 0:
        raise InputError(f"{where}: image size {frames}x{rows}x{cols} ({bits} bits) is not valid")
    if rows * cols * frames * spp * bits / 8 > _MAX_BYTES:
        raise InputError(f"{where}: declared image size {frames}x{rows}x{cols}x{bits} bits exceeds 8 GiB: "
                         "refusing to allocate it (corrupt header?)")
    return frames, rows, cols, bits, spp


def _pixel_problem(ds) -> str | None:
    """Why a freshly read dataset holds no usable pixel data (``None`` if fine)."""
    if not any(t in ds for t in _PIXEL_TAGS.values()):
        if "SOPClassUID" not in ds:
            return "DICOM file without an image or SOPClassUID (truncated?)"
        return None  # non-image objects are classified later
    try:
        frames, rows, cols, bits, spp = _declared(ds, "file")
        compressed = _transfer_syntax(ds).is_compressed
    except InputError as e:
        return str(e).replace("file: ", "")
    if _PIXEL_TAGS["PixelData"] in ds and not compressed and bits in (8, 16, 32, 64):
        try:
            have = _value_length(ds, _PIXEL_TAGS["PixelData"])
        except InputError as e:
            return str(e).replace("file: ", "")
        need = frames * rows * cols * spp * bits // 8
        if have < need:
            return f"truncated (pixel data {have} of {need} bytes)"
        if have > need + 1:  # one pad byte makes an odd length even; anything more contradicts the header
            return _oversize_message(have, need, frames, rows, cols, bits)
    return None


def _oversize_message(have: int, need: int, frames: int, rows: int, cols: int, bits: int) -> str:
    return (f"pixel data holds {have} bytes but {frames} frame(s) x {rows} rows x {cols} columns x {bits} bits "
            f"declare {need}: the header does not describe the data (Rows, Columns, NumberOfFrames or "
            "BitsAllocated changed?); export the image again")


def _stored_pixels(ds, where: str, declared: tuple | None = None) -> np.ndarray:
    """Stored pixel values, shape (frames, rows, columns), without copying when possible."""
    frames, rows, cols, bits, spp = declared or _declared(ds, where)
    if spp != 1:
        raise _SkipSeries(f"{where}: colour image (SamplesPerPixel {spp}), not a quantitative volume")
    n = frames * rows * cols
    for kw, dtype in (("FloatPixelData", np.float32), ("DoubleFloatPixelData", np.float64)):
        if kw in ds:
            raw = _value_bytes(ds, _PIXEL_TAGS[kw], n * np.dtype(dtype).itemsize, where)
            if len(raw) < n * np.dtype(dtype).itemsize:
                raise InputError(f"{where}: {kw} is truncated")
            return np.frombuffer(raw, dtype=dtype, count=n).reshape(frames, rows, cols)
    if "PixelData" not in ds:
        raise InputError(f"{where}: no PixelData (7FE0,0010)")
    ts = _transfer_syntax(ds, where)
    signed = (_int(ds, "PixelRepresentation", where) or 0) == 1
    stored = _int(ds, "BitsStored", where) or bits
    if not ts.is_compressed and bits in (8, 16, 32):
        dtype = np.dtype(f"{'i' if signed else 'u'}{bits // 8}").newbyteorder("<" if ts.is_little_endian else ">")
        raw = _value_bytes(ds, _PIXEL_TAGS["PixelData"], n * dtype.itemsize, where)
        if len(raw) < n * dtype.itemsize:
            raise InputError(f"{where}: pixel data truncated ({len(raw)} of {n * dtype.itemsize} bytes)")
        have = _value_length(ds, _PIXEL_TAGS["PixelData"])
        if have is not None and have > n * dtype.itemsize + 1:
            raise InputError(f"{where}: " + _oversize_message(have, n * dtype.itemsize, frames, rows, cols, bits))
        arr = np.frombuffer(raw, dtype=dtype, count=n).reshape(frames, rows, cols)
        if not dtype.isnative:
            arr = arr.astype(dtype.newbyteorder("="))
        if stored < bits:
            if signed:  # sign-extend the low BitsStored bits
                shift = bits - stored
                arr = (arr << shift) >> shift
            else:
                arr = arr & np.array((1 << stored) - 1, dtype=arr.dtype)
        return arr
    try:
        arr = np.asarray(ds.pixel_array)
    except Exception as e:  # decoders raise many types
        raise _SkipSeries(f"{where}: cannot decode pixel data ({ts.name}: {type(e).__name__}); "
                          "install pylibjpeg or gdcm, or export uncompressed") from None
    if arr.size != n:
        raise InputError(f"{where}: decoded pixel data has {arr.size} values, the header declares "
                         f"{frames}x{rows}x{cols}")
    return arr.reshape(frames, rows, cols)


def _as_dataset(obj) -> tuple[Path | None, Any]:
    if isinstance(obj, (str, Path)):
        p = Path(obj)
        if not p.is_file():
            raise InputError(f"{p} does not exist or is not a file")
        ds, why = _read_file(p)
        if ds is None:
            raise InputError(f"cannot read {p}: {why}")
        return p, ds
    return (Path(obj.filename) if getattr(obj, "filename", None) else None), obj


def _where(path: Path | None, ds=None) -> str:
    if path is not None:
        return path.name
    return f"dataset {getattr(ds, 'SOPInstanceUID', '?')}"


def _kind(ds) -> str:
    try:
        sop = _text(ds, "SOPClassUID", "file") or ""
    except InputError:
        sop = ""
    if sop in SOP_CLASSES:
        return SOP_CLASSES[sop]
    if sop:
        return f"other:{sop}"
    try:
        mod = (_text(ds, "Modality", "file") or "").upper()
    except InputError:
        mod = ""
    return mod if mod in _IMAGE_KINDS else "other:"


def _image_type(ds, where: str) -> list[str]:
    return [str(v).strip().upper() for v in _as_list(_raw(ds, "ImageType", where))]
