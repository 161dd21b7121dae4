"""Recovery (partial-volume) correction of a quantification table: GTM columns for every time point.

:func:`add_gtm_correction` runs :func:`spectrack.quantification.recovery.gtm_correct`
on each time point's image and regions and turns the corrected means into
factors on the table's activity, %ID and concentration columns (groups summed
from their members). ``_per_timepoint`` spreads a per-study argument (images,
label maps, calibrations) over the time points; the %ID intervals use it too.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from scipy import ndimage

from .recovery import gtm_correct

__all__ = ["add_gtm_correction"]


def _per_timepoint(obj, tps, what):
    """One value per time point ``tps`` from a mapping (by time point), a list (in order) or a single value."""
    if isinstance(obj, Mapping):
        missing = [t for t in tps if t not in obj]
        if missing:
            raise KeyError(f"no {what} for time points {missing}")
        return [obj[t] for t in tps]
    if isinstance(obj, (list, tuple)):
        if len(obj) != len(tps):
            raise ValueError(f"{len(obj)} {what} for {len(tps)} time points")
        return list(obj)
    return [obj] * len(tps)


def add_gtm_correction(table, images, labels, fwhm_mm, *, nonnegative: bool = True, truncate: float = 4.0,
                       fractions=None):
    """Add GTM-corrected (partial-volume-corrected) columns to a quantification table.

    GTM is linear, so each region's correction is the factor
    ``corrected mean / observed mean`` of :func:`gtm_correct` on that time
    point's image; it multiplies the region's activity, %ID and concentration
    columns whatever the calibration. A group row (``kind == "group"``) gets
    the sum of its members' corrected activities; field-of-view and
    outside-regions rows get NaN.

    Parameters
    ----------
    table : pandas.DataFrame
        The quantification table (``timepoint``, ``region``, ``activity_mbq``,
        ``pct_id``...; ``label`` and ``kind`` used when present).
    images : Image, sequence or mapping of Image
        Emission image per time point (sequence in sorted ``timepoint`` order).
    labels : LabelMap, or sequence / mapping of LabelMap
        Regions; every region with activity must be labelled (see
        :mod:`spectrack.quantification.recovery`).
    fwhm_mm : float or array_like of 3 float
        Reconstructed FWHM.
    fractions : sequence of (label ids, numpy.ndarray), optional
        Fractional masks per time point (see :func:`gtm_correct`). A region's
        corrected activity is then its corrected concentration times its
        fractional volume, and ``pvc_factor`` converts the whole-voxel
        activity of the table into it.

    Returns
    -------
    pandas.DataFrame
        A copy with ``pvc_factor``, ``gtm_rc``, ``gtm_condition_number`` (2-norm
        condition number of the time point's transfer matrix: how much it
        amplifies relative noise), ``pvc_pinned`` (the non-negative solver
        set the region to 0; for a group, any member), ``activity_mbq_pvc``,
        ``activity_mbq_decay_corrected_pvc``, ``pct_id_pvc``,
        ``pct_id_uncorrected_pvc``, ``pct_id_per_ml_pvc``,
        ``mean_bq_per_ml_pvc`` (those whose source column exists) and
        ``pvc_method``; ``attrs["notes"]`` holds each time point's solver notes
        (an ill-conditioned matrix).
    """
    from ..regions.labelmap import LabelMap
    from ..regions.vocabulary import GROUPS

    df = table.copy()
    n = len(df)
    factor = np.full(n, np.nan)
    rc = np.full(n, np.nan)
    cond = np.full(n, np.nan)
    pinned = np.zeros(n, dtype=bool)
    notes: list[str] = []
    methods = np.full(n, "", dtype=object)
    tps = sorted(df["timepoint"].unique()) if n else []
    imgs = [getattr(i, "image", i) for i in _per_timepoint(images, tps, "images")]
    labs = _per_timepoint(labels, tps, "label maps")
    kind = df["kind"].to_numpy() if "kind" in df else np.full(n, "region", dtype=object)
    act = df["activity_mbq"].to_numpy(float)
    tpv = df["timepoint"].to_numpy()
    reg = df["region"].astype(str).to_numpy()
    for t_i, tp in enumerate(tps):
        lm = labs[t_i]
        lm = lm.resampled_to(imgs[t_i]) if isinstance(lm, LabelMap) else lm
        fr = None if fractions is None else fractions[t_i]
        r = gtm_correct(imgs[t_i], lm, fwhm_mm, nonnegative=nonnegative, truncate=truncate, fractions=fr)
        notes.extend(f"time point {tp}: {note}" for note in r.notes)
        with np.errstate(divide="ignore", invalid="ignore"):
            if fr is None:
                f = np.where(r.observed_mean > 0, r.corrected_mean / r.observed_mean, np.nan)
            else:  # corrected content (concentration x fractional volume) over the whole-voxel sum
                arr = imgs[t_i].array.astype(np.float64)
                hard = ndimage.sum_labels(arr, lm.image.array if isinstance(lm, LabelMap) else lm, index=r.label)
                hard = np.asarray(hard, dtype=float)
                f = np.where(hard > 0, r.corrected_mean * r.n_voxels / hard, np.nan)
        by_label = {int(lid): i for i, lid in enumerate(r.label)}
        by_name = {name: i for i, name in enumerate(r.region)}
        rows = np.flatnonzero(tpv == tp)
        for p in rows:
            if kind[p] != "region":
                continue
            i = None
            if "label" in df and np.isfinite(float(df["label"].iat[p])) and int(df["label"].iat[p]) in by_label:
                i = by_label[int(df["label"].iat[p])]
            elif reg[p] in by_name:
                i = by_name[reg[p]]
            if i is not None:
                factor[p], rc[p], methods[p], cond[p] = f[i], r.rc[i], r.method, r.condition_number
                if r.corrected_mean[i] <= 0 < r.observed_mean[i]:
                    methods[p] = r.method + "; pinned at 0 by the non-negative solver"
                    pinned[p] = True
        for p in rows:
            if kind[p] == "group":
                members = [q for q in rows if kind[q] == "region" and reg[q] in GROUPS.get(reg[p], ())]
                if members and len(members) == len(GROUPS.get(reg[p], ())) and act[p] > 0:
                    factor[p] = float(np.sum(act[members] * factor[members]) / act[p])
                    methods[p] = r.method + "; group = sum of corrected members"
                    cond[p], pinned[p] = r.condition_number, bool(pinned[members].any())
    df["pvc_factor"] = factor
    df["gtm_rc"] = rc
    df["gtm_condition_number"] = cond
    df["pvc_pinned"] = pinned
    for col in ("activity_mbq", "activity_mbq_decay_corrected", "pct_id", "pct_id_uncorrected", "pct_id_per_ml",
                "mean_bq_per_ml"):
        if col in df:
            df[f"{col}_pvc"] = df[col].to_numpy(float) * factor
    df["pvc_method"] = np.where(methods == "", "not corrected (not a labelled region)", methods)
    df.attrs["notes"] = notes
    return df

