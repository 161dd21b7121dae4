"""The Quantify dock's results: the %ID table, the regions' Labels layer the curve dock reads, and exports.

:class:`ResultsMixin` is the part of :class:`spectrack_napari._quantify.QuantifyWidget`
that shows and exports a finished run (a :class:`spectrack.pipeline.StudyResult`);
the form and the run itself stay in :mod:`spectrack_napari._quantify`.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QFileDialog, QMainWindow, QTableWidgetItem

from ._layers import METADATA_KEY, label_layer_data, layer_label_map
from ._study_form import SOURCE_AUTO, SOURCE_LAYER, TABLE_KINDS

__all__ = ["ResultsMixin"]

log = logging.getLogger(__name__)


def _show(level: str, message: str) -> None:
    from napari.utils import notifications

    {"error": notifications.show_error, "warning": notifications.show_warning}.get(
        level, notifications.show_info)(" ".join(str(message).split()))


def _hours(t) -> str:
    """A time point's column title: ``0.5 h``, ``24 h``, ``1.25 h``."""
    return "?" if t is None or not np.isfinite(t) else f"{float(t):.3g} h" if t < 100 else f"{float(t):.0f} h"


class ResultsMixin:
    """Showing and exporting a run's result; mixed into the Quantify widget (which provides ``viewer``,
    ``table``, ``status_label``, ``progress_bar``, ``_labels_layers``, ``_entry``, ``_use_layer``,
    ``_report_error`` and ``_set_export_enabled``)."""

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
            from spectrack.regions.formats.nifti import write_label_map

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
            from spectrack.regions.formats.dicomseg import write_dicom_seg

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
