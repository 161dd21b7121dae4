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

Table columns are in :data:`PROFILE_COLUMNS`. This module holds the profile
itself (slabs along the centreline, partial-voxel weights); the front and the
spread measures are in :mod:`.spread`, the per-vertebra table in
:mod:`.vertebrae`, the figure and the CSV files in :mod:`.output`, all
re-exported by :mod:`spectrack.regions.neuraxis`.
"""

from __future__ import annotations

import numpy as np

from ...geometry import Image
from ..centreline import Centreline
from ..labelmap import LabelMap
from ..vocabulary import CANAL_LEVELS

__all__ = ["centreline_from_labels", "neuraxis_profile", "profile_study", "PROFILE_COLUMNS"]

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


def centreline_from_labels(labels: LabelMap, *, levels=CANAL_LEVELS, smooth_mm: float | None = None,
                           use_stored: bool = True) -> Centreline | None:
    """Centreline of the canal regions of a label map (caudal to cranial).

    Automatic label maps (:func:`spectrack.regions.auto.ct.segment_ct`) carry
    their CT-derived centreline in ``labels.image.meta["auto_regions"]``; it is
    used when ``use_stored`` (the default). Otherwise the centreline is
    rebuilt from the per-slice centroids of the canal voxels.

    Returns None when the label map has no canal voxels.
    """
    from ..auto.canal import centreline_from_mask

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

    from ..auto.canal import dilate_mm

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

    from ...physics import decay_factor

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

