"""The study file (spectrack.toml beside the images): a self-describing study quantifies with no option.

Truth is the phantom's truth.json; options given on purpose override the study file, and study.json records
the file, its hash and what it gave.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spectrack.cli import main
from spectrack.phantom.sample import REPO_SAMPLE, sample_study
from spectrack.pipeline import run_study
from spectrack.settings import Settings, apply_study_file, settings_from_mapping


def _run(capsys, args):
    rc = main(args)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _tree(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def _check_truth(table: pd.DataFrame, truth: dict, scale: float = 1.0):
    n = 0
    for tp in truth["timepoints"]:
        for name, reg in tp["regions"].items():
            row = table[(table["timepoint"] == tp["index"]) & (table["region"] == name)]
            assert row["pct_id"].item() == pytest.approx(scale * reg["pct_id"], rel=1e-3, abs=1e-6), \
                (tp["index"], name)
            n += 1
    assert n >= 6 * 10


def test_sample_quantifies_with_no_option(tmp_path, capsys):
    """`spectrack quantify sample_data/nhp_study -o OUT`: the README's command, the truth's %ID."""
    info = sample_study()
    before = _tree(info["study"])
    rc, out, err = _run(capsys, ["quantify", str(info["study"]), "-o", str(tmp_path / "r"), "-q", "--no-report",
                                 "--uncertainty-draws", "0"])
    assert rc == 0, err
    assert _tree(info["study"]) == before  # nothing written into the sample
    truth = json.loads(Path(info["truth"]).read_text())
    _check_truth(pd.read_csv(tmp_path / "r" / "regions.csv"), truth)
    sf = info["study"] / "spectrack.toml"
    meta = json.loads((tmp_path / "r" / "study.json").read_text())
    rec = meta["study_file"]
    assert rec["path"] == str(sf.resolve())
    assert rec["sha256"] == hashlib.sha256(sf.read_bytes()).hexdigest()
    assert rec["settings"]["sensitivity_cps_per_mbq"] == truth["sensitivity_cps_per_mbq"]
    assert sorted(rec["used"]) == ["calibration", "labels", "removed", "sensitivity_cps_per_mbq", "species"]
    assert rec["overridden"] == {}
    assert meta["provenance"]["inputs_sha256"][str(sf.resolve())] == rec["sha256"]
    assert meta["provenance"]["parameters"]["sensitivity_cps_per_mbq"] == 30.0
    # the study file's images: the DICOM export only (nifti/ holds the same scans), so no copy to skip
    assert not any("skipped NIfTI" in w for w in meta["warnings"] + meta["study"]["warnings"])
    assert all(tp["emission"]["description"].startswith("NM") for tp in meta["study"]["timepoints"])
    assert f"study file: {sf.resolve()} gave calibration, labels, removed, sensitivity, species" in " ".join(err.split())


def test_options_override_the_study_file(tmp_path, capsys):
    """A sensitivity given on the command line wins (twice the sensitivity: half the %ID), and is recorded."""
    info = sample_study()
    rc, out, err = _run(capsys, ["quantify", str(info["study"]), "--sensitivity", "60", "-o", str(tmp_path / "r"),
                                 "-q", "--no-report", "--uncertainty-draws", "0"])
    assert rc == 0, err
    truth = json.loads(Path(info["truth"]).read_text())
    _check_truth(pd.read_csv(tmp_path / "r" / "regions.csv"), truth, scale=0.5)
    rec = json.loads((tmp_path / "r" / "study.json").read_text())["study_file"]
    assert rec["overridden"] == {"sensitivity_cps_per_mbq": {"study_file": 30.0, "used": 60.0}}
    assert "sensitivity_cps_per_mbq" not in rec["used"]
    assert "overridden by the options: sensitivity" in err


def test_an_option_given_at_its_default_still_overrides(tmp_path):
    """--calibration auto / --no-pvc are choices too: the study file does not replace them."""
    (tmp_path / "spectrack.toml").write_text('calibration = "fov"\npvc = true\nsensitivity = 30\nseed = 4\n')
    s, rec = apply_study_file(settings_from_mapping({"calibration": "auto", "pvc": False}), tmp_path)
    assert (s.calibration, s.pvc, s.sensitivity_cps_per_mbq, s.seed) == ("auto", False, 30.0, 4)
    assert rec["overridden"] == {"calibration": {"study_file": "fov", "used": "auto"},
                                 "pvc": {"study_file": True, "used": False}}
    s2, rec2 = apply_study_file(s, tmp_path)  # applying it again changes nothing
    assert s2 == s and rec2["overridden"] == rec["overridden"]
    s3, _ = apply_study_file(Settings(), tmp_path)  # nothing given: the study file's values
    assert (s3.calibration, s3.pvc) == ("fov", True)


def test_phantom_writes_its_study_file(tmp_path, capsys):
    """`spectrack phantom OUT` (Bq/mL rat) then `spectrack quantify OUT` with no option: the truth's %ID."""
    out = tmp_path / "rat"
    rc, said, err = _run(capsys, ["phantom", str(out), "--preset", "rat", "--units", "bqml"])
    assert rc == 0, err
    assert f"spectrack quantify {out}" in " ".join(said.split())
    text = (out / "spectrack.toml").read_text()
    assert 'calibration = "image"' in text and 'species = "rat"' in text and "sensitivity" not in text
    rc, _, err = _run(capsys, ["quantify", str(out), "-o", str(tmp_path / "r"), "-q", "--no-report",
                               "--uncertainty-draws", "0"])
    assert rc == 0, err
    truth = json.loads((out / "truth.json").read_text())
    table = pd.read_csv(tmp_path / "r" / "regions.csv")
    _check_truth(table, truth)
    assert set(table["species"]) == {"rat"}


def test_run_study_reads_it_too():
    """The Python API: run_study on the sample folder, no settings."""
    info = sample_study()
    res = run_study(info["study"], {"uncertainty_draws": 0, "report": False})
    _check_truth(res.table, json.loads(Path(info["truth"]).read_text()))
    assert res.metadata["study_file"]["used"] == ["calibration", "labels", "removed", "sensitivity_cps_per_mbq",
                                                  "species"]


@pytest.mark.parametrize("text, code, phrase", [
    ("sensitivty = 30\n", 3, "did you mean 'sensitivity'"),
    ("sensitivity = -1\n", 3, "must be positive"),
    ('images = "scans"\n', 3, "images 'scans' does not exist"),
    ("sensitivity = [\n", 3, "not valid TOML"),
])
def test_bad_study_file_one_line(tmp_path, capsys, nifti_study, text, code, phrase):
    nifti_study(tmp_path / "s")
    (tmp_path / "s" / "spectrack.toml").write_text(text)
    rc, _, err = _run(capsys, ["quantify", str(tmp_path / "s"), "--labels", "{study}/labels.nii.gz", "-q",
                               "--no-report", "-o", str(tmp_path / "o")])
    assert rc == code
    import re

    lines = [ln for ln in err.splitlines() if ln.strip() and not re.match(r"^\d{4}-\d\d-\d\d [\d:]{8} spectrack: ", ln)]
    (line,) = lines  # the progress log lines aside, one line
    assert line.startswith("spectrack: error:") and phrase in line and "spectrack.toml" in line, line
    assert "Traceback" not in err


def test_sample_has_its_study_file():
    """The committed sample holds the study file that make_sample.py writes (regenerating keeps it)."""
    from spectrack.phantom.core import _Builder, study_file_text
    from spectrack.phantom.sample import SAMPLE_ARGS

    from spectrack.phantom.core import _collected_urine

    args = {k: v for k, v in SAMPLE_ARGS.items() if k not in ("formats", "study_file")}
    b = _Builder(**args)
    expected = study_file_text(b, SAMPLE_ARGS["formats"], removed=True)
    assert (REPO_SAMPLE / "spectrack.toml").read_text() == expected
    # the same rows and words; numbers to 1e-9 (the last printed digit depends on the platform's libm/scipy)
    import io

    import pandas as pd

    got = pd.read_csv(REPO_SAMPLE / "removed.csv")
    want = pd.read_csv(io.StringIO(_collected_urine(b, b.study_truth())))
    assert list(got.columns) == list(want.columns) and len(got) == len(want)
    for c in got.columns:
        if pd.api.types.is_numeric_dtype(want[c]):
            np.testing.assert_allclose(got[c].to_numpy(float), want[c].to_numpy(float), rtol=1e-9)
        else:
            assert got[c].tolist() == want[c].tolist(), c
    assert json.loads((REPO_SAMPLE / "truth.json").read_text())["files"]["study_file"] == "spectrack.toml"
