"""Exponential models fitted to time-activity curves, and model choice by AICc.

Models (``t`` in hours after injection, rates per hour)
-------------------------------------------------------
=================  ==========================================  ==================
name               formula                                     parameters
=================  ==========================================  ==================
``mono``           ``A exp(-k t)``                             A, k
``bi``             ``A1 exp(-k1 t) + A2 exp(-k2 t)``           A1, k1, A2, k2
``uptake_washout`` ``A (exp(-k2 t) - exp(-k1 t))``             A, k1, k2
=================  ==========================================  ==================

Ordering is enforced, not left to chance: ``k1 >= k2`` in ``bi`` (component 1
is the fast one) and in ``uptake_washout`` (``k1`` is the uptake rate, ``k2``
the washout rate). Internally the fast rate is ``k2 + dk`` with ``dk >= 0``;
the covariance is mapped back with the (linear) Jacobian of that change of
variables. The *terminal rate* of a fit is its slowest rate (``k``, ``k2``).

Physical bound
--------------
A physical (not decay-corrected) curve cannot clear slower than physical
decay: every rate of a sum of decaying exponentials is the biological rate
plus ``lambda_phys``, so all rates get the lower bound ``lambda_phys`` =
ln 2 / T1/2. Decay-corrected curves get the lower bound 0. A parameter that
ends on a bound is listed in :attr:`FitResult.at_bound`.

Weighting
---------
``sigma`` (absolute standard deviations, e.g. from
:mod:`spectrack.kinetics.uncertainty`) gives weighted least squares with
``absolute_sigma=True``; ``weighting="relative"`` uses ``sigma = |y|``
(constant coefficient of variation, floored at 0.1 % of ``max |y|``) with the
covariance scaled by the residual variance; ``weighting="uniform"`` is
ordinary least squares. Fits use :func:`scipy.optimize.curve_fit` (trust
region reflective, analytic Jacobians) from a few starting points; the lowest
weighted residual sum wins.

Fit quality
-----------
``wrss`` (weighted residual sum of squares), ``r_squared`` (unweighted,
``1 - sum(res^2) / sum((y - mean y)^2)``), ``residuals`` (``y - fit``),
parameter standard errors from the covariance, and the information criteria

``AIC = n ln(WRSS / n) + 2 K``, ``AICc = AIC + 2 K (K + 1) / (n - K - 1)``,

with ``K = p + 1`` (the p model parameters plus the residual variance;
Burnham & Anderson 2002). AICc is undefined (NaN) when ``n <= K + 1``;
:func:`fit_models` then compares all candidates by AIC and says so.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

__all__ = [
    "MODELS",
    "FitResult",
    "ModelSelection",
    "fit_tac",
    "fit_models",
    "fits_to_frame",
    "model_function",
]


# ----------------------------------------------------------------- models
@dataclass(frozen=True)
class _Model:
    name: str
    formula: str
    param_names: tuple[str, ...]          # external (reported) parameters
    internal_names: tuple[str, ...]       # what the optimiser sees
    rate_names: tuple[str, ...]           # external rates (all >= lower bound)
    to_external: np.ndarray               # linear map internal -> external
    func: Callable                        # f(t, *internal)
    jac: Callable                         # d f / d internal, shape (n, p)
    internal_is_rate: tuple[bool, ...]    # which internal parameters carry the rate lower bound


def _mono(t, a, k):
    return a * np.exp(-k * t)


def _mono_jac(t, a, k):
    e = np.exp(-k * t)
    return np.stack([e, -a * t * e], axis=-1)


def _bi(t, a1, a2, k2, dk):
    return a1 * np.exp(-(k2 + dk) * t) + a2 * np.exp(-k2 * t)


def _bi_jac(t, a1, a2, k2, dk):
    e1 = np.exp(-(k2 + dk) * t)
    e2 = np.exp(-k2 * t)
    d1 = -a1 * t * e1
    return np.stack([e1, e2, d1 - a2 * t * e2, d1], axis=-1)


def _uw(t, a, k2, dk):
    return a * (np.exp(-k2 * t) - np.exp(-(k2 + dk) * t))


def _uw_jac(t, a, k2, dk):
    e2 = np.exp(-k2 * t)
    e1 = np.exp(-(k2 + dk) * t)
    return np.stack([e2 - e1, a * t * (e1 - e2), a * t * e1], axis=-1)


MODELS: dict[str, _Model] = {
    "mono": _Model("mono", "A*exp(-k*t)", ("A", "k"), ("A", "k"), ("k",),
                   np.eye(2), _mono, _mono_jac, (False, True)),
    # internal (A1, A2, k2, dk) -> external (A1, k1 = k2 + dk, A2, k2)
    "bi": _Model("bi", "A1*exp(-k1*t) + A2*exp(-k2*t), k1 >= k2", ("A1", "k1", "A2", "k2"),
                 ("A1", "A2", "k2", "dk"), ("k1", "k2"),
                 np.array([[1, 0, 0, 0], [0, 0, 1, 1], [0, 1, 0, 0], [0, 0, 1, 0]], float),
                 _bi, _bi_jac, (False, False, True, False)),
    # internal (A, k2, dk) -> external (A, k1 = k2 + dk, k2)
    "uptake_washout": _Model("uptake_washout", "A*(exp(-k2*t) - exp(-k1*t)), k1 >= k2", ("A", "k1", "k2"),
                             ("A", "k2", "dk"), ("k1", "k2"),
                             np.array([[1, 0, 0], [0, 1, 1], [0, 1, 0]], float),
                             _uw, _uw_jac, (False, True, False)),
}


def model_function(name: str, params: dict) -> Callable[[np.ndarray], np.ndarray]:
    """Return ``f(t)`` for a model and its external parameters.

    Examples
    --------
    >>> f = model_function("mono", {"A": 2.0, "k": 0.5})
    >>> float(f(0.0))
    2.0
    """
    if name == "mono":
        return lambda t: _mono(np.asarray(t, float), params["A"], params["k"])
    if name == "bi":
        return lambda t: (params["A1"] * np.exp(-params["k1"] * np.asarray(t, float))
                          + params["A2"] * np.exp(-params["k2"] * np.asarray(t, float)))
    if name == "uptake_washout":
        return lambda t: params["A"] * (np.exp(-params["k2"] * np.asarray(t, float))
                                        - np.exp(-params["k1"] * np.asarray(t, float)))
    raise KeyError(f"unknown model {name!r}; known: {', '.join(MODELS)}")


# ----------------------------------------------------------------- result
@dataclass
class FitResult:
    """One model fitted to one curve.

    ``to_dict()`` gives a flat dict; ``pandas.DataFrame([r.to_dict() for r in
    results])`` (or :func:`fits_to_frame`) makes a table in one call.
    """

    model: str
    formula: str
    params: dict[str, float]
    stderr: dict[str, float]
    n: int
    n_params: int
    wrss: float
    r_squared: float
    aic: float
    aicc: float
    converged: bool
    message: str
    weighting: str
    rate_lower_bound_per_h: float
    decay_corrected: bool | None
    time_h: np.ndarray
    values: np.ndarray
    fitted: np.ndarray
    residuals: np.ndarray
    at_bound: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    label: dict = field(default_factory=dict)

    @property
    def dof(self) -> int:
        """Residual degrees of freedom ``n - p``."""
        return self.n - self.n_params

    @property
    def terminal_rate_per_h(self) -> float:
        """Slowest rate of the fit (``k`` or ``k2``), per hour; NaN if not converged."""
        if not self.converged:
            return math.nan
        return float(self.params["k"] if self.model == "mono" else self.params["k2"])

    @property
    def terminal_rate_stderr(self) -> float:
        """Standard error of :attr:`terminal_rate_per_h`."""
        return float(self.stderr.get("k" if self.model == "mono" else "k2", math.nan))

    @property
    def terminal_half_life_h(self) -> float:
        """ln 2 / terminal rate (infinite for a zero rate)."""
        k = self.terminal_rate_per_h
        return math.log(2) / k if k > 0 else (math.inf if k == 0 else math.nan)

    def predict(self, t) -> np.ndarray:
        """Model values at times ``t`` (hours)."""
        if not self.converged:
            return np.full(np.shape(t), np.nan)
        return model_function(self.model, self.params)(t)

    def to_dict(self) -> dict:
        """Flat dict: label entries, model, parameters, standard errors, quality."""
        d = dict(self.label)
        d.update(model=self.model, formula=self.formula, n=self.n, n_params=self.n_params,
                 weighting=self.weighting, decay_corrected=self.decay_corrected,
                 rate_lower_bound_per_h=self.rate_lower_bound_per_h)
        for name in MODELS[self.model].param_names:
            d[name] = self.params.get(name, math.nan)
            d[f"{name}_se"] = self.stderr.get(name, math.nan)
        d.update(terminal_rate_per_h=self.terminal_rate_per_h, terminal_half_life_h=self.terminal_half_life_h,
                 wrss=self.wrss, r_squared=self.r_squared, aic=self.aic, aicc=self.aicc,
                 converged=self.converged, at_bound=",".join(self.at_bound),
                 residuals=[float(r) for r in self.residuals], message=self.message,
                 warnings="; ".join(self.warnings))
        return d


def fits_to_frame(results: Sequence[FitResult]):
    """A DataFrame with one row per fit (see :meth:`FitResult.to_dict`)."""
    import pandas as pd

    return pd.DataFrame([r.to_dict() for r in results])


# ----------------------------------------------------------------- fitting
def _loglin(t, y):
    """(A, k) of a log-linear fit to the positive points (None if < 2)."""
    ok = y > 0
    if ok.sum() < 2 or np.ptp(t[ok]) == 0:
        return None
    slope, intercept = np.polyfit(t[ok], np.log(y[ok]), 1)
    return math.exp(intercept), -slope


def _starts(model: str, t: np.ndarray, y: np.ndarray, lo: float) -> list[np.ndarray]:
    """Starting points in the internal parametrisation."""
    ymax = float(np.max(np.abs(y))) or 1.0
    span = float(t.max()) if t.max() > 0 else 1.0
    k_default = max(lo, 0.0) + 1.0 / span
    imax = int(np.argmax(y))
    # terminal phase: the last half of the points, or from the peak on if it is later
    tail = slice(max(0, min(max(imax, len(t) // 2), len(t) - 2)), None)
    term = _loglin(t[tail], y[tail])
    k_t = term[1] if term is not None and term[1] > lo else k_default
    a_t = term[0] if term is not None else ymax
    out = []
    if model == "mono":
        full = _loglin(t, y)
        cands = ([full] if full is not None else []) + [(a_t, k_t), (y[0] * math.exp(k_default * t[0]), k_default)]
        for a, k in cands:
            out.append(np.array([a, max(k, lo)]))
    elif model == "bi":
        resid = y - a_t * np.exp(-k_t * t)
        early = slice(0, max(2, len(t) // 2))
        fast = _loglin(t[early], resid[early])
        if fast is not None and fast[1] > k_t:
            out.append(np.array([fast[0], a_t, k_t, fast[1] - k_t]))
        for mult in (3.0, 10.0, 50.0):
            a1 = max(float(y[0]) * math.exp(mult * k_t * t[0]) - a_t, 0.1 * ymax)
            out.append(np.array([a1, a_t, k_t, (mult - 1.0) * k_t + 1e-3]))
    elif model == "uptake_washout":
        # terminal rate from the points after the peak; uptake rate a multiple of it
        k2 = k_t if k_t > lo else lo + 1.0 / span
        for mult in (1.5, 3.0, 10.0, 50.0):
            k1 = mult * k2 + 1e-6
            g = np.exp(-k2 * t) - np.exp(-k1 * t)
            gg = float(np.dot(g, g))
            a = float(np.dot(g, y) / gg) if gg > 0 else ymax
            out.append(np.array([max(a, 1e-6 * ymax), k2, k1 - k2]))
    return out


def _clip_into(p0, lb, ub):
    p = np.array(p0, dtype=float)
    span = np.where(np.isfinite(ub - lb), ub - lb, np.maximum(np.abs(p), 1.0))
    return np.clip(p, lb + 1e-9 * span + 1e-12, np.where(np.isfinite(ub), ub - 1e-9 * span, np.inf))


def fit_tac(
    time_h,
    values,
    model: str = "mono",
    *,
    sigma=None,
    absolute_sigma: bool = True,
    weighting: str = "uniform",
    decay_corrected: bool = True,
    half_life_h: float | None = None,
    rate_lower_bound_per_h: float | None = None,
    label: dict | None = None,
) -> FitResult:
    """Fit one model to one time-activity curve by (weighted) least squares.

    Parameters
    ----------
    time_h, values : array_like
        Times after injection (h) and curve values (any unit: %ID, MBq, Bq/mL).
    model : {"mono", "bi", "uptake_washout"}
        See the module docstring.
    sigma : array_like, optional
        Standard deviations of ``values``; overrides ``weighting``.
    absolute_sigma : bool
        ``sigma`` is absolute (default) rather than relative.
    weighting : {"uniform", "relative"}
        Used when ``sigma`` is None.
    decay_corrected : bool
        False for a physical curve: all rates are then bounded below by
        ``ln 2 / half_life_h`` (``half_life_h`` required).
    half_life_h : float, optional
        Physical half-life of the nuclide.
    rate_lower_bound_per_h : float, optional
        Explicit lower bound on all rates (overrides the above).
    label : dict, optional
        Copied into :meth:`FitResult.to_dict` (region, quantity...).

    Returns
    -------
    FitResult
        Never raises for a fit that fails: ``converged`` is False and
        ``message`` says why. Parameter names are the external ones
        (``A, k``; ``A1, k1, A2, k2``; ``A, k1, k2``).

    Examples
    --------
    >>> t = np.array([0.5, 1, 2, 4, 8, 24.0])
    >>> r = fit_tac(t, 10 * np.exp(-0.3 * t))
    >>> round(r.params["k"], 6), r.converged
    (0.3, True)
    """
    if model not in MODELS:
        raise KeyError(f"unknown model {model!r}; known: {', '.join(MODELS)}")
    m = MODELS[model]
    t = np.asarray(time_h, dtype=float).ravel()
    y = np.asarray(values, dtype=float).ravel()
    if t.shape != y.shape:
        raise ValueError(f"time_h and values differ in length ({t.size} vs {y.size})")
    if rate_lower_bound_per_h is not None:
        lo = float(rate_lower_bound_per_h)
    elif decay_corrected:
        lo = 0.0
    else:
        if half_life_h is None:
            raise ValueError("a physical (not decay-corrected) curve needs half_life_h: its rates cannot be "
                             "below the physical decay constant")
        lo = math.log(2) / float(half_life_h)
    keep = np.isfinite(t) & np.isfinite(y)
    sig = None
    if sigma is not None:
        sig = np.broadcast_to(np.asarray(sigma, dtype=float), y.shape).copy()
        keep &= np.isfinite(sig) & (sig > 0)
        wname = "sigma (absolute)" if absolute_sigma else "sigma (relative)"
    elif weighting == "relative":
        wname = "relative (sigma = |y|)"
    elif weighting == "uniform":
        wname = "uniform"
    else:
        raise ValueError(f"weighting must be 'uniform' or 'relative', got {weighting!r}")
    order = np.argsort(t[keep], kind="stable")
    t, y = t[keep][order], y[keep][order]
    if sig is not None:
        sig = sig[keep][order]
    elif weighting == "relative":
        sig = np.maximum(np.abs(y), 1e-3 * (np.max(np.abs(y)) if y.size else 1.0))
        absolute_sigma = False
    else:
        absolute_sigma = False  # unweighted: scale the covariance by the residual variance
    n, p = t.size, len(m.param_names)
    nan_params = {k: math.nan for k in m.param_names}

    def failed(msg, fitted=None, w=()):
        f = np.full(n, np.nan) if fitted is None else fitted
        return FitResult(model, m.formula, dict(nan_params), dict(nan_params), n, p, math.nan, math.nan,
                         math.nan, math.nan, False, msg, wname, lo, decay_corrected, t, y, f, y - f,
                         (), tuple(w), dict(label or {}))

    if n < p:
        return failed(f"{n} points for {p} parameters: not fitted")
    if not np.any(y > 0):
        return failed("no positive values: not fitted")
    lb = np.array([lo if r else 0.0 for r in m.internal_is_rate])
    ub = np.full(len(lb), np.inf)
    best = None
    caught: list[str] = []
    for p0 in _starts(model, t, y, lo):
        if not np.all(np.isfinite(p0)):
            continue
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            try:
                popt, pcov, info, msg, ier = curve_fit(
                    m.func, t, y, p0=_clip_into(p0, lb, ub), sigma=sig, absolute_sigma=absolute_sigma,
                    bounds=(lb, ub), jac=m.jac, method="trf", full_output=True,
                    xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=2000 * p)
            except (RuntimeError, ValueError) as e:
                caught.append(f"start {np.round(p0, 4).tolist()}: {e}")
                continue
        w = [str(r.message) for r in rec if issubclass(r.category, (OptimizeWarning, RuntimeWarning))]
        res = (y - m.func(t, *popt)) / (sig if sig is not None else 1.0)
        cost = float(np.dot(res, res))
        if np.isfinite(cost) and (best is None or cost < best[0] * (1 - 1e-12)):
            best = (cost, popt, pcov, msg, ier, w)
    if best is None:
        return failed("no starting point converged: " + "; ".join(caught[:2]), w=caught)
    wrss, popt, pcov, msg, ier, w = best
    converged = bool(ier in (1, 2, 3, 4) and np.all(np.isfinite(popt)))
    T = m.to_external
    ext = T @ popt
    if np.all(np.isfinite(pcov)):
        cov = T @ pcov @ T.T
        se = np.sqrt(np.clip(np.diag(cov), 0, None))
    else:
        se = np.full(p, np.nan)
        w = list(w) + ["parameter covariance could not be estimated (standard errors are NaN)"]
    fitted = m.func(t, *popt)
    resid = y - fitted
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.dot(resid, resid)) / ss_tot if ss_tot > 0 else math.nan
    # information criteria; floor the residual sum so exact fits compare by their penalty
    scale = float(np.sum((y / (sig if sig is not None else 1.0)) ** 2)) or 1.0
    wrss_ic = max(wrss, 1e-24 * scale)
    K = p + 1
    aic = n * math.log(wrss_ic / n) + 2 * K
    aicc = aic + 2 * K * (K + 1) / (n - K - 1) if n - K - 1 > 0 else math.nan
    at_bound = []
    ymax = float(np.max(np.abs(y)))
    for j, (name, v) in enumerate(zip(m.internal_names, popt)):
        typical = (1.0 / max(float(t.max()), 1e-9)) if (m.internal_is_rate[j] or name == "dk") else ymax
        if v - lb[j] <= 1e-6 * max(abs(lb[j]), typical):
            at_bound.append("k1=k2" if name == "dk" else f"{name}={lb[j]:.6g}")
    at_bound = tuple(at_bound)
    params = {k: float(v) for k, v in zip(m.param_names, ext)}
    stderr = {k: float(v) for k, v in zip(m.param_names, se)}
    return FitResult(model, m.formula, params, stderr, n, p, float(wrss), r2, aic, aicc, converged,
                     str(msg), wname, lo, decay_corrected, t, y, fitted, resid, at_bound, tuple(w),
                     dict(label or {}))


# ------------------------------------------------------------ model choice
@dataclass
class ModelSelection:
    """Several models fitted to one curve, and the one chosen.

    ``criterion`` is ``"AICc"`` when it is defined for every usable candidate,
    otherwise ``"AIC"``; ``reason`` says why.
    """

    fits: list[FitResult]
    best: FitResult | None
    criterion: str
    reason: str

    def to_frame(self):
        """One row per candidate, with ``delta`` (criterion minus the best),
        Akaike ``weight`` and ``selected``."""
        import pandas as pd

        rows = []
        vals = [(f.aicc if self.criterion == "AICc" else f.aic) for f in self.fits]
        usable = [v for f, v in zip(self.fits, vals) if _usable(f) and np.isfinite(v)]
        vmin = min(usable) if usable else math.nan
        wsum = sum(math.exp(-0.5 * (v - vmin)) for v in usable) if usable else math.nan
        for f, v in zip(self.fits, vals):
            d = f.to_dict()
            ok = _usable(f) and np.isfinite(v)
            d.update(criterion=self.criterion, delta=v - vmin if ok else math.nan,
                     weight=math.exp(-0.5 * (v - vmin)) / wsum if ok else 0.0,
                     selected=f is self.best, selection_reason=self.reason)
            rows.append(d)
        return pd.DataFrame(rows)


def _usable(f: FitResult) -> bool:
    return f.converged and f.dof > 0


def fit_models(time_h, values, models: Sequence[str] = ("mono", "bi", "uptake_washout"), **kwargs) -> ModelSelection:
    """Fit several models and choose one by AICc (AIC when AICc is undefined).

    Only converged fits with ``n > p`` compete. If AICc is undefined (``n <=
    p + 2``) for any competitor, every competitor is compared by AIC instead,
    and ``reason`` names the models that forced it.

    Parameters
    ----------
    time_h, values : array_like
    models : sequence of str
    **kwargs
        Passed to :func:`fit_tac`.
    """
    fits = [fit_tac(time_h, values, name, **kwargs) for name in models]
    cands = [f for f in fits if _usable(f)]
    if not cands:
        return ModelSelection(fits, None, "AICc", "no model converged with residual degrees of freedom")
    no_aicc = [f for f in cands if not np.isfinite(f.aicc)]
    if no_aicc:
        crit = "AIC"
        reason = "AIC: AICc undefined (n <= p + 2) for " + ", ".join(f"{f.model} (n={f.n}, p={f.n_params})"
                                                                      for f in no_aicc)
        best = min(cands, key=lambda f: f.aic)
    else:
        crit = "AICc"
        reason = "lowest AICc"
        best = min(cands, key=lambda f: f.aicc)
    return ModelSelection(fits, best, crit, reason)
