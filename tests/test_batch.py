"""Batch runs on Dask: same numbers as single runs, failure isolation, resume, manifests, cohort outputs."""

import base64
import csv
import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from spectrack.batch import find_label_map, read_manifest, run_batch, run_one
from spectrack.cli import main
from spectrack.pipeline import run_study

FRAC = ((0.3, 0.1), (0.2, 0.25), (0.05, 0.4))


def _frac(i):
    """Study-dependent fractions of the dose (brain, liver) at each time point."""
    return tuple((round(b * (1 + 0.05 * i), 6), round(li * (1 - 0.03 * i), 6)) for b, li in FRAC)


def _make_cohort(nifti_study, root, n):
    """``n`` studies s00.. with varied fractions and times; returns {study: truth}."""
    truth = {}
    for i in range(n):
        times = (0.5, 4.0, 26.0) if i % 4 else (1.0, 6.0, 24.0)
        folder = root / f"s{i:02d}"
        if i == 2:  # images and labels deeper in the study folder
            folder = folder / "day1" / "nifti"
        truth[f"s{i:02d}"] = nifti_study(folder, times_h=times, frac=_frac(i))
    return truth


def _corrupt(study_dir):
    f = study_dir / "tp1_spect.nii.gz"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])


def _stamp(p):
    st = Path(p).stat()
    return st.st_ino, st.st_mtime_ns


@pytest.fixture(scope="module")
def dask_address():
    """An existing Dask scheduler (two worker processes) for the --scheduler path."""
    from distributed import LocalCluster

    from spectrack.batch.run import QUIET_SCHEDULER

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR, **QUIET_SCHEDULER) as cluster:
        yield cluster.scheduler_address


def test_twelve_studies_one_corrupt_cli(tmp_path, capsys, nifti_study):
    root, out = tmp_path / "studies", tmp_path / "out"
    truth = _make_cohort(nifti_study, root, 12)
    _corrupt(root / "s07")
    rc = main(["batch", str(root), "-o", str(out), "--workers", "2"])
    cap = capsys.readouterr()
    assert rc == 7, cap.err
    assert "11 done, 0 skipped, 1 failed" in cap.out
    assert "s07" in cap.out and ("cannot read" in cap.out or "gzip stream" in cap.out)
    err_lines = [ln for ln in cap.err.splitlines() if "spectrack: error:" in ln]
    assert len(err_lines) == 1 and "1 of 12 studies failed" in err_lines[0]
    assert "Traceback" not in cap.err + cap.out

    fails = list(csv.DictReader(open(out / "failures.csv")))
    assert [f["study"] for f in fails] == ["s07"]
    assert "tp1_spect.nii.gz" in fails[0]["reason"] and "end-of-stream" in fails[0]["reason"]
    assert fails[0]["error_type"] == "InputError"
    log = (out / "logs" / "s07.log").read_text()
    assert "status: failed" in log and "tp1_spect.nii.gz" in log
    assert not (out / "studies" / "s07").exists()

    cohort = pd.read_csv(out / "cohort.csv")
    assert list(cohort.columns[:5]) == ["study", "species", "group", "dose_mg", "stale"]
    assert sorted(cohort["study"].unique()) == sorted(set(truth) - {"s07"})
    pq = pd.read_parquet(out / "cohort.parquet")
    assert len(pq) == len(cohort) and list(pq.columns) == list(cohort.columns)
    for sid, tr in truth.items():
        if sid == "s07":
            continue
        folder = root / sid
        single = run_study(folder, {"labels": str(find_label_map(folder))}, out_dir=tmp_path / "single" / sid)
        batch = pd.read_csv(out / "studies" / sid / "regions.csv")
        pd.testing.assert_frame_equal(batch, pd.read_csv(single.outputs["regions.csv"]))
        assert batch["pct_id"].tolist() == pd.read_csv(single.outputs["regions.csv"])["pct_id"].tolist()
        mine = cohort[cohort["study"] == sid]
        assert not mine["stale"].any()  # computed in this run
        mine = mine.drop(columns=["study", "species", "group", "dose_mg", "stale"])
        pd.testing.assert_frame_equal(mine.reset_index(drop=True), batch, check_dtype=False)
        for region in ("brain", "liver"):
            got = batch.loc[batch["region"] == region, "pct_id"].tolist()
            assert got == pytest.approx([t[region] for t in tr], rel=1e-5)
        meta = json.loads((out / "studies" / sid / "study.json").read_text())
        assert any(k.endswith("labels.nii.gz") for k in meta["provenance"]["inputs_sha256"])
        key = json.loads((out / "studies" / sid / "cache_key.json").read_text())
        assert any(k.endswith("labels.tsv") for k in key["inputs_sha256"])
        assert (out / "logs" / f"{sid}.log").read_text().count("status: done") == 1

    html = (out / "cohort_report.html").read_text()
    assert html.count("data:image/png;base64,") == 2
    png = html.split("data:image/png;base64,")[1].split("'")[0]
    assert base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "standard deviation" in html and "Mass balance" in html and "s07" in html
    assert (out / "figures" / "mean_pct_id.png").stat().st_size > 1000
    qc = pd.read_csv(out / "qc.csv").set_index("study")
    assert qc.loc["s07", "status"] == "failed"
    assert (qc.drop(index="s07")["mass_balance_pct"] < 1e-4).all()
    assert (qc.drop(index="s07")["missing_timepoints"] == 0).all()
    stats = pd.read_csv(out / "cohort_stats.csv")
    brain0 = stats[(stats["region"] == "brain") & (stats["timepoint"] == 0)].iloc[0]
    expect = [t[0]["brain"] for s, t in truth.items() if s != "s07"]
    assert brain0["n"] == 11
    assert brain0["pct_id_mean"] == pytest.approx(pd.Series(expect).mean(), rel=1e-5)
    assert brain0["pct_id_sd"] == pytest.approx(pd.Series(expect).std(), rel=1e-4)


def test_interrupt_then_resume_skips_finished(tmp_path, nifti_study, dask_address):
    root, out = tmp_path / "studies", tmp_path / "out"
    _make_cohort(nifti_study, root, 8)
    first = []

    def stop_after_three(outcome, n, total):
        if outcome is not None:
            first.append(outcome)
        if n == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(root, out, workers=2, progress=stop_after_three)  # embedded cluster, closed on interrupt
    assert [o.status for o in first] == ["done"] * 3
    finished = {o.study: _stamp(out / "studies" / o.study / "study.json") for o in first}
    assert not (out / "cohort.csv").exists()

    s = run_batch(root, out, scheduler=dask_address)
    assert {o.study for o in s.skipped} >= set(finished)
    assert len(s.done) + len(s.skipped) == 8 and not s.failed and len(s.done) >= 1
    for sid, stamp in finished.items():
        assert _stamp(out / "studies" / sid / "study.json") == stamp  # not recomputed
    assert sorted(pd.read_csv(out / "cohort.csv")["study"].unique()) == [f"s{i:02d}" for i in range(8)]
    assert not list((out / "studies").glob(".tmp-*"))

    s = run_batch(root, out, scheduler=dask_address)
    assert s.counts() == {"done": 0, "skipped": 8, "failed": 0}

    # a changed input file or changed settings recompute only what they touch
    (root / "s04" / "notes.txt").write_text("re-exported\n")
    s = run_batch(root, out, scheduler=dask_address)
    assert [o.study for o in s.done] == ["s04"] and len(s.skipped) == 7

    before = {f"s{i:02d}": _stamp(out / "studies" / f"s{i:02d}" / "study.json") for i in range(8)}
    s = run_batch(root, out, scheduler=dask_address, force=True)
    assert s.counts() == {"done": 8, "skipped": 0, "failed": 0}
    assert all(_stamp(out / "studies" / k / "study.json") != v for k, v in before.items())


def test_manifest_csv_overrides(tmp_path, nifti_study, dask_address):
    truth = {f"s{i}": nifti_study(tmp_path / "data" / f"s{i}", frac=_frac(i)) for i in range(3)}
    man = tmp_path / "lists" / "cohort.csv"
    man.parent.mkdir()
    man.write_text(
        "path,study,species,group,dose_mg,injected_mbq\n"
        "../data/s0,,rat,control,,300\n"
        f"{tmp_path / 'data' / 's1'},rat-b,rat,treated,1.5,\n"
        "../data/s2,,nhp,treated,2.5,\n")
    s = run_batch(None, tmp_path / "out", manifest=man, scheduler=dask_address)
    assert s.counts() == {"done": 3, "skipped": 0, "failed": 0}
    c = pd.read_csv(tmp_path / "out" / "cohort.csv")
    assert list(c["study"].unique()) == ["s0", "rat-b", "s2"]
    brain = c[c["region"] == "brain"]
    # 300 MBq given instead of the header's 150: half the %ID
    assert brain[brain["study"] == "s0"]["pct_id"].tolist() == pytest.approx([t["brain"] / 2 for t in truth["s0"]],
                                                                            rel=1e-5)
    assert brain[brain["study"] == "rat-b"]["pct_id"].tolist() == pytest.approx([t["brain"] for t in truth["s1"]],
                                                                               rel=1e-5)
    row = c[c["study"] == "rat-b"].iloc[0]
    assert (row["species"], row["group"], row["dose_mg"]) == ("rat", "treated", 1.5)
    assert pd.isna(c[c["study"] == "s0"]["dose_mg"]).all()
    pq = pd.read_parquet(tmp_path / "out" / "cohort.parquet")
    assert str(pq["species"].dtype) in ("string", "object") and pq["dose_mg"].dtype == "float64"
    stats = pd.read_csv(tmp_path / "out" / "cohort_stats.csv")
    assert set(stats["cohort"]) == {"rat / control", "rat / treated", "nhp / treated"}


def test_manifest_toml_with_config(tmp_path, nifti_study, dask_address):
    t0 = nifti_study(tmp_path / "a")
    t1 = nifti_study(tmp_path / "b", units="counts")  # needs the system sensitivity
    cfg = tmp_path / "all.toml"
    cfg.write_text("[spectrack]\ninjected_mbq = 300.0\n")
    man = tmp_path / "manifest.toml"
    man.write_text('[[studies]]\npath = "a"\ngroup = "g1"\n\n'
                   '[[studies]]\npath = "b"\nstudy = "B"\ninjected_mbq = 150\nsensitivity_cps_per_mbq = 80\n'
                   'calibration = "sensitivity"\n')
    rc = main(["batch", "--manifest", str(man), "--config", str(cfg), "-o", str(tmp_path / "out"),
               "--scheduler", dask_address, "--no-report"])
    assert rc == 0
    c = pd.read_csv(tmp_path / "out" / "cohort.csv")
    liver = c[c["region"] == "liver"]
    assert liver[liver["study"] == "a"]["pct_id"].tolist() == pytest.approx([t["liver"] / 2 for t in t0], rel=1e-5)
    assert liver[liver["study"] == "B"]["pct_id"].tolist() == pytest.approx([t["liver"] for t in t1], rel=1e-5)
    assert set(c.loc[c["study"] == "a", "group"]) == {"g1"}
    assert not (tmp_path / "out" / "cohort_report.html").exists()


@pytest.mark.parametrize("text,suffix,phrase", [
    ("path,injected_mbq\ns0,-5\n", ".csv", "injected_mbq must be positive"),
    ("path,injected_mbq\ns0,lots\n", ".csv", "bad value 'lots'"),
    ("path,frobnicate\ns0,1\n", ".csv", "unknown setting 'frobnicate'"),
    ("study,injected_mbq\nx,5\n", ".csv", "no path"),
    ("path,calibration\ns0,magic\n", ".csv", "calibration must be one of"),
    ("path,study\ns0,same\ns1,same\n", ".csv", "two studies are named 'same'"),
    ("path,study\ns0,a/b\n", ".csv", "letters, digits"),
    ('[[studies]]\npath = "s0"\ninjected_mbq = -1\n', ".toml", "studies[0]: injected_mbq must be positive"),
    ('[[studies]]\npath = "s0"\nspecies = "dog"\n', ".toml", "species must be one of"),
    ("[[studies]\n", ".toml", "not valid TOML"),
    ("path\ns0\n", ".xlsx", "use .csv, .tsv or .toml"),
])
def test_bad_manifest_one_line(tmp_path, capsys, text, suffix, phrase):
    man = tmp_path / f"m{suffix}"
    man.write_text(text)
    rc = main(["batch", "--manifest", str(man), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 3, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and phrase in lines[0], err
    assert not (tmp_path / "out").exists()  # validated before anything runs


def test_cli_usage_errors(tmp_path, capsys):
    assert main(["batch", "-o", str(tmp_path / "o")]) == 2
    assert main(["batch", str(tmp_path), "--manifest", str(tmp_path / "m.csv"), "-o", str(tmp_path / "o")]) == 2
    assert main(["batch", str(tmp_path / "nope"), "-o", str(tmp_path / "o")]) == 3
    assert "not a folder" in capsys.readouterr().err


def test_unexpected_error_is_isolated_and_logged(tmp_path, nifti_study, monkeypatch):
    nifti_study(tmp_path / "s")
    import spectrack.pipeline

    def boom(*a, **k):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(spectrack.pipeline, "run_study", boom)
    spec = {"study": "s", "path": str(tmp_path / "s"), "settings": {}}
    o = run_one(spec, str(tmp_path / "out"))
    assert o["status"] == "failed" and o["reason"] == "RuntimeError: boom second line" and o["exit_code"] == 1
    log = (tmp_path / "out" / "logs" / "s.log").read_text()
    assert "Traceback" in log and "RuntimeError" in log


def test_run_one_cache_key(tmp_path, nifti_study):
    nifti_study(tmp_path / "s")
    spec = {"study": "s", "path": str(tmp_path / "s"), "settings": {}}
    out = str(tmp_path / "out")
    assert run_one(spec, out)["status"] == "done"
    assert run_one(spec, out)["status"] == "skipped"
    assert run_one(spec, out, force=True)["status"] == "done"
    spec["settings"] = {"injected_mbq": 300.0}
    assert run_one(spec, out)["status"] == "done"
    assert run_one(spec, out)["status"] == "skipped"
    (tmp_path / "s" / ".DS_Store").write_text("x")  # hidden files are not inputs
    assert run_one(spec, out)["status"] == "skipped"


def test_labels_never_taken_for_images(tmp_path, nifti_study):
    nifti_study(tmp_path / "s")
    assert find_label_map(tmp_path / "s") == tmp_path / "s" / "labels.nii.gz"
    from spectrack.load import load_study

    st = load_study(tmp_path / "s")
    assert len(st.timepoints) == 3
    assert all(not Path(f).name.startswith("labels") for tp in st.timepoints for f in tp.emission.files)
    empty = tmp_path / "e"
    empty.mkdir()
    assert find_label_map(empty) is None
    # two label maps, none named labels: ambiguous, said clearly
    from spectrack.errors import LabelError

    data = (tmp_path / "s" / "labels.nii.gz").read_bytes()
    for name in ("body_mask.nii.gz", "organs_dseg.nii.gz"):
        (empty / name).write_bytes(data)
    with pytest.raises(LabelError, match="2 label maps"):
        find_label_map(empty)


def test_manifest_relative_labels(tmp_path, nifti_study):
    nifti_study(tmp_path / "s")
    man = tmp_path / "m.csv"
    man.write_text("path,labels,times_h\ns,s/labels.nii.gz,0.5;4;26\n")
    (st,) = read_manifest(man)
    assert st.path == tmp_path / "s" and st.settings.labels == str(tmp_path / "s" / "labels.nii.gz")
    assert st.settings.times_h == [0.5, 4.0, 26.0]


# ---------------------------------------------------------------- the study options of quantify, from the CLI

def test_cli_batch_takes_the_study_options_on_a_given_scheduler(tmp_path, capsys, nifti_study, dask_address):
    """Count images need --sensitivity; the per-study --labels pattern; --injected-mbq halves %ID."""
    root = tmp_path / "root"
    truth = {f"c{i}": nifti_study(root / f"c{i}" / "img", units="counts", frac=_frac(i)) for i in range(2)}
    for i in range(2):  # label maps beside the images, named so that only the pattern finds them
        for ext in (".nii.gz", ".tsv"):
            (root / f"c{i}" / "img" / f"labels{ext}").rename(root / f"c{i}" / f"regions_c{i}{ext}")
    (tmp_path / "cfg.toml").write_text("sensitivity = 80\n")  # the option's name is the key
    out = tmp_path / "out"
    rc = main(["batch", str(root), "-o", str(out), "--scheduler", dask_address, "--config", str(tmp_path / "cfg.toml"),
               "--labels", "{study}/regions_{name}.nii.gz", "--injected-mbq", "300", "--no-report",
               "--uncertainty-draws", "0", "--species", "rat", "--group", "g1"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    c = pd.read_csv(out / "cohort.csv")
    for sid, tr in truth.items():
        liver = c[(c["study"] == sid) & (c["region"] == "liver")]
        assert liver["pct_id"].tolist() == pytest.approx([t["liver"] / 2 for t in tr], rel=1e-5)
        meta = json.loads((out / "studies" / sid / "study.json").read_text())
        assert meta["provenance"]["parameters"]["labels"] == str(root / sid / f"regions_{sid}.nii.gz")
        assert meta["provenance"]["parameters"]["sensitivity_cps_per_mbq"] == 80.0
    assert set(c["species"]) == {"rat"} and set(c["group"]) == {"g1"}
    assert not (out / "cohort_report.html").exists() and not (out / "studies" / "c0" / "report.html").exists()

    # a pattern that matches nothing fails that study only, with the reason
    (root / "c1" / "regions_c1.nii.gz").rename(root / "c1" / "other.nii.gz")
    rc = main(["batch", str(root), "-o", str(out), "--scheduler", dask_address, "--sensitivity", "80",
               "--labels", "{study}/regions_*.nii.gz", "--no-report", "--uncertainty-draws", "0"])
    cap = capsys.readouterr()
    assert rc == 7
    assert "failed c1: --labels {study}/regions_*.nii.gz: no file matches it in " + str(root / "c1") in cap.out
    cohort = pd.read_csv(out / "cohort.csv")
    assert sorted(cohort["study"].unique()) == ["c0", "c1"]  # c1's last good result is kept ...
    assert cohort.groupby("study")["stale"].all().to_dict() == {"c0": False, "c1": True}  # ... marked stale
    assert "kept the earlier result of 1 failed study (c1): marked stale" in cap.out
    assert set(pd.read_csv(out / "cohort_stats.csv")["n"]) == {1}  # the statistics leave it out


def test_cli_batch_bad_option_is_usage_error(tmp_path, capsys, nifti_study):
    nifti_study(tmp_path / "root" / "s0")
    rc = main(["batch", str(tmp_path / "root"), "-o", str(tmp_path / "out"), "--sensitivity", "0"])
    assert rc == 2 and "'--sensitivity': must be positive" in capsys.readouterr().err
    rc = main(["batch", str(tmp_path / "root"), "-o", str(tmp_path / "out"), "--labels", str(tmp_path / "nope.nii")])
    err = capsys.readouterr().err
    assert rc == 3 and "nope.nii (study s0) does not exist" in err
    assert not (tmp_path / "out").exists()


def test_every_study_failed_says_so_and_keeps_the_earlier_results_stale(tmp_path, capsys, nifti_study,
                                                                       dask_address):
    root, out = tmp_path / "root", tmp_path / "out"
    for i in range(2):
        nifti_study(root / f"s{i}")
    assert main(["batch", str(root), "-o", str(out), "--scheduler", dask_address]) == 0  # a good first run
    capsys.readouterr()
    assert (out / "cohort.csv").exists() and (out / "cohort_report.html").exists()
    for i in range(2):
        _corrupt(root / f"s{i}")
    rc = main(["batch", str(root), "-o", str(out), "--scheduler", dask_address])
    cap = capsys.readouterr()
    assert rc == 7
    assert "2 studies: 0 done, 0 skipped, 2 failed" in cap.out
    assert "nothing succeeded: all 2 studies failed, so no new cohort was computed" in cap.out
    (line,) = [ln for ln in cap.err.splitlines() if "spectrack: error:" in ln]
    assert "all 2 studies failed, nothing was quantified" in line
    # the first run's results are kept whole (never deleted by a failed re-run), marked stale
    for i in range(2):
        assert (out / "studies" / f"s{i}" / "regions.csv").is_file() and (out / "studies" / f"s{i}" / "study.json").is_file()
    cohort = pd.read_csv(out / "cohort.csv")
    assert sorted(cohort["study"].unique()) == ["s0", "s1"] and cohort["stale"].all()
    assert pd.read_csv(out / "cohort_stats.csv").empty  # no fresh result: no statistics
    assert not (out / "figures" / "mean_pct_id.png").exists()
    assert sorted(p.name for p in (out / "studies").iterdir()) == ["s0", "s1"]  # no temporary folder left
    assert [f["study"] for f in csv.DictReader(open(out / "failures.csv"))] == ["s0", "s1"]
    assert json.loads((out / "batch.json").read_text())["counts"] == {"done": 0, "skipped": 0, "failed": 2}


def _sample_study_copy(dest, *, broken=False):
    """The bundled sample as a self-describing study folder: its study file, DICOM export and label map
    (``broken``: without the SPECTs)."""
    import shutil

    import pydicom

    from spectrack.phantom.sample import sample_study

    info = sample_study()
    shutil.copytree(info["path"], dest / "dicom")
    for name in ("spectrack.toml", "labels.nii.gz", "labels.tsv", "removed.csv"):
        shutil.copy(info["study"] / name, dest / name)
    if broken:
        for f in (dest / "dicom").iterdir():
            if pydicom.dcmread(f, stop_before_pixels=True).Modality == "NM":
                f.unlink()
    return json.loads(Path(info["truth"]).read_text())


def _readme_batch_command() -> list[str]:
    """The README's first batch command (one study per subfolder of ROOT), as written."""
    import re
    import shlex

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    lines = [ln for ln in readme.splitlines() if re.match(r"^spectrack batch ROOT -o OUT\b", ln)]
    assert lines, "the README shows no 'spectrack batch ROOT -o OUT ...' command"
    return shlex.split(lines[0], comments=True)


def test_readme_batch_on_sample_studies_without_a_terminal(tmp_path, capsys):
    """The README's command on three sample studies (one broken): local cluster, log lines, quantify's numbers."""
    import os
    import re
    import subprocess
    import sys

    root, out = tmp_path / "ROOT", tmp_path / "OUT"
    truth = _sample_study_copy(root / "nhp_a")
    _sample_study_copy(root / "nhp_b")
    _sample_study_copy(root / "nhp_broken", broken=True)
    repo = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "FORCE_TERMINAL")}
    env["PYTHONPATH"] = os.pathsep.join([str(repo), str(repo / "plugins"), env.get("PYTHONPATH", "")])
    cmd = _readme_batch_command()
    assert cmd[:2] == ["spectrack", "batch"] and "--workers" in cmd
    args = [{"ROOT": str(root), "OUT": str(out)}.get(a, a) for a in cmd[2:]]
    r = subprocess.run([sys.executable, "-m", "spectrack", "batch", *args], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 7, r.stderr
    assert "3 studies: 2 done, 0 skipped, 1 failed" in r.stdout
    assert re.search(r"failed nhp_broken: .*no (SPECT|emission)", r.stdout, re.I), r.stdout
    log = [ln.split(" spectrack: ", 1)[1] for ln in r.stderr.splitlines()
           if re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d spectrack: ", ln)]
    assert log[0] == "batch: 3 studies"
    assert log[1] == "batch: starting a local Dask cluster of 2 worker process(es)"
    done = [ln for ln in log if re.match(r"batch: \[\d/3\] ", ln)]
    assert sorted(int(ln[8]) for ln in done) == [1, 2, 3]
    assert sum(bool(re.match(r"batch: \[\d/3\] nhp_[ab]: done in \d+\.\d s ", ln)) for ln in done) == 2
    assert sum("nhp_broken: failed: " in ln for ln in done) == 1
    assert all(re.search(r"\(\d+\.\d s elapsed\)$", ln) for ln in done)
    assert log[-2] == "batch: writing the cohort outputs"
    assert re.match(r"batch: finished \(\d+\.\d s elapsed\)$", log[-1])
    assert "━" not in r.stderr
    failures = list(csv.DictReader(open(out / "failures.csv")))
    assert [f["study"] for f in failures] == ["nhp_broken"]

    rc = main(["quantify", str(root / "nhp_a"), "-o", str(tmp_path / "single"), "-q"])  # its study file
    assert rc == 0, capsys.readouterr().err
    single = pd.read_csv(tmp_path / "single" / "regions.csv")
    for sid in ("nhp_a", "nhp_b"):
        got = pd.read_csv(out / "studies" / sid / "regions.csv")
        pd.testing.assert_frame_equal(got, single)
        rec = json.loads((out / "studies" / sid / "study.json").read_text())["study_file"]
        assert rec["path"] == str((root / sid / "spectrack.toml").resolve())
        assert rec["used"] == ["calibration", "labels", "removed", "sensitivity_cps_per_mbq", "species"]
        for tp in truth["timepoints"]:
            for name, reg in tp["regions"].items():
                row = got[(got["timepoint"] == tp["index"]) & (got["region"] == name)]
                assert row["pct_id"].item() == pytest.approx(reg["pct_id"], rel=1e-3), (sid, name)
    assert (out / "cohort_report.html").exists()
    assert sorted(pd.read_csv(out / "cohort.csv")["study"].unique()) == ["nhp_a", "nhp_b"]


def test_cohort_qc_flags_each_study_against_its_own_mass_balance_threshold(tmp_path, nifti_study):
    """Two identical studies, one with a threshold far below its unaccounted %ID: only that one is flagged,
    and qc.csv records each study's threshold (read from its study.json)."""
    for i in range(2):
        nifti_study(tmp_path / "data" / f"s{i}")
    man = tmp_path / "cohort.csv"
    man.write_text("path,study,mass_balance_threshold_pct_id\ndata/s0,strict,0.0\ndata/s1,loose,100\n")
    s = run_batch(None, tmp_path / "out", manifest=man)
    assert s.counts()["done"] == 2
    qc = pd.read_csv(tmp_path / "out" / "qc.csv").set_index("study")
    assert qc.loc["strict", "unaccounted_threshold_pct_id"] == 0.0
    assert qc.loc["loose", "unaccounted_threshold_pct_id"] == 100.0
    un = qc["unaccounted_pct_id"]
    assert un.loc["strict"] == pytest.approx(un.loc["loose"]) and abs(un.loc["strict"]) > 0  # same data
    html = (tmp_path / "out" / "cohort_report.html").read_text()
    qc_html = html.split("Quality control per study")[1].split("</table>")[0]
    rows = {r.split("<td>")[1].split("</td>")[0]: r for r in qc_html.split("<tr")[2:]}
    assert 'class="flag"' in rows["strict"] and 'class="flag"' not in rows["loose"]
