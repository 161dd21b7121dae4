"""The times of a PET-BIDS (or dcm2niix) sidecar: acquisition start, TimeZero, injection time, and the decay
correction state with its reference time, checked against ``DecayCorrectionFactor``/``DecayFactor``."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

from ...errors import InputError
from ..model import Series, Sourced
from .values import _by_dcm2niix, _flag, _number, _text_value, parse_datetime_offset, parse_time_of_day


def _set_times(s: Series, side: dict, src: str, path: Path, scans: dict | None, warn: list[str]) -> None:
    """Acquisition start, injection time and decay-correction state from a sidecar."""
    try:
        _set_times_checked(s, side, src, path, scans, warn)
    except OverflowError:
        raise InputError(f"{src}: the times of {path.name} (AcquisitionDateTime, TimeZero, ScanStart, "
                         "InjectionStart) fall outside the calendar: fix the sidecar") from None


def _time_of_day_s(t) -> float:
    return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6


def _clock_gap_s(a, b) -> float:
    """Signed seconds from time of day ``b`` to ``a``, folded into (-12 h, 12 h]."""
    d = (_time_of_day_s(a) - _time_of_day_s(b)) % 86400.0
    return d - 86400.0 if d > 43200.0 else d


def _check_acquisition_time(acq: Sourced, side: dict, src: str, warn: list[str]) -> Sourced:
    """Compare a dated acquisition start with the time of day dcm2niix writes (``AcquisitionTime``).

    ``AcquisitionTime`` is this image's first slice; ``SeriesTime`` is the series start, earlier for a
    later bed. A date-time equal to the series time instead is moved to the acquisition time, with a warning.
    """
    tod = _text_value(side.get("AcquisitionTime"))
    if tod is None:
        return acq
    at = parse_time_of_day(tod, f"AcquisitionTime in {src}")
    gap = _clock_gap_s(acq.value.time(), at)
    if abs(gap) <= 1.0:
        return acq
    st = _text_value(side.get("SeriesTime"))
    if st is not None and abs(_clock_gap_s(acq.value.time(), parse_time_of_day(st, f"SeriesTime in {src}"))) <= 1.0:
        moved = acq.value - dt.timedelta(seconds=gap)
        warn.append(f"{src}: {acq.source} ({acq.value:%H:%M:%S}) is the sidecar's SeriesTime (the series start), "
                    f"not this image's AcquisitionTime {tod}: acquisition start taken as {moved:%Y-%m-%d %H:%M:%S}")
        return Sourced(moved, f"{acq.source}, moved to the sidecar's AcquisitionTime")
    warn.append(f"{src}: {acq.source} ({acq.value:%H:%M:%S}) differs by {abs(gap):.0f} s from the sidecar's "
                f"AcquisitionTime {tod}; {acq.source} is used")
    return acq


_DECAY_TERMS = ("NONE", "START", "ADMIN")


def _decay_state(side: dict, src: str, scan_start, first_rel, inj_start, warn: list[str]):
    """(state, reference in s after TimeZero, source) from ``DecayCorrection`` and/or
    ``ImageDecayCorrected`` + ``ImageDecayCorrectionTime``; ``(None, None, None)`` when the sidecar says nothing.

    ``DecayCorrection`` is the DICOM term dcm2niix copies (START, ADMIN, NONE); PET-BIDS says the same with
    ``ImageDecayCorrected`` and ``ImageDecayCorrectionTime`` (s after TimeZero): a time equal to
    ``ScanStart`` is START, one equal to ``InjectionStart`` is ADMIN, any other a given time (TIME).
    When both are present and disagree, ``DecayCorrection`` (the scanner's own attribute) is used.
    """
    dc = _text_value(side.get("DecayCorrection"))
    if dc is not None:
        dc = dc.upper()
        if dc not in _DECAY_TERMS:
            raise InputError(f"{src}: DecayCorrection = {side.get('DecayCorrection')!r} is not NONE, START or "
                             "ADMIN; fix the sidecar")
    bids = None
    ref = None
    if "ImageDecayCorrected" in side:
        ref = _number(side, "ImageDecayCorrectionTime", src, seconds=True)
        if not _flag(side, "ImageDecayCorrected", src):
            bids = ("NONE", None, "ImageDecayCorrected = false")
        elif ref is None:
            bids = ("START?", None, "ImageDecayCorrected = true")
        elif scan_start is not None and math.isclose(ref, scan_start, abs_tol=0.5):
            bids = ("START", ref, "ImageDecayCorrectionTime = ScanStart")
        elif scan_start is None and first_rel is not None and math.isclose(ref, first_rel, abs_tol=0.5):
            bids = ("START", ref, "ImageDecayCorrectionTime = FrameTimesStart")
        elif inj_start is not None and math.isclose(ref, inj_start, abs_tol=0.5):
            bids = ("ADMIN", ref, "ImageDecayCorrectionTime = InjectionStart")
        else:
            bids = ("TIME", ref, f"ImageDecayCorrectionTime = {ref:g} s")
    start_rel = scan_start if scan_start is not None else first_rel
    if dc is None:
        if bids is None:
            return None, None, None
        state, r, how = bids
        if state == "START?":
            warn.append(f"{src}: ImageDecayCorrected is true but ImageDecayCorrectionTime is absent: values "
                        "taken as decay-corrected to the scan start (ScanStart) - assumed")
            return "START", start_rel, f"{src}: {how}, no ImageDecayCorrectionTime: the scan start assumed"
        return state, r, f"{src}: {how}"
    how = f"{src}: DecayCorrection = {dc}"
    if bids is not None:
        b_state = bids[0]
        agree = (b_state == dc or (dc == "START" and b_state == "START?")
                 or (dc == "ADMIN" and b_state == "TIME" and inj_start is None))
        if not agree:
            warn.append(f"{src}: DecayCorrection {dc} but {bids[2]} says {b_state.rstrip('?')}: DecayCorrection "
                        "(the scanner's attribute) is used")
        elif b_state != "START?":
            how += f" ({bids[2]})"
    if dc == "NONE":
        return "NONE", None, how
    if dc == "START":
        return "START", start_rel, how
    return "ADMIN", ref if (bids is not None and bids[1] is not None) else None, how


def _decay_factor_check(s: Series, side: dict, src: str, state: str, first_rel, target_rel, what: str,
                        warn: list[str]) -> None:
    """Check the sidecar's DecayCorrectionFactor (or dcm2niix's DecayFactor) against the decay reference.

    For decay-corrected values the factor is ``exp(lambda (t_frame - t_ref))`` with ``t_frame`` the time in
    the frame at which the activity equals its mean (or the midpoint): the reference it implies is
    ``first frame start + t_frame - ln(factor) / lambda``.
    """
    from ...physics import decay_constant_per_h, mean_activity_time_h

    hl_h = s.get("half_life_h")
    key = "DecayCorrectionFactor" if side.get("DecayCorrectionFactor") is not None else "DecayFactor"
    raw = side.get(key)
    raw = raw[0] if isinstance(raw, list) and raw else raw
    f = _number({key: raw}, key, src, minimum=0.0) if raw is not None else None
    d = _number(side, "FrameDuration", src, minimum=0.0, seconds=True)
    if not f or not hl_h or first_rel is None or target_rel is None or not d:
        return
    lam_s = decay_constant_per_h(hl_h) / 3600.0
    text = repr(raw) if isinstance(raw, float) else str(raw)
    dec = len(text.split("e")[0].split(".")[1]) if "." in text.split("e")[0] else 0
    tol = max(1.0, 0.5 * 10.0 ** -dec / f / lam_s) if "e" not in text.lower() else 1.0
    taus = [float(mean_activity_time_h(d / 3600.0, hl_h)) * 3600.0, d / 2.0]
    implied = [first_rel + t - math.log(f) / lam_s for t in taus]
    gap = abs(implied[0] - target_rel)
    if min(abs(v - target_rel) for v in implied) > tol:
        warn.append(f"{src}: {key} {f:g} puts the decay reference ({what}) at {implied[0]:.1f} s after TimeZero, "
                    f"{gap:.1f} s from the {state} reference ({target_rel:g} s); the latter is used")


def _set_times_checked(s: Series, side: dict, src: str, path: Path, scans: dict | None, warn: list[str]) -> None:
    acq = None
    if scans and path.name in scans:
        acq = Sourced(scans[path.name], f"scans.tsv: acq_time of {path.name}")
    elif side.get("AcquisitionDateTime"):
        when, off = parse_datetime_offset(side["AcquisitionDateTime"], f"AcquisitionDateTime in {src}")
        acq = Sourced(when, f"{src}: AcquisitionDateTime")
        if off is not None:
            s.set("timezone_offset", off, f"{src}: AcquisitionDateTime offset")
    if acq is not None:
        acq = _check_acquisition_time(acq, side, src, warn)
    scan_start = _number(side, "ScanStart", src, seconds=True)
    frame_start = _number(side, "FrameTimesStart", src, seconds=True)
    # never defaulted: an absent InjectionStart leaves the injection time unknown
    inj_start = _number(side, "InjectionStart", src, seconds=True)
    if frame_start is None and scan_start == 0 and _by_dcm2niix(side):
        # dcm2niix counts from the series start (SeriesTime, ScanStart 0); without FrameTimesStart the
        # image's own start is its AcquisitionTime
        at, st = _text_value(side.get("AcquisitionTime")), _text_value(side.get("SeriesTime"))
        if at is not None and st is not None:
            frame_start = _clock_gap_s(parse_time_of_day(at, f"AcquisitionTime in {src}"),
                                       parse_time_of_day(st, f"SeriesTime in {src}"))
    # PET-BIDS: ScanStart and FrameTimesStart are seconds after TimeZero; the acquisition start (the
    # image's first slice) is the first frame's start. dcm2niix writes ScanStart 0 (the series start)
    # and FrameTimesStart > 0 for a later bed
    first_rel = frame_start if frame_start is not None else scan_start
    tz = side.get("TimeZero")
    if tz is not None and _text_value(tz) is None:
        raise InputError(f"{src}: TimeZero = {tz!r} is not a time of day (hh:mm:ss); fix the sidecar")
    tod = parse_time_of_day(tz, f"TimeZero in {src}") if tz is not None else None
    t0 = None  # TimeZero as a date-time: the origin of ScanStart, FrameTimesStart, InjectionStart, ...
    if acq is not None and first_rel is not None:
        t0 = Sourced(acq.value - dt.timedelta(seconds=first_rel),
                     f"{src}: TimeZero, from the acquisition time and "
                     + ("FrameTimesStart" if frame_start is not None else "ScanStart"))
        if tod is not None and abs(_clock_gap_s(t0.value.time(), tod)) > 1.5:
            from ...errors import InconsistentInputError

            raise InconsistentInputError(
                f"{src}: the times contradict each other: TimeZero {tz} is not the acquisition time "
                f"({acq.value:%H:%M:%S}, {acq.source.replace(src + ': ', '')}) minus "
                f"{'FrameTimesStart' if frame_start is not None else 'ScanStart'} {first_rel:g} s "
                f"({t0.value:%H:%M:%S}); fix TimeZero or ScanStart, or give --injection-time and --times-h")
        tod_only = False
    else:
        tod_only = tod is not None
        if acq is None and tod is not None and first_rel is not None:
            # relative timing only: put TimeZero on a nominal date
            base = dt.datetime.combine(dt.date(2000, 1, 1), tod)
            t0 = Sourced(base, f"{src}: TimeZero (no date given: only times relative to it are used)")
            acq = Sourced(base + dt.timedelta(seconds=first_rel), f"{src}: TimeZero + ScanStart + FrameTimesStart")
            tod_only = False
    if acq is not None:
        s.meta["acquisition_start"] = acq

    state, ref_rel, how = _decay_state(side, src, scan_start, first_rel, inj_start, warn)
    inj_rel, inj_how = (inj_start, "InjectionStart") if inj_start is not None else (None, None)
    if inj_rel is None and state == "ADMIN" and ref_rel is not None:
        inj_rel, inj_how = ref_rel, "ImageDecayCorrectionTime (DecayCorrection ADMIN: the administration)"
    if inj_rel is not None:
        if t0 is not None:
            s.set("injection_time", t0.value + dt.timedelta(seconds=inj_rel), f"{t0.source} + {inj_how}")
        elif tod_only and tod is not None:
            full = dt.datetime.combine(dt.date(2000, 1, 1), tod) + dt.timedelta(seconds=inj_rel)
            s.set("injection_time_of_day", full.time(), f"{src}: TimeZero + {inj_how} (date from the first scan)")
    if state is None:
        pass
    elif state == "NONE":
        s.set("decay_correction", "NONE", how)
    elif state == "ADMIN":
        s.set("decay_correction", "ADMIN", how)
        _decay_factor_check(s, side, src, "ADMIN", first_rel, inj_rel, "the administration", warn)
    else:
        s.set("decay_correction", state, how)
        if ref_rel is not None and first_rel is not None:
            offset = ref_rel - first_rel
        else:  # START with no ScanStart / FrameTimesStart: the acquisition start; TIME: unknown
            offset = 0.0 if state == "START" else None
        if offset is not None:
            s.set("decay_reference_offset_s", offset,
                  f"{how}: the values refer to {'ScanStart' if state == 'START' else 'ImageDecayCorrectionTime'}"
                  + (f", {offset:g} s from the first frame's start (FrameTimesStart)" if offset else
                     ", the acquisition start"))
        _decay_factor_check(s, side, src, state, first_rel, ref_rel if ref_rel is not None else first_rel,
                            "the decay-correction time", warn)
    for key in ("DecayCorrectionFactor", "DecayFactor"):
        raw = side.get(key)
        raw = raw[0] if isinstance(raw, list) and raw else raw
        # dcm2niix writes 0 when the DICOM has no DecayFactor
        factor = _number({key: raw}, key, src, minimum=0.0) if raw is not None and raw != [] else None
        if factor:
            s.set("decay_factor", factor, f"{src}: {key}")
            break
