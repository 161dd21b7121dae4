"""Quantify dock: choose study, regions, calibration and injection; run; see and export results.

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

import dataclasses
import datetime as dt
import importlib.util
import logging
import re
import threading
import uuid
from pathlib import Path

import numpy as np
from qtpy.QtCore import QObject, Qt, QTimer, Signal
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
from ._timeaxis import follow_time_axis

__all__ = ["QuantifyWidget", "StudyDefaults", "study_defaults", "species_preset"]

log = logging.getLogger(__name__)

SOURCE_LAYER = "Labels layer"
SOURCE_FILE = "Label file"
SOURCE_AUTO = "Automatic regions"
CALIBRATIONS = ("auto", "image", "sensitivity", "fov")
#: Species with a preset (automatic regions, default PSF FWHM).
PRESETS = ("rat", "nhp", "human")
NO_SPECIES = "not given"
#: Rows of the results table (the same as ``spectrack quantify`` prints).
TABLE_KINDS = ("region", "group", "fov")
#: Settings the dock's fields stand for (the rest of a study's own settings pass through as they are).
FIELD_KEYS = ("calibration", "sensitivity_cps_per_mbq", "injected_mbq", "injection_time", "half_life_h",
              "species", "labels", "auto_regions")

# PatientSpeciesDescription (0010,2201) words -> preset (DICOM uses Latin or common names)
_SPECIES_WORDS = (
    ("rat", ("rattus", "rat", "rats")),
    ("nhp", ("macaca", "macaque", "monkey", "primate", "cynomolgus", "rhesus", "fascicularis", "mulatta",
             "callithrix", "marmoset", "chlorocebus", "papio", "baboon")),
    ("human", ("homo", "human")),
)


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _show(level: str, message: str) -> None:
    from napari.utils import notifications

    {"error": notifications.show_error, "warning": notifications.show_warning}.get(
        level, notifications.show_info)(" ".join(str(message).split()))


def _hours(t) -> str:
    """A time point's column title: ``0.5 h``, ``24 h``, ``1.25 h``."""
    return "?" if t is None or not np.isfinite(t) else f"{float(t):.3g} h" if t < 100 else f"{float(t):.0f} h"


def species_preset(description) -> str | None:
    """The preset of a DICOM species description (``"Rattus norvegicus"`` -> ``"rat"``), or None.

    Examples
    --------
    >>> species_preset("Macaca fascicularis"), species_preset("Rattus norvegicus"), species_preset("Canis")
    ('nhp', 'rat', None)
    """
    words = set(re.findall(r"[a-z]+", str(description or "").lower()))
    for preset, names in _SPECIES_WORDS:
        if words & set(names):
            return preset
    return None


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


@dataclasses.dataclass
class StudyDefaults:
    """What a study says about its own quantification.

    Attributes
    ----------
    study : spectrack.load.Study
    values : dict
        Settings field -> ``(value, source)`` for every field the study gives
        (dose and times from headers, sidecars or study file; species;
        sensitivity and calibration from the study's own settings).
    own : dict
        The study's own settings (study file, sample data) other than the
        dock's fields: passed through to the run unchanged.
    label_file : tuple of (Path, str) or None
        A label map to quantify with and where it was found.
    """

    study: object
    values: dict
    own: dict
    label_file: tuple | None = None


def _own_settings(raw: dict, *, where: str, base: Path | None) -> dict:
    """The Settings fields a mapping gives, validated (keys spectrack does not know are left to the loader)."""
    from spectrack import settings as sm

    known = {f.name for f in dataclasses.fields(sm.Settings)} - {"extra"}
    known |= set(getattr(sm, "ALIASES", {}))
    picked = {k: v for k, v in (raw or {}).items() if str(k).replace("-", "_") in known}
    if not picked:
        return {}
    s = sm.settings_from_mapping(picked, where=where, base=base)
    default = sm.Settings()
    return {k: v for k, v in dataclasses.asdict(s).items() if k != "extra" and v != getattr(default, k)}


def _beside(study) -> Path | None:
    """The single label map in the study's folder, else in the folder above it (e.g. beside ``dicom/``)."""
    from spectrack.load.nifti import is_label_file

    p = Path(study.path)
    folder = p.parent if p.is_file() else p
    for d in (folder, folder.parent):
        try:
            found = sorted(q for q in d.iterdir() if q.is_file() and q.name.endswith((".nii", ".nii.gz"))
                           and not q.name.startswith(".") and is_label_file(q))
        except OSError:
            continue
        if len(found) == 1:
            return found[0]
        if found:  # several: the user chooses
            return None
    return None


def study_defaults(path, *, extra: dict | None = None, extra_source: str = "") -> StudyDefaults:
    """Load a study and collect what it says about its quantification (runs in a worker).

    Parameters
    ----------
    path : path-like
        The study (see :func:`spectrack.load.load_study`).
    extra : dict, optional
        Settings that come with the study from elsewhere (the sample data's
        known calibration), named ``extra_source`` in the tooltips.

    Returns
    -------
    StudyDefaults
    """
    from spectrack.errors import SpectrackError
    from spectrack.load import load_study
    from spectrack.quantification.parameters import resolve_parameters

    study = load_study(path)
    sp = Path(study.path)
    base = sp.parent if sp.is_file() else sp
    values: dict[str, tuple[object, str]] = {}
    own: dict[str, object] = {}
    file_settings = getattr(study, "settings", None) or {}
    if file_settings:  # the study file beside the data
        where = sp.name if sp.is_file() else "study file"
        for k, v in _own_settings(file_settings, where=where, base=base).items():
            own[k] = v
            values[k] = (v, f"study file {where}")
    if extra:
        for k, v in _own_settings(extra, where=extra_source or "study", base=base).items():
            own.setdefault(k, v)
            values.setdefault(k, (v, extra_source or "study"))
    try:  # what the run would use, with sources (reads the study file too)
        p = resolve_parameters(study)
    except SpectrackError:  # something is missing: take what the headers have
        p = None
    found = {}
    if p is not None:
        for key in ("injected_mbq", "injection_time", "half_life_h", "radionuclide"):
            s = getattr(p, key)
            found[key] = (s.value, s.source)
    em = study.timepoints[0].emission
    for key, meta_key in (("injected_mbq", "injected_activity_mbq"), ("injection_time", "injection_time"),
                          ("half_life_h", "half_life_h"), ("radionuclide", "radionuclide")):
        if key not in found and em.get(meta_key) is not None:
            found[key] = (em.get(meta_key), em.source(meta_key) or "header")
    for key, vs in found.items():  # the resolved values replace the raw study-file ones (same numbers)
        values[key] = vs
    if "species" not in values:
        for s in [tp.emission for tp in study.timepoints] + [tp.ct for tp in study.timepoints if tp.ct]:
            preset = species_preset(s.get("species_description"))
            if preset is not None:
                values["species"] = (preset, f"{s.source('species_description') or 'header'} "
                                              f"({s.get('species_description')})")
                break
    label_file = None
    if "labels" in own:
        from spectrack import settings as sm

        lab = own["labels"]
        if hasattr(sm, "labels_for_study"):  # a per-study pattern ('{study}/labels.nii.gz', '*_dseg.nii.gz')
            lab = sm.labels_for_study(lab, study.path)
        label_file = (Path(lab), values["labels"][1])
    else:
        lf = _beside(study)
        if lf is not None:
            label_file = (lf, "found beside the study")
    for k in FIELD_KEYS:
        own.pop(k, None)
    return StudyDefaults(study=study, values=values, own=own, label_file=label_file)


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
        self.has_auto = _has_module("spectrack.regions.auto")
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
        if _has_module("spectrack.regions.dicomseg"):
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
        self.table_title.setText(f"%ID of {result.study.subject} (decay-corrected to injection)")
        self._publish(result)
        self._set_export_enabled(True)

    def _fill_table(self, table) -> None:
        df = table[table["kind"].isin(TABLE_KINDS)]
        piv = df.pivot_table(index="region", columns="timepoint", values="pct_id", sort=False)
        times = df.groupby("timepoint")["time_h"].first()
        self.table.clear()
        self.table.setRowCount(len(piv.index))
        self.table.setColumnCount(len(piv.columns))
        self.table.setHorizontalHeaderLabels([_hours(times[c]) for c in piv.columns])
        self.table.setVerticalHeaderLabels([str(r) for r in piv.index])
        for i, (_, row) in enumerate(piv.iterrows()):
            for j, v in enumerate(row.values):
                item = QTableWidgetItem("" if not np.isfinite(v) else f"{v:.2f}")
                item.setData(Qt.UserRole, float(v))
                item.setToolTip("" if not np.isfinite(v) else f"{piv.index[i]} at {times[piv.columns[j]]:.2f} h: "
                                f"{v:.4f} %ID")
                item.setTextAlignment(int(Qt.AlignRight | Qt.AlignVCenter))
                self.table.setItem(i, j, item)
        self.table.resizeColumnsToContents()
        QTimer.singleShot(0, self._fit_table_width)  # once the headers are laid out

    def _fit_table_width(self) -> None:
        """Wide enough for every time point: the dock grows rather than hiding the last columns."""
        from qtpy.QtWidgets import QDockWidget

        t = self.table
        need = max(t.verticalHeader().width(), t.verticalHeader().sizeHint().width()) + \
            t.horizontalHeader().length() + t.verticalScrollBar().sizeHint().width() + 2 * t.frameWidth() + 4
        t.setMinimumWidth(min(need, 760))

        dock = self.parentWidget()
        while dock is not None and not isinstance(dock, QDockWidget):
            dock = dock.parentWidget()
        main = dock.parentWidget() if dock is not None else None
        if not isinstance(main, QMainWindow):
            return
        need = self.minimumSizeHint().width() + 24  # + the scroll area's frame and scroll bar
        if dock.width() < need:
            main.resizeDocks([dock], [need], Qt.Horizontal)

    def table_values(self):
        """The table as a DataFrame of region x time point %ID (full precision)."""
        import pandas as pd

        rows = [self.table.verticalHeaderItem(i).text() for i in range(self.table.rowCount())]
        cols = [self.table.horizontalHeaderItem(j).text() for j in range(self.table.columnCount())]
        vals = [[self.table.item(i, j).data(Qt.UserRole) for j in range(len(cols))] for i in range(len(rows))]
        return pd.DataFrame(vals, index=rows, columns=cols)

    def _results_layer_for(self, path, name):
        """The Labels layer holding this study's regions of the same kind from an earlier run."""
        for ly in self._labels_layers():
            entry = self._entry(ly)
            if entry.get("results_layer") and entry.get("path") == path and ly.name == name:
                return ly
        return None

    def _publish(self, result) -> None:
        """Put the results on the regions' Labels layer (the curve dock listens to it)."""
        src, layer_name, label_file = self._run_source
        path = self._run_path
        entry = {"table": result.table, "path": path, "subject": result.study.subject,
                 "half_life_h": (result.metadata.get("dose") or {}).get("half_life_h", {}).get("value"),
                 "kinetics": result.kinetics, "run": uuid.uuid4().hex}
        if src == SOURCE_LAYER and layer_name in self.viewer.layers:
            layer = self.viewer.layers[layer_name]
        else:
            ref = getattr(self, "_reference", 0)
            lm = result.labels[min(ref, len(result.labels) - 1)] if result.labels else None
            if lm is None:
                return
            kind = "automatic regions" if src == SOURCE_AUTO else f"regions {Path(label_file).name}"
            name = f"{result.study.subject} {kind}"
            layer = self._results_layer_for(path, name)
            data, kwargs, _ = label_layer_data(lm, name=name, study_path=path)
            if layer is not None:
                layer.data = data
                layer.affine = kwargs["affine"]
                layer.features = kwargs["features"]
            else:
                kwargs["metadata"][METADATA_KEY]["results_layer"] = True
                layer = self.viewer.add_labels(data, **kwargs)
            # quantify what is shown from now on: edits to this layer count on the next run
            self.results_layer = layer
            self._use_layer(layer)
            self._source_chosen = True
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
        if isinstance(main, QMainWindow) and not getattr(self, "_curve_dock_placed", False):
            # the right-hand docks (this one, with its table) keep the full height; the plots go under the canvas
            main.setCorner(Qt.BottomRightCorner, Qt.RightDockWidgetArea)
            main.setCorner(Qt.BottomLeftCorner, Qt.LeftDockWidgetArea)
            if main.dockWidgetArea(dock) != Qt.BottomDockWidgetArea:
                main.addDockWidget(Qt.BottomDockWidgetArea, dock)
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
