"""The command line, called in-process: outputs, one-line errors, exit codes."""

import csv
import json

import pytest

from spectrack.cli import main


def _run(capsys, args):
    rc = main(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_quantify_writes_table_and_study_json(tmp_path, capsys, nifti_study):
    truth = nifti_study(tmp_path / "s")
    rc, out, err = _run(capsys, ["quantify", str(tmp_path / "s"), "--labels", str(tmp_path / "s" / "labels.nii.gz"),
                                 "-o", str(tmp_path / "res"), "--no-report"])
    assert rc == 0, err
    rows = list(csv.DictReader(open(tmp_path / "res" / "regions.csv")))
    need = ["subject", "timepoint", "time_h", "region", "volume_ml", "activity_mbq", "activity_mbq_decay_corrected",
            "pct_id", "pct_id_uncorrected", "pct_id_per_ml"]
    assert all(c in rows[0] for c in need)
    brain = [r for r in rows if r["region"] == "brain"]
    assert [float(r["pct_id"]) for r in brain] == pytest.approx([t["brain"] for t in truth], rel=1e-5)
    meta = json.loads((tmp_path / "res" / "study.json").read_text())
    prov = meta["provenance"]
    assert prov["spectrack_version"]
    assert any(k.endswith("tp0_spect.nii.gz") for k in prov["inputs_sha256"])
    assert any(k.endswith("labels.nii.gz") for k in prov["inputs_sha256"])
    assert meta["dose"]["half_life_h"]["value"] == pytest.approx(6.0067)
    assert "table" in meta["dose"]["half_life_h"]["source"]
    assert "%ID" in out and "brain" in out


def test_info_lists_values_with_sources(tmp_path, capsys, nifti_study):
    nifti_study(tmp_path)
    rc, out, err = _run(capsys, ["info", str(tmp_path), "--json"])
    assert rc == 0, err
    d = json.loads(out)
    assert len(d["timepoints"]) == 3
    m = d["timepoints"][0]["emission"]["meta"]
    assert m["injected_activity_mbq"]["value"] == 150.0
    assert "InjectedRadioactivity" in m["injected_activity_mbq"]["source"]
    assert "scans.tsv" in m["acquisition_start"]["source"]
    rc, out, err = _run(capsys, ["info", str(tmp_path)])
    assert rc == 0 and "InjectedRadioactivity" in out


@pytest.mark.parametrize("args,code,phrase", [
    (["quantify", "/no/such/folder"], 3, "does not exist"),
    (["quantify", "{s}", "--labels", "{s}/labels.nii.gz", "--injection-time", "yesterday"], 3, "ISO 8601"),
    (["quantify", "{s}", "--labels", "{s}/labels.nii.gz", "--injection-time", "2026-03-15T12:00"], 5,
     "before the injection"),
    (["quantify", "{s}", "--labels", "{s}/labels.nii.gz", "--duration-s", "0"], 3, "positive"),
    (["quantify", "{s}"], 6, "--labels"),
    (["quantify", "{s}", "--calibration", "magic"], 3, "calibration"),
    (["quantify", "{s}", "--frobnicate"], 2, "No such option"),
])
def test_bad_input_one_line_and_exit_code(tmp_path, capsys, nifti_study, args, code, phrase):
    nifti_study(tmp_path / "s")
    args = [a.replace("{s}", str(tmp_path / "s")) for a in args] + ["-o", str(tmp_path / "out")]
    rc, out, err = _run(capsys, args)
    assert rc == code, (rc, err)
    assert phrase in err
    assert "Traceback" not in err + out
    if code not in (2,):
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        assert len(lines) == 1, err


def test_missing_tag_names_option(tmp_path, capsys, nifti_study):
    nifti_study(tmp_path, units="counts")
    rc, out, err = _run(capsys, ["quantify", str(tmp_path), "--labels", str(tmp_path / "labels.nii.gz"),
                                 "-o", str(tmp_path / "o")])
    assert rc == 4 and "--sensitivity" in err


def test_version(capsys):
    from spectrack import __version__

    rc, out, _ = _run(capsys, ["--version"])
    assert rc == 0 and __version__ in out


def test_inputs_never_modified(tmp_path, capsys, nifti_study):
    from spectrack.io_utils import sha256_file

    nifti_study(tmp_path / "s")
    before = {p: sha256_file(p) for p in (tmp_path / "s").iterdir()}
    rc, _, err = _run(capsys, ["quantify", str(tmp_path / "s"), "--labels", str(tmp_path / "s" / "labels.nii.gz"),
                               "-o", str(tmp_path / "res")])
    assert rc == 0, err
    assert {p: sha256_file(p) for p in (tmp_path / "s").iterdir()} == before
