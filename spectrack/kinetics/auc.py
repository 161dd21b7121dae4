"""Integrals and summary numbers of time-activity curves.

Every number carries a ``method`` string saying how it was obtained.

Conventions
-----------
* Times are hours after injection. Integrals run from the injection (t = 0).
  Before the first scan the curve is either **0 at injection**
  (``start="zero"``: linear rise from 0, right for tissues that take the
  tracer up) or **the first value held back to t = 0** (``start="first"``:
  right for the injection site or CSF, full at injection); ``start="none"``
  integrates from the first scan only.
* Between scans: the trapezoid rule (``rule="linear"``,
  :func:`scipy.integrate.trapezoid`) or linear-up/log-down (``rule="log-down"``:
  decreasing segments integrated as an exponential, exact for exponential
  clearance; the usual non-compartmental choice for sparse late scans).
* After the last scan (tail): ``C_last / k`` with ``k`` the **physical decay
  constant only** (``tail="physical"``: no biological clearance after the last
  scan, an upper bound; only for physical curves) or the **fitted terminal
  rate** (``tail="terminal"``), or no tail (``tail="none"``).
* The time-integrated activity (TIA, MBq h or %ID h) is the integral of the
  *physical* curve; the AUC of the *decay-corrected* curve is the biological
  exposure. Mean residence time ``MRT = AUMC / AUC`` with the same tail.
* Effective half-life: ln 2 / terminal rate of the physical curve.
  Biological half-life: ln 2 / terminal rate of the decay-corrected curve;
  equivalently ``1/T_bio = 1/T_eff - 1/T_phys`` (reported separately).

Terminal rate
-------------
:func:`terminal_rate` takes the slowest rate of the AICc-selected fit only
when that fit may be extrapolated (:meth:`FitResult.quality_issues
<spectrack.kinetics.fits.FitResult.quality_issues>`: converged, no parameter
on a bound, R^2 >= 0.9, at least 2 points after the peak in the fit's
terminal phase). Otherwise it falls back to a log-linear fit of the last
points after the observed peak (the non-compartmental lambda_z: the last 2
points, or the last 3 or more with the best adjusted R^2), then to the
chord from the peak to the only point after it; a curve that does not
decline after its peak has no terminal rate (a physical curve then uses
physical decay, an upper bound). Rates are never below the lower bound of
the fits (``lambda_phys`` for physical curves). The ``method`` text of every
number says which route was taken, and ``fit_r_squared`` /
``terminal_points`` rows report the quality behind it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.integrate import trapezoid

from .fits import MIN_R_SQUARED, MIN_TERMINAL_POINTS, FitResult, ModelSelection, fit_models, fits_to_frame

__all__ = [
    "Integral",
    "integrate_tac",
    "integrate_fit",
    "peak",
    "effective_half_life_h",
    "biological_half_life_h",
    "effective_from_biological_h",
    "TerminalRate",
    "terminal_rate",
    "KineticSummary",
    "tac_metrics",
    "KineticsResult",
    "analyse_kinetics",
]

LN2 = math.log(2.0)


@dataclass
class Integral:
    """An area under a curve with its parts and method.

    Array-valued when :func:`integrate_tac` was given a stack of curves.
    """

    value: float | np.ndarray        # AUC from injection to infinity (or to the last scan without tail)
    auc_observed: float | np.ndarray  # from injection (or first scan) to the last scan
    auc_tail: float | np.ndarray
    aumc: float | np.ndarray
    mrt_h: float | np.ndarray
    tail_rate_per_h: float | np.ndarray
    unit: str
    method: str

    @property
    def tail_fraction(self):
        """Share of the total area that comes from the extrapolated tail."""
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.asarray(self.auc_tail, dtype=float) / np.asarray(self.value, dtype=float)
        return float(r) if r.ndim == 0 else r

    def to_dict(self) -> dict:
        return {"value": self.value, "auc_observed": self.auc_observed, "auc_tail": self.auc_tail,
                "tail_fraction": self.tail_fraction, "aumc": self.aumc, "mrt_h": self.mrt_h,
                "tail_rate_per_h": self.tail_rate_per_h, "unit": self.unit, "method": self.method}


def _segments(t, y):
    """Per-segment AUC and AUMC by linear-up/log-down, shape (..., n-1)."""
    t1, t2 = t[:-1], t[1:]
    y1, y2 = y[..., :-1], y[..., 1:]
    dt = t2 - t1
    lin_auc = 0.5 * (y1 + y2) * dt
    lin_aumc = 0.5 * (t1 * y1 + t2 * y2) * dt
    use_log = (y2 < y1) & (y2 > 0) & (y1 > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.log(np.where(use_log, y1 / np.where(use_log, y2, 1.0), 2.0)) / np.where(dt > 0, dt, 1.0)
        log_auc = (y1 - y2) / k
        log_aumc = (t1 * y1 - t2 * y2) / k + (y1 - y2) / k ** 2
    return np.where(use_log, log_auc, lin_auc), np.where(use_log, log_aumc, lin_aumc)


def integrate_tac(
    time_h,
    values,
    *,
    start: str = "zero",
    tail: str = "none",
    rate_per_h=None,
    half_life_h: float | None = None,
    rule: str = "linear",
    decay_corrected: bool | None = None,
    unit: str = "",
) -> Integral:
    """Area under a sampled curve from injection, with optional tail.

    Parameters
    ----------
    time_h : array_like, shape (n,)
        Scan times after injection (h), increasing.
    values : array_like, shape (..., n)
        Curve values; leading axes are independent curves (e.g. Monte Carlo
        draws), integrated at once.
    start : {"zero", "first", "none"}
        Value assumed at t = 0 (see the module docstring).
    tail : {"none", "physical", "terminal"}
        Extrapolation after the last scan: ``C_last / k``.
    rate_per_h : float or array_like, optional
        The fitted terminal rate for ``tail="terminal"`` (per curve if an array).
    half_life_h : float, optional
        Needed for ``tail="physical"``.
    rule : {"linear", "log-down"}
        Trapezoid, or linear-up/log-down.
    decay_corrected : bool, optional
        Say True for a decay-corrected curve: ``tail="physical"`` is then
        refused (without biological clearance its tail is infinite).
    unit : str
        Unit of the area (e.g. ``"%ID*h"``), copied to the result.

    Returns
    -------
    Integral

    Examples
    --------
    >>> integrate_tac([1.0, 2.0, 3.0], [1.0, 1.0, 1.0], start="zero").value
    2.5
    >>> integrate_tac([1.0, 2.0, 3.0], [1.0, 1.0, 1.0], start="first").value
    3.0
    """
    t = np.asarray(time_h, dtype=float).ravel()
    y = np.asarray(values, dtype=float)
    if y.shape[-1] != t.size:
        raise ValueError(f"values' last axis ({y.shape[-1]}) must match time_h ({t.size})")
    if t.size == 0:
        raise ValueError("no time points to integrate")
    if np.any(np.diff(t) < 0):
        raise ValueError("time_h must be increasing (sort the curve first)")
    if rule not in ("linear", "log-down"):
        raise ValueError(f"rule must be 'linear' or 'log-down', got {rule!r}")
    if start not in ("zero", "first", "none"):
        raise ValueError(f"start must be 'zero', 'first' or 'none', got {start!r}")
    if t[0] < 0:
        raise ValueError("time_h must be >= 0 (hours after injection)")
    if start != "none" and t[0] > 0:
        y0 = np.zeros_like(y[..., :1]) if start == "zero" else y[..., :1]
        t = np.r_[0.0, t]
        y = np.concatenate([y0, y], axis=-1)
        s_txt = "from t=0 with value 0 at injection" if start == "zero" else \
            "from t=0 with the first value held back to injection"
    elif start == "none":
        s_txt = f"from the first scan (t={t[0]:.4g} h)"
    else:
        s_txt = "from the first scan at t=0"
    if t.size > 1 and rule == "linear":
        auc_obs = trapezoid(y, t, axis=-1)
        aumc_obs = trapezoid(t * y, t, axis=-1)
    elif t.size > 1:
        a, m = _segments(t, y)
        auc_obs, aumc_obs = a.sum(axis=-1), m.sum(axis=-1)
    else:
        auc_obs = np.zeros(y.shape[:-1])
        aumc_obs = np.zeros(y.shape[:-1])
    r_txt = "trapezoid (linear)" if rule == "linear" else "linear-up/log-down trapezoid"
    c_last, t_last = y[..., -1], t[-1]
    if tail == "none":
        k = np.full(np.shape(c_last), np.nan)
        auc_tail = np.zeros(np.shape(c_last))
        aumc_tail = np.zeros(np.shape(c_last))
        tail_txt = "no tail (to the last scan only)"
    else:
        if tail == "physical":
            if decay_corrected:
                raise ValueError("a decay-corrected curve has no physical-decay tail (it would be infinite): "
                                 "use tail='terminal' with a fitted rate, or integrate the physical curve")
            if half_life_h is None:
                raise ValueError("tail='physical' needs half_life_h")
            k = np.full(np.shape(c_last), LN2 / float(half_life_h))
            tail_txt = f"tail C_last/k, k = physical decay only ({LN2 / float(half_life_h):.6g} /h)"
        elif tail == "terminal":
            if rate_per_h is None:
                raise ValueError("tail='terminal' needs rate_per_h (the fitted terminal rate)")
            k = np.broadcast_to(np.asarray(rate_per_h, dtype=float), np.shape(c_last)).astype(float)
            tail_txt = ("tail C_last/k, k = fitted terminal rate"
                        + (f" ({float(k):.6g} /h)" if np.ndim(k) == 0 else ""))
        else:
            raise ValueError(f"tail must be 'none', 'physical' or 'terminal', got {tail!r}")
        with np.errstate(divide="ignore", invalid="ignore"):
            kk = np.where(k > 0, k, np.nan)
            # a zero rate gives an infinite tail (if anything is left); an unknown rate gives NaN
            none_left = np.where(c_last > 0, np.inf, 0.0)
            auc_tail = np.where(k > 0, c_last / kk, np.where(np.isnan(k), np.nan, none_left))
            aumc_tail = np.where(k > 0, c_last * t_last / kk + c_last / kk ** 2,
                                 np.where(np.isnan(k), np.nan, none_left))
    total = auc_obs + auc_tail
    aumc = aumc_obs + aumc_tail
    with np.errstate(divide="ignore", invalid="ignore"):
        mrt = np.where(total > 0, aumc / np.where(total > 0, total, 1.0), np.nan)
    method = f"{r_txt} {s_txt} to the last scan (t={t_last:.4g} h); {tail_txt}"

    def out(x):
        x = np.asarray(x, dtype=float)
        return float(x) if x.ndim == 0 else x

    return Integral(out(total), out(auc_obs), out(auc_tail), out(aumc), out(mrt), out(k), unit, method)


def integrate_fit(fit: FitResult, unit: str = "") -> Integral:
    """Analytic integral from 0 to infinity of a fitted model.

    mono ``A/k``; bi ``A1/k1 + A2/k2``; uptake-washout ``A (1/k2 - 1/k1)``;
    AUMC likewise with squared rates.
    """
    p = fit.params
    if not fit.converged:
        return Integral(math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, unit,
                        f"analytic integral of the {fit.model} fit: fit did not converge")
    with np.errstate(divide="ignore"):
        if fit.model == "mono":
            auc, aumc = _div(p["A"], p["k"]), _div(p["A"], p["k"] ** 2)
        elif fit.model == "bi":
            auc = _div(p["A1"], p["k1"]) + _div(p["A2"], p["k2"])
            aumc = _div(p["A1"], p["k1"] ** 2) + _div(p["A2"], p["k2"] ** 2)
        else:
            auc = p["A"] * (_div(1.0, p["k2"]) - _div(1.0, p["k1"]))
            aumc = p["A"] * (_div(1.0, p["k2"] ** 2) - _div(1.0, p["k1"] ** 2))
    t_last = float(fit.time_h[-1]) if fit.time_h.size else 0.0
    obs = _fit_area(fit, t_last)
    return Integral(auc, obs, auc - obs, aumc, aumc / auc if auc > 0 else math.nan, fit.terminal_rate_per_h,
                    unit, f"analytic integral 0-inf of the fitted {fit.model} model ({fit.formula})")


def _div(a, b):
    return a / b if b > 0 else (math.inf if a > 0 else 0.0)


def _fit_area(fit: FitResult, t_end: float) -> float:
    """Analytic integral of the fitted model from 0 to t_end."""
    p = fit.params

    def part(a, k):
        return a * (-math.expm1(-k * t_end)) / k if k > 0 else a * t_end

    if fit.model == "mono":
        return part(p["A"], p["k"])
    if fit.model == "bi":
        return part(p["A1"], p["k1"]) + part(p["A2"], p["k2"])
    return part(p["A"], p["k2"]) - part(p["A"], p["k1"])


def peak(time_h, values) -> tuple[float, float]:
    """Observed maximum and its time: ``(cmax, tmax_h)`` (first maximum)."""
    y = np.asarray(values, dtype=float)
    if y.size == 0 or not np.any(np.isfinite(y)):
        return math.nan, math.nan
    i = int(np.nanargmax(y))
    return float(y[i]), float(np.asarray(time_h, dtype=float)[i])


def effective_half_life_h(rate_per_h) -> float:
    """ln 2 / rate (the terminal rate of the physical curve).

    Examples
    --------
    >>> round(effective_half_life_h(math.log(2) / 3.0), 12)
    3.0
    """
    if isinstance(rate_per_h, FitResult):
        rate_per_h = rate_per_h.terminal_rate_per_h
    r = float(rate_per_h)
    return LN2 / r if r > 0 else (math.inf if r == 0 else math.nan)


def biological_half_life_h(t_eff_h: float, half_life_h: float) -> float:
    """``1/T_bio = 1/T_eff - 1/T_phys``; infinite when ``T_eff >= T_phys``.

    Examples
    --------
    >>> round(biological_half_life_h(3.0, 6.0), 12)
    6.0
    """
    inv = 1.0 / float(t_eff_h) - 1.0 / float(half_life_h)
    return 1.0 / inv if inv > 0 else math.inf


def effective_from_biological_h(t_bio_h: float, half_life_h: float) -> float:
    """``1/T_eff = 1/T_bio + 1/T_phys`` (an infinite ``T_bio`` gives ``T_phys``).

    Examples
    --------
    >>> round(effective_from_biological_h(6.0, 6.0), 12)
    3.0
    """
    return 1.0 / (1.0 / float(t_bio_h) + 1.0 / float(half_life_h))


# ------------------------------------------------------------ terminal rate
@dataclass
class TerminalRate:
    """The terminal rate of a curve and where it came from.

    ``source`` is ``"fit"`` (selected model), ``"log-linear"`` (lambda_z of
    the last points after the peak), ``"peak-to-last"`` (chord from the peak
    to the only point after it) or ``"none"`` (NaN rate); ``n_points`` the
    number of points behind it; ``fit_issues`` why the selected fit was not
    used (empty when it was).
    """

    rate_per_h: float
    source: str
    n_points: int
    method: str
    fit_issues: tuple[str, ...] = ()

    @property
    def half_life_h(self) -> float:
        return effective_half_life_h(self.rate_per_h) if np.isfinite(self.rate_per_h) else math.nan


def _lambda_z(t: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """Log-linear terminal rate of the points (t, y > 0): (rate, points used).

    Two points: their slope. Three or more: the last ``m >= 3`` points with
    the best adjusted R^2 (ties within 1e-4 go to more points).
    """
    if t.size == 2:
        return float(-(math.log(y[1]) - math.log(y[0])) / (t[1] - t[0])), 2
    best = None
    ly = np.log(y)
    for m in range(3, t.size + 1):
        tt, ll = t[-m:], ly[-m:]
        slope, icpt = np.polyfit(tt, ll, 1)
        ss_tot = float(np.sum((ll - ll.mean()) ** 2))
        ss_res = float(np.sum((ll - (slope * tt + icpt)) ** 2))
        r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
        adj = 1.0 - (1.0 - r2) * (m - 1) / (m - 2)
        if best is None or adj > best[0] - 1e-4:
            best = (max(adj, best[0]) if best else adj, -float(slope), m)
    return best[1], best[2]


def terminal_rate(
    time_h,
    values,
    selection: ModelSelection | FitResult | None = None,
    *,
    rate_lower_bound_per_h: float = 0.0,
    min_r_squared: float = MIN_R_SQUARED,
    min_terminal_points: int = MIN_TERMINAL_POINTS,
) -> TerminalRate:
    """Terminal (slowest) rate of a curve: the selected fit's if it may be extrapolated, else log-linear.

    Parameters
    ----------
    time_h, values : array_like
        The curve.
    selection : ModelSelection or FitResult, optional
        The fit(s); its best fit is used when
        ``FitResult.quality_issues(min_r_squared, min_terminal_points)`` is empty.
    rate_lower_bound_per_h : float
        ``lambda_phys`` for a physical curve (0 for decay-corrected): a
        fallback rate below it is raised to it (a physical curve then
        extrapolates with physical decay only).

    Examples
    --------
    >>> r = terminal_rate([1, 2, 4, 6, 24.0], [2, 8, 6, 4.5, 0.2])
    >>> r.source, round(r.rate_per_h, 4), r.n_points
    ('log-linear', 0.1712, 3)
    """
    t = np.asarray(time_h, dtype=float).ravel()
    y = np.asarray(values, dtype=float).ravel()
    ok = np.isfinite(t) & np.isfinite(y)
    order = np.argsort(t[ok], kind="stable")
    t, y = t[ok][order], y[ok][order]
    lo = float(rate_lower_bound_per_h)
    best = selection.best if isinstance(selection, ModelSelection) else selection
    issues: tuple[str, ...] = ()
    if best is not None:
        issues = best.quality_issues(min_r_squared, min_terminal_points)
        if not issues:
            return TerminalRate(best.terminal_rate_per_h, "fit", best.terminal_points(),
                                f"slowest rate of the {best.model} fit (R^2 = {best.r_squared:.4g}, "
                                f"{best.terminal_points()} points after the peak in its terminal phase)")
        why = f"the {best.model} fit is not used ({'; '.join(issues)}): "
    else:
        why = "no usable fit: "
    if t.size == 0 or not np.any(y > 0):
        return TerminalRate(math.nan, "none", 0, why + "no positive values", issues)
    imax = int(np.argmax(y))
    post = np.flatnonzero((np.arange(t.size) > imax) & (y > 0))
    if post.size >= 2:
        k, m = _lambda_z(t[post], y[post])
        src, used = "log-linear", t[post][-m:]
        txt = (f"log-linear fit of the last {m} points after the peak "
               f"(t = {', '.join(f'{v:g}' for v in used)} h)")
    elif post.size == 1:
        i = int(post[0])
        k = -(math.log(y[i]) - math.log(y[imax])) / (t[i] - t[imax])
        src, m = "peak-to-last", 2
        txt = (f"log-linear slope from the peak (t = {t[imax]:g} h) to the only point after it "
               f"(t = {t[i]:g} h; tends to underestimate the rate, so the tail is an upper estimate)")
    else:
        return TerminalRate(math.nan, "none", 0,
                            why + f"no decline observed (peak at the last scan, t = {t[imax]:g} h): "
                            "terminal rate not estimable", issues)
    if not k > lo:
        if lo > 0:
            return TerminalRate(lo, src, m, why + txt + f" gives {k:.4g} /h, below the lower bound: "
                                f"raised to {lo:.6g} /h (physical decay only)", issues)
        return TerminalRate(math.nan, "none", m, why + txt + f" gives {k:.4g} /h (no clearance): "
                            "terminal rate not estimable", issues)
    return TerminalRate(float(k), src, m, why + txt, issues)


# ------------------------------------------------------------ summaries
@dataclass
class KineticSummary:
    """Summary numbers of one curve (both corrections) and the fits behind them."""

    metrics: list[dict]
    selections: dict[str, ModelSelection] = field(default_factory=dict)
    terminal: dict[str, TerminalRate] = field(default_factory=dict)

    def value(self, metric: str, correction: str | None = None) -> float:
        """The value of one metric (first match)."""
        for r in self.metrics:
            if r["metric"] == metric and (correction is None or r["correction"] == correction):
                return r["value"]
        raise KeyError(f"no metric {metric!r}" + (f" ({correction})" if correction else ""))

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.metrics, columns=["metric", "correction", "value", "unit", "method"])


def tac_metrics(
    time_h,
    values,
    *,
    half_life_h: float,
    decay_corrected: bool = True,
    models: Sequence[str] = ("mono", "bi", "uptake_washout"),
    start: str = "zero",
    tail: str = "terminal",
    rule: str = "linear",
    weighting: str = "relative",
    sigma=None,
    unit: str = "%ID",
) -> KineticSummary:
    """Cmax, Tmax, AUC/TIA, MRT and half-lives of one curve.

    The curve is given in one correction; the other is derived exactly with
    ``exp(-+lambda t)``. Each correction is fitted with ``models`` (chosen by
    AICc, see :func:`~spectrack.kinetics.fits.fit_models`); physical fits
    have all rates ``>= lambda_phys``.

    Parameters
    ----------
    time_h, values : array_like
        The curve (any unit; ``unit`` names it, e.g. ``"%ID"`` or ``"MBq"``).
    half_life_h : float
        Physical half-life (h).
    decay_corrected : bool
        Whether ``values`` are decay-corrected to injection.
    models : sequence of str
        Candidate models.
    start, rule : str
        See :func:`integrate_tac`.
    tail : {"terminal", "physical", "none"}
        Tail of the *physical* curve (TIA). The decay-corrected AUC uses the
        terminal rate (:func:`terminal_rate`: the selected fit's if that fit
        is good, else log-linear after the peak), or no tail when
        ``tail="none"``, since its physical-decay-only tail is infinite.
        Without a terminal rate (no decline after the peak) ``terminal``
        falls back to ``physical`` for the TIA (the method says so) and the
        decay-corrected AUC is NaN.
    weighting, sigma
        Passed to the fits (``sigma`` refers to ``values``).

    Returns
    -------
    KineticSummary
        Rows ``metric, correction, value, unit, method`` with metrics
        ``cmax, tmax_h, auc`` (decay-corrected) / ``tia`` (physical),
        ``auc_observed`` / ``tia_observed``, ``tail_fraction``, ``mrt_h``,
        ``auc_fit`` / ``tia_fit`` (analytic integral of the chosen model;
        NaN when the fit may not be extrapolated), ``fit_r_squared``,
        ``terminal_points`` (points behind the terminal rate),
        ``terminal_rate_per_h``, ``t_eff_h`` (physical), ``t_bio_h``
        (decay-corrected) and ``t_bio_h_from_t_eff`` (relation).
        ``terminal`` holds the :class:`TerminalRate` of each correction.
    """
    t = np.asarray(time_h, dtype=float).ravel()
    y = np.asarray(values, dtype=float).ravel()
    order = np.argsort(t, kind="stable")
    t, y = t[order], y[order]
    sig = None if sigma is None else np.broadcast_to(np.asarray(sigma, float), y.shape)[order]
    lam = LN2 / float(half_life_h)
    fac = np.exp(lam * t)
    curves = {"decay_corrected": (y, sig) if decay_corrected else (y * fac, None if sig is None else sig * fac),
              "physical": (y / fac, None if sig is None else sig / fac) if decay_corrected else (y, sig)}
    rows: list[dict] = []
    sels: dict[str, ModelSelection] = {}
    terms: dict[str, TerminalRate] = {}
    area_unit = f"{unit}*h" if unit else "h"

    def add(metric, corr, value, u, method):
        rows.append({"metric": metric, "correction": corr, "value": float(value), "unit": u, "method": method})

    for corr, (yc, sc) in curves.items():
        dc = corr == "decay_corrected"
        lo = 0.0 if dc else lam
        sel = fit_models(t, yc, models, sigma=sc, weighting=weighting, decay_corrected=dc, half_life_h=half_life_h)
        sels[corr] = sel
        best = sel.best
        term = terminal_rate(t, yc, sel, rate_lower_bound_per_h=lo)
        terms[corr] = term
        cmax, tmax = peak(t, yc)
        add("cmax", corr, cmax, unit, "observed maximum")
        add("tmax_h", corr, tmax, "h", "time of the observed maximum")
        fit_txt = (f"{best.model} fit ({sel.criterion}-selected among {', '.join(models)}; "
                   f"{best.weighting} weights)") if best else "no converged fit"
        k_term = term.rate_per_h
        k_txt = f"terminal rate from the {fit_txt}" if term.source == "fit" else f"terminal rate: {term.method}"
        name = "auc" if dc else "tia"
        if tail == "none":
            integ = integrate_tac(t, yc, start=start, tail="none", rule=rule, unit=area_unit)
        elif tail not in ("terminal", "physical"):
            raise ValueError(f"tail must be 'terminal', 'physical' or 'none', got {tail!r}")
        elif dc:
            integ = integrate_tac(t, yc, start=start, tail="terminal", rate_per_h=k_term, rule=rule,
                                  unit=area_unit)
            integ.method += f"; {k_txt}"
        elif tail == "physical" or not np.isfinite(k_term):
            integ = integrate_tac(t, yc, start=start, tail="physical", half_life_h=half_life_h, rule=rule,
                                  unit=area_unit)
            if tail != "physical":
                integ.method += f" (fallback, an upper bound: {term.method})"
        else:
            integ = integrate_tac(t, yc, start=start, tail="terminal", rate_per_h=k_term, rule=rule,
                                  unit=area_unit)
            integ.method += f"; {k_txt}"
        add(name, corr, integ.value, area_unit, integ.method)
        obs = integrate_tac(t, yc, start=start, tail="none", rule=rule)
        add(f"{name}_observed", corr, obs.value, area_unit, obs.method)
        add("tail_fraction", corr, integ.tail_fraction, "1", f"tail share of {name}: " + integ.method)
        add("mrt_h", corr, integ.mrt_h, "h", "AUMC/AUC, " + integ.method)
        issues = best.quality_issues() if best else ("no converged fit",)
        if best and not issues:
            fi = integrate_fit(best, area_unit)
            add(f"{name}_fit", corr, fi.value, area_unit, fi.method)
        else:
            add(f"{name}_fit", corr, math.nan, area_unit,
                f"analytic integral of the {fit_txt}: not reported ({'; '.join(issues)})")
        add("fit_r_squared", corr, best.r_squared if best else math.nan, "1",
            f"unweighted R^2 of the {fit_txt}; " + ("fit may be extrapolated" if not issues else
                                                   "not used for extrapolation: " + "; ".join(issues)))
        add("terminal_points", corr, term.n_points, "1", f"points behind the {k_txt}")
        add("terminal_rate_per_h", corr, k_term, "1/h", k_txt)
        half = effective_half_life_h(k_term) if np.isfinite(k_term) else math.nan
        if dc:
            add("t_bio_h", corr, half, "h", f"ln2 / {k_txt} (decay-corrected curve)")
        else:
            add("t_eff_h", corr, half, "h", f"ln2 / {k_txt} (physical curve, rates >= lambda_phys)")
            add("t_bio_h_from_t_eff", corr,
                biological_half_life_h(half, half_life_h) if np.isfinite(half) else math.nan, "h",
                f"1/T_bio = 1/T_eff - 1/T_phys with T_phys = {half_life_h:g} h, T_eff from the physical curve")
    return KineticSummary(rows, sels, terms)


@dataclass
class KineticsResult:
    """Kinetics of a whole table: ``metrics`` (long: one row per subject,
    region, quantity, metric and correction) and ``fits`` (every candidate fit
    with its selection)."""

    metrics: "object"
    fits: "object"


def analyse_kinetics(
    table,
    *,
    half_life_h: float | None = None,
    quantities: Sequence[str] = ("pct_id", "activity_mbq"),
    regions: Sequence[str] | None = None,
    kinds: Sequence[str] | None = ("region", "group"),
    use_intervals: bool = True,
    **kwargs,
) -> KineticsResult:
    """:func:`tac_metrics` for every subject, region and quantity of a table.

    Parameters
    ----------
    table : pandas.DataFrame
        The quantification table (optionally with ``pct_id_lo``/``pct_id_hi``).
    half_life_h : float, optional
        Defaults to the value recorded in ``table.attrs``.
    quantities : sequence of str
        Keys of :data:`spectrack.kinetics.tac.QUANTITIES`.
    regions, kinds
        Row filters (``kinds`` needs a ``kind`` column).
    use_intervals : bool
        Weight fits by the interval half-widths (``(hi - lo) / 3.92``) when the
        table has them; otherwise ``weighting`` (default relative) applies.
    **kwargs
        Passed to :func:`tac_metrics` (``models``, ``start``, ``tail``...).
    """
    import pandas as pd

    from .tac import QUANTITIES, get_tac, half_life_from_table

    hl = half_life_h if half_life_h is not None else half_life_from_table(table)
    if hl is None:
        raise ValueError("half_life_h is needed (not recorded in the table's metadata)")
    df = table.copy(deep=False)
    df.attrs = {}   # pandas deep-copies attrs on every selection; the half-life is already taken
    if kinds is not None and "kind" in df:
        df = df[df["kind"].isin(list(kinds))]
    if regions is not None:
        df = df[df["region"].isin(list(regions))]
    subjects = df["subject"].astype(str).unique() if "subject" in df else [None]
    mrows, frows = [], []
    for s in subjects:
        sub = df if s is None else df[df["subject"].astype(str) == s]
        for region in pd.unique(sub["region"].astype(str)):
            for q in quantities:
                try:
                    tac = get_tac(sub, region, quantity=q, correction="decay_corrected", half_life_h=hl)
                except KeyError:
                    continue
                sigma = None
                if use_intervals and tac.lo is not None and tac.hi is not None:
                    sd = (tac.hi - tac.lo) / 3.92
                    sigma = sd if np.all(np.isfinite(sd) & (sd > 0)) else None
                summ = tac_metrics(tac.time_h, tac.values, half_life_h=hl, decay_corrected=True, sigma=sigma,
                                   unit=QUANTITIES[q][2], **kwargs)
                key = {"subject": s, "region": region, "quantity": q}
                mrows += [dict(key, **r) for r in summ.metrics]
                for corr, sel in summ.selections.items():
                    f = sel.to_frame()
                    for k, v in reversed(list(dict(key, correction=corr).items())):
                        f.insert(0, k, v)
                    frows.append(f)
    metrics = pd.DataFrame(mrows, columns=["subject", "region", "quantity", "metric", "correction", "value",
                                           "unit", "method"])
    fits = pd.concat(frows, ignore_index=True) if frows else fits_to_frame([])
    metrics.attrs["half_life_h"] = hl
    return KineticsResult(metrics, fits)
