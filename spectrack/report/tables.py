"""Tables of the study report, computed from the region table, kinetics and provenance."""

from __future__ import annotations

import hashlib
import math
from pathlib import PurePath

__all__ = ["MASS_BALANCE_TOL_PCT", "mass_balance", "ordered_rows", "kinetics_summary", "inputs_summary",
           "METHOD_SENTENCES"]

#: A time point is flagged when the regions plus outside_regions differ from the
#: field of view by more than this percentage of the field of view.
MASS_BALANCE_TOL_PCT = 0.5

_KIND_ORDER = {"region": 0, "group": 1, "outside": 2, "fov": 3}


def ordered_rows(table):
    """Rows sorted by time point, then regions (label order), groups, outside, field of view."""
    df = table.copy()
    df["_k"] = df["kind"].astype(str).map(lambda k: _KIND_ORDER.get(k, 4)) if "kind" in df else 0
    df["_l"] = df["label"] if "label" in df else 0
    df = df.sort_values(["timepoint", "_k", "_l"], kind="stable")
    return df.drop(columns=["_k", "_l"])


def mass_balance(table):
    """Mass balance per time point: do the regions and the outside add up to the field of view?

    For each time point: ``regions_pct_id`` (sum of ``pct_id`` over rows of kind
    ``region``; groups are sums of regions and left out), ``outside_pct_id``,
    ``sum_pct_id`` (the two added), ``fov_pct_id``, ``discrepancy_pct_id``
    (sum minus field of view, in %ID), ``discrepancy_pct_of_fov`` (its absolute
    value as % of the field of view), ``regions_share_of_fov_pct`` (what the
    regions cover: their share of the activity in the field of view), and
    ``flag`` (discrepancy above :data:`MASS_BALANCE_TOL_PCT` % of the field of
    view, or a row missing).

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"timepoint": 0, "time_h": 1.0, "kind": ["region", "region", "outside", "fov"],
    ...                   "region": ["a", "b", "outside_regions", "field_of_view"], "pct_id": [40.0, 30, 25, 95]})
    >>> mb = mass_balance(t)
    >>> float(mb.sum_pct_id[0]), float(mb.regions_share_of_fov_pct[0]), bool(mb.flag[0])
    (95.0, 73.6842105263158, False)
    """
    import pandas as pd

    rows = []
    kind = table["kind"].astype(str)
    for tp, d in table.groupby("timepoint", sort=True):
        k = kind.loc[d.index]
        reg = float(d.loc[k == "region", "pct_id"].astype(float).sum())
        has_out = bool((k == "outside").any())
        has_fov = bool((k == "fov").any())
        out = float(d.loc[k == "outside", "pct_id"].astype(float).sum()) if has_out else math.nan
        fov = float(d.loc[k == "fov", "pct_id"].astype(float).sum()) if has_fov else math.nan
        total = reg + (out if has_out else 0.0)
        disc = total - fov if has_fov else math.nan
        rel = abs(disc) / abs(fov) * 100.0 if has_fov and fov != 0 else math.nan
        share = reg / fov * 100.0 if has_fov and fov != 0 else math.nan
        flag = (not has_out) or (not has_fov) or not (rel <= MASS_BALANCE_TOL_PCT)
        rows.append({"timepoint": tp, "time_h": float(d["time_h"].astype(float).iloc[0]),
                     "n_regions": int((k == "region").sum()), "regions_pct_id": reg, "outside_pct_id": out,
                     "sum_pct_id": total, "fov_pct_id": fov, "discrepancy_pct_id": disc,
                     "discrepancy_pct_of_fov": rel, "regions_share_of_fov_pct": share, "flag": bool(flag)})
    return pd.DataFrame(rows, columns=["timepoint", "time_h", "n_regions", "regions_pct_id", "outside_pct_id",
                                       "sum_pct_id", "fov_pct_id", "discrepancy_pct_id", "discrepancy_pct_of_fov",
                                       "regions_share_of_fov_pct", "flag"])


#: (metric, correction, column title) of the kinetics summary, %ID curves.
SUMMARY_METRICS = (
    ("cmax", "decay_corrected", "Cmax (%ID)"),
    ("tmax_h", "decay_corrected", "Tmax (h)"),
    ("auc", "decay_corrected", "AUC 0–∞ (%ID·h)"),
    ("tail_fraction", "decay_corrected", "AUC tail share"),
    ("mrt_h", "decay_corrected", "MRT (h)"),
    ("t_bio_h", "decay_corrected", "T½ biological (h)"),
    ("t_eff_h", "physical", "T½ effective (h)"),
    ("tia", "physical", "TIA 0–∞ (%ID·h)"),
    ("tia_upper_bound", "physical", "TIA upper bound (%ID·h)"),
    ("tiac_h", "physical", "TIAC (h)"),
)
#: the same for the recovery-corrected curves (quantity ``pct_id_pvc``), when present
SUMMARY_METRICS_PVC = (
    ("tia", "physical", "TIA PVC (%ID·h)"),
    ("tiac_h", "physical", "TIAC PVC (h)"),
    ("t_bio_h", "decay_corrected", "T½ biological PVC (h)"),
)

#: one sentence per method, for the report (a pharmacologist's reading of spectrack.kinetics)
METHOD_SENTENCES = (
    ("Between scans", "each interval is integrated linear-up/log-down on the decay-corrected %ID: straight lines "
     "where the curve rises, exponentials where it falls, with physical decay applied exactly inside each "
     "interval for the time-integrated activity (TIA)."),
    ("Before the first scan", "tissues start at 0 %ID at injection; the region holding the injection starts at "
     "its content back-extrapolated from the first two scans (never above 100 %ID)."),
    ("After the last scan", "the curve is extended with its terminal rate only when at least 3 points after the "
     "peak define the terminal phase (a model or a log-linear regression); otherwise the TIA is a lambda_z "
     "estimate from the last two points, and the upper bound (no clearance after the last scan, physical "
     "decay only) is given beside it."),
    ("Model choice", "mono-exponential, uptake-washout, transit (delayed arrival through a chain of compartments, "
     "A·t^a·e^(−kt)) and bi-exponential models compete only when AICc is defined for them (more scans than "
     "parameters + 2) and they describe the data (R² ≥ 0.9); the simplest model within 2 AICc units of the "
     "best is chosen, and a region with no such model gets no fitted line."),
    ("Half-lives", "T½ biological is ln 2 over the terminal rate of the decay-corrected curve and T½ effective "
     "that of the physical curve; neither is given when the curve never declines (or clears no faster than "
     "physical decay), because they are then not measured."),
    ("MRT", "the mean residence time is the moment ratio AUMC/AUC of the decay-corrected curve, the average "
     "time a molecule of drug spends in the region."),
    ("TIAC", "the time-integrated activity coefficient (MIRD residence time, h) is the TIA divided by the "
     "injected activity: the hours the whole injected activity would have to sit in the region to give the "
     "same number of decays."),
    ("Guards", "areas larger than physically possible (100 %ID × the integral of physical decay, i.e. the "
     "whole dose staying in the region forever) are withheld and flagged."),
    ("Intervals", "the 95 % intervals of the areas, TIAC and half-lives come from refitting and reintegrating "
     "Monte Carlo draws of each curve that carry every uncertainty term of the %ID values (counting noise "
     "per scan; calibration, region boundaries and, with --pvc, the PSF width shared by all scans), with the "
     "model fixed at the one chosen for the measured curve; a half-life whose draws do not all clear within "
     "the study has an open upper bound (∞)."),
    ("Recovery correction", "with --pvc every number is also computed on the recovery-corrected (GTM) curves "
     "(quantity pct_id_pvc in kinetics.csv)."),
)


def _metric_rows(frame) -> dict:
    """Region -> (metric, correction) -> position of its first row in ``frame``, for every row at once."""
    out: dict = {}
    for pos, key in enumerate(zip(frame["region"].astype(str), frame["metric"], frame["correction"])):
        out.setdefault(key[0], {}).setdefault(key[1:], pos)
    return out


def kinetics_summary(metrics, fits=None, quantity: str = "pct_id") -> list[dict]:
    """One dict per region: selected model and the key numbers of :data:`SUMMARY_METRICS`
    (and :data:`SUMMARY_METRICS_PVC` when the metrics hold the recovery-corrected curves).

    ``row["intervals"]`` maps a column title to its 95 % interval ``(lo, hi)``
    where the metrics have ``lo``/``hi`` columns and the bounds are not NaN."""
    import pandas as pd

    if metrics is None or len(metrics) == 0:
        return []
    has_q = "quantity" in metrics
    m = metrics[metrics["quantity"].astype(str) == quantity] if has_q else metrics
    pvc = metrics[metrics["quantity"].astype(str) == quantity + "_pvc"] if has_q else m.iloc[:0]
    # rows looked up by position in plain lists: one pass over each table instead of a filter per number
    frames = {}
    for name, frame in (("m", m), ("pvc", pvc)):
        cols = {c: frame[c].tolist() for c in ("value", "lo", "hi") if c in frame}
        frames[name] = (_metric_rows(frame), cols)
    flag_of = {}
    if "flag" in m:
        for region, fl in zip(m["region"].astype(str), m["flag"]):
            flag_of.setdefault(region, []).append(fl)
    selected = {}
    if fits is not None and len(fits):
        from .figures import _selected_fits

        selected = _selected_fits(fits, quantity)
    out = []
    for region in dict.fromkeys(m["region"].astype(str)):
        row: dict = {"region": region}
        iv: dict = {}

        def take(name, metric, corr, title):
            positions, cols = frames[name]
            pos = positions.get(region, {}).get((metric, corr))

            def value(col):
                return math.nan if col not in cols or pos is None else float(cols[col][pos])

            row[title] = value("value")
            lo, hi = value("lo"), value("hi")
            if not (math.isnan(lo) and math.isnan(hi)):
                iv[title] = (lo, hi)

        for metric, corr, title in SUMMARY_METRICS:
            take("m", metric, corr, title)
        if len(pvc):
            for metric, corr, title in SUMMARY_METRICS_PVC:
                take("pvc", metric, corr, title)
        flags = []
        for fl in flag_of.get(region, ()):
            if pd.isna(fl):
                continue
            fl = str(fl)
            if fl and fl not in flags:
                flags.append(fl)
        row["flags"] = "; ".join(flags)
        row["intervals"] = iv
        row["model"] = "—"
        row["quality"] = ""
        f = selected.get(region)
        if f is not None:
            row["model"] = f"{f.get('model')} ({f.get('criterion', '')})"
            q = f.get("quality")
            row["quality"] = "" if q is None or (isinstance(q, float) and math.isnan(q)) else str(q)
        out.append(row)
    return out


def inputs_summary(inputs: dict) -> dict:
    """Collapse ``{path: sha256}``: count, one combined digest, files per folder.

    The combined digest is the SHA-256 of the sorted ``path<TAB>sha256`` lines,
    so it changes when any input changes, is renamed, added or removed.
    """
    items = sorted((str(k), str(v)) for k, v in (inputs or {}).items())
    h = hashlib.sha256()
    for p, s in items:
        h.update(f"{p}\t{s}\n".encode())
    folders: dict[str, int] = {}
    for p, _ in items:
        parent = str(PurePath(p).parent)
        folders[parent] = folders.get(parent, 0) + 1
    return {"n_files": len(items), "combined_sha256": h.hexdigest() if items else None, "folders": folders,
            "files": items}

