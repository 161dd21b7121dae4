"""The label map read in a thread while the study loads (issue 16): the same regions, the same errors, at the
same point of the run, and only for files whose reading does not depend on the study."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from spectrack.cli import main
from spectrack.pipeline import run_study
from spectrack.regions.formats.dispatch import read_regions
from spectrack.regions.resolve import prefetch_regions


def test_prefetched_label_map_is_the_file_read_directly(tmp_path, nifti_study):
    nifti_study(tmp_path / "s")
    lab = tmp_path / "s" / "labels.nii.gz"
    early = prefetch_regions(lab)
    assert early is not None and early.path == lab
    got, direct = early.result(), read_regions(lab)
    assert got.names == direct.names and got.source == direct.source and got.warnings == direct.warnings
    assert np.array_equal(got.image.array, direct.image.array) and got.image.same_grid(direct.image)


def test_only_label_image_files_are_prefetched(tmp_path, nifti_study):
    from spectrack.regions.formats.nifti import read_label_map

    nifti_study(tmp_path / "s")
    lm = read_label_map(tmp_path / "s" / "labels.nii.gz")
    (tmp_path / "rt.dcm").write_bytes(b"\0" * 200)  # an RTSTRUCT is rasterised onto the study's CT: not early
    for what in (None, lm, tmp_path / "s", tmp_path / "rt.dcm", tmp_path / "missing.nii.gz", 42):
        assert prefetch_regions(what) is None, what


def test_prefetched_file_is_what_the_run_uses(tmp_path, nifti_study):
    truth = nifti_study(tmp_path / "s")
    lab = tmp_path / "s" / "labels.nii.gz"
    started = []
    real = threading.Thread.start

    def start(self):
        started.append(self.name)
        return real(self)

    threading.Thread.start = start
    try:
        res = run_study(tmp_path / "s", {"labels": str(lab), "report": False, "uncertainty_draws": 0})
    finally:
        threading.Thread.start = real
    assert any(n.startswith("spectrack-labels") for n in started), started
    tab = res.table.set_index(["region", "timepoint"])["pct_id"]
    for n, row in enumerate(truth):
        assert tab[("brain", n)] == pytest.approx(row["brain"], rel=1e-6)
        assert tab[("liver", n)] == pytest.approx(row["liver"], rel=1e-6)


def test_a_bad_label_map_is_refused_at_the_regions_stage_as_before(tmp_path, nifti_study, capsys):
    nifti_study(tmp_path / "s")
    lab = tmp_path / "s" / "labels.nii.gz"
    blob = bytearray(lab.read_bytes())
    blob[-8] ^= 0xFF  # the gzip trailer's CRC
    lab.write_bytes(bytes(blob))
    stages = []
    with pytest.raises(Exception) as e:
        run_study(tmp_path / "s", {"labels": str(lab), "report": False, "uncertainty_draws": 0},
                  progress=lambda stage, f: stages.append(stage))
    assert "label map" in str(e.value) and "gzip stream" in str(e.value), e.value
    assert stages[-1] == "regions", stages  # the study loaded first, as without the prefetch
    rc = main(["quantify", str(tmp_path / "s"), "--labels", str(lab), "-o", str(tmp_path / "out"), "--no-report"])
    err = capsys.readouterr().err
    assert rc == 3 and "gzip stream" in err and "Traceback" not in err, err


def test_a_bad_study_is_reported_before_a_bad_label_map(tmp_path, nifti_study, capsys):
    nifti_study(tmp_path / "s")
    lab = tmp_path / "s" / "labels.nii.gz"
    blob = bytearray(lab.read_bytes())
    blob[-8] ^= 0xFF
    lab.write_bytes(bytes(blob))
    rc = main(["quantify", str(tmp_path / "nothing_here"), "--labels", str(lab), "-o", str(tmp_path / "out"),
               "--no-report"])
    err = capsys.readouterr().err
    assert rc != 0 and "nothing_here" in err and "gzip stream" not in err and "Traceback" not in err, err
