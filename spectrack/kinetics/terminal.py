"""Terminal rate of a time-activity curve, and the half-lives it gives.

:func:`terminal_rate` returns a :class:`TerminalRate` (the rate, where it came from, the points
behind it); :func:`effective_half_life_h`, :func:`biological_half_life_h` and
:func:`effective_from_biological_h` turn rates and half-lives into one another.

Terminal rate
-------------
:func:`terminal_rate` takes the slowest rate of the AICc-selected fit only
when that fit may be extrapolated (:meth:`FitResult.quality_issues
<spectrack.kinetics.least_squares.FitResult.quality_issues>`: converged, no parameter
on a bound, R^2 >= 0.9, at least 3 points after the peak in the fit's
terminal phase). Otherwise it falls back to a log-linear fit of the last
points after the observed peak (the non-compartmental lambda_z: the last 3
or more with the best adjusted R^2 when it reaches 0.8, else the last 2),
then to the chord from the peak to the only point after it; a curve that
does not decline after its peak has no terminal rate (a physical curve then
uses physical decay, an upper bound). Rates are never below the lower bound
of the fits (``lambda_phys`` for physical curves); :attr:`TerminalRate.method` says which
route was taken.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .fits import ModelSelection
from .integrate import LN2
from .least_squares import MIN_R_SQUARED, MIN_TERMINAL_POINTS, FitResult

__all__ = [
    "effective_half_life_h",
    "biological_half_life_h",
    "effective_from_biological_h",
    "TerminalRate",
    "terminal_rate",
    "MIN_PHASE_POINTS",
]

#: points that must define a terminal phase before its rate extrapolates an integral (see tac_metrics)
MIN_PHASE_POINTS = 3
#: adjusted R^2 a log-linear terminal regression over >= 3 points needs to define the phase
MIN_LAMBDA_Z_R2 = 0.8


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
