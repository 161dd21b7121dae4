"""%ID and its Monte Carlo interval from counts: the model of :func:`pct_id_interval`.

The table version, :func:`spectrack.quantification.intervals.add_pct_id_intervals`,
draws EANM terms split into independent and shared ones and carries them
through the recovery correction (see its docstring); it shares
:data:`DEFAULT_CALIBRATION_CV` and :func:`percentile_interval` with this module.

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

The kinetic intervals (:mod:`spectrack.kinetics.uncertainty`) use
:func:`percentile_interval` too.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_CALIBRATION_CV", "percentile_interval", "pct_id_interval"]

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

