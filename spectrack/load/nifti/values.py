"""Values of a PET-BIDS JSON sidecar: numbers (checked finite and in range), true/false flags, text, units
of values and of activity, ISO 8601 date-times and times of day."""

from __future__ import annotations

import datetime as dt
import math

from ...errors import InputError

__all__ = ["parse_datetime", "parse_datetime_offset", "parse_time_of_day", "activity_to_mbq"]

#: Largest time offset accepted in a sidecar (seconds): ten years.
_MAX_SECONDS = 10 * 365.25 * 86400

_UNITS = {
    "bq/ml": ("Bq/mL", 1.0), "bqml": ("Bq/mL", 1.0), "bq/cc": ("Bq/mL", 1.0),
    "kbq/ml": ("Bq/mL", 1e3), "kbq/cc": ("Bq/mL", 1e3), "mbq/ml": ("Bq/mL", 1e6),
    "counts": ("counts", 1.0), "cnts": ("counts", 1.0), "count": ("counts", 1.0), "propcnts": ("counts", 1.0),
    "cps": ("cps", 1.0), "counts/s": ("cps", 1.0), "propcps": ("cps", 1.0), "hu": ("HU", 1.0),
}
_ACTIVITY_TO_MBQ = {"bq": 1e-6, "kbq": 1e-3, "mbq": 1.0, "gbq": 1e3, "mci": 37.0, "uci": 0.037, "ci": 37000.0}


def activity_to_mbq(value: float, units: str) -> float:
    """Convert an activity in ``units`` (Bq, kBq, MBq, GBq, mCi, uCi) to MBq."""
    key = str(units).strip().lower().replace("µ", "u")
    if key not in _ACTIVITY_TO_MBQ:
        raise InputError(f"unknown activity unit {units!r}: use one of Bq, kBq, MBq, GBq, mCi, uCi")
    return float(value) * _ACTIVITY_TO_MBQ[key]


def _number(side: dict, key: str, src: str, *, minimum: float | None = None, positive: bool = False,
            seconds: bool = False) -> float | None:
    """A finite number from a sidecar key (first element of a list); ``None`` when absent or null.

    Raises
    ------
    InputError
        The value is not a number, not finite, or out of range.
    """
    v = side.get(key)
    if isinstance(v, list):
        if not v:
            return None
        v = v[0]
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    try:
        if isinstance(v, bool) or isinstance(v, (dict, list)):
            raise TypeError
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{src}: {key} = {v!r} is not a number; fix the sidecar") from None
    if not math.isfinite(f) or (positive and f <= 0) or (minimum is not None and f < minimum) or \
            (seconds and abs(f) > _MAX_SECONDS):
        want = "a positive" if positive else "a finite" if minimum is None else f"a number >= {minimum:g}"
        raise InputError(f"{src}: {key} = {v!r} is not {want} number" + (" of seconds" if seconds else "")
                         + "; fix the sidecar")
    return f


def parse_datetime(text: str, what: str = "date-time") -> dt.datetime:
    """Parse an ISO 8601 date-time (``2026-03-14T21:40:00``, space allowed), timezone-naive.

    A timezone offset, if given, is dropped: the result is the local time
    written (times in one study are compared, not placed on a world clock;
    :func:`parse_datetime_offset` also returns the offset).
    """
    return parse_datetime_offset(text, what)[0]


def parse_datetime_offset(text: str, what: str = "date-time") -> tuple[dt.datetime, str | None]:
    """Parse an ISO 8601 date-time: (naive local time, UTC offset as ``+HHMM`` or ``None``).

    Examples
    --------
    >>> parse_datetime_offset("2026-03-15T01:30:00+02:00")
    (datetime.datetime(2026, 3, 15, 1, 30), '+0200')
    """
    try:
        t = dt.datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except (ValueError, TypeError, OverflowError):
        raise InputError(f"cannot read {what} {text!r}: write it as ISO 8601, e.g. 2026-03-14T21:40:00") from None
    off = None
    if t.tzinfo is not None:
        delta = t.utcoffset()
        minutes = int(delta.total_seconds() // 60)
        sign = "-" if minutes < 0 else "+"
        off = f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    return t.replace(tzinfo=None), off


def parse_time_of_day(text: str, what: str = "time") -> dt.time:
    """Parse ``hh:mm[:ss[.ffffff]]`` or DICOM ``hhmmss[.ffffff]``."""
    s = str(text).strip()
    try:
        if ":" in s:
            return dt.time.fromisoformat(s)
        hh, mm = int(s[0:2]), int(s[2:4]) if len(s) >= 4 else 0
        sec = float(s[4:]) if len(s) > 4 else 0.0
        if not 0.0 <= sec < 61.0:
            raise ValueError(sec)
        sec = min(sec, 59.999999)  # a leap second becomes the end of minute 59
        return dt.time(hh, mm, int(sec), int(round((sec - int(sec)) * 1e6)) % 1000000)
    except (ValueError, IndexError, OverflowError):
        raise InputError(f"cannot read {what} {text!r}: write it as hh:mm:ss") from None


def _text_value(v) -> str | None:
    if v is None or isinstance(v, (dict, list)):
        return None
    t = str(v).strip()
    return t or None


def _flag(side: dict, key: str, src: str) -> bool:
    v = side.get(key)
    if isinstance(v, bool) or v is None:
        return bool(v)
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
        return v.strip().lower() in ("true", "yes", "1")
    raise InputError(f"{src}: {key} = {v!r} is not true or false; fix the sidecar")


def _by_dcm2niix(side: dict) -> bool:
    return str(side.get("ConversionSoftware", "")).strip().lower().startswith("dcm2niix")
