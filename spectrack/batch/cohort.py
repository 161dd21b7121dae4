"""Cohort outputs of a batch: one tidy table, statistics, QC and an HTML report.

Studies are aligned by time point index (the protocol's n-th scan); the time
of a cohort point is the mean scan time of the studies at that index. The
spread shown is the sample standard deviation (ddof=1) across studies.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

from ..io_utils import atomic_file_set
from ..quantification.balance import DEFAULT_THRESHOLD_PCT_ID

__all__ = ["cohort_table", "cohort_stats", "qc_table", "write_cohort", "cohort_report"]

_KEYS = ("study", "species", "group", "dose_mg", "stale")
_MASS_BALANCE_TOL_PCT = 1.0


def cohort_table(summary):
    """All studies' ``regions.csv`` rows with ``study``, ``species``, ``group``, ``dose_mg``, ``stale`` first.

    A study that failed in this run but whose earlier result was kept appears
    with ``stale`` True (its rows describe the inputs of that earlier run).

    Parameters
    ----------
    summary : BatchSummary

    Returns
    -------
    pandas.DataFrame
    """
    import pandas as pd

    from ..quantification.core import TABLE_COLUMNS

    by_id = {s.study_id: s for s in summary.studies}
    frames = []
    for o in summary.outcomes:
        if not o.out_dir or (o.status == "failed" and not o.stale):
            continue
        try:
            df = pd.read_csv(Path(o.out_dir) / "regions.csv")
        except (OSError, ValueError):  # a stale result that cannot be read is left out (the study failed anyway)
            if o.stale:
                continue
            raise
        st = by_id[o.study].settings
        df = df.drop(columns=[c for c in _KEYS if c in df.columns])
        df.insert(0, "study", o.study)
        df.insert(1, "species", st.species)
        df.insert(2, "group", st.group)
        df.insert(3, "dose_mg", st.dose_mg)
        df.insert(4, "stale", bool(o.stale))
        frames.append(df)
    if frames:
        table = pd.concat(frames, ignore_index=True)
    else:
        table = pd.DataFrame(columns=list(_KEYS) + [c for c in TABLE_COLUMNS if c not in _KEYS])
    for c in ("study", "species", "group"):
        table[c] = table[c].astype("string")
    table["dose_mg"] = pd.to_numeric(table["dose_mg"]).astype("float64")
    table["stale"] = table["stale"].astype("bool") if "stale" in table.columns else False
    return table


def _cohort_label(species, group) -> str:
    parts = [str(v) for v in (species, group) if v is not None and not (isinstance(v, float) and math.isnan(v))
             and str(v) not in ("", "<NA>")]
    return " / ".join(parts) if parts else "all studies"


def cohort_stats(table):
    """Mean, SD (ddof=1) and n of ``pct_id`` per species/group, region and time point index.

    Rows of kind ``region`` and ``group`` only, of results computed in this
    run or up to date (not ``stale``). ``time_h`` is the mean scan time of the
    studies at that time point; ``time_h_sd`` its spread.
    """
    import pandas as pd

    fresh = ~table["stale"].astype(bool) if "stale" in table.columns else True
    df = table[table["kind"].isin(["region", "group"]) & fresh].copy()
    cols = ["cohort", "species", "group", "region", "timepoint", "n", "time_h", "time_h_sd", "pct_id_mean",
            "pct_id_sd"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    df["cohort"] = [_cohort_label(s, g) for s, g in zip(df["species"], df["group"])]
    region_order = {r: n for n, r in enumerate(dict.fromkeys(df["region"]))}
    g = df.groupby(["cohort", "region", "timepoint"], sort=False, dropna=False)
    st = g.agg(species=("species", "first"), group=("group", "first"), n=("pct_id", "count"),
               time_h=("time_h", "mean"), time_h_sd=("time_h", "std"), pct_id_mean=("pct_id", "mean"),
               pct_id_sd=("pct_id", "std")).reset_index()
    st["_r"] = st["region"].map(region_order)
    st = st.sort_values(["cohort", "_r", "timepoint"]).drop(columns="_r").reset_index(drop=True)
    return st[cols]


def _registration_quality(meta: dict) -> float | None:
    """Lowest ``quality_ncc`` found under a ``registration`` entry of study.json, if any."""
    vals = []

    def walk(x):
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "quality_ncc" and isinstance(v, (int, float)) and not math.isnan(v):
                    vals.append(float(v))
                else:
                    walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(meta.get("registration"))
    return min(vals) if vals else None


def qc_table(summary, table):
    """One row per study: time points (vs the cohort's usual count), mass balance, registration, warnings.

    ``mass_balance_pct`` is the largest over time points of
    ``|sum(region pct_id) + outside_regions - field_of_view|`` as a percentage
    of ``field_of_view`` (the table's own sums); ``unaccounted_pct_id`` is the
    time point's ``mass_balance.csv`` value farthest from 0: the injected
    activity not found in the field of view nor in the removed activity;
    ``unaccounted_threshold_pct_id`` the study's own warning threshold
    (``--mass-balance-threshold-pct-id``, from its ``study.json``; the
    default where the study does not record one), against which it is
    flagged.
    """
    import pandas as pd

    rows = []
    n_tp = table.groupby("study")["timepoint"].nunique() if len(table) else pd.Series(dtype=int)
    usual = int(n_tp.mode().max()) if len(n_tp) else None
    by_id = {s.study_id: s for s in summary.studies}
    for o in summary.outcomes:
        st = by_id[o.study].settings
        row = {"study": o.study, "species": st.species, "group": st.group, "status": o.status,
               "timepoints": None, "missing_timepoints": None, "mass_balance_pct": None, "unaccounted_pct_id": None,
               "unaccounted_threshold_pct_id": DEFAULT_THRESHOLD_PCT_ID, "registration_ncc_min": None, "warnings": None, "reason": o.reason, "stale": bool(o.stale)}
        if o.status != "failed" and o.out_dir:
            d = table[table["study"] == o.study]
            row["timepoints"] = int(d["timepoint"].nunique())
            row["missing_timepoints"] = max(0, usual - row["timepoints"]) if usual is not None else None
            worst = 0.0
            for _, t in d.groupby("timepoint"):
                fov = t.loc[t["kind"] == "fov", "pct_id"].sum()
                s = t.loc[t["kind"].isin(["region", "outside"]), "pct_id"].sum()
                if fov:
                    worst = max(worst, abs(s - fov) / abs(fov) * 100.0)
            row["mass_balance_pct"] = worst
            try:
                meta = json.loads((Path(o.out_dir) / "study.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                meta = {}
            row["registration_ncc_min"] = _registration_quality(meta)
            mb = meta.get("mass_balance") or {}
            thr = mb.get("threshold_pct_id")
            if isinstance(thr, (int, float)) and math.isfinite(thr):
                row["unaccounted_threshold_pct_id"] = float(thr)
            per_tp = mb.get("per_timepoint") or []
            un = [float(r["unaccounted_pct_id"]) for r in per_tp if r.get("unaccounted_pct_id") is not None]
            un = [u for u in un if math.isfinite(u)]
            row["unaccounted_pct_id"] = max(un, key=abs) if un else None
            w = list(meta.get("warnings", []) or []) + list((meta.get("study") or {}).get("warnings", []) or [])
            row["warnings"] = len(dict.fromkeys(map(str, w)))
        rows.append(row)
    return pd.DataFrame(rows), usual


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # Agg, without pyplot's global state
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _panel_grid(n):
    from matplotlib.figure import Figure

    ncols = min(4, max(1, n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(3.4 * ncols, 2.8 * nrows + 0.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def _figures(table, stats, max_regions=24) -> dict[str, bytes]:
    import matplotlib

    colors = matplotlib.colormaps["tab10"]
    fresh = ~table["stale"].astype(bool) if "stale" in table.columns else True
    d = table[table["kind"].isin(["region", "group"]) & fresh].copy()
    if d.empty:
        return {}
    d["cohort"] = [_cohort_label(s, g) for s, g in zip(d["species"], d["group"])]
    regions = list(dict.fromkeys(d["region"]))[:max_regions]
    cohorts = list(dict.fromkeys(d["cohort"]))
    col = {c: colors(n % 10) for n, c in enumerate(cohorts)}
    out = {}

    fig, axes = _panel_grid(len(regions))
    for ax, reg in zip(axes, regions):
        for c in cohorts:
            s = stats[(stats["cohort"] == c) & (stats["region"] == reg)]
            if s.empty:
                continue
            x, m, sd = s["time_h"].to_numpy(float), s["pct_id_mean"].to_numpy(float), s["pct_id_sd"].to_numpy(float)
            ax.plot(x, m, "o-", color=col[c], ms=3, lw=1.5, label=f"{c} (n={int(s['n'].max())})")
            ok = ~(sd != sd)
            if ok.any():
                ax.fill_between(x[ok], (m - sd)[ok], (m + sd)[ok], color=col[c], alpha=0.2, lw=0)
        ax.set_title(reg, fontsize=9)
        ax.set_xlabel("time after injection (h)", fontsize=8)
        ax.set_ylabel("%ID (mean ± SD)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7, frameon=False)
    fig.suptitle("%ID per region: mean ± 1 SD across studies, by species / group", fontsize=10)
    out["mean_pct_id.png"] = _png(fig)

    fig, axes = _panel_grid(len(regions))
    for ax, reg in zip(axes, regions):
        r = d[d["region"] == reg]
        for (study, c), s in r.groupby(["study", "cohort"], sort=False):
            s = s.sort_values("time_h")
            ax.plot(s["time_h"], s["pct_id"], "-", color=col[c], lw=0.9, alpha=0.75, marker=".", ms=3)
        ax.set_title(reg, fontsize=9)
        ax.set_xlabel("time after injection (h)", fontsize=8)
        ax.set_ylabel("%ID", fontsize=8)
        ax.tick_params(labelsize=7)
    from matplotlib.lines import Line2D

    axes[0].legend([Line2D([], [], color=col[c]) for c in cohorts], cohorts, fontsize=7, frameon=False)
    fig.suptitle("%ID per region: every study (colour = species / group)", fontsize=10)
    out["curves_per_region.png"] = _png(fig)
    return out


def _fmt(v, nd=3):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:.{nd}g}" if abs(v) < 1e-3 and v != 0 else f"{v:.{nd}f}"
    return str(v)


def _html_table(rows: list[dict], cols: list[str], flag=None) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cls = ' class="flag"' if flag and flag(r) else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{e(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def cohort_report(summary, table, stats, qc, usual, figures: dict[str, bytes]) -> str:
    """The self-contained HTML cohort report (figures embedded as base64 PNG)."""
    import datetime as dt

    from .._version import __version__

    e = html.escape
    c = summary.counts()
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>spectrack cohort report</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}",
        "table{border-collapse:collapse;font-size:13px;margin:0.5em 0 1.5em}",
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}",
        "td:first-child,th:first-child{text-align:left}tr.flag td{background:#fff1e0}",
        "img{max-width:100%;border:1px solid #eee}.note{color:#555;font-size:13px}",
        "</style></head><body>",
        "<h1>Cohort report</h1>",
        f"<p>{len(summary.outcomes)} studies: {c['done']} computed, {c['skipped']} unchanged (skipped), "
        f"{c['failed']} failed. Output folder <code>{e(str(summary.out_dir))}</code>. "
        f"spectrack {e(__version__)}, {dt.datetime.now():%Y-%m-%d %H:%M}.</p>",
        "<p class='note'>%ID is decay-corrected to injection. Studies are aligned by time point index; a cohort "
        "point's time is the mean scan time of the studies at that index. Curves show the mean and a band of "
        "±1 standard deviation (sample SD, n−1) across studies; no band where n = 1.</p>",
    ]
    for name, title in (("mean_pct_id.png", "Mean %ID over time by species and group"),
                        ("curves_per_region.png", "Individual curves per region")):
        if name in figures:
            b64 = base64.b64encode(figures[name]).decode()
            parts.append(f"<h2>{e(title)}</h2><img alt='{e(name)}' src='data:image/png;base64,{b64}'>")
    parts.append("<h2>Quality control per study</h2>")
    parts.append(f"<p class='note'>Time points: the cohort's usual count is {_fmt(usual)}; 'missing' is how many "
                 "fewer a study has. Mass balance: largest |Σ region %ID + outside − field of view| as % of the "
                 f"field of view (flagged above {_MASS_BALANCE_TOL_PCT:g} %). Unaccounted: the injected activity "
                 "(decay-corrected) found neither in the field of view nor in the removed activity, %ID, at the "
                 "time point farthest from 0 (flagged above the study's own threshold, default "
                 f"{DEFAULT_THRESHOLD_PCT_ID:g} %ID). Registration: "
                 "lowest normalised cross-correlation of the registered CTs, when registration ran.</p>")
    qrows = qc.to_dict("records")
    parts.append(_html_table(
        qrows, ["study", "species", "group", "status", "timepoints", "missing_timepoints", "mass_balance_pct",
                "unaccounted_pct_id", "unaccounted_threshold_pct_id", "registration_ncc_min", "warnings"],
        flag=lambda r: r["status"] == "failed" or (r["missing_timepoints"] or 0) > 0
        or (r["mass_balance_pct"] or 0) > _MASS_BALANCE_TOL_PCT
        or abs(r["unaccounted_pct_id"] or 0) > r["unaccounted_threshold_pct_id"]))
    failed = [r for r in qrows if r["status"] == "failed"]
    if failed:
        parts.append("<h2>Failures</h2>")
        if any(r["stale"] for r in failed):
            parts.append("<p>A failed study marked stale kept its earlier result: its rows stay in "
                         "<code>cohort.csv</code> with <code>stale</code> true, describing the inputs of that "
                         "earlier run, and are left out of the statistics below.</p>")
        parts.append(_html_table(failed, ["study", "stale", "reason"]))
    if len(stats):
        parts.append("<h2>Cohort statistics</h2>")
        parts.append(_html_table(stats.to_dict("records"),
                                 ["cohort", "region", "timepoint", "n", "time_h", "pct_id_mean", "pct_id_sd"]))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


_COHORT_FILES = ("cohort.csv", "cohort.parquet", "cohort_stats.csv", "qc.csv", "cohort_report.html",
                 "figures/mean_pct_id.png", "figures/curves_per_region.png")


def write_cohort(summary, *, report: bool = True) -> dict[str, Path]:
    """Write ``cohort.csv``, ``cohort.parquet``, ``cohort_stats.csv``, ``qc.csv``, ``failures.csv``,
    ``batch.json`` and (``report=True``) ``cohort_report.html`` with ``figures/*.png``.

    When no study has a result (none succeeded, none kept a stale earlier
    result) there is no cohort: only ``failures.csv`` and ``batch.json`` are
    written, and cohort files left by an earlier run are removed.
    """
    import dataclasses

    import pandas as pd

    out = Path(summary.out_dir)
    outputs: dict[str, Path] = {}
    fails = pd.DataFrame([{"study": o.study, "reason": o.reason, "error_type": o.error_type, "log": o.log,
                           "stale": o.stale} for o in summary.failed],
                         columns=["study", "reason", "error_type", "log", "stale"])
    with atomic_file_set(out) as path:  # the cohort files are replaced together, after all are written
        fails.to_csv(path("failures.csv"), index=False)
        outputs["failures.csv"] = out / "failures.csv"
        Path(path("batch.json")).write_text(json.dumps(
            {"counts": summary.counts(), "studies": [dataclasses.asdict(o) for o in summary.outcomes]},
            indent=2, default=str) + "\n", encoding="utf-8")
        outputs["batch.json"] = out / "batch.json"
        if any(o.out_dir for o in summary.outcomes):
            table = cohort_table(summary)
            table.to_csv(path("cohort.csv"), index=False, float_format="%.9g")
            table.to_parquet(path("cohort.parquet"), index=False)
            stats = cohort_stats(table)
            stats.to_csv(path("cohort_stats.csv"), index=False, float_format="%.9g")
            qc, usual = qc_table(summary, table)
            qc.to_csv(path("qc.csv"), index=False, float_format="%.9g")
            outputs.update({n: out / n for n in ("cohort.csv", "cohort.parquet", "cohort_stats.csv", "qc.csv")})
            if report:
                figures = _figures(table, stats)
                for name, data in figures.items():
                    Path(path(f"figures/{name}")).write_bytes(data)
                    outputs[f"figures/{name}"] = out / "figures" / name
                Path(path("cohort_report.html")).write_text(
                    cohort_report(summary, table, stats, qc, usual, figures), encoding="utf-8")
                outputs["cohort_report.html"] = out / "cohort_report.html"
    for name in _COHORT_FILES:  # left by an earlier run, no longer describing the results
        if name not in outputs:
            (out / name).unlink(missing_ok=True)
    return outputs
