"""Rostral tracer front and spread measures of a neuraxis profile (:func:`spectrack.regions.neuraxis.profile_study`).

:func:`tracer_front` walks each time point's profile rostrally from its peak
to where it falls below a fraction of it (columns :data:`FRONT_COLUMNS`);
:func:`spread_measures` integrates the whole profile instead: rostral
fractions per canal level, the leading edge, %ID at the skull base, and per
study the arrival time at the skull base and the spread rate (columns
:data:`SPREAD_COLUMNS`). Both are re-exported by
:mod:`spectrack.regions.neuraxis`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["tracer_front", "FRONT_COLUMNS", "spread_measures", "SPREAD_COLUMNS", "EDGE_FRACTION", "WINDOW_MM",
           "ARRIVAL_FRACTION"]

#: Columns of the tracer-front table.
FRONT_COLUMNS = {
    "timepoint": "time point index",
    "time_h": "scan start minus injection, hours",
    "front_distance_mm": "distance from the injection level to the front along the centreline, mm (NaN if none)",
    "front_position_mm": "arc length of the front from the caudal end of the canal, mm",
    "reached_end": "True when the profile never falls below the threshold before the skull base",
    "threshold": "the threshold used (fraction x reference), in the unit of the value column",
    "value": "profile column the front was found on",
    "reference": "what the fraction refers to: peak (rostral of the injection) or injection level",
    "fraction": "the fraction of the reference",
}


#: Columns of the rostral-spread table (one row per time point; see :func:`spread_measures`).
SPREAD_COLUMNS = {
    "timepoint": "time point index",
    "time_h": "scan start minus injection, hours",
    "canal_pct_id": "%ID in the profile (canal plus margin), decay-corrected",
    "rostral_of_lumbar": "fraction of the canal's activity rostral of the lumbar level (thoracic and cervical)",
    "rostral_of_thoracic": "fraction of the canal's activity in the cervical level",
    "leading_edge_mm": "distance from the injection level, rostrally, beyond which EDGE_FRACTION of the canal's "
                       "activity lies, mm",
    "skull_base_pct_id": "%ID in the most rostral WINDOW mm of the canal (at the skull base / cisterna magna)",
}
EDGE_FRACTION = 0.10
WINDOW_MM = 20.0
ARRIVAL_FRACTION = 0.10


# -------------------------------------------------------------------- front
def _front_one(d: np.ndarray, pos: np.ndarray, v: np.ndarray, fraction: float, reference: str):
    """Front of one profile: slab distances ``d`` (ascending), positions ``pos``, values ``v`` (no NaN).

    Returns ``(distance, position, reached_end, threshold)``.
    """
    if len(d) == 0:
        return np.nan, np.nan, False, np.nan
    i0 = int(np.argmin(np.abs(d)))  # slab of the injection level
    ros = np.arange(i0, len(d))
    if reference == "peak":
        ref = float(v[ros].max())
    elif reference == "injection":
        ref = float(v[i0])
    else:
        raise ValueError("reference must be 'peak' or 'injection'")
    thr = fraction * ref
    if not ref > 0:
        return np.nan, np.nan, False, thr
    start = i0 + int(np.argmax(v[ros] >= ref)) if reference == "peak" else i0
    for i in range(start + 1, len(d)):
        if v[i] < thr:
            a, b = v[i - 1], v[i]
            f = (a - thr) / (a - b) if a != b else 0.0
            return d[i - 1] + f * (d[i] - d[i - 1]), pos[i - 1] + f * (pos[i] - pos[i - 1]), False, thr
    return d[-1], pos[-1], True, thr


def tracer_front(profile, *, fraction: float = 0.5, reference: str = "peak", value: str = "pct_id_per_ml"):
    """Rostral tracer front of each time point.

    Walking rostrally from the peak (at or rostral of the injection level),
    the front is the first place where the profile falls below ``fraction``
    of the reference, interpolated linearly between slabs placed at the mean
    arc length of their voxels (``voxel_position_mm``, so the interpolation
    follows the voxels, not the slab grid). Empty slabs are skipped.

    The default uses the mean concentration in each slab (``pct_id_per_ml``),
    which does not change with the canal's cross-section or with how many
    voxels fall in a slab, and half of its peak (the half-maximum edge of a
    sharp front). ``value="pct_id_per_cm"`` with ``fraction=0.1`` gives the
    leading edge of the linear density instead.

    Parameters
    ----------
    profile : pandas.DataFrame
        From :func:`neuraxis_profile` or :func:`profile_study`.
    fraction : float
        Threshold as a fraction of the reference.
    reference : {'peak', 'injection'}
        The profile's maximum rostral of the injection level, or its value at
        the injection level.
    value : str
        Profile column to use.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`FRONT_COLUMNS`.

    Examples
    --------
    >>> import pandas as pd
    >>> p = pd.DataFrame({"timepoint": 0, "time_h": 1.0, "distance_mm": [-2.0, 0.0, 2.0, 4.0, 6.0],
    ...                   "position_mm": [1.0, 3.0, 5.0, 7.0, 9.0],
    ...                   "pct_id_per_cm": [0.0, 1.0, 1.0, 0.5, 0.0]})
    >>> float(tracer_front(p, fraction=0.5, value="pct_id_per_cm")["front_distance_mm"].iloc[0])
    4.0
    """
    import pandas as pd

    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    rows = []
    for tp, g in profile.groupby("timepoint", sort=True):
        g = g[np.isfinite(g[value].to_numpy(float))]
        if "voxel_position_mm" in g:
            g = g[np.isfinite(g["voxel_position_mm"].to_numpy(float))]
            pos = g["voxel_position_mm"].to_numpy(float)
            d = pos - (g["position_mm"].to_numpy(float) - g["distance_mm"].to_numpy(float))
        else:
            pos, d = g["position_mm"].to_numpy(float), g["distance_mm"].to_numpy(float)
        o = np.argsort(d, kind="stable")
        fd, fpos, end, thr = _front_one(d[o], pos[o], g[value].to_numpy(float)[o], fraction, reference)
        rows.append({"timepoint": int(tp), "time_h": float(profile.loc[profile["timepoint"] == tp, "time_h"].iloc[0]),
                     "front_distance_mm": fd, "front_position_mm": fpos, "reached_end": end,
                     "threshold": thr, "value": value, "reference": reference, "fraction": fraction})
    return pd.DataFrame(rows, columns=list(FRONT_COLUMNS))


# -------------------------------------------------------------- rostral spread
def _crossing(x: np.ndarray, y: np.ndarray, level: float) -> float:
    """First x where y (increasing with x at the crossing) reaches ``level``, linearly interpolated; NaN if never."""
    for i in range(len(y)):
        if y[i] >= level:
            if i == 0:
                return float(x[0])
            a, b = y[i - 1], y[i]
            f = (level - a) / (b - a) if b != a else 0.0
            return float(x[i - 1] + f * (x[i] - x[i - 1]))
    return float("nan")


def spread_measures(profile, *, edge_fraction: float = EDGE_FRACTION, window_mm: float = WINDOW_MM,
                    arrival_fraction: float = ARRIVAL_FRACTION):
    """How far and how fast the tracer spreads rostrally: measures with a definition a pharmacologist can check.

    Per time point (columns :data:`SPREAD_COLUMNS`):

    * the cumulative fraction of the canal's activity rostral of each level
      (``rostral_of_lumbar``: in the thoracic and cervical canal;
      ``rostral_of_thoracic``: in the cervical canal);
    * the leading edge: the distance rostral of the injection level beyond
      which ``edge_fraction`` (10 %) of the canal's activity lies (from the
      cumulative profile, interpolated between slabs);
    * ``skull_base_pct_id``: %ID in the most rostral ``window_mm`` of the
      canal.

    Per study (``df.attrs``): ``arrival_time_h``, the first time at which
    ``skull_base_pct_id`` reaches ``arrival_fraction`` (10 %) of its maximum
    over the scans, interpolated linearly between scans
    (``arrival_before_first_scan`` when already reached at the first scan:
    then it is an upper bound); ``spread_rate_mm_per_h``, the least-squares
    slope of the leading edge against time over the scans before the first
    one where the edge is within ``window_mm`` of the farthest it gets or
    reaches the top window (that one too when fewer than two scans precede
    it; NaN with fewer than two);
    ``definitions``, one sentence each.

    Unlike a half-maximum front, these do not jump when a second peak
    appears: they integrate the whole profile.

    Parameters
    ----------
    profile : pandas.DataFrame
        From :func:`profile_study` (columns ``timepoint``, ``time_h``,
        ``position_mm``, ``distance_mm``, ``level``, ``pct_id``).
    """
    import pandas as pd

    rows = []
    top_reached = []
    for tp, g in profile.groupby("timepoint", sort=True):
        g = g.sort_values("position_mm")
        pos = g["position_mm"].to_numpy(float)
        pct = np.clip(g["pct_id"].to_numpy(float), 0.0, None)
        total = float(pct.sum())
        lvl = g["level"].astype(str).to_numpy()
        d = g["distance_mm"].to_numpy(float)
        length = float(pos.max()) if len(pos) else float("nan")
        step = float(np.median(np.diff(pos))) if len(pos) > 1 else float("nan")
        top = pos >= (pos.max() + 0.5 * step - window_mm) if len(pos) else np.zeros(0, bool)
        if total > 0:
            rost_lumbar = float(pct[np.isin(lvl, ["canal_thoracic", "canal_cervical"])].sum() / total)
            rost_thoracic = float(pct[lvl == "canal_cervical"].sum() / total)
            # cumulative from the cranial end: the edge is where it reaches edge_fraction
            above = np.cumsum(pct[::-1]) / total
            edge_pos = _crossing(pos[::-1] + 0.5 * step, above, edge_fraction) if np.isfinite(step) else np.nan
            edge = float(edge_pos - (pos[0] - d[0])) if np.isfinite(edge_pos) else float("nan")
        else:
            rost_lumbar = rost_thoracic = edge = float("nan")
        rows.append({"timepoint": int(tp), "time_h": float(g["time_h"].iloc[0]), "canal_pct_id": total,
                     "rostral_of_lumbar": rost_lumbar, "rostral_of_thoracic": rost_thoracic,
                     "leading_edge_mm": edge, "skull_base_pct_id": float(pct[top].sum())})
        top_reached.append(bool(np.isfinite(edge) and edge >= (length + 0.5 * step - window_mm) - (pos[0] - d[0])))
    df = pd.DataFrame(rows, columns=list(SPREAD_COLUMNS))
    t = df["time_h"].to_numpy(float)
    sb = df["skull_base_pct_id"].to_numpy(float)
    arrival, before = float("nan"), False
    if len(sb) and np.nanmax(sb) > 0:
        level = arrival_fraction * float(np.nanmax(sb))
        arrival = _crossing(t, sb, level)
        before = bool(sb[0] >= level)
    e_all = df["leading_edge_mm"].to_numpy(float)
    if np.any(np.isfinite(e_all)):  # the scans until the edge is within the window of the farthest it gets
        near = np.flatnonzero(np.isfinite(e_all) & (e_all >= np.nanmax(e_all) - window_mm))
        upto = min(int(near[0]), next((i for i, r in enumerate(top_reached) if r), len(df) - 1))
        if upto >= 2:  # the edge may have stopped any time before that scan: use the scans before it
            upto -= 1
    else:
        upto = len(df) - 1
    e = e_all[: upto + 1]
    tt = t[: upto + 1]
    ok = np.isfinite(e)
    rate = float(np.polyfit(tt[ok], e[ok], 1)[0]) if ok.sum() >= 2 and np.ptp(tt[ok]) > 0 else float("nan")
    df.attrs.update({
        "arrival_time_h": arrival, "arrival_before_first_scan": before, "spread_rate_mm_per_h": rate,
        "spread_rate_timepoints": [int(v) for v in df["timepoint"].to_numpy()[: upto + 1][ok]],
        "edge_fraction": edge_fraction, "window_mm": window_mm, "arrival_fraction": arrival_fraction,
        "definitions": {
            "rostral_of_lumbar": "share of the canal's activity above the lumbar level (thoracic + cervical)",
            "rostral_of_thoracic": "share of the canal's activity in the cervical canal",
            "leading_edge_mm": f"how far above the injection level the most rostral {edge_fraction:.0%} of the "
                               "canal's activity begins",
            "skull_base_pct_id": f"%ID in the top {window_mm:g} mm of the canal, below the skull base",
            "arrival_time_h": f"when the activity at the skull base first reaches {arrival_fraction:.0%} of its "
                              "maximum over the scans (interpolated between scans; an upper bound when reached "
                              "at the first scan)",
            "spread_rate_mm_per_h": "slope of the leading edge against time over the scans before it comes "
                                    f"within {window_mm:g} mm of the farthest it gets (least squares)",
        }})
    return df
