"""Monte Carlo intervals on %ID and on the numbers derived from it.

Model
-----
A region's %ID is ``100 * (N - s N_b) / C * d / A_inj``: ``N`` counts in the
region, ``N_b`` counts in a background region scaled by ``s`` (e.g. volume
ratio), ``C`` counts per MBq (system sensitivity times duration, over the
in-frame factor), ``d`` the decay factor to injection and ``A_inj`` the
injected activity. Each Monte Carlo draw (parametric bootstrap, seeded
:class:`numpy.random.Generator`) combines

* **counting noise**: ``N* ~ Poisson(N)``, ``N_b* ~ Poisson(N_b)``, independent
  per row;
* **calibration**: ``C* = C (1 + cv z)``, ``z ~ N(0, 1)``, *one draw shared by
  every row of a subject* (one sensitivity serves all scans). Default CV
  2.7 %: reproducibility of a Tc-99m calibration over 18 months (EJNMMI Phys
  2016, doi 10.1186/s40658-016-0150-7). With normalisation to total counts
  (``counts_total``) ``C*`` is instead scaled by ``Poisson(N_tot) / N_tot``;
* **injected activity** (optional): ``A_inj* = A_inj (1 + cv_inj z')``, shared;
* **region boundary**: the spread of the results with the region eroded and
  dilated by one voxel (6-connected). With ``lo`` and ``hi`` the lowest and
  highest of (eroded, nominal, dilated) / nominal, the factor is drawn from a
  rectangular distribution *centred on the nominal result* with half-width
  ``(hi - lo) / 2`` (GUM type B; centring keeps the result as drawn the best
  estimate, so the interval always contains it), clipped at 0; one draw per
  region shared across its time points (a boundary error is systematic).

The interval is the percentile interval of the draws (default 95 %); the
output names it in ``interval_method``.

Caveat: reconstructed SPECT voxel values are not Poisson (iterative
reconstruction correlates and reshapes the noise); Poisson noise on the
region's total counts is the textbook approximation. Values below zero
(filtered back-projection) are clipped to zero for the Poisson mean.

Derived numbers (AUC, TIA, half-lives, MRT) get intervals by running the same
functions on every draw of the curve (:func:`propagate`,
:func:`derived_intervals`): the draws of one region's time points are
correlated exactly as above.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import numpy as np
from scipy import ndimage

from ..geometry import Image

__all__ = [
    "DEFAULT_CALIBRATION_CV",
    "percentile_interval",
    "pct_id_interval",
    "add_pct_id_intervals",
    "region_spread",
    "propagate",
    "derived_intervals",
]

#: Default calibration CV (EJNMMI Phys 2016, doi 10.1186/s40658-016-0150-7).
DEFAULT_CALIBRATION_CV = 0.027


def percentile_interval(draws, level: float = 0.95, axis: int = 0):
    """``(lo, hi)`` percentiles of draws along ``axis`` (NaNs ignored).

    Examples
    --------
    >>> lo, hi = percentile_interval(np.arange(1001.0))
    >>> float(lo), float(hi)
    (25.0, 975.0)
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    a = (1 - level) / 2
    q = np.nanquantile(np.asarray(draws, dtype=float), [a, 1 - a], axis=axis)
    return q[0], q[1]


def _method(level, n_draws, seed, cv, inj_cv, background, total, region):
    parts = ["Poisson counting noise of the region" + (" and background" if background else "")]
    if total:
        parts.append("Poisson noise of the normalisation total counts")
    if cv:
        parts.append(f"calibration CV {100 * cv:.3g} % (normal, shared by all rows of a subject)")
    if inj_cv:
        parts.append(f"injected-activity CV {100 * inj_cv:.3g} % (normal, shared)")
    if region:
        parts.append("region boundary: rectangular, centred, half-width = half the spread between 1-voxel "
                     "erosion and dilation (shared across times)")
    return (f"Monte Carlo percentile interval ({100 * level:g} %, {n_draws} draws, seed {seed}): "
            + "; ".join(parts))


def _engine(rng, per_count, n_counts, *, n_bg=None, bg_scale=None, cal_group, cv, total=None, inj_cv=0.0,
            region_lo=None, region_hi=None, region_group=None, n_draws):
    """Draws (n_draws, n) of per_count * net counts / calibration / injection * region factor."""
    n = per_count.size
    lam = np.clip(np.nan_to_num(n_counts, nan=0.0), 0, None)
    net = rng.poisson(lam, size=(n_draws, n)).astype(float)
    if n_bg is not None:
        net -= bg_scale * rng.poisson(np.clip(n_bg, 0, None), size=(n_draws, n))
    ugroups, ginv = np.unique(cal_group, return_inverse=True)
    f = np.ones((n_draws, ugroups.size))
    if cv:
        f *= np.clip(1.0 + cv * rng.standard_normal((n_draws, ugroups.size)), 1e-3, None)
    if total is not None and total > 0:
        f *= rng.poisson(total, size=(n_draws, 1)) / total
    if inj_cv:
        f *= np.clip(1.0 + inj_cv * rng.standard_normal((n_draws, ugroups.size)), 1e-3, None)
    out = per_count[None, :] * net / f[:, ginv]
    if region_lo is not None:
        rg, rinv = np.unique(region_group, return_inverse=True)
        u = rng.uniform(-1.0, 1.0, (n_draws, rg.size))[:, rinv]
        out *= np.clip(1.0 + u * (0.5 * (region_hi - region_lo))[None, :], 0.0, None)
    return out


def pct_id_interval(
    counts_region,
    *,
    counts_per_mbq,
    injected_mbq,
    decay_factor=1.0,
    counts_background=None,
    background_scale=1.0,
    counts_total: float | None = None,
    calibration_cv: float | None = None,
    injected_cv: float = 0.0,
    region_factor_low=None,
    region_factor_high=None,
    region_group=None,
    n_draws: int = 4000,
    seed: int | None = 0,
    level: float = 0.95,
    return_draws: bool = False,
) -> dict:
    """%ID and its Monte Carlo interval from counts (see the module docstring).

    Parameters
    ----------
    counts_region : float or array_like
        Counts in the region (one entry per row: time point or region).
    counts_per_mbq : float or array_like
        Counts that one MBq (at scan start) gives in this acquisition.
    injected_mbq : float
        Injected activity (MBq).
    decay_factor : float or array_like
        Decay factor from scan start to injection (1 for %ID not decay-corrected).
    counts_background : float or array_like, optional
        Counts of a background region, subtracted times ``background_scale``.
    counts_total : float, optional
        Total counts of the normalisation scan when ``C`` comes from
        normalisation to the whole field of view (then ``calibration_cv``
        defaults to 0).
    calibration_cv : float, optional
        CV of ``counts_per_mbq``; default :data:`DEFAULT_CALIBRATION_CV`
        (0 with ``counts_total``).
    injected_cv : float
        CV of the injected activity (dose calibrator); default 0.
    region_factor_low, region_factor_high : float or array_like, optional
        Region-boundary range as factors on the result (e.g. eroded / nominal
        and dilated / nominal); see the module docstring for how it is drawn.
    region_group : array_like, optional
        Rows sharing one boundary draw (default: all rows share one).
    n_draws, seed, level
        Monte Carlo settings.
    return_draws : bool
        Also return the draws, shape (n_draws, n), under ``"draws"``.

    Returns
    -------
    dict
        ``pct_id``, ``pct_id_lo``, ``pct_id_hi``, ``pct_id_sd`` (1-D arrays)
        and ``method`` (str).

    Examples
    --------
    >>> r = pct_id_interval(10000, counts_per_mbq=1000.0, injected_mbq=100.0, calibration_cv=0.0)
    >>> float(r["pct_id"][0]), bool(r["pct_id_lo"][0] < 10 < r["pct_id_hi"][0])
    (10.0, True)
    """
    n_counts = np.atleast_1d(np.asarray(counts_region, dtype=float))
    n = n_counts.size
    C = np.broadcast_to(np.asarray(counts_per_mbq, dtype=float), (n,))
    d = np.broadcast_to(np.asarray(decay_factor, dtype=float), (n,))
    if np.any(C <= 0) or not injected_mbq > 0:
        raise ValueError("counts_per_mbq and injected_mbq must be positive")
    per_count = 100.0 * d / (C * float(injected_mbq))
    nb = None if counts_background is None else np.broadcast_to(np.asarray(counts_background, float), (n,))
    s = np.broadcast_to(np.asarray(background_scale, float), (n,))
    net = n_counts - (s * nb if nb is not None else 0.0)
    cv = (0.0 if counts_total is not None else DEFAULT_CALIBRATION_CV) if calibration_cv is None else calibration_cv
    region = region_factor_low is not None or region_factor_high is not None
    lo_f = hi_f = None
    if region:
        a = np.broadcast_to(np.asarray(1.0 if region_factor_low is None else region_factor_low, float), (n,))
        b = np.broadcast_to(np.asarray(1.0 if region_factor_high is None else region_factor_high, float), (n,))
        lo_f, hi_f = np.minimum(np.minimum(a, b), 1.0), np.maximum(np.maximum(a, b), 1.0)
    rng = np.random.default_rng(seed)
    draws = _engine(rng, per_count, n_counts, n_bg=nb, bg_scale=s, cal_group=np.zeros(n, int), cv=cv,
                    total=counts_total, inj_cv=injected_cv, region_lo=lo_f, region_hi=hi_f,
                    region_group=np.zeros(n, int) if region_group is None else np.asarray(region_group),
                    n_draws=int(n_draws))
    lo, hi = percentile_interval(draws, level)
    out = {"pct_id": per_count * net, "pct_id_lo": lo, "pct_id_hi": hi, "pct_id_sd": draws.std(axis=0, ddof=1),
           "method": _method(level, n_draws, seed, cv, injected_cv, nb is not None, counts_total is not None,
                             region)}
    if return_draws:
        out["draws"] = draws
    return out


# ----------------------------------------------------------- whole table
_STRUCT = ndimage.generate_binary_structure(3, 1)


def region_spread(image_array: np.ndarray, mask: np.ndarray) -> tuple[float, float, float]:
    """Sums of ``image_array`` over ``mask``, ``mask`` eroded and ``mask`` dilated by one voxel.

    6-connected structuring element; erosion treats outside the volume as
    background. Returns ``(nominal, eroded, dilated)``.

    Examples
    --------
    >>> m = np.zeros((5, 5, 5), bool); m[1:4, 1:4, 1:4] = True
    >>> region_spread(np.ones((5, 5, 5)), m)
    (27.0, 1.0, 81.0)
    """
    where = np.nonzero(mask)
    if where[0].size == 0:
        return 0.0, 0.0, 0.0
    box = tuple(slice(max(int(w.min()) - 1, 0), min(int(w.max()) + 2, n)) for w, n in zip(where, mask.shape))
    m = mask[box]
    v = image_array[box].astype(np.float64)
    ero = ndimage.binary_erosion(m, _STRUCT)
    dil = ndimage.binary_dilation(m, _STRUCT)
    return float(v[m].sum()), float(v[ero].sum()), float(v[dil].sum())


def _per_timepoint(obj, tps, what):
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


def _row_mask(row, lab, rev, groups):
    kind = row.get("kind", "region")
    region = str(row["region"])
    if kind == "fov":
        return np.ones(lab.shape, bool)
    if kind == "outside":
        return lab == 0
    if kind == "group":
        members = groups.get(region, ())
        if not members or any(m not in rev for m in members):
            return None
        return np.isin(lab, [rev[m] for m in members])
    label = row.get("label")
    if label is not None and not (isinstance(label, float) and math.isnan(label)) and int(label) > 0:
        return lab == int(label)
    if region in rev:
        return lab == rev[region]
    return None


def add_pct_id_intervals(
    table,
    images,
    labels,
    *,
    counts_per_mbq=None,
    calibration_cv: float = DEFAULT_CALIBRATION_CV,
    injected_cv: float = 0.0,
    region_uncertainty: bool = True,
    n_draws: int = 2000,
    seed: int | None = 0,
    level: float = 0.95,
    return_draws: bool = False,
):
    """Add Monte Carlo intervals to every %ID of a quantification table.

    Parameters
    ----------
    table : pandas.DataFrame
        The quantification table (columns ``subject, timepoint, time_h,
        region, activity_mbq, pct_id, pct_id_uncorrected``; ``kind``,
        ``label``, ``volume_ml`` used when present).
    images : Image, sequence or mapping of Image
        The emission image of each time point (a sequence follows the sorted
        ``timepoint`` values; a mapping is keyed by them), as quantified.
    labels : LabelMap, or sequence / mapping of LabelMap
        The regions (resampled onto each image with nearest neighbour).
    counts_per_mbq : float, sequence or mapping, optional
        Detected counts per MBq at each time point. None means the images hold
        counts: the region's counts are its summed voxel values.
    calibration_cv, injected_cv : float
        See the module docstring.
    region_uncertainty : bool
        Include the 1-voxel erosion/dilation spread.
    n_draws, seed, level
        Monte Carlo settings.
    return_draws : bool
        Also return ``{(subject, region): {"time_h", "timepoint", "pct_id",
        "pct_id_uncorrected"}}`` with draws of shape (n_draws, n_times) for
        :func:`derived_intervals`.

    Returns
    -------
    pandas.DataFrame
        A copy of ``table`` plus ``counts``, ``pct_id_lo``, ``pct_id_hi``,
        ``pct_id_uncorrected_lo``/``_hi``, ``pct_id_per_ml_lo``/``_hi``,
        ``pct_id_eroded``, ``pct_id_dilated`` and ``interval_method``.
        Rows whose region cannot be located in the labels get NaN intervals.
    """
    from ..regions.labels import LabelMap
    from ..regions.vocabulary import GROUPS

    df = table.copy()
    if df.empty:
        return (df, {}) if return_draws else df
    tps = sorted(df["timepoint"].unique())
    imgs = [getattr(i, "image", i) for i in _per_timepoint(images, tps, "images")]
    labs = _per_timepoint(labels, tps, "label maps")
    cpm = None if counts_per_mbq is None else _per_timepoint(counts_per_mbq, tps, "counts_per_mbq values")
    n = len(df)
    counts = np.full(n, np.nan)
    s_nom = np.full(n, np.nan)
    s_ero = np.full(n, np.nan)
    s_dil = np.full(n, np.nan)
    pos = {idx: p for p, idx in enumerate(df.index)}
    for t_i, tp in enumerate(tps):
        img = imgs[t_i]
        if not isinstance(img, Image):
            raise TypeError(f"images must be spectrack Image objects, got {type(img).__name__}")
        if cpm is None and img.units.replace(" ", "").lower() in ("bq/ml", "bqml"):
            raise ValueError("the images are in Bq/mL: give counts_per_mbq (detected counts per MBq) so that "
                             "counting noise can be modelled")
        lm = labs[t_i]
        lm = lm.resampled_to(img) if isinstance(lm, LabelMap) else lm
        lab = lm.image.array if isinstance(lm, LabelMap) else np.asarray(lm)
        names = lm.names if isinstance(lm, LabelMap) else {}
        rev = {v: k for k, v in names.items()}
        arr = np.asarray(img.array, dtype=np.float64)
        rows = df[df["timepoint"] == tp]
        for idx, row in rows.iterrows():
            mask = _row_mask(row, lab, rev, GROUPS)
            if mask is None:
                continue
            p = pos[idx]
            if region_uncertainty and row.get("kind", "region") != "fov":
                s_nom[p], s_ero[p], s_dil[p] = region_spread(arr, mask)
            else:
                s_nom[p] = float(arr[mask].sum())
                s_ero[p] = s_dil[p] = s_nom[p]
            counts[p] = s_nom[p] if cpm is None else float(row["activity_mbq"]) * float(cpm[t_i])
    pid = df["pct_id"].to_numpy(float)
    pidu = df["pct_id_uncorrected"].to_numpy(float)
    tpv = df["timepoint"].to_numpy()
    # %ID per count: from the row, or (for empty regions) the median of its time point
    with np.errstate(divide="ignore", invalid="ignore"):
        per = np.where(counts > 0, pid / counts, np.nan)
        ratio = np.where(pid > 0, pidu / pid, np.nan)
    for tp in tps:
        sel = tpv == tp
        for a in (per, ratio):
            fill = np.nanmedian(a[sel]) if np.any(np.isfinite(a[sel])) else np.nan
            a[sel & ~np.isfinite(a)] = fill
    with np.errstate(divide="ignore", invalid="ignore"):
        f_ero = np.where(s_nom > 0, s_ero / s_nom, 1.0)
        f_dil = np.where(s_nom > 0, s_dil / s_nom, 1.0)
    lo_f, hi_f = np.minimum(np.minimum(f_ero, f_dil), 1.0), np.maximum(np.maximum(f_ero, f_dil), 1.0)
    subj = df["subject"].astype(str).to_numpy() if "subject" in df else np.full(n, "")
    reg = df["region"].astype(str).to_numpy()
    _, cal_group = np.unique(subj, return_inverse=True)
    _, reg_group = np.unique(np.char.add(np.char.add(subj.astype(str), "\x00"), reg.astype(str)),
                             return_inverse=True)
    ok = np.isfinite(counts) & np.isfinite(per)
    rng = np.random.default_rng(seed)
    draws = np.full((int(n_draws), n), np.nan)
    if np.any(ok):
        draws[:, ok] = _engine(rng, per[ok], counts[ok], cal_group=cal_group[ok], cv=calibration_cv,
                               inj_cv=injected_cv, region_lo=lo_f[ok] if region_uncertainty else None,
                               region_hi=hi_f[ok] if region_uncertainty else None,
                               region_group=reg_group[ok], n_draws=int(n_draws))
    lo, hi = percentile_interval(draws[:, ok], level) if np.any(ok) else (np.zeros(0), np.zeros(0))
    lo_all, hi_all = np.full(n, np.nan), np.full(n, np.nan)
    lo_all[ok], hi_all[ok] = lo, hi
    df["counts"] = counts
    df["pct_id_lo"], df["pct_id_hi"] = lo_all, hi_all
    df["pct_id_uncorrected_lo"], df["pct_id_uncorrected_hi"] = lo_all * ratio, hi_all * ratio
    if "volume_ml" in df:
        vol = df["volume_ml"].to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            df["pct_id_per_ml_lo"] = np.where(vol > 0, lo_all / vol, np.nan)
            df["pct_id_per_ml_hi"] = np.where(vol > 0, hi_all / vol, np.nan)
    df["pct_id_eroded"] = np.where(ok, pid * f_ero, np.nan) if region_uncertainty else np.nan
    df["pct_id_dilated"] = np.where(ok, pid * f_dil, np.nan) if region_uncertainty else np.nan
    method = _method(level, n_draws, seed, calibration_cv, injected_cv, False, False, region_uncertainty)
    df["interval_method"] = np.where(ok, method, "not computed: region not found in the labels")
    if not return_draws:
        return df
    out = {}
    tcol = df["time_h"].to_numpy(float)
    for key in dict.fromkeys(zip(subj, reg)):
        sel = np.flatnonzero((subj == key[0]) & (reg == key[1]) & ok)
        if sel.size == 0:
            continue
        sel = sel[np.argsort(tcol[sel], kind="stable")]
        out[key] = {"time_h": tcol[sel], "timepoint": tpv[sel], "pct_id": draws[:, sel],
                    "pct_id_uncorrected": draws[:, sel] * ratio[sel][None, :]}
    return df, out


# ------------------------------------------------------- derived numbers
def propagate(draws, func: Callable, *, level: float = 0.95, vectorized: bool = False) -> dict:
    """Intervals of ``func`` applied to every draw of a curve.

    Parameters
    ----------
    draws : array_like, shape (n_draws, n_times)
    func : callable
        Maps one curve (1-D array) to a float or a dict of floats; with
        ``vectorized=True`` it maps the whole (n_draws, n_times) array to an
        array (n_draws,) or a dict of such arrays.
    level : float

    Returns
    -------
    dict
        ``{name: {"lo", "hi", "median", "n_failed"}}`` (``name`` is
        ``"value"`` for a float-valued ``func``). Draws giving NaN or
        infinite results count as failed and are left out.
    """
    d = np.asarray(draws, dtype=float)
    if vectorized:
        res = func(d)
        res = res if isinstance(res, dict) else {"value": res}
        vals = {k: np.asarray(v, dtype=float) for k, v in res.items()}
    else:
        rows = [func(c) for c in d]
        keys = list(rows[0].keys()) if rows and isinstance(rows[0], dict) else ["value"]
        vals = {k: np.array([(r[k] if isinstance(r, dict) else r) for r in rows], dtype=float) for k in keys}
    out = {}
    for k, v in vals.items():
        good = np.isfinite(v)
        lo, hi = percentile_interval(v[good], level) if good.any() else (np.nan, np.nan)
        out[k] = {"lo": float(lo), "hi": float(hi), "median": float(np.median(v[good])) if good.any() else np.nan,
                  "n_failed": int((~good).sum())}
    return out


def derived_intervals(
    time_h,
    values,
    draws,
    *,
    half_life_h: float,
    decay_corrected: bool = True,
    level: float = 0.95,
    max_draws: int | None = None,
    **tac_metrics_kwargs,
):
    """Intervals on every number of :func:`~spectrack.kinetics.auc.tac_metrics`.

    The nominal curve gives ``value``; each Monte Carlo draw of the curve is
    run through the same fits and integrals (including model choice), and
    the percentiles of the results give ``lo``/``hi``.

    Parameters
    ----------
    time_h, values : array_like
        The nominal curve.
    draws : array_like, shape (n_draws, n_times)
        Draws of the curve (same correction as ``values``), e.g. from
        :func:`add_pct_id_intervals` with ``return_draws=True``.
    half_life_h, decay_corrected
        As for :func:`~spectrack.kinetics.auc.tac_metrics`.
    max_draws : int, optional
        Use only the first draws (fits are the slow part).
    **tac_metrics_kwargs
        ``models``, ``start``, ``tail``, ``rule``, ``weighting``, ``unit``.

    Returns
    -------
    pandas.DataFrame
        ``metric, correction, value, lo, hi, unit, method, interval_method,
        n_draws, n_failed``.
    """
    import pandas as pd

    from .auc import tac_metrics

    d = np.asarray(draws, dtype=float)
    if max_draws is not None:
        d = d[: int(max_draws)]
    nominal = tac_metrics(time_h, values, half_life_h=half_life_h, decay_corrected=decay_corrected,
                          **tac_metrics_kwargs)

    def one(curve):
        s = tac_metrics(time_h, curve, half_life_h=half_life_h, decay_corrected=decay_corrected,
                        **tac_metrics_kwargs)
        return {(r["metric"], r["correction"]): r["value"] for r in s.metrics}

    res = propagate(d, one, level=level)
    imethod = (f"Monte Carlo percentile interval ({100 * level:g} %): each of {len(d)} draws of the curve "
               "refitted and reintegrated")
    rows = []
    for r in nominal.metrics:
        k = (r["metric"], r["correction"])
        p = res.get(k, {"lo": np.nan, "hi": np.nan, "n_failed": len(d)})
        rows.append({"metric": k[0], "correction": k[1], "value": r["value"], "lo": p["lo"], "hi": p["hi"],
                     "unit": r["unit"], "method": r["method"], "interval_method": imethod,
                     "n_draws": len(d), "n_failed": p["n_failed"]})
    return pd.DataFrame(rows)
