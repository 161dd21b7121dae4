"""Areas under sampled time-activity curves, and under fitted models.

:func:`integrate_tac` integrates a sampled curve (AUC, AUMC, MRT, with an optional tail after the
last scan), :func:`integrate_fit` a fitted model analytically, and :func:`back_extrapolate` gives
the value at injection of the compartment that held the dose. Every :class:`Integral` carries a
``method`` string saying how it was obtained.

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
* After the last scan (tail): ``C_last / k`` with a given terminal rate
  (``tail="terminal"``), with physical decay only (``tail="physical"``, an
  upper bound for a physical curve), or none (``tail="none"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.integrate import trapezoid

from .least_squares import FitResult

__all__ = ["Integral", "back_extrapolate", "integrate_tac", "integrate_fit"]

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
