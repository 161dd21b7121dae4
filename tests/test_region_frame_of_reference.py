"""Region files of another time point, another frame of reference or another subject.

The phantom gives every scan its own FrameOfReferenceUID (CT and SPECT of a
scan share it) and moves the subject between the scans, so regions drawn on
the second scan's CT are exactly right there and wrong by the motion anywhere
else. Such regions (an RTSTRUCT written by rt-utils, a SEG written by
highdicom) must be placed on the second scan: its %ID is then the phantom's
truth within 0.1 %. Regions of another subject (PatientID) or of a frame of
reference no scan has are refused with one line (exit 5).
"""

import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from spectrack import run_study
from spectrack.cli import main
from spectrack.errors import InconsistentInputError
from spectrack.phantom import make_phantom, make_study
from spectrack.regions.formats.dicomseg import read_reference_series, write_dicom_seg
from spectrack.regions.labelmap import LabelMap

# a shift by whole SPECT voxels (4.2 mm): registration finds it to well under half a voxel, so labels carried to
# the other scan are its true labels and both scans' %ID is exact
MOTION = [None, (8.4, -4.2, 12.6, 0.0, 0.0, 0.0)]
ARGS = dict(preset="nhp", times_h=[0.5, 4.0], seed=8, motion=MOTION)


def series_folder(dicom_dir: Path, series_uid: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for p in dicom_dir.iterdir():
        if pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID == series_uid:
            shutil.copy(p, dest / p.name)
    return dest


def rtutils_rtstruct(ct_dir: Path, labels: LabelMap, path: Path) -> Path:
    """rt-utils' RTSTRUCT of every region of ``labels`` (on the grid of ``ct_dir``)."""
    from rt_utils import RTStructBuilder

    _, grid = read_reference_series(ct_dir)
    assert labels.image.same_grid(grid)
    with warnings.catch_warnings():  # rt-utils 1.2 still sets FileDataset.is_little_endian (pydicom 3 deprecates it)
        warnings.filterwarnings("ignore", message=".*will be removed in v4.0", category=DeprecationWarning)
        rs = RTStructBuilder.create_new(dicom_series_path=str(ct_dir))
        ks = [int(round(float(grid.world_to_index([float(v) for v in s.ImagePositionPatient])[2])))
              for s in rs.series_data]
        arr = labels.image.array
        for idx, name in sorted(labels.names.items()):
            if np.any(arr == idx):
                rs.add_roi(mask=np.stack([arr[k] == idx for k in ks], axis=-1), name=name)
        rs.save(str(path))
    return path


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    """Two scans of one subject, moved between them; each scan's CT in its own folder and its true labels."""
    out = tmp_path_factory.mktemp("for")
    truth = make_study(out, formats=("dicom",), **ARGS)
    phantom = make_phantom(**ARGS)
    cts = [series_folder(out / "dicom", tp["files"]["dicom_ct"]["series_uid"], out / f"ct{tp['index']}")
           for tp in truth["timepoints"]]
    labels_ct = [tp.labels_ct for tp in phantom.timepoints]
    assert not np.array_equal(labels_ct[0].image.array, labels_ct[1].image.array)  # the subject moved
    settings = {"sensitivity_cps_per_mbq": truth["sensitivity_cps_per_mbq"], "uncertainty_draws": 0,
                "report": False, "register": True}
    return out, truth, cts, labels_ct, settings


def _check_on_second_scan(res, truth, name):
    table = res.table.set_index(["timepoint", "region"])
    placed = [w for w in res.metadata["warnings"] if "time point 1" in w and name in w]
    assert placed and "reference" in placed[0]
    assert res.metadata["registration"]["reference"] == 1
    assert res.metadata["labels"]["timepoint"] == 1
    checked = 0
    for tp in truth["timepoints"]:  # the first scan gets the regions through the registration
        for region, t in list(tp["regions"].items()) + list(tp["groups"].items()):
            if t.get("n_voxels", 1):
                got = table.loc[(tp["index"], region), "pct_id"]
                assert got == pytest.approx(t["pct_id"], rel=1e-3, abs=1e-9), (tp["index"], region)
                checked += 1
    assert checked >= 30


def test_rtstruct_drawn_on_another_timepoint(moved, tmp_path, capsys):
    out, truth, cts, labels_ct, settings = moved
    rs = rtutils_rtstruct(cts[1], labels_ct[1], tmp_path / "rs_tp1.dcm")
    assert pydicom.dcmread(rs).ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID == \
        truth["timepoints"][1]["files"]["dicom_ct"]["frame_of_reference_uid"]
    res = run_study(out / "dicom", dict(settings, labels=str(rs)))
    _check_on_second_scan(res, truth, rs.name)
    # without registration the regions stay where they were drawn: right on the second scan
    rc = main(["quantify", str(out / "dicom"), "--labels", str(rs), "-o", str(tmp_path / "r"), "--no-report",
               "--sensitivity", str(settings["sensitivity_cps_per_mbq"]), "--uncertainty-draws", "0"])
    assert rc == 0
    assert "time point 1" in " ".join(capsys.readouterr().err.split())
    import pandas as pd

    table = pd.read_csv(tmp_path / "r" / "regions.csv").set_index(["timepoint", "region"])
    for region, t in truth["timepoints"][1]["regions"].items():
        if t["n_voxels"]:
            assert table.loc[(1, region), "pct_id"] == pytest.approx(t["pct_id"], rel=1e-3, abs=1e-9), region


def test_dicom_seg_drawn_on_another_timepoint(moved, tmp_path):
    out, truth, cts, labels_ct, settings = moved
    seg = write_dicom_seg(labels_ct[1], cts[1], tmp_path / "seg_tp1.dcm")  # highdicom
    res = run_study(out / "dicom", dict(settings, labels=str(seg)))
    _check_on_second_scan(res, truth, seg.name)


def test_regions_of_another_subject_are_refused(moved, tmp_path, capsys):
    out, truth, cts, labels_ct, settings = moved
    other = tmp_path / "other"
    t2 = make_study(other, "nhp", times_h=[0.5], seed=8, subject_id="NHP-OTHER", formats=("dicom",))
    ct = series_folder(other / "dicom", t2["timepoints"][0]["files"]["dicom_ct"]["series_uid"], other / "ct")
    labels = make_phantom("nhp", times_h=[0.5], seed=8, subject_id="NHP-OTHER").timepoints[0].labels_ct
    rs = rtutils_rtstruct(ct, labels, tmp_path / "rs_other.dcm")
    seg = write_dicom_seg(labels, ct, tmp_path / "seg_other.dcm")
    for path in (rs, seg):
        with pytest.raises(InconsistentInputError, match="NHP-OTHER") as e:
            run_study(out / "dicom", dict(settings, labels=str(path)))
        assert truth["subject_id"] in str(e.value)
    rc = main(["quantify", str(out / "dicom"), "--labels", str(rs), "-o", str(tmp_path / "r"), "--no-report",
               "--sensitivity", "1", "--uncertainty-draws", "0"])
    err = capsys.readouterr().err
    assert rc == 5
    assert "NHP-OTHER" in err and "Traceback" not in err
    assert not (tmp_path / "r" / "regions.csv").exists()


def test_regions_in_an_unknown_frame_of_reference_are_refused(moved, tmp_path):
    """The same subject on a CT that is not in the study: positions need not match, so no numbers."""
    out, truth, cts, labels_ct, settings = moved
    other = tmp_path / "other"
    t2 = make_study(other, "nhp", times_h=[0.5], seed=9, subject_id=truth["subject_id"], formats=("dicom",))
    frame = t2["timepoints"][0]["files"]["dicom_ct"]["frame_of_reference_uid"]
    assert frame not in {tp["files"]["dicom_ct"]["frame_of_reference_uid"] for tp in truth["timepoints"]}
    ct = series_folder(other / "dicom", t2["timepoints"][0]["files"]["dicom_ct"]["series_uid"], other / "ct")
    labels = make_phantom("nhp", times_h=[0.5], seed=9, subject_id=truth["subject_id"]).timepoints[0].labels_ct
    rs = rtutils_rtstruct(ct, labels, tmp_path / "rs_elsewhere.dcm")
    with pytest.raises(InconsistentInputError, match=frame):
        run_study(out / "dicom", dict(settings, labels=str(rs)))


def test_regions_on_the_reference_scan_stay_there(moved, tmp_path):
    """Regions of the first scan (the default reference): no warning about placement, truth at time point 0."""
    out, truth, cts, labels_ct, settings = moved
    rs = rtutils_rtstruct(cts[0], labels_ct[0], tmp_path / "rs_tp0.dcm")
    res = run_study(out / "dicom", dict(settings, labels=str(rs)))
    assert not [w for w in res.metadata["warnings"] if "were drawn on time point" in w]
    assert res.metadata["registration"]["reference"] == 0
    table = res.table.set_index(["timepoint", "region"])
    for region, t in truth["timepoints"][0]["regions"].items():
        if t["n_voxels"]:
            assert table.loc[(0, region), "pct_id"] == pytest.approx(t["pct_id"], rel=1e-3, abs=1e-9), region
