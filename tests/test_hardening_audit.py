"""Issue 15 ("Hardening, round two"): the cases its audit found uncovered, each against known truth.

The rest of the issue is covered in test_hardening.py, test_outputs.py, test_batch.py and the fuzz tests;
this file holds what they did not test:

* an injection time of day without a date: every inferred date is warned of on the command line and in
  study.json (after the scan: the day before; the midnight crossing; the same day), with the right times
  and %ID;
* corrupt data: NM pixel data two bytes too long (beyond one pad byte), a label map's broken gzip stream of
  every kind through the command line, identity label scaling still read, a negative RWVM slope, a
  negative image warned of;
* output paths on a read-only mount (os-level writes raising EROFS, so it also runs as root), for every
  command that writes, and ``-o`` errors of ``batch`` and ``resolution``;
* unvalidated values of ``phantom`` (``--seed -1``, ``--psf-fwhm-mm nan/inf/-1/1e6``), ``batch --workers``
  (unbounded: a huge value started that many processes), study files with wrong types or units, settings
  files that are not a table, not UTF-8, or hold a boolean for a number;
* the Monte Carlo bounds and what the bound costs;
* the Python API of the README: misuse raises SpectrackError subclasses with one line;
* a batch re-run that fails (disk full, memory, a worker exception) keeps the last good result, stale;
* the fuzz tests' totals in CI: at least 2,000 cases, 0 unexpected exceptions, 0 silent wrong numbers.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from spectrack.cli import main
from spectrack.errors import InputError, LabelError, SpectrackError
from spectrack.regions.formats.nifti import read_label_map, write_label_map

from test_hardening import _corrupt_gzip, _label_nifti, _labels_on, write_nm  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HL_H = 6.0067
LAM = math.log(2) / HL_H


def _err_lines(err: str) -> list[str]:
    """stderr without the progress log lines and warnings."""
    return [ln for ln in err.splitlines() if ln.strip() and not re.match(r"^\d{4}-\d\d-\d\d [\d:]{8} spectrack: ", ln)
            and not ln.startswith("warning:")]


def _one_error(err: str) -> str:
    assert "Traceback" not in err, err
    lines = _err_lines(err)
    assert len(lines) == 1, err
    return lines[0]


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


# ---------------------------------------------------------------- times: every inferred date is said
def _nm_pct_id(counts_per_voxel: float, n_vox: int, t_h: float, sens: float, a_inj: float = 150.0,
               dur_s: float = 900.0) -> float:
    """%ID decay-corrected to injection of a region of a write_nm image (DecayCorrection NONE, counts)."""
    lam_s = LAM / 3600
    a_start = counts_per_voxel * n_vox / (sens * dur_s) * (lam_s * dur_s / (1 - math.exp(-lam_s * dur_s)))
    return 100.0 * a_start * math.exp(LAM * t_h) / a_inj


@pytest.mark.parametrize("case", ["after_the_scan", "midnight", "same_day"])
def test_an_inferred_injection_date_is_warned_and_the_times_are_right(tmp_path, capsys, case):
    """The injection's time of day without a date: the date is inferred (latest day before the first scan),
    warned of on the command line and in study.json, and the times and %ID follow from it."""
    scans, tod, want_day, want_h = {
        "after_the_scan": ([("20260320", "080000"), ("20260320", "120000")], "090000", "2026-03-19", [23.0, 27.0]),
        "midnight": ([("20260315", "001500"), ("20260315", "043000")], "233000", "2026-03-14", [0.75, 5.0]),
        "same_day": ([("20260320", "080000"), ("20260320", "150000")], "070000", "2026-03-20", [1.0, 8.0]),
    }[case]
    counts = (100.0, 60.0)
    for n, ((d, t), c) in enumerate(zip(scans, counts)):
        write_nm(tmp_path / "nm" / f"f{n}", date=d, time=t, inj_time=tod, counts=c)
    from spectrack import load_study

    img = load_study(tmp_path / "nm").timepoints[0].emission.image
    write_label_map(_labels_on(img), tmp_path / "labels.nii.gz")
    out = tmp_path / "out"
    rc = main(["quantify", str(tmp_path / "nm"), "--labels", str(tmp_path / "labels.nii.gz"), "-o", str(out),
               "--sensitivity", "50", "--uncertainty-draws", "0", "--no-report", "-q"])
    err = capsys.readouterr().err
    assert rc == 0, err
    day = "the day before the first scan" if case != "same_day" else "the first scan's day"
    said = [ln for ln in err.splitlines() if ln.startswith("warning:") and "has no date" in ln]
    assert len(said) == 1 and f"assumed {want_day} ({day}" in said[0] and "--injection-time" in said[0], err
    meta = json.loads((out / "study.json").read_text())
    assert sum("has no date" in w and want_day in w for w in meta["warnings"]) == 1
    reg = pd.read_csv(out / "regions.csv")
    brain = reg[reg.region == "brain"].sort_values("timepoint")
    assert brain.time_h.tolist() == pytest.approx(want_h, abs=1e-9)
    truth = [_nm_pct_id(c, 24, t, 50.0) for c, t in zip(counts, want_h)]
    assert brain.pct_id.tolist() == pytest.approx(truth, rel=1e-6)


def test_an_injection_date_given_is_not_warned_of(tmp_path):
    """The control: with RadiopharmaceuticalStartDateTime nothing is inferred and nothing is said."""
    from spectrack import load_study

    write_nm(tmp_path / "a", date="20260320", time="080000", inj_time=None, inj_datetime="20260319090000")
    st = load_study(tmp_path)
    assert st.timepoints[0].emission.get("injection_time") == dt.datetime(2026, 3, 19, 9, 0)
    assert not [w for w in st.warnings if "has no date" in w]


# ---------------------------------------------------------------- corrupt data
def test_nm_pixel_data_two_bytes_too_long_is_refused(tmp_path, capsys):
    """One pad byte is allowed; two (a whole extra 16-bit voxel) is not the header's data: exit 3."""
    import pydicom

    p = write_nm(tmp_path / "nm" / "IMG1", date="20240305", time="100000", shape=(3, 3, 3))
    ds = pydicom.dcmread(p)
    ds.PixelData = ds.PixelData + b"\x07\x00"
    ds.save_as(p, enforce_file_format=True)
    rc = main(["info", str(tmp_path / "nm")])
    line = _one_error(capsys.readouterr().err)
    assert rc == 3 and line.startswith("spectrack: error:") and ("declare" in line or "truncated" in line), line


@pytest.mark.parametrize("where", ["crc", "length", "stream3", "stream11", "truncated"])
def test_label_map_with_a_broken_gzip_stream_is_refused_on_the_command_line(tmp_path, nifti_study, capsys, where):
    nifti_study(tmp_path / "s")
    lab = tmp_path / "s" / "labels.nii.gz"
    if where == "truncated":
        lab.write_bytes(lab.read_bytes()[:-20])
    else:
        _corrupt_gzip(lab, where.rstrip("0123456789"), int(where[6:] or 0) if where.startswith("stream") else 0)
    rc = main(["quantify", str(tmp_path / "s"), "--labels", str(lab), "-o", str(tmp_path / "out"), "--no-report",
               "--uncertainty-draws", "0", "-q"])
    line = _one_error(capsys.readouterr().err)
    assert rc == 3, line
    assert "label map" in line and str(lab) in line
    assert not (tmp_path / "out" / "regions.csv").exists()


@pytest.mark.parametrize("slope,inter", [(1.0, 0.0), (0.0, 0.0)], ids=["identity", "slope-0-means-none"])
def test_label_map_with_identity_scaling_is_read_unchanged(tmp_path, slope, inter):
    """Identity scaling (or slope 0, NIfTI's 'no scaling') keeps every label value and name."""
    arr = np.zeros((4, 4, 4), np.int16)
    arr[1:3, 1:3, 1:3] = 1
    arr[0, 0, 0] = 2
    if slope:
        p = _label_nifti(tmp_path / "lab.nii.gz", arr, slope=slope, inter=inter, names={1: "brain", 2: "liver"})
    else:  # nibabel refuses to write slope 0: patch scl_slope (offset 112) of an uncompressed file
        import struct

        p = tmp_path / "lab.nii"
        nib.save(nib.Nifti1Image(arr, np.diag([3.0, 3.0, 4.0, 1.0])), str(p))
        blob = bytearray(p.read_bytes())
        struct.pack_into("<ff", blob, 112, 0.0, 0.0)
        p.write_bytes(bytes(blob))
        (tmp_path / "lab.tsv").write_text("1\tbrain\n2\tliver\n")
    lm = read_label_map(p)
    assert lm.names == {1: "brain", 2: "liver"}
    got = np.asarray(lm.image.array)
    assert sorted(np.unique(got).tolist()) == [0, 1, 2]
    assert int((got == 1).sum()) == 8 and int((got == 2).sum()) == 1


def test_label_map_with_scaling_is_refused_on_the_command_line(tmp_path, nifti_study, capsys):
    nifti_study(tmp_path / "s")
    lm = read_label_map(tmp_path / "s" / "labels.nii.gz")
    arr = np.asarray(nib.load(str(tmp_path / "s" / "labels.nii.gz")).dataobj)
    img = nib.load(str(tmp_path / "s" / "labels.nii.gz"))
    scaled = nib.Nifti1Image(arr.astype(np.int16), img.affine)
    scaled.header.set_slope_inter(2.0, 0.0)  # label 1 would be read as 2: brain as liver
    nib.save(scaled, str(tmp_path / "scaled.nii.gz"))
    (tmp_path / "scaled.tsv").write_text("".join(f"{k}\t{v}\n" for k, v in lm.names.items()))
    rc = main(["quantify", str(tmp_path / "s"), "--labels", str(tmp_path / "scaled.nii.gz"), "-o",
               str(tmp_path / "out"), "--no-report", "-q"])
    line = _one_error(capsys.readouterr().err)
    assert rc == LabelError.exit_code and "intensity scaling" in line, line


def test_nm_with_a_negative_rwvm_slope_is_refused(tmp_path, capsys):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    item = Dataset()
    item.RealWorldValueSlope, item.RealWorldValueIntercept = -3.0, 0.0
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "Bq/ml", "UCUM", "Becquerels/milliliter"
    item.MeasurementUnitsCodeSequence = Sequence([code])
    write_nm(tmp_path / "nm" / "IMG1", date="20240305", time="100000",
             extra={"RealWorldValueMappingSequence": Sequence([item])})
    rc = main(["info", str(tmp_path / "nm")])
    line = _one_error(capsys.readouterr().err)
    assert rc == 3 and "RealWorldValueSlope" in line, line


def test_a_negative_image_is_warned_of(tmp_path, nifti_study, capsys):
    """An image whose values are all negative gives negative %ID: never without a word."""
    nifti_study(tmp_path / "s")
    p = tmp_path / "s" / "tp1_spect.nii.gz"
    img = nib.load(str(p))
    nib.save(nib.Nifti1Image(-np.asarray(img.dataobj, np.float32) - 1.0, img.affine), str(p))
    rc = main(["quantify", str(tmp_path / "s"), "--labels", str(tmp_path / "s" / "labels.nii.gz"), "-o",
               str(tmp_path / "o"), "--no-report", "--uncertainty-draws", "0", "-q"])
    err = capsys.readouterr().err
    assert rc == 0, err
    meta = json.loads((tmp_path / "o" / "study.json").read_text())
    assert any(w.startswith("time point 1") and "no positive value" in w for w in meta["warnings"]), meta["warnings"]
    fov = pd.read_csv(tmp_path / "o" / "regions.csv").query("kind == 'fov' and timepoint == 1").pct_id.item()
    assert fov < 0  # the number is what the image says; the warning says it is impossible
    assert any("field of view" in w and "time point 1" in w for w in meta["warnings"])


@pytest.mark.parametrize("register", [False, True])
def test_a_reference_beyond_the_last_time_point_is_refused_not_clamped(tmp_path, nifti_study, capsys, register):
    """--reference 3 on a study of three time points (0..2) used to be taken as 2 without a word; like
    --fov-timepoint, a time point the study does not have is an input error (exit 3)."""
    nifti_study(tmp_path / "s")
    rc = main(["quantify", str(tmp_path / "s"), "--labels", str(tmp_path / "s" / "labels.nii.gz"), "-o",
               str(tmp_path / "o"), "--no-report", "--uncertainty-draws", "0", "-q", "--reference", "3"]
              + (["--register"] if register else []))
    err = capsys.readouterr().err
    assert rc == 3, err
    (line,) = [ln for ln in err.splitlines() if "error" in ln]
    assert line == "spectrack: error: --reference 3 is out of range: the study has 3 time point(s), 0..2"
    assert not (tmp_path / "o" / "regions.csv").exists()


# ---------------------------------------------------------------- output paths: a read-only mount, every command
def _read_only(monkeypatch, folder: Path) -> None:
    """Make ``folder`` behave like a read-only mount for this process, also for root: every os-level
    creation of a file or folder in it fails with EROFS (chmod does not stop root; this does)."""
    real_mkdir, real_open = os.mkdir, os.open
    inside = str(folder.resolve())

    def under(p) -> bool:
        try:
            q = os.path.abspath(os.fspath(p))
        except TypeError:
            return False
        return q == inside or q.startswith(inside + os.sep)

    def mkdir(path, *a, **k):
        if under(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        return real_mkdir(path, *a, **k)

    def open_(path, flags, *a, **k):
        if under(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", open_)


@pytest.fixture(scope="module")
def results_folder(tmp_path_factory):
    """A small study and its quantify results (for export and report)."""
    from conftest import make_nifti_study

    d = tmp_path_factory.mktemp("res")
    make_nifti_study(d / "s")
    assert main(["quantify", str(d / "s"), "--labels", str(d / "s" / "labels.nii.gz"), "-o", str(d / "res"), "-q",
                 "--no-report", "--uncertainty-draws", "0"]) == 0
    return d


@pytest.mark.parametrize("command", ["quantify-new", "quantify-existing", "demo", "phantom", "batch", "resolution",
                                     "report", "export"])
def test_read_only_mount_is_one_line_before_any_work(tmp_path, results_folder, monkeypatch, capsys, command):
    import spectrack.load
    import spectrack.phantom

    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "existing").mkdir()
    res, study = results_folder / "res", results_folder / "s"
    out = {"quantify-existing": ro / "existing", "resolution": ro / "res.json"}.get(command, ro / "out")
    args = {"quantify-new": ["quantify", study, "-l", study / "labels.nii.gz", "-o", out, "-q", "--no-report"],
            "quantify-existing": ["quantify", study, "-l", study / "labels.nii.gz", "-o", out, "-q", "--no-report"],
            "demo": ["demo", "-o", out], "phantom": ["phantom", out, "--preset", "rat"],
            "batch": ["batch", results_folder, "-o", out, "--no-report"],
            "resolution": ["resolution", study / "tp0_spect.nii.gz", "-o", out],
            "report": ["report", res, "-o", out], "export": ["export", res, "--format", "nifti", "-o", out]}[command]
    capsys.readouterr()

    def no_work(*a, **k):
        raise AssertionError("work started before the output was checked")

    for mod, name in ((spectrack.load, "load_study"), (spectrack.phantom, "make_study")):
        monkeypatch.setattr(mod, name, no_work)
    if command == "resolution":
        import spectrack.kinetics.resolution as kr

        monkeypatch.setattr(kr, "resolution_from_image", lambda *a, **k: no_work())
    if command == "batch":
        import spectrack.batch as sb

        monkeypatch.setattr(sb, "run_batch", no_work)
    _read_only(monkeypatch, ro)
    rc = main([str(a) for a in args])
    err = capsys.readouterr().err
    monkeypatch.undo()
    line = _one_error(err)
    assert rc == 3, err
    assert line.startswith(f"spectrack: error: cannot write to {out}") and "Read-only file system" in line, line
    assert sorted(p.name for p in ro.iterdir()) == ["existing"] and not any((ro / "existing").iterdir())


@pytest.mark.parametrize("case", ["file", "under_file", "folder"])
def test_resolution_output_file_checked_before_the_fit(tmp_path, results_folder, monkeypatch, capsys, case):
    import spectrack.kinetics.resolution as kr

    f = tmp_path / "a_file"
    f.write_text("mine")
    out = {"file": f, "under_file": f / "r.json", "folder": tmp_path}[case]
    if case == "file":  # a file is the normal target (replaced): the fit runs
        called = []
        monkeypatch.setattr(kr, "resolution_from_image", lambda *a, **k: called.append(a) or
                            {"fwhm_mm": [1.0, 1.0, 1.0], "method": "x"})
        assert main(["resolution", str(results_folder / "s" / "tp0_spect.nii.gz"), "-o", str(out)]) == 0
        assert called
        return
    monkeypatch.setattr(kr, "resolution_from_image", lambda *a, **k: pytest.fail("fitted before the check"))
    rc = main(["resolution", str(results_folder / "s" / "tp0_spect.nii.gz"), "-o", str(out)])
    line = _one_error(capsys.readouterr().err)
    assert rc == 3 and line.startswith(f"spectrack: error: cannot write to {out}:"), line
    assert ("is a file, not a folder" if case == "under_file" else "it is a folder") in line
    assert f.read_text() == "mine"


@pytest.mark.parametrize("case", ["file", "under_file"])
def test_batch_output_that_is_a_file_is_one_line(tmp_path, nifti_study, monkeypatch, capsys, case):
    import spectrack.batch as sb

    nifti_study(tmp_path / "root" / "s0")
    f = tmp_path / "a_file"
    f.write_text("mine")
    out = f if case == "file" else f / "cohort"
    monkeypatch.setattr(sb, "run_batch", lambda *a, **k: pytest.fail("the batch ran before the check"))
    rc = main(["batch", str(tmp_path / "root"), "-o", str(out)])
    line = _one_error(capsys.readouterr().err)
    assert rc == 3 and line.startswith(f"spectrack: error: cannot write to {out}:") and "is a file" in line, line
    assert f.read_text() == "mine"


# ---------------------------------------------------------------- values of the other commands
@pytest.mark.parametrize("option,value,phrase", [
    ("--seed", "-1", "zero or positive"), ("--seed", str(2**32), "between 0 and 4294967295"),
    ("--psf-fwhm-mm", "nan", "finite"), ("--psf-fwhm-mm", "inf", "finite"), ("--psf-fwhm-mm", "-1", "between"),
    ("--psf-fwhm-mm", "1e6", "between")])
def test_phantom_options_are_checked_before_writing(tmp_path, capsys, option, value, phrase):
    t0 = time.perf_counter()
    rc = main(["phantom", str(tmp_path / "ph"), "--preset", "rat", option, value])
    err = capsys.readouterr().err
    assert rc == 2 and phrase in err and option in err and "Traceback" not in err, err
    assert not (tmp_path / "ph").exists()
    assert time.perf_counter() - t0 < 10  # refused at once (a 1e6 mm blur ran for minutes)


def test_batch_workers_are_bounded(tmp_path, nifti_study, monkeypatch, capsys):
    """--workers 100000000 started that many processes (20 GB in a minute): refused, exit 2."""
    import spectrack.batch as sb
    from spectrack.cli import max_workers

    nifti_study(tmp_path / "root" / "s0")
    monkeypatch.setattr(sb, "run_batch", lambda *a, **k: pytest.fail("the batch ran"))
    rc = main(["batch", str(tmp_path / "root"), "-o", str(tmp_path / "out"), "--workers", "100000000"])
    err = capsys.readouterr().err
    assert rc == 2 and "'--workers'" in err and f"between 1 and {max_workers()}" in err, err
    assert max_workers() == 4 * (os.cpu_count() or 1)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- study files with wrong types or units
def _tps(**kw):
    return [dict({"spect": f"tp{n}_spect.nii.gz", "time_h": t}, **kw) for n, t in enumerate((0.5, 4.0, 26.0))]


@pytest.mark.parametrize("data,phrase", [
    ({"timepoints": [{"spect": "tp0_spect.nii.gz", "time_h": "4 h"}]}, "timepoints[0].time_h must be a number"),
    ({"timepoints": [{"spect": "tp0_spect.nii.gz", "time_h": "abc"}]}, "timepoints[0].time_h must be a number"),
    ({"timepoints": [{"spect": "tp0_spect.nii.gz", "time_h": float("nan")}]}, "time_h must be a finite number"),
    ({"timepoints": [{"spect": "tp0_spect.nii.gz", "time_h": float("inf")}]}, "time_h must be a finite number"),
    ({"timepoints": [{"spect": "tp0_spect.nii.gz", "time_h": 1e300}]}, "time_h must be between 0 and 8760"),
    ({"timepoints": [{"spect": "tp0_spect.nii.gz", "time_h": -3}]}, "time_h must be between 0 and 8760"),
    ({"timepoints": [{"spect": "tp0_spect.nii.gz", "time_h": True}]}, "time_h must be a number"),
    ({"timepoints": [{"spect": "tp0_spect.nii.gz", "time_h": None}]}, "time_h must be a number"),
    ({"timepoints": _tps(duration_s="900 s")}, "timepoints[0].duration_s must be a number"),
    ({"timepoints": _tps(duration_s=float("nan"))}, "duration_s must be a finite number"),
    ({"timepoints": _tps(duration_s=0)}, "duration_s must be positive"),
    ({"timepoints": _tps(units="furlongs")}, "units 'furlongs' not understood"),
    ({"units": "furlongs", "timepoints": _tps()}, "units 'furlongs' not understood"),
    ({"units": 5, "timepoints": _tps()}, "units 5 not understood"),
    ({"timepoints": [{"spect": 5, "time_h": 1}]}, "timepoints[0].spect must be a file or folder name"),
    ({"timepoints": [{"spect": "", "time_h": 1}]}, "timepoints[0].spect must be a file or folder name"),
    ({"timepoints": _tps(ct=["tp0_ct.nii.gz"])}, "timepoints[0].ct must be a file or folder name"),
    ({"timepoints": [5]}, "time point 1 is int 5, not a table"),
    ({"timepoints": ["tp0_spect.nii.gz"]}, "not a table"),
    ({"injected_mbq": "4 mCi", "timepoints": _tps()}, "injected_mbq has a bad value '4 mCi'"),
    ({"sensitivity": "30 cps/MBq", "timepoints": _tps()}, "sensitivity has a bad value"),
    ({"half_life_h": True, "timepoints": _tps()}, "half_life_h has a bad value True"),
    ({"acquisition_start": 5, "timepoints": [{"spect": "tp0_spect.nii.gz", "acquisition_start": 5}]},
     "unknown setting"),
    ({"timepoints": [{"spect": "tp0_spect.nii.gz", "acquisition_start": 5}]}, "acquisition_start 5"),
], ids=lambda v: re.sub(r"\W+", "-", str(v))[:40] if isinstance(v, str) else None)
def test_study_file_with_wrong_types_or_units_is_one_line(tmp_path, nifti_study, capsys, data, phrase):
    nifti_study(tmp_path / "s")
    (tmp_path / "s" / "scans.tsv").unlink()
    (tmp_path / "s" / "spectrack.json").write_text(json.dumps(data, allow_nan=True))
    rc = main(["quantify", str(tmp_path / "s"), "--labels", str(tmp_path / "s" / "labels.nii.gz"), "-o",
               str(tmp_path / "out"), "-q", "--no-report", "--uncertainty-draws", "0"])
    line = _one_error(capsys.readouterr().err)
    assert rc == 3, line
    assert line.startswith("spectrack: error:") and phrase in line and "spectrack.json" in line, line


def test_study_file_with_right_types_quantifies_to_the_truth(tmp_path, nifti_study):
    """The control of the cases above: the same study file with numbers quantifies to the truth."""
    from spectrack import run_study

    truth = nifti_study(tmp_path / "s")
    (tmp_path / "s" / "scans.tsv").unlink()
    for side in (tmp_path / "s").glob("tp*_spect.json"):  # times only from the study file
        d = json.loads(side.read_text())
        for k in ("ScanStart", "FrameTimesStart", "TimeZero", "InjectionStart"):
            d.pop(k, None)
        side.write_text(json.dumps(d))
    (tmp_path / "s" / "spectrack.json").write_text(json.dumps({"timepoints": _tps(duration_s=1200)}))
    res = run_study(tmp_path / "s", {"labels": str(tmp_path / "s" / "labels.nii.gz"), "uncertainty_draws": 0,
                                     "report": False})
    brain = res.table[res.table.region == "brain"].sort_values("timepoint")
    assert brain.pct_id.tolist() == pytest.approx([t["brain"] for t in truth], rel=1e-5)


# ---------------------------------------------------------------- settings files
@pytest.mark.parametrize("name,content,phrase", [
    ("c.json", b'[{"sensitivity": 30}]', "not a table of settings"),
    ("c.json", b"42", "not a table of settings"),
    ("c.toml", b'sensitivity = 30\nsubject = "caf\xe9"\n', "not UTF-8"),
    ("c.json", b'{"sensitivity": true}', "bad value True"),
    ("c.toml", b"injected_mbq = false\n", "bad value False"),
    ("c.json", b'{"times_h": [0.5, true, 26]}', "bad value"),
])
def test_settings_file_not_a_table_not_utf8_or_a_boolean_number(tmp_path, nifti_study, capsys, name, content,
                                                                 phrase):
    nifti_study(tmp_path / "s")
    cfg = tmp_path / name
    cfg.write_bytes(content)
    rc = main(["quantify", str(tmp_path / "s"), "--config", str(cfg), "-o", str(tmp_path / "o")])
    line = _one_error(capsys.readouterr().err)
    assert rc == 3 and phrase in line and str(cfg) in line, line
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- bounds on what can run for ever
@pytest.mark.parametrize("option,limit", [("--uncertainty-draws", 100_000), ("--kinetics-draws", 10_000)])
def test_draw_counts_have_an_upper_bound(tmp_path, capsys, option, limit):
    for value, rc_want in ((limit + 1, 2), (10**18, 2), (limit, 3)):  # 3: accepted, then the study is missing
        rc = main(["quantify", str(tmp_path / "missing"), "-o", str(tmp_path / "o"), option, str(value)])
        err = capsys.readouterr().err
        assert rc == rc_want, (value, err)
        if rc == 2:
            assert f"must be between 0 and {limit}" in err and option in err


def test_the_largest_draw_count_allowed_costs_seconds_not_hours(tmp_path, nifti_study):
    """The cost at the bound: 100,000 Monte Carlo draws on a 3-scan study stay within a minute and 1 GB, with
    intervals that hold the exact %ID (no wrong number for the sake of speed)."""
    import tracemalloc

    from spectrack import run_study

    truth = nifti_study(tmp_path / "s")
    t0 = time.perf_counter()
    tracemalloc.start()
    try:
        res = run_study(tmp_path / "s", {"labels": str(tmp_path / "s" / "labels.nii.gz"),
                                         "uncertainty_draws": 100_000, "kinetics_draws": 0, "report": False})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 60 and peak < 1024**3, (time.perf_counter() - t0, peak)
    brain = res.table[res.table.region == "brain"].sort_values("timepoint")
    assert brain.pct_id.tolist() == pytest.approx([t["brain"] for t in truth], rel=1e-5)
    assert (brain.pct_id_lo <= brain.pct_id).all() and (brain.pct_id <= brain.pct_id_hi).all()
    assert "100000 draws" in brain.interval_method.iloc[0]


# ---------------------------------------------------------------- the Python API of the README
def _api_cases():
    """(id, call(ctx)). ``ctx`` holds a loaded study ``st``, its label file ``lab`` and
    folder ``s``. Each call misuses one argument of a function of the README's Python API section."""
    import spectrack
    from spectrack.phantom.sample import sample_study
    from spectrack.settings import Settings

    q = spectrack.quantify
    utc = dt.timezone.utc
    return [
        ("load_study-None", lambda c: spectrack.load_study(None)),
        ("load_study-int", lambda c: spectrack.load_study(42)),
        ("load_study-bytes", lambda c: spectrack.load_study(b"/x")),
        ("load_study-list-None", lambda c: spectrack.load_study([None])),
        ("load_study-missing", lambda c: spectrack.load_study(c["s"] / "nope")),
        ("load_study-times-str", lambda c: spectrack.load_study(c["s"], times_h=["abc", 1, 2])),
        ("load_study-times-nan", lambda c: spectrack.load_study(c["s"], times_h=[float("nan"), 1, 2])),
        ("load_study-times-inf", lambda c: spectrack.load_study(c["s"], times_h=[float("inf"), 1, 2])),
        ("load_study-times-negative", lambda c: spectrack.load_study(c["s"], times_h=[-1, 1, 2])),
        ("load_study-times-int", lambda c: spectrack.load_study(c["s"], times_h=5)),
        ("load_study-times-None-item", lambda c: spectrack.load_study(c["s"], times_h=[None, 1, 2])),
        ("load_study-times-bool", lambda c: spectrack.load_study(c["s"], times_h=[True, 1, 2])),
        ("load_study-times-array-nan", lambda c: spectrack.load_study(c["s"], times_h=np.array([np.nan, 1, 2]))),
        ("load_study-times-count", lambda c: spectrack.load_study(c["s"], times_h=[1, 2])),
        ("quantify-None", lambda c: q(None, c["lab"])),
        ("quantify-path-for-study", lambda c: q(str(c["s"]), c["lab"])),
        ("quantify-labels-missing", lambda c: q(c["st"], c["s"] / "no.nii.gz")),
        ("quantify-calibration", lambda c: q(c["st"], c["lab"], calibration="magic")),
        ("quantify-sensitivity-negative", lambda c: q(c["st"], c["lab"], sensitivity_cps_per_mbq=-1)),
        ("quantify-sensitivity-bool", lambda c: q(c["st"], c["lab"], sensitivity_cps_per_mbq=True)),
        ("quantify-sensitivity-list", lambda c: q(c["st"], c["lab"], sensitivity_cps_per_mbq=[1])),
        ("quantify-fov-timepoint-out", lambda c: q(c["st"], c["lab"], calibration="fov", fov_timepoint=99)),
        ("quantify-fov-timepoint-float", lambda c: q(c["st"], c["lab"], calibration="fov", fov_timepoint=1.5)),
        ("quantify-injected-inf", lambda c: q(c["st"], c["lab"], injected_mbq=float("inf"))),
        ("quantify-injected-nan", lambda c: q(c["st"], c["lab"], injected_mbq=float("nan"))),
        ("quantify-injected-zero", lambda c: q(c["st"], c["lab"], injected_mbq=0)),
        ("quantify-injected-huge", lambda c: q(c["st"], c["lab"], injected_mbq=1e308)),
        ("quantify-injection-time-str", lambda c: q(c["st"], c["lab"], injection_time="2026-03-14T22:40")),
        ("quantify-injection-time-date", lambda c: q(c["st"], c["lab"], injection_time=dt.date(2026, 3, 14))),
        ("quantify-injection-after-scans", lambda c: q(c["st"], c["lab"], injection_time=dt.datetime(2026, 3, 16))),
        ("quantify-residual-inf", lambda c: q(c["st"], c["lab"], residual_mbq=float("inf"))),
        ("quantify-residual-above-dose", lambda c: q(c["st"], c["lab"], residual_mbq=1000.0)),
        ("quantify-half-life-zero", lambda c: q(c["st"], c["lab"], half_life_h=0)),
        ("quantify-half-life-inf", lambda c: q(c["st"], c["lab"], half_life_h=float("inf"))),
        ("quantify-radionuclide", lambda c: q(c["st"], c["lab"], radionuclide="Xx-999")),
        ("quantify-duration-nan", lambda c: q(c["st"], c["lab"], duration_s=float("nan"))),
        ("quantify-label-resampling", lambda c: q(c["st"], c["lab"], label_resampling="cubic")),
        ("quantify-labels-None", lambda c: q(c["st"], None)),
        ("quantify-labels-int", lambda c: q(c["st"], 42)),
        ("quantify-labels-dict", lambda c: q(c["st"], {1: "brain"})),
        ("quantify-labels-empty-list", lambda c: q(c["st"], [])),
        ("quantify-labels-short-list", lambda c: q(c["st"], [read_label_map(c["lab"])])),
        ("quantify-radionuclide-empty", lambda c: q(c["st"], c["lab"], radionuclide="")),
        ("quantify-injection-time-aware", lambda c: q(c["st"], c["lab"], injection_time=dt.datetime(
            2026, 3, 14, 22, 40, tzinfo=utc))),
        ("quantify-transforms-int", lambda c: q(c["st"], c["lab"], transforms=5)),
        ("quantify-transforms-short", lambda c: q(c["st"], c["lab"], transforms=[None])),
        ("quantify-transforms-not-transform", lambda c: q(c["st"], c["lab"], transforms=[1, 1, 1])),
        ("read_label_map-missing", lambda c: read_label_map(c["s"] / "no.nii.gz")),
        ("read_label_map-folder", lambda c: read_label_map(c["s"])),
        ("read_label_map-garbage", lambda c: (c["s"].parent / "bad.nii.gz").write_bytes(b"x") and
         read_label_map(c["s"].parent / "bad.nii.gz")),  # not in the study folder the others read
        ("read_label_map-names-empty", lambda c: read_label_map(c["lab"], names={1: ""})),
        ("read_label_map-names-duplicate", lambda c: read_label_map(c["lab"], names={1: "x", 2: "x"})),
        ("read_label_map-names-missing-file", lambda c: read_label_map(c["lab"], names=c["s"] / "no.tsv")),
        ("read_label_map-None", lambda c: read_label_map(None)),
        ("read_label_map-int", lambda c: read_label_map(42)),
        ("read_label_map-names-int", lambda c: read_label_map(c["lab"], names=5)),
        ("read_label_map-names-bad-key", lambda c: read_label_map(c["lab"], names={"a": "b"})),
        ("read_label_map-names-list", lambda c: read_label_map(c["lab"], names=["brain"])),
        ("sample_study-int", lambda c: sample_study(42)),
        ("sample_study-file", lambda c: sample_study(c["lab"])),
        ("run_study-None", lambda c: spectrack.run_study(None)),
        ("run_study-int", lambda c: spectrack.run_study(42, {"labels": str(c["lab"])})),
        ("run_study-missing", lambda c: spectrack.run_study(c["s"] / "nope", {"labels": str(c["lab"])})),
        ("run_study-settings-list", lambda c: spectrack.run_study(c["s"], ["x"])),
        ("run_study-settings-str", lambda c: spectrack.run_study(c["s"], "labels.nii.gz")),
        ("run_study-settings-unknown", lambda c: spectrack.run_study(c["s"], {"sensitivty": 30})),
        ("run_study-settings-injected-inf", lambda c: spectrack.run_study(
            c["s"], {"injected_mbq": float("inf"), "labels": str(c["lab"])})),
        ("run_study-Settings-injected-inf", lambda c: spectrack.run_study(
            c["s"], Settings(injected_mbq=float("inf"), labels=str(c["lab"])))),
        ("run_study-Settings-draws-negative", lambda c: spectrack.run_study(
            c["s"], Settings(uncertainty_draws=-1, labels=str(c["lab"])))),
        ("run_study-Settings-draws-huge", lambda c: spectrack.run_study(
            c["s"], Settings(uncertainty_draws=10**9, labels=str(c["lab"])))),
        ("run_study-Settings-seed-negative", lambda c: spectrack.run_study(
            c["s"], Settings(seed=-1, labels=str(c["lab"])))),
        ("run_study-Settings-times-nan", lambda c: spectrack.run_study(
            c["s"], Settings(times_h=[float("nan"), 1, 2], labels=str(c["lab"])))),
        ("run_study-Settings-psf-inf", lambda c: spectrack.run_study(
            c["s"], Settings(psf_fwhm_mm=float("inf"), pvc=True, labels=str(c["lab"])))),
        ("run_study-labels-missing", lambda c: spectrack.run_study(c["s"], {}, labels=c["s"] / "no.nii.gz")),
        ("run_study-out-dir-file", lambda c: spectrack.run_study(c["s"], {"labels": str(c["lab"])},
                                                                 out_dir=c["lab"])),
        ("run_study-labels-int", lambda c: spectrack.run_study(c["s"], {}, labels=42)),
        ("run_study-out-dir-int", lambda c: spectrack.run_study(c["s"], {"labels": str(c["lab"])}, out_dir=42)),
        ("run_study-study-int", lambda c: spectrack.run_study(c["s"], {"labels": str(c["lab"])}, study=42)),
        ("run_study-progress-int", lambda c: spectrack.run_study(
            c["s"], {"labels": str(c["lab"]), "uncertainty_draws": 0, "report": False}, progress=5)),
        ("run_study-cancel-int", lambda c: spectrack.run_study(
            c["s"], {"labels": str(c["lab"]), "uncertainty_draws": 0, "report": False}, cancel=5)),
    ]


_API = _api_cases()


@pytest.fixture(scope="module")
def api_study(tmp_path_factory):
    from conftest import make_nifti_study

    from spectrack import load_study

    d = tmp_path_factory.mktemp("api")
    make_nifti_study(d / "s")
    return {"s": d / "s", "lab": d / "s" / "labels.nii.gz", "st": load_study(d / "s")}


@pytest.mark.parametrize("call", [pytest.param(c, id=i) for i, c in _API])
def test_api_misuse_raises_a_spectrack_error_in_one_line(api_study, call, monkeypatch, tmp_path):
    """Every misuse: a SpectrackError subclass (with its exit code) and one line; never TypeError, KeyError,
    ValueError, AttributeError or IndexError; and never a result."""
    monkeypatch.chdir(tmp_path)  # run_study(..., out_dir=None) writes nothing; anything else lands here
    with pytest.raises(SpectrackError) as e:
        call(api_study)
    assert type(e.value) is not SpectrackError and e.value.exit_code in (3, 4, 5, 6)
    msg = str(e.value)
    assert msg.strip() and "\n" not in msg and "Traceback" not in msg


def test_api_reads_what_the_command_line_reads_as_the_same_values(api_study):
    """Paths in a list of label maps are read, and numbers written as text ('150', as a settings file or the
    command line holds them) are the numbers: the same table as the typed call, not a TypeError."""
    import spectrack

    st, lab = api_study["st"], api_study["lab"]
    typed = spectrack.quantify(st, read_label_map(lab), injected_mbq=150.0, half_life_h=6.0)
    as_text = spectrack.quantify(st, [str(lab)] * len(st.timepoints), injected_mbq="150", half_life_h="6")
    pd.testing.assert_frame_equal(typed, as_text)
    other = spectrack.quantify(st, lab, injected_mbq=300.0, half_life_h=6.0)  # the value is used, not ignored
    assert other.pct_id.to_numpy() == pytest.approx(typed.pct_id.to_numpy() / 2, rel=1e-12)


def test_api_messages_are_the_command_lines(api_study, tmp_path, capsys):
    """The same problem, the same words: quantify(injected_mbq=inf) and --injected-mbq inf."""
    import spectrack

    with pytest.raises(SpectrackError) as e:
        spectrack.quantify(api_study["st"], api_study["lab"], injected_mbq=float("inf"))
    rc = main(["quantify", str(api_study["s"]), "-l", str(api_study["lab"]), "-o", str(tmp_path / "o"),
               "--injected-mbq", "inf"])
    err = capsys.readouterr().err
    assert rc == 2 and e.value.problem in err and e.value.problem == "must be a finite number, got inf"
    with pytest.raises(SpectrackError) as e:
        spectrack.load_study(api_study["s"], times_h=[float("nan"), 1, 2])
    rc = main(["info", str(api_study["s"]), "--times-h", "nan,1,2"])
    assert rc == 2 and e.value.problem in capsys.readouterr().err


# ---------------------------------------------------------------- nothing lost: a failed batch re-run
def _fail_with(monkeypatch, how: str) -> None:
    import spectrack.io_utils as io_utils
    import spectrack.pipeline

    if how == "disk_full":  # the third file of the new result cannot be written
        real, calls = io_utils._fsync, []

        def full(path):
            calls.append(path)
            if len(calls) == 3:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            return real(path)

        monkeypatch.setattr(io_utils, "_fsync", full)
    else:
        exc = MemoryError() if how == "memory" else RuntimeError("worker exception")

        def boom(*a, **k):
            raise exc

        monkeypatch.setattr(spectrack.pipeline, "run_study", boom)


@pytest.mark.parametrize("how", ["disk_full", "memory", "worker_exception"])
def test_failed_batch_rerun_keeps_the_last_good_result_marked_stale(tmp_path, nifti_study, monkeypatch, how):
    from spectrack.batch import run_one
    from spectrack.batch.cohort import cohort_table
    from spectrack.batch.run import BatchSummary, StudyOutcome
    from spectrack.batch.studies import resolve_studies

    root, out = tmp_path / "root", tmp_path / "out"
    truth = {f"s{i}": nifti_study(root / f"s{i}") for i in range(2)}
    studies = resolve_studies(root)
    specs = {s.study_id: s.to_spec() for s in studies}
    first = {sid: run_one(spec, str(out)) for sid, spec in specs.items()}
    assert all(o["status"] == "done" for o in first.values())
    before = {p.relative_to(out).as_posix(): _sha(p) for p in (out / "studies" / "s0").rglob("*") if p.is_file()}
    with monkeypatch.context() as m:
        _fail_with(m, how)
        failed = run_one(specs["s0"], str(out), force=True)
    assert failed["status"] == "failed" and failed["stale"] is True, failed
    assert failed["out_dir"] == str(out / "studies" / "s0")
    after = {p.relative_to(out).as_posix(): _sha(p) for p in (out / "studies" / "s0").rglob("*") if p.is_file()}
    assert after == before  # the last good result, whole
    assert sorted(p.name for p in (out / "studies").iterdir()) == ["s0", "s1"]  # no temporary folder left
    fresh = run_one(specs["s1"], str(out), force=True)
    summary = BatchSummary(out_dir=out, outcomes=[StudyOutcome(**failed), StudyOutcome(**fresh)], studies=studies)
    table = cohort_table(summary)
    assert table[table.study == "s0"]["stale"].all() and not table[table.study == "s1"]["stale"].any()
    brain = table[(table.study == "s0") & (table.region == "brain")].sort_values("timepoint")
    assert brain.pct_id.tolist() == pytest.approx([t["brain"] for t in truth["s0"]], rel=1e-5)


def test_a_worker_killed_on_a_rerun_keeps_the_last_good_result_in_the_cohort(tmp_path, nifti_study, monkeypatch):
    from types import SimpleNamespace

    import distributed
    from distributed.scheduler import KilledWorker

    from spectrack.batch import run_batch, run_one
    from spectrack.batch.studies import resolve_studies

    root, out = tmp_path / "root", tmp_path / "out"
    nifti_study(root / "s0")
    (spec,) = [s.to_spec() for s in resolve_studies(root)]
    assert run_one(spec, str(out.resolve()))["status"] == "done"
    good = _sha(out / "studies" / "s0" / "regions.csv")

    class Killed:
        def __init__(self, key):
            self.key = key

        def result(self):
            raise KilledWorker(self.key, SimpleNamespace(address="tcp://127.0.0.1:1"), 3)

    class Client:  # a scheduler whose worker dies (out of memory) while running the study
        def map(self, fn, specs, key, **kw):
            return [Killed(k) for k in key]

        def cancel(self, futures):
            pass

    monkeypatch.setattr(distributed, "as_completed", lambda futures: iter(futures))
    summary = run_batch(root, out, scheduler=Client(), force=True, report=False)
    (o,) = summary.outcomes
    assert o.status == "failed" and _sha(out / "studies" / "s0" / "regions.csv") == good
    assert o.stale and o.out_dir == str(out.resolve() / "studies" / "s0"), o
    cohort = pd.read_csv(out / "cohort.csv")
    assert len(cohort) and cohort["stale"].all()


# ---------------------------------------------------------------- the fuzz budget in CI
def test_fuzz_totals_in_ci_are_at_least_2000_cases_with_no_failure(tmp_path):
    """The fuzz files as CI runs them (their default example counts), in one process so that their summary
    counters see every case (under xdist each worker counts only its share): at least 2,000 cases, 0 unexpected
    exceptions (tracebacks, non-SpectrackError errors) and 0 silent wrong numbers (counted as failures by the
    loader fuzz's truth checks, as wrong numbers by the label fuzz's phantom truth; the option fuzz asserts every
    accepted value is finite and in range)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPECTRACK_FUZZ", "PYTEST_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "plugins"), env.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-p", "no:xdist",
                        "-p", "no:randomly", "tests/test_fuzz_loaders.py", "tests/test_fuzz_options.py",
                        "tests/test_fuzz_labels.py"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    loaders = re.search(r"^fuzz summary: (\d+) cases .*; (\d+) refused with a SpectrackError, (\d+) unexpected "
                        r"failures$", r.stdout, re.M)
    options = re.search(r"^option fuzz summary: (\d+) cases, (\d+) refused in one line, (\d+) accepted within "
                        r"range, 0 tracebacks$", r.stdout, re.M)
    labels = re.search(r"^label fuzz summary: (\d+) cases .*; (\d+) refused with a SpectrackError, (\d+) "
                       r"unexpected failures, (\d+) silent wrong numbers$", r.stdout, re.M)
    assert loaders and options and labels, r.stdout[-3000:]
    n_loaders, n_options, n_labels = int(loaders.group(1)), int(options.group(1)), int(labels.group(1))
    assert int(loaders.group(3)) == 0
    assert int(labels.group(3)) == 0 and int(labels.group(4)) == 0, labels.group(0)
    assert int(options.group(1)) == int(options.group(2)) + int(options.group(3))
    assert n_loaders + n_options + n_labels >= 2000, (n_loaders, n_options, n_labels)
    # the mutations the issue names are among them: NM size tags, damaged .nii.gz streams, output paths
    for kind in ("DICOM NM size", "NIfTI gz damage", "DICOM NM tags", "NIfTI study"):
        m = re.search(rf"{kind} (\d+)", loaders.group(0))
        assert m and int(m.group(1)) >= 100, (kind, loaders.group(0))
    # label-map mutations, each read by read_label_map and quantified through spectrack.quantify
    for kind in ("label map", "label study"):
        m = re.search(rf"{kind} (\d+)", labels.group(0))
        assert m and int(m.group(1)) >= 100, (kind, labels.group(0))
    assert re.search(r"(\d+) passed", r.stdout) and " failed" not in r.stdout.splitlines()[-1]


# ---------------------------------------------------------------- cost of the Monte Carlo draws
def _intervals_inputs(tmp_path, nifti_study):
    import spectrack

    nifti_study(tmp_path / "s")
    st = spectrack.load_study(tmp_path / "s")
    table, det = spectrack.quantify(st, tmp_path / "s" / "labels.nii.gz", sensitivity_cps_per_mbq=80.0,
                                    return_details=True)
    images = [tp.emission.image for tp in st.timepoints]
    cpm = [80.0 * c.duration_s.value / c.in_frame_factor for c in det.calibrations]
    return table, images, det.labels_per_timepoint, cpm


@pytest.mark.parametrize("n_regions,pvc,return_draws", [(2, False, False), (2, False, True), (2, True, True),
                                                        (40, False, True), (40, True, False), (40, True, True)])
def test_pct_id_draws_memory_estimate_bounds_what_the_intervals_allocate(tmp_path, nifti_study, n_regions, pvc,
                                                                         return_draws):
    """The estimate the memory check uses is at least the peak the %ID intervals allocate (measured by
    tracemalloc, numpy's buffers included), and not more than 3x it: 2 or 40 regions, with and without
    recovery-corrected intervals and returned draws."""
    import tracemalloc

    import spectrack
    from spectrack.kinetics.recovery import add_gtm_correction
    from spectrack.kinetics.uncertainty import add_pct_id_intervals, pct_id_draws_bytes
    from spectrack.regions.labelmap import LabelMap

    table, images, labels, cpm = _intervals_inputs(tmp_path, nifti_study)
    if n_regions != 2:
        arr = np.zeros(labels[0].image.array.shape, np.int32)
        arr.reshape(-1)[:40 * n_regions] = np.arange(40 * n_regions) // 40 + 1  # regions of 40 voxels
        lm = LabelMap(labels[0].image.with_array(arr, units="label"), {i: f"r{i}" for i in range(1, n_regions + 1)})
        st = spectrack.load_study(tmp_path / "s")
        table, det = spectrack.quantify(st, lm, sensitivity_cps_per_mbq=80.0, return_details=True)
        labels = det.labels_per_timepoint
    kw = {}
    if pvc:
        table = add_gtm_correction(table, images, labels, fwhm_mm=8.0)
        kw = {"fwhm_mm": 8.0, "fwhm_sd_mm": 1.0}
    nd = 20_000 if n_regions == 2 else 5_000
    tracemalloc.start()
    try:
        add_pct_id_intervals(table, images, labels, counts_per_mbq=cpm, n_draws=nd, return_draws=return_draws, **kw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    est = pct_id_draws_bytes(nd, len(table), n_regions, pvc=pvc, return_draws=return_draws)
    assert peak <= est <= 3 * peak, (peak, est)


def test_uncertainty_draws_beyond_the_available_memory_are_refused_in_one_line(tmp_path, nifti_study, capsys,
                                                                               monkeypatch):
    """With 1 MiB available (monkeypatched: independent of the machine), 100,000 draws of the two-region study
    (12 table rows: 8 * 100,000 * (12 * 5 + 3 * 9) bytes = 66 MiB) are refused before any draw, in one line that
    gives the estimate, the available memory and how many draws fit; that many then run."""
    from spectrack.quantification import memory

    monkeypatch.setattr(memory, "available_memory_bytes", lambda: 1024**2)
    nifti_study(tmp_path / "s")
    args = ["quantify", str(tmp_path / "s"), "--labels", str(tmp_path / "s" / "labels.nii.gz"), "--sensitivity",
            "80", "--no-report", "-q"]
    rc = main(args + ["-o", str(tmp_path / "big"), "--uncertainty-draws", "100000"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]  # progress lines aside
    assert rc == 3 and len(err) == 1 and err[0].startswith("spectrack: error:"), err
    assert "100000 Monte Carlo draws need about 66.4 MiB" in err[0] and "1 MiB available" in err[0], err[0]
    fit = int(re.search(r"--uncertainty-draws (\d+) or less", err[0]).group(1))
    assert fit == 1024**2 // 2 // (8 * (12 * 5 + 3 * 9)), err[0]  # 753
    assert not (tmp_path / "big" / "regions.csv").exists()
    rc = main(args + ["-o", str(tmp_path / "fit"), "--uncertainty-draws", str(fit)])
    assert rc == 0, capsys.readouterr().err
    df = pd.read_csv(tmp_path / "fit" / "regions.csv")
    regions = df[df["kind"] == "region"]
    assert len(regions) == 6 and regions["pct_id_lo"].notna().all() and regions["pct_id_hi"].notna().all()


def test_kinetics_draws_beyond_the_available_memory_are_refused_in_one_line(monkeypatch):
    """The refits of a curve's draws are checked the same way (through analyse_kinetics and
    derived_intervals): refused with the estimate and the draws that fit; the same draws run with memory."""
    from spectrack.kinetics import analyse_kinetics
    from spectrack.quantification import memory
    from spectrack.kinetics.uncertainty import derived_intervals, kinetics_draws_bytes

    t = np.array([0.5, 2.0, 6.0, 12.0, 24.0, 48.0])
    y = 30.0 * np.exp(-0.05 * t)
    rng = np.random.default_rng(0)
    d = y[None, :] * (1 + 0.03 * rng.standard_normal((40, t.size)))
    table = pd.DataFrame({"subject": "s", "timepoint": range(t.size), "time_h": t, "region": "brain",
                          "label": 1, "kind": "region", "pct_id": y, "pct_id_uncorrected": y * np.exp(-LAM * t),
                          "activity_mbq": y * 1.5})
    draws = {("s", "brain"): {"time_h": t, "timepoint": np.arange(t.size), "pct_id": d}}
    ok = analyse_kinetics(table, half_life_h=HL_H, quantities=("pct_id",), draws=draws, max_draws=40)
    n_metrics = int((ok.metrics["quantity"] == "pct_id").sum())
    need = kinetics_draws_bytes(40, t.size, n_metrics)
    assert ok.metrics["lo"].notna().any()
    monkeypatch.setattr(memory, "available_memory_bytes", lambda: need)  # half of it is the safe share
    with pytest.raises(InputError) as e:
        analyse_kinetics(table, half_life_h=HL_H, quantities=("pct_id",), draws=draws, max_draws=40)
    msg = str(e.value)
    assert "\n" not in msg and "kinetic intervals of brain: 40 Monte Carlo draws need about" in msg, msg
    assert "--kinetics-draws 20 or less" in msg, msg
    with pytest.raises(InputError, match="max_draws 20 or less"):
        derived_intervals(t, y, d, half_life_h=HL_H, fixed_model=True)
    monkeypatch.setattr(memory, "available_memory_bytes", lambda: 2 * need)
    again = analyse_kinetics(table, half_life_h=HL_H, quantities=("pct_id",), draws=draws, max_draws=40)
    pd.testing.assert_frame_equal(again.metrics, ok.metrics)


def test_draw_memory_check_reads_the_available_memory_of_the_system():
    """available_memory_bytes is the system's MemAvailable (Linux) or sysconf pages: positive and at most the
    physical memory; an estimate within the safe share passes, one above it is refused."""
    from spectrack.kinetics.uncertainty import DRAW_MEMORY_SHARE, available_memory_bytes, check_draw_memory

    avail = available_memory_bytes()
    phys = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert avail is not None and 0 < avail <= phys
    check_draw_memory(int(DRAW_MEMORY_SHARE * 1000), "x", 10, "--n", available=1000)
    with pytest.raises(InputError, match=r"x: 10 Monte Carlo draws need about 1.95 KiB .* 1000 B available: give "
                                         r"fewer draws \(--n 2 or less\)"):
        check_draw_memory(2000, "x", 10, "--n", available=1000)


@pytest.mark.parametrize("how", ["datatype", "dimension", "appended"])
def test_a_nifti_image_longer_than_its_header_is_refused(tmp_path, nifti_study, capsys, how):
    """Emission NIfTI whose header no longer describes its data (float32 declared int16, a dimension made
    smaller, bytes appended): nibabel reads the declared voxels from the start and would give wrong %ID."""
    import gzip

    nifti_study(tmp_path / "s")
    p = tmp_path / "s" / "tp1_spect.nii.gz"
    img = nib.load(str(p))
    data = np.asarray(img.dataobj, np.float32)
    hdr = img.header.copy()
    hdr.set_data_dtype(np.float32)
    raw = bytearray(nib.Nifti1Image(data, img.affine, hdr).to_bytes())
    mutated = nib.Nifti1Header.from_fileobj(__import__("io").BytesIO(bytes(raw[:352])))
    if how == "datatype":
        mutated.set_data_dtype(np.int16)
    elif how == "dimension":
        shape = list(mutated.get_data_shape())
        shape[2] -= 1
        mutated.set_data_shape(shape)
    raw[:348] = mutated.binaryblock
    if how == "appended":
        raw += b"\0" * 64
    p.write_bytes(gzip.compress(bytes(raw)))
    rc = main(["quantify", str(tmp_path / "s"), "--labels", str(tmp_path / "s" / "labels.nii.gz"), "-o",
               str(tmp_path / "o"), "--no-report", "--uncertainty-draws", "0", "-q"])
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if "error" in ln]
    assert rc == 3 and "the header declares" in line and "tp1_spect.nii.gz" in line, err
    assert not (tmp_path / "o" / "regions.csv").exists()


def test_a_nifti_image_that_matches_its_header_still_loads(tmp_path, nifti_study):
    """The same rewrite with the header unchanged loads and gives the same voxels (the check is not a blanket
    refusal of re-encoded files)."""
    import gzip

    from spectrack import load_study

    nifti_study(tmp_path / "s")
    p = tmp_path / "s" / "tp1_spect.nii.gz"
    before = load_study(tmp_path / "s").timepoints[1].emission.image.array.copy()
    img = nib.load(str(p))
    p.write_bytes(gzip.compress(nib.Nifti1Image(np.asarray(img.dataobj, np.float32), img.affine,
                                                img.header).to_bytes()))
    after = load_study(tmp_path / "s").timepoints[1].emission.image.array
    assert np.array_equal(before, after)


def test_real_nifti_files_pass_the_voxel_data_check(realdata):
    """Files another tool wrote (PyTIA's registered Lu-177 SPECT series, uint16 with scaling) are not refused by
    the header/data length check, and read as nibabel reads them (its scaled values)."""
    from spectrack.load.nifti import read_nifti_series

    files = sorted((realdata / "pytia-lu177").glob("SPECT-*H_reg.nii.gz"))
    if not files:
        pytest.skip("pytia-lu177 is not in ../shared/realdata")
    for f in files:
        img = nib.load(str(f))
        s = read_nifti_series(f)
        assert s.image.shape_ijk == tuple(img.shape[:3])
        assert float(s.image.array.sum(dtype=np.float64)) == pytest.approx(
            float(np.asarray(img.dataobj, np.float64).sum()), rel=1e-6)
