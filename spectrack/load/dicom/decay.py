"""Decay state: DecayCorrection, DecayFactor, FrameReferenceTime and the time the values refer to."""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict

from ...errors import InputError
from ..model import Sourced
from .header import _set
from .tags import _as_list, _float, _raw, _safe_raw, _safe_text, _tag, _text
from .times import _parse_da, _parse_tm, _start_of


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
    from ...physics import decay_constant_per_h, mean_activity_time_h

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
