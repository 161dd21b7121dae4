"""Curve dock: time-activity curves of the last quantification, following the time slider.

The curves come from ``layer.metadata["spectrack"]["table"]`` of a Labels
layer (the quantify dock puts them there): the selected layer's, else those
of the study opened last (an older study's curves are never shown for a newer
one). The dock redraws when that metadata changes (a re-quantification), when
the layer selection changes and when the time slider moves (a dashed line
marks the current time point). Ticks in the region list beside the plot choose
the curves (first :data:`DEFAULT_REGIONS`: the CNS group and the organs), each
in its own colour, shown as a swatch in the list.

Fits: the model chosen by :mod:`spectrack.kinetics` (AICc among mono-,
bi-exponential and uptake-washout). They are taken from the run's kinetics
when the pipeline computed them, otherwise fitted here in a worker thread
(the points show at once, the fitted lines when ready). Interval bounds in
the table (``<column>_lo`` / ``<column>_hi``) are drawn as error bars.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D
from napari_matplotlib.base import SingleAxesWidget
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ._layers import METADATA_KEY
from ._timeaxis import follow_time_axis

__all__ = ["CurveWidget", "QUANTITIES", "DEFAULT_REGIONS", "default_regions", "curve_colours"]

log = logging.getLogger(__name__)

#: Shown quantity -> (kinetics key, decay-corrected column, physical column, unit, scale).
QUANTITIES = {
    "%ID": ("pct_id", "pct_id", "pct_id_uncorrected", "%ID", 1.0),
    "concentration": ("bq_per_ml", "mean_bq_per_ml_decay_corrected", "mean_bq_per_ml", "kBq/mL", 1e-3),
    "%ID/mL": ("pct_id_per_ml", "pct_id_per_ml", None, "%ID/mL", 1.0),
    "activity": ("activity_mbq", "activity_mbq_decay_corrected", "activity_mbq", "MBq", 1.0),
}
_KINDS = ("region", "group")
#: Plotted first: the CNS group and the organs (the other regions are a tick away).
DEFAULT_REGIONS = ("cns", "liver", "kidneys", "bladder")


def default_regions(names) -> list[str]:
    """The regions plotted at first, in ``names`` order.

    The ``cns`` group (else the CNS regions there are: brain, canal levels)
    and the organs of :data:`DEFAULT_REGIONS`; for label maps with none of
    these names, the first six.

    Examples
    --------
    >>> default_regions(["brain", "canal_lumbar", "liver", "thyroid", "cns", "field_of_view"])
    ['liver', 'cns']
    >>> default_regions(["brain", "liver", "spleen"])
    ['brain', 'liver']
    """
    from spectrack.regions.vocabulary import GROUPS

    names = list(names)
    wanted = set(DEFAULT_REGIONS) if "cns" in names else (set(DEFAULT_REGIONS) - {"cns"}) | set(GROUPS["cns"])
    chosen = [n for n in names if n in wanted]
    return chosen or names[:6]


def curve_colours(names) -> dict:
    """A distinct colour per curve: ``tab10`` for up to 10 curves, else the 20 of ``tab20`` (strong ones first)."""
    import matplotlib

    names = list(names)
    if len(names) <= 10:
        cmap = matplotlib.colormaps["tab10"]
        return {n: cmap(k) for k, n in enumerate(names)}
    cmap = matplotlib.colormaps["tab20"]
    return {n: cmap((2 * k) % 20 + (k // 10) % 2) for k, n in enumerate(names)}


def _has_kinetics() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("spectrack.kinetics.fits") is not None
    except (ImportError, ValueError):
        return False


def fit_curves(curves: dict, *, decay_corrected: bool, half_life_h) -> dict:
    """``{region: callable(t) or None}``: the AICc-best kinetics fit of each curve (runs in a worker)."""
    from spectrack.kinetics.fits import fit_models

    out = {}
    for region, (t, y) in curves.items():
        ok = np.isfinite(t) & np.isfinite(y)
        best = None
        if ok.sum() >= 3 and (decay_corrected or half_life_h):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    best = fit_models(t[ok], y[ok], decay_corrected=decay_corrected, half_life_h=half_life_h,
                                      weighting="relative").best
            except (ValueError, RuntimeError, ArithmeticError, np.linalg.LinAlgError) as e:
                log.debug("fit of %s failed: %s", region, e)
        out[region] = best.predict if _acceptable(best) else None
    return out


def _acceptable(fit) -> bool:
    """A converged fit without quality issues (R^2, points after the peak, bounds: spectrack.kinetics)."""
    if fit is None or not fit.converged:
        return False
    issues = getattr(fit, "quality_issues", None)
    return not (issues() if callable(issues) else [])


def _fits_from_kinetics(kinetics, quantity: str, correction: str, scale: float) -> dict:
    """``{region: callable or None}`` from a pipeline :class:`~spectrack.kinetics.analyse.KineticsResult`.

    None marks a region whose chosen fit has quality issues (the ``quality``
    column is not ``"ok"``): better no line than a misleading one.
    """
    fits = getattr(kinetics, "fits", None)
    if fits is None or getattr(fits, "empty", True) or "selected" not in fits:
        return {}
    from spectrack.kinetics.fits import MODELS, model_function

    sel = fits[fits["selected"].astype(bool)]
    if "quantity" in sel:
        sel = sel[sel["quantity"] == quantity]
    if "correction" in sel:
        sel = sel[sel["correction"] == correction]
    out = {}
    for _, row in sel.iterrows():
        model = row.get("model")
        if model not in MODELS:
            continue
        if str(row.get("quality", "ok")) != "ok" or not bool(row.get("converged", True)):
            out[str(row["region"])] = None
            continue
        f = model_function(model, {p: float(row[p]) for p in MODELS[model].param_names})
        out[str(row["region"])] = (lambda t, f=f: f(np.asarray(t, float)) * scale)
    return out


class CurveWidget(SingleAxesWidget):
    """Time-activity curves of chosen regions (napari-matplotlib dock).

    The region list beside the plot says which curves are drawn (tick them)
    and in which colour; it starts with :data:`DEFAULT_REGIONS` (the CNS
    group and the organs) rather than every region at once.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(napari_viewer, parent=parent)
        self._source = None  # the Labels layer whose results are shown
        self._shown_key = None  # (layer id, study path, region names) the ticks belong to
        self._studies: list[str] = []  # study paths in the order their images were opened
        self._fits: dict = {}  # (run, quantity, correction, region) -> callable or None
        self._fit_worker = None
        self.quantity_combo = QComboBox()
        self.quantity_combo.addItems(list(QUANTITIES))
        self.quantity_combo.setToolTip("quantity plotted")
        self.quantity_combo.currentIndexChanged.connect(self._draw)
        self.decay_check = QCheckBox("decay-corrected")
        self.decay_check.setChecked(True)
        self.decay_check.toggled.connect(self._draw)
        self.fit_check = QCheckBox("fit")
        self.fit_check.setToolTip("kinetic model chosen by AICc (spectrack.kinetics)")
        self.fit_check.setChecked(_has_kinetics())
        self.fit_check.setEnabled(_has_kinetics())
        self.fit_check.toggled.connect(self._draw)
        self.region_list = QListWidget()
        self.region_list.setSelectionMode(QAbstractItemView.NoSelection)
        self.region_list.setToolTip("tick the regions to plot; the colour is the curve's")
        self.region_list.setMinimumWidth(160)
        self.region_list.setMaximumWidth(220)
        self.region_list.itemChanged.connect(self._on_item_changed)
        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        for text, tip, fn in (("default", "the CNS group and the organs", self.reset_regions),
                              ("all", "every region and group", lambda: self.set_regions(self.region_names())),
                              ("none", "clear the ticks", lambda: self.set_regions([]))):
            b = QPushButton(text)
            b.setToolTip(tip)
            b.clicked.connect(fn)
            b.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
            buttons.addWidget(b)
        side = QVBoxLayout()
        side.setContentsMargins(0, 0, 0, 0)
        side.addWidget(self.region_list, stretch=1)
        side.addLayout(buttons)
        side_w = QWidget()
        side_w.setLayout(side)
        side_w.setMaximumWidth(220)
        # one row: [quantity, decay-corrected, fit | matplotlib tools]; below: [plot | regions]
        controls = QWidget()
        row = QHBoxLayout(controls)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.quantity_combo)
        row.addWidget(self.decay_check)
        row.addWidget(self.fit_check)
        lay = self.layout()
        lay.removeWidget(self.toolbar)
        lay.removeWidget(self.canvas)
        top = QHBoxLayout()
        top.addWidget(controls)
        top.addStretch(1)
        top.addWidget(self.toolbar)
        body = QHBoxLayout()
        body.addWidget(self.canvas, stretch=1)
        body.addWidget(side_w)
        lay.addLayout(top)
        lay.addLayout(body, stretch=1)
        self.canvas.setMinimumHeight(260)
        self.viewer.layers.events.inserted.connect(self._on_layers_changed)
        self.viewer.layers.events.removed.connect(self._on_layers_changed)
        for layer in self.viewer.layers:
            layer.events.metadata.connect(self._on_metadata)
            self._note_study(layer)
        follow_time_axis(self.viewer)
        self._update_source(force=True)

    # ------------------------------------------------------------- sources
    @staticmethod
    def _entry(layer) -> dict:
        return (getattr(layer, "metadata", None) or {}).get(METADATA_KEY) or {}

    def _note_study(self, layer) -> None:
        entry = self._entry(layer)
        if entry.get("role") in ("ct", "emission") and entry.get("path"):
            p = str(Path(entry["path"]))
            if p in self._studies:
                self._studies.remove(p)
            self._studies.append(p)

    def current_study(self) -> str | None:
        """Path of the study opened last (whose images are still shown)."""
        present = {str(Path(self._entry(ly)["path"])) for ly in self.viewer.layers
                   if self._entry(ly).get("role") in ("ct", "emission") and self._entry(ly).get("path")}
        for p in reversed(self._studies):
            if p in present:
                return p
        return None

    def _find_source(self):
        """The selected layer with results, else the results of the study opened last (never an older one's)."""
        sel = [ly for ly in self.viewer.layers.selection if self._entry(ly).get("table") is not None]
        if sel:
            return sel[0]
        study = self.current_study()
        with_results = [ly for ly in self.viewer.layers if self._entry(ly).get("table") is not None
                        and (study is None or str(Path(self._entry(ly).get("path") or "")) == study)]
        return with_results[-1] if with_results else None

    def _on_layers_changed(self, event=None) -> None:
        if event is not None and event.type == "inserted":
            event.value.events.metadata.connect(self._on_metadata)
            self._note_study(event.value)
        self._update_source()

    def _on_metadata(self, event=None) -> None:
        self._update_source(force=True)

    def on_update_layers(self) -> None:  # layer selection changed (napari-matplotlib hook)
        self._update_source()

    def _update_source(self, force: bool = False) -> None:
        src = self._find_source()
        if src is self._source and not force:
            return
        self._source = src
        self._fill_regions()
        self._draw()

    def region_names(self) -> list[str]:
        """Groups (``cns``, ``spinal_canal``), then regions of the results shown, in table order."""
        table = self.table
        if table is None:
            return []
        if "kind" not in table:
            return list(dict.fromkeys(table["region"].astype(str)))
        names: list[str] = []
        for kind in ("group", "region"):
            names += list(dict.fromkeys(table.loc[table["kind"] == kind, "region"].astype(str)))
        return names

    def _fill_regions(self) -> None:
        names = self.region_names()
        key = (id(self._source), self._entry(self._source).get("path") if self._source is not None else None,
               tuple(names))
        keep = set(self.selected_regions()) if key == self._shown_key else None
        self._shown_key = key
        self.region_list.blockSignals(True)
        self.region_list.clear()
        for name in names:
            it = QListWidgetItem(name)
            it.setFlags(Qt.ItemIsEnabled | Qt.ItemIsUserCheckable)
            it.setCheckState(Qt.Unchecked)
            self.region_list.addItem(it)
        self.region_list.blockSignals(False)
        self._tick(keep if keep is not None else default_regions(names))

    def _tick(self, names) -> None:
        names = set(names)
        self.region_list.blockSignals(True)
        for i in range(self.region_list.count()):
            it = self.region_list.item(i)
            it.setCheckState(Qt.Checked if it.text() in names else Qt.Unchecked)
        self.region_list.blockSignals(False)

    def set_regions(self, names) -> None:
        """Plot these regions (the others are unticked)."""
        self._tick(names)
        self._draw()

    def reset_regions(self) -> None:
        """Back to the default regions: the CNS group and the organs."""
        self.set_regions(default_regions(self.region_names()))

    def _on_item_changed(self, item=None) -> None:
        self._draw()

    @property
    def table(self):
        """The region table shown (None when there are no results)."""
        return None if self._source is None else self._entry(self._source).get("table")

    def selected_regions(self) -> list[str]:
        """The ticked regions, in list order."""
        return [self.region_list.item(i).text() for i in range(self.region_list.count())
                if self.region_list.item(i).checkState() == Qt.Checked]

    # ----------------------------------------------------------------- data
    def _choice(self):
        q = self.quantity_combo.currentText()
        key, col_dc, col_phys, unit, scale = QUANTITIES[q]
        dc = self.decay_check.isChecked() or col_phys is None
        return q, key, (col_dc if dc else col_phys), dc, unit, scale

    def curves(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{region: (time_h, values)}`` of the selected regions in the chosen quantity."""
        table = self.table
        if table is None:
            return {}
        _, _, col, _, _, scale = self._choice()
        if col not in table:
            return {}
        out = {}
        for region in self.selected_regions():
            df = table[table["region"].astype(str) == region].sort_values("time_h")
            out[region] = (df["time_h"].to_numpy(float), df[col].to_numpy(float) * scale)
        return out

    def _interval(self, region, col, scale):
        table = self.table
        lo, hi = f"{col}_lo", f"{col}_hi"
        if lo not in table or hi not in table:
            return None
        df = table[table["region"].astype(str) == region].sort_values("time_h")
        return df[lo].to_numpy(float) * scale, df[hi].to_numpy(float) * scale

    def _current_time_h(self):
        table = self.table
        if table is None or "timepoint" not in table:
            return None
        n_tp = int(table["timepoint"].max()) + 1
        dims = self.viewer.dims
        if n_tp < 2 or dims.ndim < 4:
            return None
        idx = int(dims.current_step[0])
        times = table.groupby("timepoint")["time_h"].first()
        return float(times.get(min(max(idx, 0), n_tp - 1), math.nan))

    # ----------------------------------------------------------------- fits
    @property
    def fitting(self) -> bool:
        """True while fits are being computed in the background."""
        return self._fit_worker is not None

    def _fit_lines(self, curves: dict) -> dict:
        """Fitted curves available now; starts a background fit for the missing ones."""
        if not self.fit_check.isChecked() or not curves:
            return {}
        entry = self._entry(self._source)
        _, key, _, dc, _, scale = self._choice()
        corr = "decay_corrected" if dc else "physical"
        run = entry.get("run")
        have = {}
        from_pipeline = _fits_from_kinetics(entry.get("kinetics"), key, corr, scale)
        missing = {}
        for region, tv in curves.items():
            k = (run, key, corr, region)
            if region in from_pipeline:
                have[region] = from_pipeline[region]
            elif k in self._fits:
                have[region] = self._fits[k]
            else:
                missing[region] = tv
        if missing and self._fit_worker is None:
            from napari.qt.threading import create_worker

            worker = create_worker(fit_curves, missing, decay_corrected=dc, half_life_h=entry.get("half_life_h"),
                                   _ignore_errors=True)
            worker.returned.connect(lambda res, run=run, key=key, corr=corr: self._on_fits(run, key, corr, res))
            worker.errored.connect(lambda e: log.warning("curve fits failed: %s", e))
            worker.finished.connect(self._on_fit_finished)
            self._fit_worker = worker
            worker.start()
        return have

    def _on_fits(self, run, key, corr, res) -> None:
        for region, f in res.items():
            self._fits[(run, key, corr, region)] = f

    def _on_fit_finished(self) -> None:
        self._fit_worker = None
        self._draw()  # draws the new fits (and starts the next batch if the selection changed)

    # ----------------------------------------------------------------- draw
    def draw(self) -> None:
        """Draw the curves (called by napari-matplotlib after clearing the axes)."""
        ax = self.axes
        q, _, col, dc, unit, scale = self._choice()
        curves = self.curves()
        if not curves:
            self._colour_items({}, set())
            ax.text(0.5, 0.5, "run Quantify to see time-activity curves" if self.table is None else
                    "tick regions in the list to plot them", ha="center", va="center",
                    transform=ax.transAxes, fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
            return
        fits = self._fit_lines(curves)
        no_fits = {r for r in curves if self.fit_check.isChecked() and r in fits and fits[r] is None}
        self._colour_items(curves, no_fits)
        colours = curve_colours(list(curves))
        tmax = max(float(np.nanmax(t)) for t, _ in curves.values())
        tt = np.linspace(0.0, tmax * 1.03, 300)
        for region, (t, y) in curves.items():
            colour = colours[region]
            ivl = self._interval(region, col, scale)
            no_fit = region in no_fits
            label = region + (" (no fit)" if no_fit else "")
            if ivl is not None:
                yerr = np.clip(np.nan_to_num([y - ivl[0], ivl[1] - y]), 0.0, None)
                ax.errorbar(t, y, yerr=yerr, fmt="o", ms=4, color=colour, capsize=2, elinewidth=1, label=label)
            else:
                ax.plot(t, y, "o", ms=4, color=colour, label=label)
            f = fits.get(region)
            if f is not None:
                ax.plot(tt, f(tt), "-", lw=1.6, color=colour, alpha=0.95)
            else:  # points joined (dotted where the fit was rejected)
                ax.plot(t, y, ":" if no_fit else "-", lw=1.2, color=colour, alpha=0.8)
        now = self._current_time_h()
        if now is not None and np.isfinite(now):
            ax.axvline(now, color="0.85", ls="--", lw=1)
        ax.set_xlabel("time after injection (h)", fontsize=10)
        ax.set_ylabel(unit, fontsize=10)
        ax.tick_params(labelsize=9)
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        subject = self._entry(self._source).get("subject")
        ax.set_title((f"{subject}: " if subject else "") + ("decay-corrected " if dc else "physical ") + q +
                     (" (fitting…)" if self.fitting else ""), fontsize=10)
        if self.fit_check.isChecked():
            lines = [Line2D([], [], color="0.8", marker="o", ms=4, ls="none"),
                     Line2D([], [], color="0.8", lw=1.6), Line2D([], [], color="0.8", lw=1.2, ls=":")]
            ax.legend(lines, ["measured (95 % interval)", "kinetic fit", "no acceptable fit"], fontsize=9,
                      frameon=False, loc="upper right")

    def _colour_items(self, curves, no_fits) -> None:
        """The list is the legend: each plotted region's colour as a swatch, the others greyed."""
        from matplotlib.colors import to_hex

        colours = curve_colours(list(curves))
        size = max(8, self.region_list.fontMetrics().height() - 4)
        self.region_list.blockSignals(True)
        for i in range(self.region_list.count()):
            it = self.region_list.item(i)
            c = colours.get(it.text())
            pix = QPixmap(size, size)
            pix.fill(QColor(to_hex(c)) if c is not None else QColor(0, 0, 0, 0))
            it.setIcon(QIcon(pix))
            it.setForeground(QColor("#e6e6e6") if c is not None else QColor("#8a8a8a"))
            it.setToolTip(f"{it.text()}: no acceptable kinetic fit (points joined by a dotted line)"
                          if it.text() in no_fits else it.text())
        self.region_list.blockSignals(False)

    def plotted_data(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{region: (x, y)}`` of the points on the axes (what is on screen; " (no fit)" stripped)."""
        out = {}
        for c in self.axes.containers:  # points with error bars
            lab = c.get_label()
            if lab and not lab.startswith("_") and getattr(c, "lines", None) and c.lines[0] is not None:
                line = c.lines[0]
                out[lab.removesuffix(" (no fit)")] = (np.asarray(line.get_xdata(), float),
                                                      np.asarray(line.get_ydata(), float))
        for line in self.axes.lines:
            lab = line.get_label()
            if not lab.startswith("_"):
                out[lab.removesuffix(" (no fit)")] = (np.asarray(line.get_xdata(), float),
                                                      np.asarray(line.get_ydata(), float))
        return out
