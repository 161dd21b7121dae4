"""The realistic acquisition mode, measured resolution and recovery correction that is not an inverse crime.

Truth comes from outside the reconstruction: the collimator's analytic
response, the uniform activity of a water cylinder, and the phantom's
compartments drawn on a grid twice as fine as the SPECT's. The projector
(rotation, attenuation, depth-dependent blur, Poisson noise on the
projections, OSEM) is not the Gaussian operator GTM inverts.
"""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from spectrack.cli import main
from spectrack.geometry import to_nifti_affine
from spectrack.kinetics.recovery import measure_fwhm
from spectrack.phantom import make_study
from spectrack.phantom.acquisition import MU_WATER_PER_MM, Camera, acquire, mu_from_hu, point_source_image

CAMERA = Camera(n_views=60, subsets=6, iterations=4)


@pytest.mark.parametrize("radius_mm", [80.0, 160.0])
def test_point_source_fwhm_follows_the_collimator_at_its_depth(radius_mm):
    """A point in air on the axis: every view sees it at the orbit radius, so the reconstructed FWHM is the
    collimator's analytic FWHM there, at most widened by the 4.2 mm sampling (a box: FWHM^2 + 8 ln2 s^2 / 12)."""
    im = point_source_image((4.2, 4.2, 4.2), CAMERA, radius_mm=radius_mm, water_radius_mm=None)
    fw = measure_fwhm(im)["fwhm_mm"]
    coll = float(CAMERA.fwhm_mm(radius_mm))
    sampled = float(np.sqrt(coll ** 2 + 8 * np.log(2) * 4.2 ** 2 / 12))
    for axis, v in zip("ijk", fw):
        assert 0.95 * coll <= v <= 1.05 * sampled, (axis, v, coll, sampled)
    assert fw[0] < 0.7 * CAMERA.fwhm_mm(2 * radius_mm)  # and it is the depth that sets it
    assert float(im.array.sum()) == pytest.approx(2e6, rel=0.03)  # OSEM keeps the counts (noise 0.07 %)


def test_uniform_water_cylinder_attenuation_correction():
    """Uniform activity in water: with attenuation correction flat (centre = edge within 5 %), without it the
    centre is depressed by about the attenuation across the radius."""
    f, sp = 2, 4.2
    shape = (8 * f, 24 * f, 24 * f)
    zz, yy, xx = np.meshgrid(*((np.arange(n) - (n - 1) / 2) for n in shape), indexing="ij")
    cyl = np.hypot(yy, xx) * sp / f <= 40.0
    act = np.where(cyl, 1000.0, 0.0)
    mu = np.where(cyl, MU_WATER_PER_MM, 0.0)
    per_voxel = 1000.0 * f ** 3
    zc, yc, xc = np.meshgrid(*((np.arange(n) - (n - 1) / 2) for n in (8, 24, 24)), indexing="ij")
    r = np.hypot(yc, xc) * sp
    centre, edge = (r < 12)[2:6], ((r > 25) & (r < 33))[2:6]
    img, info = acquire(act, mu, (sp / f,) * 3, CAMERA, seed=1)
    assert img[2:6][centre].mean() / per_voxel == pytest.approx(1.0, abs=0.05)
    assert img[2:6][edge].mean() / per_voxel == pytest.approx(1.0, abs=0.05)
    assert info["counts_recorded"] < 0.6 * act.sum()  # the camera saw the attenuated counts
    nac, _ = acquire(act, mu, (sp / f,) * 3, CAMERA, seed=1, mu_recon=np.zeros(img.shape))
    assert nac[2:6][centre].mean() < 0.85 * nac[2:6][edge].mean()


def test_mu_from_hu_is_water_at_zero_and_air_at_minus_1000():
    assert mu_from_hu(0.0) == pytest.approx(MU_WATER_PER_MM)
    assert mu_from_hu(-1000.0) == pytest.approx(0.0)
    assert float(mu_from_hu(1100.0)) > float(mu_from_hu(40.0))


# ---------------------------------------------------------------- recovery with the measured resolution
@pytest.fixture(scope="module")
def nhp_realistic(tmp_path_factory):
    """NHP phantom scanned by the realistic camera (one scan at 2 h), a point source imaged by the same
    camera at the same orbit, and its resolution file."""
    out = tmp_path_factory.mktemp("realistic")
    truth = make_study(out / "study", "nhp", times_h=[2.0], seed=1, formats=("nifti",), acquisition="realistic",
                       camera=CAMERA.to_json())
    acq = truth["timepoints"][0]["acquisition"]
    sp = truth["spect_grid"]["spacing_mm"]
    point = point_source_image(sp, CAMERA, radius_mm=acq["radius_mm"], seed=7)
    arr, aff = to_nifti_affine(point)
    nib.save(nib.Nifti1Image(arr, aff), str(out / "point.nii.gz"))
    return out, truth


def _quantify(study, out, capsys, *extra):
    sens = json.loads((study / "truth.json").read_text())["sensitivity_cps_per_mbq"]
    rc = main(["quantify", str(study), "--labels", str(study / "labels.nii.gz"), "-o", str(out), "--no-report",
               "--uncertainty-draws", "0", "--sensitivity", str(sens), *extra])
    err = capsys.readouterr().err
    assert rc == 0, err
    return pd.read_csv(out / "regions.csv"), json.loads((out / "study.json").read_text()), err


def test_measured_resolution_brings_the_canal_within_10_percent(nhp_realistic, tmp_path, capsys):
    out, truth = nhp_realistic
    res_file = tmp_path / "resolution.json"
    assert main(["resolution", str(out / "point.nii.gz"), "-o", str(res_file)]) == 0
    res = json.loads(res_file.read_text())
    assert res["format"] == "spectrack-resolution" and len(res["fwhm_mm"]) == 3
    assert res["reconstruction"]["voxel_size_mm"] == pytest.approx(truth["spect_grid"]["spacing_mm"], rel=1e-3)
    assert res["source"]["sha256"]
    tr = truth["timepoints"][0]["regions"]
    canal = [c for c in ("canal_cervical", "canal_thoracic", "canal_lumbar", "canal_sacral")]

    table, meta, _ = _quantify(out / "study", tmp_path / "none", capsys)
    rows = table[table.kind == "region"].set_index("region")
    for c in canal:  # without correction the thin canal reads far low (what the correction must fix)
        assert rows.loc[c, "pct_id"] < 0.6 * tr[c]["pct_id"], c

    table, meta, err = _quantify(out / "study", tmp_path / "measured", capsys, "--pvc", "--resolution",
                                 str(res_file))
    rows = table[table.kind == "region"].set_index("region")
    for c in canal:
        assert rows.loc[c, "pct_id_pvc"] == pytest.approx(tr[c]["pct_id"], rel=0.10), c
    assert not [w for w in meta["warnings"] if "FWHM" in w], meta["warnings"]
    assert any("measured" in n and "resolution.json" in n for n in meta["kinetics_method"])
    assert meta["provenance"]["inputs_sha256"][str(res_file)]  # the resolution file is an input, hashed

    table, meta, err = _quantify(out / "study", tmp_path / "nominal", capsys, "--pvc", "--psf-fwhm-mm", "12")
    rows = table[table.kind == "region"].set_index("region")
    assert all(rows.loc[c, "pct_id_pvc"] > 1.3 * tr[c]["pct_id"] for c in canal)  # over-corrected ...
    flagged = [w for w in meta["warnings"] if "12 mm" in w and "FWHM" in w]
    assert flagged and any("disagrees with the blur" in w for w in flagged), meta["warnings"]  # ... and said so
    assert "12 mm" in err


def test_resolution_command_refuses_what_is_not_a_source(tmp_path, capsys):
    img = np.random.default_rng(0).random((20, 20, 10)).astype(np.float32) + 1.0
    nib.save(nib.Nifti1Image(img, np.diag([4.2, 4.2, 4.2, 1])), str(tmp_path / "noise.nii.gz"))
    rc = main(["resolution", str(tmp_path / "noise.nii.gz"), "-o", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert rc == 3 and "not Gaussian-like" in err or "cannot fit" in err, err
    assert not (tmp_path / "r.json").exists()
    rc = main(["resolution", str(tmp_path / "noise.nii.gz"), "-o", str(tmp_path / "r.json"), "--source", "line"])
    assert rc == 2
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    rc = main(["quantify", str(tmp_path), "--pvc", "--resolution", str(tmp_path / "bad.json"), "-o",
               str(tmp_path / "o")])
    assert rc in (3, 4), capsys.readouterr().err
