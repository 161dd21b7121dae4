"""What only PET slice stacks need: the duration over bed positions and beds put on one time footing.

The slices themselves are read by :mod:`.stacks`.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from ...errors import InputError
from ..model import Sourced
from .decay import _acquisition_time, _when
from .tags import _float, _safe_raw, _tag
from .times import _start_of


def _normalise_beds(values: np.ndarray, datasets: list, meta: dict, where: str, warn: list[str]) -> None:
    """Slices of several bed positions acquired one after the other, in one series: put them on one footing.

    Values not decay-corrected (``NONE``) are means over each bed's own frame: every bed is scaled, in place,
    to what it would hold had it been acquired from the first bed's start for the first bed's duration
    (``iff(D_b) exp(lambda (t_b - t_1)) / iff(D_1)``), so one in-frame factor and one start apply to the
    volume. Counts are also scaled by ``D_1 / D_b`` so one duration divides them. Decay-corrected values
    (START, ADMIN) already share one reference time.
    """
    from ...physics import decay_factor, in_frame_factor

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
