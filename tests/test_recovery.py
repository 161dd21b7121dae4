"""Recovery coefficients and GTM partial-volume correction against analytic and phantom truth."""

import math

import numpy as np
import pytest
from scipy import ndimage

from spectrack.geometry import Image
from spectrack.kinetics.recovery import (
    FWHM_PRESETS_MM,
    add_gtm_correction,
    FWHM_TO_SIGMA,
    cylinder_rc,
    default_fwhm_mm,
    gtm_correct,
    gtm_matrix,
    measure_fwhm,
    sigma_voxels,
    sphere_rc,
)
from spectrack.regions.labelmap import LabelMap


def _centred_grid(n, h):
    x = (np.arange(n) - (n - 1) / 2) * h
    return np.meshgrid(x, x, x, indexing="ij")


@pytest.mark.parametrize("d,fwhm,h", [(10.0, 10.0, 0.5), (20.0, 10.0, 0.5), (6.0, 8.0, 0.25)])
def test_sphere_rc_matches_numerically_blurred_voxelised_sphere(d, fwhm, h):
    n = int(2 * (d / 2 + 4 * fwhm * FWHM_TO_SIGMA) / h) + 3
    Z, Y, X = _centred_grid(n, h)
    m = X ** 2 + Y ** 2 + Z ** 2 <= (d / 2) ** 2
    b = ndimage.gaussian_filter(m.astype(float), fwhm * FWHM_TO_SIGMA / h, mode="constant")
    assert b[m].mean() == pytest.approx(sphere_rc(d, fwhm), rel=0.02)
    c = n // 2
    assert b[c, c, c] == pytest.approx(sphere_rc(d, fwhm, kind="centre"), rel=0.02)


def test_rc_limits_and_closed_forms():
    # large objects recover fully, small ones not at all, monotone in between
    assert sphere_rc(2000.0, 10.0) == pytest.approx(1.0, abs=0.01)
    assert cylinder_rc(2000.0, 10.0) == pytest.approx(1.0, abs=0.01)
    assert sphere_rc(0.5, 10.0) < 1e-3
    rc = sphere_rc(np.array([5.0, 10, 20, 40]), 10.0)
    assert np.all(np.diff(rc) > 0)
    # a sphere loses more than a cylinder of the same diameter (3-D vs 2-D blur)
    assert sphere_rc(10.0, 10.0) < cylinder_rc(10.0, 10.0)
    # closed forms on the axis / at the centre
    s = 8.0 * FWHM_TO_SIGMA
    assert cylinder_rc(4.0, 8.0, kind="axis") == pytest.approx(1 - math.exp(-4 / (2 * s * s)))
    a = 5.0 / s
    assert sphere_rc(10.0, 8.0, kind="centre") == pytest.approx(
        math.erf(a / math.sqrt(2)) - math.sqrt(2 / math.pi) * a * math.exp(-a * a / 2))
    assert FWHM_PRESETS_MM["rat"] == 0.8 and default_fwhm_mm("Human") == 12.0
    with pytest.raises(KeyError):
        default_fwhm_mm("mouse")


def test_cylinder_rc_matches_numerical_2d_blur():
    h, d, fwhm = 0.05, 3.0, 0.8    # a rat cord under pinhole SPECT
    n = int(2 * (d / 2 + 5 * fwhm * FWHM_TO_SIGMA) / h) + 3
    x = (np.arange(n) - (n - 1) / 2) * h
    Y, X = np.meshgrid(x, x, indexing="ij")
    m = X ** 2 + Y ** 2 <= (d / 2) ** 2
    b = ndimage.gaussian_filter(m.astype(float), fwhm * FWHM_TO_SIGMA / h, mode="constant")
    assert b[m].mean() == pytest.approx(cylinder_rc(d, fwhm), rel=0.01)


def test_sigma_voxels_axis_order():
    # FWHM along i, j, k with spacing along i, j, k -> sigma along array axes k, j, i
    s = sigma_voxels((1.0, 2.0, 4.0), (1.0, 1.0, 2.0))
    assert s == pytest.approx(np.array([2.0, 2.0, 1.0]) * FWHM_TO_SIGMA)


# -------------------------------------------------------------- phantom
D = 4.0          # canal diameter, mm
FWHM = 2 * D     # reconstructed resolution
CONC = {1: 10.0, 2: 4.0, 3: 6.0, 4: 1.0}
NAMES = {1: "canal", 2: "blob_small", 3: "blob_large", 4: "background"}


@pytest.fixture(scope="module")
def phantom():
    """64^3 at 1 mm built from a 2x finer continuous phantom (blur, then block average)."""
    up, N, h = 2, 64, 1.0
    n, hh = N * up, h / up
    c = (np.arange(n) + 0.5) * hh - N * h / 2
    Z, Y, X = np.meshgrid(c, c, c, indexing="ij")
    lab_hr = np.zeros((n, n, n), np.int16)
    lab_hr[X ** 2 + Y ** 2 <= 28 ** 2] = 4                                    # body cylinder
    lab_hr[(X - 15) ** 2 + (Y - 12) ** 2 + (Z - 10) ** 2 <= 6 ** 2] = 2         # 12 mm blob
    lab_hr[(X + 14) ** 2 + (Y - 14) ** 2 + (Z + 12) ** 2 <= 8 ** 2] = 3         # 16 mm blob
    lab_hr[X ** 2 + (Y + 10) ** 2 <= (D / 2) ** 2] = 1                          # canal along z
    act_hr = np.zeros(lab_hr.shape)
    for k, v in CONC.items():
        act_hr[lab_hr == k] = v
    sig = FWHM * FWHM_TO_SIGMA / hh

    def down(a):
        return a.reshape(N, up, N, up, N, up).mean(axis=(1, 3, 5))

    img = down(ndimage.gaussian_filter(act_hr, sig, mode="constant"))
    canal_only = down(ndimage.gaussian_filter(np.where(lab_hr == 1, CONC[1], 0.0), sig, mode="constant"))
    votes = np.stack([(lab_hr == k).reshape(N, up, N, up, N, up).sum(axis=(1, 3, 5)) for k in range(5)])
    lab = np.argmax(votes, axis=0).astype(np.int16)          # majority voxelisation
    truth_mbq = {k: v * (lab_hr == k).sum() * hh ** 3 / 1000 * 1e-6 for k, v in CONC.items()}  # Bq/mL x mL
    image = Image(img, spacing_mm=(h, h, h), units="Bq/mL")
    labels = LabelMap(image.with_array(lab, units="label"), NAMES)
    return image, labels, truth_mbq, canal_only


def test_canal_is_under_read_as_the_cylinder_rc_predicts(phantom):
    image, labels, truth, canal_only = phantom
    rc = cylinder_rc(D, FWHM)
    assert rc == pytest.approx(0.147, abs=0.001)
    # canal alone, away from the ends of the field of view: mean RC as predicted
    m = labels.mask("canal").copy()
    m[:16] = False
    m[-16:] = False
    assert canal_only[m].mean() / CONC[1] == pytest.approx(rc, rel=0.05)
    # in the full phantom: canal mean = background + RC * (canal - background)
    obs = image.array[m].mean()
    assert (obs - CONC[4]) / (CONC[1] - CONC[4]) == pytest.approx(rc, rel=0.07)


def test_gtm_recovers_pct_id_of_every_region(phantom):
    image, labels, truth, _ = phantom
    a_inj = sum(truth.values())
    r = gtm_correct(image, labels, FWHM, injected_mbq=a_inj)
    df = r.to_frame()
    assert list(df["region"]) == ["canal", "blob_small", "blob_large", "background"]
    for i, lid in enumerate(r.label):
        true_pid = 100 * truth[int(lid)] / a_inj
        assert r.pct_id_corrected[i] == pytest.approx(true_pid, rel=0.05), NAMES[int(lid)]
    # uncorrected: the canal holds less than a quarter of its true %ID
    i_c = list(r.label).index(1)
    assert r.pct_id[i_c] < 0.25 * 100 * truth[1] / a_inj
    # the canal's own GTM recovery (diagonal) is the analytic cylinder RC (ends of the canal included)
    assert r.rc[i_c] == pytest.approx(cylinder_rc(D, FWHM), rel=0.10)
    assert "Rousset" in r.method and "nnls" in r.method


def test_gtm_correction_of_a_quantification_table(phantom):
    import pandas as pd

    image, labels, truth, _ = phantom
    a_inj = sum(truth.values())
    k = image.voxel_volume_ml * 1e-6           # MBq per voxel per Bq/mL
    images = [image, image.with_array(image.array * 0.5)]   # second scan: half of everything
    rows = []
    for tp, img in enumerate(images):
        for lid, name in NAMES.items():
            a = float(img.array[labels.mask(lid)].sum()) * k
            rows.append(dict(subject="p", timepoint=tp, time_h=float(tp), region=name, label=lid, kind="region",
                             activity_mbq=a, pct_id=100 * a / a_inj, pct_id_uncorrected=100 * a / a_inj))
        rows.append(dict(subject="p", timepoint=tp, time_h=float(tp), region="field_of_view", label=0, kind="fov",
                         activity_mbq=float(img.array.sum()) * k, pct_id=np.nan, pct_id_uncorrected=np.nan))
    out = add_gtm_correction(pd.DataFrame(rows), images, labels, FWHM)
    for tp, scale in ((0, 1.0), (1, 0.5)):
        for lid, name in NAMES.items():
            row = out[(out.timepoint == tp) & (out.region == name)].iloc[0]
            assert row["pct_id_pvc"] == pytest.approx(scale * 100 * truth[lid] / a_inj, rel=0.05), (tp, name)
    fov = out[out.kind == "fov"]
    assert fov["pvc_factor"].isna().all() and fov["pvc_method"].str.startswith("not corrected").all()
    canal = out[out.region == "canal"]
    assert (canal["pvc_factor"] > 4).all() and (canal["gtm_rc"] < 0.2).all()


def test_gtm_exact_on_its_own_forward_model_with_anisotropic_psf():
    rng = np.random.default_rng(0)
    lab = np.zeros((20, 24, 28), np.int16)
    lab[2:8, 3:10, 4:12] = 1
    lab[10:18, 12:20, 6:14] = 2
    lab[4:12, 5:9, 16:26] = 3
    true = np.array([3.0, 7.0, 1.5])
    act = np.zeros(lab.shape)
    for k in (1, 2, 3):
        act[lab == k] = true[k - 1]
    spacing, fwhm = (1.0, 1.5, 2.5), (3.0, 6.0, 9.0)   # along i, j, k
    blurred = ndimage.gaussian_filter(act, sigma_voxels(fwhm, spacing), mode="constant")
    img = Image(blurred, spacing_mm=spacing)
    r = gtm_correct(img, lab, fwhm)
    assert r.corrected_mean == pytest.approx(true, rel=1e-9)
    # swapping the axis order of the PSF is detectably wrong
    r_bad = gtm_correct(img, lab, fwhm[::-1])
    assert np.max(np.abs(r_bad.corrected_mean / true - 1)) > 0.02
    # W via sub-boxes equals W from whole-volume blurs
    W, ids, nv = gtm_matrix(lab, spacing, fwhm)
    for j in range(3):
        b = ndimage.gaussian_filter((lab == j + 1).astype(float), sigma_voxels(fwhm, spacing), mode="constant")
        assert W[:, j] == pytest.approx(ndimage.mean(b, lab, index=[1, 2, 3]), rel=1e-10)
    # least squares without the non-negativity constraint gives the same here
    assert gtm_correct(img, lab, fwhm, nonnegative=False).corrected_mean == pytest.approx(true, rel=1e-9)
    # with noise, nnls never returns negative concentrations
    noisy = img.with_array(blurred + rng.normal(0, 0.5, blurred.shape))
    assert np.all(gtm_correct(noisy, lab, fwhm).corrected_mean >= 0)


def test_measure_fwhm_point_and_line():
    spacing, fwhm = (1.0, 1.5, 2.0), (6.0, 9.0, 12.0)
    a = np.zeros((40, 48, 56))
    a[20, 23, 30] = 1000.0
    b = ndimage.gaussian_filter(a, sigma_voxels(fwhm, spacing)) + 0.05
    r = measure_fwhm(Image(b, spacing_mm=spacing))
    assert r["fwhm_mm"] == pytest.approx(fwhm, rel=0.01)
    assert r["centre_mm"] == pytest.approx((30 * 1.0, 23 * 1.5, 20 * 2.0), abs=0.05)
    a = np.zeros((40, 48, 56))
    a[:, 23, 30] = 100.0      # line along k
    b = ndimage.gaussian_filter(a, sigma_voxels(fwhm, spacing))
    r = measure_fwhm(Image(b, spacing_mm=spacing), source="line", line_axis="k")
    assert r["fwhm_mm"][:2] == pytest.approx(fwhm[:2], rel=0.01)
    assert math.isnan(r["fwhm_mm"][2])
