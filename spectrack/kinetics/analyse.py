"""Kinetics of a whole quantification table: every region's curve fitted, integrated and given intervals.

:func:`analyse_kinetics` is the kinetics stage of the pipeline: it takes the
region table of :func:`spectrack.quantify` (and, optionally, its Monte Carlo
draws), builds each region's curves (:mod:`spectrack.kinetics.tac`), fits and
integrates them (:func:`spectrack.kinetics.auc.tac_metrics`) and refits the
draws for intervals (:func:`spectrack.kinetics.uncertainty.metric_intervals`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .auc import tac_metrics
from .fits import fits_to_frame

__all__ = ["KineticsResult", "analyse_kinetics", "injected_with_groups"]


@dataclass
class KineticsResult:
    """Kinetics of a whole table: ``metrics`` (long: one row per subject,
    region, quantity, metric and correction) and ``fits`` (every candidate fit
    with its selection)."""

    metrics: "object"
    fits: "object"


def _curve_intervals(draws, subject, region, quantity, tac, summ, hl, level, max_draws, sigma, unit, kw):
    """``metric_intervals`` of one curve, or ``{"_why": reason}`` when its draws do not match it."""
    from ..quantification.memory import check_draw_memory, kinetics_draws_bytes
    from .uncertainty import interval_text, metric_intervals

    got = draws.get(("" if subject is None else str(subject), str(region)), {})
    d = got.get(quantity)
    if d is None:
        return {"_why": "no interval: no Monte Carlo draws for this curve"}
    d = np.asarray(d, dtype=float)
    if max_draws is not None:
        d = d[: int(max_draws)]
    check_draw_memory(kinetics_draws_bytes(len(d), len(tac.time_h), len(summ.metrics)),
                      f"kinetic intervals of {region}", len(d), "--kinetics-draws")
    tt = np.asarray(got.get("time_h", ()), dtype=float)
    # scans without draws (no interval there, e.g. an empty region) are held at their value in every draw
    full = np.tile(np.asarray(tac.values, dtype=float), (len(d), 1))
    held = []
    for j, tj in enumerate(tac.time_h):
        hit = np.flatnonzero(np.isclose(tt, tj, rtol=0, atol=1e-9))
        if hit.size == 1:
            full[:, j] = d[:, hit[0]]
        elif np.isfinite(tac.values[j]):
            held.append(tj)
    if len(held) == len(tac.time_h):
        return {"_why": "no interval: no Monte Carlo draws at this curve's scan times"}
    res = metric_intervals(tac.time_h, full, summ, half_life_h=hl, level=level, fixed_model=True, sigma=sigma,
                           unit=unit, **kw)
    res["_text"] = interval_text(level, len(d), True) + (
        f" (scan(s) at {', '.join(f'{x:g}' for x in held)} h without an interval held at their value)"
        if held else "")
    return res


def _iv_cols(iv: dict, row: dict, wanted: bool) -> dict:
    if not wanted:
        return {}
    k = (row["metric"], row["correction"])
    if k in iv:
        lo, hi, _, note = iv[k]
        return {"lo": lo, "hi": hi, "interval_method": iv["_text"] + note}
    return {"lo": math.nan, "hi": math.nan, "interval_method": iv.get("_why", "")}


def injected_with_groups(table, injected_regions) -> set[str]:
    """The injected regions and every group of the vocabulary that contains one of them."""
    from ..regions.vocabulary import GROUPS

    inj = {str(r) for r in (injected_regions or ())}
    present = set(table["region"].astype(str)) if "region" in table else set()
    out = set(inj)
    for g, members in GROUPS.items():
        if g in present and inj & set(members):
            out.add(g)
    return out


def analyse_kinetics(
    table,
    *,
    half_life_h: float | None = None,
    quantities: Sequence[str] = ("pct_id", "activity_mbq"),
    regions: Sequence[str] | None = None,
    kinds: Sequence[str] | None = ("region", "group"),
    use_intervals: bool = True,
    injected_regions: Sequence[str] = (),
    draws: Mapping | None = None,
    max_draws: int | None = None,
    level: float = 0.95,
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
        Keys of :data:`spectrack.kinetics.tac.QUANTITIES` (``pct_id_pvc`` for
        the recovery-corrected curves).
    regions, kinds
        Row filters (``kinds`` needs a ``kind`` column).
    use_intervals : bool
        Weight fits by the SD of the independent uncertainty terms
        (``<column>_sd_independent``: counting noise, which varies from scan to
        scan) when the table has it (a scan whose SD is 0, a region without
        counts, gets the smallest SD of the curve's other scans), else by the
        interval half-widths (``(hi - lo) / 3.92``); otherwise ``weighting``
        (default relative) applies.
    injected_regions : sequence of str
        The region(s) holding the injection (e.g. the injection site and the
        canal level it is in): they, and the groups containing them, start
        at their back-extrapolated content (``start="back"``); every other
        region starts at 0.
    draws : mapping, optional
        Monte Carlo draws of the curves, ``{(subject, region): {quantity:
        array (n_draws, n_times)}}`` as :func:`~spectrack.quantification.intervals.add_pct_id_intervals`
        returns with ``return_draws=True``: each draw is refitted with the
        nominal curve's chosen model and reintegrated, and the percentiles
        give ``lo``/``hi`` of the areas, MRT, TIAC and half-lives
        (:func:`~spectrack.kinetics.uncertainty.metric_intervals`).
    max_draws : int, optional
        Use only the first draws of each curve (refits cost about 6 ms per
        draw and curve).
    level : float
        Interval level.
    **kwargs
        Passed to :func:`tac_metrics` (``models``, ``tail``...; ``start``
        overrides the rule above for every region).

    Returns
    -------
    KineticsResult
        ``metrics`` has ``lo``, ``hi`` and ``interval_method`` columns when
        ``draws`` are given.
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
    injected = injected_with_groups(df, injected_regions)
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
                if not np.any(np.isfinite(tac.values)):
                    continue
                sigma = None
                sd_ok = None if tac.sd is None else np.isfinite(tac.sd) & (tac.sd > 0)
                if use_intervals and sd_ok is not None and sd_ok.any():
                    # the independent terms alone: shared terms do not vary between scans; a scan without counts
                    # (SD 0) gets the smallest SD of the curve's other scans, not an infinite weight
                    sigma = np.where(sd_ok, tac.sd, np.min(tac.sd[sd_ok]))
                elif use_intervals and tac.lo is not None and tac.hi is not None:
                    sd = (tac.hi - tac.lo) / 3.92
                    sigma = sd if np.all(np.isfinite(sd) & (sd > 0)) else None
                kw = dict(kwargs)
                kw.setdefault("start", "back" if region in injected else "zero")
                summ = tac_metrics(tac.time_h, tac.values, half_life_h=hl, decay_corrected=True, sigma=sigma,
                                   unit=QUANTITIES[q][2], **kw)
                key = {"subject": s, "region": region, "quantity": q}
                iv = {}
                if draws is not None:
                    iv = _curve_intervals(draws, s, region, q, tac, summ, hl, level, max_draws, sigma,
                                          QUANTITIES[q][2], kw)
                mrows += [dict(key, **r, **_iv_cols(iv, r, draws is not None)) for r in summ.metrics]
                for corr, sel in summ.selections.items():
                    f = sel.to_frame()
                    for k, v in reversed(list(dict(key, correction=corr).items())):
                        f.insert(0, k, v)
                    frows.append(f)
    metrics = pd.DataFrame(mrows, columns=["subject", "region", "quantity", "metric", "correction", "value",
                                           "unit", "method", "flag"]
                           + (["lo", "hi", "interval_method"] if draws is not None else []))
    fits = pd.concat(frows, ignore_index=True) if frows else fits_to_frame([])
    metrics.attrs["half_life_h"] = hl
    return KineticsResult(metrics, fits)
