"""The napari plugin: manifest, reader overlay, quantify and curve docks, exports, screenshots.

Needs napari, napari-matplotlib, pytest-qt and an X server (pytest-xvfb starts
Xvfb); skipped when napari is absent.
"""

import csv
import os
import tempfile
import sys
import time
from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("napari_matplotlib")
pytest.importorskip("pytestqt")
if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    pytest.skip("no display: install xvfb and pytest-xvfb (it starts Xvfb for the session)", allow_module_level=True)

from spectrack.cli import main as cli_main  # noqa: E402
from spectrack.regions.formats.nifti import read_label_map  # noqa: E402

pytestmark = [
    # napari / npe2 / app-model on pydantic 2 and a Qt5 backend: harmless at import and viewer start
    pytest.mark.filterwarnings("ignore:`json_encoders` is deprecated"),
    pytest.mark.filterwarnings("ignore:System theme detection requires a Qt6"),
]

# screenshots go to a temporary folder; SPECTRACK_SCREENSHOTS=DIR keeps them (the README's come from docs/images)
DOCS_IMAGES = Path(os.environ.get("SPECTRACK_SCREENSHOTS") or tempfile.mkdtemp(prefix="spectrack-shots-"))


# ------------------------------------------------------------------ helpers
def _phantom_make_study():
    try:
        from spectrack.phantom import make_study
    except ImportError:
        return None
    return make_study


@pytest.fixture(scope="session")
def sample_cache(tmp_path_factory):
    """A sample cache holding the rat and NHP phantom studies, written once per session."""
    if _phantom_make_study() is None:
        pytest.skip("spectrack.phantom.make_study is not available yet")
    from spectrack_napari import _sample_data

    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPECTRACK_CACHE_DIR", str(cache))
        _sample_data.phantom_study_dir("rat")
        _sample_data.phantom_study_dir("nhp")
    return cache


@pytest.fixture
def phantom_root(sample_cache, monkeypatch):
    """The rat phantom study (dicom/, nifti/, labels.nii.gz, truth.json); samples come from the same cache."""
    from spectrack_napari import _sample_data

    monkeypatch.setenv("SPECTRACK_CACHE_DIR", str(sample_cache))
    return _sample_data.phantom_study_dir("rat")


@pytest.fixture
def nifti_dir(tmp_path, nifti_study):
    nifti_study(tmp_path / "study")
    return tmp_path / "study"


def _world_values(layer, world_zyx):
    """Nearest-voxel values of a 3-D (or current time point of a 4-D) image layer at world points."""
    data = np.asarray(layer.data)
    pts = np.asarray(world_zyx, float)
    if data.ndim == 4:
        pts = np.column_stack([np.zeros(len(pts)), pts])
    idx = np.array([layer.world_to_data(p) for p in pts])
    idx = np.rint(idx).astype(int)
    if data.ndim == 4:
        idx = idx[:, 1:]
        data = data[0]
    ok = np.all((idx >= 0) & (idx < np.array(data.shape)), axis=1)
    out = np.full(len(pts), np.nan)
    out[ok] = data[tuple(idx[ok].T)]
    return out


def _label_world_points(label_layer, value, max_points=4000):
    data = np.asarray(label_layer.data)
    kji = np.argwhere(data == value)
    if len(kji) > max_points:
        kji = kji[np.linspace(0, len(kji) - 1, max_points).astype(int)]
    return np.array([label_layer.data_to_world(p) for p in kji])


def _notifications():
    from napari.utils.notifications import notification_manager

    return notification_manager.records


def _layers_by_role(viewer):
    roles = {}
    for ly in viewer.layers:
        role = (ly.metadata or {}).get("spectrack", {}).get("role")
        roles.setdefault(role, []).append(ly)
    return roles


# ------------------------------------------------------------------ manifest
def test_manifest_validates():
    """What ``npe2 validate spectrack --imports`` checks: the schema, then every python_name imports."""
    import npe2

    pm = npe2.PluginManifest.from_distribution("spectrack")  # raises ValidationError if invalid
    pm.validate_imports()
    c = pm.contributions
    assert {s.key for s in c.sample_data} == {"rat", "nhp", "human"}
    assert {w.display_name for w in c.widgets} == {"Quantify", "Time-activity curves"}
    (reader,) = c.readers
    assert reader.accepts_directories
    assert {"*.nii", "*.nii.gz", "*.dcm", "*.IMA", "*.toml"} <= set(reader.filename_patterns)


# ------------------------------------------------------------------ reader
def test_get_reader_declines_what_it_cannot_read(tmp_path):
    from spectrack_napari._reader import get_reader

    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path / "empty")) is None
    assert get_reader(str(tmp_path / "missing.nii.gz")) is None
    assert get_reader([str(tmp_path), str(tmp_path)]) is None


def test_bad_input_is_one_notification_not_a_crash(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "scan.nii.gz").write_bytes(b"not a nifti file at all")
    n0 = len(_notifications())
    layers = viewer.open(str(bad), plugin="spectrack")
    assert layers == [] and len(viewer.layers) == 0
    new = _notifications()[n0:]
    assert new, "no notification for bad input"
    msg = str(new[-1].message)
    assert msg.startswith("spectrack:") and "\n" not in msg


def test_nifti_study_layers_overlay(make_napari_viewer, nifti_dir):
    viewer = make_napari_viewer()
    viewer.open(str(nifti_dir), plugin="spectrack")
    roles = _layers_by_role(viewer)
    (spect,) = roles["emission"]
    (regions,) = roles["labels"]
    assert spect.data.shape[0] == 3 and spect.ndim == 4  # time is a slider axis
    assert spect.blending == "additive" and spect.colormap.name == "inferno"
    assert spect.contrast_limits[0] == 0 and spect.contrast_limits[1] > 0
    assert viewer.dims.ndim == 4
    # the slider says where it is: hours after injection of the current scan (conftest: 0.5, 4 and 26 h)
    assert viewer.dims.axis_labels[0] == f"{(0.5, 4.0, 26.0)[viewer.dims.current_step[0]]:.2f} h after injection"
    # the brain label sits on the brain activity, in world (mm) coordinates
    lm = read_label_map(nifti_dir / "labels.nii.gz")
    assert np.allclose(regions.affine.affine_matrix, lm.image.napari_affine())
    names = dict(zip(regions.features["index"], regions.features["name"]))
    brain = [k for k, v in names.items() if v == "brain"][0]
    inside = _world_values(spect, _label_world_points(regions, brain))
    outside = _world_values(spect, _label_world_points(regions, 0))
    assert np.all(inside > 0) and np.nanmax(outside) == 0


# ------------------------------------------------------------------ phantom
@pytest.mark.parametrize("fmt", ["dicom", "nifti"])
def test_phantom_study_ct_and_spect_overlay(make_napari_viewer, phantom_root, fmt):
    viewer = make_napari_viewer()
    viewer.open(str(phantom_root / fmt), plugin="spectrack")
    viewer.open(str(phantom_root / "labels.nii.gz"), plugin="spectrack")
    roles = _layers_by_role(viewer)
    (ct,) = roles["ct"]
    (spect,) = roles["emission"]
    assert ct.colormap.name == "gray" and spect.blending == "additive"
    assert ct.ndim == spect.ndim == 4 and ct.data.shape[0] == spect.data.shape[0] > 1
    regions = roles["labels"][-1]  # the one opened from labels.nii.gz (nifti/ has its own copy too)
    assert isinstance(regions, napari.layers.Labels)
    lm = read_label_map(phantom_root / "labels.nii.gz")
    brain = [k for k, v in lm.names.items() if v == "brain"][0]
    pts = _label_world_points(regions, brain)
    hu = _world_values(ct, pts)
    assert 20 < np.nanmedian(hu) < 60, np.nanmedian(hu)  # brain-like HU under the brain label
    assert np.nanmean(_world_values(spect, pts)) > 0


# ------------------------------------------------------------------ docks
def _open_quantify(viewer, qtbot):
    _, qw = viewer.window.add_plugin_dock_widget("spectrack", "Quantify")
    if qw.busy:
        qtbot.waitUntil(lambda: not qw.busy, timeout=60000)
    return qw


def _run_and_wait(qw, qtbot):
    qw.run()
    qtbot.waitUntil(lambda: not qw.busy, timeout=240000)
    return qw.result


def _cli_table(study, labels, out, *extra):
    rc = cli_main(["quantify", str(study), "--labels", str(labels), "-o", str(out), "--no-report", "-q", *extra])
    assert rc == 0
    rows = list(csv.DictReader(open(out / "regions.csv")))
    return {(r["region"], int(r["timepoint"])): float(r["pct_id"]) for r in rows}


def _widget_table(qw):
    df = qw.table_values()
    return {(region, j): float(v) for region, row in df.iterrows() for j, v in enumerate(row.values)}


def test_quantify_dock_matches_cli_and_curves_follow_edits(make_napari_viewer, qtbot, nifti_dir, tmp_path):
    viewer = make_napari_viewer()
    viewer.open(str(nifti_dir), plugin="spectrack")
    qw = _open_quantify(viewer, qtbot)
    # the study path comes from the opened layers; header values prefill the fields
    assert qw.path_edit.text() == str(nifti_dir)
    assert qw.study is not None and len(qw.study.timepoints) == 3
    assert qw.injected_spin.value() == pytest.approx(150.0)
    assert qw.half_life_spin.value() == pytest.approx(6.0067, abs=1e-4)
    assert qw.injection_time_edit.text().startswith("2026-03-14 22:40")
    (regions,) = _layers_by_role(viewer)["labels"]
    assert regions.name == f"{qw.study.subject} regions"
    assert qw.source_combo.currentText() == "Labels layer" and qw.layer_combo.currentText() == regions.name

    progress = []
    qw._relay.progress.connect(lambda stage, frac: progress.append((stage, frac)))
    res = _run_and_wait(qw, qtbot)
    assert res is not None and progress[-1][1] == 1.0 and qw.progress_bar.value() == 100

    cli = _cli_table(nifti_dir, nifti_dir / "labels.nii.gz", tmp_path / "cli")
    got = _widget_table(qw)
    assert set(got) <= set(cli) and {"brain", "liver"} <= {r for r, _ in got}
    for key, v in got.items():
        assert v == pytest.approx(cli[key], rel=1e-6), key

    cw = qw.curve_widget
    assert cw is not None and cw.table is not None
    before = cw.plotted_data()
    assert set(before) == {"brain", "liver"}  # no cns group here: its regions and the organs
    # edit a region: erase half of the brain in the Labels layer, re-quantify
    data = np.asarray(regions.data).copy()
    k = np.argwhere(data == 1)[:, 0]
    data[(data == 1) & (np.arange(data.shape[0])[:, None, None] <= np.median(k))] = 0
    regions.data = data
    _run_and_wait(qw, qtbot)
    after = cw.plotted_data()
    assert not np.allclose(after["brain"][1], before["brain"][1])
    assert np.all(after["brain"][1] < before["brain"][1])
    np.testing.assert_allclose(after["liver"][1], before["liver"][1])

    # exports
    csv_path = qw.export_table(tmp_path / "exp" / "regions.csv")
    assert csv_path is not None and "pct_id" in csv_path.read_text().splitlines()[0]
    nii = qw.export_labels(tmp_path / "exp" / "labels.nii.gz")
    back = read_label_map(nii)
    assert back.names[1] == "brain" and int((back.image.array == 1).sum()) == int((data == 1).sum())
    if qw.export_report_button is not None:
        written = qw.export_report(tmp_path / "exp" / "report")
        assert (tmp_path / "exp" / "report" / "report.html") in written
    qtbot.waitUntil(lambda: not cw.fitting, timeout=60000)


def test_quantify_errors_are_one_line_and_cancel_works(make_napari_viewer, qtbot, nifti_dir, monkeypatch):
    import spectrack_napari._quantify as qmod

    viewer = make_napari_viewer()
    viewer.open(str(nifti_dir), plugin="spectrack")
    qw = _open_quantify(viewer, qtbot)
    n0 = len(_notifications())
    qw.injection_time_edit.setText("yesterday at noon")
    qw.run()
    assert not qw.busy
    msgs = [str(n.message) for n in _notifications()[n0:]]
    assert msgs and msgs[-1].startswith("spectrack:") and "\n" not in msgs[-1]
    qw.injection_time_edit.setText(qw._header["injection_time"])

    real = qmod._run

    def slow(path, settings, labels, study, progress, cancel):
        t0 = time.monotonic()
        while not cancel() and time.monotonic() - t0 < 10:
            time.sleep(0.01)
        return real(path, settings, labels, study, progress, cancel)

    monkeypatch.setattr(qmod, "_run", slow)
    qw.run()
    assert qw.busy and qw.cancel_button.isEnabled()
    qw.cancel()
    qtbot.waitUntil(lambda: not qw.busy, timeout=20000)
    assert qw.result is None and qw.status_label.text() == "cancelled"
    assert qw.run_button.isEnabled()


def _entry_path(layer):
    return (layer.metadata or {}).get("spectrack", {}).get("path")


def _sample_root(preset):
    from spectrack_napari import _sample_data

    return _sample_data.phantom_study_dir(preset)


def _assert_truth(qw, truth, rel=1e-3, regions=None):
    """Every region and group of the dock's table against the phantom's truth.json (0.1 %)."""
    df = qw.table_values()
    assert df.shape[1] == len(truth["timepoints"])
    checked = 0
    for name, row in df.iterrows():
        if regions is not None and name not in regions:
            continue
        for j, v in enumerate(row.values):
            tp = truth["timepoints"][j]
            want = (tp["regions"].get(name) or tp["groups"].get(name) or {}).get("pct_id")
            if want is None:
                continue
            assert v == pytest.approx(want, rel=rel, abs=1e-6), (name, j, v, want)
            checked += 1
    assert checked >= len(truth["timepoints"]) * (len(regions) if regions else 10)


def _shoot(viewer, qtbot, name):
    from qtpy.QtWidgets import QApplication

    for _ in range(5):
        QApplication.processEvents()
        qtbot.wait(50)
    img = viewer.screenshot(canvas_only=False, flash=False)
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    from matplotlib.image import imsave

    imsave(DOCS_IMAGES / name, img)
    return img


def test_sample_quantify_and_screenshots(make_napari_viewer, qtbot, phantom_root, tmp_path):
    import json

    truth = json.loads((phantom_root / "truth.json").read_text())
    viewer = make_napari_viewer(show=True)
    viewer.window.set_geometry(0, 0, 1400, 900)
    viewer.open_sample("spectrack", "rat")
    roles = _layers_by_role(viewer)
    assert len(roles["ct"]) == len(roles["emission"]) == len(roles["labels"]) == 1
    ct, spect, regions = roles["ct"][0], roles["emission"][0], roles["labels"][0]
    assert ct.data.shape[0] == spect.data.shape[0] == len(truth["timepoints"])
    regions.visible = False
    viewer.dims.order = (0, 3, 2, 1)  # sagittal: (y, z) on screen, x on a slider
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera  # napari >= 0.9 / older
    camera.orientation2d = ("up", "right")  # LPS: posterior (back) up, head to the right
    canal = [k for k, v in zip(regions.features["index"], regions.features["name"]) if v == "canal_lumbar"][0]
    viewer.dims.set_point(3, float(np.median(_label_world_points(regions, canal)[:, 2])))  # mid-sagittal
    viewer.dims.set_current_step(0, 2)
    viewer.reset_view()
    _shoot(viewer, qtbot, "napari_open.png")

    qw = _open_quantify(viewer, qtbot)
    assert qw.path_edit.text().endswith("dicom")
    # the sample's own calibration (its truth.json), the species, and its regions layer
    assert qw.calibration_combo.currentText() == "sensitivity"
    assert qw.sensitivity_spin.value() == pytest.approx(truth["sensitivity_cps_per_mbq"])
    assert qw.species() == "rat" and qw.source_combo.currentText() == "Labels layer"
    viewer.window.set_geometry(0, 0, 1600, 1000)
    _shoot(viewer, qtbot, "napari_dock.png")
    res = _run_and_wait(qw, qtbot)
    assert res is not None
    _assert_truth(qw, truth)
    cli = _cli_table(phantom_root / "dicom", phantom_root / "labels.nii.gz", tmp_path / "cli",
                     "--calibration", "sensitivity", "--sensitivity", str(truth["sensitivity_cps_per_mbq"]))
    for key, v in _widget_table(qw).items():
        assert v == pytest.approx(cli[key], rel=1e-6), key
    cw = qw.curve_widget
    assert cw.selected_regions() == ["cns", "liver", "kidneys", "bladder"]  # CNS group and organs, not all 19
    assert cw.region_list.count() == 18  # 16 regions and 2 groups to choose from
    assert set(cw.plotted_data()) == {"liver", "kidneys", "bladder", "cns"}
    sel = ["brain", "canal_cervical", "canal_lumbar", "injection_site", "liver", "bladder"]
    cw.set_regions(sel)
    assert set(cw.plotted_data()) == set(sel)
    from matplotlib.colors import to_hex

    assert len({to_hex(c.lines[0].get_color()) for c in cw.axes.containers}) == len(sel)  # one colour per curve
    qtbot.waitUntil(lambda: not cw.fitting, timeout=60000)
    times = res.table.groupby("timepoint")["time_h"].first()
    vlines = [ln for ln in cw.axes.lines if len(set(ln.get_xdata())) == 1]
    assert len(vlines) == 1 and vlines[0].get_xdata()[0] == pytest.approx(times[2])
    fitted = [ln for ln in cw.axes.lines if ln.get_label().startswith("_") and len(ln.get_xdata()) > 50]
    assert len(fitted) >= 2  # accepted kinetics fits drawn as smooth lines, rejected ones say so
    viewer.dims.set_current_step(0, 3)  # the line follows the time slider
    vlines = [ln for ln in cw.axes.lines if len(set(ln.get_xdata())) == 1]
    assert vlines[0].get_xdata()[0] == pytest.approx(times[3])
    assert viewer.dims.axis_labels[0] == f"{times[3]:.2f} h after injection"  # the slider reads in hours
    regions.visible = True
    regions.contour = 1
    regions.opacity = 0.4
    viewer.window.set_geometry(0, 0, 1600, 1150)
    viewer.reset_view()
    _shoot(viewer, qtbot, "napari_quantify.png")

    # another study: every field from it, nothing left of the rat
    truth2 = json.loads((_sample_root("nhp") / "truth.json").read_text())
    viewer.open_sample("spectrack", "nhp")
    qtbot.waitUntil(lambda: qw.study is not None and not qw.busy, timeout=60000)
    assert qw.path_edit.text() == str(_sample_root("nhp") / "dicom")
    assert qw.result is None and qw.table.rowCount() == 0
    assert not any(b.isEnabled() for b in qw.export_buttons)
    assert qw.sensitivity_spin.value() == pytest.approx(truth2["sensitivity_cps_per_mbq"])
    assert qw.injected_spin.value() == pytest.approx(truth2["injected_mbq"])
    assert qw.species() == "nhp"
    assert qw.layer_combo.currentText() == f"{qw.study.subject} regions" != regions.name  # its own, not the rat's
    assert cw.table is None  # the curve dock does not show the rat's curves for the NHP
    for ly in (ct, spect, regions):  # as a user would: the rat out of the way
        ly.visible = False
    nhp_regions = viewer.layers[qw.layer_combo.currentText()]
    nhp_regions.contour = 1
    canal = [k for k, v in zip(nhp_regions.features["index"], nhp_regions.features["name"]) if v == "canal_lumbar"][0]
    viewer.dims.set_point(3, float(np.median(_label_world_points(nhp_regions, canal)[:, 2])))
    viewer.reset_view()
    _shoot(viewer, qtbot, "napari_second_study.png")
    _run_and_wait(qw, qtbot)
    _assert_truth(qw, truth2)
    assert cw.table is not None and set(cw.plotted_data()) == {"liver", "kidneys", "bladder", "cns"}


def test_automatic_regions_and_dicom_seg_export(make_napari_viewer, qtbot, phantom_root, tmp_path):
    import json

    pytest.importorskip("spectrack.regions.auto.ct")
    truth = json.loads((phantom_root / "truth.json").read_text())
    viewer = make_napari_viewer()
    viewer.open(str(phantom_root / "dicom"), plugin="spectrack")
    qw = _open_quantify(viewer, qtbot)
    assert qw.species() == "rat"  # PatientSpeciesDescription Rattus norvegicus
    qw.source_combo.setCurrentText("Automatic regions")
    qw.calibration_combo.setCurrentText("sensitivity")
    qw.sensitivity_spin.setValue(truth["sensitivity_cps_per_mbq"])
    res = _run_and_wait(qw, qtbot)
    assert res is not None
    layer = qw.results_layer
    assert isinstance(layer, napari.layers.Labels) and "brain" in set(layer.features["name"])
    # the regions shown are what is quantified next (edits count)
    assert qw.source_combo.currentText() == "Labels layer" and qw.layer_combo.currentText() == layer.name
    assert "brain" in qw.table_values().index
    if qw.export_seg_button is not None:
        seg = qw.export_dicom_seg(tmp_path / "regions_seg.dcm")
        assert seg is not None and seg.stat().st_size > 0
        from spectrack.regions.formats.dicomseg import read_dicom_seg

        assert "brain" in read_dicom_seg(seg).names.values()


# ------------------------------------------------------------------ two studies, defaults
def _study_file_phantom(root, preset, *, settings: str, **kw):
    """A NIfTI phantom study with a study file (``spectrack.toml``) giving its own settings; returns its truth."""
    truth = _phantom_make_study()(root, preset, formats=("nifti",), **kw)
    tps = "".join(f'\n[[timepoints]]\nspect = "tp{i}_spect.nii.gz"\nct = "tp{i}_ct.nii.gz"\n'
                  for i in range(len(truth["timepoints"])))
    (root / "nifti" / "spectrack.toml").write_text(settings + 'labels = "labels.nii.gz"\n' + tps)
    return truth


def test_opening_another_study_resets_every_field(make_napari_viewer, qtbot, tmp_path):
    """Two phantoms with different sensitivities, doses, injection times, species and calibration, in turn."""
    import datetime as dt
    import shutil

    if _phantom_make_study() is None:
        pytest.skip("spectrack.phantom.make_study is not available yet")
    truth_a = _study_file_phantom(tmp_path / "nhp", "nhp", times_h=[0.5, 2.0, 6.0],
                                  settings='calibration = "sensitivity"\nsensitivity_cps_per_mbq = 30.0\n'
                                           'species = "nhp"\n')
    truth_b = _study_file_phantom(tmp_path / "rat", "rat", times_h=[1.0, 3.0, 8.0], injected_mbq=25.0,
                                  sensitivity_cps_per_mbq=120.0, injection_datetime=dt.datetime(2026, 5, 2, 9, 15),
                                  settings='sensitivity_cps_per_mbq = 120.0\nspecies = "rat"\n')
    assert truth_a["sensitivity_cps_per_mbq"] == 30.0 and truth_b["sensitivity_cps_per_mbq"] == 120.0
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "nhp" / "nifti"), plugin="spectrack")
    qw = _open_quantify(viewer, qtbot)
    assert qw.calibration_combo.currentText() == "sensitivity"
    assert qw.sensitivity_spin.value() == 30.0 and "spectrack.toml" in qw.sensitivity_spin.toolTip()
    assert qw.injected_spin.value() == pytest.approx(truth_a["injected_mbq"])
    assert qw.injection_time_edit.text() == truth_a["injection_datetime"].replace("T", " ")
    assert qw.species() == "nhp" and qw.source_combo.currentText() == "Labels layer"
    labels_a = qw.layer_combo.currentText()
    _run_and_wait(qw, qtbot)
    _assert_truth(qw, truth_a)
    assert all(b.isEnabled() for b in qw.export_buttons)
    # the user overrides a value for the monkey; the rat must not inherit it either
    qw.half_life_spin.setValue(6.5)

    viewer.open(str(tmp_path / "rat" / "nifti"), plugin="spectrack")
    qtbot.waitUntil(lambda: qw.study is not None and not qw.busy, timeout=60000)
    assert qw.study.subject != "NHP-PHANTOM-01"
    assert qw.result is None and qw.table.rowCount() == 0 and qw.table.columnCount() == 0
    assert not any(b.isEnabled() for b in qw.export_buttons)
    assert qw.export_table(tmp_path / "stale.csv") is None and not (tmp_path / "stale.csv").exists()
    assert qw.calibration_combo.currentText() == "auto"  # the rat's study file does not name one
    assert qw.sensitivity_spin.value() == 120.0
    assert qw.injected_spin.value() == pytest.approx(25.0)
    assert qw.injection_time_edit.text() == "2026-05-02 09:15:00"
    assert qw.half_life_spin.value() == pytest.approx(truth_b["half_life_h"])
    assert qw.species() == "rat"
    assert qw.source_combo.currentText() == "Labels layer" and qw.layer_combo.currentText() != labels_a
    assert qw.curve_widget.table is None  # no monkey curves for the rat
    _run_and_wait(qw, qtbot)
    _assert_truth(qw, truth_b)
    assert (qw.result.table["species"] == "rat").all()

    # the case: a count study that says nothing about its sensitivity gets none, not the last one's
    shutil.copytree(tmp_path / "rat" / "nifti", tmp_path / "bare")
    (tmp_path / "bare" / "spectrack.toml").unlink()
    viewer.open(str(tmp_path / "bare"), plugin="spectrack")
    qtbot.waitUntil(lambda: qw.study is not None and not qw.busy, timeout=60000)
    assert qw.sensitivity_spin.value() == 0 and qw.sensitivity_spin.text() == "not given"
    assert qw.calibration_combo.currentText() == "auto" and qw.species() is None
    n0 = len(_notifications())
    qw.run()
    qtbot.waitUntil(lambda: not qw.busy, timeout=60000)
    assert qw.result is None and qw.table.rowCount() == 0 and not qw.status_label.text().startswith("done")
    errors = [str(n.message) for n in _notifications()[n0:] if n.severity == "error"]
    assert len(errors) == 1 and "sensitivity" in errors[0] and "\n" not in errors[0]


def test_default_region_source_exists_and_first_click_quantifies(make_napari_viewer, qtbot, tmp_path):
    """No Labels layer open: a label file beside the study, else automatic regions; Quantify works at once."""
    import shutil

    if _phantom_make_study() is None:
        pytest.skip("spectrack.phantom.make_study is not available yet")
    pytest.importorskip("spectrack.regions.auto.ct")
    root = tmp_path / "rat"
    truth = _phantom_make_study()(root, "rat", units="bqml", formats=("dicom",), times_h=[0.5, 2.0, 6.0])
    viewer = make_napari_viewer(show=True)
    viewer.window.set_geometry(0, 0, 1600, 1150)
    viewer.open(str(root / "dicom"), plugin="spectrack")
    assert not [ly for ly in viewer.layers if isinstance(ly, napari.layers.Labels)]
    qw = _open_quantify(viewer, qtbot)
    layer_item = qw.source_combo.model().item(qw.source_combo.findText("Labels layer"))
    assert not layer_item.isEnabled()  # nothing to offer there
    assert qw.source_combo.currentText() == "Label file"
    assert Path(qw.label_file_edit.text()) == root / "labels.nii.gz"
    n0 = len(_notifications())
    _run_and_wait(qw, qtbot)  # the first click, nothing touched
    assert qw.result is not None and qw.status_label.text().startswith("done")
    assert not [n for n in _notifications()[n0:] if n.severity == "error"]
    _assert_truth(qw, truth)

    # the same scans alone (no label map anywhere near): automatic regions with the header's species
    alone = tmp_path / "alone" / "scans"
    shutil.copytree(root / "dicom", alone)
    viewer.open(str(alone), plugin="spectrack")
    qtbot.waitUntil(lambda: qw.study is not None and not qw.busy, timeout=60000)
    assert qw.label_file_edit.text() == "" and qw.source_combo.currentText() == "Automatic regions"
    assert qw.species() == "rat" and "Rattus" in qw.species_combo.toolTip()
    _run_and_wait(qw, qtbot)
    assert qw.result is not None and qw.status_label.text().startswith("done")
    # automatic regions are not the phantom's exact ones: brain and liver within 10 %
    _assert_truth(qw, truth, rel=0.10, regions=("brain", "liver"))
    for ly in viewer.layers:  # the automatic regions over the scans alone, as contours
        ly.visible = _entry_path(ly) == str(alone)
    qw.results_layer.contour = 1
    viewer.dims.order = (0, 3, 2, 1)
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.orientation2d = ("up", "right")
    lm = qw.result.labels[0]
    brain = [k for k, v in lm.names.items() if v == "brain"][0]
    viewer.dims.set_point(3, float(np.median(_label_world_points(qw.results_layer, brain)[:, 2])))
    viewer.reset_view()
    _shoot(viewer, qtbot, "napari_auto_regions.png")


def test_time_slider_reads_hours_after_injection(make_napari_viewer, qtbot, nifti_dir):
    viewer = make_napari_viewer()
    viewer.open(str(nifti_dir), plugin="spectrack")
    study_layer = _layers_by_role(viewer)["emission"][0]
    times = study_layer.metadata["spectrack"]["times_h"]
    assert times == pytest.approx([0.5, 4.0, 26.0])  # the conftest study's scan times
    for step in (0, 2, 1):  # without any dock open
        viewer.dims.set_current_step(0, step)
        assert viewer.dims.axis_labels[0] == f"{times[step]:.2f} h after injection"
    _open_quantify(viewer, qtbot)
    viewer.dims.set_current_step(0, 2)
    assert viewer.dims.axis_labels[0] == "26.00 h after injection"
    viewer.dims.set_current_step(0, 1)
    viewer.add_labels(np.zeros(study_layer.data.shape[1:], np.int32), name="drawn")  # napari resets labels here
    assert viewer.dims.axis_labels[0] == f"{times[1]:.2f} h after injection"
