"""Time-activity curves per region from the quantification table.

The table (one row per time point and region, see
:data:`spectrack.quantification.core.TABLE_COLUMNS`) holds each quantity twice:
*physical* (what was in the region at scan start) and *decay-corrected* (to
the injection time). :func:`time_activity_curves` returns both, for every
quantity, in one tidy (long) table; :func:`get_tac` returns one curve as
arrays ready for :mod:`spectrack.kinetics.fits`.

Quantities
----------
=================  =================================  ==================================  ======
quantity           physical column                    decay-corrected column              unit
=================  =================================  ==================================  ======
``pct_id``         ``pct_id_uncorrected``             ``pct_id``                          %ID
``activity_mbq``   ``activity_mbq``                   ``activity_mbq_decay_corrected``    MBq
``bq_per_ml``      ``mean_bq_per_ml``                 ``mean_bq_per_ml_decay_corrected``  Bq/mL
``pct_id_per_ml``  ``pct_id_uncorrected / volume_ml`` ``pct_id_per_ml``                   %ID/mL
``max_bq_per_ml``  ``max_bq_per_ml``                  (physical x exp(lambda t))          Bq/mL
``pct_id_pvc``     ``pct_id_uncorrected_pvc``         ``pct_id_pvc``                      %ID
=================  =================================  ==================================  ======

(``*_pvc``: partial-volume corrected by
:func:`spectrack.quantification.recovery_table.add_gtm_correction`; also ``activity_mbq_pvc``.)

A missing column is derived from its partner with ``exp(+-lambda t)``, which
needs ``half_life_h``. Columns ``<column>_lo`` / ``<column>_hi`` (intervals
from :mod:`spectrack.quantification.intervals`) are carried as ``lo`` / ``hi``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["QUANTITIES", "CORRECTIONS", "TAC", "time_activity_curves", "get_tac", "half_life_from_table"]

#: quantity -> (physical column, decay-corrected column, unit)
QUANTITIES: dict[str, tuple[str | None, str | None, str]] = {
    "pct_id": ("pct_id_uncorrected", "pct_id", "%ID"),
    "activity_mbq": ("activity_mbq", "activity_mbq_decay_corrected", "MBq"),
    "bq_per_ml": ("mean_bq_per_ml", "mean_bq_per_ml_decay_corrected", "Bq/mL"),
    "pct_id_per_ml": (None, "pct_id_per_ml", "%ID/mL"),
    "max_bq_per_ml": ("max_bq_per_ml", None, "Bq/mL"),
    # partial-volume corrected (spectrack.quantification.recovery_table.add_gtm_correction)
    "pct_id_pvc": ("pct_id_uncorrected_pvc", "pct_id_pvc", "%ID"),
    "activity_mbq_pvc": ("activity_mbq_pvc", "activity_mbq_decay_corrected_pvc", "MBq"),
}
CORRECTIONS = ("decay_corrected", "physical")


@dataclass
class TAC:
    """One time-activity curve (sorted by time).

    ``lo`` / ``hi`` are interval bounds when the table carries them, else None;
    ``sd`` the SD of the independent (per-scan) uncertainty terms alone.
    """

    subject: str
    region: str
    quantity: str
    correction: str
    unit: str
    time_h: np.ndarray
    values: np.ndarray
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    sd: np.ndarray | None = None

    @property
    def decay_corrected(self) -> bool:
        return self.correction == "decay_corrected"


def half_life_from_table(table) -> float | None:
    """Half-life in hours recorded by the quantification in ``table.attrs``, or None."""
    meta = getattr(table, "attrs", {}).get("metadata", {}) or {}
    hl = (meta.get("dose") or {}).get("half_life_h")
    if isinstance(hl, dict):
        hl = hl.get("value")
    try:
        return float(hl) if hl is not None else None
    except (TypeError, ValueError):
        return None


def _column(df, quantity: str, correction: str, half_life_h: float | None, suffix: str = ""):
    """Values of one quantity/correction (a Series) or None if unavailable."""
    phys, dc, _ = QUANTITIES[quantity]
    want, other = (dc, phys) if correction == "decay_corrected" else (phys, dc)
    if want is not None and want + suffix in df:
        return df[want + suffix].astype(float)
    if quantity == "pct_id_per_ml" and correction == "physical" and "pct_id_uncorrected" + suffix in df \
            and "volume_ml" in df:
        vol = df["volume_ml"].astype(float)
        return (df["pct_id_uncorrected" + suffix].astype(float) / vol).where(vol > 0)
    if other is not None and other + suffix in df and half_life_h is not None:
        lam = math.log(2) / half_life_h
        sign = 1.0 if correction == "decay_corrected" else -1.0
        return df[other + suffix].astype(float) * np.exp(sign * lam * df["time_h"].astype(float))
    return None


def time_activity_curves(
    table,
    *,
    quantities=("pct_id", "activity_mbq", "bq_per_ml", "pct_id_per_ml"),
    corrections=CORRECTIONS,
    regions=None,
    kinds=None,
    half_life_h: float | None = None,
):
    """Tidy time-activity curves: one row per subject, region, quantity, correction and time point.

    Parameters
    ----------
    table : pandas.DataFrame
        The quantification table.
    quantities : sequence of str
        Keys of :data:`QUANTITIES`.
    corrections : sequence of {"decay_corrected", "physical"}
    regions : sequence of str, optional
        Keep only these regions.
    kinds : sequence of str, optional
        Keep only rows whose ``kind`` is in this set (e.g. ``("region", "group")``).
    half_life_h : float, optional
        Needed only to derive a missing column; defaults to the value in
        ``table.attrs["metadata"]``.

    Returns
    -------
    pandas.DataFrame
        Columns ``subject, region, quantity, correction, unit, timepoint,
        time_h, value, lo, hi`` sorted by subject, region, quantity,
        correction and time. ``lo``/``hi`` are NaN without intervals.
        Quantities that cannot be formed (column missing, no half-life) are
        skipped.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"subject": "s", "timepoint": [0, 1], "time_h": [1.0, 2.0], "region": "brain",
    ...                   "pct_id": [4.0, 3.0], "pct_id_uncorrected": [3.6, 2.4]})
    >>> time_activity_curves(t, quantities=["pct_id"])[["correction", "time_h", "value"]].values.tolist()
    [['decay_corrected', 1.0, 4.0], ['decay_corrected', 2.0, 3.0], ['physical', 1.0, 3.6], ['physical', 2.0, 2.4]]
    """
    import pandas as pd

    df = table
    if regions is not None:
        df = df[df["region"].isin(list(regions))]
    if kinds is not None and "kind" in df:
        df = df[df["kind"].isin(list(kinds))]
    hl = half_life_h if half_life_h is not None else half_life_from_table(table)
    subj = df["subject"].astype(str) if "subject" in df else pd.Series("", index=df.index)
    tp = df["timepoint"] if "timepoint" in df else pd.Series(np.arange(len(df)), index=df.index)
    parts = []
    for q in quantities:
        if q not in QUANTITIES:
            raise KeyError(f"unknown quantity {q!r}; known: {', '.join(QUANTITIES)}")
        for c in corrections:
            if c not in CORRECTIONS:
                raise ValueError(f"correction must be one of {CORRECTIONS}, got {c!r}")
            v = _column(df, q, c, hl)
            if v is None:
                continue
            lo = _column(df, q, c, hl, "_lo")
            hi = _column(df, q, c, hl, "_hi")
            parts.append(pd.DataFrame({
                "subject": subj, "region": df["region"].astype(str), "quantity": q, "correction": c,
                "unit": QUANTITIES[q][2], "timepoint": tp, "time_h": df["time_h"].astype(float), "value": v,
                "lo": lo if lo is not None else np.nan, "hi": hi if hi is not None else np.nan}))
    cols = ["subject", "region", "quantity", "correction", "unit", "timepoint", "time_h", "value", "lo", "hi"]
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["subject", "region", "quantity", "correction", "time_h"], kind="stable",
                           ignore_index=True)[cols]


def get_tac(
    table,
    region: str,
    *,
    quantity: str = "pct_id",
    correction: str = "decay_corrected",
    subject: str | None = None,
    half_life_h: float | None = None,
) -> TAC:
    """One curve of one region as arrays (sorted by time).

    Raises
    ------
    KeyError
        If the region (or subject) is not in the table, or the quantity cannot
        be formed.
    ValueError
        If the table holds several subjects and ``subject`` is not given.
    """
    df = table[table["region"].astype(str) == str(region)]
    if df.empty:
        raise KeyError(f"no region {region!r} in the table; have {sorted(table['region'].astype(str).unique())}")
    if "subject" in df:
        subjects = df["subject"].astype(str).unique()
        if subject is None:
            if len(subjects) > 1:
                raise ValueError(f"the table holds several subjects ({', '.join(subjects)}): give subject=")
            subject = subjects[0]
        df = df[df["subject"].astype(str) == str(subject)]
        if df.empty:
            raise KeyError(f"no subject {subject!r} for region {region!r}")
    hl = half_life_h if half_life_h is not None else half_life_from_table(table)
    v = _column(df, quantity, correction, hl)
    if v is None:
        raise KeyError(f"cannot form {quantity} ({correction}) from the table columns"
                       + ("" if hl is not None else " (give half_life_h to derive it)"))
    order = np.argsort(df["time_h"].to_numpy(float), kind="stable")
    lo = _column(df, quantity, correction, hl, "_lo")
    hi = _column(df, quantity, correction, hl, "_hi")
    sd = _column(df, quantity, correction, hl, "_sd_independent")
    return TAC(str(subject or ""), str(region), quantity, correction, QUANTITIES[quantity][2],
               df["time_h"].to_numpy(float)[order], v.to_numpy(float)[order],
               None if lo is None else lo.to_numpy(float)[order], None if hi is None else hi.to_numpy(float)[order],
               None if sd is None else sd.to_numpy(float)[order])
