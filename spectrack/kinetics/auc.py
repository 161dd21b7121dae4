"""Integrals and summary numbers of time-activity curves.

Every number carries a ``method`` string saying how it was obtained.

Conventions
-----------
* Times are hours after injection. Integrals run from the injection (t = 0),
  starting at a physiological value (``start``): 0 for tissues
  (``"zero"``), the content back-extrapolated log-linearly from the first
  two scans for the region holding the injection (``"back"``,
  :func:`back_extrapolate`, never above the dose), the first value held back
  (``"first"``), a given number, or no area before the first scan
  (``"none"``).
* Between scans: linear-up/log-down (``rule="log-down"``, the default:
  rising segments linear, falling ones exponential, exact for exponential
  clearance) or the trapezoid rule (``rule="linear"``). The TIA of the
  physical curve interpolates the decay-corrected curve this way and
  applies physical decay exactly within each interval
  (``decay_within_h``).
* After the last scan (tail): ``C_last / k`` with the terminal rate, used
  as the headline only when at least :data:`MIN_PHASE_POINTS` points define
  the terminal phase; otherwise the lambda_z estimate (last two points) and
  the physical-decay upper bound (``tail="physical"``) are both reported,
  named.
* The time-integrated activity (TIA, MBq h or %ID h) is the integral of the
  *physical* curve, and TIA / dose the time-integrated activity coefficient
  (``tiac_h``, MIRD residence time); the AUC of the *decay-corrected* curve
  is the biological exposure, and ``MRT = AUMC / AUC`` its moment ratio.
* Effective half-life: ln 2 / terminal rate of the physical curve.
  Biological half-life: ln 2 / terminal rate of the decay-corrected curve;
  equivalently ``1/T_bio = 1/T_eff - 1/T_phys`` (reported separately).
  Neither is given for a curve that does not decline.

Terminal rate
-------------
:func:`terminal_rate` takes the slowest rate of the AICc-selected fit only
when that fit may be extrapolated (:meth:`FitResult.quality_issues
<spectrack.kinetics.fits.FitResult.quality_issues>`: converged, no parameter
on a bound, R^2 >= 0.9, at least 3 points after the peak in the fit's
terminal phase). Otherwise it falls back to a log-linear fit of the last
points after the observed peak (the non-compartmental lambda_z: the last 3
or more with the best adjusted R^2 when it reaches 0.8, else the last 2),
then to the chord from the peak to the only point after it; a curve that
does not decline after its peak has no terminal rate (a physical curve then
uses physical decay, an upper bound). Rates are never below the lower bound
of the fits (``lambda_phys`` for physical curves). The ``method`` text of
every number says which route was taken, and ``fit_r_squared`` /
``terminal_points`` rows report the quality behind it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from scipy.integrate import trapezoid

from .fits import DEFAULT_MODELS, MIN_R_SQUARED, MIN_TERMINAL_POINTS, FitResult, ModelSelection, fit_models

__all__ = [
    "Integral",
    "back_extrapolate",
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
    "MIN_PHASE_POINTS",
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


def _segments_decayed(t, d, lam: float):
    """Per-segment integral of ``d(t) exp(-lam t)`` with ``d`` interpolated linear-up/log-down, shape (..., n-1).

    ``d`` is the decay-corrected curve: rising (or flat) segments are linear
    in ``d``, falling ones exponential in ``d``; physical decay is applied
    exactly within each segment. For falling segments this is the log-down
    rule on the physical curve itself.
    """
    t1, t2 = t[:-1], t[1:]
    d1, d2 = d[..., :-1], d[..., 1:]
    dt = t2 - t1
    e1 = np.exp(-lam * t1)
    x = lam * dt
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if lam > 0:
            i0 = e1 * -np.expm1(-x) / lam                                   # int e^{-lam t}
            i1 = e1 * (-np.expm1(-x) - x * np.exp(-x)) / lam ** 2            # int (t - t1) e^{-lam t}
        else:
            i0, i1 = dt + 0 * e1, 0.5 * dt ** 2 + 0 * e1
        slope = (d2 - d1) / np.where(dt > 0, dt, 1.0)
        lin = d1 * i0 + slope * i1
        use_log = (d2 < d1) & (d2 > 0) & (d1 > 0)
        k = np.log(np.where(use_log, d1 / np.where(use_log, d2, 1.0), 2.0)) / np.where(dt > 0, dt, 1.0)
        kk = k + lam
        log = d1 * e1 * -np.expm1(-kk * dt) / kk
    return np.where(use_log, log, lin)


def back_extrapolate(time_h, values, *, cap: float | None = None) -> tuple[float, str]:
    """Value at t = 0 of a curve that starts full (the injected compartment): ``(c0, method)``.

    The log-linear line through the first two scans, extended back to the
    injection (the usual non-compartmental ``C0`` of a bolus), when they
    decline; otherwise the first value held back to t = 0. Never above
    ``cap`` (e.g. 100 %ID).

    Examples
    --------
    >>> c0, _ = back_extrapolate([1.0, 2.0, 4.0], [50.0, 25.0, 10.0])
    >>> round(c0, 9)
    100.0
    """
    t = np.asarray(time_h, dtype=float).ravel()
    y = np.asarray(values, dtype=float).ravel()
    ok = np.isfinite(t) & np.isfinite(y)
    t, y = t[ok], y[ok]
    if t.size == 0:
        return math.nan, "no values"
    if t.size >= 2 and y[0] > y[1] > 0 and t[1] > t[0] >= 0:
        c0 = float(y[0] * (y[0] / y[1]) ** (t[0] / (t[1] - t[0])))
        txt = (f"log-linear back-extrapolation of the first two scans (t = {t[0]:g}, {t[1]:g} h) to the "
               f"injection: {c0:.4g}")
    else:
        c0 = float(y[0])
        txt = f"the first value held back to the injection (the first two scans do not decline): {c0:.4g}"
    if cap is not None and c0 > cap:
        txt += f", capped at {cap:g} (the whole dose)"
        c0 = float(cap)
    return c0, txt


def integrate_tac(
    time_h,
    values,
    *,
    start="zero",
    tail: str = "none",
    rate_per_h=None,
    half_life_h: float | None = None,
    rule: str = "log-down",
    decay_corrected: bool | None = None,
    unit: str = "",
    start_cap: float | None = None,
    decay_within_h: float | None = None,
) -> Integral:
    """Area under a sampled curve from injection, with optional tail.

    Parameters
    ----------
    time_h : array_like, shape (n,)
        Scan times after injection (h), increasing.
    values : array_like, shape (..., n)
        Curve values; leading axes are independent curves (e.g. Monte Carlo
        draws), integrated at once.
    start : {"zero", "back", "first", "none"} or float
        Value at t = 0: 0 (tissues), the log-linear back-extrapolation of the
        first two scans (:func:`back_extrapolate`; the injected
        compartment), the first value held back, no area before the first
        scan, or the given value.
    tail : {"none", "physical", "terminal"}
        Extrapolation after the last scan: ``C_last / k``.
    rate_per_h : float or array_like, optional
        The terminal rate for ``tail="terminal"`` (per curve if an array).
    half_life_h : float, optional
        Needed for ``tail="physical"`` and ``decay_within_h``.
    rule : {"log-down", "linear"}
        Linear-up/log-down (default: rising segments linear, falling ones
        exponential, exact for exponential clearance) or the plain trapezoid.
    decay_corrected : bool, optional
        Say True for a decay-corrected curve: ``tail="physical"`` is then
        refused (without biological clearance its tail is infinite).
    unit : str
        Unit of the area (e.g. ``"%ID*h"``), copied to the result.
    start_cap : float, optional
        Upper limit of the back-extrapolated start value.
    decay_within_h : float, optional
        The physical half-life: ``values`` are then the **decay-corrected**
        curve and the result is the area of the **physical** curve
        (``values * exp(-lambda t)``), with the decay-corrected curve
        interpolated linear-up/log-down and physical decay applied exactly
        within each interval; ``rate_per_h`` is then the biological rate and
        the tail ``C_last exp(-lambda t_last) / (k + lambda)``
        (``tail="physical"``: ``k = 0``). AUMC and MRT are not computed.

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
    numeric_start = isinstance(start, (int, float, np.floating, np.integer)) and not isinstance(start, bool)
    if not numeric_start and start not in ("zero", "first", "back", "none"):
        raise ValueError(f"start must be 'zero', 'back', 'first', 'none' or a number, got {start!r}")
    if t[0] < 0:
        raise ValueError("time_h must be >= 0 (hours after injection)")
    lam = None
    if decay_within_h is not None:
        lam = LN2 / float(decay_within_h)
        if rule != "log-down":
            raise ValueError("decay_within_h needs rule='log-down'")
    if start != "none" and t[0] > 0:
        if numeric_start:
            y0 = np.full(y.shape[:-1] + (1,), float(start))
            s_txt = f"from t=0 with the value {float(start):.4g} at injection"
        elif start == "zero":
            y0 = np.zeros_like(y[..., :1])
            s_txt = "from t=0 with value 0 at injection"
        elif start == "first":
            y0 = y[..., :1]
            s_txt = "from t=0 with the first value held back to injection"
        else:
            flat = y.reshape(-1, t.size)
            c0 = [back_extrapolate(t, row, cap=start_cap) for row in flat]
            y0 = np.array([c for c, _ in c0]).reshape(y.shape[:-1] + (1,))
            s_txt = "from t=0 with " + (c0[0][1] if len(c0) == 1 else "the log-linear back-extrapolation of the "
                                        "first two scans at injection")
        t = np.r_[0.0, t]
        y = np.concatenate([y0, y], axis=-1)
    elif start == "none":
        s_txt = f"from the first scan (t={t[0]:.4g} h)"
    else:
        s_txt = "from the first scan at t=0"
    if t.size > 1 and lam is not None:
        auc_obs = _segments_decayed(t, y, lam).sum(axis=-1)
        aumc_obs = np.full(np.shape(auc_obs), np.nan)
    elif t.size > 1 and rule == "linear":
        auc_obs = trapezoid(y, t, axis=-1)
        aumc_obs = trapezoid(t * y, t, axis=-1)
    elif t.size > 1:
        a, m = _segments(t, y)
        auc_obs, aumc_obs = a.sum(axis=-1), m.sum(axis=-1)
    else:
        auc_obs = np.zeros(y.shape[:-1])
        aumc_obs = np.zeros(y.shape[:-1])
    if lam is not None:
        r_txt = ("linear-up/log-down on the decay-corrected curve with physical decay applied exactly within "
                 "each interval")
    else:
        r_txt = "trapezoid (linear)" if rule == "linear" else "linear-up/log-down trapezoid"
    c_last, t_last = y[..., -1], t[-1]
    if lam is not None:
        c_last = c_last * math.exp(-lam * t_last)   # physical value at the last scan
    if tail == "none":
        k = np.full(np.shape(c_last), np.nan)
        auc_tail = np.zeros(np.shape(c_last))
        aumc_tail = np.zeros(np.shape(c_last))
        tail_txt = "no tail (to the last scan only)"
    else:
        if tail == "physical":
            if decay_corrected and lam is None:
                raise ValueError("a decay-corrected curve has no physical-decay tail (it would be infinite): "
                                 "use tail='terminal' with a fitted rate, or integrate the physical curve")
            if half_life_h is None and lam is None:
                raise ValueError("tail='physical' needs half_life_h")
            lam_p = lam if lam is not None else LN2 / float(half_life_h)
            k = np.full(np.shape(c_last), lam_p)
            tail_txt = f"tail C_last/k, k = physical decay only ({lam_p:.6g} /h; an upper bound)"
        elif tail == "terminal":
            if rate_per_h is None:
                raise ValueError("tail='terminal' needs rate_per_h (the terminal rate)")
            k = np.broadcast_to(np.asarray(rate_per_h, dtype=float), np.shape(c_last)).astype(float)
            if lam is not None:
                k = k + lam
                tail_txt = ("tail C_last/(k_bio + lambda)" + (f" ({float(k):.6g} /h)" if np.ndim(k) == 0 else ""))
            else:
                tail_txt = ("tail C_last/k, k = terminal rate" + (f" ({float(k):.6g} /h)" if np.ndim(k) == 0 else ""))
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
    transit ``A Gamma(a+1) / k^(a+1)``; AUMC likewise (one more power of the
    rates, ``Gamma(a+2) / k^(a+2)`` for transit).
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
        elif fit.model == "transit":
            from scipy.special import gammaln

            a, k = p["a"], p["k"]
            if k > 0:
                auc = p["A"] * math.exp(gammaln(a + 1) - (a + 1) * math.log(k))
                aumc = p["A"] * math.exp(gammaln(a + 2) - (a + 2) * math.log(k))
            else:
                auc = aumc = math.inf if p["A"] > 0 else 0.0
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
    if fit.model == "transit":
        from scipy.special import gammainc, gammaln

        a, k = p["a"], p["k"]
        if k <= 0:
            return p["A"] * t_end ** (a + 1) / (a + 1)
        return p["A"] * math.exp(gammaln(a + 1) - (a + 1) * math.log(k)) * float(gammainc(a + 1, k * t_end))
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
#: points that must define a terminal phase before its rate extrapolates an integral (see tac_metrics)
MIN_PHASE_POINTS = 3
#: adjusted R^2 a log-linear terminal regression over >= 3 points needs to define the phase
MIN_LAMBDA_Z_R2 = 0.8
#: share of an area from beyond the scans (before the first, after the last) that is flagged
EXTRAPOLATED_FLAG = 0.2
#: a biological half-life longer than this multiple of the last scan time is not measurable
MAX_HALF_LIFE_SPAN = 10.0


@dataclass
class TerminalRate:
    """The terminal rate of a curve and where it came from.

    ``source`` is ``"fit"`` (selected model), ``"log-linear"`` (lambda_z of
    the last points after the peak), ``"peak-to-last"`` (chord from the peak
    to the only point after it) or ``"none"`` (NaN rate); ``n_points`` the
    number of points behind it; ``fit_issues`` why the selected fit was not
    used (empty when it was). :attr:`defined` says whether at least
    :data:`MIN_PHASE_POINTS` points define the terminal phase.
    """

    rate_per_h: float
    source: str
    n_points: int
    method: str
    fit_issues: tuple[str, ...] = ()
    raised: bool = False

    @property
    def half_life_h(self) -> float:
        return effective_half_life_h(self.rate_per_h) if np.isfinite(self.rate_per_h) else math.nan

    @property
    def defined(self) -> bool:
        """A terminal phase of >= :data:`MIN_PHASE_POINTS` points, fitted (model or log-linear regression)."""
        return (self.source in ("fit", "log-linear") and self.n_points >= MIN_PHASE_POINTS
                and np.isfinite(self.rate_per_h) and not self.raised)


def _lambda_z(t: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """Log-linear terminal rate of the points (t, y > 0): (rate, points used).

    Three or more points: the last ``m >= 3`` points with the best adjusted
    R^2 (ties within 1e-4 go to more points), if that R^2 reaches
    :data:`MIN_LAMBDA_Z_R2`; otherwise (and with two points) the slope of
    the last two.
    """
    two = float(-(math.log(y[-1]) - math.log(y[-2])) / (t[-1] - t[-2])), 2
    if t.size == 2:
        return two
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
    if best[0] < MIN_LAMBDA_Z_R2:
        return two
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
        extrapolates with physical decay only, and ``raised`` is True).

    Examples
    --------
    >>> r = terminal_rate([1, 2, 4, 6, 24.0], [2, 8, 6, 4.5, 0.2])
    >>> r.source, round(r.rate_per_h, 4), r.n_points, r.defined
    ('log-linear', 0.1712, 3, True)
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
        txt = (f"log-linear {'regression' if m >= 3 else 'slope'} of the last {m} points after the peak "
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
                                f"raised to {lo:.6g} /h (physical decay only)", issues, raised=True)
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

    def row(self, metric: str, correction: str | None = None) -> dict:
        """The whole row of one metric (first match)."""
        for r in self.metrics:
            if r["metric"] == metric and (correction is None or r["correction"] == correction):
                return r
        raise KeyError(f"no metric {metric!r}" + (f" ({correction})" if correction else ""))

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.metrics, columns=["metric", "correction", "value", "unit", "method", "flag"])


def tac_metrics(
    time_h,
    values,
    *,
    half_life_h: float,
    decay_corrected: bool = True,
    models: Sequence[str] = DEFAULT_MODELS,
    start="zero",
    tail: str = "terminal",
    rule: str = "log-down",
    weighting: str = "relative",
    sigma=None,
    unit: str = "%ID",
    dose: float | None = None,
    refit: Mapping[str, object] | None = None,
) -> KineticSummary:
    """Cmax, Tmax, AUC / TIA, MRT, TIAC and half-lives of one curve.

    The curve is given in one correction; the other is derived exactly with
    ``exp(-+lambda t)``. Each correction is fitted with ``models`` (chosen
    by AICc, see :func:`~spectrack.kinetics.fits.fit_models`); physical fits
    have all rates ``>= lambda_phys``.

    Integration (non-compartmental)
    -------------------------------
    * Between scans linear-up/log-down on the decay-corrected curve; the
      TIA (physical curve) applies physical decay exactly within each
      interval.
    * Before the first scan: from ``start`` at t = 0 (``"zero"`` for a
      tissue, ``"back"`` for the injected compartment: its content
      back-extrapolated log-linearly from the first two scans, never more
      than ``dose``).
    * After the last scan: from the terminal rate only when at least
      :data:`MIN_PHASE_POINTS` points define the terminal phase (the
      selected model's, or a log-linear regression after the peak:
      :attr:`TerminalRate.defined`). Otherwise the headline value is the
      *lambda_z estimate* (tail from the slope of the last two points after
      the peak, ``tia_lambda_z`` / ``auc_lambda_z``) and, for the TIA, the
      *physical-decay upper bound* (no biological clearance after the last
      scan, ``tia_upper_bound``) is reported beside it.

    Guards
    ------
    * A decay-corrected curve that never declines after its peak gets no
      biological half-life, and a physical curve that does not clear faster
      than physical decay gets no effective half-life (NaN, the method says
      why); a biological half-life above :data:`MAX_HALF_LIFE_SPAN` times the
      last scan time is not measurable and not given either.
    * With ``dose`` (100 for %ID): an area above the physically possible
      (``dose`` times the integral of physical decay, ``dose / lambda``,
      for the TIA; ``dose`` times the last scan time for the observed
      decay-corrected AUC) is withheld (NaN) and flagged.
    * ``flag`` says why a value is withheld or rests on extrapolation
      (more than :data:`EXTRAPOLATED_FLAG` of the area before the first or
      after the last scan).

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
    start : {"zero", "back", "first", "none"} or float
        Value at t = 0 (:func:`integrate_tac`).
    tail : {"terminal", "physical", "none"}
        ``"physical"`` makes the TIA the physical-decay bound and gives the
        decay-corrected AUC no tail; ``"none"`` integrates to the last scan.
    rule : str
        Between scans: ``"log-down"`` (linear-up/log-down) or ``"linear"``
        (plain trapezoid of each curve, for comparison).
    weighting, sigma
        Passed to the fits (``sigma`` refers to ``values``).
    unit : str
        Unit of the values.
    dose : float, optional
        The whole dose in ``unit`` (default 100 for ``"%ID"``, else none):
        caps the back-extrapolation, bounds the areas, and gives ``tiac_h``.
    refit : mapping, optional
        ``{correction: FitResult or None}``, e.g. the nominal curve's chosen
        fits (``KineticSummary.selections[c].best``): that model alone is
        refitted from its parameters (no grid search, no model choice; None:
        no model), for Monte Carlo draws of a curve whose model is fixed at
        the nominal choice.

    Returns
    -------
    KineticSummary
        Rows ``metric, correction, value, unit, method, flag``. Decay-corrected:
        ``cmax, tmax_h, start_value, auc, auc_observed, auc_lambda_z,
        tail_fraction, head_fraction, mrt_h, auc_fit, fit_r_squared,
        terminal_points, terminal_rate_per_h, t_bio_h``. Physical: ``cmax,
        tmax_h, tia, tia_observed, tia_lambda_z, tia_upper_bound,
        tail_fraction, head_fraction, tiac_h`` (with ``dose``), ``tia_fit,
        fit_r_squared, terminal_points, terminal_rate_per_h, t_eff_h,
        t_bio_h_from_t_eff``.
    """
    t = np.asarray(time_h, dtype=float).ravel()
    y = np.asarray(values, dtype=float).ravel()
    sig = None if sigma is None else np.broadcast_to(np.asarray(sigma, float), y.shape)
    keep = np.isfinite(t) & np.isfinite(y)
    n_dropped = int((~keep).sum())
    order = np.argsort(t[keep], kind="stable")
    t, y = t[keep][order], y[keep][order]
    sig = None if sig is None else sig[keep][order]
    if tail not in ("terminal", "physical", "none"):
        raise ValueError(f"tail must be 'terminal', 'physical' or 'none', got {tail!r}")
    lam = LN2 / float(half_life_h)
    fac = np.exp(lam * t)
    if dose is None and unit == "%ID":
        dose = 100.0
    curves = {"decay_corrected": (y, sig) if decay_corrected else (y * fac, None if sig is None else sig * fac),
              "physical": (y / fac, None if sig is None else sig / fac) if decay_corrected else (y, sig)}
    rows: list[dict] = []
    sels: dict[str, ModelSelection] = {}
    terms: dict[str, TerminalRate] = {}
    area_unit = f"{unit}*h" if unit else "h"
    t_last = float(t[-1]) if t.size else math.nan

    def add(metric, corr, value, u, method, flag=""):
        rows.append({"metric": metric, "correction": corr, "value": float(value), "unit": u, "method": method,
                     "flag": flag})

    def bounded(metric, corr, value, method, limit, limit_txt, flag=""):
        """An area, withheld and flagged when above the physically possible."""
        if limit is not None and np.isfinite(value) and value > limit * (1 + 1e-9):
            add(metric, corr, math.nan, area_unit, method + f"; withheld: {value:.6g} {area_unit} exceeds {limit_txt}",
                f"exceeds the physical maximum ({value:.4g} > {limit:.4g} {area_unit})")
        else:
            add(metric, corr, value, area_unit, method, flag)

    dc_curve = curves["decay_corrected"][0]
    # value at injection (the same in both corrections)
    if start == "back":
        c0, c0_txt = back_extrapolate(t, dc_curve, cap=dose)
        start_num: object = c0
    elif start == "zero":
        c0, c0_txt, start_num = 0.0, "0 at injection (a tissue that takes the tracer up)", 0.0
    elif start == "first":
        c0, c0_txt, start_num = float(dc_curve[0]), "the first value held back to the injection", "first"
    elif start == "none":
        c0, c0_txt, start_num = math.nan, "no area before the first scan", "none"
    else:
        c0, c0_txt, start_num = float(start), "given", float(start)
    phys_max = dose / lam if dose is not None else None
    phys_txt = (f"the physically possible {dose:g} {unit} x the integral of physical decay "
                f"({phys_max:.6g} {area_unit})") if dose is not None else ""
    dc_max = dose * t_last if dose is not None else None
    dc_txt = f"{dose:g} {unit} x the last scan time ({dc_max:.6g} {area_unit})" if dose is not None else ""
    dc_declines = bool(t.size and np.nanmax(dc_curve) > 0 and np.any(
        dc_curve[int(np.nanargmax(dc_curve)) + 1:] < np.nanmax(dc_curve) * (1 - 1e-9)))
    for corr, (yc, sc) in curves.items():
        dc = corr == "decay_corrected"
        lo = 0.0 if dc else lam
        if refit is not None and corr in refit:
            f0 = refit[corr]
            sel = fit_models(t, yc, () if f0 is None else (f0.model,), sigma=sc, weighting=weighting,
                             decay_corrected=dc, half_life_h=half_life_h,
                             **({} if f0 is None else {"p0": f0.params, "grid": False}))
        else:
            sel = fit_models(t, yc, models, sigma=sc, weighting=weighting, decay_corrected=dc,
                             half_life_h=half_life_h)
        sels[corr] = sel
        best = sel.best
        term = terms[corr] = terminal_rate(t, yc, sel, rate_lower_bound_per_h=lo)
        cmax, tmax = peak(t, yc)
        add("cmax", corr, cmax, unit, "observed maximum" + (f" ({n_dropped} scan(s) without a value left out of "
                                                             "every number)" if n_dropped else ""))
        add("tmax_h", corr, tmax, "h", "time of the observed maximum")
        if dc:
            add("start_value", corr, c0, unit, f"value at t=0 for the integrals: {c0_txt}")
        fit_txt = (f"{best.model} fit ({sel.criterion}-selected among {', '.join(models)}; "
                   f"{best.weighting} weights)") if best else f"no model ({sel.reason})"
        k_term = term.rate_per_h
        k_txt = f"terminal rate from the {fit_txt}" if term.source == "fit" else f"terminal rate: {term.method}"
        name = "auc" if dc else "tia"
        # physical curve: integrate the decay-corrected one with exact decay in each interval
        src = yc if dc else dc_curve
        kw = dict(start=start_num, rule=rule, unit=area_unit, start_cap=dose)
        if not dc and rule == "log-down":
            kw["decay_within_h"] = half_life_h
        elif not dc:
            src = yc
        # the rate the tail needs: biological for the decay-aware physical integral, else the curve's own
        k_tail = (k_term - lam if np.isfinite(k_term) else math.nan) if "decay_within_h" in kw else k_term
        obs = integrate_tac(t, src, tail="none", **kw)
        lz = upper = None
        if np.isfinite(k_term) and term.source != "none":
            lz = integrate_tac(t, src, tail="terminal", rate_per_h=k_tail, **kw)
            lz.method += f"; {k_txt}"
        if not dc:
            upper = integrate_tac(t, src, tail="physical", half_life_h=half_life_h, **kw)
        extra_flag = ""
        if tail == "none":
            integ = obs
        elif tail == "physical":
            integ = upper if not dc else obs
        elif term.defined:
            integ = lz
        elif lz is not None and not term.raised:
            integ = Integral(**{k: getattr(lz, k) for k in ("value", "auc_observed", "auc_tail", "aumc", "mrt_h",
                                                            "tail_rate_per_h", "unit")},
                             method=f"estimate (no terminal phase of >= {MIN_PHASE_POINTS} points): " + lz.method
                             + ("; upper bound in tia_upper_bound" if not dc else ""))
            extra_flag = f"tail from {term.n_points} points (no terminal phase of >= {MIN_PHASE_POINTS})"
        elif not dc:
            integ = Integral(**{k: getattr(upper, k) for k in ("value", "auc_observed", "auc_tail", "aumc", "mrt_h",
                                                               "tail_rate_per_h", "unit")},
                             method="upper bound (no biological clearance measured): " + upper.method
                             + f"; {term.method}")
            extra_flag = "upper bound: no clearance measured after the peak"
        else:
            integ = Integral(math.nan, obs.value, math.nan, math.nan, math.nan, math.nan, area_unit,
                             obs.method + f"; no tail: {term.method}; the area to infinity is not estimable")
        limit, limit_txt = (dc_max, dc_txt) if dc else (phys_max, phys_txt)
        tail_share = integ.tail_fraction
        head = integrate_tac(t[:1], src[:1], tail="none", **kw).value if t.size and t[0] > 0 else 0.0
        head_share = head / integ.value if np.isfinite(integ.value) and integ.value > 0 else math.nan
        flags = [f for f in (extra_flag,
                             f"{tail_share:.0%} of the area after the last scan"
                             if np.isfinite(tail_share) and tail_share > EXTRAPOLATED_FLAG else "",
                             f"{head_share:.0%} of the area before the first scan"
                             if np.isfinite(head_share) and head_share > EXTRAPOLATED_FLAG else "") if f]
        bounded(name, corr, integ.value, integ.method, None if dc else limit, limit_txt, "; ".join(flags))
        bounded(f"{name}_observed", corr, obs.value, obs.method, limit, limit_txt)
        bounded(f"{name}_lambda_z", corr, lz.value if lz is not None else math.nan,
                ("lambda_z estimate: " + lz.method) if lz is not None
                else f"lambda_z estimate: not estimable ({term.method})", None if dc else limit, limit_txt)
        if not dc:
            bounded("tia_upper_bound", corr, upper.value, "physical-decay upper bound: " + upper.method,
                    limit, limit_txt)
        add("tail_fraction", corr, tail_share, "1", f"share of {name} after the last scan: " + integ.method)
        add("head_fraction", corr, head_share, "1", f"share of {name} before the first scan (t = {t[0]:.4g} h): "
            f"from {c0_txt}")
        if dc:
            add("mrt_h", corr, integ.mrt_h, "h", "MRT, the pharmacokinetic moment ratio AUMC/AUC of the "
                "decay-corrected curve (not the MIRD residence time), " + integ.method)
        elif dose is not None:
            v = integ.value
            ok_v = np.isfinite(v) and v <= phys_max * (1 + 1e-9)
            add("tiac_h", corr, v / dose if ok_v else math.nan, "h",
                "time-integrated activity coefficient (MIRD residence time) = TIA / injected activity; "
                + (integ.method if ok_v else "not given: the TIA is not"))
        issues = best.quality_issues() if best else (sel.reason,)
        if best and not issues:
            fi = integrate_fit(best, area_unit)
            bounded(f"{name}_fit", corr, fi.value, fi.method, None if dc else limit, limit_txt)
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
            if not dc_declines:
                add("t_bio_h", corr, math.nan, "h", "not estimable: the decay-corrected curve never declines "
                    "after its peak", "never declines")
            elif np.isfinite(half) and half > MAX_HALF_LIFE_SPAN * t_last:
                add("t_bio_h", corr, math.nan, "h", f"not measurable: ln2 / {k_txt} = {half:.4g} h, more than "
                    f"{MAX_HALF_LIFE_SPAN:g} x the last scan time", "longer than the study can measure")
            else:
                add("t_bio_h", corr, half, "h", f"ln2 / {k_txt} (decay-corrected curve)")
        else:
            measured = np.isfinite(half) and not term.raised and dc_declines
            why = ("the curve does not clear faster than physical decay" if term.raised or not dc_declines
                   else "no terminal rate")
            add("t_eff_h", corr, half if measured else math.nan, "h",
                f"ln2 / {k_txt} (physical curve, rates >= lambda_phys)" if measured else
                f"not measured: {why} (T_eff <= T_phys = {half_life_h:g} h is all that is known)",
                "" if measured else "not measured")
            t_bio = biological_half_life_h(half, half_life_h) if measured else math.nan
            bad = measured and not (np.isfinite(t_bio) and t_bio <= MAX_HALF_LIFE_SPAN * t_last)
            add("t_bio_h_from_t_eff", corr, math.nan if bad or not measured else t_bio, "h",
                f"1/T_bio = 1/T_eff - 1/T_phys with T_phys = {half_life_h:g} h, T_eff from the physical curve"
                + ("" if measured and not bad else "; not given: T_eff not measured or T_bio beyond what the "
                   "study can measure"))
    return KineticSummary(rows, sels, terms)
