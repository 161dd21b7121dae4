"""Exponential models of time-activity curves: formulas, parameters, functions and Jacobians.

Each entry of :data:`MODELS` holds a model's formula, its reported (external) parameters, the
parametrisation the optimiser sees (internal) with the map back and its Jacobian, the function and
its Jacobian in the internal parameters; :func:`model_function` evaluates a model from its
external parameters. Fitting is in :mod:`spectrack.kinetics.least_squares`, the choice among models
in :mod:`spectrack.kinetics.fits`.

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["MODELS", "DEFAULT_MODELS", "model_function"]


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

