"""DICOM dates and times (DA, TM, DT), the start-time routes of a data set, and UTC offsets.

The parsers are hand-written, not :mod:`pydicom.valuerep` ``DA``/``TM``/``DT``:
on every value in the test suite's files and in the real scanner files
(``../shared/realdata``) the two agree, except the placeholder dates (the
EARL-PET ``ContentDate`` 00010101, which pydicom reads as year 1), but pydicom
takes or refuses other values than these parsers do (old ``HH:MM:SS`` times,
date-only DT, trailing characters, leap seconds: see the note above each
parser), so keeping them keeps what the loaders accept.
``tests/test_dicom_datetime_vs_pydicom.py`` shows each difference.
"""

from __future__ import annotations

import datetime as dt
import re

from ...errors import InputError
from ..model import Series, Sourced
from .tags import _tag, _text


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


# Not pydicom.valuerep.DA: DA refuses ISO "2025-07-09" and mixed "2025.0709" (read here) and takes
# "2025 7 9" and "2025+7+9" (int() of each slice; refused here); the placeholder year (< 1900) is ours.
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


# Not pydicom.valuerep.TM: TM refuses the old ACR-NEMA "12:28:04" / "12:28" and fractions of more than 6
# digits (truncated here), takes "122804." (refused here), and warns on a leap second 60 (silently 59 here).
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


# Not pydicom.valuerep.DT: DT takes a date without hour ("20250709", "2025") and trailing characters
# ("20250709122804xyz": it matches a prefix), both refused here, takes any +HHMM offset (checked here: at
# most 14 h either way; PS3.5 says -1200 to +1400), and warns on a leap second.
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
    >>> import numpy as np
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
