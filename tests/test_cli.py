"""The command line, called in-process and as ``python -m spectrack``: outputs, one-line errors, exit codes,
shared study options, progress without a terminal, text printed as written."""

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

S_CPS = 80.0  # cps/MBq: the sensitivity tests/conftest.py makes count images with
from spectrack.cli import _warn, main

ROOT = Path(__file__).resolve().parents[1]
#: a progress log line (stderr, no terminal): "2026-03-14 21:40:00 spectrack: ..."
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d spectrack: ")


def _run(capsys, args):
    rc = main(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def _messages(err):
    """stderr lines that are not progress log lines."""
    return [ln for ln in err.strip().splitlines() if ln.strip() and not LOG_LINE.match(ln)]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "plugins"), env.get("PYTHONPATH", "")])
    for k in ("FORCE_COLOR", "FORCE_TERMINAL", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(k, None)
    env["COLUMNS"] = "200"
    return env


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


def test_info_one_line_per_timepoint(tmp_path, capsys, nifti_study):
    truth = nifti_study(tmp_path)  # scans 0.5, 4 and 26 h after injection, 150 MBq, Bq/mL not decay-corrected
    rc, out, err = _run(capsys, ["info", str(tmp_path), "--json"])
    assert rc == 0, err
    d = json.loads(out)
    assert len(d["timepoints"]) == 3
    m = d["timepoints"][0]["emission"]["meta"]
    assert m["injected_activity_mbq"]["value"] == 150.0
    assert "InjectedRadioactivity" in m["injected_activity_mbq"]["source"]
    assert "scans.tsv" in m["acquisition_start"]["source"]

    rc, out, err = _run(capsys, ["info", str(tmp_path)])
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert len(lines) <= 3 + 4, out  # subject line, column names, one line per time point, the --verbose hint
    rows = [ln.split() for ln in lines if re.match(r"^\d+\s", ln)]
    assert [r[0] for r in rows] == ["0", "1", "2"]
    for r, t in zip(rows, truth):
        assert f"{t['time_h']:+.2f}" in r  # hours after injection
        assert "NM" in r and "Bq/mL" in r and "NONE" in r and "150" in r and "Tc-99m" in r
        assert "14x12x10" in r and "3x3x4" in r  # the fixture's grid (i, j, k) and spacing (mm)
    assert "InjectedRadioactivity" not in out  # the tag tables only with --verbose

    rc, out, err = _run(capsys, ["info", str(tmp_path), "--verbose"])
    assert rc == 0 and "InjectedRadioactivity" in out and "scans.tsv" in out


@pytest.mark.parametrize("args,code,phrase", [
    (["quantify", "/no/such/folder"], 3, "does not exist"),
    (["quantify", "{s}", "--labels", "{s}/labels.nii.gz", "--injection-time", "yesterday"], 2, "ISO 8601"),
    (["quantify", "{s}", "--labels", "{s}/labels.nii.gz", "--injection-time", "2026-03-15T12:00"], 5,
     "before the injection"),
    (["quantify", "{s}", "--labels", "{s}/labels.nii.gz", "--duration-s", "0"], 2, "'--duration-s': must be positive"),
    (["quantify", "{s}"], 6, "--labels"),
    (["quantify", "{s}", "--calibration", "magic"], 2, "'--calibration': must be one of auto, image"),
    (["quantify", "{s}", "--sensitivity", "-3"], 2, "'--sensitivity': must be positive"),
    (["quantify", "{s}", "--canal-boundaries-mm", "10,20"], 2, "needs 3 distances"),
    (["quantify", "{s}", "--species", "mouse"], 2, "'--species': must be one of rat, nhp, human"),
    (["quantify", "{s}", "--auto-regions", "mouse"], 2, "'--auto-regions': must be one of rat, nhp, human"),
    (["quantify", "{s}", "--frobnicate"], 2, "No such option"),
    (["quantify", "{s}", "--labels", "*.nii.gz"], 6, "4 files match"),
    (["quantify", "{s}", "--labels", "{study}/nope_*.nii.gz"], 6, "no file matches"),
    (["batch", "{s}", "--workers", "0"], 2, "--workers"),
    (["phantom", "{s}/../out", "--preset", "mouse"], 2, "'--preset': must be one of rat, nhp, human"),
])
def test_bad_input_one_line_and_exit_code(tmp_path, capsys, nifti_study, args, code, phrase):
    nifti_study(tmp_path / "s")
    args = [a.replace("{s}", str(tmp_path / "s")) for a in args]
    args += ["-o", str(tmp_path / "out")] if args[0] != "phantom" else []
    rc, out, err = _run(capsys, args)
    assert rc == code, (rc, err)
    assert phrase in err
    assert "Traceback" not in err + out
    if code != 2:
        assert len(_messages(err)) == 1, err
    else:
        assert not (tmp_path / "out").exists()  # refused before anything ran


def test_missing_tag_names_option(tmp_path, capsys, nifti_study):
    nifti_study(tmp_path, units="counts")
    rc, out, err = _run(capsys, ["quantify", str(tmp_path), "--labels", str(tmp_path / "labels.nii.gz"),
                                 "-o", str(tmp_path / "o")])
    assert rc == 4 and "--sensitivity" in err


def test_config_keys_are_the_option_names(tmp_path, capsys, nifti_study):
    """``sensitivity = 80`` in a settings file is ``--sensitivity 80``; the field name works too."""
    truth = nifti_study(tmp_path / "s", units="counts")  # counts made with S = 80 cps/MBq
    s = str(tmp_path / "s")
    results = {}
    for name, args, cfg in [
        ("option", ["--sensitivity", str(S_CPS)], None),
        ("key", [], f"sensitivity = {S_CPS}\nlabels = \"s/labels.nii.gz\"\n"),
        ("field", [], f"[spectrack]\nsensitivity_cps_per_mbq = {S_CPS}\n"),
        ("override", ["--sensitivity", str(S_CPS)], "sensitivity = 1.0\n"),  # the command line wins
    ]:
        extra = []
        if cfg is not None:
            (tmp_path / f"{name}.toml").write_text(cfg)
            extra = ["--config", str(tmp_path / f"{name}.toml")]
        if "labels" not in (cfg or ""):
            extra += ["--labels", "{study}/labels.nii.gz"]
        rc, out, err = _run(capsys, ["quantify", s, "-o", str(tmp_path / name), "--no-report",
                                     "--uncertainty-draws", "0", "-q"] + args + extra)
        assert rc == 0, (name, err)
        rows = list(csv.DictReader(open(tmp_path / name / "regions.csv")))
        results[name] = [float(r["pct_id"]) for r in rows if r["region"] == "liver"]
        assert results[name] == pytest.approx([t["liver"] for t in truth], rel=1e-5), name
        meta = json.loads((tmp_path / name / "study.json").read_text())
        assert meta["provenance"]["parameters"]["sensitivity_cps_per_mbq"] == S_CPS


@pytest.mark.parametrize("text,phrase", [
    ("sensitvity = 80\n", "unknown setting 'sensitvity'; did you mean 'sensitivity'?"),
    ("sensitivity = 80\nsensitivity_cps_per_mbq = 80\n", "are the same setting"),
    ("sensitivity = -1\n", "sensitivity must be positive"),
    ("species = \"mouse\"\n", "species must be one of rat, nhp, human"),
])
def test_bad_config_file_exit_3(tmp_path, capsys, nifti_study, text, phrase):
    nifti_study(tmp_path / "s")
    (tmp_path / "c.toml").write_text(text)
    rc, out, err = _run(capsys, ["quantify", str(tmp_path / "s"), "--config", str(tmp_path / "c.toml"),
                                 "-o", str(tmp_path / "o")])
    assert rc == 3, err
    (line,) = _messages(err)
    assert phrase in line and "c.toml" in line


def test_labels_pattern_per_study(tmp_path, capsys, nifti_study):
    truth = nifti_study(tmp_path / "rat01")
    for pattern in ("{study}/labels.nii.gz", "lab*.nii.gz", "**/labels.nii.gz",
                    str(tmp_path / "{name}" / "labels.nii.gz")):
        rc, out, err = _run(capsys, ["quantify", str(tmp_path / "rat01"), "--labels", pattern, "-q", "--no-report",
                                     "--uncertainty-draws", "0", "-o", str(tmp_path / "o")])
        assert rc == 0, (pattern, err)
        meta = json.loads((tmp_path / "o" / "study.json").read_text())
        assert meta["provenance"]["parameters"]["labels"] == str((tmp_path / "rat01" / "labels.nii.gz").resolve())
        rows = list(csv.DictReader(open(tmp_path / "o" / "regions.csv")))
        assert [float(r["pct_id"]) for r in rows if r["region"] == "brain"] == \
            pytest.approx([t["brain"] for t in truth], rel=1e-5)


def test_help_shows_defaults(capsys):
    rc, out, _ = _run(capsys, ["quantify", "--help"])
    assert rc == 0
    flat = " ".join(out.split())
    from spectrack.settings import Settings

    d = Settings()
    for opt, shown in [("--calibration-cv", d.calibration_cv), ("--uncertainty-draws", d.uncertainty_draws),
                       ("--calibration", d.calibration), ("--label-resampling", d.label_resampling),
                       ("--pvc / --no-pvc", "no-pvc"), ("--report / --no-report", "report"),
                       ("--out", "results")]:
        seg = flat.split(opt + " ", 1)[1].split(" --", 1)[0]
        assert re.search(rf"\[default: \(?{re.escape(str(shown))}\)?\]", seg), (opt, seg)
    rc, out, _ = _run(capsys, ["batch", "--help"])
    flat = " ".join(out.split())
    for opt in ("--labels", "--sensitivity", "--auto-regions", "--calibration", "--species", "--pvc", "--config"):
        assert f" {opt} " in flat, opt  # the study options of quantify
    assert " --subject " not in flat


def test_batch_and_quantify_share_one_option_set():
    import typer

    from spectrack.cli import app
    from spectrack.settings import Settings

    cmd = typer.main.get_command(app)
    opts = {name: {o for p in c.params for o in p.opts} for name, c in cmd.commands.items()}
    fields = {f.name for f in __import__("dataclasses").fields(Settings)} - {"extra"}
    from spectrack.settings import option_name

    flags = {option_name(f) for f in fields}
    assert flags <= opts["quantify"]
    assert flags - {"--subject"} <= opts["batch"]


def test_python_dash_m_and_version():
    from spectrack import __version__

    r = subprocess.run([sys.executable, "-m", "spectrack", "--version"], capture_output=True, text=True,
                       env=_env(), timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == f"spectrack {__version__}"
    r = subprocess.run([sys.executable, "-m", "spectrack", "quantify", "--calibration", "magic", "x"],
                       capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode == 2 and "must be one of" in r.stderr


def test_species_and_auto_regions_agree():
    """Every preset that --species accepts exists for automatic regions, the phantom and the PSF default."""
    from spectrack.kinetics.recovery import FWHM_PRESETS_MM
    from spectrack.phantom.presets import PRESETS as PHANTOM_PRESETS
    from spectrack.regions.auto.ct import PRESETS as AUTO_PRESETS
    from spectrack.settings import SPECIES, settings_from_mapping

    assert set(SPECIES) == set(AUTO_PRESETS) == set(FWHM_PRESETS_MM) == set(PHANTOM_PRESETS)
    for s in SPECIES:
        settings_from_mapping({"species": s, "auto_regions": s})


def test_progress_without_terminal_logs_each_stage(tmp_path, nifti_study):
    nifti_study(tmp_path / "s")
    r = subprocess.run([sys.executable, "-m", "spectrack", "quantify", str(tmp_path / "s"), "-q",
                        "--labels", str(tmp_path / "s" / "labels.nii.gz"), "-o", str(tmp_path / "o")],
                       capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    logged = [ln for ln in r.stderr.splitlines() if LOG_LINE.match(ln)]
    stages = [re.match(r".*spectrack: s: (\w+) \((\d+\.\d) s elapsed\)$", ln) for ln in logged]
    assert all(stages), logged
    assert [m.group(1) for m in stages] == ["load", "regions", "align", "quantify", "kinetics", "report", "finished"]
    elapsed = [float(m.group(2)) for m in stages]
    assert elapsed == sorted(elapsed) and elapsed[0] < elapsed[-1]
    assert "━" not in r.stderr and "\r" not in r.stderr  # no progress bar


def test_progress_on_a_terminal_is_a_bar(tmp_path, nifti_study):
    pty = pytest.importorskip("pty")
    nifti_study(tmp_path / "s")
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "spectrack", "quantify", str(tmp_path / "s"), "-q",
                          "--labels", str(tmp_path / "s" / "labels.nii.gz"), "-o", str(tmp_path / "o")],
                         stdin=slave, stdout=subprocess.DEVNULL, stderr=slave, env=_env())
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert p.wait(timeout=300) == 0
    os.close(master)
    text = b"".join(chunks).decode("utf-8", "replace")
    assert "━" in text  # rich's bar
    assert not any(LOG_LINE.match(ln) for ln in text.replace("\r", "\n").splitlines())


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


# ---------------------------------------------------------------- text from users and files is printed as written

def test_error_text_with_brackets_printed_as_written(tmp_path, capsys, nifti_study, monkeypatch):
    # a closing tag that matches nothing used to crash rich with a traceback
    bad = tmp_path / "a[" / "x]b"
    rc, out, err = _run(capsys, ["quantify", str(bad), "-o", str(tmp_path / "o")])
    assert rc == 3 and str(bad) in err and "Traceback" not in err, err
    bad = tmp_path / "scan[old]"
    rc, out, err = _run(capsys, ["info", str(bad)])
    assert rc == 3 and f"{bad} does not exist" in err, err
    bad = tmp_path / "p[/x]q"  # "[/x]" in a file name (a folder 'p[' holding 'x]q')
    rc, out, err = _run(capsys, ["info", str(bad)])
    assert rc == 3 and "p[/x]q" in err and "Traceback" not in err, err
    # the message of a missing dependency names the extra in brackets
    nifti_study(tmp_path / "root" / "s0")
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    rc, out, err = _run(capsys, ["batch", str(tmp_path / "root"), "-o", str(tmp_path / "out")])
    assert rc == 3 and "pip install 'dask[distributed]'" in err, err


def test_warnings_and_tables_printed_as_written(tmp_path, capsys, nifti_study):
    import nibabel as nib

    from spectrack.geometry import Image
    from spectrack.regions.formats.nifti import read_label_map, write_label_map
    from spectrack.regions.labelmap import LabelMap

    truth = nifti_study(tmp_path / "s")
    lm = read_label_map(tmp_path / "s" / "labels.nii.gz")
    # the label map reaches 10 voxels beyond the SPECT along i; region 3 lies only there
    arr = np.pad(lm.image.array, ((0, 0), (0, 0), (0, 10)))
    arr[2:4, 2:4, -4:-1] = 3
    img = Image(arr, origin_mm=lm.image.origin_mm, spacing_mm=lm.image.spacing_mm, direction=lm.image.direction)
    write_label_map(LabelMap(img, {1: "brain[a]", 2: "scan[old]", 3: "[/x]outside"}), tmp_path / "lab.nii.gz")
    assert nib.load(tmp_path / "lab.nii.gz").shape[0] == lm.image.shape_ijk[0] + 10
    rc, out, err = _run(capsys, ["quantify", str(tmp_path / "s"), "--labels", str(tmp_path / "lab.nii.gz"),
                                 "--no-report", "--uncertainty-draws", "0", "-o", str(tmp_path / "o")])
    assert rc == 0, err
    assert "brain[a]" in out and "scan[old]" in out  # table cells
    assert "region [/x]outside has no voxel on the" in err  # a warning, the name printed as written
    rows = list(csv.DictReader(open(tmp_path / "o" / "regions.csv")))
    assert [float(r["pct_id"]) for r in rows if r["region"] == "scan[old]"] == \
        pytest.approx([t["liver"] for t in truth], rel=1e-5)

    _warn(["pip install 'spectrack[batch]'"])
    assert "pip install 'spectrack[batch]'" in capsys.readouterr().err


# ---------------------------------------------------------------- README

def _readme_columns():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("Columns of `regions.csv`", 1)[1].split("\n\n", 2)[1]
    names = set()
    for line in block.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            names |= set(re.findall(r"`([a-z0-9_]+)`", line.split("|")[1]))
    return names


def test_readme_lists_every_regions_csv_column(tmp_path, capsys, nifti_study):
    nifti_study(tmp_path / "s")
    header = set()
    for n, extra in enumerate([[], ["--pvc", "--psf-fwhm-mm", "6", "--species", "rat", "--group", "g1",
                                    "--dose-mg", "5"]]):
        rc, out, err = _run(capsys, ["quantify", str(tmp_path / "s"), "--labels", "{study}/labels.nii.gz", "-q",
                                     "--no-report", "-o", str(tmp_path / f"o{n}")] + extra)
        assert rc == 0, err
        with open(tmp_path / f"o{n}" / "regions.csv") as f:
            header |= set(next(csv.reader(f)))
    documented = _readme_columns()
    assert header - documented == set(), "columns written but not in the README table"
    assert documented - header == set(), "README lists columns that are not written"


@pytest.mark.parametrize("args", [
    ["quantify", "x", "--species", "mouse"],
    ["quantify", "x", "--auto-regions", "mouse"],
    ["batch", "x", "-o", "out", "--species", "mouse"],
    ["batch", "x", "-o", "out", "--auto-regions", "mouse"],
    ["phantom", "out", "--preset", "mouse"],
])
def test_a_species_that_does_not_exist_is_refused_alike(capsys, args):
    """--species, --auto-regions (quantify and batch) and the phantom's --preset refuse one same way (exit 2)."""
    rc, out, err = _run(capsys, args)
    assert rc == 2
    flag = args[-2]
    assert f"Invalid value for '{flag}': must be one of rat, nhp, human, got 'mouse'" in err


@pytest.mark.parametrize("key", ["species", "auto_regions"])
def test_a_species_that_does_not_exist_in_a_study_file(tmp_path, capsys, nifti_study, key):
    """The same words from a study file (a bad input file: exit 3, one line naming the file)."""
    nifti_study(tmp_path / "s")
    (tmp_path / "s" / "spectrack.toml").write_text(f'labels = "labels.nii.gz"\n{key} = "mouse"\n')
    rc, out, err = _run(capsys, ["quantify", str(tmp_path / "s"), "-q", "--no-report", "-o", str(tmp_path / "o")])
    assert rc == 3
    (line,) = [ln for ln in err.splitlines() if "error" in ln]
    assert "spectrack.toml" in line and f"{key} must be one of rat, nhp, human, got 'mouse'" in line, line


def test_phantom_command_vertebrae_and_intracranial_csf(tmp_path, capsys):
    """spectrack phantom --vertebrae discrete --intracranial-csf writes what make_study(vertebrae=...,
    intracranial_csf=...) does: the truth records both, the label map names csf_intracranial, and the study
    quantifies to the truth's %ID for it and for brain; automatic regions cut the canal at the vertebrae."""
    out = tmp_path / "ph"
    assert main(["phantom", str(out), "--preset", "rat", "--vertebrae", "discrete", "--intracranial-csf"]) == 0
    truth = json.loads((out / "truth.json").read_text())
    assert truth["geometry"]["vertebrae"]["mode"] == "discrete" and "intracranial_csf" in truth["geometry"]
    assert "csf_intracranial" in (out / "labels.tsv").read_text().split()
    assert main(["quantify", str(out), "-o", str(tmp_path / "q"), "--no-report", "--uncertainty-draws", "0",
                 "--kinetics-draws", "0", "-q"]) == 0
    table = pd.read_csv(tmp_path / "q" / "regions.csv")
    for tp in truth["timepoints"]:
        for region in ("brain", "csf_intracranial"):
            got = table.query("timepoint == @tp['index'] and region == @region").pct_id.item()
            assert got == pytest.approx(tp["regions"][region]["pct_id"], rel=1e-4, abs=1e-6), (tp["index"], region)
    assert main(["quantify", str(out), "-o", str(tmp_path / "auto"), "--auto-regions", "rat", "--no-report",
                 "--uncertainty-draws", "0", "--kinetics-draws", "0", "-q"]) == 0
    warnings = json.loads((tmp_path / "auto" / "study.json").read_text())["warnings"]
    assert not [w for w in warnings if "vertebra" in w and "fraction" in w], warnings
    assert main(["phantom", str(tmp_path / "bad"), "--vertebrae", "lumpy"]) == 2
    assert "--vertebrae" in capsys.readouterr().err


def test_phantom_command_defaults_are_unchanged(tmp_path):
    """Without the new options the phantom is the default one: same truth as make_study's defaults."""
    from spectrack.phantom import make_study

    assert main(["phantom", str(tmp_path / "cli"), "--preset", "rat", "--seed", "4"]) == 0
    ref = make_study(tmp_path / "api", preset="rat", seed=4, study_file=True)
    cli = json.loads((tmp_path / "cli" / "truth.json").read_text())
    assert "vertebrae" not in cli["geometry"] and "intracranial_csf" not in cli["geometry"]
    assert [t["regions"] for t in cli["timepoints"]] == [t["regions"] for t in ref["timepoints"]]
