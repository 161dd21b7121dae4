"""Summary numbers of time-activity curves: Cmax, Tmax, AUC / TIA, TIAC, MRT and half-lives.

Every number carries a ``method`` string saying how it was obtained. :func:`tac_metrics` computes
them for one curve; the areas come from :mod:`spectrack.kinetics.integrate`, the terminal rate and
the half-lives from :mod:`spectrack.kinetics.terminal` (their names are importable from here too).

Conventions
-----------
* Times are hours after injection. Integrals run from the injection (t = 0),
  starting at a start value (``start``), linear-up/log-down between scans,
  the TIA with physical decay applied exactly within each interval
  (:mod:`spectrack.kinetics.integrate`).
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

The terminal rate is described in :mod:`spectrack.kinetics.terminal`; the
``method`` text of every number says which route was taken, and
``fit_r_squared`` / ``terminal_points`` rows report the quality behind it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .fits import DEFAULT_MODELS, ModelSelection, fit_models
from .integrate import LN2, Integral, back_extrapolate, integrate_fit, integrate_tac
from .terminal import MIN_LAMBDA_Z_R2  # noqa: F401 - public, importable from here
from .terminal import (
    MIN_PHASE_POINTS,
    TerminalRate,
    biological_half_life_h,
    effective_from_biological_h,
    effective_half_life_h,
    terminal_rate,
)

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

#: share of an area from beyond the scans (before the first, after the last) that is flagged
EXTRAPOLATED_FLAG = 0.2
#: a biological half-life longer than this multiple of the last scan time is not measurable
MAX_HALF_LIFE_SPAN = 10.0


def peak(time_h, values) -> tuple[float, float]:
    """Observed maximum and its time: ``(cmax, tmax_h)`` (first maximum)."""
    y = np.asarray(values, dtype=float)
    if y.size == 0 or not np.any(np.isfinite(y)):
        return math.nan, math.nan
    i = int(np.nanargmax(y))
    return float(y[i]), float(np.asarray(time_h, dtype=float)[i])


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
