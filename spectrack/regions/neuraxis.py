"""Neuraxis profile: activity along the spinal canal, sacrum to skull base, per time point.

The canal (the four ``canal_*`` regions, plus a margin for the spill of the
SPECT point-spread function) is cut into slabs perpendicular to its
centreline, ``step_mm`` thick (one SPECT voxel by default): every voxel goes to
the slab of its nearest centreline point. Each slab's activity gives MBq and
%ID per cm at every time point; the rostral tracer front is where the profile,
walking rostrally from the injection level, first falls below a fraction of
its peak (linear interpolation between slabs). By default the front uses the
mean concentration of each slab (%ID/mL of canal) and half its peak: unlike
%ID/cm it does not jump where the canal widens or where a slab happens to
hold fewer voxels (see :func:`tracer_front`).

Typical use after :func:`spectrack.quantification.quantify` with
``return_details=True``::

    table, details = quantify(study, labels, ..., return_details=True)
    prof = profile_study(study, details.labels_per_timepoint, details.calibrations, details.params)
    fronts = tracer_front(prof)
    write_profile(prof, out_dir)        # neuraxis_profile.csv, neuraxis_front.csv, neuraxis_profile.png

Table columns are in :data:`PROFILE_COLUMNS`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..geometry import Image
from .centreline import Centreline
from .labels import LabelMap
from .vocabulary import CANAL_LEVELS

__all__ = ["Centreline", "centreline_from_labels", "neuraxis_profile", "profile_study", "tracer_front",
           "spread_measures", "SPREAD_COLUMNS", "vertebra_table", "VERTEBRA_COLUMNS",
           "write_profile", "plot_profile", "PROFILE_COLUMNS", "FRONT_COLUMNS"]

#: Columns of the profile table.
PROFILE_COLUMNS = {
    "timepoint": "time point index",
    "time_h": "scan start minus injection, hours",
    "slab": "slab index from the caudal end of the canal",
    "position_mm": "arc length of the slab centre along the canal centreline from its caudal (sacral) end, mm",
    "voxel_position_mm": "mean arc length of the slab's voxel centres (NaN if empty), mm",
    "distance_mm": "position_mm minus the injection level (positive = rostral), mm",
    "level": "canal level at the slab centre",
    "x_mm": "LPS x of the slab centre on the centreline, mm",
    "y_mm": "LPS y of the slab centre, mm",
    "z_mm": "LPS z of the slab centre, mm",
    "n_voxels": "emission voxels in the slab (canal plus margin)",
    "mbq": "activity in the slab at scan start, MBq",
    "mbq_decay_corrected": "activity decay-corrected to injection, MBq",
    "pct_id": "percent injected dose in the slab, decay-corrected",
    "pct_id_per_cm": "pct_id per cm of canal, decay-corrected",
    "pct_id_per_cm_uncorrected": "percent injected dose per cm at scan start, not decay-corrected",
    "canal_ml": "volume of the slab's canal voxels (without the margin), mL",
    "rostral_fraction": "fraction of the profile's activity at or rostral of the slab centre",
    "pct_id_per_ml": "pct_id / canal_ml: mean concentration in the canal (margin spill counted back), "
                     "decay-corrected (NaN where the slab holds no canal voxel)",
}

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


def centreline_from_labels(labels: LabelMap, *, levels=CANAL_LEVELS, smooth_mm: float | None = None,
                           use_stored: bool = True) -> Centreline | None:
    """Centreline of the canal regions of a label map (caudal to cranial).

    Automatic label maps (:func:`spectrack.regions.auto.segment_ct`) carry
    their CT-derived centreline in ``labels.image.meta["auto_regions"]``; it is
    used when ``use_stored`` (the default). Otherwise the centreline is
    rebuilt from the per-slice centroids of the canal voxels.

    Returns None when the label map has no canal voxels.
    """
    from .auto_canal import centreline_from_mask

    meta = labels.image.meta.get("auto_regions") if isinstance(labels.image.meta, dict) else None
    if use_stored and meta and meta.get("centreline"):
        return Centreline.from_json(meta["centreline"])
    rev = {v: k for k, v in labels.names.items()}
    idx = [rev[n] for n in levels if n in rev]
    mask = np.isin(labels.image.array, idx)
    if not mask.any():
        return None
    return centreline_from_mask(mask, labels.image, smooth_mm=smooth_mm)


# ------------------------------------------------------------------ profile
def _level_at(labels: LabelMap, canal_mask, s_vox, s_centres):
    """Name of the canal level of the slab centres (the majority level of canal voxels nearby)."""
    names = np.array(["" for _ in s_centres], dtype=object)
    rev = {v: k for k, v in labels.names.items()}
    arr = labels.image.array[canal_mask]
    lv_idx = np.full(arr.shape, -1)
    for n, lv in enumerate(CANAL_LEVELS):
        if lv in rev:
            lv_idx[arr == rev[lv]] = n
    if s_vox.size == 0:
        return names
    order = np.argsort(s_vox)
    ss, ll = s_vox[order], lv_idx[order]
    j = np.clip(np.searchsorted(ss, s_centres), 0, len(ss) - 1)
    jm = np.clip(j - 1, 0, len(ss) - 1)
    pick = np.where(np.abs(ss[jm] - s_centres) < np.abs(ss[j] - s_centres), jm, j)
    for n, p in enumerate(pick):
        names[n] = CANAL_LEVELS[ll[p]] if ll[p] >= 0 else ""
    return names


def neuraxis_profile(activity_mbq: Image, labels: LabelMap, *, injected_mbq: float, decay_factor: float = 1.0,
                     centreline: Centreline | None = None, step_mm: float | None = None, margin_mm: float = 0.0,
                     margin_into=("remainder", "vertebrae", "skull"), injection_position_mm: float | None = None,
                     time_h: float = float("nan"), timepoint: int = 0):
    """Activity along the canal for one scan.

    Parameters
    ----------
    activity_mbq : Image
        MBq per voxel at scan start (image values times the calibration's
        ``mbq_per_voxel_per_unit``).
    labels : LabelMap
        Regions on ``activity_mbq``'s grid with the ``canal_*`` levels
        (optionally ``injection_site``).
    injected_mbq : float
        Injected activity (MBq) for %ID.
    decay_factor : float
        Multiplies scan-start activity to decay-correct to injection.
    centreline : Centreline, optional
        In the world space of ``labels``; rebuilt from the canal labels when
        omitted (see :func:`centreline_from_labels`).
    step_mm : float, optional
        Slab thickness along the centreline; the emission voxel size (the
        geometric mean of the spacing) by default.
    margin_mm : float
        Also count voxels within this distance of the canal (PSF spill), but
        only voxels labelled with a name in ``margin_into`` (or unlabelled):
        never the injection site, the brain or other organs.
    margin_into : sequence of str
        Regions the margin may include.
    injection_position_mm : float, optional
        Arc length of the injection level from the caudal end. By default the
        projection of the ``injection_site`` centroid onto the centreline; if
        there is none, the caudal end of the canal (distances are then
        positions).
    time_h, timepoint : float, int
        Copied into the table.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`PROFILE_COLUMNS`; ``df.attrs`` holds ``injection_position_mm``,
        ``injection_source``, ``step_mm`` and ``margin_mm``.
    """
    import pandas as pd

    from .auto_canal import dilate_mm

    img = activity_mbq
    if not labels.image.same_grid(img):
        labels = labels.resampled_to(img)
    rev = {v: k for k, v in labels.names.items()}
    lab = labels.image.array
    canal = np.isin(lab, [rev[n] for n in CANAL_LEVELS if n in rev])
    if not canal.any():
        raise ValueError("the label map has no canal_* region on this grid: no neuraxis profile")
    if centreline is None:
        centreline = centreline_from_labels(labels)
    sp_arr = img.spacing_mm[::-1]
    if step_mm is None:
        step_mm = float(np.prod(img.spacing_mm) ** (1.0 / 3.0))
    sel = canal.copy()
    if margin_mm > 0:
        allowed = (lab == 0) | np.isin(lab, [rev[n] for n in margin_into if n in rev])
        sel |= dilate_mm(canal, margin_mm, sp_arr) & allowed
    kk = np.argwhere(sel)
    xyz = img.index_to_world_mm(kk[:, ::-1])
    s, dist = centreline.project(xyz)
    # voxels beyond either end of the centreline are not in any slab
    L = centreline.length_mm
    n_slab = max(1, int(np.ceil(L / step_mm - 1e-9)))
    edges = np.linspace(0.0, n_slab * step_mm, n_slab + 1)
    slab = np.clip(np.floor(s / step_mm).astype(int), 0, n_slab - 1)
    vals = np.asarray(img.array, float)[sel]
    # partial-voxel weights: a voxel spans w = sum_i spacing_i |tangent_i| along the centreline; its activity is
    # spread uniformly over that span and shared between the slabs it overlaps, so an oblique canal does not
    # give alternate slabs one and two voxel layers (a comb)
    tan = np.abs(centreline.tangent_at(s))
    w = np.maximum(tan @ np.asarray(img.spacing_mm, float), 1e-6)
    a0 = np.clip(s - 0.5 * w, 0.0, n_slab * step_mm)
    a1 = np.clip(s + 0.5 * w, 0.0, n_slab * step_mm)
    first = np.clip(np.floor(a0 / step_mm).astype(int), 0, n_slab - 1)
    n_over = int(np.ceil(float(w.max()) / step_mm)) + 1
    parts = []
    for k in range(n_over + 1):
        idx = first + k
        ov = np.minimum(a1, (idx + 1) * step_mm) - np.maximum(a0, idx * step_mm)
        frac = np.clip(ov, 0.0, None) / np.maximum(a1 - a0, 1e-12)
        frac = np.where(idx < n_slab, frac, 0.0)
        parts.append((np.minimum(idx, n_slab - 1), frac))
    lost = 1.0 - sum(f for _, f in parts)  # voxels past either end: their span clipped, keep the total
    parts[0] = (parts[0][0], parts[0][1] + np.where(s < 0.5 * n_slab * step_mm, lost, 0.0))
    parts.append((np.full(len(s), n_slab - 1), np.where(s >= 0.5 * n_slab * step_mm, lost, 0.0)))

    def shared(weights):
        return sum(np.bincount(idx, weights=weights * frac, minlength=n_slab) for idx, frac in parts)

    mbq = shared(vals)
    nvox = np.bincount(slab, minlength=n_slab)
    in_canal = canal[sel]
    ncanal = shared(in_canal.astype(float))
    s_sum = np.bincount(slab, weights=s, minlength=n_slab)
    vpos = np.divide(s_sum, nvox, out=np.full(n_slab, np.nan), where=nvox > 0)
    centres = 0.5 * (edges[:-1] + edges[1:])
    if injection_position_mm is not None:
        s_inj, src = float(injection_position_mm), "given"
    elif "injection_site" in rev and np.any(lab == rev["injection_site"]):
        ii = np.argwhere(lab == rev["injection_site"])
        c = img.index_to_world_mm(ii[:, ::-1]).mean(axis=0)
        s_inj, src = float(centreline.project(c[None])[0][0]), "injection_site centroid projected on the centreline"
    else:
        s_inj, src = 0.0, "no injection_site region: caudal end of the canal"
    canal_s, _ = centreline.project(img.index_to_world_mm(np.argwhere(canal)[:, ::-1]))
    lvl = _level_at(labels, canal, canal_s, centres)
    pts = centreline.point_at(centres)
    per_cm = 10.0 / step_mm
    pct = 100.0 * mbq * decay_factor / injected_mbq
    df = pd.DataFrame({
        "timepoint": timepoint, "time_h": time_h, "slab": np.arange(n_slab), "position_mm": centres,
        "voxel_position_mm": vpos,
        "distance_mm": centres - s_inj, "level": lvl, "x_mm": pts[:, 0], "y_mm": pts[:, 1], "z_mm": pts[:, 2],
        "n_voxels": nvox, "mbq": mbq, "mbq_decay_corrected": mbq * decay_factor, "pct_id": pct,
        "pct_id_per_cm": pct * per_cm, "pct_id_per_cm_uncorrected": 100.0 * mbq / injected_mbq * per_cm,
        "canal_ml": ncanal * img.voxel_volume_ml,
        "pct_id_per_ml": np.divide(pct, ncanal * img.voxel_volume_ml, out=np.full(n_slab, np.nan),
                                   where=ncanal > 0),
        "rostral_fraction": _rostral_fraction(mbq),
    }, columns=list(PROFILE_COLUMNS))
    df.attrs.update({"injection_position_mm": s_inj, "injection_source": src, "step_mm": float(step_mm),
                     "margin_mm": float(margin_mm), "canal_length_mm": L,
                     "max_distance_to_centreline_mm": float(dist.max(initial=0.0))})
    return df


def _rostral_fraction(mbq: np.ndarray) -> np.ndarray:
    """Fraction of the total at or rostral of each slab's centre (half of the slab's own share counted)."""
    total = float(np.sum(mbq))
    if not total > 0:
        return np.full(len(mbq), np.nan)
    above = np.cumsum(mbq[::-1])[::-1]
    return (above - 0.5 * mbq) / total


def profile_study(study, labels_per_timepoint, calibrations, params, *, centreline=None, step_mm=None,
                  margin_mm: float = 0.0, margin_into=("remainder", "vertebrae", "skull")):
    """Neuraxis profile of every time point of a study.

    Parameters
    ----------
    study : Study
        The loaded study (its emission images are used).
    labels_per_timepoint : list of LabelMap
        Regions on each time point's emission grid
        (``QuantResult.labels_per_timepoint``).
    calibrations : list of Calibration
        ``QuantResult.calibrations`` (``mbq_per_voxel_per_unit``).
    params : DoseParameters
        ``QuantResult.params`` (injected activity, injection time, half-life).
    centreline : Centreline or list, optional
        One centreline for all time points (in their common world space) or
        one per time point; rebuilt from each time point's canal labels when
        omitted (this follows motion captured by the label propagation).
    step_mm, margin_mm, margin_into
        See :func:`neuraxis_profile`.

    Returns
    -------
    pandas.DataFrame
        All time points stacked; ``df.attrs["timepoints"]`` lists each time
        point's attributes (injection level and its source) and
        ``df.attrs["warnings"]`` the time points skipped (no canal voxel on
        their grid).
    """
    import pandas as pd

    from ..physics import decay_factor

    hl = params.half_life_h.value
    a_inj = params.injected_mbq.value
    frames, attrs, warnings = [], [], []
    for n, (tp, lab, cal) in enumerate(zip(study.timepoints, labels_per_timepoint, calibrations)):
        img = tp.emission.image
        canal_idx = [k for k, v in lab.names.items() if v in CANAL_LEVELS]
        if not np.isin(lab.image.array, canal_idx).any():
            warnings.append(f"time point {tp.index}: no canal region on its emission grid: no neuraxis profile")
            continue
        act = img.with_array(np.asarray(img.array, float) * cal.mbq_per_voxel_per_unit, units="MBq")
        t_h = params.hours_after_injection(tp.acquisition_start)
        cl = centreline[n] if isinstance(centreline, (list, tuple)) else centreline
        df = neuraxis_profile(act, lab, injected_mbq=a_inj, decay_factor=float(decay_factor(t_h, hl)),
                              centreline=cl, step_mm=step_mm, margin_mm=margin_mm, margin_into=margin_into,
                              time_h=t_h, timepoint=tp.index)
        frames.append(df)
        attrs.append(dict(df.attrs, timepoint=tp.index))
    out = (pd.concat(frames, ignore_index=True) if frames
           else pd.DataFrame(columns=list(PROFILE_COLUMNS)))
    out.attrs["timepoints"] = attrs
    out.attrs["warnings"] = warnings
    return out


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


# ------------------------------------------------------------------ output
#: Axis labels of the profile columns a figure may draw (this module's figure and the report's).
PROFILE_AXIS_LABELS = {"pct_id_per_cm": "%ID per cm of canal, decay-corrected",
                       "pct_id_per_cm_uncorrected": "%ID per cm of canal, not decay-corrected",
                       "pct_id_per_ml": "%ID per mL of canal, decay-corrected",
                       "mbq": "MBq per slab at scan start", "pct_id": "%ID per slab, decay-corrected"}


def plot_profile(profile, path, *, spread=None, value: str = "pct_id_per_cm"):
    """Save a figure of the profile: heat map (distance x time) and overlaid profiles with the leading edge.

    Parameters
    ----------
    profile : pandas.DataFrame
        From :func:`profile_study`.
    path : path-like
        PNG file to write (atomically).
    spread : pandas.DataFrame, optional
        :func:`spread_measures` of ``profile`` (computed when omitted).
    value : str
        Profile column to draw.

    Notes
    -----
    The marks are the leading edge of :func:`spread_measures` (10 % of the
    canal's activity lies rostral of it), not the half-maximum front of
    :func:`tracer_front`, which jumps when a second peak appears.
    """
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: rendered by Agg, no global backend state

    from ..io_utils import atomic_path

    if spread is None:
        spread = spread_measures(profile)
    edge = spread.set_index("timepoint")["leading_edge_mm"]
    tps = sorted(profile["timepoint"].unique())
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    ax0, ax1 = fig.subplots(1, 2)
    times = [float(profile.loc[profile["timepoint"] == t, "time_h"].iloc[0]) for t in tps]
    # heat map: rows = time points (ordered), columns = distance
    dmin, dmax = float(profile["distance_mm"].min()), float(profile["distance_mm"].max())
    grid_d = np.linspace(dmin, dmax, 200)
    z = np.array([np.interp(grid_d, *profile.loc[profile["timepoint"] == t, ["distance_mm", value]]
                            .sort_values("distance_mm").to_numpy().T) for t in tps])
    im = ax0.imshow(z, aspect="auto", origin="lower", extent=(dmin, dmax, -0.5, len(tps) - 0.5),
                    cmap="viridis", interpolation="nearest")
    ax0.set_yticks(range(len(tps)), [f"{t:.2f} h" for t in times])
    ax0.set_xlabel("distance from injection level along the canal (mm, rostral +)")
    ax0.set_ylabel("scan")
    label = PROFILE_AXIS_LABELS.get(value, value.replace("_", " "))
    fig.colorbar(im, ax=ax0, label=label)
    for n, t in enumerate(tps):
        if t in edge.index and np.isfinite(edge.loc[t]):
            ax0.plot([edge.loc[t]] * 2, [n - 0.45, n + 0.45], color="w", lw=2)
    cmap = matplotlib.colormaps["plasma"]
    for n, t in enumerate(tps):
        g = profile[profile["timepoint"] == t].sort_values("distance_mm")
        c = cmap(n / max(1, len(tps) - 1) * 0.85)
        ax1.plot(g["distance_mm"], g[value], color=c, label=f"{times[n]:.2f} h")
        if t in edge.index and np.isfinite(edge.loc[t]):
            ax1.axvline(edge.loc[t], color=c, ls="--", lw=1)
    ax1.axvline(0.0, color="k", lw=0.8)
    ax1.set_xlabel("distance from injection level (mm, rostral +)")
    ax1.set_ylabel(label)
    ax1.set_title("neuraxis profile\ndashed: leading edge (10 % of the canal's activity rostral of it)",
                  fontsize=9)
    ax1.legend(fontsize="small")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path


#: Columns of the per-vertebra table.
VERTEBRA_COLUMNS = {
    "timepoint": "time point index",
    "time_h": "scan start minus injection, hours",
    "vertebra": "vertebral level (C1..C7, T1.., L1.., sacrum) counted on the CT",
    "level": "canal level the vertebra belongs to",
    "from_mm": "caudal end of the vertebra's canal segment, arc length along the profile's centreline, mm",
    "to_mm": "rostral end, mm",
    "pct_id": "percent injected dose in the canal (plus margin) along the vertebra, decay-corrected (slabs cut by "
              "a vertebra's ends count in proportion)",
    "pct_id_per_cm": "pct_id per cm of that segment, decay-corrected",
    "n_slabs": "profile slabs whose centre lies in the segment",
}

_LEVEL_OF = (("sacrum", "canal_sacral"), ("L", "canal_lumbar"), ("T", "canal_thoracic"), ("C", "canal_cervical"))


def _level_transitions(pos: np.ndarray, level: np.ndarray) -> list[float]:
    """Arc lengths where the profile passes sacral -> lumbar, lumbar -> thoracic, thoracic -> cervical (NaN if
    not seen): midway between the last slab of one level and the first of the next."""
    out = []
    for a, b in zip(CANAL_LEVELS[::-1][:-1], CANAL_LEVELS[::-1][1:]):
        pa, pb = pos[level == a], pos[level == b]
        out.append(0.5 * (pa.max() + pb.min()) if pa.size and pb.size and pa.max() < pb.min() else np.nan)
    return out


def vertebra_table(profile, vertebrae: dict):
    """%ID along the canal per vertebra, from the neuraxis profile and the vertebrae counted on CT.

    The vertebrae (``auto_regions["vertebrae"]`` of automatic regions,
    :meth:`spectrack.regions.vertebrae.VertebraeResult.to_json`) are arc-length
    intervals along the centreline traced on the CT; the profile's centreline
    is traced on each time point's canal labels. The two are matched at the
    three level boundaries (L/S1, T/L1, C7/T1), where the labels' canal
    levels change, by piecewise-linear interpolation (extrapolated with the
    end segments' scale); slabs a vertebra's end cuts count in proportion (the
    cumulative %ID along the canal is linear within a slab).

    Parameters
    ----------
    profile : pandas.DataFrame
        :func:`profile_study` output.
    vertebrae : dict
        ``vertebrae_mm`` ({name: [from, to]}) and ``boundaries_mm`` (3 values).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`VERTEBRA_COLUMNS`, vertebrae caudal to rostral per time
        point; ``df.attrs["warnings"]`` names time points where the levels
        could not be matched (no table rows for them).
    """
    import pandas as pd

    iv = {k: (float(a), float(b)) for k, (a, b) in (vertebrae.get("vertebrae_mm") or {}).items()}
    b_ct = np.asarray(vertebrae.get("boundaries_mm") or [], float)
    rows, warnings = [], []
    if not iv or b_ct.size != 3 or profile is None or not len(profile):
        out = pd.DataFrame(rows, columns=list(VERTEBRA_COLUMNS))
        out.attrs["warnings"] = warnings
        return out
    for tp, d in profile.groupby("timepoint", sort=True):
        pos = d["position_mm"].to_numpy(float)
        b_prof = np.asarray(_level_transitions(pos, d["level"].astype(str).to_numpy()), float)
        if not np.all(np.isfinite(b_prof)) or not np.all(np.diff(b_prof) > 0):
            warnings.append(f"time point {tp}: the canal levels of the labels do not follow sacral -> cervical "
                            "without gaps: no per-vertebra table")
            continue
        lo_scale = (b_prof[1] - b_prof[0]) / (b_ct[1] - b_ct[0])
        hi_scale = (b_prof[2] - b_prof[1]) / (b_ct[2] - b_ct[1])

        def to_prof(x):
            x = float(x)
            if x < b_ct[0]:
                return b_prof[0] + (x - b_ct[0]) * lo_scale
            if x > b_ct[2]:
                return b_prof[2] + (x - b_ct[2]) * hi_scale
            return float(np.interp(x, b_ct, b_prof))

        order = np.argsort(pos, kind="stable")
        pos_s, pct = pos[order], d["pct_id"].to_numpy(float)[order]
        # cumulative %ID along the canal, linear within each slab (partial-slab weights: a vertebra a few
        # slabs long gets its share of the slabs it cuts, not whole slabs -- no voxel comb)
        half = 0.5 * (np.median(np.diff(pos_s)) if pos_s.size > 1 else 1.0)
        edges = np.r_[pos_s[0] - half, 0.5 * (pos_s[1:] + pos_s[:-1]), pos_s[-1] + half]
        cum = np.r_[0.0, np.cumsum(pct)]
        t_h = float(d["time_h"].iloc[0])
        first = min(v[0] for v in iv.values())
        last = max(v[1] for v in iv.values())
        for name, (a, b) in sorted(iv.items(), key=lambda kv: kv[1][0]):
            fa, fb = to_prof(a), to_prof(b)
            # the sacrum and C1 take everything beyond them (the canal's ends)
            lo_edge = -np.inf if a <= first else fa
            hi_edge = np.inf if b >= last else fb
            sel = (pos >= lo_edge) & (pos < hi_edge)
            lvl = next(lv for pre, lv in _LEVEL_OF if name.startswith(pre))
            length_cm = (fb - fa) / 10.0
            c_lo = 0.0 if lo_edge == -np.inf else float(np.interp(lo_edge, edges, cum))
            c_hi = float(cum[-1]) if hi_edge == np.inf else float(np.interp(hi_edge, edges, cum))
            tot = c_hi - c_lo
            rows.append({"timepoint": tp, "time_h": t_h, "vertebra": name, "level": lvl, "from_mm": fa, "to_mm": fb,
                         "pct_id": tot, "pct_id_per_cm": tot / length_cm if length_cm > 0 else np.nan,
                         "n_slabs": int(sel.sum())})
    out = pd.DataFrame(rows, columns=list(VERTEBRA_COLUMNS))
    out.attrs["warnings"] = warnings
    return out


def write_profile(profile, out_dir, *, fraction: float = 0.5, reference: str = "peak", value: str = "pct_id_per_ml",
                  plot: bool = True) -> dict:
    """Write ``neuraxis_profile.csv``, ``neuraxis_spread.csv`` (:func:`spread_measures`), ``neuraxis_front.csv``
    (the half-maximum front) and ``neuraxis_profile.png`` into ``out_dir``.

    ``fraction``, ``reference`` and ``value`` are passed to :func:`tracer_front`.

    Returns
    -------
    dict
        File name -> path of what was written.
    """
    from ..io_utils import atomic_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    front = tracer_front(profile, fraction=fraction, reference=reference, value=value)
    spread = spread_measures(profile)
    written = {}
    for name, df in (("neuraxis_profile.csv", profile), ("neuraxis_front.csv", front),
                     ("neuraxis_spread.csv", spread)):
        with atomic_path(out / name) as tmp:
            df.to_csv(tmp, index=False, float_format="%.9g")
        written[name] = out / name
    if plot:
        written["neuraxis_profile.png"] = plot_profile(profile, out / "neuraxis_profile.png", spread=spread)
    return written
