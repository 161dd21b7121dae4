"""Quantify dock: choose study, regions, calibration and injection; run; see and export results.

The widget builds :class:`spectrack.settings.Settings` from its fields and
calls :func:`spectrack.pipeline.run_study` (the one orchestration function) in
a worker thread, with progress and cancel callbacks. Results go to a table in
the dock and to ``layer.metadata["spectrack"]["table"]`` of the regions'
Labels layer, where the curve dock finds them.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import logging
import threading
import uuid
from pathlib import Path

import numpy as np
from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ._layers import METADATA_KEY, label_layer_data, layer_label_map

__all__ = ["QuantifyWidget"]

log = logging.getLogger(__name__)

SOURCE_LAYER = "Labels layer"
SOURCE_FILE = "Label file"
SOURCE_AUTO = "Automatic regions"
CALIBRATIONS = ("auto", "image", "sensitivity", "fov")
PRESETS = ("rat", "nhp", "human")
#: Rows of the results table (the same as ``spectrack quantify`` prints).
TABLE_KINDS = ("region", "group", "fov")
RESULTS_LAYER = "spectrack regions"


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _show(level: str, message: str) -> None:
    from napari.utils import notifications

    {"error": notifications.show_error, "warning": notifications.show_warning}.get(
        level, notifications.show_info)(" ".join(str(message).split()))


class _Relay(QObject):
    """Carries progress from the worker thread to the GUI thread (queued signal)."""

    progress = Signal(str, float)


def _optional_spin(maximum: float, decimals: int, suffix: str, none_text: str) -> QDoubleSpinBox:
    """A spin box whose minimum (0) means "not given"."""
    w = QDoubleSpinBox()
    w.setRange(0.0, maximum)
    w.setDecimals(decimals)
    w.setSuffix(suffix)
    w.setSpecialValueText(none_text)
    w.setKeyboardTracking(False)
    return w


def _load_defaults(path: str):
    """Load a study and the injection details its headers give (runs in a worker)."""
    from spectrack.errors import SpectrackError
    from spectrack.load import load_study
    from spectrack.quantification.parameters import resolve_parameters

    study = load_study(path)
    found: dict[str, tuple[object, str]] = {}
    try:  # what the run would use, with sources
        p = resolve_parameters(study)
    except SpectrackError:  # something is missing: take what the headers have
        p = None
    if p is not None:
        for key in ("injected_mbq", "injection_time", "half_life_h", "radionuclide"):
            s = getattr(p, key)
            found[key] = (s.value, s.source)
    em = study.timepoints[0].emission
    for key, meta_key in (("injected_mbq", "injected_activity_mbq"), ("injection_time", "injection_time"),
                          ("half_life_h", "half_life_h"), ("radionuclide", "radionuclide")):
        if key not in found and em.get(meta_key) is not None:
            found[key] = (em.get(meta_key), em.source(meta_key) or "header")
    return study, found


class QuantifyWidget(QWidget):
    """Dock widget: %ID per region over time with :func:`spectrack.pipeline.run_study`.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer whose layers give the regions and receive the results.
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.study = None  # loaded Study for the current path
        self.result = None  # last StudyResult
        self.results_layer = None
        self.curve_widget = None  # the curve dock opened after the first run
        self._header: dict[str, object] = {}
        self._worker = None
        self._loader = None
        self._cancel = threading.Event()
        self._relay = _Relay(self)
        self._relay.progress.connect(self._on_progress)
        self._build()
        self._refresh_layer_choices()
        self.viewer.layers.events.inserted.connect(self._on_layers_changed)
        self.viewer.layers.events.removed.connect(self._on_layers_changed)
        self._adopt_study_from_layers()

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        lay = QVBoxLayout(self)

        box = QGroupBox("Study")
        f = QFormLayout(box)
        row = QHBoxLayout()
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("DICOM folder, NIfTI study or study file")
        self.path_edit.editingFinished.connect(self._on_path_edited)
        browse = QPushButton("…")
        browse.setMaximumWidth(30)
        browse.clicked.connect(self._browse_study)
        row.addWidget(self.path_edit)
        row.addWidget(browse)
        f.addRow("path", row)
        self.study_label = QLabel("no study loaded")
        self.study_label.setWordWrap(True)
        f.addRow(self.study_label)
        lay.addWidget(box)

        box = QGroupBox("Regions")
        f = QFormLayout(box)
        self.source_combo = QComboBox()
        sources = [SOURCE_LAYER, SOURCE_FILE] + ([SOURCE_AUTO] if _has_module("spectrack.regions.auto") else [])
        self.source_combo.addItems(sources)
        self.source_stack = QStackedWidget()
        self.layer_combo = QComboBox()
        self.source_stack.addWidget(self.layer_combo)
        w = QWidget()
        r = QHBoxLayout(w)
        r.setContentsMargins(0, 0, 0, 0)
        self.label_file_edit = QLineEdit()
        self.label_file_edit.setPlaceholderText("labels.nii.gz (names in labels.tsv)")
        b = QPushButton("…")
        b.setMaximumWidth(30)
        b.clicked.connect(self._browse_labels)
        r.addWidget(self.label_file_edit)
        r.addWidget(b)
        self.source_stack.addWidget(w)
        self.preset_combo = QComboBox()
        self.preset_combo.addItems(PRESETS)
        self.source_stack.addWidget(self.preset_combo)
        self.source_combo.currentIndexChanged.connect(self.source_stack.setCurrentIndex)
        f.addRow("source", self.source_combo)
        f.addRow(self.source_stack)
        self.source_stack.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Maximum)
        lay.addWidget(box)

        box = QGroupBox("Calibration and injection")
        f = QFormLayout(box)
        box.setToolTip("prefilled from the image headers; edit a value to override it")
        self.calibration_combo = QComboBox()
        self.calibration_combo.addItems(CALIBRATIONS)
        f.addRow("calibration", self.calibration_combo)
        self.sensitivity_spin = _optional_spin(1e7, 3, " cps/MBq", "from calibration")
        f.addRow("sensitivity", self.sensitivity_spin)
        self.injected_spin = _optional_spin(1e6, 3, " MBq", "not given")
        f.addRow("injected", self.injected_spin)
        self.injection_time_edit = QLineEdit()
        self.injection_time_edit.setPlaceholderText("YYYY-MM-DD HH:MM:SS")
        f.addRow("injection time", self.injection_time_edit)
        self.half_life_spin = _optional_spin(1e6, 4, " h", "from nuclide")
        f.addRow("half-life", self.half_life_spin)
        lay.addWidget(box)

        row = QHBoxLayout()
        self.run_button = QPushButton("Quantify")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        lay.addLayout(row)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("%p%")
        lay.addWidget(self.progress_bar)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        lay.addWidget(self.status_label)

        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.setToolTip("%ID, decay-corrected to injection")
        lay.addWidget(QLabel("%ID (decay-corrected to injection)"))
        lay.addWidget(self.table, stretch=1)

        row = QHBoxLayout()
        self.export_table_button = QPushButton("Table (CSV)…")
        self.export_table_button.clicked.connect(lambda: self.export_table())
        self.export_labels_button = QPushButton("Labels (NIfTI)…")
        self.export_labels_button.clicked.connect(lambda: self.export_labels())
        row.addWidget(self.export_table_button)
        row.addWidget(self.export_labels_button)
        self.export_seg_button = None
        if _has_module("spectrack.regions.dicomseg"):
            self.export_seg_button = QPushButton("DICOM-SEG…")
            self.export_seg_button.clicked.connect(lambda: self.export_dicom_seg())
            row.addWidget(self.export_seg_button)
        self.export_report_button = None
        if self._report_writer() is not None:
            self.export_report_button = QPushButton("Report…")
            self.export_report_button.clicked.connect(lambda: self.export_report())
            row.addWidget(self.export_report_button)
        lay.addLayout(row)
        self._set_export_enabled(False)

    def _set_export_enabled(self, on: bool) -> None:
        for b in (self.export_table_button, self.export_labels_button, self.export_seg_button,
                  self.export_report_button):
            if b is not None:
                b.setEnabled(on)

    # ------------------------------------------------------------- layers
    def _labels_layers(self):
        from napari.layers import Labels

        return [ly for ly in self.viewer.layers if isinstance(ly, Labels)]

    def _refresh_layer_choices(self) -> None:
        current = self.layer_combo.currentText()
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        names = [ly.name for ly in self._labels_layers()]
        self.layer_combo.addItems(names)
        if current in names:
            self.layer_combo.setCurrentText(current)
        self.layer_combo.blockSignals(False)

    def _on_layers_changed(self, event=None) -> None:
        self._refresh_layer_choices()
        layer = getattr(event, "value", None)
        if layer is not None and event.type == "inserted":
            self._adopt_study_from_layers([layer])

    def _adopt_study_from_layers(self, layers=None) -> None:
        """Follow the study the spectrack reader opened last (its images carry the path)."""
        for ly in reversed(layers if layers is not None else list(self.viewer.layers)):
            entry = (ly.metadata or {}).get(METADATA_KEY, {})
            p = entry.get("path")
            if p and entry.get("role") in ("ct", "emission") and p != self.path_edit.text().strip():
                self.set_study_path(p)
                return

    # -------------------------------------------------------------- study
    def _browse_study(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Study folder")
        if d:
            self.set_study_path(d)

    def _browse_labels(self) -> None:
        f, _ = QFileDialog.getOpenFileName(self, "Label map", "", "NIfTI (*.nii *.nii.gz)")
        if f:
            self.label_file_edit.setText(f)

    def _on_path_edited(self) -> None:
        text = self.path_edit.text().strip()
        if text and (self.study is None or str(self.study.path) != text):
            self.set_study_path(text)

    @property
    def busy(self) -> bool:
        """True while a study is loading or a quantification runs."""
        return self._worker is not None or self._loader is not None

    def set_study_path(self, path) -> None:
        """Load the study at ``path`` in the background and fill the fields from its headers."""
        from napari.qt.threading import create_worker

        self.path_edit.setText(str(path))
        self.study = None
        self.study_label.setText("loading…")
        worker = create_worker(_load_defaults, str(path), _ignore_errors=True)
        # only the latest load counts (the path may change while an earlier one runs)
        worker.returned.connect(lambda v, w=worker: self._on_study_loaded(v) if w is self._loader else None)
        worker.errored.connect(lambda e, w=worker: self._on_load_error(e) if w is self._loader else None)
        worker.finished.connect(lambda w=worker: self._on_loader_finished(w))
        self._loader = worker
        worker.start()

    def _on_loader_finished(self, worker) -> None:
        if worker is self._loader:
            self._loader = None

    def _on_load_error(self, exc) -> None:
        self.study_label.setText("cannot load the study")
        self._report_error(exc)

    def _on_study_loaded(self, value) -> None:
        study, found = value
        self.study = study
        tps = study.timepoints
        units = tps[0].emission.get("units") or ""
        self.study_label.setText(f"{study.subject}: {len(tps)} time point(s), "
                                 f"{sum(tp.ct is not None for tp in tps)} CT, emission in {units or '?'}")
        self._header = {}
        if "injected_mbq" in found:
            v, src = found["injected_mbq"]
            self.injected_spin.setValue(float(v))
            self._header["injected_mbq"] = self.injected_spin.value()
            self.injected_spin.setToolTip(f"from {src}")
        else:
            self.injected_spin.setValue(0.0)
            self.injected_spin.setToolTip("not in the headers: give the injected activity")
        if "injection_time" in found:
            v, src = found["injection_time"]
            text = v.isoformat(sep=" ") if isinstance(v, dt.datetime) else str(v)
            self.injection_time_edit.setText(text)
            self._header["injection_time"] = text
            self.injection_time_edit.setToolTip(f"from {src}")
        else:
            self.injection_time_edit.setText("")
            self.injection_time_edit.setToolTip("not in the headers: give the injection date-time")
        if "half_life_h" in found:
            v, src = found["half_life_h"]
            self.half_life_spin.setValue(float(v))
            self._header["half_life_h"] = self.half_life_spin.value()
            nuc = found.get("radionuclide")
            self.half_life_spin.setToolTip(f"from {src}" + (f" ({nuc[0]})" if nuc else ""))
        else:
            self.half_life_spin.setValue(0.0)
        self.calibration_combo.setToolTip(
            "auto: image for Bq/mL SPECT, sensitivity for counts (give it); fov: whole field of view = injected dose")

    # ------------------------------------------------------------ settings
    def settings(self):
        """:class:`~spectrack.settings.Settings` from the fields (values equal to the headers are left out)."""
        from spectrack.settings import settings_from_mapping

        d: dict[str, object] = {"calibration": self.calibration_combo.currentText()}
        if self.sensitivity_spin.value() > 0:
            d["sensitivity_cps_per_mbq"] = self.sensitivity_spin.value()
        inj = self.injected_spin.value()
        if inj > 0 and inj != self._header.get("injected_mbq"):
            d["injected_mbq"] = inj
        t = self.injection_time_edit.text().strip()
        if t and t != self._header.get("injection_time"):
            d["injection_time"] = t.replace(" ", "T", 1) if "T" not in t else t
        hl = self.half_life_spin.value()
        if hl > 0 and hl != self._header.get("half_life_h"):
            d["half_life_h"] = hl
        if self.source_combo.currentText() == SOURCE_AUTO:
            d["auto_regions"] = self.preset_combo.currentText()
        return settings_from_mapping(d, where="quantify widget")

    def _labels_input(self):
        """LabelMap, path or None (automatic) for the chosen region source."""
        from spectrack.errors import InputError, LabelError

        src = self.source_combo.currentText()
        if src == SOURCE_FILE:
            text = self.label_file_edit.text().strip()
            if not text:
                raise InputError("no label file given: choose a NIfTI label map (names in <stem>.tsv)")
            return Path(text)
        if src == SOURCE_LAYER:
            name = self.layer_combo.currentText()
            if not name or name not in self.viewer.layers:
                raise LabelError("no Labels layer: open a label map, draw one (new Labels layer), "
                                 "or choose another region source")
            ref = self.study.timepoints[0].emission.image if self.study is not None else None
            return layer_label_map(self.viewer.layers[name], reference=ref)
        return None

    # ------------------------------------------------------------------ run
    def run(self) -> None:
        """Start :func:`run_study` in a worker thread with the dock's settings."""
        from napari.qt.threading import create_worker

        if self._worker is not None:
            return
        path = self.path_edit.text().strip()
        try:
            if not path:
                from spectrack.errors import InputError

                raise InputError("no study: drop a study on the viewer or choose its folder")
            settings = self.settings()
            labels = self._labels_input()
        except Exception as e:
            self._report_error(e)
            return
        self._cancel.clear()
        study = self.study if self.study is not None and str(self.study.path) == path else None
        self.progress_bar.setValue(0)
        self.status_label.setText("starting…")
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self._run_source = (self.source_combo.currentText(), self.layer_combo.currentText())
        self._reference = settings.reference
        worker = create_worker(_run, path, settings, labels, study, self._relay.progress.emit,
                               self._cancel.is_set, _ignore_errors=True)
        worker.returned.connect(self._on_result)
        worker.errored.connect(self._report_error)
        worker.finished.connect(self._on_run_finished)
        self._worker = worker
        worker.start()

    def cancel(self) -> None:
        """Ask the running quantification to stop (between stages)."""
        self._cancel.set()
        self.status_label.setText("cancelling…")

    def _on_progress(self, stage: str, fraction: float) -> None:
        self.progress_bar.setValue(int(round(100 * fraction)))
        self.status_label.setText(stage)

    def _on_run_finished(self) -> None:
        self._worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _report_error(self, exc) -> None:
        from spectrack.errors import SpectrackError
        from spectrack.pipeline import Cancelled

        if isinstance(exc, Cancelled):
            self.status_label.setText("cancelled")
            self.progress_bar.setValue(0)
            _show("info", "spectrack: quantification cancelled")
            return
        if isinstance(exc, SpectrackError):
            msg = f"spectrack: {exc}"
        else:
            log.error("spectrack widget error", exc_info=(type(exc), exc, exc.__traceback__))
            msg = f"spectrack: unexpected error: {type(exc).__name__}: {exc}"
        self.status_label.setText(" ".join(msg.split()))
        _show("error", msg)

    def _on_result(self, result) -> None:
        self.result = result
        if self.study is None or self.study is not result.study:
            self.study = result.study
        self.progress_bar.setValue(100)
        n_warn = len(result.metadata.get("warnings", []))
        self.status_label.setText("done" + (f" ({n_warn} warning(s): see the notifications)" if n_warn else ""))
        for w in result.metadata.get("warnings", []):
            _show("warning", f"spectrack: {w}")
        self._fill_table(result.table)
        self._publish(result)
        self._set_export_enabled(True)

    def _fill_table(self, table) -> None:
        df = table[table["kind"].isin(TABLE_KINDS)]
        piv = df.pivot_table(index="region", columns="timepoint", values="pct_id", sort=False)
        times = df.groupby("timepoint")["time_h"].first()
        self.table.clear()
        self.table.setRowCount(len(piv.index))
        self.table.setColumnCount(len(piv.columns))
        self.table.setHorizontalHeaderLabels([f"{times[c]:.2f} h" for c in piv.columns])
        self.table.setVerticalHeaderLabels([str(r) for r in piv.index])
        for i, (_, row) in enumerate(piv.iterrows()):
            for j, v in enumerate(row.values):
                item = QTableWidgetItem("" if not np.isfinite(v) else f"{v:.3f}")
                item.setData(Qt.UserRole, float(v))
                item.setTextAlignment(int(Qt.AlignRight | Qt.AlignVCenter))
                self.table.setItem(i, j, item)

    def table_values(self):
        """The table as a DataFrame of region x time point %ID (full precision)."""
        import pandas as pd

        rows = [self.table.verticalHeaderItem(i).text() for i in range(self.table.rowCount())]
        cols = [self.table.horizontalHeaderItem(j).text() for j in range(self.table.columnCount())]
        vals = [[self.table.item(i, j).data(Qt.UserRole) for j in range(len(cols))] for i in range(len(rows))]
        return pd.DataFrame(vals, index=rows, columns=cols)

    def _publish(self, result) -> None:
        """Put the results on the regions' Labels layer (the curve dock listens to it)."""
        src, layer_name = self._run_source
        entry = {"table": result.table, "path": self.path_edit.text().strip(),
                 "half_life_h": (result.metadata.get("dose") or {}).get("half_life_h", {}).get("value"),
                 "kinetics": result.kinetics, "run": uuid.uuid4().hex}
        if src == SOURCE_LAYER and layer_name in self.viewer.layers:
            layer = self.viewer.layers[layer_name]
        else:
            ref = getattr(self, "_reference", 0)
            lm = result.labels[min(ref, len(result.labels) - 1)] if result.labels else None
            if lm is None:
                return
            data, kwargs, _ = label_layer_data(lm, name=RESULTS_LAYER, study_path=entry["path"])
            if RESULTS_LAYER in self.viewer.layers:
                layer = self.viewer.layers[RESULTS_LAYER]
                layer.data = data
                layer.affine = kwargs["affine"]
                layer.features = kwargs["features"]
            else:
                layer = self.viewer.add_labels(data, **kwargs)
            # quantify what is shown from now on: edits to this layer count on the next run
            self.source_combo.setCurrentText(SOURCE_LAYER)
            self._refresh_layer_choices()
            self.layer_combo.setCurrentText(layer.name)
        meta = dict(layer.metadata or {})
        entry = {**meta.get(METADATA_KEY, {}), **entry, "role": "labels"}
        meta[METADATA_KEY] = entry
        layer.metadata = meta  # emits layer.events.metadata: the curve dock redraws
        self.results_layer = layer
        self._ensure_curve_dock()

    def _ensure_curve_dock(self) -> None:
        window = getattr(self.viewer, "window", None)
        if window is None or not hasattr(window, "add_plugin_dock_widget"):
            return
        try:
            dock, self.curve_widget = window.add_plugin_dock_widget("spectrack", "Time-activity curves")
        except (KeyError, ValueError, RuntimeError) as e:  # plugin not registered (e.g. used standalone)
            log.debug("no curve dock: %s", e)
            return
        main = dock.parentWidget()
        if isinstance(main, QMainWindow) and main.dockWidgetArea(dock) != Qt.BottomDockWidgetArea \
                and not getattr(self, "_curve_dock_placed", False):
            main.addDockWidget(Qt.BottomDockWidgetArea, dock)  # wide plots, under the canvas
            main.resizeDocks([dock], [max(300, main.height() // 3)], Qt.Vertical)
            self._curve_dock_placed = True

    # --------------------------------------------------------------- export
    def _ask_path(self, title: str, default: str, filt: str) -> str | None:
        f, _ = QFileDialog.getSaveFileName(self, title, default, filt)
        return f or None

    def _need_result(self):
        from spectrack.errors import InputError

        if self.result is None:
            raise InputError("nothing to export yet: run Quantify first")
        return self.result

    def export_table(self, path=None) -> Path | None:
        """Write the full region table (CSV, the columns of ``spectrack quantify``)."""
        try:
            res = self._need_result()
            path = path or self._ask_path("Save region table", "regions.csv", "CSV (*.csv)")
            if not path:
                return None
            from spectrack.io_utils import atomic_path

            with atomic_path(Path(path)) as tmp:
                res.table.to_csv(tmp, index=False, float_format="%.9g")
            _show("info", f"spectrack: wrote {path}")
            return Path(path)
        except Exception as e:
            self._report_error(e)
            return None

    def _current_label_map(self):
        """The regions as shown (edits included)."""
        if self.results_layer is not None and self.results_layer in self.viewer.layers:
            ref = self.study.timepoints[0].emission.image if self.study is not None else None
            return layer_label_map(self.results_layer, reference=ref)
        res = self._need_result()
        return res.labels[min(getattr(self, "_reference", 0), len(res.labels) - 1)]

    def export_labels(self, path=None) -> Path | None:
        """Write the regions as NIfTI (names in ``<stem>.tsv``)."""
        try:
            self._need_result()
            path = path or self._ask_path("Save label map", "labels.nii.gz", "NIfTI (*.nii.gz *.nii)")
            if not path:
                return None
            from spectrack.regions.labels import write_label_map

            out = write_label_map(self._current_label_map(), path)
            _show("info", f"spectrack: wrote {out}")
            return Path(out)
        except Exception as e:
            self._report_error(e)
            return None

    def export_dicom_seg(self, path=None) -> Path | None:
        """Write the regions as a DICOM SEG referencing the reference time point's CT series."""
        try:
            res = self._need_result()
            from spectrack.errors import InputError

            ref = getattr(self, "_reference", 0)
            ct = res.study.timepoints[ref].ct
            files = [f for f in (ct.files if ct is not None else []) if not str(f).endswith((".nii", ".nii.gz"))]
            if not files:
                raise InputError("DICOM SEG needs the study's CT as DICOM files: this study has none; "
                                 "export the labels as NIfTI instead")
            path = path or self._ask_path("Save DICOM SEG", "regions_seg.dcm", "DICOM (*.dcm)")
            if not path:
                return None
            from spectrack.regions.dicomseg import write_dicom_seg

            out = write_dicom_seg(self._current_label_map(), files, path)
            _show("info", f"spectrack: wrote {out}")
            return Path(out)
        except Exception as e:
            self._report_error(e)
            return None

    @staticmethod
    def _report_writer():
        try:
            from spectrack.report import write_report
        except ImportError:
            return None
        return write_report

    def export_report(self, out_dir=None) -> list[Path]:
        """Write the report of the last run (``spectrack.report.write_report``) into a folder."""
        try:
            res = self._need_result()
            writer = self._report_writer()
            if writer is None:
                from spectrack.errors import InputError

                raise InputError("this spectrack has no report writer (spectrack.report.write_report)")
            out_dir = out_dir or QFileDialog.getExistingDirectory(self, "Folder for the report")
            if not out_dir:
                return []
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            outputs = writer(res, Path(out_dir)) or {}
            paths = [Path(p) for p in (outputs.values() if isinstance(outputs, dict) else outputs)]
            _show("info", f"spectrack: wrote {', '.join(str(p) for p in paths) or out_dir}")
            return paths
        except Exception as e:
            self._report_error(e)
            return []


def _run(path, settings, labels, study, progress, cancel):
    """Worker body: the one orchestration function."""
    from spectrack.pipeline import run_study

    return run_study(path, settings, labels=labels, study=study, progress=progress, cancel=cancel,
                     command=["napari", "spectrack quantify widget"])
