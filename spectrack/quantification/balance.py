"""Dose bookkeeping: where the injected activity is, and drug per gram of tissue.

Two questions a pharmacologist asks of every scan:

* **Does the activity add up?** :func:`mass_balance_table` compares, per
  scan, the field of view with the injected activity decay-corrected to that
  scan, after what is known to have left the body (urine and excreta
  collected, CSF samples withdrawn, injection-site leakage: the ``removed``
  file, read by :func:`read_removed`). What remains is *unaccounted for*; a
  time point whose unaccounted share exceeds a threshold is flagged, so a
  wrong calibration, a wrong injected activity or a truncated field of view
  shows instead of hiding.
* **How much drug per gram?** :func:`add_dose_columns` turns %ID into mass
  (``mass_g = volume_ml * density_g_per_ml``), %ID/g and, with the drug dose
  in mg, micrograms of drug per gram of tissue (``ug_per_g``), assuming the
  label stays on the drug (the microdose's premise).

All %ID here are decay-corrected to injection, like ``pct_id``: "the injected
activity decay-corrected to the scan" is then 100 %ID at every scan.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..physics import decay_factor

__all__ = ["REMOVED_KINDS", "REMOVED_COLUMNS", "read_removed", "removed_pct_id", "mass_balance_table",
           "parse_densities", "add_dose_columns", "DOSE_COLUMNS", "BALANCE_COLUMNS",
           "DEFAULT_THRESHOLD_PCT_ID"]

#: Kinds of activity that left the body, as a ``removed`` file names them.
REMOVED_KINDS = ("urine", "feces", "excreta", "csf_sample", "blood_sample", "leakage", "other")

#: Columns of a ``removed`` file: required ``kind`` and ``activity_mbq`` and
#: one of ``time_h``/``collected_at``; ``measured_h``/``measured_at`` optional.
REMOVED_COLUMNS = {
    "kind": f"what left the body: {', '.join(REMOVED_KINDS)}",
    "time_h": "when it left (collection or withdrawal), hours after injection",
    "collected_at": "the same as an ISO 8601 date-time (instead of time_h)",
    "activity_mbq": "its activity (MBq) when measured",
    "measured_h": "when activity_mbq was measured, hours after injection (default: time_h)",
    "measured_at": "the same as an ISO 8601 date-time (instead of measured_h)",
}

#: A time point is flagged when more than this share of the injected activity
#: (decay-corrected, %ID) is unaccounted for, either way.
DEFAULT_THRESHOLD_PCT_ID = 10.0

#: Columns :func:`add_dose_columns` adds to the region table.
DOSE_COLUMNS = {
    "density_g_per_ml": "tissue density used for the region's mass, g/mL",
    "mass_g": "region mass, g (volume_ml x density_g_per_ml)",
    "pct_id_per_g": "pct_id per g of region",
    "ug_per_g": "drug concentration, ug per g of region (pct_id / 100 x dose_mg x 1000 / mass_g)",
    "pct_id_per_g_pvc": "pct_id_pvc per g of region",
    "ug_per_g_pvc": "drug concentration from pct_id_pvc, ug/g",
}

#: Columns of ``mass_balance.csv``.
BALANCE_COLUMNS = {
    "timepoint": "time point index",
    "time_h": "scan start, hours after injection",
    "expected_pct_id": "the injected activity decay-corrected to the scan: 100 %ID",
    "fov_pct_id": "field of view, %ID (decay-corrected to injection)",
    "regions_pct_id": "sum over the regions (groups excluded), %ID",
    "removed_pct_id": "activity known to have left the body before the scan, %ID (decay-corrected)",
    "accounted_pct_id": "fov_pct_id + removed_pct_id",
    "unaccounted_pct_id": "expected_pct_id - accounted_pct_id (positive: missing; negative: more than injected)",
    "flag": "|unaccounted_pct_id| above the threshold",
}


class RemovedFileError(InputError):
    """A ``removed`` file that cannot be read as written (one line, exit 3)."""


def _float(v, what: str, where: str) -> float:
    try:
        x = float(str(v).strip())
    except ValueError:
        raise RemovedFileError(f"{where}: {what} '{v}' is not a number") from None
    if not math.isfinite(x):
        raise RemovedFileError(f"{where}: {what} '{v}' is not a finite number")
    return x


def read_removed(path, *, injection_time=None, check_only: bool = False) -> tuple[list[dict], list[str]]:
    """Read a CSV file of activity that left the body (urine, CSF samples, leakage...).

    Parameters
    ----------
    path : path-like
        A CSV file with a header row; columns in :data:`REMOVED_COLUMNS`
        (others are kept as they are, e.g. ``note``). One row per collection.
    injection_time : datetime, optional
        Needed when the file gives date-times (``collected_at``,
        ``measured_at``) rather than hours after injection.
    check_only : bool
        Check the file before the study is loaded: date-times are checked
        for their format only (their hours are NaN), as the injection time
        is not known yet.

    Returns
    -------
    rows : list of dict
        ``kind``, ``time_h``, ``activity_mbq`` and ``measured_h`` per row, in
        the file's order.
    notes : list of str
        Values assumed rather than read (warnings): ``measured_h`` taken as
        the collection time when the file has no measurement time.

    Raises
    ------
    RemovedFileError
        A missing or unreadable file, a missing column, an unknown kind, a
        negative or non-numeric activity or time (one line naming the row).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "removed.csv"
    >>> _ = p.write_text("kind,time_h,activity_mbq\\nurine,5,12.5\\n")
    >>> rows, notes = read_removed(p)
    >>> rows[0]["kind"], rows[0]["time_h"], rows[0]["measured_h"], len(notes)
    ('urine', 5.0, 5.0, 1)
    """
    p = Path(path)
    if not p.is_file():
        raise RemovedFileError(f"removed-activity file {p} does not exist (give a CSV with columns kind, time_h, "
                               "activity_mbq)")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise RemovedFileError(f"{p}: not a UTF-8 text file (give a CSV with columns kind, time_h, "
                               "activity_mbq)") from None
    except OSError as exc:
        raise RemovedFileError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    reader = csv.DictReader(text.splitlines())
    cols = [c.strip() for c in (reader.fieldnames or [])]
    if not cols:
        raise RemovedFileError(f"{p}: empty; give a header row kind,time_h,activity_mbq and one row per collection")
    missing = [c for c in ("kind", "activity_mbq") if c not in cols]
    if "time_h" not in cols and "collected_at" not in cols:
        missing.append("time_h (or collected_at)")
    if missing:
        raise RemovedFileError(f"{p}: no column {', '.join(missing)} (columns found: {', '.join(cols)})")
    rows, assumed = [], 0
    for n, raw in enumerate(reader, start=2):
        r = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        if not any(r.values()):
            continue
        where = f"{p.name} line {n}"
        kind = r.get("kind", "").lower()
        if kind not in REMOVED_KINDS:
            raise RemovedFileError(f"{where}: kind '{r.get('kind', '')}' is not one of {', '.join(REMOVED_KINDS)}")
        t = _hours(r, "time_h", "collected_at", injection_time, where, check_only)
        if t is None:
            raise RemovedFileError(f"{where}: no time_h or collected_at")
        a = _float(r.get("activity_mbq", ""), "activity_mbq", where)
        if a < 0:
            raise RemovedFileError(f"{where}: activity_mbq {a:g} is negative")
        m = _hours(r, "measured_h", "measured_at", injection_time, where, check_only)
        if m is None:
            m, assumed = t, assumed + 1
        extra = {k: v for k, v in r.items() if k not in REMOVED_COLUMNS}
        rows.append({"kind": kind, "time_h": t, "activity_mbq": a, "measured_h": m, **extra})
    if not rows:
        raise RemovedFileError(f"{p}: no rows; give one row per collection (kind,time_h,activity_mbq)")
    notes = []
    if assumed:
        notes.append(f"{p.name}: {assumed} of {len(rows)} removed activities have no measured_h/measured_at: "
                     "each is taken as measured when it was collected (assumed, not read)")
    return rows, notes


def _hours(r: dict, hours_key: str, when_key: str, injection_time, where: str, check_only: bool = False):
    if r.get(hours_key):
        t = _float(r[hours_key], hours_key, where)
    elif r.get(when_key) and check_only:
        from ..load.nifti import parse_datetime

        parse_datetime(r[when_key], f"{where} {when_key}")
        return math.nan
    elif r.get(when_key):
        if injection_time is None:
            raise RemovedFileError(f"{where}: {when_key} needs the injection time (give --injection-time, or "
                                   f"{hours_key} in hours after injection)")
        from ..load.nifti import parse_datetime

        when = parse_datetime(r[when_key], f"{where} {when_key}")
        inj = injection_time
        if (when.tzinfo is None) != (inj.tzinfo is None):
            when, inj = when.replace(tzinfo=None), inj.replace(tzinfo=None)
        t = (when - inj).total_seconds() / 3600.0
    else:
        return None
    if t < 0:
        raise RemovedFileError(f"{where}: {hours_key} {t:g} h is before the injection")
    return t


def removed_pct_id(rows: list[dict], *, injected_mbq: float, half_life_h: float) -> list[dict]:
    """Each removed activity as %ID decay-corrected to injection (``pct_id`` added to a copy of each row).

    ``pct_id = activity_mbq * exp(lambda * measured_h) / injected_mbq * 100``.

    Examples
    --------
    >>> r = removed_pct_id([{"kind": "urine", "time_h": 6.0, "activity_mbq": 5.0, "measured_h": 6.0}],
    ...                    injected_mbq=20.0, half_life_h=6.0)
    >>> round(r[0]["pct_id"], 9)
    50.0
    """
    out = []
    for r in rows:
        dc = float(r["activity_mbq"]) * float(decay_factor(float(r["measured_h"]), half_life_h))
        out.append({**r, "pct_id": dc / float(injected_mbq) * 100.0})
    return out


def mass_balance_table(table, removed: list[dict] | None = None, *,
                       threshold_pct_id: float = DEFAULT_THRESHOLD_PCT_ID):
    """Per time point: field of view plus removed activity against the injected activity.

    Parameters
    ----------
    table : pandas.DataFrame
        The region table (rows of kind ``fov`` and ``region``, ``pct_id``).
    removed : list of dict, optional
        From :func:`removed_pct_id` (``time_h``, ``kind``, ``pct_id``); a
        collection counts for the scans that start at or after its time.
    threshold_pct_id : float
        Flag a time point whose ``|unaccounted_pct_id|`` exceeds this.

    Returns
    -------
    pandas.DataFrame
        :data:`BALANCE_COLUMNS`, plus ``removed_<kind>_pct_id`` per kind
        present, one row per time point; ``attrs["warnings"]`` says what each
        flagged time point means.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"timepoint": [0, 0], "time_h": 6.0, "kind": ["region", "fov"],
    ...                   "region": ["brain", "field_of_view"], "pct_id": [30.0, 70.0]})
    >>> mb = mass_balance_table(t, [{"kind": "urine", "time_h": 5.0, "pct_id": 25.0}])
    >>> float(mb.unaccounted_pct_id[0]), bool(mb.flag[0])
    (5.0, False)
    """
    import pandas as pd

    removed = list(removed or [])
    kinds = [k for k in REMOVED_KINDS if any(r["kind"] == k for r in removed)]
    rows, warnings = [], []
    kind_col = table["kind"].astype(str)
    for tp, d in table.groupby("timepoint", sort=True):
        k = kind_col.loc[d.index]
        t = float(d["time_h"].astype(float).iloc[0])
        fov_rows = d.loc[k == "fov", "pct_id"].astype(float)
        fov = float(fov_rows.sum()) if len(fov_rows) else math.nan
        reg = float(d.loc[k == "region", "pct_id"].astype(float).sum())
        before = [r for r in removed if float(r["time_h"]) <= t]
        by_kind = {kk: sum(float(r["pct_id"]) for r in before if r["kind"] == kk) for kk in kinds}
        rem = float(sum(by_kind.values()))
        acc = fov + rem
        un = 100.0 - acc
        flag = not (abs(un) <= threshold_pct_id)
        row = {"timepoint": int(tp), "time_h": t, "expected_pct_id": 100.0, "fov_pct_id": fov,
               "regions_pct_id": reg, "removed_pct_id": rem, "accounted_pct_id": acc, "unaccounted_pct_id": un,
               "flag": bool(flag)}
        row.update({f"removed_{kk}_pct_id": v for kk, v in by_kind.items()})
        rows.append(row)
        if flag and math.isfinite(un):
            if un > 0:
                warnings.append(
                    f"time point {tp} ({t:.3g} h): {un:.1f} %ID of the injected activity is unaccounted for (field "
                    f"of view {fov:.1f} %ID, removed {rem:.1f} %ID; threshold {threshold_pct_id:g} %ID): give what "
                    "left the body (urine, CSF samples, leakage) with --removed FILE, or check that the field of "
                    "view covers the body, the calibration and the injected activity")
            else:
                warnings.append(
                    f"time point {tp} ({t:.3g} h): the field of view ({fov:.1f} %ID) and the removed activity "
                    f"({rem:.1f} %ID) hold {acc:.1f} %ID, more than was injected (threshold {threshold_pct_id:g} "
                    "%ID): check the calibration, the injected activity and the residual")
        elif not math.isfinite(un):
            warnings.append(f"time point {tp} ({t:.3g} h): no field-of-view row, so no mass balance")
    cols = list(BALANCE_COLUMNS) + [f"removed_{kk}_pct_id" for kk in kinds]
    frame = pd.DataFrame(rows, columns=cols)
    frame.attrs["warnings"] = warnings
    frame.attrs["threshold_pct_id"] = float(threshold_pct_id)
    return frame


def parse_densities(value) -> dict[str, float]:
    """Densities per region from a setting: ``1.04`` (every region) or ``brain=1.04,liver=1.06,*=1.0``.

    Returns a mapping region name -> g/mL; ``*`` is the default for regions
    not named.

    Examples
    --------
    >>> parse_densities("1.05")
    {'*': 1.05}
    >>> parse_densities("brain=1.04, *=1")
    {'brain': 1.04, '*': 1.0}
    """
    if value is None:
        return {}
    if isinstance(value, (int, float)):
        items = [("*", value)]
    elif isinstance(value, dict):
        items = list(value.items())
    else:
        s = str(value).strip()
        items = []
        for part in [x.strip() for x in s.split(",") if x.strip()]:
            name, eq, v = part.partition("=")
            items.append((name.strip(), v) if eq else ("*", name))
    out = {}
    for name, v in items:
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise InputError(f"density '{v}' for {name if name != '*' else 'every region'} is not a number "
                             "(give g/mL, e.g. 1.04 or brain=1.04,*=1.0)") from None
        if not (math.isfinite(x) and 0.1 <= x <= 25.0):
            raise InputError(f"density {v} g/mL for {name if name != '*' else 'every region'} is not a tissue "
                             "density (0.1 to 25 g/mL; soft tissue is about 1.0-1.1, cortical bone 1.9)")
        if not name:
            raise InputError(f"density '{v}' has no region name before '=' (give e.g. brain=1.04)")
        out[str(name)] = x
    return out


def add_dose_columns(table, *, densities: dict[str, float] | None = None, dose_mg: float | None = None):
    """Mass, %ID/g and drug concentration (ug/g) per row of the region table.

    Parameters
    ----------
    table : pandas.DataFrame
        With ``region``, ``volume_ml`` and ``pct_id`` (and ``pct_id_pvc`` when
        recovery-corrected).
    densities : dict, optional
        From :func:`parse_densities`; regions not named take ``*``, else
        1.0 g/mL (reported in the returned warnings as assumed).
    dose_mg : float, optional
        Drug dose (mg); gives ``ug_per_g`` columns.

    Returns
    -------
    table : pandas.DataFrame
        A copy with :data:`DOSE_COLUMNS` (those that apply).
    warnings : list of str
        Densities assumed and names given that match no region.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"region": ["brain"], "volume_ml": [80.0], "pct_id": [2.0]})
    >>> out, w = add_dose_columns(t, densities={"brain": 1.0}, dose_mg=12.0)
    >>> float(out.mass_g[0]), float(out.pct_id_per_g[0]), float(out.ug_per_g[0])
    (80.0, 0.025, 3.0)
    """
    densities = dict(densities or {})
    out = table.copy()
    warnings = []
    names = out["region"].astype(str)
    default = densities.get("*")
    unknown = sorted(set(densities) - {"*"} - set(names))
    if unknown:
        warnings.append(f"densities given for {', '.join(unknown)}, which are not regions of the table "
                        f"(regions: {', '.join(dict.fromkeys(names))})")
    dens = np.array([densities.get(n, default if default is not None else np.nan) for n in names], float)
    unset = ~np.isfinite(dens)
    if unset.any():
        is_region = (out["kind"].astype(str) == "region").to_numpy() if "kind" in out else np.ones(len(out), bool)
        named = list(dict.fromkeys(names[unset & is_region]))
        rest = " (and the groups, outside_regions and field_of_view)" if (unset & ~is_region).any() else ""
        warnings.append(f"density 1.0 g/mL assumed (not given) for {', '.join(named) or 'no region'}{rest}: give "
                        "--density (e.g. brain=1.04,liver=1.05,*=1.0) for %ID/g and ug/g of the tissue's real mass")
        dens[unset] = 1.0
    mass = out["volume_ml"].to_numpy(float) * dens
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(mass > 0, 1.0 / mass, np.nan)
    out["density_g_per_ml"] = dens
    out["mass_g"] = mass
    out["pct_id_per_g"] = out["pct_id"].to_numpy(float) * inv
    if "pct_id_pvc" in out:
        out["pct_id_per_g_pvc"] = out["pct_id_pvc"].to_numpy(float) * inv
    if dose_mg is not None:
        # pct_id / 100 of the dose (mg -> ug: x 1000) per gram
        out["ug_per_g"] = out["pct_id_per_g"].to_numpy(float) / 100.0 * float(dose_mg) * 1000.0
        if "pct_id_pvc" in out:
            out["ug_per_g_pvc"] = out["pct_id_per_g_pvc"].to_numpy(float) / 100.0 * float(dose_mg) * 1000.0
    return out, warnings
