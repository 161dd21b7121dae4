"""Figures of the study report: time-activity curves, maximum-intensity projections, neuraxis profile.

Every function returns a :class:`matplotlib.figure.Figure` drawn on the Agg
canvas, never through pyplot's global state; :func:`figure_png` turns one into
PNG bytes.

Orientation of the projections
------------------------------
Images are put on their nearest world (LPS) axes first (:func:`canonical`), so
every projection is shown head up with millimetre aspect whatever the
acquisition orientation. Coronal views are in radiological convention (the
patient's right on the left of the picture, marked R); sagittal views have
anterior on the left (marked A).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "TAC_GROUPS",
    "region_group",
    "group_regions",
    "tac_figure",
    "CanonicalVolume",
    "canonical",
    "mip_figure",
    "profile_figure",
    "figure_png",
]

#: Panels of the time-activity figures: group title -> regions in the order shown.
TAC_GROUPS: dict[str, tuple[str, ...]] = {
    "CNS and CSF": ("cns", "brain", "spinal_canal", "canal_cervical", "canal_thoracic", "canal_lumbar",
                    "canal_sacral", "injection_site", "csf_space"),
    "Organs and body": ("liver", "kidneys", "bladder", "lymph_nodes", "skull", "vertebrae", "remainder"),
    "Free pertechnetate checks": ("thyroid", "stomach", "salivary_glands"),
    "Field of view": ("field_of_view", "outside_regions"),
}

# keywords sending a user's own region names to a group
_KEYWORDS = (
    ("Free pertechnetate checks", ("thyroid", "stomach", "saliv", "parotid", "submandib")),
    ("CNS and CSF", ("brain", "canal", "spinal", "cord", "csf", "cervical", "thoracic", "lumbar", "sacral",
                     "injection", "cerebr", "ventric", "cistern", "thecal")),
)

_DPI = 110


def region_group(name: str) -> str:
    """The figure group of a region name (:data:`TAC_GROUPS`; other names by keyword).

    Examples
    --------
    >>> region_group("canal_lumbar"), region_group("Left parotid"), region_group("spleen")
    ('CNS and CSF', 'Free pertechnetate checks', 'Organs and body')
    """
    for g, names in TAC_GROUPS.items():
        if name in names:
            return g
    low = name.lower()
    for g, words in _KEYWORDS:
        if any(w in low for w in words):
            return g
    return "Organs and body"


def group_regions(regions) -> dict[str, list[str]]:
    """Regions sorted into :data:`TAC_GROUPS` order (empty groups left out)."""
    out: dict[str, list[str]] = {g: [] for g in TAC_GROUPS}
    for r in dict.fromkeys(str(r) for r in regions):
        out[region_group(r)].append(r)
    for g, names in TAC_GROUPS.items():
        order = {n: i for i, n in enumerate(names)}
        out[g].sort(key=lambda r: order.get(r, len(order)))
    return {g: v for g, v in out.items() if v}


def _without_attrs(frame):
    """A shallow copy of a DataFrame with empty ``attrs`` (anything else as given).

    pandas deep-copies ``attrs`` into the result of every operation (each
    filter, column and row); the region table carries the run's metadata there
    (``attrs["metadata"]``), which the report reads from
    :attr:`~spectrack.report.core.ReportData.metadata` instead, and the
    neuraxis profile its own records.
    """
    import pandas as pd

    if not isinstance(frame, pd.DataFrame) or not frame.attrs:
        return frame
    out = frame.copy(deep=False)
    out.attrs = {}
    return out


def figure_png(fig, dpi: int = _DPI) -> bytes:
    """PNG bytes of a Figure (Agg canvas, no pyplot).

    A figure with a layout engine (constrained layout) is laid out here, at
    ``dpi`` as savefig would, and saved with the engine off: savefig itself
    lays out in a first pass that also draws every artist without rendering,
    then draws them all again. The figure gets its engine back afterwards.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    engine = fig.get_layout_engine()
    if engine is None:
        fig.savefig(buf, format="png", dpi=dpi)
        return buf.getvalue()
    shown_dpi = fig.dpi
    try:
        fig.dpi = dpi  # text extents are in pixels: the layout depends on the dpi it is drawn at
        if fig.axes:  # as Figure.draw does
            try:
                engine.execute(fig)
            except ValueError:  # Figure.draw ignores it too (no room for the layout)
                pass
        with matplotlib.rc_context({"figure.autolayout": False, "figure.constrained_layout.use": False}):
            fig.set_layout_engine(None)
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        fig.dpi = shown_dpi
        fig.set_layout_engine(engine)
    return buf.getvalue()


# ------------------------------------------------------------------ time-activity curves
def _selected_fits(fits, quantity: str = "pct_id", correction: str = "decay_corrected") -> dict[str, dict]:
    """The selected fit row (a dict) of every region that has one, by region name.

    The fits table is filtered once for all regions (a figure or table asks for
    each of its regions); a region's row is its first selected row.
    """
    if fits is None or len(fits) == 0 or "selected" not in fits:
        return {}
    sel = fits["selected"]
    if sel.dtype != bool:
        sel = sel.astype(str).str.lower().isin(["true", "1"])
    f = fits[sel]
    if "quantity" in f:
        f = f[f["quantity"].astype(str) == quantity]
    if "correction" in f:
        f = f[f["correction"].astype(str) == correction]
    first: dict[str, int] = {}
    for pos, region in enumerate(f["region"].astype(str)):
        first.setdefault(region, pos)
    return {region: f.iloc[pos].to_dict() for region, pos in first.items()}


def fit_curve(row: dict):
    """``f(t)`` of a fits-table row (its ``model`` and parameter columns), or None."""
    from ..kinetics.fits import MODELS, model_function

    model = str(row.get("model"))
    if model not in MODELS:
        return None
    params = {}
    for p in MODELS[model].param_names:
        try:
            v = float(row.get(p))
        except (TypeError, ValueError):
            return None
        if not math.isfinite(v):
            return None
        params[p] = v
    return model_function(model, params)


_MODEL_TEXT = {"mono": "mono-exp.", "bi": "bi-exp.", "uptake_washout": "uptake-washout", "transit": "transit"}
#: fits below this R^2 are not drawn
MIN_R_SQUARED_DRAWN = 0.9


def tac_figure(table, regions, *, fits=None, title: str = "", log_y: bool = False, ncols: int = 4):
    """Small multiples of %ID (decay-corrected) over time, one panel per region.

    Points are the measured %ID with their 95 % interval (``pct_id_lo`` /
    ``pct_id_hi``) when the table has them; the line is the selected model of
    ``fits`` (``selected == True`` for quantity ``pct_id``, decay-corrected);
    open diamonds are GTM-corrected %ID (``pct_id_pvc``) when present.

    Parameters
    ----------
    table : pandas.DataFrame
        The quantification table (one subject).
    regions : sequence of str
        One panel each, in this order.
    fits : pandas.DataFrame, optional
        :attr:`KineticsResult.fits`.
    title : str
        Figure title.
    log_y : bool
        Logarithmic %ID axis.
    ncols : int
        Panels per row.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    regions = list(regions)
    n = max(1, len(regions))
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    # fixed margins in inches (a layout engine costs as much as the drawing)
    pw, ph, ws, hs, left, right, top, bottom = 2.55, 1.75, 0.72, 0.78, 0.62, 0.15, 0.62, 0.85
    width = left + ncols * pw + (ncols - 1) * ws + right
    height = top + nrows * ph + (nrows - 1) * hs + bottom
    fig = Figure(figsize=(width, height))
    grid = fig.add_gridspec(nrows, ncols, left=left / width, right=1 - right / width, top=1 - top / height,
                            bottom=bottom / height, wspace=ws / pw, hspace=hs / ph)
    # only the panels shown: an empty cell of the last row costs as much to build as a panel
    axes = [fig.add_subplot(grid[pos // ncols, pos % ncols]) for pos in range(n)]
    has_int = {"pct_id_lo", "pct_id_hi"} <= set(table.columns)
    has_pvc = "pct_id_pvc" in table.columns
    drawn = {"int": False, "fit": False, "fit_issue": False, "pvc": False}
    names = table["region"].astype(str)
    selected = _selected_fits(fits)
    for pos, (ax, region) in enumerate(zip(axes, regions)):
        d = table[names == region].sort_values("time_h")
        t = d["time_h"].to_numpy(float)
        y = d["pct_id"].to_numpy(float)
        tmax = float(np.nanmax(t)) if t.size else 1.0
        positive = [v for v in y if np.isfinite(v) and v > 0]
        if has_int:
            lo = d["pct_id_lo"].to_numpy(float)
            hi = d["pct_id_hi"].to_numpy(float)
            ok = np.isfinite(lo) & np.isfinite(hi)
            if ok.any():
                err = np.vstack([np.clip(y - lo, 0, None), np.clip(hi - y, 0, None)])
                err[:, ~ok] = 0.0
                ax.errorbar(t, y, yerr=err, fmt="none", ecolor="0.35", elinewidth=1.0, capsize=2.5, zorder=2)
                drawn["int"] = True
                positive += [v for v in np.r_[lo[ok], hi[ok]] if v > 0]
        ax.plot(t, y, "o", color="black", ms=4, zorder=3)
        if has_pvc:
            yp = d["pct_id_pvc"].to_numpy(float)
            if np.isfinite(yp).any():
                ax.plot(t, yp, "D", mfc="none", mec="tab:purple", ms=4.5, zorder=3)
                drawn["pvc"] = True
                positive += [v for v in yp if np.isfinite(v) and v > 0]
        row = selected.get(region)
        try:   # a fit with R^2 < 0.9 is never drawn (spectrack.kinetics.fits never selects one either)
            if row is not None and not float(row.get("r_squared")) >= MIN_R_SQUARED_DRAWN:
                row = None
        except (TypeError, ValueError):
            row = None
        f = fit_curve(row) if row is not None else None
        if f is not None and t.size:
            tt = np.linspace(0.0, tmax * 1.02, 400)
            with np.errstate(over="ignore", invalid="ignore"):
                yy = f(tt)
            yy = np.where(np.isfinite(yy), yy, np.nan)
            if log_y:
                yy = np.where(yy > 0, yy, np.nan)
            # keep a wild extrapolation from flattening the data
            top = 1.6 * max(positive) if positive else None
            if top is not None:
                yy = np.where(yy <= top, yy, np.nan)
            quality = row.get("quality")
            ok = quality is None or (isinstance(quality, float) and math.isnan(quality)) or str(quality) == "ok"
            ax.plot(tt, yy, "-" if ok else "--", color="tab:red", lw=1.4 if ok else 1.1, zorder=2.5)
            drawn["fit" if ok else "fit_issue"] = True
            crit = row.get("criterion") or ""
            r2 = row.get("r_squared")
            txt = _MODEL_TEXT.get(str(row.get("model")), str(row.get("model")))
            try:
                if r2 is not None and math.isfinite(float(r2)):
                    txt += f", R² {float(r2):.2f}"
            except (TypeError, ValueError):
                pass
            if crit:
                txt += f" ({crit})"
            if not ok:
                txt += "\nnot used for extrapolation"
            ax.text(0.98, 0.97, txt, transform=ax.transAxes, ha="right", va="top", fontsize=7, color="tab:red",
                    bbox=dict(boxstyle="square,pad=0.15", fc="white", ec="none", alpha=0.85), zorder=5)
        kind = str(d["kind"].iloc[0]) if "kind" in d and len(d) else "region"
        ax.set_title(region + (" (sum of regions)" if kind == "group" else ""), fontsize=9)
        if pos + ncols >= n:  # no panel below: label the time axis
            ax.set_xlabel("time after injection (h)", fontsize=8)
        if pos % ncols == 0:
            ax.set_ylabel("%ID, decay-corrected", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlim(left=0.0, right=tmax * 1.05 if tmax > 0 else 1.0)
        ax.grid(True, color="0.92", lw=0.6)
        if log_y and positive:
            ax.set_yscale("log")
            ax.set_ylim(min(positive) / 2.0, max(positive) * 4.0)
        elif not log_y:
            ax.set_ylim(bottom=0.0, top=(max(positive) * 1.3) if positive else 1.0)
    handles = [Line2D([], [], ls="none", marker="o", color="black", ms=4)]
    labels = ["%ID (decay-corrected)" + (" with 95 % interval" if drawn["int"] else "")]
    if drawn["fit"]:
        handles.append(Line2D([], [], color="tab:red", lw=1.4))
        labels.append("selected fit (model, criterion)")
    if drawn["fit_issue"]:
        handles.append(Line2D([], [], color="tab:red", lw=1.1, ls="--"))
        labels.append("selected fit with quality issues (see Kinetics)")
    if drawn["pvc"]:
        handles.append(Line2D([], [], ls="none", marker="D", mfc="none", mec="tab:purple", ms=4.5))
        labels.append("%ID, partial-volume corrected (GTM)")
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.04 / height), ncol=len(handles),
               fontsize=8, frameon=False)
    if title:
        fig.suptitle(title + (" (log scale)" if log_y else ""), fontsize=11, y=1 - 0.1 / height, va="top")
    return fig


# ------------------------------------------------------------------ projections
@dataclass
class CanonicalVolume:
    """A volume on its nearest world axes: ``array[z, y, x]`` (LPS, increasing).

    ``spacing_mm`` and ``first_mm`` are (x, y, z): voxel size and world
    position of the first voxel centre along each axis. ``oblique`` is True
    when the grid was not aligned with the world axes (shown along the nearest).
    """

    array: np.ndarray
    spacing_mm: np.ndarray
    first_mm: np.ndarray
    oblique: bool = False

    def centres(self, axis: int) -> np.ndarray:
        """World coordinates (mm) of voxel centres along world axis 0 (x), 1 (y) or 2 (z)."""
        n = self.array.shape[2 - axis]
        return self.first_mm[axis] + self.spacing_mm[axis] * np.arange(n)

    def extent(self, axis: int) -> tuple[float, float]:
        c = self.centres(axis)
        h = self.spacing_mm[axis] / 2.0
        return float(c[0] - h), float(c[-1] + h)


def canonical(image, array=None) -> CanonicalVolume:
    """Reorder and flip an :class:`~spectrack.geometry.Image` (or ``array`` on its grid) to LPS axes.

    Examples
    --------
    >>> from spectrack.geometry import Image
    >>> img = Image(np.arange(24.0).reshape(2, 3, 4), origin_mm=(0, 0, 10), spacing_mm=(1, 2, 3),
    ...             direction=np.diag([1.0, 1.0, -1.0]))
    >>> v = canonical(img)
    >>> v.array.shape, v.first_mm.tolist(), float(v.array[0, 0, 0])
    ((2, 3, 4), [0.0, 0.0, 7.0], 12.0)
    """
    arr = np.asarray(image.array if array is None else array)
    d = np.asarray(image.direction, dtype=float)
    sp = np.asarray(image.spacing_mm, dtype=float)
    origin = np.asarray(image.origin_mm, dtype=float)
    world_of = [int(np.argmax(np.abs(d[:, n]))) for n in range(3)]  # index axis i, j, k -> world axis
    oblique = False
    if sorted(world_of) != [0, 1, 2]:
        world_of, oblique = [0, 1, 2], True
    oblique = oblique or any(abs(d[world_of[n], n]) < 0.999 for n in range(3))
    n_of_world = {w: n for n, w in enumerate(world_of)}
    # output array axes (z, y, x) = world axes (2, 1, 0); index axis n is array axis 2 - n
    perm = [2 - n_of_world[2 - m] for m in range(3)]
    out = np.transpose(arr, perm)
    spacing = np.zeros(3)
    first = np.zeros(3)
    for w in range(3):
        n = n_of_world[w]
        sign = 1.0 if d[w, n] >= 0 else -1.0
        size = arr.shape[2 - n]
        spacing[w] = sp[n]
        first[w] = origin[w] + (sign * sp[n] * (size - 1) if sign < 0 else 0.0)
        if sign < 0:
            out = np.flip(out, axis=2 - w)
    return CanonicalVolume(np.ascontiguousarray(out), spacing, first, oblique)


def _region_colours(names: list[str]) -> dict[str, tuple]:
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    out = {}
    k = 0
    for n in names:
        if n == "remainder":
            out[n] = (0.55, 0.55, 0.55, 1.0)
            continue
        out[n] = cmap((2 * k) % 20 + (k // 10) % 2)
        k += 1
    return out


def _outline(x, y, mask2d, up: int = 4, origin: tuple[int, int] = (0, 0)) -> list[np.ndarray]:
    """Outlines (list of (n, 2) arrays in world mm) of a 2-D mask on voxel centres x (columns), y (rows).

    The mask is upsampled ``up`` times (nearest) so that the outline follows
    the voxel edges (corners cut by 1/``up`` of a voxel). ``mask2d`` may be a
    crop of the grid of ``x`` and ``y`` whose first element is at (row,
    column) ``origin``: everything outside it must be False.
    """
    from skimage.measure import find_contours

    if not mask2d.any():
        return []
    m = np.pad(np.repeat(np.repeat(mask2d, up, axis=0), up, axis=1).astype(np.float32), 1)
    dx = x[1] - x[0] if x.size > 1 else 1.0
    dy = y[1] - y[0] if y.size > 1 else 1.0
    # marching squares only sees the crop's own values and its zero pad, so the contours of a crop are those of
    # the whole grid shifted by whole sub-voxels (exact in floating point): same vertices, same order
    r0, c0 = up * origin[0], up * origin[1]
    # sub-voxel centre n (after the 1-pixel pad) lies at voxel 0's lower edge + (n - 1 + 0.5) / up voxels
    return [np.column_stack([x[0] - dx / 2 + (c[:, 1] + c0 - 0.5) * dx / up,
                             y[0] - dy / 2 + (c[:, 0] + r0 - 0.5) * dy / up])
            for c in find_contours(m, 0.5)]


def _label_boxes(array) -> dict[int, tuple]:
    """Bounding box (a tuple of slices) of each non-zero label of an integer volume.

    One pass over the volume (:func:`scipy.ndimage.find_objects`) instead of
    one comparison of the whole volume per label. Label values that are not
    small non-negative integers get the whole volume as their box.
    """
    a = np.asarray(array)
    if a.size and np.issubdtype(a.dtype, np.integer) and a.min() >= 0 and a.max() <= 65535:
        from scipy.ndimage import find_objects

        return {n + 1: box for n, box in enumerate(find_objects(a)) if box is not None}
    whole = tuple(slice(None) for _ in a.shape)
    return {int(v): whole for v in np.unique(a) if v != 0}


def mip_figure(volumes, labels=None, *, titles=None, names=None, max_per_row: int | None = None,
               value_label: str = "%ID/mL, decay-corrected", gamma: float = 0.5):
    """Coronal and sagittal maximum-intensity projections of every time point.

    Parameters
    ----------
    volumes : sequence of CanonicalVolume
        Values to project, one per time point (see :func:`canonical`).
    labels : sequence of CanonicalVolume or None, optional
        Integer label volumes on the same grids; each region is outlined where
        its projected mask ends.
    titles : sequence of str, optional
        One per time point.
    names : dict of int to str, optional
        Region names of the label values (legend).
    max_per_row : int, optional
        Time points per row (default: as many as fit in about 15 inches).
    value_label : str
        Colour-bar label.
    gamma : float
        Exponent of the colour scale (:class:`~matplotlib.colors.PowerNorm`):
        below 1 shows low activity next to hot spots.

    Returns
    -------
    Figure
    """
    from matplotlib.collections import LineCollection
    from matplotlib.colors import PowerNorm
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    vols = list(volumes)
    n = len(vols)
    if n == 0:
        raise ValueError("no volumes to project")
    names = dict(names or {})
    wx = max(v.extent(0)[1] - v.extent(0)[0] for v in vols)
    wy = max(v.extent(1)[1] - v.extent(1)[0] for v in vols)
    hz = max(v.extent(2)[1] - v.extent(2)[0] for v in vols)
    panel_h = 4.0  # inches of height of the projections in one row
    pair_w = panel_h * (wx + wy) / hz + 1.0  # plus axis labels
    if max_per_row is None:
        max_per_row = max(1, int(14.0 // pair_w))
    nrows = math.ceil(n / max_per_row)
    per_row = math.ceil(n / nrows)
    legend_w = 1.9
    width = per_row * pair_w + legend_w
    height = nrows * (panel_h + 1.0) + 0.2
    fig = Figure(figsize=(width, height), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[per_row * pair_w, legend_w], wspace=0.0)
    cells = np.atleast_1d(left.subfigures(nrows, per_row, squeeze=False)).ravel()
    # one colour scale: the 99.5th percentile of the projections (hot single voxels saturate)
    proj_vals, projected = [], []
    for v in vols:
        a = np.where(np.isfinite(v.array), v.array, 0.0)
        coronal, sagittal = a.max(axis=1), a.max(axis=2)
        projected.append((coronal, sagittal))
        p = np.concatenate([coronal.ravel(), sagittal.ravel()])
        proj_vals.append(p[p > 0])
    allv = np.concatenate(proj_vals) if proj_vals else np.zeros(0)
    vmax = float(np.percentile(allv, 99.5)) if allv.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    saturated = bool(allv.size and allv.max() > vmax * 1.001)
    norm = PowerNorm(gamma=gamma, vmin=0.0, vmax=vmax)
    present: dict[int, str] = {}
    boxes = []  # per label volume: label -> bounding box of its voxels
    if labels is not None:
        for lv in labels:
            boxes.append(_label_boxes(lv.array) if lv is not None else {})
            for v in boxes[-1]:
                present[v] = names.get(v, f"label_{v}")
    ordered = [present[k] for k in sorted(present)]
    colours = _region_colours(ordered)
    im = None
    for i, cell in enumerate(cells):
        if i >= n:
            cell.set_facecolor("white")
            continue
        v = vols[i]
        axs = cell.subplots(1, 2, width_ratios=[wx, wy], squeeze=True)
        coronal, sagittal = projected[i]
        x, y, z = v.centres(0), v.centres(1), v.centres(2)
        # the maximum of values clipped at 0 is the clipped maximum
        projections = (
            (axs[0], coronal.clip(min=0.0), v.extent(0), x, 1, ("R", "L"), "coronal", "right – left (mm)"),
            (axs[1], sagittal.clip(min=0.0), v.extent(1), y, 2, ("A", "P"), "sagittal", "anterior – posterior (mm)"),
        )
        lab = labels[i] if labels is not None and i < len(labels) else None
        lab_boxes = boxes[i] if lab is not None else {}
        for ax, proj, (h0, h1), hc, lab_axis, (a, b), view, xlabel in projections:
            im = ax.imshow(proj, origin="lower", cmap="gray_r", norm=norm, interpolation="nearest",
                           extent=(h0, h1, *v.extent(2)), aspect="equal")
            if lab is not None:
                la = lab.array
                segs, cols, widths, styles = [], [], [], []
                for idx in sorted(present):
                    if idx not in lab_boxes:  # not on this time point's grid
                        continue
                    name = present[idx]
                    box = lab_boxes[idx]  # (z, y, x) slices; the projection keeps z and the other axis
                    kept = box[0], box[3 - lab_axis]
                    mask = np.any(la[box] == idx, axis=lab_axis)
                    for seg in _outline(hc, z, mask, origin=(kept[0].start or 0, kept[1].start or 0)):
                        segs.append(seg)
                        cols.append(colours[name])
                        widths.append(0.6 if name == "remainder" else 0.9)
                        styles.append((0, (3, 2)) if name == "remainder" else "solid")
                if segs:
                    ax.add_collection(LineCollection(segs, colors=cols, linewidths=widths, linestyles=styles))
            ax.set_title(view, fontsize=8)
            ax.tick_params(labelsize=6)
            ax.set_xlabel(xlabel, fontsize=7)
            for pos, letter in ((0.03, a), (0.97, b)):
                ax.text(pos, 0.985, letter, transform=ax.transAxes, ha="left" if pos < 0.5 else "right",
                        va="top", fontsize=8, fontweight="bold", color="tab:blue")
        axs[0].set_ylabel("feet – head (mm)", fontsize=7)
        axs[1].tick_params(labelleft=False)
        cell.suptitle(titles[i] if titles else f"time point {i}", fontsize=9)
    ax_cb, ax_leg = right.subplots(2, 1, height_ratios=[1.0, 1.4 if nrows > 1 else 1.0])
    fig.colorbar(im, cax=ax_cb, label=value_label, extend="max" if saturated else "neither", extendfrac=0.04)
    ax_cb.set_box_aspect(14)
    ax_cb.yaxis.label.set_size(8)
    ax_cb.tick_params(labelsize=7)
    ax_leg.axis("off")
    if ordered:
        handles = [Line2D([], [], color=colours[nm], lw=1.5, ls="--" if nm == "remainder" else "-")
                   for nm in ordered]
        ax_leg.legend(handles, ordered, loc="upper left", fontsize=7, frameon=False, title="region outlines",
                      title_fontsize=8, borderaxespad=0.0)
    return fig


# ------------------------------------------------------------------ neuraxis profile

def profile_figure(profile, *, value: str = "pct_id_per_cm"):
    """Activity along the neuraxis, one line per time point, and the rostral spread over time.

    The spread is :func:`spectrack.regions.neuraxis.spread_measures` of the
    profile: the leading edge (the distance beyond which 10 % of the canal's
    activity lies) drawn dashed on the profiles and against time with the
    spread rate, and the fractions of the canal's activity rostral of the
    lumbar and thoracic levels against time, with the arrival time at the
    skull base. These integrate the whole profile, so they do not jump when a
    second peak appears as a half-maximum front does.

    Parameters
    ----------
    profile : pandas.DataFrame
        :func:`spectrack.regions.neuraxis.profile_study`: ``time_h``,
        ``distance_mm`` (from the injection level, positive rostral), ``value``
        and optionally ``level``; the spread panels need ``timepoint``,
        ``position_mm`` and ``mbq`` as well.
    value : str
        Column to draw.

    Returns
    -------
    Figure or None
        None when the table lacks ``time_h``, ``distance_mm`` or ``value``.
    """
    import matplotlib
    from matplotlib.figure import Figure

    if profile is None or profile.empty or not {"time_h", "distance_mm", value} <= set(profile.columns):
        return None
    times = sorted(profile["time_h"].astype(float).unique())
    spread = None
    if {"timepoint", "position_mm", "distance_mm", "mbq", "pct_id", "level"} <= set(profile.columns):
        from ..regions.neuraxis import spread_measures

        spread = spread_measures(profile).sort_values("time_h")
    fig = Figure(figsize=(14.0 if spread is not None else 9.0, 4.4), layout="constrained")
    if spread is not None:
        ax, ax2, ax3 = fig.subplots(1, 3, width_ratios=[2.4, 1.0, 1.0])
    else:
        ax, ax2, ax3 = fig.subplots(1, 1), None, None
    cmap = matplotlib.colormaps["viridis"]
    colour = {t: cmap(0.9 * i / max(1, len(times) - 1)) for i, t in enumerate(times)}
    plain = _without_attrs(profile)  # the lines' selections, without deep copies of the profile's attrs
    hours = plain["time_h"].astype(float)
    if "level" in profile.columns:  # canal levels as bands, from the first time point
        first = plain[hours == times[0]]
        shades = ("0.96", "0.90")
        for i, (lev, g) in enumerate(first.groupby("level", sort=False)):
            lo, hi = float(g["distance_mm"].min()), float(g["distance_mm"].max())
            ax.axvspan(lo, hi, color=shades[i % 2], lw=0, zorder=0)
            ax.text((lo + hi) / 2, 1.0, str(lev).replace("canal_", ""), transform=ax.get_xaxis_transform(),
                    ha="center", va="bottom", fontsize=8, color="0.3")
    for t in times:
        d = plain[hours == t].sort_values("distance_mm")
        ax.plot(d["distance_mm"].to_numpy(float), d[value].to_numpy(float), "-", color=colour[t], lw=1.5,
                label=f"{t:.2f} h")
    if spread is not None:
        for t, x in zip(spread["time_h"].astype(float), spread["leading_edge_mm"].astype(float)):
            if math.isfinite(x) and t in colour:
                ax.axvline(x, color=colour[t], ls="--", lw=0.9)
    ax.axvline(0.0, color="tab:red", lw=1.0, ls=":")
    ax.text(0.0, 0.97, " injection level", transform=ax.get_xaxis_transform(), ha="left", va="top",
            fontsize=8, color="tab:red")
    ax.set_xlabel("distance from the injection level along the canal (mm; positive = rostral)", fontsize=9)
    from ..regions.neuraxis import PROFILE_AXIS_LABELS

    ax.set_ylabel(PROFILE_AXIS_LABELS.get(value, value), fontsize=9)
    ax.set_ylim(bottom=0.0)
    ax.tick_params(labelsize=8)
    ax.legend(title="time after injection" + ("  (dashed: the leading edge)" if spread is not None else ""),
              fontsize=8, title_fontsize=8, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.13),
              ncol=min(len(times), 8))
    if spread is None:
        return fig
    x = spread["time_h"].to_numpy(float)
    edge = spread["leading_edge_mm"].to_numpy(float)
    ax2.plot(x, edge, "o-", color="black", ms=4, lw=1.0, label="leading edge")
    rate = spread.attrs.get("spread_rate_mm_per_h")
    used = spread.attrs.get("spread_rate_timepoints")
    if rate is not None and math.isfinite(rate) and used:
        sel = spread["timepoint"].isin(used).to_numpy()
        if sel.sum() >= 2:
            xs, ys = x[sel], edge[sel]
            fit = np.polyfit(xs, ys, 1)
            ax2.plot(xs, np.polyval(fit, xs), "-", color="tab:red", lw=1.2,
                     label=f"spread rate {rate:.3g} mm/h")
    ax2.set_title("Leading edge: 10 % of the canal's\nactivity lies rostral of it", fontsize=9)
    ax2.set_xlabel("time after injection (h)", fontsize=9)
    ax2.set_ylabel("distance from injection level (mm)", fontsize=9)
    ax2.set_xlim(left=0.0)
    ax2.tick_params(labelsize=8)
    ax2.grid(True, color="0.92", lw=0.6)
    ax2.legend(fontsize=8, frameon=False, loc="lower right")
    for col, lab, c in (("rostral_of_lumbar", "rostral of the lumbar canal", "tab:blue"),
                        ("rostral_of_thoracic", "rostral of the thoracic canal (cervical)", "tab:green")):
        if col in spread.columns:
            ax3.plot(x, 100.0 * spread[col].to_numpy(float), "o-", color=c, ms=4, lw=1.0, label=lab)
    arrival = spread.attrs.get("arrival_time_h")
    if arrival is not None and math.isfinite(arrival):
        early = bool(spread.attrs.get("arrival_before_first_scan"))
        ax3.axvline(arrival, color="0.3", ls=":", lw=1.0,
                    label=f"skull base reached {'by' if early else 'at'} {arrival:.2g} h")
    ax3.set_title("Cumulative fraction of the\ncanal's activity", fontsize=9)
    ax3.set_xlabel("time after injection (h)", fontsize=9)
    ax3.set_ylabel("% of the canal's activity", fontsize=9)
    ax3.set_xlim(left=0.0)
    ax3.set_ylim(0.0, 100.0)
    ax3.tick_params(labelsize=8)
    ax3.grid(True, color="0.92", lw=0.6)
    ax3.legend(fontsize=7, frameon=False, loc="upper left")
    return fig
