"""Monte Carlo intervals on the numbers derived from %ID: AUC, TIA, half-lives, MRT.

Derived numbers get intervals by running the same functions on every draw of
the curve (:func:`propagate`, :func:`metric_intervals`,
:func:`derived_intervals`): the draws of one region's time points are
correlated exactly as the %ID draws they come from.

The %ID intervals themselves work on one time point's regions and live in
:mod:`spectrack.quantification`; their names are re-exported here for
compatibility (``from spectrack.kinetics.uncertainty import ...`` keeps
working):

* :mod:`spectrack.quantification.intervals`: ``add_pct_id_intervals``,
  ``noise_factor_from_replicates``;
* :mod:`spectrack.quantification.count_intervals`: ``pct_id_interval``,
  ``percentile_interval``, ``DEFAULT_CALIBRATION_CV``;
* :mod:`spectrack.quantification.interval_terms`: ``region_spread``,
  ``boundary_sd_mm``;
* :mod:`spectrack.quantification.memory`: ``DRAW_MEMORY_SHARE``,
  ``available_memory_bytes``, ``pct_id_draws_bytes``,
  ``kinetics_draws_bytes``, ``check_draw_memory``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..quantification.count_intervals import DEFAULT_CALIBRATION_CV, pct_id_interval, percentile_interval
from ..quantification.interval_terms import boundary_sd_mm, region_spread
from ..quantification.intervals import add_pct_id_intervals, noise_factor_from_replicates
from ..quantification.memory import (
    DRAW_MEMORY_SHARE,
    available_memory_bytes,
    check_draw_memory,
    kinetics_draws_bytes,
    pct_id_draws_bytes,
)

__all__ = [
    "DEFAULT_CALIBRATION_CV",
    "percentile_interval",
    "pct_id_interval",
    "add_pct_id_intervals",
    "region_spread",
    "boundary_sd_mm",
    "noise_factor_from_replicates",
    "propagate",
    "derived_intervals",
    "DRAW_MEMORY_SHARE",
    "available_memory_bytes",
    "pct_id_draws_bytes",
    "kinetics_draws_bytes",
    "check_draw_memory",
]


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


#: metrics given an interval; the half-lives count a draw without one (its curve did not clear within
#: what the study measures) as beyond any finite bound
INTERVAL_METRICS = ("cmax", "start_value", "auc", "auc_observed", "auc_lambda_z", "auc_fit", "mrt_h", "tia",
                    "tia_observed", "tia_lambda_z", "tia_upper_bound", "tia_fit", "tiac_h", "terminal_rate_per_h")
HALF_LIFE_METRICS = ("t_bio_h", "t_eff_h", "t_bio_h_from_t_eff")


def metric_intervals(time_h, draws, nominal, *, half_life_h: float, level: float = 0.95, fixed_model: bool = True,
                     **tac_metrics_kwargs) -> dict:
    """Percentile intervals of a curve's kinetic numbers over Monte Carlo draws of the curve.

    Parameters
    ----------
    time_h : array_like
        Scan times (h), as for the nominal curve.
    draws : array_like, shape (n_draws, n_times)
        Draws of the decay-corrected curve.
    nominal : KineticSummary
        :func:`~spectrack.kinetics.auc.tac_metrics` of the nominal curve.
    half_life_h : float
    level : float
    fixed_model : bool
        Refit each draw with the nominal curve's chosen model only, from its
        parameters (fast; the interval then leaves out the uncertainty of the
        model choice); False repeats the whole model choice per draw.
    **tac_metrics_kwargs
        As given for the nominal curve (``start``, ``sigma``, ``unit``...).

    Returns
    -------
    dict
        ``{(metric, correction): (lo, hi, n_failed, note)}`` for
        :data:`INTERVAL_METRICS` and :data:`HALF_LIFE_METRICS` whose nominal
        value is finite. A half-life draw without a value counts as
        infinite (``hi`` may be ``inf``); for the other metrics, no interval
        (NaN) is given when more than ``(1 - level) / 2`` of the draws have no
        value.
    """
    from .auc import tac_metrics

    d = np.asarray(draws, dtype=float)
    kw = dict(tac_metrics_kwargs)
    if fixed_model:
        kw["refit"] = {c: sel.best for c, sel in nominal.selections.items()}
    wanted = [(r["metric"], r["correction"]) for r in nominal.metrics
              if r["metric"] in INTERVAL_METRICS + HALF_LIFE_METRICS and np.isfinite(r["value"])]
    vals = {k: np.full(len(d), np.nan) for k in wanted}
    for j, curve in enumerate(d):
        if not np.all(np.isfinite(curve)):
            continue
        s = tac_metrics(time_h, curve, half_life_h=half_life_h, decay_corrected=True, **kw)
        for r in s.metrics:
            k = (r["metric"], r["correction"])
            if k in vals:
                vals[k][j] = r["value"]
    tail = (1.0 - level) / 2.0
    out = {}
    for k, v in vals.items():
        good = np.isfinite(v)
        n_failed = int((~good).sum())
        if k[0] in HALF_LIFE_METRICS:
            big = 1e300   # stands for "unbounded" inside the quantile (inf - inf would be NaN)
            v = np.where(good, v, big)
            lo, hi = (float(np.quantile(v, tail)), float(np.quantile(v, 1 - tail))) if v.size else (np.nan, np.nan)
            lo, hi = (np.inf if x > 1e299 else x for x in (lo, hi))
            note = (f"; {n_failed} of {len(d)} draws gave no half-life (no clearance within what the study "
                    "measures): counted as unbounded") if n_failed else ""
        elif n_failed > tail * len(d) or not good.any():
            lo, hi = np.nan, np.nan
            note = f"; not given: {n_failed} of {len(d)} draws gave no value"
        else:
            lo, hi = percentile_interval(v[good], level)
            note = f"; {n_failed} of {len(d)} draws gave no value and are left out" if n_failed else ""
        out[k] = (float(lo), float(hi), n_failed, note)
    return out


def interval_text(level: float, n_draws: int, fixed_model: bool) -> str:
    """How the kinetic intervals were obtained, in one sentence."""
    return (f"Monte Carlo percentile interval ({100 * level:g} %): {n_draws} draws of the curve (every "
            "uncertainty term, shared ones included) refitted and reintegrated"
            + (" with the model fixed at the nominal curve's choice" if fixed_model else ", model choice repeated"))


def derived_intervals(
    time_h,
    values,
    draws,
    *,
    half_life_h: float,
    decay_corrected: bool = True,
    level: float = 0.95,
    max_draws: int | None = None,
    fixed_model: bool = False,
    **tac_metrics_kwargs,
):
    """Intervals on every number of :func:`~spectrack.kinetics.auc.tac_metrics`.

    The nominal curve gives ``value``; each Monte Carlo draw of the curve is
    run through the same fits and integrals, and the percentiles of the
    results give ``lo``/``hi`` (see :func:`metric_intervals`).

    Parameters
    ----------
    time_h, values : array_like
        The nominal curve.
    draws : array_like, shape (n_draws, n_times)
        Draws of the curve (same correction as ``values``), e.g. from
        :func:`~spectrack.quantification.intervals.add_pct_id_intervals` with
        ``return_draws=True``.
    half_life_h, decay_corrected
        As for :func:`~spectrack.kinetics.auc.tac_metrics`.
    max_draws : int, optional
        Use only the first draws (fits are the slow part).
    fixed_model : bool
        Refit only the nominal curve's chosen model per draw (fast) instead
        of repeating the model choice (default).
    **tac_metrics_kwargs
        ``models``, ``start``, ``tail``, ``rule``, ``weighting``, ``unit``.

    Returns
    -------
    pandas.DataFrame
        ``metric, correction, value, lo, hi, unit, method, interval_method,
        n_draws, n_failed`` (metrics without an interval have NaN bounds).
    """
    import pandas as pd

    from .auc import tac_metrics

    d = np.asarray(draws, dtype=float)
    if max_draws is not None:
        d = d[: int(max_draws)]
    t = np.asarray(time_h, dtype=float)
    y = np.asarray(values, dtype=float)
    nominal = tac_metrics(t, y if decay_corrected else y * np.exp(np.log(2) / float(half_life_h) * t),
                          half_life_h=half_life_h, decay_corrected=True, **tac_metrics_kwargs)
    check_draw_memory(kinetics_draws_bytes(len(d), len(t), len(nominal.metrics)) + (d.nbytes if not
                      decay_corrected else 0), "kinetic intervals", len(d), "max_draws")
    if not decay_corrected:   # the draws and the curve in the decay-corrected form the engine works on
        fac = np.exp(np.log(2) / float(half_life_h) * t)
        y, d = y * fac, d * fac[None, :]
    res = metric_intervals(t, d, nominal, half_life_h=half_life_h, level=level, fixed_model=fixed_model,
                           **tac_metrics_kwargs)
    imethod = interval_text(level, len(d), fixed_model)
    rows = []
    for r in nominal.metrics:
        k = (r["metric"], r["correction"])
        lo, hi, nf, note = res.get(k, (np.nan, np.nan, 0, ""))
        rows.append({"metric": k[0], "correction": k[1], "value": r["value"], "lo": lo, "hi": hi,
                     "unit": r["unit"], "method": r["method"], "interval_method": imethod + note if k in res else "",
                     "n_draws": len(d), "n_failed": nf})
    return pd.DataFrame(rows)
