"""Neuraxis profile: activity along the spinal canal, sacrum to skull base, per time point.

The canal (the four ``canal_*`` regions, plus a margin for the spill of the
SPECT point-spread function) is cut into slabs perpendicular to its
centreline, ``step_mm`` thick (one SPECT voxel by default): every voxel goes to
the slab of its nearest centreline point. Each slab's activity gives MBq and
%ID per cm at every time point; the rostral tracer front is where the profile,
walking rostrally from the injection level, first falls below a fraction of
its peak (linear interpolation between slabs). By default the front uses the
mean concentration of each slab (%ID/mL of canal) and half its peak: unlike
%ID/cm it does not jump where the canal widens or where a slab happens to
hold fewer voxels (see :func:`tracer_front`).

Typical use after :func:`spectrack.quantification.quantify` with
``return_details=True``::

    table, details = quantify(study, labels, ..., return_details=True)
    prof = profile_study(study, details.labels_per_timepoint, details.calibrations, details.params)
    fronts = tracer_front(prof)
    write_profile(prof, out_dir)        # neuraxis_profile.csv, neuraxis_front.csv, neuraxis_profile.png

Table columns are in :data:`PROFILE_COLUMNS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..geometry import Image
from .labels import LabelMap
from .vocabulary import CANAL_LEVELS

__all__ = ["Centreline", "centreline_from_labels", "neuraxis_profile", "profile_study", "tracer_front",
           "write_profile", "plot_profile", "PROFILE_COLUMNS", "FRONT_COLUMNS"]

#: Columns of the profile table.
PROFILE_COLUMNS = {
    "timepoint": "time point index",
    "time_h": "scan start minus injection, hours",
    "slab": "slab index from the caudal end of the canal",
    "position_mm": "arc length of the slab centre along the canal centreline from its caudal (sacral) end, mm",
    "voxel_position_mm": "mean arc length of the slab's voxel centres (NaN if empty), mm",
    "distance_mm": "position_mm minus the injection level (positive = rostral), mm",
    "level": "canal level at the slab centre",
    "x_mm": "LPS x of the slab centre on the centreline, mm",
    "y_mm": "LPS y of the slab centre, mm",
    "z_mm": "LPS z of the slab centre, mm",
    "n_voxels": "emission voxels in the slab (canal plus margin)",
    "mbq": "activity in the slab at scan start, MBq",
    "mbq_decay_corrected": "activity decay-corrected to injection, MBq",
    "pct_id": "percent injected dose in the slab, decay-corrected",
    "pct_id_per_cm": "pct_id per cm of canal, decay-corrected",
    "pct_id_per_cm_uncorrected": "percent injected dose per cm at scan start, not decay-corrected",
    "canal_ml": "volume of the slab's canal voxels (without the margin), mL",
    "pct_id_per_ml": "pct_id / canal_ml: mean concentration in the canal (margin spill counted back), "
                     "decay-corrected (NaN where the slab holds no canal voxel)",
}

#: Columns of the tracer-front table.
FRONT_COLUMNS = {
    "timepoint": "time point index",
    "time_h": "scan start minus injection, hours",
    "front_distance_mm": "distance from the injection level to the front along the centreline, mm (NaN if none)",
    "front_position_mm": "arc length of the front from the caudal end of the canal, mm",
    "reached_end": "True when the profile never falls below the threshold before the skull base",
    "threshold": "the threshold used (fraction x reference), in the unit of the value column",
    "value": "profile column the front was found on",
    "reference": "what the fraction refers to: peak (rostral of the injection) or injection level",
    "fraction": "the fraction of the reference",
}


# -------------------------------------------------------------- centreline
@dataclass(eq=False)
class Centreline:
    """A polyline in LPS mm from the caudal (sacral) end to the cranial end.

    Parameters
    ----------
    points_mm : array_like (n, 3)
        Ordered points, caudal first.

    Examples
    --------
    >>> c = Centreline([[0, 0, 0], [0, 0, 10], [0, 0, 30]])
    >>> c.length_mm
    30.0
    >>> c.point_at([15.0]).tolist()
    [[0.0, 0.0, 15.0]]
    >>> s, d = c.project([[3.0, 0.0, 20.0]])
    >>> round(float(s[0]), 1), round(float(d[0]), 1)
    (20.0, 3.0)
    """

    points_mm: np.ndarray

    def __post_init__(self):
        p = np.asarray(self.points_mm, float).reshape(-1, 3)
        if len(p) < 2:
            raise ValueError("a centreline needs at least two points")
        keep = np.concatenate([[True], np.linalg.norm(np.diff(p, axis=0), axis=1) > 1e-9])
        self.points_mm = p[keep]
        seg = np.linalg.norm(np.diff(self.points_mm, axis=0), axis=1)
        self.arclength_mm = np.concatenate([[0.0], np.cumsum(seg)])
        self._tree = None
        self._dense = None

    @property
    def length_mm(self) -> float:
        return float(self.arclength_mm[-1])

    def point_at(self, s_mm) -> np.ndarray:
        """LPS points (n, 3) at arc lengths ``s_mm`` (clamped to the ends)."""
        s = np.atleast_1d(np.asarray(s_mm, float))
        return np.stack([np.interp(s, self.arclength_mm, self.points_mm[:, a]) for a in range(3)], axis=1)

    def tangent_at(self, s_mm) -> np.ndarray:
        """Unit tangents (n, 3) at arc lengths ``s_mm``."""
        s = np.atleast_1d(np.asarray(s_mm, float))
        h = max(self.length_mm * 1e-3, 1e-3)
        t = self.point_at(np.clip(s + h, 0, self.length_mm)) - self.point_at(np.clip(s - h, 0, self.length_mm))
        return t / np.linalg.norm(t, axis=1, keepdims=True)

    def resampled(self, step_mm: float) -> "Centreline":
        """The same curve with points every ``step_mm`` (both ends kept)."""
        n = max(2, int(np.ceil(self.length_mm / float(step_mm))) + 1)
        return Centreline(self.point_at(np.linspace(0.0, self.length_mm, n)))

    def project(self, xyz_mm) -> tuple[np.ndarray, np.ndarray]:
        """Arc length of the nearest centreline point, and the distance to it, of points ``(n, 3)``.

        Uses the curve sampled every 0.1 mm (or finer for short curves).
        """
        from scipy.spatial import cKDTree

        if self._tree is None:
            step = min(0.1, self.length_mm / 100.0)
            n = max(2, int(np.ceil(self.length_mm / step)) + 1)
            s = np.linspace(0.0, self.length_mm, n)
            self._dense = s
            self._tree = cKDTree(self.point_at(s))
        xyz = np.atleast_2d(np.asarray(xyz_mm, float))
        d, i = self._tree.query(xyz)
        return self._dense[i], d

    def transformed(self, matrix) -> "Centreline":
        """The centreline moved by a 4x4 world -> world matrix."""
        m = np.asarray(matrix, float)
        return Centreline(self.points_mm @ m[:3, :3].T + m[:3, 3])

    def to_json(self) -> dict:
        return {"points_mm_lps": np.round(self.points_mm, 4).tolist(), "length_mm": self.length_mm}

    @classmethod
    def from_json(cls, data) -> "Centreline":
        return cls(np.asarray(data["points_mm_lps"] if isinstance(data, dict) else data, float))


def centreline_from_labels(labels: LabelMap, *, levels=CANAL_LEVELS, smooth_mm: float | None = None,
                           use_stored: bool = True) -> Centreline | None:
    """Centreline of the canal regions of a label map (caudal to cranial).

    Automatic label maps (:func:`spectrack.regions.auto.segment_ct`) carry
    their CT-derived centreline in ``labels.image.meta["auto_regions"]``; it is
    used when ``use_stored`` (the default). Otherwise the centreline is
    rebuilt from the per-slice centroids of the canal voxels.

    Returns None when the label map has no canal voxels.
    """
    from .auto_canal import centreline_from_mask

    meta = labels.image.meta.get("auto_regions") if isinstance(labels.image.meta, dict) else None
    if use_stored and meta and meta.get("centreline"):
        return Centreline.from_json(meta["centreline"])
    rev = {v: k for k, v in labels.names.items()}
    idx = [rev[n] for n in levels if n in rev]
    mask = np.isin(labels.image.array, idx)
    if not mask.any():
        return None
    return centreline_from_mask(mask, labels.image, smooth_mm=smooth_mm)


# ------------------------------------------------------------------ profile
def _level_at(labels: LabelMap, canal_mask, s_vox, s_centres):
    """Name of the canal level of the slab centres (the majority level of canal voxels nearby)."""
    names = np.array(["" for _ in s_centres], dtype=object)
    rev = {v: k for k, v in labels.names.items()}
    arr = labels.image.array[canal_mask]
    lv_idx = np.full(arr.shape, -1)
    for n, lv in enumerate(CANAL_LEVELS):
        if lv in rev:
            lv_idx[arr == rev[lv]] = n
    if s_vox.size == 0:
        return names
    order = np.argsort(s_vox)
    ss, ll = s_vox[order], lv_idx[order]
    j = np.clip(np.searchsorted(ss, s_centres), 0, len(ss) - 1)
    jm = np.clip(j - 1, 0, len(ss) - 1)
    pick = np.where(np.abs(ss[jm] - s_centres) < np.abs(ss[j] - s_centres), jm, j)
    for n, p in enumerate(pick):
        names[n] = CANAL_LEVELS[ll[p]] if ll[p] >= 0 else ""
    return names


def neuraxis_profile(activity_mbq: Image, labels: LabelMap, *, injected_mbq: float, decay_factor: float = 1.0,
                     centreline: Centreline | None = None, step_mm: float | None = None, margin_mm: float = 0.0,
                     margin_into=("remainder", "vertebrae", "skull"), injection_position_mm: float | None = None,
                     time_h: float = float("nan"), timepoint: int = 0):
    """Activity along the canal for one scan.

    Parameters
    ----------
    activity_mbq : Image
        MBq per voxel at scan start (image values times the calibration's
        ``mbq_per_voxel_per_unit``).
    labels : LabelMap
        Regions on ``activity_mbq``'s grid with the ``canal_*`` levels
        (optionally ``injection_site``).
    injected_mbq : float
        Injected activity (MBq) for %ID.
    decay_factor : float
        Multiplies scan-start activity to decay-correct to injection.
    centreline : Centreline, optional
        In the world space of ``labels``; rebuilt from the canal labels when
        omitted (see :func:`centreline_from_labels`).
    step_mm : float, optional
        Slab thickness along the centreline; the emission voxel size (the
        geometric mean of the spacing) by default.
    margin_mm : float
        Also count voxels within this distance of the canal (PSF spill), but
        only voxels labelled with a name in ``margin_into`` (or unlabelled):
        never the injection site, the brain or other organs.
    margin_into : sequence of str
        Regions the margin may include.
    injection_position_mm : float, optional
        Arc length of the injection level from the caudal end. By default the
        projection of the ``injection_site`` centroid onto the centreline; if
        there is none, the caudal end of the canal (distances are then
        positions).
    time_h, timepoint : float, int
        Copied into the table.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`PROFILE_COLUMNS`; ``df.attrs`` holds ``injection_position_mm``,
        ``injection_source``, ``step_mm`` and ``margin_mm``.
    """
    import pandas as pd

    from .auto_canal import dilate_mm

    img = activity_mbq
    if not labels.image.same_grid(img):
        labels = labels.resampled_to(img)
    rev = {v: k for k, v in labels.names.items()}
    lab = labels.image.array
    canal = np.isin(lab, [rev[n] for n in CANAL_LEVELS if n in rev])
    if not canal.any():
        raise ValueError("the label map has no canal_* region on this grid: no neuraxis profile")
    if centreline is None:
        centreline = centreline_from_labels(labels)
    sp_arr = img.spacing_mm[::-1]
    if step_mm is None:
        step_mm = float(np.prod(img.spacing_mm) ** (1.0 / 3.0))
    sel = canal.copy()
    if margin_mm > 0:
        allowed = (lab == 0) | np.isin(lab, [rev[n] for n in margin_into if n in rev])
        sel |= dilate_mm(canal, margin_mm, sp_arr) & allowed
    kk = np.argwhere(sel)
    xyz = img.index_to_world_mm(kk[:, ::-1])
    s, dist = centreline.project(xyz)
    # voxels beyond either end of the centreline are not in any slab
    L = centreline.length_mm
    n_slab = max(1, int(np.ceil(L / step_mm - 1e-9)))
    edges = np.linspace(0.0, n_slab * step_mm, n_slab + 1)
    slab = np.clip(np.floor(s / step_mm).astype(int), 0, n_slab - 1)
    vals = np.asarray(img.array, float)[sel]
    mbq = np.bincount(slab, weights=vals, minlength=n_slab)
    nvox = np.bincount(slab, minlength=n_slab)
    in_canal = canal[sel]
    ncanal = np.bincount(slab, weights=in_canal.astype(float), minlength=n_slab)
    s_sum = np.bincount(slab, weights=s, minlength=n_slab)
    vpos = np.divide(s_sum, nvox, out=np.full(n_slab, np.nan), where=nvox > 0)
    centres = 0.5 * (edges[:-1] + edges[1:])
    if injection_position_mm is not None:
        s_inj, src = float(injection_position_mm), "given"
    elif "injection_site" in rev and np.any(lab == rev["injection_site"]):
        ii = np.argwhere(lab == rev["injection_site"])
        c = img.index_to_world_mm(ii[:, ::-1]).mean(axis=0)
        s_inj, src = float(centreline.project(c[None])[0][0]), "injection_site centroid projected on the centreline"
    else:
        s_inj, src = 0.0, "no injection_site region: caudal end of the canal"
    canal_s, _ = centreline.project(img.index_to_world_mm(np.argwhere(canal)[:, ::-1]))
    lvl = _level_at(labels, canal, canal_s, centres)
    pts = centreline.point_at(centres)
    per_cm = 10.0 / step_mm
    pct = 100.0 * mbq * decay_factor / injected_mbq
    df = pd.DataFrame({
        "timepoint": timepoint, "time_h": time_h, "slab": np.arange(n_slab), "position_mm": centres,
        "voxel_position_mm": vpos,
        "distance_mm": centres - s_inj, "level": lvl, "x_mm": pts[:, 0], "y_mm": pts[:, 1], "z_mm": pts[:, 2],
        "n_voxels": nvox, "mbq": mbq, "mbq_decay_corrected": mbq * decay_factor, "pct_id": pct,
        "pct_id_per_cm": pct * per_cm, "pct_id_per_cm_uncorrected": 100.0 * mbq / injected_mbq * per_cm,
        "canal_ml": ncanal * img.voxel_volume_ml,
        "pct_id_per_ml": np.divide(pct, ncanal * img.voxel_volume_ml, out=np.full(n_slab, np.nan),
                                   where=ncanal > 0),
    }, columns=list(PROFILE_COLUMNS))
    df.attrs.update({"injection_position_mm": s_inj, "injection_source": src, "step_mm": float(step_mm),
                     "margin_mm": float(margin_mm), "canal_length_mm": L,
                     "max_distance_to_centreline_mm": float(dist.max(initial=0.0))})
    return df


def profile_study(study, labels_per_timepoint, calibrations, params, *, centreline=None, step_mm=None,
                  margin_mm: float = 0.0, margin_into=("remainder", "vertebrae", "skull")):
    """Neuraxis profile of every time point of a study.

    Parameters
    ----------
    study : Study
        The loaded study (its emission images are used).
    labels_per_timepoint : list of LabelMap
        Regions on each time point's emission grid
        (``QuantResult.labels_per_timepoint``).
    calibrations : list of Calibration
        ``QuantResult.calibrations`` (``mbq_per_voxel_per_unit``).
    params : DoseParameters
        ``QuantResult.params`` (injected activity, injection time, half-life).
    centreline : Centreline or list, optional
        One centreline for all time points (in their common world space) or
        one per time point; rebuilt from each time point's canal labels when
        omitted (this follows motion captured by the label propagation).
    step_mm, margin_mm, margin_into
        See :func:`neuraxis_profile`.

    Returns
    -------
    pandas.DataFrame
        All time points stacked; ``df.attrs["timepoints"]`` lists each time
        point's attributes (injection level and its source) and
        ``df.attrs["warnings"]`` the time points skipped (no canal voxel on
        their grid).
    """
    import pandas as pd

    from ..physics import decay_factor

    hl = params.half_life_h.value
    a_inj = params.injected_mbq.value
    frames, attrs, warnings = [], [], []
    for n, (tp, lab, cal) in enumerate(zip(study.timepoints, labels_per_timepoint, calibrations)):
        img = tp.emission.image
        canal_idx = [k for k, v in lab.names.items() if v in CANAL_LEVELS]
        if not np.isin(lab.image.array, canal_idx).any():
            warnings.append(f"time point {tp.index}: no canal region on its emission grid: no neuraxis profile")
            continue
        act = img.with_array(np.asarray(img.array, float) * cal.mbq_per_voxel_per_unit, units="MBq")
        t_h = params.hours_after_injection(tp.acquisition_start)
        cl = centreline[n] if isinstance(centreline, (list, tuple)) else centreline
        df = neuraxis_profile(act, lab, injected_mbq=a_inj, decay_factor=float(decay_factor(t_h, hl)),
                              centreline=cl, step_mm=step_mm, margin_mm=margin_mm, margin_into=margin_into,
                              time_h=t_h, timepoint=tp.index)
        frames.append(df)
        attrs.append(dict(df.attrs, timepoint=tp.index))
    out = (pd.concat(frames, ignore_index=True) if frames
           else pd.DataFrame(columns=list(PROFILE_COLUMNS)))
    out.attrs["timepoints"] = attrs
    out.attrs["warnings"] = warnings
    return out


# -------------------------------------------------------------------- front
def _front_one(d: np.ndarray, pos: np.ndarray, v: np.ndarray, fraction: float, reference: str):
    """Front of one profile: slab distances ``d`` (ascending), positions ``pos``, values ``v`` (no NaN).

    Returns ``(distance, position, reached_end, threshold)``.
    """
    if len(d) == 0:
        return np.nan, np.nan, False, np.nan
    i0 = int(np.argmin(np.abs(d)))  # slab of the injection level
    ros = np.arange(i0, len(d))
    if reference == "peak":
        ref = float(v[ros].max())
    elif reference == "injection":
        ref = float(v[i0])
    else:
        raise ValueError("reference must be 'peak' or 'injection'")
    thr = fraction * ref
    if not ref > 0:
        return np.nan, np.nan, False, thr
    start = i0 + int(np.argmax(v[ros] >= ref)) if reference == "peak" else i0
    for i in range(start + 1, len(d)):
        if v[i] < thr:
            a, b = v[i - 1], v[i]
            f = (a - thr) / (a - b) if a != b else 0.0
            return d[i - 1] + f * (d[i] - d[i - 1]), pos[i - 1] + f * (pos[i] - pos[i - 1]), False, thr
    return d[-1], pos[-1], True, thr


def tracer_front(profile, *, fraction: float = 0.5, reference: str = "peak", value: str = "pct_id_per_ml"):
    """Rostral tracer front of each time point.

    Walking rostrally from the peak (at or rostral of the injection level),
    the front is the first place where the profile falls below ``fraction``
    of the reference, interpolated linearly between slabs placed at the mean
    arc length of their voxels (``voxel_position_mm``, so the interpolation
    follows the voxels, not the slab grid). Empty slabs are skipped.

    The default uses the mean concentration in each slab (``pct_id_per_ml``),
    which does not change with the canal's cross-section or with how many
    voxels fall in a slab, and half of its peak (the half-maximum edge of a
    sharp front). ``value="pct_id_per_cm"`` with ``fraction=0.1`` gives the
    leading edge of the linear density instead.

    Parameters
    ----------
    profile : pandas.DataFrame
        From :func:`neuraxis_profile` or :func:`profile_study`.
    fraction : float
        Threshold as a fraction of the reference.
    reference : {'peak', 'injection'}
        The profile's maximum rostral of the injection level, or its value at
        the injection level.
    value : str
        Profile column to use.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`FRONT_COLUMNS`.

    Examples
    --------
    >>> import pandas as pd
    >>> p = pd.DataFrame({"timepoint": 0, "time_h": 1.0, "distance_mm": [-2.0, 0.0, 2.0, 4.0, 6.0],
    ...                   "position_mm": [1.0, 3.0, 5.0, 7.0, 9.0],
    ...                   "pct_id_per_cm": [0.0, 1.0, 1.0, 0.5, 0.0]})
    >>> float(tracer_front(p, fraction=0.5, value="pct_id_per_cm")["front_distance_mm"].iloc[0])
    4.0
    """
    import pandas as pd

    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    rows = []
    for tp, g in profile.groupby("timepoint", sort=True):
        g = g[np.isfinite(g[value].to_numpy(float))]
        if "voxel_position_mm" in g:
            g = g[np.isfinite(g["voxel_position_mm"].to_numpy(float))]
            pos = g["voxel_position_mm"].to_numpy(float)
            d = pos - (g["position_mm"].to_numpy(float) - g["distance_mm"].to_numpy(float))
        else:
            pos, d = g["position_mm"].to_numpy(float), g["distance_mm"].to_numpy(float)
        o = np.argsort(d, kind="stable")
        fd, fpos, end, thr = _front_one(d[o], pos[o], g[value].to_numpy(float)[o], fraction, reference)
        rows.append({"timepoint": int(tp), "time_h": float(profile.loc[profile["timepoint"] == tp, "time_h"].iloc[0]),
                     "front_distance_mm": fd, "front_position_mm": fpos, "reached_end": end,
                     "threshold": thr, "value": value, "reference": reference, "fraction": fraction})
    return pd.DataFrame(rows, columns=list(FRONT_COLUMNS))


# ------------------------------------------------------------------ output
def plot_profile(profile, path, *, front=None, value: str = "pct_id_per_cm"):
    """Save a figure of the profile: heat map (distance x time) and overlaid profiles with fronts.

    Parameters
    ----------
    profile : pandas.DataFrame
        From :func:`profile_study`.
    path : path-like
        PNG file to write (atomically).
    front : pandas.DataFrame, optional
        From :func:`tracer_front` (its defaults when omitted).
    value : str
        Profile column to draw.
    """
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: rendered by Agg, no global backend state

    from ..io_utils import atomic_path

    if front is None:
        front = tracer_front(profile)
    tps = sorted(profile["timepoint"].unique())
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    ax0, ax1 = fig.subplots(1, 2)
    times = [float(profile.loc[profile["timepoint"] == t, "time_h"].iloc[0]) for t in tps]
    # heat map: rows = time points (ordered), columns = distance
    dmin, dmax = float(profile["distance_mm"].min()), float(profile["distance_mm"].max())
    grid_d = np.linspace(dmin, dmax, 200)
    z = np.array([np.interp(grid_d, *profile.loc[profile["timepoint"] == t, ["distance_mm", value]]
                            .sort_values("distance_mm").to_numpy().T) for t in tps])
    im = ax0.imshow(z, aspect="auto", origin="lower", extent=(dmin, dmax, -0.5, len(tps) - 0.5),
                    cmap="viridis", interpolation="nearest")
    ax0.set_yticks(range(len(tps)), [f"{t:.2f} h" for t in times])
    ax0.set_xlabel("distance from injection level along the canal (mm, rostral +)")
    ax0.set_ylabel("scan")
    fig.colorbar(im, ax=ax0, label=value.replace("_", " "))
    fr = front.set_index("timepoint")
    for n, t in enumerate(tps):
        if t in fr.index and np.isfinite(fr.loc[t, "front_distance_mm"]):
            ax0.plot([fr.loc[t, "front_distance_mm"]] * 2, [n - 0.45, n + 0.45], color="w", lw=2)
    cmap = matplotlib.colormaps["plasma"]
    for n, t in enumerate(tps):
        g = profile[profile["timepoint"] == t].sort_values("distance_mm")
        c = cmap(n / max(1, len(tps) - 1) * 0.85)
        ax1.plot(g["distance_mm"], g[value], color=c, label=f"{times[n]:.2f} h")
        if t in fr.index and np.isfinite(fr.loc[t, "front_distance_mm"]):
            ax1.axvline(fr.loc[t, "front_distance_mm"], color=c, ls="--", lw=1)
    ax1.axvline(0.0, color="k", lw=0.8)
    ax1.set_xlabel("distance from injection level (mm, rostral +)")
    ax1.set_ylabel(value.replace("_", " "))
    ax1.set_title("neuraxis profile; dashed: tracer front")
    ax1.legend(fontsize="small")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path


def write_profile(profile, out_dir, *, fraction: float = 0.5, reference: str = "peak", value: str = "pct_id_per_ml",
                  plot: bool = True) -> dict:
    """Write ``neuraxis_profile.csv``, ``neuraxis_front.csv`` and ``neuraxis_profile.png`` into ``out_dir``.

    ``fraction``, ``reference`` and ``value`` are passed to :func:`tracer_front`.

    Returns
    -------
    dict
        File name -> path of what was written.
    """
    from ..io_utils import atomic_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    front = tracer_front(profile, fraction=fraction, reference=reference, value=value)
    written = {}
    for name, df in (("neuraxis_profile.csv", profile), ("neuraxis_front.csv", front)):
        with atomic_path(out / name) as tmp:
            df.to_csv(tmp, index=False, float_format="%.9g")
        written[name] = out / name
    if plot:
        written["neuraxis_profile.png"] = plot_profile(profile, out / "neuraxis_profile.png", front=front)
    return written
