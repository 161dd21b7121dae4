"""Issue 11 section 2: a folder holding the same scans as DICOM and NIfTI quantifies each scan once.

Truth: the phantom's ``truth.json`` (number of scans, their times, every
region's %ID); disagreeing copies are made by changing the NIfTI copy with
nibabel, re-oriented copies with nibabel and SimpleITK.
"""

import csv
import json
import re
import shutil
from collections import Counter

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from spectrack import load_study
from spectrack.cli import main
from spectrack.errors import InconsistentInputError
from spectrack.geometry import Image, from_sitk, to_sitk
from spectrack.io_utils import sha256_file
from spectrack.load.duplicates import same_voxels_on
from spectrack.phantom import make_study
from spectrack.pipeline import run_study

REL = 1e-3  # 0.1 %
TIMES_H = (1.0, 4.0, 24.0)


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """A phantom study written as DICOM and as NIfTI into one folder (the sample study's layout)."""
    out = tmp_path_factory.mktemp("both")
    truth = make_study(out, "rat", times_h=TIMES_H, units="counts", formats=("dicom", "nifti"), seed=1)
    return out, truth


def _settings(root, truth):
    return {"labels": str(root / "labels.nii.gz"), "calibration": "sensitivity",
            "sensitivity_cps_per_mbq": truth["sensitivity_cps_per_mbq"]}


def _copy(both, tmp_path):
    root, truth = both
    dst = tmp_path / "study"
    shutil.copytree(root, dst)
    return dst, truth


def _check_pct_id(df, truth):
    n = 0
    for tp in truth["timepoints"]:
        got = df[(df.timepoint == tp["index"]) & (df.kind == "region")].set_index("region")
        assert got.time_h.iloc[0] == pytest.approx(tp["time_h"], abs=1e-6)
        for name, r in tp["regions"].items():
            assert got.loc[name, "pct_id"] == pytest.approx(r["pct_id"], rel=REL), (tp["index"], name)
            n += 1
    assert n >= 10 * len(truth["timepoints"])


#: a progress log line (stderr, no terminal): "2026-03-14 21:40:00 spectrack: ..."
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d spectrack: ")


def _one_error_line(err):
    """The one line of stderr that is not a progress log line."""
    lines = [ln for ln in err.strip().splitlines() if ln.strip() and not _LOG_LINE.match(ln)]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_both_formats_one_timepoint_per_scan(both, tmp_path):
    root, truth = both
    n_scans = len(truth["timepoints"])
    res = run_study(root, _settings(root, truth), out_dir=tmp_path / "res")
    study = res.study
    assert len(study.timepoints) == n_scans
    assert all(tp.ct is not None for tp in study.timepoints)
    assert all(not str(tp.emission.files[0]).endswith(".nii.gz") for tp in study.timepoints)  # DICOM preferred
    assert all(not str(tp.ct.files[0]).endswith(".nii.gz") for tp in study.timepoints)
    _check_pct_id(res.table, truth)

    rows = list(csv.DictReader(open(res.outputs["regions.csv"])))
    per_key = Counter((r["timepoint"], r["region"]) for r in rows)
    assert set(per_key.values()) == {1}
    assert sorted({float(r["time_h"]) for r in rows}) == pytest.approx([tp["time_h"] for tp in truth["timepoints"]])
    assert len({r["timepoint"] for r in rows}) == n_scans

    text = "\n".join(json.loads((tmp_path / "res" / "study.json").read_text())["study"]["warnings"])
    for n in range(n_scans):
        assert f"skipped NIfTI nifti/tp{n}_spect.nii.gz: the same NM scan" in text
        assert f"skipped NIfTI nifti/tp{n}_ct.nii.gz: the same CT" in text
    assert "not paired" not in text


def test_warning_reaches_study_json_and_report(both, tmp_path):
    from spectrack.report import report_from_results

    root, truth = both
    run_study(root, _settings(root, truth), out_dir=tmp_path / "res")
    meta = json.loads((tmp_path / "res" / "study.json").read_text())
    assert any(w.startswith("skipped NIfTI nifti/tp0_spect.nii.gz") for w in meta["study"]["warnings"])
    html = report_from_results(tmp_path / "res")["report.html"].read_text()
    assert "skipped NIfTI nifti/tp0_spect.nii.gz" in html and "skipped NIfTI nifti/tp2_ct.nii.gz" in html


def test_cli_on_phantom_folder_quantifies_each_scan_once(tmp_path, capsys):
    """`spectrack quantify` on both formats of what `spectrack phantom` wrote (its study file reads dicom/ only)."""
    assert main(["phantom", str(tmp_path / "ph"), "--preset", "rat"]) == 0
    truth = json.loads((tmp_path / "ph" / "truth.json").read_text())
    capsys.readouterr()
    rc = main(["quantify", str(tmp_path / "ph" / "dicom"), str(tmp_path / "ph" / "nifti"),
               "--labels", str(tmp_path / "ph" / "labels.nii.gz"),
               "--sensitivity", str(truth["sensitivity_cps_per_mbq"]), "-o", str(tmp_path / "res"), "--no-report"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "warning: skipped NIfTI nifti/tp0_spect.nii.gz" in cap.err
    df = pd.read_csv(tmp_path / "res" / "regions.csv")
    assert df["timepoint"].nunique() == len(truth["timepoints"])
    assert not df.duplicated(["timepoint", "region"]).any()
    _check_pct_id(df, truth)


def test_napari_layers_have_one_time_step_per_scan(both):
    from spectrack_napari._reader import study_path_layers

    root, truth = both
    layers = study_path_layers(root)
    emission = [(d, kw) for d, kw, kind in layers if kw["metadata"]["spectrack"].get("role") == "emission"]
    assert len(emission) == 1
    data, kw = emission[0]
    assert data.shape[0] == len(truth["timepoints"])
    assert kw["metadata"]["spectrack"]["times_h"] == pytest.approx([tp["time_h"] for tp in truth["timepoints"]])


def test_cohort_has_no_duplicate_timepoints(both, tmp_path):
    pytest.importorskip("distributed")
    from spectrack.batch import run_batch

    root, truth = both
    settings = {"calibration": "sensitivity", "sensitivity_cps_per_mbq": truth["sensitivity_cps_per_mbq"]}
    summary = run_batch([root], tmp_path / "batch", settings=settings, workers=1, report=False)
    assert summary.counts()["done"] == 1, [o.reason for o in summary.outcomes]
    cohort = pd.read_csv(tmp_path / "batch" / "cohort.csv")
    assert not cohort.duplicated(["study", "timepoint", "region"]).any()
    assert cohort["timepoint"].nunique() == len(truth["timepoints"])
    brain = cohort[cohort["region"] == "brain"].sort_values("timepoint")["pct_id"].tolist()
    assert brain == pytest.approx([tp["regions"]["brain"]["pct_id"] for tp in truth["timepoints"]], rel=REL)


def _edit_nifti(path, fn):
    img = nib.load(path)
    data = np.asarray(img.dataobj, dtype=np.float32)
    nib.save(nib.Nifti1Image(fn(data).astype(np.float32), img.affine, img.header), path)


@pytest.mark.parametrize("how,phrase", [
    ("scaled", "voxel values differ"),
    ("flipped", "voxel values differ"),
    ("brain_emptied", "voxel values differ"),
    ("low_offset", "totals differ"),
])
def test_disagreeing_copy_exit_5_one_line(both, tmp_path, capsys, how, phrase):
    root, truth = _copy(both, tmp_path)
    f = root / "nifti" / "tp1_spect.nii.gz"
    if how == "scaled":
        _edit_nifti(f, lambda a: a * 1.02)
    elif how == "flipped":  # a converter that lost the left-right flip: same header, mirrored voxels
        _edit_nifti(f, lambda a: a[::-1])
    elif how == "brain_emptied":
        lab = nib.load(root / "truth" / "tp1_labels.nii.gz")
        # the truth labels are on the SPECT grid; put them on the NIfTI's voxel order
        lab_on = nib.orientations.apply_orientation(
            np.asarray(lab.dataobj), nib.orientations.ornt_transform(nib.io_orientation(lab.affine),
                                                                     nib.io_orientation(nib.load(f).affine)))
        idx = truth["timepoints"][1]["regions"]["brain"]["index"]
        _edit_nifti(f, lambda a: np.where(lab_on == idx, 0.0, a))
    else:  # a small positive offset everywhere: below the per-voxel tolerance, above 0.1 % of the total
        _edit_nifti(f, lambda a: a + 0.4)
    before = sha256_file(f)
    rc = main(["quantify", str(root), "--labels", str(root / "labels.nii.gz"),
               "--sensitivity", str(truth["sensitivity_cps_per_mbq"]), "-o", str(tmp_path / "res"), "--no-report"])
    err = capsys.readouterr().err
    assert rc == 5, err
    line = _one_error_line(err)
    assert "nifti/tp1_spect.nii.gz" in line and "disagree" in line and phrase in line
    assert "remove the wrong copy" in line
    assert sha256_file(f) == before
    assert not (tmp_path / "res" / "regions.csv").exists()


def test_disagreeing_injected_activity_is_refused(both, tmp_path):
    root, truth = _copy(both, tmp_path)
    side = root / "nifti" / "tp2_spect.json"
    d = json.loads(side.read_text())
    d["InjectedRadioactivity"] = float(d["InjectedRadioactivity"]) * 1.1
    side.write_text(json.dumps(d))
    with pytest.raises(InconsistentInputError, match="injected_activity_mbq differs") as e:
        load_study(root)
    assert "tp2_spect.nii.gz" in str(e.value)


def test_bqml_float_copy_of_integer_dicom_in_other_orientation(tmp_path):
    """DICOM stores Bq/mL as integers with a rescale slope, the NIfTI copy as float32 in another axis order."""
    root = tmp_path / "bq"
    truth = make_study(root, "rat", times_h=(2.0,), units="Bq/mL", formats=("dicom", "nifti"), seed=2)
    f = root / "nifti" / "tp0_spect.nii.gz"
    img = nib.load(f)
    target = nib.orientations.axcodes2ornt(("S", "P", "L"))  # any order unlike the DICOM rows/columns/frames
    xform = nib.orientations.ornt_transform(nib.io_orientation(img.affine), target)
    re = img.as_reoriented(xform)
    nib.save(re, f)
    assert nib.aff2axcodes(nib.load(f).affine) == ("S", "P", "L")
    study = load_study(root)
    assert len(study.timepoints) == 1
    assert not str(study.timepoints[0].emission.files[0]).endswith(".nii.gz")
    assert any("skipped NIfTI nifti/tp0_spect.nii.gz" in w for w in study.warnings)
    from spectrack import quantify
    from spectrack.regions.formats.nifti import read_label_map

    df = quantify(study, read_label_map(root / "labels.nii.gz"))
    _check_pct_id(df, truth)


def test_nifti_twice_and_different_duration(tmp_path, nifti_study):
    nifti_study(tmp_path / "s")
    s = tmp_path / "s"
    shutil.copy(s / "tp1_spect.nii.gz", s / "tp1copy_spect.nii.gz")
    shutil.copy(s / "tp1_spect.json", s / "tp1copy_spect.json")
    scans = (s / "scans.tsv").read_text().splitlines()
    t1 = scans[2].split("\t")[1]
    (s / "scans.tsv").write_text("\n".join(scans + [f"tp1copy_spect.nii.gz\t{t1}"]) + "\n")
    study = load_study(s)
    assert len(study.timepoints) == 3
    assert [w for w in study.warnings if w.startswith("skipped NIfTI tp1copy_spect.nii.gz: the same NM scan")]
    side = json.loads((s / "tp1copy_spect.json").read_text())
    side["FrameDuration"] = [side["FrameDuration"][0] / 2]
    (s / "tp1copy_spect.json").write_text(json.dumps(side))
    with pytest.raises(InconsistentInputError, match="last 1200 s and 600 s"):
        load_study(s)


@pytest.mark.parametrize("code", ["LPS", "RAS", "PIL", "SAR", "ILP", "ASR", "RPI", "PSL"])
def test_same_voxels_on_any_orientation(code):
    rng = np.random.default_rng(0)
    a = Image(rng.normal(size=(4, 5, 6)), origin_mm=(-3.0, 7.0, 11.0), spacing_mm=(1.5, 2.0, 3.0),
              direction=sitk.VersorTransform((0.1, 0.2, 0.3), 0.4).GetMatrix())
    other = from_sitk(sitk.DICOMOrient(to_sitk(a), code))
    assert other.shape_ijk != a.shape_ijk or code == "LPS" or not np.allclose(other.direction, a.direction)
    assert np.array_equal(same_voxels_on(a, other), a.array)
    shifted = Image(other.array, origin_mm=other.origin_mm + 0.5 * other.direction[:, 0] * other.spacing_mm[0],
                    spacing_mm=other.spacing_mm, direction=other.direction)
    assert same_voxels_on(a, shifted) is None
    finer = Image(other.array, origin_mm=other.origin_mm, spacing_mm=other.spacing_mm * 1.01, direction=other.direction)
    assert same_voxels_on(a, finer) is None


def test_ct_copy_with_converter_time_is_skipped(both, tmp_path):
    """A NIfTI CT whose time a converter took from another slice (30 s later) is still the DICOM CT's copy."""
    root, truth = _copy(both, tmp_path)
    tsv = root / "nifti" / "scans.tsv"
    rows = [ln.split("\t") for ln in tsv.read_text().splitlines()]
    for r in rows:
        if r[0] == "tp1_ct.nii.gz":
            r[1] = (pd.Timestamp(r[1]) + pd.Timedelta(seconds=30)).isoformat()
    tsv.write_text("\n".join("\t".join(r) for r in rows) + "\n")
    study = load_study(root)
    assert len(study.timepoints) == len(truth["timepoints"]) and not study.extra_series
    assert any(w.startswith("skipped NIfTI nifti/tp1_ct.nii.gz: the same CT") for w in study.warnings)


def test_differing_ct_with_same_start_is_kept_without_error(both, tmp_path):
    """Two CT reconstructions of one acquisition are normal: the CT is not quantified, so no refusal."""
    root, truth = _copy(both, tmp_path)
    _edit_nifti(root / "nifti" / "tp0_ct.nii.gz", lambda a: np.where(a > 0, a + 200.0, a))  # another kernel
    study = load_study(root)
    assert len(study.timepoints) == len(truth["timepoints"])
    assert not str(study.timepoints[0].ct.files[0]).endswith(".nii.gz")  # same FrameOfReferenceUID as the SPECT
    assert [str(s.files[0]).endswith("tp0_ct.nii.gz") for s in study.extra_series] == [True]
    assert not any("tp0_ct.nii.gz" in w and w.startswith("skipped") for w in study.warnings)
    assert any("1 CT series not paired" in w for w in study.warnings)


def test_bundled_sample_folder_has_six_scans():
    """The issue's case: both copies of sample_data/nhp_study/ (DICOM and NIfTI of 6 scans) are 6 time points;
    the folder as a whole reads the DICOM export its study file names, with nothing to skip."""
    from spectrack.phantom.sample import sample_study

    info = sample_study()
    truth = json.loads(info["truth"].read_text())
    study = load_study([info["path"], info["nifti"]])
    assert [tp.acquisition_start.isoformat() for tp in study.timepoints] == \
        [tp["acquisition_start"] for tp in truth["timepoints"]]
    skipped = [w for w in study.warnings if w.startswith("skipped NIfTI nifti/")]
    assert len(skipped) == 2 * len(truth["timepoints"])  # each scan's SPECT and CT copy
    whole = load_study(info["study"])
    assert [tp.acquisition_start for tp in whole.timepoints] == [tp.acquisition_start for tp in study.timepoints]
    assert not [w for w in whole.warnings if w.startswith("skipped")]
    assert all(str(f).startswith(str(info["path"])) for f in whole.input_files)
