"""Exponential models fitted to time-activity curves, and model choice by AICc.

Models (``t`` in hours after injection, rates per hour)
-------------------------------------------------------
=================  ==========================================  ==================
name               formula                                     parameters
=================  ==========================================  ==================
``mono``           ``A exp(-k t)``                             A, k
``bi``             ``A1 exp(-k1 t) + A2 exp(-k2 t)``           A1, k1, A2, k2
``uptake_washout`` ``A (exp(-k2 t) - exp(-k1 t))``             A, k1, k2
``transit``        ``A t^a exp(-k t)``                         A, a, k
=================  ==========================================  ==================

``transit`` follows *delayed* arrival: it is the content of the last of a
chain of equal first-order transit compartments fed by a bolus (Erlang /
gamma-variate shape; ``a`` = number of upstream compartments, not
necessarily an integer; Savic et al., J Pharmacokinet Pharmacodyn 2007).
With ``a > 1`` it starts flat and rises late, as the brain and the liver do
after an intrathecal dose; ``a = 0`` is ``mono``. It has three parameters,
so AICc can compare it with six scans, which a lagged uptake-washout (four
parameters) could not. Its terminal rate is ``k``, reached only when
``a / t`` is small against ``k``.

Ordering is enforced, not left to chance: ``k1 >= k2`` in ``bi`` (component 1
is the fast one) and in ``uptake_washout`` (``k1`` is the uptake rate, ``k2``
the washout rate). Internally the fast rate is ``k2 + dk`` with ``dk >= 0``,
and uptake-washout is written ``B exp(-k2 t) (1 - exp(-dk t)) / dk`` with
``B = A dk``, which stays smooth as ``k1 -> k2`` (its limit is ``B t
exp(-k2 t)``; a fit that ends there is refitted at the limit and reported
with ``at_bound`` ``"k1=k2 ..."``, ``A`` then has no standard error). The
covariance is mapped back with the Jacobian of the change of variables. The
*terminal rate* of a fit is its slowest rate (``k``, ``k2``; ``k1`` of a
``bi`` fit whose slow amplitude is 0).

Bounds
------
A physical (not decay-corrected) curve cannot clear slower than physical
decay: every rate of a sum of decaying exponentials is the biological rate
plus ``lambda_phys``, so all rates get the lower bound ``lambda_phys`` =
ln 2 / T1/2. Decay-corrected curves get the lower bound 0. Amplitudes are
>= 0. Rates are bounded above by ``50 / t_first`` (``t_first`` the first
positive scan time; at most 1000 /h): a faster exponential has decayed by
``exp(-50)`` at the first scan, so the bound changes no fitted curve, it only
stops an unresolved fast phase from drifting. A parameter that ends on a
bound is listed in :attr:`FitResult.at_bound`.

Algorithm
---------
Starting values come from a grid, not from guesses: for fixed rates every
model is linear in its (non-negative) amplitudes, so the amplitudes of all
trial rates (10 per decade, 0.01 / t_last to the upper bound) and rate pairs
are solved at once in closed form (one- and two-column NNLS: variable
projection), and the lowest local minima of the residual sum over the grid
are refined by :func:`scipy.optimize.curve_fit` (trust region reflective,
analytic Jacobians, bounds). ``bi`` is also started from the best single
exponential plus a fast component when the grid starts do worse, so it is
never worse than ``mono``. All of this runs on data scaled to ``max |y| =
1``: results do not depend on the unit, and ties between starts are broken
by order, so they do not depend on solver noise either.

Weighting
---------
``sigma`` (absolute standard deviations, e.g. from
:mod:`spectrack.kinetics.uncertainty`) gives weighted least squares with
``absolute_sigma=True``; ``weighting="relative"`` uses ``sigma = |y|``
(constant coefficient of variation, floored at 0.1 % of ``max |y|``) with the
covariance scaled by the residual variance; ``weighting="uniform"`` is
ordinary least squares.

Fit quality
-----------
``wrss`` (weighted residual sum of squares), ``r_squared`` (unweighted,
``1 - sum(res^2) / sum((y - mean y)^2)``), ``residuals`` (``y - fit``),
parameter standard errors from the covariance, and the information criteria

``AIC = n ln(WRSS / n) + 2 K``, ``AICc = AIC + 2 K (K + 1) / (n - K - 1)``,

with ``K = p + 1`` (the p model parameters plus the residual variance;
Burnham & Anderson 2002). AICc is undefined (NaN) when ``n <= K + 1``.

Model choice (:func:`fit_models`)
---------------------------------
Only fits that converged, whose AICc is defined (``n > K + 1``: with six
scans the four-parameter bi-exponential is not a candidate) and whose
``R^2 >= 0.9`` are compared; among them the model with the fewest
parameters within ``delta-AICc <= 2`` of the lowest AICc is chosen (the
simpler model is preferred when the data cannot tell them apart; Burnham &
Anderson 2002). When no fit qualifies, no model is chosen: a curve is then
neither drawn with a fitted line nor integrated or extrapolated by a model.

:meth:`FitResult.quality_issues` says whether a fit may be extrapolated
(converged, no parameter on a bound, ``R^2 >= 0.9``, at least 3 points after
the peak in the fit's terminal phase); :mod:`spectrack.kinetics.auc` uses its
terminal rate only then.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

#: defaults of :meth:`FitResult.quality_issues`: minimum R^2, minimum number of points after the peak in
#: the terminal phase, and the largest share of the faster exponential at a terminal-phase point
MIN_R_SQUARED = 0.9
MIN_TERMINAL_POINTS = 3
#: models within this AICc of the lowest count as equally supported; the simplest of them is chosen
DELTA_AICC = 2.0
#: upper bound of the shape ``a`` of the transit model (a chain of at most 20 compartments)
_MAX_SHAPE = 20.0
#: trial shapes of the transit model's starting-value grid
_SHAPE_GRID = np.r_[np.linspace(0.25, 3.0, 12), np.linspace(3.5, 10.0, 14)]
FAST_SHARE = 0.1
#: hard upper bound on rates (1/h): a half-time under 3 s is not resolvable by imaging
_MAX_RATE_PER_H = 1000.0
#: rates above ``_RESOLVE / t_first`` have decayed by exp(-_RESOLVE) at the first scan (see _rate_grid)
_RESOLVE = 50.0
#: trial rates per decade of the starting-value grid
_GRID_PER_DECADE = 10
#: grid minima refined by least squares (the lowest, and others with a grid cost within the ratio)
_N_STARTS = 2
_START_COST_RATIO = 4.0
#: least-squares tolerances (on data scaled to max |y| = 1) and evaluation budget
_TOL = 1e-9
#: an amplitude below this share of the curve's maximum is on its bound (0): the component is not
#: resolved, whatever digit the optimiser stopped at
_AMP_NEGLIGIBLE = 1e-4
#: smallest k1 - k2 of uptake-washout, times t_last (A = B / (k1 - k2) stays finite)
_DK_MIN_REL = 1e-6
#: (k1 - k2) t_last below which an uptake-washout fit is reported at its k1 = k2 limit
_DK_DEGENERATE = 1e-2
_MAX_NFEV_PER_PARAM = 100

__all__ = [
    "MODELS",
    "DEFAULT_MODELS",
    "DELTA_AICC",
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
    to_external: Callable                 # internal -> (external values, d external / d internal)
    func: Callable                        # f(t, *internal)
    jac: Callable                         # d f / d internal, shape (n, p)
    internal_is_rate: tuple[bool, ...]    # which internal parameters carry the rate lower bound
    internal_is_amplitude: tuple[bool, ...]  # which internal parameters scale with the data


def _linear(T):
    T = np.asarray(T, dtype=float)
    return lambda q: (T @ np.asarray(q, dtype=float), T)


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


def _g(x):
    """``(1 - exp(-x)) / x`` for x >= 0, 1 at 0 (series below 0.01)."""
    x = np.asarray(x, dtype=float)
    small = x < 1e-2
    xs = np.where(small, 1.0, x)
    series = 1 - x / 2 + x ** 2 / 6 - x ** 3 / 24 + x ** 4 / 120
    return np.where(small, series, -np.expm1(-xs) / xs)


def _dg(x):
    """Derivative of :func:`_g`."""
    x = np.asarray(x, dtype=float)
    small = x < 1e-2
    xs = np.where(small, 1.0, x)
    series = -0.5 + x / 3 - x ** 2 / 8 + x ** 3 / 30 - x ** 4 / 144
    return np.where(small, series, (xs * np.exp(-xs) + np.expm1(-xs)) / xs ** 2)


# uptake-washout internally as B exp(-k2 t) (1 - exp(-dk t)) / dk with B = A dk: smooth and finite as
# k1 -> k2 (the limit B t exp(-k2 t)), where A (exp(-k2 t) - exp(-k1 t)) runs down a curved valley
def _uw(t, b, k2, dk):
    return b * np.exp(-k2 * t) * t * _g(dk * t)


def _uw_jac(t, b, k2, dk):
    e2t = np.exp(-k2 * t) * t
    d_b = e2t * _g(dk * t)
    return np.stack([d_b, -b * t * d_b, b * e2t * t * _dg(dk * t)], axis=-1)


def _uw_external(q):
    b, k2, dk = (float(v) for v in q)
    a = b / dk
    return np.array([a, k2 + dk, k2]), np.array([[1 / dk, 0, -a / dk], [0, 1, 1], [0, 1, 0]], float)


def _logt(t):
    t = np.asarray(t, dtype=float)
    return np.log(np.where(t > 0, t, 1.0))


def _tr(t, a_, shape, k):
    t = np.asarray(t, dtype=float)
    base = np.where(t > 0, np.exp(shape * _logt(t) - k * t), 1.0 if shape == 0 else 0.0)
    return a_ * base


def _tr_jac(t, a_, shape, k):
    t = np.asarray(t, dtype=float)
    e = _tr(t, 1.0, shape, k)
    return np.stack([e, a_ * e * _logt(t), -a_ * t * e], axis=-1)


MODELS: dict[str, _Model] = {
    "mono": _Model("mono", "A*exp(-k*t)", ("A", "k"), ("A", "k"), ("k",),
                   _linear(np.eye(2)), _mono, _mono_jac, (False, True), (True, False)),
    # internal (A1, A2, k2, dk) -> external (A1, k1 = k2 + dk, A2, k2)
    "bi": _Model("bi", "A1*exp(-k1*t) + A2*exp(-k2*t), k1 >= k2", ("A1", "k1", "A2", "k2"),
                 ("A1", "A2", "k2", "dk"), ("k1", "k2"),
                 _linear([[1, 0, 0, 0], [0, 0, 1, 1], [0, 1, 0, 0], [0, 0, 1, 0]]),
                 _bi, _bi_jac, (False, False, True, False), (True, True, False, False)),
    # internal (B = A dk, k2, dk) -> external (A, k1 = k2 + dk, k2)
    "uptake_washout": _Model("uptake_washout", "A*(exp(-k2*t) - exp(-k1*t)), k1 >= k2", ("A", "k1", "k2"),
                             ("B", "k2", "dk"), ("k1", "k2"), _uw_external,
                             _uw, _uw_jac, (False, True, False), (True, False, False)),
    "transit": _Model("transit", "A*t^a*exp(-k*t), a >= 0", ("A", "a", "k"), ("A", "a", "k"), ("k",),
                      _linear(np.eye(3)), _tr, _tr_jac, (False, False, True), (True, False, False)),
}

#: candidate models of :func:`fit_models` (in order of complexity, then name)
DEFAULT_MODELS: tuple[str, ...] = ("mono", "uptake_washout", "transit", "bi")


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
        # exp(-k2 t) (1 - exp(-(k1 - k2) t)): no cancellation when k1 is close to k2
        return lambda t: -params["A"] * np.exp(-params["k2"] * np.asarray(t, float)) * np.expm1(
            -(params["k1"] - params["k2"]) * np.asarray(t, float))
    if name == "transit":
        return lambda t: _tr(np.asarray(t, float), params["A"], params["a"], params["k"])
    raise KeyError(f"unknown model {name!r}; known: {', '.join(MODELS)}")


# ----------------------------------------------------------------- result
@dataclass
class FitResult:
    """One model fitted to one curve.

    ``to_dict()`` gives a flat dict; ``pandas.DataFrame([r.to_dict() for r in
    results])`` (or :func:`fits_to_frame`) makes a table in one call; its
    ``quality`` column is ``"ok"`` or the :meth:`quality_issues`.
    ``rate_upper_bound_per_h`` is the upper bound the rates had.
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
    rate_upper_bound_per_h: float = math.inf

    @property
    def dof(self) -> int:
        """Residual degrees of freedom ``n - p``."""
        return self.n - self.n_params

    def _slow_vanished(self) -> bool:
        """A ``bi`` fit whose slow amplitude is zero or negligible (below :data:`_AMP_NEGLIGIBLE` of the
        curve): its terminal rate is ``k1``."""
        if self.model != "bi" or not self.converged:
            return False
        a1, a2 = self.params["A1"], self.params["A2"]
        return a1 > 0 and a2 <= _AMP_NEGLIGIBLE * (abs(a1) + abs(a2))

    @property
    def terminal_rate_per_h(self) -> float:
        """Slowest rate of the fit (``k`` or ``k2``; ``k1`` for a ``bi`` fit whose slow amplitude is 0),
        per hour; NaN if not converged."""
        if not self.converged:
            return math.nan
        if self._slow_vanished():
            return float(self.params["k1"])
        return float(self.params["k" if self.model in ("mono", "transit") else "k2"])

    @property
    def terminal_rate_stderr(self) -> float:
        """Standard error of :attr:`terminal_rate_per_h`."""
        if self._slow_vanished():
            return float(self.stderr.get("k1", math.nan))
        return float(self.stderr.get("k" if self.model in ("mono", "transit") else "k2", math.nan))

    @property
    def terminal_half_life_h(self) -> float:
        """ln 2 / terminal rate (infinite for a zero rate)."""
        k = self.terminal_rate_per_h
        return math.log(2) / k if k > 0 else (math.inf if k == 0 else math.nan)

    def terminal_points(self, share: float = FAST_SHARE) -> int:
        """Observed points after the observed peak at which the fit is in its terminal phase.

        A point counts when the faster exponential contributes at most
        ``share`` of the slowest one there (``A1 exp(-k1 t) <= share A2
        exp(-k2 t)`` for ``bi``, ``exp(-(k1 - k2) t) <= share`` for
        ``uptake_washout``, ``a / t <= share k`` (the local log-slope
        ``k - a/t`` within ``share`` of ``k``) for ``transit``; every point
        after the peak for ``mono``). The terminal rate is only supported by
        the data when such points exist.
        """
        if not self.converged or self.time_h.size == 0:
            return 0
        i = int(np.argmax(self.values))
        t = self.time_h[i + 1:]
        p = self.params
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if self.model == "mono" or self._slow_vanished():
                frac = np.zeros(t.size)
            elif self.model == "transit":
                frac = np.where(p["k"] > 0, p["a"] / np.where(t > 0, t, np.nan) / p["k"], np.inf)
                frac = np.where(np.isfinite(frac), frac, np.inf)
            elif self.model == "bi":
                frac = np.where(p["A2"] > 0, p["A1"] * np.exp(-(p["k1"] - p["k2"]) * t) / p["A2"], np.inf)
            else:
                frac = np.exp(-(p["k1"] - p["k2"]) * t)
        return int(np.sum(frac <= share))

    def quality_issues(self, min_r_squared: float = MIN_R_SQUARED,
                       min_terminal_points: int = MIN_TERMINAL_POINTS) -> tuple[str, ...]:
        """Why this fit should not be extrapolated (empty when it may).

        A fit is good for a terminal rate or an integral to infinity when it
        converged, has residual degrees of freedom, no parameter on a bound,
        ``R^2 >= min_r_squared`` and at least ``min_terminal_points``
        observed points after the peak in its terminal phase
        (:meth:`terminal_points`).
        """
        if not self.converged:
            return (f"not converged ({self.message})",)
        out = []
        if self.dof <= 0:
            out.append(f"no residual degrees of freedom (n={self.n}, p={self.n_params})")
        if self.at_bound:
            out.append("parameter on a bound (" + ", ".join(self.at_bound) + ")")
        if not self.r_squared >= min_r_squared:
            out.append(f"R^2 = {self.r_squared:.3g} < {min_r_squared:g}")
        nt = self.terminal_points()
        if nt < min_terminal_points:
            out.append(f"terminal phase supported by {nt} point(s) after the peak (< {min_terminal_points})")
        return tuple(out)

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
                 rate_upper_bound_per_h=self.rate_upper_bound_per_h,
                 terminal_points=self.terminal_points(), quality="; ".join(self.quality_issues()) or "ok",
                 residuals=[float(r) for r in self.residuals], message=self.message,
                 warnings="; ".join(self.warnings))
        return d


def fits_to_frame(results: Sequence[FitResult]):
    """A DataFrame with one row per fit (see :meth:`FitResult.to_dict`)."""
    import pandas as pd

    return pd.DataFrame([r.to_dict() for r in results])


# ----------------------------------------------------------------- fitting
def _rate_grid(t: np.ndarray, lo: float) -> tuple[np.ndarray, float]:
    """Log-spaced trial rates ``lo + kb`` (``kb = 0`` included) and the upper rate bound.

    The grid runs from rates that barely change the curve within the study
    (``0.01 / t_last``) to ``_RESOLVE / t_first``: a faster exponential has
    decayed by ``exp(-_RESOLVE)`` at the first (positive) scan time and leaves
    no trace in the data, so the upper bound does not change any fit, it only
    stops an unresolved fast phase from drifting.
    """
    tpos = t[t > 0]
    t_first = float(tpos.min()) if tpos.size else 1.0
    t_last = float(tpos.max()) if tpos.size else 1.0
    k_hi = min(_MAX_RATE_PER_H, lo + _RESOLVE / t_first)
    k_hi = max(k_hi, 2.0 * lo + 1.0 / t_last)
    kb_lo = 0.01 / t_last
    n = int(math.ceil(math.log10((k_hi - lo) / kb_lo) * _GRID_PER_DECADE)) + 1
    return lo + np.r_[0.0, np.geomspace(kb_lo, k_hi - lo, max(n, 2))], k_hi


def _local_minima(cost: np.ndarray, limit: int, c_zero: float) -> list:
    """Indices of the ``limit`` lowest local minima of a 1-D or 2-D cost array (inf = invalid).

    Points no better than the zero curve (``c_zero``: a plateau where the basis has vanished) are
    not minima.
    """
    from scipy.ndimage import minimum_filter

    ok = np.isfinite(cost) & (cost < c_zero * (1 - 1e-9))
    if not ok.any():
        return []
    c = np.where(ok, cost, np.inf)
    is_min = ok & (c <= minimum_filter(c, size=3, mode="constant", cval=np.inf))
    idx = np.flatnonzero(is_min)
    idx = idx[np.argsort(c.ravel()[idx], kind="stable")][:limit]
    return [np.unravel_index(i, c.shape) for i in idx]


def _grid_starts(model: str, t: np.ndarray, y: np.ndarray, w: np.ndarray, K: np.ndarray,
                 limit: int) -> list[np.ndarray]:
    """Starting points (internal parametrisation) by variable projection on a rate grid.

    For fixed rates the model is linear in its amplitudes, so every trial
    rate (pair) gets its best non-negative amplitudes in closed form (a one-
    or two-column NNLS problem), all trial rates at once; the lowest local
    minima of the residual sum over the grid are returned.
    """
    yw = y * w
    c_zero = float(yw @ yw)
    E = np.exp(-np.outer(K, t)) * w                       # (G, n) weighted basis
    d = np.einsum("gi,gi->g", E, E)
    b = E @ yw
    with np.errstate(divide="ignore", invalid="ignore"):
        a_mono = np.where(d > 0, np.maximum(b / np.where(d > 0, d, 1.0), 0.0), 0.0)
    r_mono = yw - a_mono[:, None] * E
    c_mono = np.einsum("gi,gi->g", r_mono, r_mono)
    if model == "mono":
        mins = _local_minima(c_mono, limit, c_zero)
        return [np.array([a_mono[i], K[i]]) for (i,) in mins
                if c_mono[i] <= _START_COST_RATIO * c_mono[mins[0][0]]]
    if model == "transit":
        # basis t^a exp(-k t) on a (shape, rate) grid; one non-negative amplitude each
        S = _SHAPE_GRID
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            B = np.exp(S[:, None, None] * _logt(t)[None, None, :] - K[None, :, None] * t[None, None, :])
            B = np.where(t[None, None, :] > 0, B, 0.0) * w
            bb = np.einsum("ski,ski->sk", B, B)
            amp = np.where(bb > 0, np.maximum(np.einsum("ski,i->sk", B, yw) / np.where(bb > 0, bb, 1.0), 0.0), 0.0)
            r = yw[None, None, :] - amp[..., None] * B
            cost = np.where(np.isfinite(amp), np.einsum("ski,ski->sk", r, r), np.inf)
        out = []
        mins = _local_minima(cost, limit, c_zero)
        for i, j in mins:
            if cost[i, j] > _START_COST_RATIO * cost[mins[0]]:
                break
            out.append(np.array([amp[i, j], S[i], K[j]]))
        # the mono-exponential (a = 0) as a start too: transit is then never worse than mono
        mm = _local_minima(c_mono, 1, c_zero)
        if mm:
            out.append(np.array([a_mono[mm[0][0]], 0.0, K[mm[0][0]]]))
        return out
    G = K.size
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if model == "bi":
            I, J = np.tril_indices(G, -1)                 # I: fast (K[I] > K[J]), J: slow
            Ei, Ej = E[I], E[J]
            dij = np.einsum("pi,pi->p", Ei, Ej)
            det = d[I] * d[J] - dij ** 2
            a1 = (d[J] * b[I] - dij * b[J]) / det
            a2 = (d[I] * b[J] - dij * b[I]) / det
            both = (det > 1e-10 * d[I] * d[J]) & (a1 >= 0) & (a2 >= 0) & np.isfinite(a1) & np.isfinite(a2)
            # otherwise the NNLS optimum has one amplitude at zero: the better single exponential
            fast_only = c_mono[I] < c_mono[J]
            a1 = np.where(both, a1, np.where(fast_only, a_mono[I], 0.0))
            a2 = np.where(both, a2, np.where(fast_only, 0.0, a_mono[J]))
            r = yw - a1[:, None] * Ei - a2[:, None] * Ej
        else:  # uptake_washout: basis exp(-k2 t) (1 - exp(-dk t)) / dk, and t exp(-k2 t) for dk = 0
            I, J = np.tril_indices(G, 0)
            g = np.where((I > J)[:, None], (E[J] - E[I]) / np.where(I > J, K[I] - K[J], 1.0)[:, None],
                         E[J] * t[None, :])
            gg = np.einsum("pi,pi->p", g, g)
            a1 = np.where(gg > 0, np.maximum((g @ yw) / np.where(gg > 0, gg, 1.0), 0.0), 0.0)
            a2 = a1
            r = yw - a1[:, None] * g
    cost = np.full((G, G), np.inf)
    cost[I, J] = np.einsum("pi,pi->p", r, r)
    amp1 = np.zeros((G, G))
    amp2 = np.zeros((G, G))
    amp1[I, J], amp2[I, J] = a1, a2
    out = []
    mins = _local_minima(cost, limit, c_zero)
    for i, j in mins:
        if cost[i, j] > _START_COST_RATIO * cost[mins[0]]:
            break
        k2, dk = K[j], K[i] - K[j]
        out.append(np.array([amp1[i, j], amp2[i, j], k2, dk]) if model == "bi"
                   else np.array([amp1[i, j], k2, dk]))
    return out


def _external_to_internal(model: str, p0) -> np.ndarray:
    m = MODELS[model]
    if isinstance(p0, dict):
        ext = np.array([float(p0[k]) for k in m.param_names])
    else:
        ext = np.asarray(p0, dtype=float).ravel()
        if ext.size != len(m.param_names):
            raise ValueError(f"p0 for {model} needs {len(m.param_names)} values ({', '.join(m.param_names)})")
    if model in ("mono", "transit"):
        return ext
    if model == "bi":   # (A1, k1, A2, k2) -> (A1, A2, k2, dk); put the faster component first
        a1, k1, a2, k2 = ext
        if k1 < k2:
            a1, k1, a2, k2 = a2, k2, a1, k1
        return np.array([a1, a2, k2, k1 - k2])
    a, k1, k2 = ext      # (A, k1, k2) -> (B = A dk, k2, dk)
    k1, k2 = max(k1, k2), min(k1, k2)
    return np.array([a * (k1 - k2), k2, k1 - k2])


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
    p0=None,
    grid: bool = True,
    label: dict | None = None,
    _refined: dict | None = None,
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
    p0 : dict or sequence, optional
        An extra starting point (external parameters, e.g. ``{"A": 10, "k":
        0.2}``), refined besides the grid starts; the lowest residual wins.
        Not needed: the grid search finds the starting points.
    grid : bool
        Search the grid of starting points (default). ``False`` refines
        ``p0`` alone (a warm start, e.g. refitting Monte Carlo draws of a
        curve from the nominal fit's parameters; ``p0`` required).
    label : dict, optional
        Copied into :meth:`FitResult.to_dict` (region, quantity...).
    _refined : dict, optional
        Private (:func:`fit_models`): mono-exponential refinements of this curve already done by another
        model's fit, reused when start, bounds and data are the same to the bit (the ``bi`` fit's nested
        start refines the ``mono`` fit's first start again).

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
    if not lo >= 0:
        raise ValueError(f"the rate lower bound must be >= 0, got {lo}")
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

    def failed(msg, fitted=None, w=(), k_hi=math.nan):
        f = np.full(n, np.nan) if fitted is None else fitted
        return FitResult(model, m.formula, dict(nan_params), dict(nan_params), n, p, math.nan, math.nan,
                         math.nan, math.nan, False, msg, wname, lo, decay_corrected, t, y, f, y - f,
                         (), tuple(w), dict(label or {}), k_hi)

    if n < p:
        return failed(f"{n} points for {p} parameters: not fitted")
    if not np.any(y > 0):
        return failed("no positive values: not fitted")
    if np.any(t < 0):
        return failed("negative times: not fitted (times are hours after injection)")
    # work on data scaled to max |y| = 1: every step below is then independent of the unit
    scale = float(np.max(np.abs(y)))
    ys = y / scale
    ss = None if sig is None else sig / scale
    w = np.ones(n) if ss is None else 1.0 / ss
    K, k_hi = _rate_grid(t, lo)
    is_amp = np.array(m.internal_is_amplitude)
    lb = np.array([lo if r else 0.0 for r in m.internal_is_rate])
    if model == "uptake_washout":   # keep A = B / dk finite
        lb[2] = _DK_MIN_REL / max(float(t.max()), 1e-9)
    ub = np.array([k_hi if (r or name == "dk") else (_MAX_SHAPE if name == "a" else np.inf)
                   for r, name in zip(m.internal_is_rate, m.internal_names)])
    if not grid and p0 is None:
        raise ValueError("grid=False refines p0 alone: give p0")
    starts = _grid_starts(model, t, ys, w, K, _N_STARTS) if grid else []
    if p0 is not None:
        q = _external_to_internal(model, p0)
        starts.append(np.where(is_amp, q / scale, q))

    def refine(func, jac, q0, lo_b, up_b):
        """(cost, popt, pcov, message, ier, warnings) of one bounded least-squares run, or an error text."""
        key = None
        if _refined is not None and func is MODELS["mono"].func and jac is MODELS["mono"].jac:
            key = tuple(np.asarray(a, dtype=float).tobytes() for a in (q0, lo_b, up_b, t, ys, w)) + (
                None if ss is None else ss.tobytes(), bool(absolute_sigma))
            if key in _refined:
                return _refined[key]
        out = _refine(func, jac, q0, lo_b, up_b)
        if key is not None:
            _refined[key] = out
        return out

    def _refine(func, jac, q0, lo_b, up_b):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            try:
                popt, pcov, info, msg, ier = curve_fit(
                    func, t, ys, p0=_clip_into(q0, lo_b, up_b), sigma=ss, absolute_sigma=absolute_sigma,
                    bounds=(lo_b, up_b), jac=jac, method="trf", full_output=True, x_scale="jac",
                    xtol=_TOL, ftol=_TOL, gtol=_TOL, max_nfev=_MAX_NFEV_PER_PARAM * len(q0))
            except (RuntimeError, ValueError, np.linalg.LinAlgError) as e:
                return f"start {np.round(q0, 4).tolist()}: {e}"
        res = (ys - func(t, *popt)) * w
        warn = [str(r.message) for r in rec if issubclass(r.category, (OptimizeWarning, RuntimeWarning))]
        return float(np.dot(res, res)), popt, pcov, msg, ier, warn

    nested = None
    if model == "bi" and grid:
        # nested start: the best single exponential as the slow component plus the fast exponential that
        # best explains what it leaves; the bi fit is then never worse than the mono fit (coarse-grid
        # starts can need many steps to trade the roles of the two components)
        mono = MODELS["mono"]
        mstart = _grid_starts("mono", t, ys, w, K, 1)
        mfit = refine(mono.func, mono.jac, mstart[0], np.array([0.0, lo]), np.array([np.inf, k_hi])) \
            if mstart else "no start"
        if not isinstance(mfit, str):
            a_m, k_m = mfit[1]
            kf = K[K > k_m * (1 + 1e-6) + 1e-12]
            if kf.size:
                rw = (ys - a_m * np.exp(-k_m * t)) * w
                ef = np.exp(-np.outer(kf, t)) * w
                c = np.maximum(ef @ rw / np.maximum(np.einsum("gi,gi->g", ef, ef), 1e-300), 0.0)
                i = int(np.argmin(np.einsum("gi,gi->g", rw - c[:, None] * ef, rw - c[:, None] * ef)))
                nested = (np.array([c[i], a_m, k_m, kf[i] - k_m]), mfit[0])

    best = None
    caught: list[str] = []
    for q0 in starts:
        if not np.all(np.isfinite(q0)):
            continue
        out = refine(m.func, m.jac, q0, lb, ub)
        if isinstance(out, str):
            caught.append(out)
            continue
        # ties (within rounding) keep the earlier start: the result does not depend on solver noise
        if np.isfinite(out[0]) and (best is None or out[0] < best[0] - 1e-12 * (1.0 + best[0])):
            best = out
    if nested is not None and (best is None or best[0] > nested[1] * (1 + 1e-9) + 1e-15):
        out = refine(m.func, m.jac, nested[0], lb, ub)   # only when the grid starts did worse than mono
        if isinstance(out, str):
            caught.append(out)
        elif np.isfinite(out[0]) and (best is None or out[0] < best[0] - 1e-12 * (1.0 + best[0])):
            best = out
    if best is None:
        return failed("no starting point converged: " + "; ".join(caught[:2]), w=caught, k_hi=k_hi)
    if model == "uptake_washout" and best[1][2] * float(t.max()) <= _DK_DEGENERATE:
        # heading for the k1 = k2 limit, where the cost is flat in k1 - k2 and the optimiser stops
        # anywhere: fit the limit itself (k1 - k2 on its bound) and keep it unless clearly worse
        dk0 = lb[2]
        out = refine(lambda tt, b_, k2_: _uw(tt, b_, k2_, dk0), lambda tt, b_, k2_: _uw_jac(tt, b_, k2_, dk0)[:, :2],
                     best[1][:2], lb[:2], ub[:2])
        if not isinstance(out, str) and np.isfinite(out[0]) and out[0] <= best[0] + 1e-9 * (1.0 + best[0]):
            pc = np.full((3, 3), np.nan)
            pc[:2, :2] = out[2]
            best = (out[0], np.r_[out[1], dk0], pc, out[3], out[4], out[5])
    _, popt, pcov, msg, ier, warn = best
    converged = bool(ier in (1, 2, 3, 4) and np.all(np.isfinite(popt)))
    # back to the data's unit
    amp_scale = np.where(is_amp, scale, 1.0)
    popt_u = popt * amp_scale
    pcov_u = pcov * np.outer(amp_scale, amp_scale)
    ext, T = m.to_external(popt_u)
    if np.all(np.isfinite(pcov_u)):
        cov = T @ pcov_u @ T.T
        se = np.sqrt(np.clip(np.diag(cov), 0, None))
    elif model == "uptake_washout" and np.all(np.isfinite(pcov_u[:2, :2])):
        # k1 = k2 limit: only B and k2 are determined; A and k1 get no standard error
        cov = T @ np.nan_to_num(pcov_u) @ T.T
        se = np.where([False, False, True], np.sqrt(np.clip(np.diag(cov), 0, None)), np.nan)
    else:
        se = np.full(p, np.nan)
        warn = list(warn) + ["parameter covariance could not be estimated (standard errors are NaN)"]
    fitted = m.func(t, *popt_u)
    resid = y - fitted
    wres = resid / (sig if sig is not None else 1.0)
    wrss = float(np.dot(wres, wres))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.dot(resid, resid)) / ss_tot if ss_tot > 0 else math.nan
    # information criteria; floor the residual sum so exact fits compare by their penalty
    ic_scale = float(np.sum((y / (sig if sig is not None else 1.0)) ** 2)) or 1.0
    wrss_ic = max(wrss, 1e-24 * ic_scale)
    K_ic = p + 1
    aic = n * math.log(wrss_ic / n) + 2 * K_ic
    aicc = aic + 2 * K_ic * (K_ic + 1) / (n - K_ic - 1) if n - K_ic - 1 > 0 else math.nan
    at_bound = []
    for j, (name, v) in enumerate(zip(m.internal_names, popt)):
        typical = (1.0 / max(float(t.max()), 1e-9)) if not is_amp[j] else 1.0   # scaled units
        if name == "dk" and model == "uptake_washout" and v * float(t.max()) <= _DK_DEGENERATE:
            # k1 -> k2: the curve is B t exp(-k2 t) to within ((k1 - k2) t)^2 / 24; A is not determined
            at_bound.append("k1=k2 (limit A*(k1-k2)*t*exp(-k2*t))")
        elif v - lb[j] <= (_AMP_NEGLIGIBLE if is_amp[j] else 1e-6) * max(abs(lb[j]), typical):
            at_bound.append("k1=k2" if name == "dk" else f"{name}={lb[j]:.6g}")
        elif np.isfinite(ub[j]) and v >= ub[j] * (1 - 1e-6):
            at_bound.append(f"a>={ub[j]:.6g}" if name == "a" else
                            f"{'k1-k2' if name == 'dk' else name}>={ub[j]:.6g} (unresolved fast phase)")
    params = {k: float(v) for k, v in zip(m.param_names, ext)}
    stderr = {k: float(v) for k, v in zip(m.param_names, se)}
    return FitResult(model, m.formula, params, stderr, n, p, wrss, r2, aic, aicc, converged,
                     str(msg), wname, lo, decay_corrected, t, y, fitted, resid, tuple(at_bound), tuple(warn),
                     dict(label or {}), k_hi)


# ------------------------------------------------------------ model choice
@dataclass
class ModelSelection:
    """Several models fitted to one curve, and the one chosen.

    ``criterion`` is ``"AICc"``; ``compared`` the fits that competed
    (converged, AICc defined, ``R^2 >= min_r_squared``); ``best`` is None
    when none did; ``reason`` says why the choice fell as it did and why any
    model was left out.
    """

    fits: list[FitResult]
    best: FitResult | None
    criterion: str
    reason: str
    compared: list[FitResult] = field(default_factory=list)

    def to_frame(self):
        """One row per candidate, with ``compared``, ``delta`` (AICc minus the lowest compared),
        Akaike ``weight`` (over the compared fits), ``selected`` and ``selection_reason``."""
        import pandas as pd

        ids = {id(f) for f in self.compared}
        vals = [f.aicc for f in self.compared]
        vmin = min(vals) if vals else math.nan
        wsum = sum(math.exp(-0.5 * (v - vmin)) for v in vals) if vals else math.nan
        rows = []
        for f in self.fits:
            d = f.to_dict()
            ok = id(f) in ids
            d.update(criterion=self.criterion, compared=ok, delta=f.aicc - vmin if ok else math.nan,
                     weight=math.exp(-0.5 * (f.aicc - vmin)) / wsum if ok else 0.0,
                     selected=f is self.best, selection_reason=self.reason)
            rows.append(d)
        return pd.DataFrame(rows)


def _usable(f: FitResult) -> bool:
    return f.converged and f.dof > 0


def fit_models(time_h, values, models: Sequence[str] = DEFAULT_MODELS, *, min_r_squared: float = MIN_R_SQUARED,
               delta_aicc: float = DELTA_AICC, **kwargs) -> ModelSelection:
    """Fit several models and choose the simplest one the data support, by AICc.

    A fit competes only when it converged, its AICc is defined (``n > K +
    1`` with ``K`` = parameters + 1; AIC is never used in its place) and its
    ``R^2 >= min_r_squared``. Among the competitors, those within
    ``delta_aicc`` of the lowest AICc are equally supported, and the one with
    the fewest parameters is chosen (ties: lower AICc). No model is chosen
    when none competes.

    Parameters
    ----------
    time_h, values : array_like
    models : sequence of str
        Candidates (default :data:`DEFAULT_MODELS`).
    min_r_squared : float
        Fits below this unweighted R^2 are never chosen.
    delta_aicc : float
        Support margin (2, Burnham & Anderson 2002).
    **kwargs
        Passed to :func:`fit_tac`.

    Examples
    --------
    >>> t = np.array([0.5, 1, 2, 4, 6, 24.0])
    >>> sel = fit_models(t, 10 * np.exp(-0.3 * t) * (1 + 0.01 * np.cos(t)), weighting="relative")
    >>> sel.best.model, [f.model for f in sel.compared]
    ('mono', ['mono', 'uptake_washout', 'transit'])
    """
    refined: dict = {}  # refinements one model's fit shares with another's (same start, bounds and data)
    fits = [fit_tac(time_h, values, name, _refined=refined, **kwargs) for name in models]
    compared, left_out = [], []
    for f in fits:
        if not f.converged:
            left_out.append(f"{f.model}: not converged")
        elif not np.isfinite(f.aicc):
            left_out.append(f"{f.model}: AICc undefined (n={f.n} <= K+1={f.n_params + 2})")
        elif not f.r_squared >= min_r_squared:
            left_out.append(f"{f.model}: R^2 = {f.r_squared:.3g} < {min_r_squared:g}")
        else:
            compared.append(f)
    out_txt = ("; not compared: " + "; ".join(left_out)) if left_out else ""
    if not compared:
        return ModelSelection(fits, None, "AICc", "no model chosen" + (out_txt or ": no candidate"), [])
    low = min(compared, key=lambda f: f.aicc)
    near = [f for f in compared if f.aicc - low.aicc <= delta_aicc]
    best = min(near, key=lambda f: (f.n_params, f.aicc))
    if best is low:
        reason = "lowest AICc"
    else:
        reason = (f"simplest model within delta-AICc {delta_aicc:g} of the lowest ({low.model}, "
                  f"delta {best.aicc - low.aicc:.2f})")
    return ModelSelection(fits, best, "AICc", reason + out_txt, compared)
