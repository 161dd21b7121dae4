"""DICOM folders into :class:`~spectrack.load.model.Series` (CT, SPECT, PET).

What is read (``REFERENCE.md`` section 3)
------------------------------------------
* **CT** (CT Image Storage): one file per slice, sorted by position along the
  slice normal (never by ``InstanceNumber``); slice spacing from the
  positions; HU = stored * ``RescaleSlope`` + ``RescaleIntercept``.
* **SPECT** (NM Image Storage, ``ImageType`` value 3 ``RECON TOMO`` or
  ``RECON GATED TOMO``): one multi-frame object. Position and orientation come
  from ``DetectorInformationSequence[0]``, the slice step from
  ``SpacingBetweenSlices`` *with its sign*, frames are ordered by
  ``SliceVector``. Gates of a gated reconstruction in counts are summed.
* **PET** (PET Image Storage): one file per slice with its own
  ``RescaleSlope``; the spacing comes from the positions (``SliceThickness``
  is not the spacing).
* Planar NM (``STATIC``, ``WHOLE BODY``, ``DYNAMIC``, ``GATED``, ``TOMO``
  projections) is not a volume: skipped with a warning;
  :func:`planar_counts` reads it for calibrations.

Values become float32 in ``meta['units']``, found in this order:
``RealWorldValueMappingSequence`` (UCUM units), then ``RescaleSlope`` /
``RescaleIntercept`` with ``Units`` (``BQML``, ``CNTS``, ``CPS``), then plain
counts for NM. Every metadata value is a :class:`~spectrack.load.model.Sourced`
naming its DICOM keyword and tag; a missing tag leaves its key absent.

Geometry follows :mod:`spectrack.geometry` (LPS, array ``[k, j, i]``).

Besides :data:`~spectrack.load.model.META_KEYS`, the readers may fill
``injection_time_of_day`` (only ``RadiopharmaceuticalStartTime``: the study
layer chooses the date), ``decay_factor_per_slice`` and
``frame_reference_time_s_per_slice`` (slice series), ``decay_reference_offset_s``
(START: seconds from the acquisition start to the time the values refer to,
the PET series reference ``SeriesDate``/``SeriesTime`` checked against
``FrameReferenceTime`` and ``DecayFactor``), ``beds_normalised`` (slices of
several beds in one series put on the first bed's start and duration),
``dose_calibration_factor``,
``radionuclide_code`` (an unrecognised code), ``gates_summed``, ``geometry``
(where position, orientation and spacing came from), ``injection_timezone_offset``
(the UTC offset suffix of ``RadiopharmaceuticalStartDateTime``) and
``load_warnings`` (what the reader noted; :func:`load_dicom_folder` returns
them too).

Bad input never gives a traceback: a malformed geometry or pixel tag raises
:class:`~spectrack.errors.InputError` naming the file and the tag; a
malformed optional tag (times, dose, duration, units, sequences) becomes a
warning and the value stays absent; an unreadable or truncated file is
skipped with a warning. Declared pixel data above 8 GiB, or larger than the
file holds, is refused before anything is allocated. Pixel data is read
straight from the file into numpy (pydicom defers it), so a folder's
datasets never hold every file's pixels at once. Series whose times carry
different UTC offsets are brought onto one clock
(:func:`normalise_timezones`).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import warnings
from collections import defaultdict
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..geometry import Image, LazyImage
from ..physics import nuclide_from_code
from .model import Series, Sourced

__all__ = [
    "load_dicom_folder",
    "read_nm_multiframe",
    "read_ct_series",
    "read_pet_series",
    "planar_counts",
    "normalise_timezones",
    "dcmread_lenient",
    "looks_like_dicom",
    "SOP_CLASSES",
]

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
_NM_RECON = ("RECON TOMO", "RECON GATED TOMO")
_NM_PLANAR = ("STATIC", "WHOLE BODY", "DYNAMIC", "GATED", "TOMO", "GATED TOMO")
_MAX_BYTES = 8 * 1024**3  # refuse declared pixel data above 8 GiB
_DICOMDIR_SOP = "1.2.840.10008.1.3.10"
# files the other readers of spectrack handle: not reported as "not DICOM"
_OTHER_READERS = (".nii", ".nii.gz", ".json", ".tsv", ".toml")
_MAX_FILE_WARNINGS = 20

# UCUM codes of MeasurementUnitsCodeSequence -> (units, scale to those units)
_UCUM = {
    "Bq/ml": ("Bq/mL", 1.0), "Bq/mL": ("Bq/mL", 1.0), "Bq/cm3": ("Bq/mL", 1.0),
    "kBq/ml": ("Bq/mL", 1e3), "kBq/mL": ("Bq/mL", 1e3), "kBq/cm3": ("Bq/mL", 1e3),
    "MBq/ml": ("Bq/mL", 1e6), "MBq/mL": ("Bq/mL", 1e6),
    "{counts}": ("counts", 1.0), "{count}": ("counts", 1.0), "{cnts}": ("counts", 1.0),
    "{counts}/s": ("cps", 1.0), "{cps}": ("cps", 1.0),
    "[hnsf'U]": ("HU", 1.0),
}
# Units (0054,1001) -> units
_PET_UNITS = {
    "BQML": ("Bq/mL", ""), "CNTS": ("counts", ""), "CPS": ("cps", ""),
    "PROPCNTS": ("counts", " (proportional to counts)"), "PROPCPS": ("cps", " (proportional to counts/s)"),
}


# ---------------------------------------------------------------- small helpers
@contextmanager
def _quiet():
    """Silence pydicom's warnings about harmless vendor quirks (value lengths, VRs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _tag(keyword: str) -> str:
    """``"Keyword (gggg,eeee)"`` for source strings.

    Examples
    --------
    >>> _tag("RadionuclideTotalDose")
    'RadionuclideTotalDose (0018,1074)'
    """
    t = _tag_info(keyword)[0]
    return keyword if t is None else f"{keyword} ({t >> 16:04X},{t & 0xFFFF:04X})"


class _SkipSeries(InputError):
    """A series is not a usable volume (structure, not malformed values).

    Raised by the readers (callers see an :class:`InputError`);
    :func:`load_dicom_folder` turns it into a warning and goes on.
    """


# VRs parsed here from the raw bytes: pydicom's conversion (with validation)
# of each value dominates the load time of long slice series
_FAST_VRS = frozenset({"DS", "IS", "DA", "TM", "DT"})
# binary numbers: numpy dtype code
_BINARY_VRS = {"US": "u2", "SS": "i2", "UL": "u4", "SL": "i4", "FL": "f4", "FD": "f8", "UV": "u8", "SV": "i8"}
# text VRs whose values are plain ASCII in any character set unless they hold bytes >= 0x80 or ESC
_ASCII_VRS = frozenset({"CS", "UI", "AS", "AE", "SH", "LO", "PN"})


@lru_cache(maxsize=None)
def _tag_info(keyword: str) -> tuple[int | None, str | None]:
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    t = tag_for_keyword(keyword)
    return t, (dictionary_VR(t) if t is not None else None)


def _from_raw(elem, vr: str | None, where: str, keyword: str):
    """Value of a still-raw element with a VR read here; ``NotImplemented`` for the others."""
    raw = elem.value
    if not isinstance(raw, bytes) or not getattr(elem, "is_raw", False):
        return NotImplemented
    evr = elem.VR if elem.VR is not None else vr
    if evr in _FAST_VRS or (evr in _ASCII_VRS and raw.isascii() and b"\x1b" not in raw):
        text = raw.decode("latin-1").strip(" \x00")
        if not text:
            return None
        parts = [p.strip().strip("\x00") for p in text.split("\\")]
        return parts[0] if len(parts) == 1 else parts
    code = _BINARY_VRS.get(evr)
    if code is not None:
        if not raw:
            return None
        size = int(code[1])
        if len(raw) % size:
            raise InputError(f"{where}: {_tag(keyword)} is malformed ({len(raw)} bytes for {evr})")
        vals = np.frombuffer(raw, dtype=("<" if elem.is_little_endian else ">") + code).tolist()
        return vals[0] if len(vals) == 1 else vals
    return NotImplemented


def _raw(ds, keyword: str, where: str):
    """Value of ``keyword`` in ``ds``, ``None`` when absent or empty.

    Still-raw DS, IS, DA, TM, DT and ASCII CS, UI, AS, AE, SH, LO, PN values
    come back as ``str`` (a list of ``str`` when multi-valued), still-raw
    US, SS, UL, SL, FL, FD values as Python numbers (a list when
    multi-valued); other VRs and already converted elements as pydicom
    gives them.
    """
    tag, vr = _tag_info(keyword)
    if tag is None:
        return None
    try:
        elem = ds.get_item(tag)
        if elem is None:
            return None
        v = _from_raw(elem, vr, where, keyword)
        if v is not NotImplemented:
            return v
        v = ds[tag].value
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - pydicom's conversion of corrupt bytes raises many types
        msg = " ".join(str(e).split())[:120]
        raise InputError(f"{where}: {_tag(keyword)} is malformed ({type(e).__name__}: {msg})") from None
    if v is None:
        return None
    if isinstance(v, (str, bytes)) and not v.strip():
        return None
    try:
        if hasattr(v, "__len__") and not isinstance(v, (str, bytes)) and len(v) == 0:
            return None
    except TypeError:
        pass
    return v


def _text(ds, keyword: str, where: str) -> str | None:
    v = _raw(ds, keyword, where)
    if v is None:
        return None
    s = str(v).strip()
    return s or None


def _safe_raw(ds, keyword: str):
    """Like :func:`_raw`, ``None`` when malformed."""
    try:
        return _raw(ds, keyword, "file")
    except InputError:
        return None


def _safe_text(ds, keyword: str) -> str:
    """Text of ``keyword`` for labels and grouping: ``""`` when absent or malformed."""
    try:
        v = _raw(ds, keyword, "file")
    except InputError:
        return ""
    if v is None:
        return ""
    return str(v).strip() if not isinstance(v, list) else "\\".join(str(x).strip() for x in v)


def _as_list(v) -> list:
    if v is None:
        return []
    if isinstance(v, (str, bytes, int, float)) or not hasattr(v, "__iter__"):
        return [v]
    return list(v)


def _float(ds, keyword: str, where: str, *, required: bool = False) -> float | None:
    """A finite float from a DS/IS/FL/FD element; InputError when malformed."""
    v = _raw(ds, keyword, where)
    if v is None:
        if required:
            raise InputError(f"{where}: {_tag(keyword)} is missing; the volume cannot be placed without it")
        return None
    vals = _as_list(v)
    try:
        f = float(str(vals[0]).strip()) if isinstance(vals[0], (str, bytes)) else float(vals[0])
    except (ValueError, TypeError, IndexError):
        raise InputError(f"{where}: {_tag(keyword)} = {v!r} is not a number") from None
    if not math.isfinite(f):
        raise InputError(f"{where}: {_tag(keyword)} = {v!r} is not a finite number")
    return f


def _floats(ds, keyword: str, n: int, where: str, *, required: bool = True) -> np.ndarray | None:
    """``n`` finite floats from a multi-valued element."""
    v = _raw(ds, keyword, where)
    if v is None:
        if required:
            raise InputError(f"{where}: {_tag(keyword)} is missing; the volume cannot be placed without it")
        return None
    vals = _as_list(v)
    try:
        out = np.array([float(str(x).strip()) for x in vals], dtype=float)
    except (ValueError, TypeError):
        raise InputError(f"{where}: {_tag(keyword)} = {list(map(str, vals))} is not numeric") from None
    if out.size != n or not np.all(np.isfinite(out)):
        raise InputError(f"{where}: {_tag(keyword)} = {list(map(str, vals))} needs {n} finite numbers")
    return out


def _int(ds, keyword: str, where: str) -> int | None:
    f = _float(ds, keyword, where)
    if f is None:
        return None
    if f != int(f):
        raise InputError(f"{where}: {_tag(keyword)} = {f} is not an integer")
    return int(f)


def _seq(ds, keyword: str, where: str = "file", warn: list[str] | None = None) -> list:
    """Items of a sequence (``[]`` when absent or empty).

    pydicom parses a sequence when it is first accessed; a malformed one
    (bad item lengths, truncated items) is reported in ``warn`` and treated
    as absent.
    """
    try:
        seq = ds.get(keyword)
        return list(seq) if seq else []
    except Exception as e:  # noqa: BLE001 - pydicom raises OSError, ValueError, struct.error... on corrupt items
        if warn is not None:
            warn.append(f"{where}: {_tag(keyword)} is malformed ({type(e).__name__}); ignored")
        return []


def _item0(ds, keyword: str, where: str = "file", warn: list[str] | None = None):
    items = _seq(ds, keyword, where, warn)
    return items[0] if items else None


# ---------------------------------------------------------------- dates and times
_DA_RE = re.compile(r"^(\d{4})[.\-]?(\d{2})[.\-]?(\d{2})$")
_TM_RE = re.compile(r"^(\d{2})(?::?(\d{2}))?(?::?(\d{2}))?(?:\.(\d+))?$")
_DT_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})?(\d{2})?(?:\.(\d+))?([+-]\d{4})?$")
# a UTC offset +HHMM / -HHMM (PS3.5: -1200 to +1400)
_TZ_RE = re.compile(r"^[+-](?:0\d|1[0-4])[0-5]\d$")


def _tz_minutes(text: str) -> int:
    """Minutes east of UTC of a ``+HHMM``/``-HHMM`` offset.

    Examples
    --------
    >>> _tz_minutes("+0130"), _tz_minutes("-0500")
    (90, -300)
    """
    sign = -1 if text[0] == "-" else 1
    return sign * (int(text[1:3]) * 60 + int(text[3:5]))


def _parse_da(text: str) -> dt.date:
    """DICOM DA (``YYYYMMDD``, old ``YYYY.MM.DD``) to a date.

    Examples
    --------
    >>> _parse_da("20250709")
    datetime.date(2025, 7, 9)
    """
    m = _DA_RE.match(str(text).strip())
    if not m:
        raise ValueError(f"{text!r} is not a DICOM date (YYYYMMDD)")
    d = dt.date(int(m[1]), int(m[2]), int(m[3]))
    if d.year < 1900:
        raise ValueError(f"{text!r} is a placeholder date")
    return d


def _micro(frac: str | None) -> int:
    return int((frac or "0")[:6].ljust(6, "0"))


def _parse_tm(text: str) -> dt.time:
    """DICOM TM (``HHMMSS.FFFFFF``, ``HHMM``, ``HH``, old ``HH:MM:SS``) to a time.

    Examples
    --------
    >>> _parse_tm("122804.000000")
    datetime.time(12, 28, 4)
    """
    m = _TM_RE.match(str(text).strip())
    if not m:
        raise ValueError(f"{text!r} is not a DICOM time (HHMMSS.FFFFFF)")
    sec = min(int(m[3] or 0), 59)  # a leap second 60 becomes 59
    return dt.time(int(m[1]), int(m[2] or 0), sec, _micro(m[4]))


def _parse_dt(text: str) -> tuple[dt.datetime, str | None]:
    """DICOM DT (``YYYYMMDDHHMMSS.FFFFFF&ZZXX``) to a naive datetime and the offset text.

    Examples
    --------
    >>> _parse_dt("20250709122804.000000+0200")
    (datetime.datetime(2025, 7, 9, 12, 28, 4), '+0200')
    """
    m = _DT_RE.match(str(text).strip())
    if not m:
        raise ValueError(f"{text!r} is not a DICOM date-time (YYYYMMDDHHMMSS)")
    if m[8] and not _TZ_RE.match(m[8]):
        raise ValueError(f"{text!r} has an impossible UTC offset {m[8]}")
    d = dt.datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5] or 0), min(int(m[6] or 0), 59),
                    _micro(m[7]))
    if d.year < 1900:
        raise ValueError(f"{text!r} is a placeholder date")
    return d, m[8]


_START_ROUTES = (
    ("AcquisitionDateTime", None),
    ("AcquisitionDate", "AcquisitionTime"),
    ("SeriesDate", "SeriesTime"),
    ("ContentDate", "ContentTime"),
)


def _start_of(ds, where: str, warn: list[str]) -> tuple[int, dt.datetime, str, str | None] | None:
    """(route index, datetime, source, DT offset) of the first usable start-time route."""
    for n, (a, b) in enumerate(_START_ROUTES):
        try:
            if b is None:
                t = _text(ds, a, where)
                if t is None:
                    continue
                d, off = _parse_dt(t)
                return n, d, _tag(a), off
            da, tm = _text(ds, a, where), _text(ds, b, where)
            if da is None or tm is None:
                continue
            return n, dt.datetime.combine(_parse_da(da), _parse_tm(tm)), f"{_tag(a)} + {_tag(b)}", None
        except (ValueError, InputError) as e:
            warn.append(f"{where}: {a}{'/' + b if b else ''} not usable ({e}); trying the next time tag")
    return None


# ---------------------------------------------------------------- reading files
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
    from pydicom.uid import UID, ImplicitVRLittleEndian

    try:
        ts = ds.file_meta.get("TransferSyntaxUID")
    except Exception:  # noqa: BLE001 - no or malformed file meta
        ts = None
    uid = UID(str(ts).strip("\x00 ")) if ts else UID(ImplicitVRLittleEndian)
    try:
        uid.is_compressed  # noqa: B018 - raises for a UID that is not a transfer syntax
    except ValueError:
        raise InputError(f"{where}: TransferSyntaxUID (0002,0010) {str(uid)!r} is not a transfer syntax") from None
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
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        if "SOPClassUID" not in ds:
            return "DICOM file without an image or SOPClassUID (truncated?)"
        return None  # non-image objects are classified later
    try:
        frames, rows, cols, bits, spp = _declared(ds, "file")
        compressed = _transfer_syntax(ds).is_compressed
    except InputError as e:
        return str(e).replace("file: ", "")
    if "PixelData" in ds and not compressed and bits in (8, 16, 32, 64):
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


# ---------------------------------------------------------------- geometry
def _orientation(iop: np.ndarray, where: str, keyword: str = "ImageOrientationPatient") -> tuple:
    row, col = iop[:3], iop[3:]
    nr, nc = np.linalg.norm(row), np.linalg.norm(col)
    if nr < 1e-6 or nc < 1e-6:
        raise InputError(f"{where}: {_tag(keyword)} {iop.tolist()} has a zero direction")
    row, col = row / nr, col / nc
    if abs(float(row @ col)) > 1e-3:
        raise InputError(f"{where}: {_tag(keyword)} {iop.tolist()} is not orthogonal")
    col = col - (row @ col) * row
    col /= np.linalg.norm(col)
    return row, col, np.cross(row, col)


def _pixel_spacing(ds, where: str) -> tuple[float, float]:
    """(spacing along i = columns, along j = rows) from PixelSpacing [row, column]."""
    ps = _floats(ds, "PixelSpacing", 2, where)
    if np.any(ps <= 0):
        raise InputError(f"{where}: {_tag('PixelSpacing')} {ps.tolist()} must be positive")
    return float(ps[1]), float(ps[0])


# ---------------------------------------------------------------- units
def _value_mapping(ds, kind: str, where: str, warn: list[str]) -> dict:
    """How stored values become ``units``: slope, intercept, units and sources."""
    if kind != "CT":
        seq = _seq(ds, "RealWorldValueMappingSequence", where, warn)
        notes = []
        for item in seq or []:
            cs = _item0(item, "MeasurementUnitsCodeSequence")
            code = _text(cs, "CodeValue", where) if cs is not None else None
            scheme = _text(cs, "CodingSchemeDesignator", where) if cs is not None else None
            slope = _float(item, "RealWorldValueSlope", where)
            icpt = _float(item, "RealWorldValueIntercept", where) or 0.0
            if code not in _UCUM:
                notes.append(f"{where}: RealWorldValueMappingSequence units {code!r} not used "
                             "(only activity concentration, counts or cps)")
                continue
            if slope is None:
                notes.append(f"{where}: RealWorldValueMappingSequence item without RealWorldValueSlope "
                             "(LUT mapping) not used")
                continue
            if not math.isfinite(slope) or slope <= 0 or not math.isfinite(icpt):
                raise InputError(f"{where}: RealWorldValueSlope {slope:g} / RealWorldValueIntercept {icpt:g} cannot "
                                 "map counts to activity (the slope must be positive and finite): the header is "
                                 "damaged; export the image again")
            units, scale = _UCUM[code]
            return {
                "slope": slope * scale, "intercept": icpt * scale, "units": units,
                "units_source": f"{_tag('RealWorldValueMappingSequence')} {scheme or 'UCUM'} {code}",
                "mapping": "RWVM",
                "mapping_source": f"{_tag('RealWorldValueSlope')} {slope:g}, "
                                  f"{_tag('RealWorldValueIntercept')} {icpt:g}"
                                  + (f", x{scale:g} to {units}" if scale != 1 else ""),
            }
        warn += notes
    slope = _float(ds, "RescaleSlope", where)
    icpt = _float(ds, "RescaleIntercept", where)
    has_rescale = slope is not None or icpt is not None
    slope = 1.0 if slope is None else slope
    icpt = 0.0 if icpt is None else icpt
    resc_src = (f"{_tag('RescaleSlope')} {slope:g}, {_tag('RescaleIntercept')} {icpt:g}" if has_rescale
                else "no rescale: stored values")
    mapping = "rescale" if has_rescale else "none"
    if kind != "CT" and (not math.isfinite(slope) or slope <= 0 or not math.isfinite(icpt)):
        raise InputError(f"{where}: RescaleSlope {slope:g} / RescaleIntercept {icpt:g} cannot map stored values "
                         "to counts or activity (the slope must be positive and finite): the header is damaged; "
                         "export the image again")
    if kind == "CT":
        rtype = _text(ds, "RescaleType", where)
        units = "HU" if rtype in (None, "HU") else rtype
        return {"slope": slope, "intercept": icpt, "units": units,
                "units_source": f"{_tag('RescaleType')} {rtype}" if rtype else "CT Image: Hounsfield units",
                "mapping": mapping, "mapping_source": resc_src}
    for kw in ("Units", "RescaleType"):
        code = _text(ds, kw, where)
        if code is None:
            continue
        key = code.upper()
        if key in _PET_UNITS:
            units, note = _PET_UNITS[key]
            return {"slope": slope, "intercept": icpt, "units": units,
                    "units_source": f"{_tag(kw)} {code}{note}", "mapping": mapping, "mapping_source": resc_src}
        if kw == "Units":
            warn.append(f"{where}: Units (0054,1001) {code!r} is not an activity, counts or cps unit")
            return {"slope": slope, "intercept": icpt, "units": code, "units_source": f"{_tag(kw)} {code}",
                    "mapping": mapping, "mapping_source": resc_src}
    if kind == "NM":
        return {"slope": slope, "intercept": icpt, "units": "counts",
                "units_source": "NM image without RealWorldValueMappingSequence or Units: counts",
                "mapping": mapping, "mapping_source": resc_src}
    warn.append(f"{where}: no Units (0054,1001): the meaning of the values is unknown")
    return {"slope": slope, "intercept": icpt, "units": "", "units_source": "no Units (0054,1001)",
            "mapping": mapping, "mapping_source": resc_src}


# ---------------------------------------------------------------- metadata
def _set(meta: dict, key: str, value, source: str) -> None:
    if value is not None:
        meta[key] = Sourced(value, source)


def _optional(fn, *args, what: str) -> None:
    """Run a metadata reader; a malformed optional tag becomes a warning (``args[-1]``) and the value stays absent."""
    try:
        fn(*args)
    except InputError as e:
        args[-1].append(f"{e}; {what} not read from the header")


def _common_meta(ds, modality: str, where: str, warn: list[str]) -> dict:
    meta: dict[str, Sourced] = {}
    mod_text = _safe_text(ds, "Modality")
    _set(meta, "modality", modality, _tag("Modality") if mod_text == modality else _tag("SOPClassUID"))
    for key, kw in (("patient_id", "PatientID"), ("patient_name", "PatientName"), ("study_uid", "StudyInstanceUID"),
                    ("series_uid", "SeriesInstanceUID"), ("series_description", "SeriesDescription"),
                    ("frame_of_reference_uid", "FrameOfReferenceUID"), ("manufacturer", "Manufacturer"),
                    ("species_description", "PatientSpeciesDescription")):
        _set(meta, key, _safe_text(ds, kw) or None, _tag(kw))
    tz = _safe_text(ds, "TimezoneOffsetFromUTC")
    if tz:
        if _TZ_RE.match(tz):
            _set(meta, "timezone_offset", tz, _tag("TimezoneOffsetFromUTC"))
        else:
            warn.append(f"{where}: {_tag('TimezoneOffsetFromUTC')} {tz!r} is not +HHMM/-HHMM; ignored")
    it = [str(v).strip() for v in _as_list(_safe_raw(ds, "ImageType"))]
    if it:
        _set(meta, "image_type", it, _tag("ImageType"))
    return meta


def _start_meta(meta: dict, datasets: list, where: str, warn: list[str]) -> None:
    """acquisition_start: best route of the first dataset, earliest over all slices."""
    found = [s for s in (_start_of(d, where, warn if n == 0 else []) for n, d in enumerate(datasets))
             if s is not None]
    if not found:
        warn.append(f"{where}: no acquisition time in AcquisitionDateTime, AcquisitionDate/Time, "
                    "SeriesDate/Time or ContentDate/Time")
        return
    best = min(f[0] for f in found)
    cands = [f for f in found if f[0] == best]
    first = min(cands, key=lambda f: f[1])
    src = first[2]
    if len(datasets) > 1:
        src += f", earliest of {len(datasets)} slices"
    meta["acquisition_start"] = Sourced(first[1], src)
    if first[3] and "timezone_offset" not in meta:
        meta["timezone_offset"] = Sourced(first[3], f"{_tag(_START_ROUTES[best][0])} offset suffix")


def _radiopharm_meta(ds, meta: dict, pet_iod: bool, where: str, warn: list[str]) -> None:
    ri = _item0(ds, "RadiopharmaceuticalInformationSequence", where, warn)
    if ri is None:
        return
    seq = f"{_tag('RadiopharmaceuticalInformationSequence')}[0]"
    # radionuclide and half-life
    nuc = None
    code = _item0(ri, "RadionuclideCodeSequence", where, warn)
    if code is not None:
        cv, scheme, meaning = (_text(code, k, where) for k in ("CodeValue", "CodingSchemeDesignator", "CodeMeaning"))
        nuc = nuclide_from_code(cv, meaning)
        desc = " ".join(x for x in (cv, f"({scheme})" if scheme else None, meaning) if x)
        if nuc is not None:
            _set(meta, "radionuclide", nuc.name, f"{_tag('RadionuclideCodeSequence')} {desc}")
        elif desc:
            _set(meta, "radionuclide_code", desc, _tag("RadionuclideCodeSequence"))
            warn.append(f"{where}: radionuclide code {desc!r} not recognised")
    hl_s = None
    try:
        hl_s = _float(ri, "RadionuclideHalfLife", where)
    except InputError as e:
        warn.append(f"{e}; half-life not read from the header")
    if hl_s is not None and hl_s > 0:
        _set(meta, "half_life_h", hl_s / 3600.0, f"{_tag('RadionuclideHalfLife')} {hl_s:g} s")
        if nuc is not None and abs(hl_s / 3600.0 / nuc.half_life_h - 1) > 0.01:
            warn.append(f"{where}: RadionuclideHalfLife {hl_s:g} s differs by more than 1 % from {nuc.name} "
                        f"({nuc.half_life_s:.1f} s, {nuc.source})")
    elif nuc is not None:
        _set(meta, "half_life_h", nuc.half_life_h, f"table: {nuc.source} ({nuc.name})")
    # injected activity: MBq in the NM IOD, Bq in the PET IOD (PS3.3 C.8.4.10.1.7)
    try:
        dose = _float(ri, "RadionuclideTotalDose", where)
    except InputError as e:
        dose = None
        warn.append(f"{e}; injected activity not read from the header")
    src = _tag("RadionuclideTotalDose")
    if dose is not None:
        if dose <= 0:
            warn.append(f"{where}: {src} is {dose:g}: no injected activity in the header")
        elif pet_iod:
            if dose < 1e4:
                _set(meta, "injected_activity_mbq", dose,
                     f"{src} = {dose:g} read as MBq (PET convention is Bq; value too small for Bq)")
                warn.append(f"{where}: {src} {dose:g} is too small for Bq: read as MBq")
            else:
                _set(meta, "injected_activity_mbq", dose / 1e6, f"{src} = {dose:g} Bq (PET convention)")
        else:
            if dose > 1e5:
                _set(meta, "injected_activity_mbq", dose / 1e6,
                     f"{src} = {dose:g} read as Bq (NM convention is MBq; value too large for MBq)")
                warn.append(f"{where}: {src} {dose:g} is too large for MBq: read as Bq")
            else:
                _set(meta, "injected_activity_mbq", dose, f"{src} = {dose:g} MBq (NM convention)")
    # injection time: a full date-time, else a time of day only (the study layer dates it)
    sdt = _text(ri, "RadiopharmaceuticalStartDateTime", where)
    stm = _text(ri, "RadiopharmaceuticalStartTime", where)
    done = False
    if sdt is not None:
        try:
            when, off = _parse_dt(sdt)
            meta["injection_time"] = Sourced(when, _tag("RadiopharmaceuticalStartDateTime"))
            if off:
                meta["injection_timezone_offset"] = Sourced(off, f"{_tag('RadiopharmaceuticalStartDateTime')} "
                                                                 "offset suffix")
            done = True
        except ValueError as e:
            warn.append(f"{where}: RadiopharmaceuticalStartDateTime (0018,1078) not usable ({e})")
    if not done and stm is not None:
        try:
            meta["injection_time_of_day"] = Sourced(_parse_tm(stm), _tag("RadiopharmaceuticalStartTime"))
        except ValueError as e:
            warn.append(f"{where}: RadiopharmaceuticalStartTime (0018,1072) not usable ({e})")
    tracer = _text(ri, "Radiopharmaceutical", where)
    if tracer:
        _set(meta, "tracer", tracer, f"{seq}.{_tag('Radiopharmaceutical')}")
    else:
        rc = _item0(ri, "RadiopharmaceuticalCodeSequence", where, warn)
        if rc is not None and _text(rc, "CodeMeaning", where):
            _set(meta, "tracer", _text(rc, "CodeMeaning", where),
                 f"{_tag('RadiopharmaceuticalCodeSequence')} CodeMeaning")


def _pet_style_meta(datasets: list, meta: dict, where: str, warn: list[str]) -> None:
    """DecayCorrection, DecayFactor, FrameReferenceTime, CorrectedImage, DoseCalibrationFactor."""
    ds = datasets[0]
    _set(meta, "decay_correction", _text(ds, "DecayCorrection", where), _tag("DecayCorrection"))
    corr = [str(v).strip() for v in _as_list(_raw(ds, "CorrectedImage", where)) if str(v).strip()]
    if corr:
        _set(meta, "corrections", corr, _tag("CorrectedImage"))
    for key, kw, scale in (("decay_factor", "DecayFactor", 1.0), ("frame_reference_time_s", "FrameReferenceTime", 1e-3),
                           ("dose_calibration_factor", "DoseCalibrationFactor", 1.0)):
        try:
            vals = [_float(d, kw, where) for d in datasets]
        except InputError as e:
            warn.append(f"{e}; {key} left out")
            continue
        if vals[0] is None:
            continue
        unit = " ms -> s" if scale != 1 else ""
        if len(datasets) > 1 and key != "dose_calibration_factor":
            per = [None if v is None else v * scale for v in vals]
            meta[f"{key}_per_slice"] = Sourced(per, f"{_tag(kw)}{unit}, per slice in slice order")
            varies = len(set(per)) > 1
            meta[key] = Sourced(per[0], f"{_tag(kw)}{unit} of the first slice"
                                + (f" (varies: see {key}_per_slice)" if varies else " (same in all slices)"))
            continue
        meta[key] = Sourced(vals[0] * scale, f"{_tag(kw)}{unit}")


# ---------------------------------------------------------------- decay reference time
_DECAY_TOL_S = 1.0  # routes to the decay reference that differ by more than this are reported


def _acquisition_time(ds, where: str) -> dt.datetime | None:
    """This slice's own acquisition start (AcquisitionDateTime, else AcquisitionDate + AcquisitionTime)."""
    found = _start_of(ds, where, [])
    return found[1] if found is not None and found[0] <= 1 else None


def _series_time(ds, where: str, warn: list[str]) -> dt.datetime | None:
    da, tm = _safe_text(ds, "SeriesDate"), _safe_text(ds, "SeriesTime")
    if not da or not tm:
        return None
    try:
        return dt.datetime.combine(_parse_da(da), _parse_tm(tm))
    except ValueError as e:
        warn.append(f"{where}: SeriesDate/SeriesTime {da!r} {tm!r} not usable ({e})")
        return None


def _ds_precision(text: str | None) -> float:
    """Half a unit of the last decimal written in a DS value (0.5 for integers)."""
    t = (text or "").strip().lower()
    mant = t.split("e")[0]
    dec = len(mant.split(".")[1]) if "." in mant else 0
    exp = int(t.split("e")[1]) if "e" in t and t.split("e")[1].lstrip("+-").isdigit() else 0
    return 0.5 * 10.0 ** (exp - dec)


def _slice_timing(datasets: list, meta: dict, where: str) -> list[dict]:
    """Per slice: acquisition start, frame duration (s), FrameReferenceTime (s) and DecayFactor (with precision)."""
    out = []
    nm_d = meta.get("duration_s")
    for ds in datasets:
        row = {"acq": _acquisition_time(ds, where)}
        afd = _safe_raw(ds, "ActualFrameDuration")
        try:
            row["d_s"] = float(afd) / 1000.0 if afd not in (None, "") and float(afd) > 0 else None
        except (TypeError, ValueError):
            row["d_s"] = None
        if row["d_s"] is None and nm_d is not None and len(datasets) == 1:
            row["d_s"] = float(nm_d.value)
        for key, kw, scale in (("frt_s", "FrameReferenceTime", 1e-3), ("df", "DecayFactor", 1.0)):
            raw = _safe_text(ds, kw)
            try:
                v = float(raw) * scale if raw else None
            except ValueError:
                v = None
            row[key] = v if v is not None and math.isfinite(v) else None
            if key == "df":
                row["df_prec"] = _ds_precision(raw) if raw else None
        out.append(row)
    # slices in the overlap of two beds are blended by some scanners (Siemens): their acquisition time,
    # FrameReferenceTime and DecayFactor are weighted means of the two beds', and a mean of two
    # DecayFactors is not the exponential of the mean FrameReferenceTime (about 1 s apart for F-18 beds
    # 5 min apart): such slices, alone at their acquisition time while beds share theirs, are not used
    # for the DecayFactor check
    n_at = defaultdict(int)
    for r in out:
        n_at[r["acq"]] += 1
    shared = any(n > 1 for n in n_at.values())
    for r in out:
        r["blend"] = shared and n_at[r["acq"]] == 1
    return out


def _implied_times(rows: list[dict], hl_h: float | None, use: str) -> list[tuple[dt.datetime, list[float], float]]:
    """Per slice, the time ``acq + tau - offset`` that ``FrameReferenceTime`` (``use='frt'``) or ``DecayFactor``
    (``use='df'``, offset ``ln(DecayFactor) / lambda``) points back to.

    ``tau`` is where in the frame the pixel values occurred: the standard's examples are the time of the
    mean activity (first, what Siemens writes) and the midpoint. Returns (time with the first tau, the
    shifts of the other conventions in seconds, tolerance in seconds) per usable slice.
    """
    from ..physics import decay_constant_per_h, mean_activity_time_h

    out = []
    lam_s = decay_constant_per_h(hl_h) / 3600.0 if hl_h else None
    for r in rows:
        if r["acq"] is None:
            continue
        tol = _DECAY_TOL_S
        if use == "frt":
            if r["frt_s"] is None:
                continue
            off = r["frt_s"]
        else:
            if r["df"] is None or r["df"] <= 0 or lam_s is None or r["blend"]:
                continue
            off = math.log(r["df"]) / lam_s
            tol = max(tol, (r["df_prec"] or 0.0) / r["df"] / lam_s)
        taus = []
        if r["d_s"] is not None:
            if hl_h:
                taus.append(float(mean_activity_time_h(r["d_s"] / 3600.0, hl_h)) * 3600.0)
            taus.append(r["d_s"] / 2.0)
        else:
            taus.append(0.0)
        base = r["acq"] + dt.timedelta(seconds=taus[0] - off)
        out.append((base, [t - taus[0] for t in taus], tol))
    return out


def _disagreement_s(implied, target: dt.datetime) -> tuple[float, dt.datetime] | None:
    """(gap in s, implied time) of the slice farthest from ``target``, among slices that no tau convention
    brings within their tolerance; the gap is that of the first convention (the time of the mean activity)."""
    worst = None
    for base, shifts, tol in implied:
        gap = min(abs((base + dt.timedelta(seconds=s) - target).total_seconds()) for s in shifts)
        if gap > tol:
            first = abs((base - target).total_seconds())
            if worst is None or first > worst[0]:
                worst = (first, base)
    return worst


def _median_time(implied) -> dt.datetime:
    return sorted(b for b, _, _ in implied)[len(implied) // 2]


def _when(t: dt.datetime) -> str:
    return t.isoformat(sep=" ", timespec="milliseconds" if t.microsecond else "seconds")


def _decay_reference_meta(datasets: list, meta: dict, pet_iod: bool, where: str, warn: list[str]) -> None:
    """``decay_reference_offset_s``: when the values refer to, for ``DecayCorrection`` START, checked against
    ``FrameReferenceTime`` and ``DecayFactor``; for ADMIN, ``DecayFactor`` checked against the injection time.

    START (PS3.3 C.8.9.1.1.x, QIBA's SUV rule): PET values are decay-corrected to the series reference,
    ``SeriesDate``/``SeriesTime`` (for a multi-bed series the start of the first bed, even when that bed is
    not among the files); when the series time is after the acquisition (a post-processed series) the
    earliest acquisition time is used. NM objects carry START as the acquisition start. ``FrameReferenceTime``
    (offset from the series reference to when the bed's values occurred) and ``DecayFactor``
    (``exp(lambda FrameReferenceTime)``) give the same time from each slice's acquisition time; a
    disagreement of more than a second is a warning and the standard's reference is kept.
    """
    state = str(meta["decay_correction"].value).strip().upper() if "decay_correction" in meta else None
    if state not in ("START", "ADMIN"):
        if state == "NONE" and "DECY" in (meta.get("corrections").value if "corrections" in meta else []):
            warn.append(f"{where}: CorrectedImage (0028,0051) lists DECY but DecayCorrection (0054,1102) is NONE: "
                        "values taken as not decay-corrected (DecayCorrection)")
        return
    acq0 = meta["acquisition_start"].value if "acquisition_start" in meta else None
    if acq0 is None:
        return
    hl_h = meta["half_life_h"].value if "half_life_h" in meta else None
    rows = _slice_timing(datasets, meta, where)
    frt = _implied_times(rows, hl_h, "frt")
    dfs = _implied_times(rows, hl_h, "df")
    if state == "ADMIN":
        inj = meta["injection_time"].value if "injection_time" in meta else None
        tod = meta["injection_time_of_day"].value if "injection_time_of_day" in meta else None
        if inj is None and tod is not None:
            inj = dt.datetime.combine(acq0.date(), tod)
            if inj > acq0:
                inj -= dt.timedelta(days=1)
        if inj is not None and dfs:
            bad = _disagreement_s(dfs, inj)
            if bad is not None:
                warn.append(f"{where}: DecayCorrection ADMIN, but DecayFactor (0054,1321) puts the administration "
                            f"at {_when(bad[1])}, {bad[0]:.1f} s from the injection time in the header "
                            f"({_when(inj)}); values are taken as decay-corrected to the header's injection time")
        return
    series = _series_time(datasets[0], where, warn) if pet_iod else None
    names = {"series": "SeriesDate/SeriesTime", "frt": "FrameReferenceTime", "df": "DecayFactor",
             "acq": "the acquisition start"}
    if series is not None and series <= acq0 + dt.timedelta(seconds=_DECAY_TOL_S):
        ref, route, src = series, "series", f"{_tag('SeriesDate')} + {_tag('SeriesTime')} (START: the series " \
                                            "reference, PS3.3 C.8.9.4.1.5; QIBA)"
    else:
        why = ""
        if series is not None:
            why = (f"SeriesDate/SeriesTime {_when(series)} is after the acquisition start {_when(acq0)} "
                   "(a post-processed series): ")
        if pet_iod and frt:
            ref, route = _median_time(frt), "frt"
            src = f"{_tag('FrameReferenceTime')} back from each slice's acquisition time"
        elif pet_iod and dfs:
            ref, route = _median_time(dfs), "df"
            src = f"{_tag('DecayFactor')} = exp(lambda FrameReferenceTime), back from each slice's acquisition time"
        else:
            ref, route = acq0, "acq"
            src = f"acquisition start ({meta['acquisition_start'].source})"
            if pet_iod:
                why = why or "no SeriesDate/SeriesTime, FrameReferenceTime or DecayFactor: "
                warn.append(f"{where}: DecayCorrection START: {why}decay reference assumed to be the acquisition "
                            f"start {_when(acq0)}")
                why = ""
        if why:
            warn.append(f"{where}: DecayCorrection START: {why}decay reference taken from {src}: {_when(ref)}")
    for name, imp, what in (("frt", frt, "FrameReferenceTime (0054,1300)"), ("df", dfs, "DecayFactor (0054,1321)")):
        if name == route or not imp:
            continue
        bad = _disagreement_s(imp, ref)
        if bad is not None:
            warn.append(f"{where}: DecayCorrection START: {what} puts the decay reference at {_when(bad[1])}, "
                        f"{bad[0]:.1f} s from {_when(ref)} ({names[route]}); the latter is used")
    meta["decay_reference_offset_s"] = Sourced((ref - acq0).total_seconds(),
                                               f"{src}: {_when(ref)}, relative to the acquisition start")


def _normalise_beds(values: np.ndarray, datasets: list, meta: dict, where: str, warn: list[str]) -> None:
    """Slices of several bed positions acquired one after the other, in one series: put them on one footing.

    Values not decay-corrected (``NONE``) are means over each bed's own frame: every bed is scaled, in place,
    to what it would hold had it been acquired from the first bed's start for the first bed's duration
    (``iff(D_b) exp(lambda (t_b - t_1)) / iff(D_1)``), so one in-frame factor and one start apply to the
    volume. Counts are also scaled by ``D_1 / D_b`` so one duration divides them. Decay-corrected values
    (START, ADMIN) already share one reference time.
    """
    from ..physics import decay_factor, in_frame_factor

    rows = [(_acquisition_time(ds, where), _safe_raw(ds, "ActualFrameDuration")) for ds in datasets]
    starts = {t for t, _ in rows if t is not None}
    if len(starts) < 2:
        return
    state = str(meta["decay_correction"].value).strip().upper() if "decay_correction" in meta else "NONE"
    units = meta["units"].value if "units" in meta else ""
    durs = []
    for _, afd in rows:
        try:
            durs.append(float(afd) / 1000.0 if afd not in (None, "") and float(afd) > 0 else None)
        except (TypeError, ValueError):
            durs.append(None)
    t1 = min(starts)
    d1 = next((d for (t, _), d in zip(rows, durs) if t == t1 and d is not None), None)
    hl_h = meta["half_life_h"].value if "half_life_h" in meta else None
    need_decay = state not in ("START", "ADMIN")
    if any(t is None for t, _ in rows) or (need_decay or units == "counts") and (
            d1 is None or any(d is None for d in durs)):
        warn.append(f"{where}: slices of {len(starts)} bed positions, some without AcquisitionTime or "
                    "ActualFrameDuration: the beds could not be put on one time footing")
        meta["beds_not_normalised"] = Sourced(len(starts), "slices without acquisition time or frame duration")
        return
    if need_decay and not hl_h:
        warn.append(f"{where}: slices of {len(starts)} bed positions not decay-corrected and no half-life in the "
                    "header: the beds could not be decay-corrected to one start")
        meta["beds_not_normalised"] = Sourced(len(starts), "no half-life in the header")
        return
    factors = []
    for (t, _), d in zip(rows, durs):
        f = 1.0
        if need_decay:
            f *= float(in_frame_factor(d / 3600.0, hl_h) / in_frame_factor(d1 / 3600.0, hl_h)
                       * decay_factor((t - t1).total_seconds() / 3600.0, hl_h))
        if units == "counts":
            f *= d1 / d
        factors.append(f)
    if any(f != 1.0 for f in factors):
        values *= np.asarray(factors, dtype=np.float32)[:, None, None]
    how = []
    if need_decay:
        how.append(f"each bed decay-corrected to the first bed's start {_when(t1)} and expressed as a "
                   f"{d1:g} s frame (in-frame factors)")
    if units == "counts":
        how.append(f"counts scaled to the first bed's {d1:g} s")
    if need_decay or units == "counts":
        meta["duration_s"] = Sourced(d1, f"{_tag('ActualFrameDuration')} of the first bed ({len(starts)} bed "
                                         "positions: " + "; ".join(how) + ")")
        meta["beds_normalised"] = Sourced(len(starts), "; ".join(how))


def _nm_duration(ds, meta: dict, where: str, warn: list[str]) -> None:
    """duration_s = sum over rotations of ActualFrameDuration x NumberOfFramesInRotation."""
    seq = _seq(ds, "RotationInformationSequence", where, warn)
    if not seq:
        afd = _float(ds, "ActualFrameDuration", where)
        warn.append(f"{where}: no RotationInformationSequence (0054,0052): acquisition duration unknown"
                    + (f" (top-level ActualFrameDuration {afd:g} ms is ambiguous)" if afd else ""))
        return
    total = 0.0
    for n, item in enumerate(seq):
        afd = _float(item, "ActualFrameDuration", where)
        nf = _int(item, "NumberOfFramesInRotation", where)
        if afd is None or nf is None:
            warn.append(f"{where}: RotationInformationSequence item {n} lacks ActualFrameDuration or "
                        "NumberOfFramesInRotation: duration unknown")
            return
        total += afd * nf / 1000.0
    nrot = _int(ds, "NumberOfRotations", where)
    if nrot is not None and nrot != len(seq):
        warn.append(f"{where}: NumberOfRotations {nrot} but {len(seq)} RotationInformationSequence items; "
                    "the items are summed")
    meta["duration_s"] = Sourced(total, f"{_tag('RotationInformationSequence')}: sum of "
                                        f"{_tag('ActualFrameDuration')} (ms) x {_tag('NumberOfFramesInRotation')} "
                                        f"over {len(seq)} rotation(s)")


def _finish(series: Series, warn: list[str]) -> Series:
    if warn:
        series.meta["load_warnings"] = Sourced(list(warn), "spectrack.load.dicom")
    return series


# ---------------------------------------------------------------- NM multi-frame
_FRAME_VECTORS = {
    0x00540010: "EnergyWindowVector", 0x00540020: "DetectorVector", 0x00540030: "PhaseVector",
    0x00540050: "RotationVector", 0x00540060: "RRIntervalVector", 0x00540070: "TimeSlotVector",
    0x00540080: "SliceVector", 0x00540090: "AngularViewVector", 0x00540100: "TimeSliceVector",
}
_GATE_VECTORS = ("RRIntervalVector", "TimeSlotVector", "PhaseVector")


def _frame_pointers(ds, where: str) -> list[str]:
    v = _raw(ds, "FrameIncrementPointer", where)
    out = []
    for t in _as_list(v):
        try:
            out.append(_FRAME_VECTORS.get(int(t), f"({int(t) >> 16:04X},{int(t) & 0xFFFF:04X})"))
        except (TypeError, ValueError):
            raise InputError(f"{where}: FrameIncrementPointer (0028,0009) {v!r} is malformed") from None
    return out


def _acquisition_summary(ds, itype: list[str]) -> str:
    """What an NM acquisition object holds, for the message that skips it (never raises)."""
    parts = ["ImageType " + "\\".join(itype)]
    frames = _int_or(ds, "NumberOfFrames") or 1
    counts = []
    for kw, what in (("AngularViewVector", "angular views"), ("DetectorVector", "detectors"),
                     ("EnergyWindowVector", "energy windows"), ("RotationVector", "rotations")):
        n = len(set(str(v) for v in _as_list(_safe_raw(ds, kw))))
        if n > 1 or (n == 1 and kw == "AngularViewVector"):
            counts.append(f"{n} {what if n != 1 else what[:-1]}")
    if not any("detectors" in c for c in counts) and (_int_or(ds, "NumberOfDetectors") or 0) > 1:
        counts.append(f"{_int_or(ds, 'NumberOfDetectors')} detectors")
    parts.append(f"{frames} frame{'s' if frames != 1 else ''}" + (f" = {' x '.join(counts)}" if counts else ""))
    rot = _safe_raw(ds, "RotationInformationSequence")
    if rot:
        item = rot[0]
        for kw, what in (("AngularStep", "deg steps"), ("ScanArc", "deg arc")):
            try:
                parts.append(f"{float(_safe_text(item, kw)):g} {what}")
            except ValueError:  # absent or malformed: not worth a word here
                pass
    return ", ".join(parts)


def read_nm_multiframe(path_or_dataset) -> Series:
    """Read a reconstructed SPECT volume (NM Image Storage, ``RECON TOMO``).

    Parameters
    ----------
    path_or_dataset : path-like or pydicom.Dataset
        One multi-frame NM object.

    Returns
    -------
    Series
        ``modality`` ``"NM"``; image values float32 in ``meta['units']``.

    Raises
    ------
    InputError
        Not a reconstructed NM volume, or geometry tags missing or malformed.

    Notes
    -----
    Position and orientation come from ``DetectorInformationSequence[0]``
    (else the top level), in-plane spacing from ``PixelSpacing``, the slice
    step from ``SpacingBetweenSlices`` with its sign: a negative step gives a
    negated third direction column (as SimpleITK). Frames are ordered by
    ``SliceVector``. Gates (``RECON GATED TOMO``) are summed when values are
    counts, else refused.
    """
    with _quiet():
        path, ds = _as_dataset(path_or_dataset)
        return _read_nm(path, ds)


def _read_nm(path: Path | None, ds) -> Series:
    where = _where(path, ds)
    warn: list[str] = []
    kind = _kind(ds)
    if kind != "NM":
        raise InputError(f"{where}: not an NM image (SOP class {kind}); use read_ct_series or read_pet_series")
    itype = _image_type(ds, where)
    v3 = itype[2] if len(itype) > 2 else None
    pointers = _frame_pointers(ds, where)
    if v3 not in _NM_RECON:
        if v3 in _NM_PLANAR:
            what = f"{v3} projections, not a reconstructed volume ({_acquisition_summary(ds, itype)}); reconstruct " \
                "them and export the reconstruction (ImageType RECON TOMO)" if "TOMO" in v3 else \
                f"planar {v3} acquisition, not a volume ({_acquisition_summary(ds, itype)}; planar_counts() reads it)"
            raise _SkipSeries(f"{where}: {what}")
        if "SliceVector" not in pointers:
            raise _SkipSeries(f"{where}: ImageType {itype} is not RECON TOMO and frames are not slices")
        warn.append(f"{where}: ImageType {itype} lacks RECON TOMO; read as a volume since "
                    "FrameIncrementPointer points to SliceVector")

    declared = _declared(ds, where)
    frames, rows, cols, _, _ = declared
    vectors: dict[str, np.ndarray] = {}
    for kw in pointers:
        if kw.startswith("("):
            raise _SkipSeries(f"{where}: FrameIncrementPointer to {kw} is not supported")
        v = np.atleast_1d(np.asarray(_as_list(_raw(ds, kw, where)), dtype=np.int64))
        if v.size != frames:
            raise InputError(f"{where}: {_tag(kw)} has {v.size} values for {frames} frames")
        vectors[kw] = v
    if "SliceVector" in vectors:
        slices = vectors.pop("SliceVector")
    else:
        slices = np.arange(1, frames + 1)
        if pointers:
            warn.append(f"{where}: FrameIncrementPointer {pointers} has no SliceVector: frames taken in file order")
    gates = np.zeros(frames, dtype=np.int64)
    n_gates = 1
    for kw, v in vectors.items():
        distinct = np.unique(v)
        if distinct.size <= 1:
            continue
        if kw not in _GATE_VECTORS:
            raise _SkipSeries(f"{where}: {distinct.size} values of {kw} in one reconstruction "
                              "(several volumes in one object) are not supported")
        gates = gates * (int(distinct.max()) + 1) + v
    in_file_order = bool(np.array_equal(slices, np.arange(1, frames + 1)))
    if in_file_order:  # the usual case: one frame per slice, in order
        n_slices, n_gates = frames, 1
    else:
        uniq_s, per_slice = np.unique(slices, return_counts=True)
        if np.any(per_slice != per_slice[0]):
            raise InputError(f"{where}: SliceVector (0054,0080) does not give every slice the same number of "
                             "frames")
        n_slices, n_gates = uniq_s.size, int(per_slice[0])
    n_decl = _int(ds, "NumberOfSlices", where)
    if n_decl is not None and n_decl != n_slices:
        warn.append(f"{where}: NumberOfSlices {n_decl} but {n_slices} distinct SliceVector values")
    order = np.arange(frames) if in_file_order else np.lexsort((gates, slices))

    mp = _value_mapping(ds, "NM", where, warn)
    if n_gates > 1 and mp["units"] != "counts":
        raise _SkipSeries(f"{where}: gated reconstruction with {n_gates} gates in {mp['units'] or 'unknown units'}: "
                          "summing gates is only meaningful for counts; export an ungated reconstruction")
    stored = _stored_pixels(ds, where, declared)
    if in_file_order or np.array_equal(order, np.arange(frames)):
        vol = stored.reshape(n_slices, n_gates, rows, cols)  # frames already in slice order: no copy
    else:
        vol = stored[order].reshape(n_slices, n_gates, rows, cols)
    if n_gates > 1:
        vol = vol.sum(axis=1, dtype=np.float64)
        warn.append(f"{where}: {n_gates} gates summed into one volume")
    else:
        vol = vol[:, 0]
    values = _apply(vol, mp["slope"], mp["intercept"], n_gates)
    if _may_be_non_finite(stored.dtype, mp["slope"], mp["intercept"]):
        _zero_non_finite(values, where, warn)

    # geometry
    det = _item0(ds, "DetectorInformationSequence", where, warn)
    places = [(det, "DetectorInformationSequence[0]"), (ds, "top level")] if det is not None else [(ds, "top level")]
    ipp = iop = None
    ipp_src = iop_src = "default"
    for where_ds, name in places:
        if ipp is None:
            ipp = _floats(where_ds, "ImagePositionPatient", 3, where, required=False)
            ipp_src = name
        if iop is None:
            iop = _floats(where_ds, "ImageOrientationPatient", 6, where, required=False)
            iop_src = name
    if ipp is None:
        ipp, ipp_src = np.zeros(3), "default (0, 0, 0)"
        warn.append(f"{where}: no ImagePositionPatient in DetectorInformationSequence or at the top level: "
                    "origin (0, 0, 0) assumed; alignment with CT is not possible from the header")
    if iop is None:
        iop, iop_src = np.array([1.0, 0, 0, 0, 1, 0]), "default (axial)"
        warn.append(f"{where}: no ImageOrientationPatient: axial orientation assumed")
    row, col, normal = _orientation(iop, where)
    sp_i, sp_j = _pixel_spacing(ds, where)
    step = _float(ds, "SpacingBetweenSlices", where)
    step_src = _tag("SpacingBetweenSlices")
    if step is None:
        step = _float(ds, "SliceThickness", where)
        step_src = _tag("SliceThickness")
        if step is None:
            if n_slices > 1:
                raise InputError(f"{where}: neither SpacingBetweenSlices (0018,0088) nor SliceThickness (0018,0050): "
                                 "slice spacing unknown")
            step = sp_i
        warn.append(f"{where}: no SpacingBetweenSlices: slice step taken from {step_src}")
    if step == 0:
        raise InputError(f"{where}: {step_src} is 0: slice spacing unknown")
    direction = np.column_stack([row, col, normal * math.copysign(1.0, step)])
    image = Image(values, origin_mm=ipp, spacing_mm=(sp_i, sp_j, abs(step)), direction=direction,
                  units=mp["units"])

    meta = _common_meta(ds, "NM", where, warn)
    meta["geometry"] = Sourced("NM", f"ImagePositionPatient from {ipp_src}, ImageOrientationPatient from {iop_src}, "
                                     f"{_tag('PixelSpacing')}, {step_src} {step:g} (sign kept)")
    meta["units"] = Sourced(mp["units"], mp["units_source"])
    meta["value_mapping"] = Sourced(mp["mapping"], mp["mapping_source"])
    _optional(_start_meta, meta, [ds], where, warn, what="acquisition time")
    _optional(_nm_duration, ds, meta, where, warn, what="acquisition duration")
    _optional(_radiopharm_meta, ds, meta, False, where, warn, what="radiopharmaceutical information")
    _optional(_pet_style_meta, [ds], meta, where, warn, what="decay-correction information")
    _optional(_decay_reference_meta, [ds], meta, False, where, warn, what="decay reference time")
    if n_gates > 1:
        meta["gates_summed"] = Sourced(n_gates, "frames with the same SliceVector (0054,0080) summed")
    return _finish(Series(image=image, modality="NM", meta=meta, files=[path] if path else []), warn)


def _may_be_non_finite(stored_dtype, slope, intercept) -> bool:
    """True when stored values times slope plus intercept may be NaN or overflow float32."""
    if np.dtype(stored_dtype).kind == "f":
        return True
    big = float(np.max(np.abs(slope))) * 2.0**32 + float(np.max(np.abs(intercept)))
    return not big < 3.0e38


def _zero_non_finite(values: np.ndarray, where: str, warn: list[str]) -> None:
    """Set NaN and infinite voxels to 0 in place, with a warning."""
    bad = ~np.isfinite(values)
    n = int(np.count_nonzero(bad))
    if n:
        values[bad] = 0.0
        warn.append(f"{where}: {n} voxels are not finite (NaN or infinite after rescaling): set to 0")


def _rescale_in_place(values: np.ndarray, slope: float, intercept: float) -> None:
    """values = values * slope + intercept in float32, in place (overflow gives infinities, no warning)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if slope != 1:
            values *= np.float32(slope)
        if intercept != 0:
            values += np.float32(intercept)


def _apply(stored: np.ndarray, slope, intercept, n_gates: int = 1) -> np.ndarray:
    """float32 values = stored * slope + intercept (scalars or per-slice arrays), vectorised.

    Overflow gives infinities (see :func:`_zero_non_finite`), not warnings.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        out = stored.astype(np.float32, copy=True)
        slope = np.asarray(slope, dtype=np.float64)
        intercept = np.asarray(intercept, dtype=np.float64) * n_gates
        if slope.ndim:
            slope, intercept = slope[:, None, None], intercept[:, None, None]
        if np.any(slope != 1):
            out *= slope.astype(np.float32)
        if np.any(intercept != 0):
            out += intercept.astype(np.float32)
    return out


# ---------------------------------------------------------------- slice stacks (CT, PET)
def _as_items(files) -> list[tuple[Path | None, Any]]:
    if isinstance(files, (str, Path)):
        p = Path(files)
        files = sorted(q for q in p.iterdir() if q.is_file()) if p.is_dir() else [p]
    items = []
    for f in files:
        if isinstance(f, (str, Path)):
            ds, why = _read_file(Path(f))
            if ds is None:
                raise InputError(f"cannot read {Path(f)}: {why}")
            items.append((Path(f), ds))
        else:
            items.append(_as_dataset(f))
    if not items:
        raise InputError("no files given")
    return items


def read_ct_series(files) -> Series:
    """Read a CT volume stored one slice per file.

    Parameters
    ----------
    files : sequence of path-like or pydicom.Dataset, or a folder
        The slices of one series, in any order.

    Returns
    -------
    Series
        ``modality`` ``"CT"``, values float32 HU
        (stored * ``RescaleSlope`` + ``RescaleIntercept``).

    Raises
    ------
    InputError
        Fewer than two slices, mixed orientations, duplicate or irregular
        slice positions, malformed geometry tags.
    """
    with _quiet():
        return _read_stack(_as_items(files), "CT")


def read_pet_series(files) -> Series:
    """Read a PET volume stored one slice per file (PET Image Storage).

    Parameters
    ----------
    files : sequence of path-like or pydicom.Dataset, or a folder
        The slices of one series, in any order.

    Returns
    -------
    Series
        ``modality`` from ``Modality`` (``"PT"``; ``"NM"`` for SPECT saved as
        PET objects); values float32 in ``meta['units']``, each slice with its
        own ``RescaleSlope``. ``meta['decay_factor_per_slice']`` and
        ``meta['frame_reference_time_s_per_slice']`` hold per-slice values
        when they vary (several bed positions).

    Notes
    -----
    The slice spacing comes from the slice positions; ``SliceThickness`` is
    not the spacing.
    """
    with _quiet():
        return _read_stack(_as_items(files), "PT")


def _normal_positions(items, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(row, col, normal, positions (n,3)) with one orientation for all slices."""
    iops = np.array([_floats(ds, "ImageOrientationPatient", 6, _where(p, ds)) for p, ds in items])
    if np.max(np.abs(iops - iops[0])) > 1e-4:
        raise _SkipSeries(f"{where}: slices have different ImageOrientationPatient (0020,0037)")
    row, col, normal = _orientation(iops[0], where)
    ipps = np.array([_floats(ds, "ImagePositionPatient", 3, _where(p, ds)) for p, ds in items])
    return row, col, normal, ipps


_I16 = np.iinfo(np.int16)


def _int16_exact(px: np.ndarray, slope: float, intercept: float) -> bool:
    """True when ``px * slope + intercept`` is an integer in int16 range for every voxel of ``px`` (one slice).

    Hounsfield units usually are: a CT time series then takes int16 (six 512x512x300 CTs: 0.9 GB instead of
    1.9 GB as float32).
    """
    if px.dtype.kind not in "iu" or slope != round(slope) or intercept != round(intercept) or px.size == 0:
        return False
    ends = np.array([float(px.min()), float(px.max())]) * slope
    return bool(np.all(np.abs(ends) <= _I16.max) and _I16.min <= ends.min() + intercept
                and ends.max() + intercept <= _I16.max)


def _read_stack(items: list, kind: str) -> Series:
    where = _where(items[0][0], items[0][1]) + (f" (+{len(items) - 1} files)" if len(items) > 1 else "")
    warn: list[str] = []
    if len(items) < 2:
        raise _SkipSeries(f"{where}: a single slice is not a volume")
    shapes = {(_int(ds, "Rows", where), _int(ds, "Columns", where)) for _, ds in items}
    if len(shapes) != 1:
        raise _SkipSeries(f"{where}: slices of different sizes {sorted(shapes)}")
    row, col, normal, ipps = _normal_positions(items, where)
    d = ipps @ normal
    order = np.argsort(d, kind="stable")
    d_sorted = d[order]
    gaps = np.diff(d_sorted)
    if np.any(gaps < 1e-3):
        raise _SkipSeries(f"{where}: {int(np.sum(gaps < 1e-3))} duplicate slice positions (several volumes "
                          "in one series?)")
    n = len(items)
    step = (d_sorted[-1] - d_sorted[0]) / (n - 1)
    if np.max(np.abs(gaps - step)) > 0.05 * step:
        raise _SkipSeries(f"{where}: irregular slice spacing (gaps {gaps.min():.4g} to {gaps.max():.4g} mm): "
                          "missing slices?")
    offset = ipps[order[-1]] - ipps[order[0]]
    shear = np.linalg.norm(offset - (offset @ normal) * normal) / (n - 1)
    if shear > 0.01 * step:
        warn.append(f"{where}: slice positions are not along the slice normal (gantry tilt, {shear:.3g} mm "
                    "per slice in plane): the grid ignores the tilt")
    items = [items[k] for k in order]
    p0, ds0 = items[0]
    sp_i, sp_j = _pixel_spacing(ds0, where)
    for p, ds in items[1:]:
        if abs(_pixel_spacing(ds, _where(p, ds))[0] - sp_i) > 1e-4 * sp_i:
            raise _SkipSeries(f"{where}: slices have different PixelSpacing (0028,0030)")
    th = _float(ds0, "SliceThickness", where)
    if th is not None and abs(th - step) > 0.01 * step:
        warn.append(f"{where}: SliceThickness {th:g} mm differs from the slice spacing {step:.4g} mm "
                    "(spacing from positions used)")

    rows, cols = shapes.pop()
    if n * rows * cols * 4 > _MAX_BYTES:
        raise InputError(f"{where}: {n} slices of {rows}x{cols} exceed 8 GiB")
    values, maps = None, None  # values None: read when first used (LazyImage)
    if kind == "CT" and _lazy_pixels_ok(items, rows, cols):
        # headers say the pixels are plain integers of the declared size: read them when first used
        first: list[str] = []
        maps = [_value_mapping(ds, kind, _where(p, ds), first if k == 0 else []) for k, (p, ds) in enumerate(items)]
        for m in maps:
            m["float"] = False
        if any(_may_be_non_finite(np.dtype(np.int32), m["slope"], m["intercept"]) for m in maps):
            maps = None
        else:
            warn.extend(first)
    if maps is None:
        values, maps = _stack_pixels(items, kind, (n, rows, cols), where, warn)
    units = {m["units"] for m in maps}
    if len(units) != 1:
        raise InputError(f"{where}: slices are in different units {sorted(units)}")
    slopes = np.array([m["slope"] for m in maps])
    icpts = np.array([m["intercept"] for m in maps])
    mp = maps[0]
    varies = np.ptp(slopes) > 0 or np.ptp(icpts) > 0
    geometry = dict(origin_mm=ipps[order[0]], spacing_mm=(sp_i, sp_j, step),
                    direction=np.column_stack([row, col, normal]), units=mp["units"])
    if values is None:
        def load(items=items, shape=(n, rows, cols), where=where):
            with _quiet():
                return _stack_pixels(items, kind, shape, where, [])[0]

        image = LazyImage((n, rows, cols), load, **geometry)
    else:
        image = Image(values, **geometry)

    datasets = [ds for _, ds in items]
    modality = kind
    if kind == "PT":
        mod = _text(ds0, "Modality", where)
        modality = "NM" if mod == "NM" else "PT"
    meta = _common_meta(ds0, modality, where, warn)
    meta["geometry"] = Sourced("slices", f"{_tag('ImagePositionPatient')} of {n} slices sorted along the normal "
                                         f"of {_tag('ImageOrientationPatient')}; spacing {step:.6g} mm from positions")
    meta["units"] = Sourced(mp["units"], mp["units_source"])
    if varies:
        names = (f"{_tag('RealWorldValueSlope')} / {_tag('RealWorldValueIntercept')}" if mp["mapping"] == "RWVM"
                 else f"{_tag('RescaleSlope')} / {_tag('RescaleIntercept')}")
        meta["value_mapping"] = Sourced(mp["mapping"], f"{names} of each slice (they differ slice by slice)")
    else:
        meta["value_mapping"] = Sourced(mp["mapping"], mp["mapping_source"])
    _optional(_start_meta, meta, datasets, where, warn, what="acquisition time")
    if kind == "PT":
        _optional(_pet_duration, datasets, meta, where, warn, what="acquisition duration")
        _optional(_radiopharm_meta, ds0, meta, True, where, warn, what="radiopharmaceutical information")
        _optional(_pet_style_meta, datasets, meta, where, warn, what="decay-correction information")
        _optional(_decay_reference_meta, datasets, meta, True, where, warn, what="decay reference time")
        _optional(_normalise_beds, image.array, datasets, meta, where, warn, what="bed positions")
        nsl = _int(ds0, "NumberOfSlices", where)
        if nsl is not None and nsl != n:
            warn.append(f"{where}: NumberOfSlices (0054,0081) is {nsl} but {n} slices were found")
    elif kind == "NM":
        _optional(_nm_duration, ds0, meta, where, warn, what="acquisition duration")
        _optional(_radiopharm_meta, ds0, meta, False, where, warn, what="radiopharmaceutical information")
        _optional(_pet_style_meta, datasets, meta, where, warn, what="decay-correction information")
        _optional(_decay_reference_meta, datasets, meta, False, where, warn, what="decay reference time")
    return _finish(Series(image=image, modality=modality, meta=meta, files=[p for p, _ in items if p]), warn)


def _lazy_pixels_ok(items: list, rows: int, cols: int) -> bool:
    """Whether every slice's pixels can be read later without surprises: one frame, one sample, uncompressed
    8/16/32-bit integers whose declared length matches the header and fits in the file."""
    for p, ds in items:
        if p is None or any(kw in ds for kw in ("FloatPixelData", "DoubleFloatPixelData")) or "PixelData" not in ds:
            return False
        try:
            frames, r, c, bits, spp = _declared(ds, "")
            ts = _transfer_syntax(ds)
        except InputError:
            return False
        if (frames, r, c, spp) != (1, rows, cols, 1) or ts.is_compressed or bits not in (8, 16, 32):
            return False
        need = rows * cols * bits // 8
        have = _value_length(ds, _PIXEL_TAGS["PixelData"])
        if have is None or not need <= have <= need + 1:
            return False
        try:
            if os.path.getsize(p) < have:
                return False
        except OSError:
            return False
    return True


def _stack_pixels(items: list, kind: str, shape: tuple, where: str, warn: list[str]):
    """(values, value mappings) of a slice stack, slice by slice: CT as int16 while every slice maps exactly
    into it, else float32."""
    n, rows, cols = shape
    values = np.empty((n, rows, cols), dtype=np.int16 if kind == "CT" else np.float32)
    maps = []
    for k, (p, ds) in enumerate(items):
        w = _where(p, ds)
        px = _stored_pixels(ds, w)
        if px.shape[0] != 1:
            raise _SkipSeries(f"{w}: multi-frame file in a slice series")
        m = _value_mapping(ds, kind, w, warn if k == 0 else [])
        m["float"] = px.dtype.kind == "f"
        maps.append(m)
        if values.dtype == np.int16:
            slope, icpt = float(m["slope"]), float(m["intercept"])
            if _int16_exact(px[0], slope, icpt):
                dst = values[k]
                if slope == 1:
                    np.add(px[0], np.int32(icpt), out=dst, casting="unsafe")  # exact: the result fits (checked)
                else:
                    np.copyto(dst, px[0].astype(np.int32) * int(slope) + int(icpt), casting="unsafe")
                continue
            values = np.concatenate([values[:k].astype(np.float32), np.empty((n - k, rows, cols), np.float32)])
        dst = values[k]  # rescale slice by slice while it is in cache
        with np.errstate(over="ignore", invalid="ignore"):
            np.copyto(dst, px[0], casting="unsafe")
        _rescale_in_place(dst, m["slope"], m["intercept"])
    if values.dtype == np.float32 and any(_may_be_non_finite(
            np.dtype(np.float32) if m.get("float") else np.dtype(np.int32), m["slope"], m["intercept"])
            for m in maps):
        _zero_non_finite(values, where, warn)
    return values, maps


def _pet_duration(datasets: list, meta: dict, where: str, warn: list[str]) -> None:
    """ActualFrameDuration; with several bed positions, first start to last end."""
    try:
        durs = [_float(d, "ActualFrameDuration", where) for d in datasets]
    except InputError as e:
        warn.append(f"{e}; duration left out")
        return
    if durs[0] is None:
        return
    starts = set()
    for d, ms in zip(datasets, durs):
        s = _start_of(d, where, [])
        if s is not None and ms is not None:
            starts.add((s[1], ms))
    if len({s for s, _ in starts}) > 1:
        first = min(s for s, _ in starts)
        end = max(s + dt.timedelta(milliseconds=ms) for s, ms in starts)
        meta["duration_s"] = Sourced((end - first).total_seconds(),
                                     f"{_tag('ActualFrameDuration')} and the slices' acquisition times "
                                     "(several bed positions): first start to last end")
    else:
        meta["duration_s"] = Sourced(durs[0] / 1000.0, f"{_tag('ActualFrameDuration')} (ms -> s)")


# ---------------------------------------------------------------- folders
def _split_stack(items: list, kind: str) -> list[list]:
    """Split one series' slices into volumes: same size/orientation, no duplicate positions."""
    groups: dict = defaultdict(list)
    for p, ds in items:
        w = _where(p, ds)
        try:
            iop = _floats(ds, "ImageOrientationPatient", 6, w, required=False)
        except InputError:
            iop = None
        key = (_safe_text(ds, "Rows"), _safe_text(ds, "Columns"),
               None if iop is None else tuple(np.round(iop, 3)))
        groups[key].append((p, ds))
    out = []
    for sub in groups.values():
        try:
            normal = _orientation(_floats(sub[0][1], "ImageOrientationPatient", 6, "x"), "x")[2]
            pos = [round(float(_floats(ds, "ImagePositionPatient", 3, "x") @ normal), 2) for _, ds in sub]
        except InputError:  # the reader reports malformed geometry with the file name
            out.append(sub)
            continue
        if len(set(pos)) == len(pos):
            out.append(sub)
            continue
        for kw in ("AcquisitionNumber", "TemporalPositionIdentifier", "FrameReferenceTime", "AcquisitionTime"):
            parts: dict = defaultdict(list)
            for (p, ds), z in zip(sub, pos):
                parts[_safe_text(ds, kw)].append(((p, ds), z))
            if len(parts) > 1 and all(len({z for _, z in v}) == len(v) for v in parts.values()):
                out += [[it for it, _ in v] for v in parts.values()]
                break
        else:
            out.append(sub)  # the reader reports the duplicates
    return out


def _label(items: list, root: Path, kind: str) -> str:
    p, ds = items[0]
    desc = _safe_text(ds, "SeriesDescription")
    try:
        rel = str(p.relative_to(root)) if root.is_dir() else p.name
    except ValueError:
        rel = p.name
    more = f" + {len(items) - 1} files" if len(items) > 1 else ""
    return f"{kind} series '{desc}' ({rel}{more})" if desc else f"{kind} series ({rel}{more})"


def load_dicom_folder(path) -> tuple[list[Series], list[str]]:
    """Load every CT, SPECT (NM ``RECON TOMO``) and PET volume under a folder.

    Parameters
    ----------
    path : path-like
        A folder (searched at any depth, any file names) or one DICOM file.

    Returns
    -------
    series : list of Series
        One per usable volume, in the order of their first file's path.
    warnings : list of str
        Files and series skipped (non-DICOM, truncated, planar NM, unsupported
        SOP classes, ...) and what the readers noted.

    Raises
    ------
    InputError
        The folder does not exist or holds no usable image series, or a
        series has malformed geometry tags.

    Examples
    --------
    A folder of one study (not run here; see ``tests/test_load_dicom.py``)::

        series, warnings = load_dicom_folder("study/dicom")
        [s.describe() for s in series]
        # ['CT 512x512x120 @ 0.977x0.977x3 mm', 'NM 128x128x128 @ 4.8x4.8x4.8 mm SPECT']
    """
    root = Path(path)
    if not root.exists():
        raise InputError(f"{root} does not exist: give the folder holding the DICOM files")
    if root.is_file():
        files = [root]
    else:
        files = sorted(p for p in root.rglob("*") if p.is_file())
    warn: list[str] = []
    n_file_warn = 0
    groups: dict[str, list] = defaultdict(list)
    n_dicom = 0

    def rel(p: Path) -> str:
        try:
            return str(p.relative_to(root)) if root.is_dir() else p.name
        except ValueError:
            return p.name

    for p in files:
        if p.name.startswith(".") or p.name.lower().endswith(_OTHER_READERS):
            continue
        ds, why = _read_file(p)
        if ds is None:
            n_file_warn += 1
            if n_file_warn <= _MAX_FILE_WARNINGS:
                warn.append(f"skipped {rel(p)}: {why}")
            continue
        n_dicom += 1
        with _quiet():
            uid = _safe_text(ds, "SeriesInstanceUID")
            kind = _kind(ds)
        key = uid or f"(no SeriesInstanceUID) {kind} {_safe_text(ds, 'Rows')}x{_safe_text(ds, 'Columns')}"
        groups[key].append((p, ds))
    if n_file_warn > _MAX_FILE_WARNINGS:
        warn.append(f"... and {n_file_warn - _MAX_FILE_WARNINGS} more files skipped")

    found: list[tuple[Path, Series]] = []
    with _quiet():
        for uid, items in groups.items():
            by_kind: dict[str, list] = defaultdict(list)
            for p, ds in items:
                by_kind[_kind(ds)].append((p, ds))
            for kind, sub in by_kind.items():
                for first, series, msgs in _load_group(kind, sub, root):
                    warn += msgs
                    if series is not None:
                        found.append((first, series))
    found.sort(key=lambda x: str(x[0]))
    series = [s for _, s in found]
    if not series:
        detail = f"; {warn[0]}" if warn else ""
        raise InputError(f"no usable image series in {root} ({n_dicom} DICOM files read, "
                         f"{n_file_warn} files skipped){detail}")
    normalise_timezones(series, warn)
    return series, warn


def normalise_timezones(series: list[Series], warnings: list[str]) -> None:
    """Bring times with different UTC offsets onto one clock, in place.

    Times stay timezone-naive local times. When all series (and injection
    date-times) carry the same ``TimezoneOffsetFromUTC`` (or none), nothing
    changes. When they differ (a daylight-saving change between scans, a
    scanner set to UTC), every ``acquisition_start``, ``injection_time`` and
    ``injection_time_of_day`` is converted to the offset of the earliest scan
    (compared in UTC), the source says so, and a warning is added. A time
    without an offset among times with offsets is taken as being in that
    reference offset (with a warning).

    Examples
    --------
    >>> import datetime as dt
    >>> from spectrack.geometry import Image
    >>> a = Series(Image(np.zeros((1, 1, 1))), "NM", {"acquisition_start": Sourced(dt.datetime(2026, 3, 29, 1, 30), "a"),
    ...                                               "timezone_offset": Sourced("+0100", "t")})
    >>> b = Series(Image(np.zeros((1, 1, 1))), "NM", {"acquisition_start": Sourced(dt.datetime(2026, 3, 29, 3, 30), "b"),
    ...                                               "timezone_offset": Sourced("+0200", "t")})
    >>> w = []
    >>> normalise_timezones([a, b], w)
    >>> b.acquisition_start - a.acquisition_start
    datetime.timedelta(seconds=3600)
    """
    stamps = []
    for s in series:
        own = s.get("timezone_offset")
        for key in ("acquisition_start", "injection_time", "injection_time_of_day"):
            if s.get(key) is None:
                continue
            off = (s.get("injection_timezone_offset") or own) if key == "injection_time" else own
            stamps.append((s, key, off if isinstance(off, str) and _TZ_RE.match(off) else None))
    offsets = {off for _, _, off in stamps if off}
    if len(offsets) <= 1:
        return
    acq = [(s.get(k) - dt.timedelta(minutes=_tz_minutes(off)), off) for s, k, off in stamps
           if k == "acquisition_start" and off]
    ref = min(acq)[1] if acq else sorted(offsets)[0]
    unknown = 0
    for s, key, off in stamps:
        if off is None:
            unknown += 1
            continue
        if off == ref:
            continue
        shift = dt.timedelta(minutes=_tz_minutes(ref) - _tz_minutes(off))
        v = s.get(key)
        if key == "injection_time_of_day":
            v = (dt.datetime.combine(dt.date(2000, 1, 2), v) + shift).time()
        else:
            v = v + shift
        s.meta[key] = Sourced(v, f"{s.source(key)}, converted from UTC{off} to UTC{ref}")
    for s in series:
        if s.get("timezone_offset") and s.get("timezone_offset") != ref:
            s.set("timezone_offset", ref, f"times converted to UTC{ref} (header: UTC{s.get('timezone_offset')})")
        s.meta.pop("injection_timezone_offset", None)
    warnings.append(f"the series carry different UTC offsets ({', '.join(sorted(offsets))}, "
                    "TimezoneOffsetFromUTC or date-time suffixes): all times were converted to "
                    f"UTC{ref}, the offset of the first scan, before comparing them"
                    + (f"; {unknown} time(s) without an offset were taken as UTC{ref}" if unknown else ""))


def _load_group(kind: str, items: list, root: Path):
    """Yield (first path, Series or None, warnings) for the files of one series and SOP class."""
    items = sorted(items, key=lambda it: str(it[0]))
    label = _label(items, root, kind.split(":")[0] or "unknown")
    if kind.startswith("other"):
        sop = kind.split(":", 1)[1]
        yield items[0][0], None, [f"skipped {label}: SOP class {sop or 'missing'} is not a CT, NM or PET image"]
        return
    if kind not in _IMAGE_KINDS:
        yield items[0][0], None, [f"skipped {label}: {kind} objects are not read "
                                  "(only CT, NM and PET Image Storage; export as those)"]
        return
    if kind == "NM":
        single = all((_int_or(ds, "NumberOfFrames") or 1) == 1 and "ImagePositionPatient" in ds
                     and (_image_type(ds, "") + ["", "", ""])[2] not in _NM_PLANAR for _, ds in items)
        if len(items) > 1 and single:
            chunks = [("stack", c) for c in _split_stack(items, kind)]
        else:
            chunks = [("nm", [it]) for it in items]
    else:
        localizers = [it for it in items if kind == "CT" and "LOCALIZER" in _image_type(it[1], "")]
        if localizers:
            loc = {id(it[1]) for it in localizers}
            items = [it for it in items if id(it[1]) not in loc]
            yield localizers[0][0], None, [f"skipped {_label(localizers, root, kind)}: localizer (scout) image(s)"]
            if not items:
                return
        chunks = [("stack", c) for c in _split_stack(items, kind)]
    for how, chunk in chunks:
        desc = _safe_text(chunk[0][1], "SeriesDescription")
        lab = f"{kind} series '{desc}'" if desc else f"{kind} series"
        try:
            if how == "nm":
                s = _read_nm(chunk[0][0], chunk[0][1])
            else:
                s = _read_stack(chunk, kind)
        except _SkipSeries as e:
            if how == "nm":  # name the file by its path in the folder, not only its name
                msg = str(e).removeprefix(f"{_where(chunk[0][0], chunk[0][1])}: ")
                yield chunk[0][0], None, [f"skipped {_label(chunk, root, kind)}: {msg}"]
            else:
                yield chunk[0][0], None, [f"skipped {lab}: {e}"]
            continue
        msgs = [f"{lab}: {w}" for w in s.get("load_warnings", [])]
        yield chunk[0][0], s, msgs


def _int_or(ds, keyword: str) -> int | None:
    try:
        return _int(ds, keyword, "file")
    except InputError:
        return None


# ---------------------------------------------------------------- planar counts
def planar_counts(path) -> dict:
    """Counts and timing of a planar NM acquisition (for sensitivity calibration).

    Parameters
    ----------
    path : path-like or pydicom.Dataset
        One NM object (``STATIC``, ``WHOLE BODY``, ``DYNAMIC``, ``TOMO``...).

    Returns
    -------
    dict
        ``counts_per_frame`` (list of int: stored values summed per frame),
        ``total_counts`` (int), ``n_frames``, ``frame_vectors`` (the frame
        vectors named by ``FrameIncrementPointer``, e.g. ``DetectorVector``),
        ``frame_duration_s`` (``ActualFrameDuration`` ms -> s),
        ``duration_s`` with ``duration_source`` (frames acquired at the same
        time, such as two detectors or energy windows, count once; dynamic
        phases and tomographic rotations are summed),
        ``acquisition_start`` (naive datetime) with
        ``acquisition_start_source``, ``image_type``, ``series_description``,
        ``counts_accumulated`` (``CountsAccumulated`` when present), ``path``
        and ``warnings``.

    Raises
    ------
    InputError
        The file cannot be read or is not an NM image.

    Examples
    --------
    A planar source acquisition (not run here; see ``tests/test_load_dicom.py``)::

        info = planar_counts("Syringe_1cc.dcm")
        info["total_counts"] / info["duration_s"]  # cps, e.g. 2398.4
    """
    with _quiet():
        p, ds = _as_dataset(path)
        where = _where(p, ds)
        if _kind(ds) != "NM":
            raise InputError(f"{where}: not an NM image (SOP class {_kind(ds)}): planar counts need an NM acquisition")
        warn: list[str] = []
        stored = _stored_pixels(ds, where)
        per_frame = stored.reshape(stored.shape[0], -1).sum(axis=1, dtype=np.int64 if stored.dtype.kind in "ui"
                                                              else np.float64)
        pointers = _frame_pointers(ds, where)
        vectors = {}
        for kw in pointers:
            if not kw.startswith("("):
                vals = _as_list(_raw(ds, kw, where))
                vectors[kw] = [int(v) for v in vals]
        afd = _float(ds, "ActualFrameDuration", where)
        itype = _image_type(ds, where)
        v3 = itype[2] if len(itype) > 2 else ""
        duration, dsrc = None, ""
        rot = _seq(ds, "RotationInformationSequence", where, warn)
        phase = _seq(ds, "PhaseInformationSequence", where, warn)
        if v3 in ("TOMO", "GATED TOMO", "RECON TOMO", "RECON GATED TOMO") and rot:
            m: dict = {}
            _nm_duration(ds, m, where, warn)
            if "duration_s" in m:
                duration, dsrc = m["duration_s"].value, m["duration_s"].source
        elif v3 == "DYNAMIC" and phase:
            total = 0.0
            for item in phase:
                a = _float(item, "ActualFrameDuration", where)
                nf = _int(item, "NumberOfFramesInPhase", where)
                if a is None or nf is None:
                    total = None
                    break
                total += a * nf / 1000.0
            if total is not None:
                duration = total
                dsrc = (f"{_tag('PhaseInformationSequence')}: sum of {_tag('ActualFrameDuration')} x "
                        f"{_tag('NumberOfFramesInPhase')}")
        if duration is None and afd is not None:
            n_time = len(set(vectors.get("TimeSliceVector", [1])))
            duration = afd / 1000.0 * n_time
            dsrc = f"{_tag('ActualFrameDuration')} (ms -> s)" + (
                f" x {n_time} time slices" if n_time > 1 else
                (" (frames acquired simultaneously: " + ", ".join(vectors) + ")" if len(per_frame) > 1 else ""))
        if duration is None:
            warn.append(f"{where}: no ActualFrameDuration (0018,1242): duration unknown")
        start = _start_of(ds, where, warn)
        out = {
            "path": p,
            "counts_per_frame": [int(v) if stored.dtype.kind in "ui" else float(v) for v in per_frame],
            "total_counts": int(per_frame.sum()) if stored.dtype.kind in "ui" else float(per_frame.sum()),
            "n_frames": int(stored.shape[0]),
            "frame_vectors": vectors,
            "frame_duration_s": None if afd is None else afd / 1000.0,
            "duration_s": duration,
            "duration_source": dsrc or None,
            "acquisition_start": None if start is None else start[1],
            "acquisition_start_source": None if start is None else start[2],
            "image_type": [str(v) for v in _as_list(_raw(ds, "ImageType", where))],
            "series_description": _text(ds, "SeriesDescription", where),
            "counts_accumulated": _int_or(ds, "CountsAccumulated"),
            "warnings": warn,
        }
        return out
