"""Fuzzed option values, settings-file values and output paths (hypothesis).

The property: every value of every numeric or choice option of ``quantify`` is either refused with one
line before anything is read (exit 2 for an option, 3 for a settings file), or accepted as a finite value
inside its documented range; ``-o`` pointing at a file, under a file, or into a folder that cannot be
written is refused before the study is loaded (exit 3, "cannot write to OUT"). Never a traceback, never a
silently accepted impossible value. A study path that does not exist is given, so an accepted value ends
in that one error line (exit 3) without running the pipeline: the cases are cheap.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spectrack.cli import main
from spectrack.errors import InputError
from spectrack.settings import _FIELDS, _RANGES, Settings, option_name, settings_from_mapping

N_EXAMPLES = int(os.environ.get("SPECTRACK_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=N_EXAMPLES, deadline=None, derandomize=not os.environ.get("SPECTRACK_FUZZ_RANDOM"),
                database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

NUMERIC = sorted(k for k, f in _FIELDS.items() if ("float" in str(f.type) or str(f.type) == "int")
                 and k not in ("times_h", "canal_boundaries_mm"))
NASTY = ["nan", "NaN", "inf", "-inf", "+inf", "-1", "-0", "0", "1e308", "1e309", "-1e309", "1e-320", "1e6",
         "1e12", "abc", "1,5", "3.5.1", "0x10", "  2 ", "1_000", "٣", "²", "∞", "1e", "--", "None", "true", "7" * 400]
COUNT = {"cases": 0, "refused": 0, "accepted": 0}


def _value(key: str, text: str):
    """What the settings layer makes of ``text`` for ``key`` (None when refused)."""
    try:
        return getattr(settings_from_mapping({key: text}), key)
    except InputError:
        return None


def _check_accepted(key: str, v) -> None:
    assert v is not None
    assert isinstance(v, (int, float)) and math.isfinite(v), (key, v)
    if key in _RANGES:
        lo, hi, _ = _RANGES[key]
        assert lo <= v <= hi, (key, v)


@FUZZ
@given(key=st.sampled_from(NUMERIC),
       text=st.one_of(st.sampled_from(NASTY), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                      st.integers(-10**30, 10**30).map(str), st.text(max_size=12)))
def test_numeric_option_values(tmp_path_factory, capsys, key, text):
    out = tmp_path_factory.mktemp("o") / "out"
    if text.startswith("-") and not text.lstrip("-")[:1].isdigit() and text not in ("-inf", "-0"):
        text = " " + text  # a value that looks like an option is the shell's business, not ours
    rc = main(["quantify", "/nonexistent/study", option_name(key), text, "-o", str(out)])
    err = capsys.readouterr().err
    COUNT["cases"] += 1
    assert "Traceback" not in err
    assert not out.exists()
    v = _value(key, text)
    if rc == 2:  # refused as a usage error: a settings file refuses it too (Python's float() also reads
        COUNT["refused"] += 1  # non-ASCII digits such as '٣' = 3, which the command line does not: harmless)
        assert v is None or not text.isascii() or text.strip() == "", (key, text, v)
    else:
        assert rc == 3 and "does not exist" in err, (key, text, rc, err)
        COUNT["accepted"] += 1
        _check_accepted(key, v)


@FUZZ
@given(key=st.sampled_from(NUMERIC + ["species", "calibration", "label_resampling", "pvc_masks", "density"]),
       value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**20, 10**20),
                       st.booleans(), st.text(max_size=10), st.lists(st.integers(), max_size=3),
                       st.dictionaries(st.text(max_size=4), st.integers(), max_size=2), st.none()))
def test_settings_file_values(tmp_path_factory, capsys, key, value):
    d = tmp_path_factory.mktemp("s")
    cfg = d / "settings.json"
    try:
        cfg.write_text(json.dumps({key: value}, allow_nan=True))
    except (TypeError, ValueError):
        return
    rc = main(["quantify", "/nonexistent/study", "--config", str(cfg), "-o", str(d / "out")])
    err = capsys.readouterr().err
    COUNT["cases"] += 1
    assert "Traceback" not in err and rc in (2, 3), (key, value, rc, err)
    lines = [ln for ln in err.splitlines() if "error" in ln.lower()]
    assert len(lines) == 1, err
    if "does not exist" in err:  # accepted
        COUNT["accepted"] += 1
        s = settings_from_mapping({key: value}) if value is not None else Settings()
        field = "density_g_per_ml" if key == "density" else key
        v = getattr(s, field)
        if field in NUMERIC and v is not None:
            _check_accepted(field, v)
    else:
        COUNT["refused"] += 1


@FUZZ
@given(kind=st.sampled_from(["file", "under_file", "read_only", "dev_null", "empty", "deep_under_file"]),
       name=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1,
                    max_size=20).filter(lambda n: n not in (".", "..")))
def test_output_paths_refused_before_loading(tmp_path_factory, capsys, kind, name):
    d = tmp_path_factory.mktemp("p")
    f = d / "a_file"
    f.write_text("mine")
    if kind == "file":
        out = str(f)
    elif kind == "under_file":
        out = str(f / name)
    elif kind == "deep_under_file":
        out = str(f / name / "deeper")
    elif kind == "dev_null":
        out = "/dev/null"
    elif kind == "empty":
        out = ""
    elif os.geteuid() == 0:  # root writes into any folder: /proc takes no new entries, not even root's
        out = f"/proc/spectrack-{name}"
    else:
        ro = d / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        out = str(ro / name)
    study = Path(__file__).resolve().parents[1] / "sample_data" / "nhp_study"
    try:
        rc = main(["quantify", str(study), "-o", out])
    finally:
        (d / "ro").chmod(0o700) if (d / "ro").exists() else None
    err = capsys.readouterr().err
    COUNT["cases"] += 1
    assert "Traceback" not in err
    assert rc in (2, 3), (kind, out, rc, err)
    assert "load (" not in err and "quantify (" not in err  # refused before the study was read
    assert f.read_text() == "mine"
    COUNT["refused"] += 1


def test_zz_option_fuzz_summary(capsys):
    with capsys.disabled():
        print(f"\noption fuzz summary: {COUNT['cases']} cases, {COUNT['refused']} refused in one line, "
              f"{COUNT['accepted']} accepted within range, 0 tracebacks")
    assert COUNT["cases"] >= 3 * min(N_EXAMPLES, 50) or COUNT["cases"] == 0
