"""%ID per vertebra along the canal, from a neuraxis profile and the vertebrae counted on the CT.

:func:`vertebra_table` maps the vertebrae's arc-length intervals (traced on
the CT) onto the profile's centreline at the three canal level boundaries and
sums the profile's %ID over each (columns :data:`VERTEBRA_COLUMNS`).
Re-exported by :mod:`spectrack.regions.neuraxis`.
"""

from __future__ import annotations

import numpy as np

from ..vocabulary import CANAL_LEVELS

__all__ = ["vertebra_table", "VERTEBRA_COLUMNS"]


#: Columns of the per-vertebra table.
VERTEBRA_COLUMNS = {
    "timepoint": "time point index",
    "time_h": "scan start minus injection, hours",
    "vertebra": "vertebral level (C1..C7, T1.., L1.., sacrum) counted on the CT",
    "level": "canal level the vertebra belongs to",
    "from_mm": "caudal end of the vertebra's canal segment, arc length along the profile's centreline, mm",
    "to_mm": "rostral end, mm",
    "pct_id": "percent injected dose in the canal (plus margin) along the vertebra, decay-corrected (slabs cut by "
              "a vertebra's ends count in proportion)",
    "pct_id_per_cm": "pct_id per cm of that segment, decay-corrected",
    "n_slabs": "profile slabs whose centre lies in the segment",
}

_LEVEL_OF = (("sacrum", "canal_sacral"), ("L", "canal_lumbar"), ("T", "canal_thoracic"), ("C", "canal_cervical"))


def _level_transitions(pos: np.ndarray, level: np.ndarray) -> list[float]:
    """Arc lengths where the profile passes sacral -> lumbar, lumbar -> thoracic, thoracic -> cervical (NaN if
    not seen): midway between the last slab of one level and the first of the next."""
    out = []
    for a, b in zip(CANAL_LEVELS[::-1][:-1], CANAL_LEVELS[::-1][1:]):
        pa, pb = pos[level == a], pos[level == b]
        out.append(0.5 * (pa.max() + pb.min()) if pa.size and pb.size and pa.max() < pb.min() else np.nan)
    return out


def vertebra_table(profile, vertebrae: dict):
    """%ID along the canal per vertebra, from the neuraxis profile and the vertebrae counted on CT.

    The vertebrae (``auto_regions["vertebrae"]`` of automatic regions,
    :meth:`spectrack.regions.auto.vertebrae.VertebraeResult.to_json`) are arc-length
    intervals along the centreline traced on the CT; the profile's centreline
    is traced on each time point's canal labels. The two are matched at the
    three level boundaries (L/S1, T/L1, C7/T1), where the labels' canal
    levels change, by piecewise-linear interpolation (extrapolated with the
    end segments' scale); slabs a vertebra's end cuts count in proportion (the
    cumulative %ID along the canal is linear within a slab).

    Parameters
    ----------
    profile : pandas.DataFrame
        :func:`profile_study` output.
    vertebrae : dict
        ``vertebrae_mm`` ({name: [from, to]}) and ``boundaries_mm`` (3 values).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`VERTEBRA_COLUMNS`, vertebrae caudal to rostral per time
        point; ``df.attrs["warnings"]`` names time points where the levels
        could not be matched (no table rows for them).
    """
    import pandas as pd

    iv = {k: (float(a), float(b)) for k, (a, b) in (vertebrae.get("vertebrae_mm") or {}).items()}
    b_ct = np.asarray(vertebrae.get("boundaries_mm") or [], float)
    rows, warnings = [], []
    if not iv or b_ct.size != 3 or profile is None or not len(profile):
        out = pd.DataFrame(rows, columns=list(VERTEBRA_COLUMNS))
        out.attrs["warnings"] = warnings
        return out
    for tp, d in profile.groupby("timepoint", sort=True):
        pos = d["position_mm"].to_numpy(float)
        b_prof = np.asarray(_level_transitions(pos, d["level"].astype(str).to_numpy()), float)
        if not np.all(np.isfinite(b_prof)) or not np.all(np.diff(b_prof) > 0):
            warnings.append(f"time point {tp}: the canal levels of the labels do not follow sacral -> cervical "
                            "without gaps: no per-vertebra table")
            continue
        lo_scale = (b_prof[1] - b_prof[0]) / (b_ct[1] - b_ct[0])
        hi_scale = (b_prof[2] - b_prof[1]) / (b_ct[2] - b_ct[1])

        def to_prof(x):
            x = float(x)
            if x < b_ct[0]:
                return b_prof[0] + (x - b_ct[0]) * lo_scale
            if x > b_ct[2]:
                return b_prof[2] + (x - b_ct[2]) * hi_scale
            return float(np.interp(x, b_ct, b_prof))

        order = np.argsort(pos, kind="stable")
        pos_s, pct = pos[order], d["pct_id"].to_numpy(float)[order]
        # cumulative %ID along the canal, linear within each slab (partial-slab weights: a vertebra a few
        # slabs long gets its share of the slabs it cuts, not whole slabs -- no voxel comb)
        half = 0.5 * (np.median(np.diff(pos_s)) if pos_s.size > 1 else 1.0)
        edges = np.r_[pos_s[0] - half, 0.5 * (pos_s[1:] + pos_s[:-1]), pos_s[-1] + half]
        cum = np.r_[0.0, np.cumsum(pct)]
        t_h = float(d["time_h"].iloc[0])
        first = min(v[0] for v in iv.values())
        last = max(v[1] for v in iv.values())
        for name, (a, b) in sorted(iv.items(), key=lambda kv: kv[1][0]):
            fa, fb = to_prof(a), to_prof(b)
            # the sacrum and C1 take everything beyond them (the canal's ends)
            lo_edge = -np.inf if a <= first else fa
            hi_edge = np.inf if b >= last else fb
            sel = (pos >= lo_edge) & (pos < hi_edge)
            lvl = next(lv for pre, lv in _LEVEL_OF if name.startswith(pre))
            length_cm = (fb - fa) / 10.0
            c_lo = 0.0 if lo_edge == -np.inf else float(np.interp(lo_edge, edges, cum))
            c_hi = float(cum[-1]) if hi_edge == np.inf else float(np.interp(hi_edge, edges, cum))
            tot = c_hi - c_lo
            rows.append({"timepoint": tp, "time_h": t_h, "vertebra": name, "level": lvl, "from_mm": fa, "to_mm": fb,
                         "pct_id": tot, "pct_id_per_cm": tot / length_cm if length_cm > 0 else np.nan,
                         "n_slabs": int(sel.sum())})
    out = pd.DataFrame(rows, columns=list(VERTEBRA_COLUMNS))
    out.attrs["warnings"] = warnings
    return out
