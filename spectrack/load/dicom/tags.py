"""Typed access to DICOM tags: values straight from still-raw elements, malformed values as InputError.

Still-raw DS, IS, DA, TM, DT and plain-ASCII text values are decoded here
from their bytes (pydicom's conversion, with validation, of each value
dominates the load time of long slice series); sequences that pydicom
cannot parse are reported and treated as absent.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from functools import lru_cache

import numpy as np

from ...errors import InputError


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
        # the element as stored, as ``ds.get_item(tag)`` returns it, without its Tag() conversion (this runs
        # ~30 times per file of a slice series); a value left in the file (value None) is not raw bytes, so it
        # is read and converted by ``ds[tag]`` below, as get_item would have
        store = getattr(ds, "_dict", None)
        elem = store.get(tag) if type(store) is dict else ds.get_item(tag)
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


def _int_or(ds, keyword: str) -> int | None:
    try:
        return _int(ds, keyword, "file")
    except InputError:
        return None
