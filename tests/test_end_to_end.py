"""Issue 'core' done-when: the phantom's exact %ID is recovered end to end.

On phantoms with no PSF and no noise every region's ``pct_id`` must be within
0.1 % (relative) of the truth, from the DICOM export and from the NIfTI study,
with count images (sensitivity calibration) and Bq/mL images.
"""

import json
import shutil

import pandas as pd
import pytest

from spectrack import load_study, quantify
from spectrack.cli import main
from spectrack.errors import InconsistentInputError
from spectrack.phantom import make_study
from spectrack.regions.formats.nifti import read_label_map

REL = 1e-3  # 0.1 %


@pytest.fixture(scope="module", params=[("nhp", "counts", False), ("rat", "bqml", True)],
                ids=["nhp-counts", "rat-bqml-negative-step"])
def phantom(request, tmp_path_factory):
    preset, units, neg = request.param
    out = tmp_path_factory.mktemp(f"{preset}_{units}")
    truth = make_study(out, preset=preset, units=units, negative_slice_step=neg, seed=3)
    return out, truth


def _check(df, truth):
    n = 0
    for tp in truth["timepoints"]:
        got = df[(df.timepoint == tp["index"]) & (df.kind == "region")].set_index("region")
        assert got.time_h.iloc[0] == pytest.approx(tp["time_h"], abs=1e-6)
        for name, r in tp["regions"].items():
            assert got.loc[name, "pct_id"] == pytest.approx(r["pct_id"], rel=REL), (tp["index"], name)
            assert got.loc[name, "pct_id_uncorrected"] == pytest.approx(r["pct_id_uncorrected"], rel=REL)
            assert got.loc[name, "activity_mbq"] == pytest.approx(r["activity_mbq"], rel=REL)
            assert got.loc[name, "volume_ml"] == pytest.approx(r["volume_ml"], rel=1e-6)  # NIfTI stores float32 affines
            n += 1
    assert n >= 5 * 10


@pytest.mark.parametrize("fmt", ["dicom", "nifti"])
def test_pct_id_within_0p1_percent(phantom, fmt):
    out, truth = phantom
    study = load_study(out / fmt)
    assert len(study.timepoints) == len(truth["timepoints"])
    assert all(tp.ct is not None for tp in study.timepoints)
    kw = {"sensitivity_cps_per_mbq": truth["sensitivity_cps_per_mbq"]} if truth["units"] == "counts" else {}
    df = quantify(study, read_label_map(out / "labels.nii.gz"), **kw)
    _check(df, truth)
    md = df.attrs["metadata"]["dose"]
    assert md["injected_activity_mbq"]["value"] == pytest.approx(truth["injected_mbq"])
    if fmt == "dicom":
        assert "RadionuclideTotalDose" in md["injected_activity_mbq"]["source"]
        assert "RadiopharmaceuticalStartDateTime" in md["injection_time"]["source"]


def test_fov_calibration_on_phantom(phantom):
    # nothing is excreted before the first scan, so the whole field of view holds the dose
    out, truth = phantom
    tp0 = truth["timepoints"][0]
    assert tp0["excreted_pct_id"] == 0
    study = load_study(out / "dicom")
    df = quantify(study, read_label_map(out / "labels.nii.gz"), calibration="fov", fov_timepoint=0)
    fov_truth = sum(r["pct_id"] for r in tp0["regions"].values())
    scale = 100.0 / fov_truth
    for tp in truth["timepoints"]:
        got = df[(df.timepoint == tp["index"])].set_index("region")
        for name in ("brain", "liver", "canal_lumbar"):
            assert got.loc[name, "pct_id"] == pytest.approx(tp["regions"][name]["pct_id"] * scale, rel=REL)


def test_cli_on_flat_dicom_folder(phantom, tmp_path, capsys):
    out, truth = phantom
    args = ["quantify", str(out / "dicom"), "--labels", str(out / "labels.nii.gz"), "-o", str(tmp_path / "r"),
            "--no-report"]
    if truth["units"] == "counts":
        args += ["--sensitivity", str(truth["sensitivity_cps_per_mbq"])]
    assert main(args) == 0, capsys.readouterr().err
    df = pd.read_csv(tmp_path / "r" / "regions.csv")
    _check(df, truth)
    meta = json.loads((tmp_path / "r" / "study.json").read_text())
    em = meta["study"]["timepoints"][0]["emission"]["meta"]
    assert "RotationInformationSequence" in em["duration_s"]["source"]
    assert meta["provenance"]["parameters"]["labels"].endswith("labels.nii.gz")
    assert len(meta["provenance"]["inputs_sha256"]) > 10


def test_non_dicom_file_is_skipped_with_warning(phantom, tmp_path, capsys):
    out, truth = phantom
    d = tmp_path / "export"
    shutil.copytree(out / "dicom", d)
    (d / "README.txt").write_text("exported by hand\n")
    (d / "DICOMDIR_broken").write_bytes(b"\x00" * 50)
    study = load_study(d)
    assert len(study.timepoints) == len(truth["timepoints"])
    assert any("DICOMDIR_broken" in w for w in study.warnings)
    args = ["info", str(d)]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "DICOMDIR_broken" in err


def test_two_subjects_in_one_folder(tmp_path, capsys):
    a = tmp_path / "a"
    make_study(a, preset="rat", formats=("dicom",), subject_id="RAT-A", times_h=[1.0], seed=1)
    make_study(tmp_path / "b", preset="rat", formats=("dicom",), subject_id="RAT-B", times_h=[2.0], seed=2)
    for p in (tmp_path / "b" / "dicom").iterdir():
        shutil.copy(p, a / "dicom" / ("b_" + p.name))
    with pytest.raises(InconsistentInputError, match="2 subjects"):
        load_study(a / "dicom")
    assert main(["info", str(a / "dicom")]) == 5
    assert "RAT-A" in capsys.readouterr().err


def test_missing_injection_time_names_tag_and_option(tmp_path, capsys):
    import pydicom

    make_study(tmp_path, preset="rat", formats=("dicom",), times_h=[1.0, 3.0], seed=4)
    for p in (tmp_path / "dicom").iterdir():
        ds = pydicom.dcmread(p)
        if ds.Modality == "NM":
            item = ds.RadiopharmaceuticalInformationSequence[0]
            for kw in ("RadiopharmaceuticalStartDateTime", "RadiopharmaceuticalStartTime"):
                if kw in item:
                    delattr(item, kw)
            ds.save_as(p)
    rc = main(["quantify", str(tmp_path / "dicom"), "--labels", str(tmp_path / "labels.nii.gz"),
               "-o", str(tmp_path / "o"), "--sensitivity", "100"])
    err = capsys.readouterr().err
    assert rc == 4
    assert "RadiopharmaceuticalStartDateTime" in err and "--injection-time" in err
    rc = main(["quantify", str(tmp_path / "dicom"), "--labels", str(tmp_path / "labels.nii.gz"),
               "-o", str(tmp_path / "o"), "--sensitivity", "100", "--injection-time", "2026-03-14T21:40:00"])
    assert rc == 0, capsys.readouterr().err


def test_demo_runs_on_bundled_sample(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "brain" in out and "%ID" in out
    from spectrack.phantom.sample import sample_study

    truth = json.loads(open(sample_study()["truth"]).read())
    df = pd.read_csv(tmp_path / "demo" / "regions.csv")
    _check(df, truth)
