"""Starting values of the fits: amplitudes in closed form on a grid of trial rates (variable projection).

For fixed rates every model is linear in its (non-negative) amplitudes, so the amplitudes of all
trial rates (10 per decade, 0.01 / t_last to the upper bound) and rate pairs are solved at once in
closed form (one- and two-column NNLS), and the lowest local minima of the residual sum over the grid
are the starting points :func:`spectrack.kinetics.least_squares.fit_tac` refines. The grid also sets
the upper bound of the rates (:func:`_rate_grid`).
"""

from __future__ import annotations

import math

import numpy as np

from .models import _logt

#: trial shapes of the transit model's starting-value grid
_SHAPE_GRID = np.r_[np.linspace(0.25, 3.0, 12), np.linspace(3.5, 10.0, 14)]
#: hard upper bound on rates (1/h): a half-time under 3 s is not resolvable by imaging
_MAX_RATE_PER_H = 1000.0
#: rates above ``_RESOLVE / t_first`` have decayed by exp(-_RESOLVE) at the first scan (see _rate_grid)
_RESOLVE = 50.0
#: trial rates per decade of the starting-value grid
_GRID_PER_DECADE = 10
#: a grid minimum other than the lowest is a start when its grid cost is within this ratio of the lowest
_START_COST_RATIO = 4.0


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

