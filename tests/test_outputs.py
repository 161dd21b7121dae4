"""Outputs: a bad -o fails before any computation with one line (exit 3), results folders are written as one
unit (a run killed at any moment leaves the complete old set or the complete new one), files spectrack did not
write are never overwritten without --force, and a failed re-run never loses the last good result."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from spectrack.batch.run import CACHE_FILE
from spectrack.cli import main
from spectrack.io_utils import MANIFEST, output_folder, read_manifest
from spectrack.regions.formats.nifti import read_label_map, write_label_map
from spectrack.regions.labelmap import LabelMap

REPO = Path(__file__).resolve().parents[1]


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _listing(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` (relative name -> SHA-256), the record of what wrote it excluded."""
    return {p.relative_to(folder).as_posix(): _sha(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def _study(tmp_path, nifti_study):
    study = tmp_path / "study"
    truth = nifti_study(study)
    return study, truth


def _quantify(study, out, *extra):
    return main(["quantify", str(study), "-o", str(out), "--labels", str(study / "labels.nii.gz"), "-q",
                 "--no-report", *extra])


def _no_load(monkeypatch):
    """Make any attempt to load the study fail the test (the output checks come first)."""
    import spectrack.load

    def boom(*a, **k):
        raise AssertionError("the study was loaded before the output folder was checked")

    monkeypatch.setattr(spectrack.load, "load_study", boom)


# ---------------------------------------------------------------- a bad -o: one line, exit 3, before loading

@pytest.mark.parametrize("case", ["file", "under_file", "link", "cwd", "sysfs"])
def test_bad_output_folder_fails_before_loading(tmp_path, nifti_study, capsys, monkeypatch, case):
    study, _ = _study(tmp_path, nifti_study)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder\n")
    if case == "file":
        out, why = blocker, "it is a file, not a folder"
    elif case == "under_file":
        out, why = blocker / "results", "is a file, not a folder"
    elif case == "link":
        (tmp_path / "elsewhere").mkdir()
        out = tmp_path / "linked"
        out.symlink_to(tmp_path / "elsewhere")
        why = "it is a link, not a folder"
    elif case == "cwd":
        out = tmp_path / "here"
        out.mkdir()
        monkeypatch.chdir(out)
        why = "it is the current folder"
    else:  # a folder this process may not create files in (sysfs refuses every new entry, even for root)
        if not Path("/sys/kernel").is_dir():
            pytest.skip("no /sys file system on this machine")
        out, why = Path("/sys/kernel/spectrack-results"), "cannot write to /sys/kernel/spectrack-results: "
    _no_load(monkeypatch)
    rc = _quantify(study, out)
    err = capsys.readouterr().err
    assert rc == 3, err
    (line,) = [ln for ln in err.splitlines() if ln.strip()]
    assert line.startswith(f"spectrack: error: cannot write to {out}") and why in line
    assert "Traceback" not in err
    assert blocker.read_text() == "not a folder\n"


def test_disk_full_while_writing_keeps_the_old_results(tmp_path, nifti_study, capsys, monkeypatch):
    """ENOSPC in the middle of the writes: one line, exit 3, the earlier complete results untouched."""
    study, truth = _study(tmp_path, nifti_study)
    out = tmp_path / "results"
    assert _quantify(study, out) == 0
    before = _listing(out)
    capsys.readouterr()
    import spectrack.io_utils as io_utils

    real, calls = io_utils._fsync, []

    def full(path):
        calls.append(path)
        if len(calls) == 3:  # the third file written: the disk fills up
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path)

    monkeypatch.setattr(io_utils, "_fsync", full)
    rc = _quantify(study, out, "--report")
    err = capsys.readouterr().err
    assert rc == 3, err
    assert f"spectrack: error: cannot write to {out}: No space left on device" in err and "Traceback" not in err
    assert _listing(out) == before  # the old set, whole
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".tmp-", ".old-"))]


def test_api_raises_output_error_before_loading(tmp_path, nifti_study, monkeypatch):
    from spectrack.errors import OutputError
    from spectrack.pipeline import run_study

    study, _ = _study(tmp_path, nifti_study)
    (tmp_path / "f").write_text("x")
    _no_load(monkeypatch)
    with pytest.raises(OutputError, match=r"^cannot write to .*: it is a file, not a folder") as e:
        run_study(study, {"labels": str(study / "labels.nii.gz")}, out_dir=tmp_path / "f")
    assert e.value.exit_code == 3


# ---------------------------------------------------------------- one unit; other files kept; no overwriting

def test_results_folder_is_one_set_and_keeps_files_it_did_not_write(tmp_path, nifti_study):
    study, truth = _study(tmp_path, nifti_study)
    out = tmp_path / "results"
    assert _quantify(study, out, "--report") == 0
    assert (out / "report.html").is_file()
    (out / "my_notes.txt").write_text("animal 3 moved at 4 h\n")
    rec = read_manifest(out)
    assert "report.html" in rec["entries"] and "my_notes.txt" not in rec["entries"]
    # the second run writes no report: the old report (its own) goes, the user's notes stay
    assert _quantify(study, out) == 0
    assert not (out / "report.html").exists() and not (out / "figures").exists()
    assert (out / "my_notes.txt").read_text() == "animal 3 moved at 4 h\n"
    assert set(read_manifest(out)["entries"]) == {p.name for p in out.iterdir()} - {MANIFEST, "my_notes.txt"}
    reg = pd.read_csv(out / "regions.csv")
    brain = reg[(reg["region"] == "brain") & (reg["kind"] == "region")]["pct_id"].tolist()
    assert brain == pytest.approx([t["brain"] for t in truth], rel=1e-5)


def test_report_and_export_added_later_belong_to_the_results(tmp_path, nifti_study):
    study, _ = _study(tmp_path, nifti_study)
    out = tmp_path / "results"
    assert _quantify(study, out) == 0
    assert main(["report", str(out)]) == 0
    assert main(["export", str(out), "--format", "nifti"]) == 0
    assert {"report.html", "figures", "export"} <= set(read_manifest(out)["entries"])
    assert _quantify(study, out) == 0  # not refused (spectrack wrote them), and not kept as someone else's
    assert not (out / "report.html").exists() and not (out / "export").exists()


def test_quantify_refuses_to_replace_a_users_file_without_force(tmp_path, nifti_study, capsys, monkeypatch):
    study, truth = _study(tmp_path, nifti_study)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "regions.csv").write_text("my own table\n")
    with monkeypatch.context() as m:
        _no_load(m)
        rc = _quantify(study, out)
    err = capsys.readouterr().err
    assert rc == 3 and "it holds regions.csv, which spectrack quantify did not write" in err and "--force" in err
    assert (out / "regions.csv").read_text() == "my own table\n"
    assert _quantify(study, out, "--force") == 0
    assert pd.read_csv(out / "regions.csv")["pct_id"].notna().all()


def test_phantom_never_overwrites_a_users_label_map(tmp_path, capsys):
    out = tmp_path / "ph"
    out.mkdir()
    users = tmp_path / "users_labels.nii.gz"
    assert main(["phantom", str(tmp_path / "ref"), "--preset", "rat"]) == 0
    lab = read_label_map(tmp_path / "ref" / "labels.nii.gz")
    write_label_map(LabelMap(lab.image, {k: f"my_{v}" for k, v in lab.names.items()}), out / "labels.nii.gz")
    (out / "labels.tsv").unlink(missing_ok=True)
    users.write_bytes((out / "labels.nii.gz").read_bytes())
    capsys.readouterr()
    rc = main(["phantom", str(out), "--preset", "rat"])
    err = capsys.readouterr().err
    assert rc == 3 and "which spectrack phantom did not write" in err and "--force" in err
    assert (out / "labels.nii.gz").read_bytes() == users.read_bytes()
    assert not (out / "truth.json").exists()  # nothing written at all
    assert main(["phantom", str(out), "--preset", "rat"]) == 3  # still refused
    assert main(["phantom", str(out), "--preset", "rat", "--force"]) == 0
    assert (out / "labels.nii.gz").read_bytes() == (tmp_path / "ref" / "labels.nii.gz").read_bytes()
    assert main(["phantom", str(out), "--preset", "rat", "--seed", "1"]) == 0  # its own files: replaced
    assert json.loads((out / "truth.json").read_text())["seed"] == 1


def test_demo_refuses_a_folder_holding_a_users_files(tmp_path, capsys):
    out = tmp_path / "demo"
    (out / "labels").mkdir(parents=True)
    (out / "labels" / "drawn_by_hand.nii.gz").write_bytes(b"not ours")
    rc = main(["demo", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 3 and "it holds labels, which spectrack demo did not write" in err
    assert (out / "labels" / "drawn_by_hand.nii.gz").read_bytes() == b"not ours"


def test_output_folder_block_that_fails_leaves_the_old_set(tmp_path):
    out = tmp_path / "r"
    with output_folder(out, ("a.csv",)) as d:
        (d / "a.csv").write_text("old\n")
    with pytest.raises(RuntimeError), output_folder(out, ("a.csv",)) as d:
        (d / "a.csv").write_text("new\n")
        raise RuntimeError("worker died")
    assert (out / "a.csv").read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


# ---------------------------------------------------------------- killed at random points

def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "spectrack", *map(str, args)]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "plugins"), env.get("PYTHONPATH", "")])
    return env


def _kill_at(cmd, parent: Path, rng: random.Random, full_s: float, watch: str) -> None:
    """Start ``cmd``; kill its whole process group either at a random time or once its staging folder holds
    a random number of entries (the writing phase, where a mix would arise)."""
    p = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    t0 = time.monotonic()
    if rng.random() < 0.5:
        deadline, stage_entries = t0 + rng.uniform(0.2, 1.1) * full_s, None
    else:
        deadline, stage_entries = t0 + 3 * full_s, rng.randint(1, 8)
    while p.poll() is None and time.monotonic() < deadline:
        if stage_entries is not None:
            try:
                n = sum(sum(1 for _ in s.rglob("*")) for s in parent.rglob(f".tmp-{watch}*") if s.is_dir())
            except OSError:  # the staging folder was renamed while counting
                n = 0
            if n >= stage_entries:
                break
        time.sleep(0.003)
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
    p.wait()


def test_killed_quantify_leaves_the_complete_old_or_new_set(tmp_path, nifti_study):
    study, truth = _study(tmp_path, nifti_study)
    lab = read_label_map(study / "labels.nii.gz")
    swapped = tmp_path / "swapped_labels.nii.gz"  # the same regions under each other's names: other numbers
    write_label_map(LabelMap(lab.image, {1: lab.names[2], 2: lab.names[1]}), swapped)
    runs = {"a": ["--labels", study / "labels.nii.gz", "--no-report"],
            "b": ["--labels", swapped, "--report"]}
    refs = {}
    for k, extra in runs.items():  # reference sets, each written undisturbed
        t0 = time.monotonic()
        subprocess.run(_cli("quantify", study, "-o", tmp_path / f"ref_{k}", "-q", *extra), env=_env(), check=True,
                       stdout=subprocess.DEVNULL)
        refs[k] = (time.monotonic() - t0, _listing(tmp_path / f"ref_{k}"))
    assert refs["a"][1]["regions.csv"] != refs["b"][1]["regions.csv"]

    def variable(listing):  # study.json and the report record the time and command; the rest is identical
        return {k: (v if k not in ("study.json", "report.html") else "present") for k, v in listing.items()}

    out = tmp_path / "work" / "results"
    subprocess.run(_cli("quantify", study, "-o", out, "-q", *runs["a"]), env=_env(), check=True,
                   stdout=subprocess.DEVNULL)
    rng = random.Random(20261206)
    seen = set()
    for trial in range(8):
        k = "b" if trial % 2 == 0 else "a"
        _kill_at(_cli("quantify", study, "-o", out, "-q", *runs[k]), out.parent, rng, refs[k][0], "results")
        assert out.is_dir()  # never no folder at all: the old set stays until the new one takes its place
        now = _listing(out)
        match = [n for n, (_, ref) in refs.items() if variable(now) == variable(ref)]
        assert len(match) == 1, f"trial {trial}: a mix of two runs: {sorted(now)}"
        meta = json.loads((out / "study.json").read_text())
        assert meta["labels"]["names"] == json.loads((tmp_path / f"ref_{match[0]}" / "study.json").read_text())[
            "labels"]["names"]
        assert set(read_manifest(out)["entries"]) == {p.name for p in out.iterdir()} - {MANIFEST}
        if (out / "report.html").exists():
            assert (out / "report.html").read_text().rstrip().endswith("</html>")
        seen.add(match[0])
    subprocess.run(_cli("quantify", study, "-o", out, "-q", *runs["b"]), env=_env(), check=True,
                   stdout=subprocess.DEVNULL)
    assert variable(_listing(out)) == variable(refs["b"][1])
    assert sorted(p.name for p in out.parent.iterdir()) == ["results"]  # leftovers of killed runs tidied


def test_killed_batch_leaves_complete_study_results_and_cohort(tmp_path, nifti_study):
    root, out = tmp_path / "root", tmp_path / "out"
    for i in range(2):
        nifti_study(root / f"s{i}")
    cmd = _cli("batch", root, "-o", out, "--workers", "1", "--no-report")
    t0 = time.monotonic()
    subprocess.run(cmd, env=_env(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    full_s = time.monotonic() - t0
    ref = {f"s{i}": _sha(out / "studies" / f"s{i}" / "regions.csv") for i in range(2)}
    cohort_ref = pd.read_csv(out / "cohort.csv")
    rng = random.Random(7)
    for trial in range(3):
        _kill_at(cmd + ["--force"], out / "studies", rng, full_s, "s")
        for sid, h in ref.items():  # each study: its complete result (the old or the new, same numbers)
            folder = out / "studies" / sid
            assert _sha(folder / "regions.csv") == h, trial
            json.loads((folder / "study.json").read_text())
            entries = set(read_manifest(folder)["entries"])
            assert entries | {CACHE_FILE} >= {p.name for p in folder.iterdir()} - {MANIFEST}
            assert entries <= {p.name for p in folder.iterdir()}
        pd.testing.assert_frame_equal(pd.read_csv(out / "cohort.csv"), cohort_ref)
        json.loads((out / "batch.json").read_text())
