"""Quantify dock: choose study, regions, calibration and injection; run; see and export results.

The form's values come from :mod:`spectrack_napari._study_form` (no Qt), the
results table, the Labels layer the curve dock reads and the exports from
:mod:`spectrack_napari._results`; this module builds the fields and runs.

The widget builds :class:`spectrack.settings.Settings` from its fields and
calls :func:`spectrack.pipeline.run_study` (the one orchestration function) in
a worker thread, with progress and cancel callbacks. Results go to a table in
the dock and to ``layer.metadata["spectrack"]["table"]`` of the regions'
Labels layer, where the curve dock finds them.

Every field is set from the study when one is opened, never kept from the
previous one (see :func:`study_defaults`): the study's own settings (its study
file, validated by :func:`spectrack.settings.settings_from_mapping`; for the
sample data, the phantom's known calibration), then its headers and sidecars
(injected activity, injection time, half-life, species), then what lies
beside it (a label map). What the study does not say is left empty, so a run
that needs it stops with one clear line instead of a number computed with
another study's value.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import logging
import threading
from pathlib import Path

import numpy as np
from qtpy.QtCore import QObject, Signal
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
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from ._layers import METADATA_KEY, layer_label_map
from ._timeaxis import follow_time_axis

__all__ = ["QuantifyWidget", "StudyDefaults", "study_defaults", "species_preset"]

log = logging.getLogger(__name__)

from ._results import ResultsMixin, _show
from ._study_form import (CALIBRATIONS, NO_SPECIES, PRESETS, SOURCE_AUTO, SOURCE_FILE, SOURCE_LAYER, StudyDefaults,
                          species_preset, study_defaults)


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


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


class QuantifyWidget(ResultsMixin, QWidget):
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
        self.defaults: StudyDefaults | None = None
        self.result = None  # last StudyResult
        self.results_layer = None
        self.curve_widget = None  # the curve dock opened after the first run
        self._header: dict[str, object] = {}  # values shown as the study gave them (left to the pipeline)
        self._source_chosen = False  # the user picked the region source for this study
        self._loading = None  # path of the last study asked for
        self._run_path = None
        self._worker = None
        self._loader = None
        self._cancel = threading.Event()
        self._relay = _Relay(self)
        self._relay.progress.connect(self._on_progress)
        self._build()
        self._refresh_layer_choices()
        self.viewer.layers.events.inserted.connect(self._on_layers_changed)
        self.viewer.layers.events.removed.connect(self._on_layers_changed)
        follow_time_axis(self.viewer)
        self._adopt_study_from_layers()

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        lay.setSpacing(4)

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
        self.species_combo = QComboBox()
        self.species_combo.addItems([NO_SPECIES, *PRESETS])
        self.species_combo.setToolTip("recorded in the table; the preset of automatic regions")
        f.addRow("species", self.species_combo)
        lay.addWidget(box)

        box = QGroupBox("Regions")
        f = QFormLayout(box)
        self.source_combo = QComboBox()
        self.has_auto = _has_module("spectrack.regions.auto.ct")
        self.source_combo.addItems([SOURCE_LAYER, SOURCE_FILE] + ([SOURCE_AUTO] if self.has_auto else []))
        self.source_stack = QStackedWidget()
        self.layer_combo = QComboBox()
        self.source_stack.addWidget(self.layer_combo)
        w = QWidget()
        r = QHBoxLayout(w)
        r.setContentsMargins(0, 0, 0, 0)
        self.label_file_edit = QLineEdit()
        self.label_file_edit.setPlaceholderText("labels.nii.gz, DICOM-SEG or RTSTRUCT")
        b = QPushButton("…")
        b.setMaximumWidth(30)
        b.clicked.connect(self._browse_labels)
        r.addWidget(self.label_file_edit)
        r.addWidget(b)
        self.source_stack.addWidget(w)
        self.auto_label = QLabel("")
        self.auto_label.setWordWrap(True)
        self.source_stack.addWidget(self.auto_label)
        self.source_combo.currentIndexChanged.connect(self.source_stack.setCurrentIndex)
        self.source_combo.activated.connect(self._on_source_picked)  # the user's choice, not ours
        self.species_combo.currentIndexChanged.connect(self._update_auto_label)
        f.addRow("source", self.source_combo)
        f.addRow(self.source_stack)
        self.source_stack.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Maximum)
        lay.addWidget(box)

        box = QGroupBox("Calibration and injection")
        f = QFormLayout(box)
        box.setToolTip("set from the study (study file, headers); edit a value to override it")
        self.calibration_combo = QComboBox()
        self.calibration_combo.addItems(CALIBRATIONS)
        f.addRow("calibration", self.calibration_combo)
        self.sensitivity_spin = _optional_spin(1e7, 3, " cps/MBq", "not given")
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

        self.table_title = QLabel("%ID (decay-corrected to injection)")
        lay.addWidget(self.table_title)
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setMinimumSectionSize(20)
        vh = self.table.verticalHeader()
        vh.setSectionResizeMode(QHeaderView.Fixed)
        vh.setDefaultSectionSize(self.fontMetrics().height() + 4)
        self.table.setToolTip("%ID, decay-corrected to injection; columns: hours after injection")
        self.table.setMinimumHeight(8 * (self.fontMetrics().height() + 4))
        lay.addWidget(self.table, stretch=1)

        row = QHBoxLayout()
        self.export_table_button = QPushButton("Table…")
        self.export_table_button.setToolTip("the full region table as CSV (the columns of spectrack quantify)")
        self.export_table_button.clicked.connect(lambda: self.export_table())
        self.export_labels_button = QPushButton("Labels…")
        self.export_labels_button.setToolTip("the regions as NIfTI (names in <stem>.tsv)")
        self.export_labels_button.clicked.connect(lambda: self.export_labels())
        row.addWidget(self.export_table_button)
        row.addWidget(self.export_labels_button)
        self.export_seg_button = None
        if _has_module("spectrack.regions.formats.dicomseg"):
            self.export_seg_button = QPushButton("SEG…")
            self.export_seg_button.setToolTip("the regions as DICOM-SEG on the study's CT")
            self.export_seg_button.clicked.connect(lambda: self.export_dicom_seg())
            row.addWidget(self.export_seg_button)
        self.export_report_button = None
        if self._report_writer() is not None:
            self.export_report_button = QPushButton("Report…")
            self.export_report_button.setToolTip("the HTML report of this run")
            self.export_report_button.clicked.connect(lambda: self.export_report())
            row.addWidget(self.export_report_button)
        for bt in (self.export_table_button, self.export_labels_button, self.export_seg_button,
                   self.export_report_button):
            if bt is not None:
                bt.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
        lay.addLayout(row)
        self._set_export_enabled(False)
        self._update_auto_label()

    def _set_export_enabled(self, on: bool) -> None:
        for b in (self.export_table_button, self.export_labels_button, self.export_seg_button,
                  self.export_report_button):
            if b is not None:
                b.setEnabled(on)

    @property
    def export_buttons(self) -> list:
        """The export buttons present in this spectrack."""
        return [b for b in (self.export_table_button, self.export_labels_button, self.export_seg_button,
                            self.export_report_button) if b is not None]

    def species(self) -> str | None:
        """The species chosen (None when not given)."""
        s = self.species_combo.currentText()
        return None if s == NO_SPECIES else s

    def _update_auto_label(self) -> None:
        s = self.species()
        self.auto_label.setText(f"from the CT with the {s} preset (species above)" if s else
                                "needs the species: choose it under Study")

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
        # "Labels layer" is offered only when there is one
        item = self.source_combo.model().item(self.source_combo.findText(SOURCE_LAYER))
        item.setEnabled(bool(names))
        if not names and self.source_combo.currentText() == SOURCE_LAYER:
            self._choose_default_source()

    def _on_layers_changed(self, event=None) -> None:
        self._refresh_layer_choices()
        layer = getattr(event, "value", None)
        if layer is None or event.type != "inserted":
            return
        self._adopt_study_from_layers([layer])
        from napari.layers import Labels

        # regions opened or finished after the study: quantify them unless the user chose otherwise
        if isinstance(layer, Labels) and not self._source_chosen and self.defaults is not None \
                and self._layer_study(layer) in (None, self._study_key()) and layer is not self.results_layer \
                and np.any(np.asarray(layer.data)):
            self._use_layer(layer)

    @staticmethod
    def _entry(layer) -> dict:
        return (getattr(layer, "metadata", None) or {}).get(METADATA_KEY) or {}

    def _layer_study(self, layer):
        p = self._entry(layer).get("path")
        return None if not p else str(Path(p))

    def _study_key(self):
        text = self.path_edit.text().strip()
        return str(Path(text)) if text else None

    def _adopt_study_from_layers(self, layers=None) -> None:
        """Follow the study the spectrack reader opened last (its images carry the path)."""
        for ly in reversed(layers if layers is not None else list(self.viewer.layers)):
            entry = self._entry(ly)
            p = entry.get("path")
            if p and entry.get("role") in ("ct", "emission") and p != self.path_edit.text().strip():
                self.set_study_path(p)
                return

    def _layer_settings(self, path) -> tuple[dict | None, str]:
        """Settings the opened layers of ``path`` carry (the sample data's known calibration)."""
        key = str(Path(path))
        for ly in self.viewer.layers:
            entry = self._entry(ly)
            if entry.get("settings") and entry.get("path") and str(Path(entry["path"])) == key:
                return dict(entry["settings"]), str(entry.get("settings_source") or "the opened study")
        return None, ""

    # -------------------------------------------------------------- study
    def _browse_study(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Study folder")
        if d:
            self.set_study_path(d)

    def _browse_labels(self) -> None:
        f, _ = QFileDialog.getOpenFileName(self, "Regions", "",
                                           "Regions (*.nii *.nii.gz *.dcm);;NIfTI (*.nii *.nii.gz);;All files (*)")
        if f:
            self.label_file_edit.setText(f)
            self.source_combo.setCurrentText(SOURCE_FILE)
            self._source_chosen = True

    def _on_source_picked(self, index: int) -> None:
        self._source_chosen = True

    def _on_path_edited(self) -> None:
        text = self.path_edit.text().strip()
        if text and (self.study is None or str(self.study.path) != text) and text != self._loading:
            self.set_study_path(text)

    @property
    def busy(self) -> bool:
        """True while a study is loading or a quantification runs."""
        return self._worker is not None or self._loader is not None

    def _forget_study(self) -> None:
        """Clear everything that belonged to the previous study (fields, results, table, exports)."""
        self.study = None
        self.defaults = None
        self.result = None
        self.results_layer = None
        self._header = {}
        self._source_chosen = False
        self.table.clear()
        self.table.setRowCount(0)
        self.table.setColumnCount(0)
        self.table_title.setText("%ID (decay-corrected to injection)")
        self._set_export_enabled(False)
        self.progress_bar.setValue(0)
        self.status_label.setText("")
        self.calibration_combo.setCurrentText("auto")
        for spin in (self.sensitivity_spin, self.injected_spin, self.half_life_spin):
            spin.setValue(0.0)
            spin.setToolTip("")
        self.injection_time_edit.setText("")
        self.species_combo.setCurrentText(NO_SPECIES)
        self.label_file_edit.setText("")

    def set_study_path(self, path) -> None:
        """Load the study at ``path`` in the background and set every field from it."""
        from napari.qt.threading import create_worker

        self.path_edit.setText(str(path))
        self._loading = str(path)
        self._forget_study()
        self.study_label.setText("loading…")
        self.run_button.setEnabled(False)
        extra, extra_source = self._layer_settings(path)
        worker = create_worker(study_defaults, str(path), extra=extra, extra_source=extra_source,
                               _ignore_errors=True)
        # only the latest load counts (the path may change while an earlier one runs)
        worker.returned.connect(lambda v, w=worker: self._on_study_loaded(v) if w is self._loader else None)
        worker.errored.connect(lambda e, w=worker: self._on_load_error(e) if w is self._loader else None)
        worker.finished.connect(lambda w=worker: self._on_loader_finished(w))
        self._loader = worker
        worker.start()

    def _on_loader_finished(self, worker) -> None:
        if worker is self._loader:
            self._loader = None
            if self._worker is None:
                self.run_button.setEnabled(True)

    def _on_load_error(self, exc) -> None:
        self.study_label.setText("cannot load the study")
        self._report_error(exc)

    def _on_study_loaded(self, d: StudyDefaults) -> None:
        self.defaults = d
        study = self.study = d.study
        tps = study.timepoints
        units = tps[0].emission.get("units") or ""
        self.study_label.setText(f"{study.subject}: {len(tps)} time point(s), "
                                 f"{sum(tp.ct is not None for tp in tps)} CT, emission in {units or '?'}")
        v = d.values
        self._header = {}

        def tip(key, missing):
            return f"from {v[key][1]}" if key in v else missing

        cal = v.get("calibration", ("auto", ""))[0]
        self.calibration_combo.setCurrentText(str(cal))
        self.calibration_combo.setToolTip(
            (f"from {v['calibration'][1]}; " if "calibration" in v else "") +
            "auto: image for Bq/mL, sensitivity for counts (give it); fov: whole field of view = injected dose")
        self.sensitivity_spin.setValue(float(v["sensitivity_cps_per_mbq"][0]) if "sensitivity_cps_per_mbq" in v
                                       else 0.0)
        self.sensitivity_spin.setToolTip(tip("sensitivity_cps_per_mbq", "not in the study: give the system "
                                             "volume sensitivity for count images"))
        if "injected_mbq" in v:
            self.injected_spin.setValue(float(v["injected_mbq"][0]))
            self._header["injected_mbq"] = self.injected_spin.value()
        self.injected_spin.setToolTip(tip("injected_mbq", "not in the study: give the injected activity"))
        if "injection_time" in v:
            val = v["injection_time"][0]
            text = val.isoformat(sep=" ") if isinstance(val, dt.datetime) else str(val).replace("T", " ", 1)
            self.injection_time_edit.setText(text)
            self._header["injection_time"] = text
        self.injection_time_edit.setToolTip(tip("injection_time", "not in the study: give the injection date-time"))
        if "half_life_h" in v:
            self.half_life_spin.setValue(float(v["half_life_h"][0]))
            self._header["half_life_h"] = self.half_life_spin.value()
            nuc = v.get("radionuclide")
            self.half_life_spin.setToolTip(tip("half_life_h", "") + (f" ({nuc[0]})" if nuc else ""))
        species = v.get("species", v.get("auto_regions", (None, "")))
        if species[0] is not None:
            if self.species_combo.findText(str(species[0])) < 0:
                self.species_combo.addItem(str(species[0]))
            self.species_combo.setCurrentText(str(species[0]))
        self.species_combo.setToolTip(
            (f"from {species[1]}; " if species[0] is not None else "not in the study; ") +
            "recorded in the table; the preset of automatic regions")
        if d.label_file is not None:
            self.label_file_edit.setText(str(d.label_file[0]))
            self.label_file_edit.setToolTip(f"{d.label_file[1]}")
        self._choose_default_source()
        self.status_label.setText("fields set from this study (a field's tooltip says where from)")

    def _study_labels_layer(self):
        """The Labels layer of the current study (read with it, or from its label file), else a free one."""
        key = self._study_key()
        lf = str(self.defaults.label_file[0]) if self.defaults and self.defaults.label_file else None
        own, free = [], []
        for ly in self._labels_layers():
            entry = self._entry(ly)
            if self._layer_study(ly) == key or (lf and entry.get("source") and
                                                str(Path(entry["source"])) == str(Path(lf))):
                own.append(ly)
            elif not entry.get("path"):
                free.append(ly)
        return (own or free or [None])[-1]

    def _use_layer(self, layer) -> None:
        self._refresh_layer_choices()
        self.layer_combo.setCurrentText(layer.name)
        self.source_combo.setCurrentText(SOURCE_LAYER)

    def _choose_default_source(self) -> None:
        """A region source that exists: the study's Labels layer, its label file, else automatic regions."""
        d = self.defaults
        layer = self._study_labels_layer()
        if d is not None and "auto_regions" in d.values and layer is None:
            self.source_combo.setCurrentText(SOURCE_AUTO if self.has_auto else SOURCE_FILE)
        elif layer is not None:
            self._use_layer(layer)
        elif self.label_file_edit.text().strip():
            self.source_combo.setCurrentText(SOURCE_FILE)
        elif self.has_auto:
            self.source_combo.setCurrentText(SOURCE_AUTO)
        else:
            self.source_combo.setCurrentText(SOURCE_FILE)

    # ------------------------------------------------------------ settings
    def settings(self):
        """:class:`~spectrack.settings.Settings` from the fields (values as the study gave them are left to it)."""
        from spectrack.errors import InputError
        from spectrack.settings import settings_from_mapping

        d: dict[str, object] = dict(self.defaults.own) if self.defaults is not None else {}
        d["calibration"] = self.calibration_combo.currentText()
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
        if self.species():
            d["species"] = self.species()
        if self.source_combo.currentText() == SOURCE_AUTO:
            if not self.species():
                raise InputError("automatic regions need the species: choose rat, nhp or human under Study "
                                 "(or choose a label file)")
            d["auto_regions"] = self.species()
        return settings_from_mapping(d, where="quantify widget")

    def _labels_input(self):
        """LabelMap, path or None (automatic) for the chosen region source."""
        from spectrack.errors import InputError, LabelError

        src = self.source_combo.currentText()
        if src == SOURCE_FILE:
            text = self.label_file_edit.text().strip()
            if not text:
                raise InputError("no label file given: choose a label map (NIfTI with names in <stem>.tsv, "
                                 "DICOM-SEG or RTSTRUCT)" + (" or automatic regions" if self.has_auto else ""))
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

        if self._worker is not None or self._loader is not None:
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
        study = self.study if self.study is not None and self._study_key() == str(Path(path)) else None
        self.progress_bar.setValue(0)
        self.status_label.setText("starting…")
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self._run_source = (self.source_combo.currentText(), self.layer_combo.currentText(),
                            self.label_file_edit.text().strip())
        self._run_path = path
        self._reference = settings.reference
        worker = create_worker(_run, path, settings, labels, study, self._relay.progress.emit,
                               self._cancel.is_set, _ignore_errors=True)
        worker.returned.connect(lambda res, w=worker: self._on_result(res) if self._is_current_run(w) else None)
        worker.errored.connect(lambda e, w=worker: self._report_error(e) if self._is_current_run(w) else None)
        worker.finished.connect(self._on_run_finished)
        self._worker = worker
        worker.start()

    def _is_current_run(self, worker) -> bool:
        """A run's result counts only for the study it was started on."""
        return worker is self._worker and self._run_path == self.path_edit.text().strip()

    def cancel(self) -> None:
        """Ask the running quantification to stop (between stages)."""
        self._cancel.set()
        self.status_label.setText("cancelling…")

    def _on_progress(self, stage: str, fraction: float) -> None:
        self.progress_bar.setValue(int(round(100 * fraction)))
        self.status_label.setText(stage)

    def _on_run_finished(self) -> None:
        self._worker = None
        self.run_button.setEnabled(self._loader is None)
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

def _run(path, settings, labels, study, progress, cancel):
    """Worker body: the one orchestration function."""
    from spectrack.pipeline import run_study

    return run_study(path, settings, labels=labels, study=study, progress=progress, cancel=cancel,
                     command=["napari", "spectrack quantify widget"])
