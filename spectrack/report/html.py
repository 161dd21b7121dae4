"""The self-contained HTML page of the study report.

Inline CSS, figures embedded as base64 PNG, no scripts and no external
resources: the file can be mailed, archived or opened offline.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import math
from pathlib import Path

import numpy as np

from .tables import (MASS_BALANCE_TOL_PCT, METHOD_SENTENCES, inputs_summary, kinetics_summary, mass_balance,
                     ordered_rows)

__all__ = ["render_html", "fmt", "fmt_pct"]

e = html.escape

#: Kinetics rows whose AUC is extrapolated beyond the last scan by more than this share are flagged.
TAIL_FLAG = 0.2

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;margin:1.5em auto;
max-width:1320px;padding:0 1.5em;color:#1d1d1d;line-height:1.4}
h1{font-size:1.6em;margin-bottom:0.2em}h2{font-size:1.3em;border-bottom:2px solid #d8dee6;padding-bottom:0.2em;
margin-top:1.8em}h3{font-size:1.05em;margin:1.2em 0 0.3em}
table{border-collapse:collapse;font-size:13px;margin:0.4em 0 1.2em}
td,th{border:1px solid #cfd5dc;padding:3px 8px;text-align:right;vertical-align:top}
th{background:#eef2f6;font-weight:600}td.l,th.l{text-align:left}
tr.group td{background:#f6f8fa}tr.total td{background:#eef2f6;font-weight:600}
tr.flag td{background:#fde8e1}.src{color:#555;font-size:12px}td .src{display:block;text-align:left;
max-width:30em}
.note{color:#4a4a4a;font-size:13px;max-width:1100px}.ok{color:#1b7f3b;font-weight:600}
.bad{color:#b3261e;font-weight:600}.warn{background:#fff6df;border-left:4px solid #e6a700;padding:0.5em 1em;
margin:0.5em 0 1em;font-size:14px}.warn li{margin:0.2em 0}
img{max-width:100%;height:auto;border:1px solid #e3e7eb;margin:0.3em 0 0.8em}
nav{background:#f6f8fa;border:1px solid #e3e7eb;padding:0.5em 1em;font-size:14px}
nav a{margin-right:1.1em;color:#0b5cad;text-decoration:none}
code{font-size:12px;background:#f2f4f7;padding:0 3px;word-break:break-all}
details{margin:0.3em 0 0.6em}summary{cursor:pointer;font-weight:600;font-size:14px}
table.tp{min-width:980px}.kv th{text-align:left;width:13em}.kv td{text-align:left}table.kv{min-width:60%}
.kv td code{word-break:normal;overflow-wrap:anywhere}
"""


# ------------------------------------------------------------------ formatting
def _finite(v) -> bool:
    try:
        return v is not None and not isinstance(v, bool) and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def fmt(v, sig: int = 4) -> str:
    """A number with ``sig`` significant digits (no exponent between 1e-3 and 1e6), '—' if missing.

    Examples
    --------
    >>> fmt(74.0), fmt(6.0067), fmt(0.000123), fmt(float("nan"))
    ('74', '6.007', '0.000123', '—')
    """
    if v is None or isinstance(v, bool):
        return "—" if v is None else str(v)
    if isinstance(v, str):
        return v
    if not _finite(v):
        if isinstance(v, (float, np.floating)) and math.isinf(v):
            return "∞" if v > 0 else "−∞"
        return "—"
    v = float(v)
    if v == 0:
        return "0"
    if 1e-4 <= abs(v) < 1e6:
        return f"{v:.{sig}g}" if abs(v) < 10 ** sig else f"{v:.0f}"
    return f"{v:.{sig - 1}e}"


def fmt_pct(v) -> str:
    """%ID with three decimals (tiny values with two significant digits).

    Examples
    --------
    >>> fmt_pct(45.10533), fmt_pct(0.00004), fmt_pct(0.0)
    ('45.105', '4e-05', '0.000')
    """
    if not _finite(v):
        return "—"
    v = float(v)
    if v == 0 or abs(v) >= 0.001:
        return f"{v:.3f}"
    return f"{v:.2g}"


def _fixed(v, decimals: int, sign: bool = False) -> str:
    if not _finite(v):
        return "—"
    v = float(v)
    if round(v, decimals) == 0:
        v = 0.0
    return f"{v:+.{decimals}f}" if sign else f"{v:.{decimals}f}"


def _text(v) -> str:
    """A cell's text; missing (None, NaN) gives ''."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v)


def _value(d):
    """``value`` of a ``{"value", "source"}`` dict (or the thing itself)."""
    return d.get("value") if isinstance(d, dict) else d


def _source(d):
    return d.get("source") if isinstance(d, dict) else None


def _table(head: list[str], rows: list[list], *, left: int = 1, row_classes: list[str] | None = None,
           cls: str = "") -> str:
    """HTML table; cells are already escaped strings; the first ``left`` columns are left-aligned."""
    th = "".join(f"<th class='l'>{h}</th>" if i < left else f"<th>{h}</th>" for i, h in enumerate(head))
    body = []
    for n, r in enumerate(rows):
        rc = f" class='{row_classes[n]}'" if row_classes and row_classes[n] else ""
        tds = "".join(f"<td class='l'>{c}</td>" if i < left else f"<td>{c}</td>" for i, c in enumerate(r))
        body.append(f"<tr{rc}>{tds}</tr>")
    c = f" class='{cls}'" if cls else ""
    thead = f"<thead><tr>{th}</tr></thead>" if any(head) else ""
    return f"<table{c}>{thead}<tbody>{''.join(body)}</tbody></table>"


def _img(figures: dict, name: str, alt: str) -> str:
    data = figures.get(name)
    if not data:
        return ""
    b64 = base64.b64encode(data).decode("ascii")
    return f"<img alt='{e(alt)}' src='data:image/png;base64,{b64}'>"


# ------------------------------------------------------------------ sections
def _study_section(data) -> str:
    meta = data.metadata
    dose = meta.get("dose") or {}
    st = meta.get("study") or {}
    tps = st.get("timepoints") or []
    em_meta = ((tps[0].get("emission") or {}).get("meta") or {}) if tps else {}
    params = (meta.get("provenance") or {}).get("parameters") or {}
    table = data.table
    subject = st.get("subject") or (str(table["subject"].iloc[0]) if "subject" in table and len(table) else "—")
    species = params.get("species") or (str(table["species"].iloc[0]) if "species" in table and len(table)
                                        else None)
    rows = [
        ("Subject", e(str(subject)), ""),
        ("Species", e(str(species)) if species else "—", "settings (species)" if species else "not given"),
        ("Tracer", e(str(_value(em_meta.get("tracer")) or "—")), e(str(_source(em_meta.get("tracer")) or ""))),
    ]
    if params.get("group"):
        rows.append(("Group", e(str(params["group"])), "settings (group)"))
    if params.get("dose_mg") is not None:
        rows.append(("Drug dose", f"{fmt(params['dose_mg'])} mg", "settings (dose_mg)"))
    rn = dose.get("radionuclide")
    hl = dose.get("half_life_h")
    inj = dose.get("injected_activity_mbq")
    t_inj = dose.get("injection_time")
    rows += [
        ("Radionuclide", e(str(_value(rn) or "—")), e(str(_source(rn) or ""))),
        ("Physical half-life", f"{fmt(_value(hl), 6)} h" if _finite(_value(hl)) else "—",
         e(str(_source(hl) or ""))),
        ("Injected activity", f"{fmt(_value(inj), 5)} MBq" if _finite(_value(inj)) else "—",
         e(str(_source(inj) or ""))),
        ("Injection time", e(str(_value(t_inj) or "—").replace("T", " ")), e(str(_source(t_inj) or ""))),
        ("Time points", str(table["timepoint"].nunique()) if len(table) else "0",
         ", ".join(f"{t:.2f} h" for t in sorted(table["time_h"].astype(float).unique()))),
        ("Study path", f"<code>{e(str(st.get('path') or '—'))}</code>", ""),
        ("Label map", f"<code>{e(str((meta.get('labels') or {}).get('source') or '—'))}</code>", ""),
    ]
    out = ["<h2 id='study'>Study</h2>",
           _table(["", "value", "from"], [[f"<b>{a}</b>", b, f"<span class='src'>{c}</span>"] for a, b, c in rows],
                  left=3, cls="kv")]
    notes = list(dose.get("notes") or [])
    if notes:
        out.append("<p class='note'>Dose notes: " + "; ".join(e(str(n)) for n in notes) + "</p>")
    warnings = list(dict.fromkeys([str(w) for w in (meta.get("warnings") or [])]
                                  + [str(w) for w in (st.get("warnings") or [])]
                                  + [f"neuraxis profile: {w}" for w in (meta.get("neuraxis_warnings") or [])]))
    if warnings:
        out.append(f"<div class='warn'><b>Warnings ({len(warnings)})</b><ul>"
                   + "".join(f"<li>{e(w)}</li>" for w in warnings) + "</ul></div>")
    else:
        out.append("<p class='note'>No warnings.</p>")
    out.append(_calibration_section(data))
    out.append(_registration_section(data))
    return "\n".join(p for p in out if p)


def _registration_section(data) -> str:
    reg = data.metadata.get("registration")
    if not isinstance(reg, dict) or not reg.get("timepoints"):
        return ""
    rows = []
    for r in reg["timepoints"]:
        tr = r.get("translation_mm") or []
        rot = r.get("rotation_deg") or []
        rows.append([str(r.get("index", "")), fmt(r.get("quality_ncc"), 3),
                     ", ".join(fmt(v, 3) for v in tr) or "—", ", ".join(fmt(v, 3) for v in rot) or "—",
                     f"<span class='src'>{e(_text(r.get('stop_condition')))}</span>"])
    return (f"<h3>Registration</h3><p class='note'>Every time point registered to time point "
            f"{e(str(reg.get('reference', '—')))} ({e(str(reg.get('mode', '')))}); quality is the normalised "
            "cross-correlation of the registered CTs.</p>"
            + _table(["time point", "quality (NCC)", "translation x, y, z (mm)", "rotation (deg)", "stopped"], rows))


def _calibration_section(data) -> str:
    cals = data.metadata.get("calibration") or []
    tps = (data.metadata.get("study") or {}).get("timepoints") or []
    times = data.table.groupby("timepoint")["time_h"].first().to_dict() if len(data.table) else {}
    rows, srcs = [], []
    for n, c in enumerate(cals):
        tp = tps[n] if n < len(tps) else {}
        idx = tp.get("index", n)
        dur = c.get("duration_s")
        sens = c.get("sensitivity_cps_per_mbq")
        src = [f"duration from {_source(dur)}" if _source(dur) else "", f"sensitivity from {_source(sens)}"
               if _source(sens) else ""] + [str(x) for x in (c.get("notes") or [])]
        srcs.append("; ".join(s for s in src if s))
        rows.append([str(idx), e(str(tp.get("acquisition_start") or "—")).replace("T", " "),
                     fmt(times.get(idx), 4), e(str(c.get("method", "—"))), fmt(_value(dur)),
                     fmt(_value(sens)), fmt(c.get("in_frame_factor"), 5),
                     fmt(c.get("mbq_per_voxel_per_unit"), 5)])
    if not rows:
        return "<p class='note'>No calibration recorded.</p>"
    head = ["time point", "scan start", "time after injection (h)", "method", "duration (s)",
            "sensitivity (cps/MBq)", "in-frame factor", "MBq per voxel per image unit"]
    common = len(set(srcs)) == 1
    if not common:
        head.append("from / notes")
        for r, s in zip(rows, srcs):
            r.append(f"<span class='src'>{e(s)}</span>")
    return ("<h3>Calibration per time point</h3>" + _table(head, rows, left=2)
            + "<p class='note'>" + (f"All time points: {e(srcs[0])}. " if common and srcs[0] else "")
            + "Activity at scan start = image value × MBq per voxel per image unit (which includes the in-frame "
              "decay factor for images that integrate over the acquisition).</p>")


def _summary_section(data) -> str:
    df = data.table[data.table["kind"].astype(str).isin(["region", "group", "outside", "fov"])] \
        if "kind" in data.table else data.table
    if df.empty:
        return ""
    df = ordered_rows(df)
    times = sorted(df["time_h"].astype(float).unique())
    regions = list(dict.fromkeys(df["region"].astype(str)))
    kinds = dict(zip(df["region"].astype(str), df["kind"].astype(str))) if "kind" in df else {}
    piv = {(str(r), float(t)): v for r, t, v in zip(df["region"], df["time_h"].astype(float), df["pct_id"])}
    rows, classes = [], []
    for r in regions:
        rows.append([e(r)] + [fmt_pct(piv.get((r, t))) for t in times])
        k = kinds.get(r, "region")
        classes.append("group" if k == "group" else "total" if k in ("fov", "outside") else "")
    return ("<h2 id='summary'>%ID per region and time point</h2>"
            "<p class='note'>%ID decay-corrected to the injection time. Groups (shaded) are sums of their regions; "
            "<i>outside_regions</i> is the field of view minus all regions.</p>"
            + _table(["region"] + [f"{t:.2f} h" for t in times], rows, row_classes=classes))


def _mass_balance_section(data) -> str:
    """The injected activity against the field of view plus what left the body, per scan; then the table's sums."""
    from ..quantification.balance import DEFAULT_THRESHOLD_PCT_ID, mass_balance_table

    stored = (data.metadata or {}).get("mass_balance") or {}
    if stored.get("per_timepoint") is not None:
        import pandas as pd

        bal = pd.DataFrame(stored["per_timepoint"])
        threshold = float(stored.get("threshold_pct_id", DEFAULT_THRESHOLD_PCT_ID))
    else:  # results written before the mass balance was stored: no removed activity known
        bal = mass_balance_table(data.table)
        threshold = bal.attrs["threshold_pct_id"]
    removed = stored.get("removed") or None
    rows, classes = [], []
    for r in bal.to_dict("records"):
        rows.append([str(r["timepoint"]), fmt(r["time_h"], 4), fmt_pct(r["fov_pct_id"]), fmt_pct(r["regions_pct_id"]),
                     fmt_pct(r["removed_pct_id"]), fmt_pct(r["accounted_pct_id"]),
                     _fixed(r["unaccounted_pct_id"], 2, sign=True),
                     "<span class='bad'>check</span>" if r["flag"] else "<span class='ok'>ok</span>"])
        classes.append("flag" if r["flag"] else "")
    n_flag = int(bal["flag"].sum()) if len(bal) else 0
    verdict = (f"<span class='bad'>{n_flag} time point(s) with more than {threshold:g} %ID unaccounted for</span>"
               if n_flag else f"<span class='ok'>every time point within {threshold:g} %ID</span>")
    if removed:
        src = (f"Removed: {len(removed.get('rows', []))} collection(s) from {e(Path(removed['path']).name)} "
               f"({fmt_pct(removed.get('total_pct_id'))} %ID in all, decay-corrected), each counted from the scans "
               "after it.")
    else:
        src = ("No removed activity was given (--removed FILE: urine, excreta, CSF samples, leakage): whatever left "
               "the body shows as unaccounted for.")
    mb = mass_balance(data.table)  # the table's own sums: regions + outside_regions = field of view
    n_sum = int(mb["flag"].sum()) if len(mb) else 0
    sums = (f"<span class='bad'>{n_sum} time point(s) flagged</span>: the regions plus <i>outside_regions</i> differ "
            f"from the field of view by more than {MASS_BALANCE_TOL_PCT:g} %, or a row is missing" if n_sum
            else "<span class='ok'>the regions plus <i>outside_regions</i> add up to the field of view at every "
                 "time point</span>")
    return ("<h2 id='balance'>Mass balance</h2>"
            "<p class='note'>Where the injected activity is. All values are %ID decay-corrected to injection, so the "
            "injected activity decay-corrected to each scan is 100 %ID. Accounted for = field of view + activity "
            f"known to have left the body before the scan; unaccounted for = 100 − accounted. {src} {verdict}.</p>"
            + _table(["time point", "time (h)", "field of view (%ID)", "Σ regions (%ID)", "removed (%ID)",
                      "accounted for (%ID)", "unaccounted for (%ID)", "check"], rows, row_classes=classes)
            + f"<p class='note'>Table sums: {sums}.</p>")


def _timepoint_tables(data) -> str:
    df = ordered_rows(data.table)
    has_int = {"pct_id_lo", "pct_id_hi"} <= set(df.columns)
    has_pvc = "pct_id_pvc" in df.columns
    out = ["<h2 id='timepoints'>Regions per time point</h2>",
           "<p class='note'>Volume on the SPECT grid; activity at scan start (physical); %ID decay-corrected to "
           "injection" + (" with its 95 % interval" if has_int else "") + "; %ID at scan start without decay "
           "correction; %ID/mL = decay-corrected %ID per mL of region"
           + ("; PVC: partial-volume (GTM) corrected %ID" if has_pvc else "") + ".</p>"]
    if has_int and "interval_method" in df:
        methods = [m for m in dict.fromkeys(df["interval_method"].dropna().astype(str)) if m]
        if methods:
            out.append("<p class='note'>Intervals: " + "<br>".join(e(m) for m in methods) + "</p>")
    if has_pvc and "pvc_method" in df:
        methods = [m for m in dict.fromkeys(df["pvc_method"].dropna().astype(str)) if m]
        if methods:
            out.append("<p class='note'>Partial-volume correction: " + "<br>".join(e(m) for m in methods) + "</p>")
    head = ["region", "kind", "volume (mL)", "activity (MBq)", "%ID" + (" [95 % interval]" if has_int else ""),
            "%ID not decay-corrected", "%ID/mL"] + (["PVC %ID"] if has_pvc else [])
    for tp, d in df.groupby("timepoint", sort=True):
        t = float(d["time_h"].iloc[0])
        start = str(d["acquisition_start"].iloc[0]) if "acquisition_start" in d else ""
        dur = d["duration_s"].iloc[0] if "duration_s" in d else None
        rows, classes = [], []
        for r in d.to_dict("records"):
            pid = fmt_pct(r["pct_id"])
            if has_int and _finite(r.get("pct_id_lo")) and _finite(r.get("pct_id_hi")):
                pid += f" [{fmt_pct(r['pct_id_lo'])} – {fmt_pct(r['pct_id_hi'])}]"
            row = [e(str(r["region"])), e(str(r.get("kind", ""))), fmt(r.get("volume_ml")),
                   fmt(r.get("activity_mbq")), pid, fmt_pct(r.get("pct_id_uncorrected")),
                   fmt(r.get("pct_id_per_ml"))]
            if has_pvc:
                row.append(fmt_pct(r.get("pct_id_pvc")))
            rows.append(row)
            k = str(r.get("kind", "region"))
            classes.append("group" if k == "group" else "total" if k in ("fov", "outside") else "")
        dur_txt = f", {fmt(dur)} s" if _finite(dur) else ""
        out.append(f"<details open><summary>Time point {e(str(tp))}: {t:.2f} h after injection "
                   f"(scan start {e(start)}{dur_txt})</summary>"
                   + _table(head, rows, left=2, row_classes=classes, cls="tp") + "</details>")
    return "\n".join(out)




def _tac_section(data, figures: dict, tac_names: dict) -> str:
    out = ["<h2 id='curves'>Time-activity curves</h2>"]
    notes = list(data.metadata.get("kinetics_method") or [])
    has_fit = data.fits is not None and len(data.fits) > 0
    out.append("<p class='note'>%ID decay-corrected to injection, one panel per region"
               + ("; error bars: 95 % intervals" if {"pct_id_lo", "pct_id_hi"} <= set(data.table.columns) else
                  "; no intervals computed")
               + ("; red line: the model selected for the decay-corrected %ID curve (the simplest within 2 AICc "
                  "units among those with AICc defined and R² ≥ 0.9), with its R²; no line when no model "
                  "qualifies" if has_fit else "; no fitted curves (kinetics not available)")
               + ". Thyroid, stomach and salivary glands take up free pertechnetate: rising values there mean "
                 "label coming off.</p>")
    if notes:
        out.append("<p class='note'>Kinetics notes: " + "; ".join(e(str(n)) for n in notes) + "</p>")
    for group, name in tac_names.items():
        out.append(_img(figures, name, f"time-activity curves: {group}"))
    return "\n".join(out)


def _kinetics_section(data) -> str:
    out = ["<h2 id='kinetics'>Kinetics</h2>"]
    if data.metrics is None or len(data.metrics) == 0:
        notes = list(data.metadata.get("kinetics_method") or [])
        out.append("<p class='note'>No kinetics: " + ("; ".join(e(str(n)) for n in notes) if notes else
                                                      "not computed for these results") + ".</p>")
        return "\n".join(out)
    summ = kinetics_summary(data.metrics, data.fits)
    out.append("<p class='note'><b>Methods.</b></p><ul class='note'>"
               + "".join(f"<li><b>{e(a)}</b>: {e(b)}</li>" for a, b in METHOD_SENTENCES) + "</ul>")
    if summ:
        cols = [c for c in summ[0] if c not in ("region", "model", "quality", "flags", "intervals")]
        has_q = any(r["quality"] for r in summ)
        has_f = any(r.get("flags") for r in summ)
        has_iv = any(r.get("intervals") for r in summ)

        def cell(r, c):
            lo, hi = r.get("intervals", {}).get(c, (math.nan, math.nan))
            if not _finite(r[c]) or (math.isnan(lo) and math.isnan(hi)):
                return fmt(r[c], 4)
            return f"{fmt(r[c], 4)}<br><span class='src'>[{fmt(lo, 3)}, {fmt(hi, 3)}]</span>"

        rows = [[e(r["region"]), e(str(r["model"]))] + [cell(r, c) for c in cols]
                + ([f"<span class='src'>{e(r['quality'])}</span>"] if has_q else [])
                + ([f"<span class='src'>{e(r.get('flags', ''))}</span>"] if has_f else []) for r in summ]
        tail = "AUC tail share"
        classes = ["flag" if _finite(r.get(tail)) and float(r[tail]) > TAIL_FLAG else "" for r in summ]
        n_flag = sum(1 for c in classes if c)
        out.append("<p class='note'>%ID curves. Cmax, Tmax, AUC, MRT and T½ biological from the decay-corrected "
                   "curve; T½ effective and the time-integrated activity (TIA) from the physical curve. Every "
                   "number's method is in the per-region tables below and in <code>kinetics.csv</code>. "
                   "— : not estimable or withheld (the method says why, e.g. no decline after the peak, or an "
                   "area beyond the physically possible). TIAC: time-integrated activity coefficient (MIRD "
                   "residence time). Flags: why a value is an estimate, a bound or withheld."
                   + (" Under a value: its 95 % interval [lo, hi]." if has_iv else "")
                   + (" Fit check: 'ok', or why the fit is not used to extrapolate." if has_q else "")
                   + (f" <span class='bad'>{n_flag} region(s) flagged</span>: more than {TAIL_FLAG:.0%} of the AUC "
                      "is extrapolated beyond the last scan, so AUC, MRT and the half-lives rest on the fitted "
                      "terminal rate rather than on data (a common non-compartmental rule of thumb)."
                      if n_flag else "") + "</p>")
        out.append(_table(["region", "selected model"] + [e(c) for c in cols] + (["fit check"] if has_q else [])
                          + (["flags"] if has_f else []), rows, left=2, row_classes=classes))
    def by_region(frame) -> dict[str, list[dict]]:
        """The rows (dicts) of each region in table order: one conversion of the table, not one per region."""
        rows_of: dict[str, list[dict]] = {}
        for region, r in zip(frame["region"].astype(str), frame.to_dict("records")):
            rows_of.setdefault(region, []).append(r)
        return rows_of

    fits = data.fits
    fit_rows = by_region(fits) if fits is not None and len(fits) and "region" in fits else {}
    for region, metric_rows in by_region(data.metrics).items():
        rows = [[e(str(r.get("quantity", ""))), e(str(r["metric"])), e(str(r.get("correction", ""))),
                 fmt(r["value"], 5), e(str(r.get("unit", ""))), f"<span class='src'>{e(str(r.get('method', '')))}"
                 "</span>"] for r in metric_rows]
        body = _table(["quantity", "metric", "correction", "value", "unit", "method"], rows, left=3)
        if region in fit_rows:
            frows = []
            for r in fit_rows[region]:
                from ..kinetics.fits import MODELS

                pn = MODELS[r["model"]].param_names if r.get("model") in MODELS else ()
                ptxt = ", ".join(f"{p} = {fmt(r.get(p), 4)} ± {fmt(r.get(p + '_se'), 2)}" for p in pn)
                sel = str(r.get("selected")).lower() in ("true", "1")
                frows.append([e(str(r.get("quantity", ""))), e(str(r.get("correction", ""))),
                              e(str(r.get("model"))) + (" ✔" if sel else ""), e(ptxt),
                              fmt(r.get("r_squared"), 3), fmt(r.get("aicc"), 4), fmt(r.get("aic"), 4),
                              fmt(r.get("weight"), 3), "yes" if str(r.get("converged")).lower() == "true"
                              else "no", f"<span class='src'>{e(_text(r.get('quality')))}</span>"])
            body += ("<p class='note'>Candidate fits (✔ selected; parameter ± standard error; rates per h):</p>"
                     + _table(["quantity", "correction", "model", "parameters", "R²", "AICc", "AIC",
                               "Akaike weight", "converged", "fit check"], frows, left=4))
        out.append(f"<details><summary>{e(region)}: every metric and fit</summary>{body}</details>")
    return "\n".join(out)


def _mip_section(data, figures: dict) -> str:
    out = ["<h2 id='mips'>Maximum-intensity projections</h2>"]
    if "mip.png" in figures:
        out.append("<p class='note'>" + e(data.mip_caption or "") + "</p>")
        out.append(_img(figures, "mip.png", "maximum-intensity projections"))
    if data.mip_note:
        out.append(f"<p class='note'><b>Note:</b> {e(data.mip_note)}</p>")
    return "\n".join(out)


def _profile_section(data, figures: dict) -> str:
    out = ["<h2 id='profile'>Neuraxis profile</h2>"]
    if "profile.png" in figures:
        out.append(_img(figures, "profile.png", "neuraxis profile"))
    elif data.profile is None:
        out.append("<p class='note'>No neuraxis profile for this study.</p>")
    else:
        out.append("<p class='note'>The neuraxis profile could not be drawn (no distance / value columns).</p>")
    spread = (data.metadata or {}).get("neuraxis_spread")
    if spread and spread.get("per_timepoint"):
        from ..regions.neuraxis import SPREAD_COLUMNS

        defs = spread.get("definitions") or {}
        titles = {"timepoint": "time point", "time_h": "time (h)", "canal_pct_id": "canal (%ID)",
                  "rostral_of_lumbar": "share above the lumbar level", "rostral_of_thoracic": "share in the cervical "
                  "canal", "leading_edge_mm": "leading edge above the injection (mm)",
                  "skull_base_pct_id": "at the skull base (%ID)"}
        cols = [c for c in SPREAD_COLUMNS if c in titles]
        rows = [[e(fmt(r.get(c), 4)) for c in cols] for r in spread["per_timepoint"]]
        arr = spread.get("arrival_time_h")
        arr_txt = ("not reached" if arr is None or arr != arr else
                   (f"&le; {fmt(arr, 3)} h (already at the first scan)" if spread.get("arrival_before_first_scan")
                    else f"{fmt(arr, 3)} h"))
        rate = spread.get("spread_rate_mm_per_h")
        rate_txt = "not measurable (fewer than two scans before the plateau)" if rate is None or rate != rate \
            else f"{fmt(rate, 3)} mm/h"
        items = "".join(f"<li><b>{e(titles.get(k, k.replace('_', ' ')))}</b>: {e(v)}</li>" for k, v in defs.items())
        out.append("<h3>Rostral spread</h3>"
                   + _table([e(titles[c]) for c in cols], rows, left=0)
                   + f"<p>Arrival at the skull base: <b>{arr_txt}</b>; rostral spread rate: <b>{rate_txt}</b>.</p>"
                   + f"<ul class='note'>{items}</ul>")
    return "\n".join(out)


def _provenance_section(data) -> str:
    prov = data.metadata.get("provenance") or {}
    inp = inputs_summary(prov.get("inputs_sha256") or {})
    rows = [("spectrack version", e(str(prov.get("spectrack_version", "—")))),
            ("created", e(str(prov.get("created", "—")).replace("T", " "))),
            ("command", f"<code>{e(' '.join(prov.get('command') or []) or '—')}</code>"),
            ("Python", e(str(prov.get("python", "—")))), ("platform", e(str(prov.get("platform", "—")))),
            ("packages", e(", ".join(f"{k} {v}" for k, v in (prov.get("packages") or {}).items() if v)))]
    out = ["<h2 id='provenance'>Provenance</h2>",
           _table(["", ""], [[f"<b>{a}</b>", b] for a, b in rows], left=2, cls="kv")]
    params = prov.get("parameters") or {}
    if params:
        set_rows = [[e(k), f"<code>{e(json.dumps(v, default=str))}</code>"] for k, v in params.items()
                    if v not in (None, {}, [])]
        unset = [k for k, v in params.items() if v in (None, {}, [])]
        out.append("<h3>Parameters</h3>" + _table(["setting", "value"], set_rows, left=2))
        if unset:
            out.append("<p class='note'>Not set (headers or defaults used): " + ", ".join(e(k) for k in unset)
                       + ".</p>")
    folders = "; ".join(f"<code>{e(k)}</code> ({v} file{'s' if v != 1 else ''})" for k, v in inp["folders"].items())
    out.append(f"<h3>Inputs</h3><p class='note'>{inp['n_files']} input file(s) in {folders or '—'}. Combined "
               f"SHA-256 (of the sorted path and hash lines): <code>{e(str(inp['combined_sha256'] or '—'))}</code>"
               "</p>")
    if inp["files"]:
        rows = [[f"<code>{e(p)}</code>", f"<code>{e(h)}</code>"] for p, h in inp["files"]]
        out.append(f"<details><summary>SHA-256 of each input ({inp['n_files']})</summary>"
                   + _table(["file", "sha256"], rows, left=2) + "</details>")
    return "\n".join(out)


def render_html(data, figures: dict[str, bytes], tac_names: dict[str, str]) -> str:
    """The report page.

    Parameters
    ----------
    data : ReportData
    figures : dict of str to bytes
        PNG bytes by file name (``mip.png``, ``profile.png``, ``tac_*.png``).
    tac_names : dict of str to str
        Time-activity figure group -> file name, in display order.
    """
    from .._version import __version__

    st = data.metadata.get("study") or {}
    subject = st.get("subject") or (str(data.table["subject"].iloc[0]) if "subject" in data.table and
                                    len(data.table) else "study")
    toc = [("study", "Study"), ("summary", "%ID summary"), ("balance", "Mass balance"),
           ("curves", "Time-activity curves"), ("kinetics", "Kinetics"), ("mips", "Projections"),
           ("profile", "Neuraxis profile"), ("timepoints", "Regions per time point"), ("provenance", "Provenance")]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>spectrack report: {e(str(subject))}</title><style>{_CSS}</style></head><body>",
        f"<h1>spectrack report: {e(str(subject))}</h1>",
        f"<p class='note'>Written {dt.datetime.now():%Y-%m-%d %H:%M} by spectrack {e(__version__)}"
        + (f" from the results in <code>{e(str(data.source))}</code>" if data.source else "") + ".</p>",
        "<nav>" + "".join(f"<a href='#{a}'>{e(b)}</a>" for a, b in toc) + "</nav>",
        _study_section(data),
        _summary_section(data),
        _mass_balance_section(data),
        _tac_section(data, figures, tac_names),
        _kinetics_section(data),
        _mip_section(data, figures),
        _profile_section(data, figures),
        _timepoint_tables(data),
        _provenance_section(data),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"
