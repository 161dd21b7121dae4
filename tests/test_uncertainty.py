"""Monte Carlo intervals: analytic widths, region spread, and coverage on noisy replicates."""

import math

import numpy as np
import pandas as pd
import pytest

from spectrack.geometry import Image
from spectrack.kinetics.auc import integrate_tac
from spectrack.kinetics.uncertainty import (
    DEFAULT_CALIBRATION_CV,
    add_pct_id_intervals,
    derived_intervals,
    pct_id_interval,
    propagate,
    region_spread,
)
from spectrack.regions.labelmap import LabelMap

HL = 6.0067
LAM = math.log(2) / HL
Z975 = 1.959963984540054


def test_poisson_only_interval_matches_normal_approximation():
    r = pct_id_interval(10000, counts_per_mbq=1000.0, injected_mbq=100.0, calibration_cv=0.0, n_draws=20000, seed=1)
    assert r["pct_id"][0] == pytest.approx(10.0)
    half = Z975 * 10.0 / math.sqrt(10000)
    assert r["pct_id_hi"][0] - 10.0 == pytest.approx(half, rel=0.05)
    assert 10.0 - r["pct_id_lo"][0] == pytest.approx(half, rel=0.05)
    assert r["pct_id_sd"][0] == pytest.approx(0.1, rel=0.03)
    assert "Poisson" in r["method"] and "95 %" in r["method"]
    # decay factor scales the result
    r2 = pct_id_interval(10000, counts_per_mbq=1000.0, injected_mbq=100.0, decay_factor=2.0,
                         calibration_cv=0.0, n_draws=20000, seed=1)
    assert r2["pct_id_hi"][0] == pytest.approx(2 * r["pct_id_hi"][0])


def test_calibration_background_and_total_counts():
    # calibration only (counts so large that Poisson noise vanishes): +-1.96 x 2.7 %
    r = pct_id_interval(1e12, counts_per_mbq=1e10, injected_mbq=100.0, n_draws=20000, seed=2)
    assert r["pct_id_sd"][0] / r["pct_id"][0] == pytest.approx(DEFAULT_CALIBRATION_CV, rel=0.05)
    assert "calibration CV 2.7 %" in r["method"]
    # background: var(net) = N + s^2 N_b
    r = pct_id_interval(20000, counts_per_mbq=1000.0, injected_mbq=100.0, counts_background=5000,
                        background_scale=2.0, calibration_cv=0.0, n_draws=20000, seed=3)
    assert r["pct_id"][0] == pytest.approx(100 * 10000 / 1000 / 100)
    assert r["pct_id_sd"][0] == pytest.approx(100 / 1000 / 100 * math.sqrt(20000 + 4 * 5000), rel=0.03)
    # normalisation to total counts: no calibration CV by default, Poisson of the total instead
    r = pct_id_interval(1e12, counts_per_mbq=1e10, injected_mbq=100.0, counts_total=10000, n_draws=20000, seed=4)
    assert r["pct_id_sd"][0] / r["pct_id"][0] == pytest.approx(0.01, rel=0.05)
    assert "calibration CV" not in r["method"]


def test_region_factor_is_rectangular_with_the_erosion_dilation_spread():
    r = pct_id_interval(1e14, counts_per_mbq=1e12, injected_mbq=100.0, calibration_cv=0.0,
                        region_factor_low=0.6, region_factor_high=1.2, n_draws=40000, seed=5)
    # centred on the nominal result, half-width (1.2 - 0.6) / 2 = 0.3: percentiles of U(0.7, 1.3)
    assert r["pct_id_lo"][0] == pytest.approx(100 * (0.7 + 0.025 * 0.6), rel=0.01)
    assert r["pct_id_hi"][0] == pytest.approx(100 * (0.7 + 0.975 * 0.6), rel=0.01)
    assert "erosion and dilation" in r["method"]


def test_region_spread_of_a_cube():
    m = np.zeros((6, 6, 6), bool)
    m[1:4, 1:4, 1:4] = True
    img = np.arange(216, dtype=float).reshape(6, 6, 6)
    nom, ero, dil = region_spread(img, m)
    assert nom == img[m].sum()
    assert ero == img[2, 2, 2]                  # 6-connected erosion leaves the centre
    # 6-connected dilation of a box = the box grown by one voxel along each axis separately
    d = np.zeros_like(m)
    d[0:5, 1:4, 1:4] = d[1:4, 0:5, 1:4] = d[1:4, 1:4, 0:5] = True
    assert dil == img[d].sum() and d.sum() == 27 + 6 * 9
    assert region_spread(img, np.zeros_like(m)) == (0.0, 0.0, 0.0)


# ------------------------------------------------------------- phantom
TIMES = np.array([0.5, 1.0, 2.0, 4.0, 24.0])
A_INJ = 100.0
C_TRUE = np.array([1500.0, 1500.0, 1500.0, 3000.0, 6000.0])   # counts per MBq (longer late scans)
NAMES = {1: "brain", 2: "canal_lumbar", 3: "liver"}


def _true_pct_id():
    """Decay-corrected %ID per region (rows) and time (columns)."""
    t = TIMES
    return np.array([8 * (1 - np.exp(-1.5 * t)) * np.exp(-0.05 * t),     # brain: uptake then washout
                     60 * np.exp(-0.3 * t) + 5,                          # canal: clearance
                     3 + 0.5 * t])                                        # liver: accumulates


@pytest.fixture(scope="module")
def grid():
    lab = np.zeros((12, 12, 12), np.int16)
    lab[1:4, 1:4, 1:4] = 1          # 27 voxels
    lab[5:11, 5:7, 5:7] = 2         # 24 voxels (thin)
    lab[6:11, 1:5, 7:11] = 3        # 80 voxels
    img = Image(np.zeros(lab.shape), spacing_mm=(2.0, 2.0, 2.0), units="counts")
    return img, LabelMap(img.with_array(lab, units="label"), NAMES)


def _replicate(rng, grid, cv=DEFAULT_CALIBRATION_CV):
    """Poisson count images and the table a quantification would compute from them."""
    img, lm = grid
    lab = lm.image.array
    truth = _true_pct_id()
    c_meas = C_TRUE * (1 + cv * rng.standard_normal())   # one calibration error per study
    images, rows = [], []
    for ti, t in enumerate(TIMES):
        mean = np.zeros(lab.shape)
        for k in NAMES:
            n_vox = (lab == k).sum()
            mean[lab == k] = truth[k - 1, ti] / 100 * A_INJ * math.exp(-LAM * t) * C_TRUE[ti] / n_vox
        counts = rng.poisson(mean).astype(float)
        images.append(img.with_array(counts))
        for k, name in NAMES.items():
            n = counts[lab == k].sum()
            a = n / c_meas[ti]
            rows.append(dict(subject="s", timepoint=ti, time_h=t, region=name, label=k, kind="region",
                             volume_ml=(lab == k).sum() * 0.008, activity_mbq=a,
                             pct_id=100 * a * math.exp(LAM * t) / A_INJ, pct_id_uncorrected=100 * a / A_INJ))
    return pd.DataFrame(rows), images


def test_whole_table_intervals_columns_and_region_spread(grid):
    rng = np.random.default_rng(11)
    table, images = _replicate(rng, grid)
    out = add_pct_id_intervals(table, images, grid[1], n_draws=500, seed=3)
    for c in ("pct_id_lo", "pct_id_hi", "pct_id_uncorrected_lo", "pct_id_uncorrected_hi", "pct_id_per_ml_lo",
              "pct_id_eroded", "pct_id_dilated", "interval_method", "counts"):
        assert c in out
    assert np.all(out["pct_id_lo"] < out["pct_id"]) and np.all(out["pct_id"] < out["pct_id_hi"])
    assert np.all(out["pct_id_uncorrected_lo"] < out["pct_id_uncorrected"])
    # eroded / dilated values are the region's %ID scaled by the summed counts of the changed masks
    lab = grid[1].image.array
    row = out[(out.region == "liver") & (out.timepoint == 2)].iloc[0]
    nom, ero, dil = region_spread(images[2].array, lab == 3)
    assert row["pct_id_eroded"] == pytest.approx(row["pct_id"] * ero / nom)
    assert row["pct_id_dilated"] == pytest.approx(row["pct_id"] * dil / nom)
    # the boundary term widens the interval; same seed gives the same numbers
    narrow = add_pct_id_intervals(table, images, grid[1], n_draws=500, seed=3, segmentation_sd_mm=0.0)
    assert np.all((out["pct_id_hi"] - out["pct_id_lo"]) > (narrow["pct_id_hi"] - narrow["pct_id_lo"]))
    again = add_pct_id_intervals(table, images, grid[1], n_draws=500, seed=3)
    assert np.array_equal(again["pct_id_lo"], out["pct_id_lo"])
    # images in Bq/mL need counts_per_mbq
    bq = [i.with_array(i.array, units="Bq/mL") for i in images]
    with pytest.raises(ValueError, match="counts_per_mbq"):
        add_pct_id_intervals(table, bq, grid[1])
    withc = add_pct_id_intervals(table, bq, grid[1], counts_per_mbq=list(C_TRUE), n_draws=500, seed=3,
                                 segmentation_sd_mm=0.0)
    assert np.all(withc["pct_id_lo"] < withc["pct_id"])


def test_coverage_of_pct_id_and_tia_intervals(grid):
    """300 noisy replicates: the 95 % intervals hold the truth 90-99 % of the time."""
    rng = np.random.default_rng(2024)
    truth = _true_pct_id()
    truth_phys = truth * np.exp(-LAM * TIMES)[None, :]
    tia_true = integrate_tac(TIMES, truth_phys, tail="physical", half_life_h=HL).value   # per region
    n_rep = 300
    hit = np.zeros((n_rep, len(NAMES), len(TIMES)), bool)
    hit_tia = np.zeros((n_rep, len(NAMES)), bool)
    for rep in range(n_rep):
        table, images = _replicate(rng, grid)
        out, draws = add_pct_id_intervals(table, images, grid[1], n_draws=1000, seed=rep,
                                          segmentation_sd_mm=0.0, return_draws=True)
        for k, name in NAMES.items():
            sel = out[out.region == name].sort_values("time_h")
            hit[rep, k - 1] = (sel["pct_id_lo"].to_numpy() <= truth[k - 1]) & \
                              (truth[k - 1] <= sel["pct_id_hi"].to_numpy())
            d = draws[("s", name)]
            # propagate the draws through the TIA (physical curve, physical-decay tail), all at once
            p = propagate(d["pct_id_uncorrected"],
                          lambda x: integrate_tac(TIMES, x, tail="physical", half_life_h=HL).value,
                          vectorized=True)["value"]
            hit_tia[rep, k - 1] = p["lo"] <= tia_true[k - 1] <= p["hi"]
    per_cell = hit.mean(axis=0)
    assert 0.90 <= hit.mean() <= 0.99
    assert per_cell.min() >= 0.90 and per_cell.max() <= 0.99, per_cell
    assert 0.90 <= hit_tia.mean() <= 0.99, hit_tia.mean(axis=0)


def test_derived_intervals_contain_truth_and_shrink_with_noise():
    t = np.array([0.5, 1, 2, 4, 6, 24.0])
    k_bio = 0.1
    y = 20 * np.exp(-k_bio * t)
    rng = np.random.default_rng(0)
    widths = []
    for cv in (0.05, 0.01):
        draws = y * (1 + cv * rng.standard_normal((80, t.size)))
        df = derived_intervals(t, y, draws, half_life_h=HL, models=("mono",))
        row = df[df.metric == "t_bio_h"].iloc[0]
        assert row["value"] == pytest.approx(math.log(2) / k_bio, rel=1e-6)
        assert row["lo"] < math.log(2) / k_bio < row["hi"]
        eff = df[df.metric == "t_eff_h"].iloc[0]
        assert eff["lo"] < math.log(2) / (k_bio + LAM) < eff["hi"]
        has = df["lo"].notna()
        assert (df["n_draws"] == 80).all() and df.loc[has, "interval_method"].str.contains("Monte Carlo").all()
        assert set(df.loc[has, "metric"]) >= {"tia", "auc", "t_bio_h", "t_eff_h", "tiac_h", "mrt_h"}
        widths.append(row["hi"] - row["lo"])
    assert widths[1] < 0.5 * widths[0]


# ------------------------------------------- blur + PVC coverage (EANM terms)
def test_boundary_sd_default_is_voxel_over_sqrt12(grid):
    from spectrack.kinetics.uncertainty import boundary_sd_mm

    assert boundary_sd_mm(grid[1]) == pytest.approx(2.0 / math.sqrt(12.0))


def test_noise_factor_from_replicates_recovers_a_known_variance_ratio(grid):
    """Gamma-distributed region sums with 4x the Poisson variance: the ratio is read back."""
    from spectrack.kinetics.uncertainty import noise_factor_from_replicates

    lab = grid[1].image.array
    rng = np.random.default_rng(5)
    mean = np.where(lab > 0, 500.0, 0.0)
    imgs = [rng.gamma(mean / 4.0 + 1e-12, 4.0) * (lab > 0) for _ in range(400)]
    r = noise_factor_from_replicates(imgs, lab)
    assert r["noise_factor"] == pytest.approx(4.0, rel=0.15)
    poisson = [rng.poisson(mean).astype(float) for _ in range(400)]
    assert noise_factor_from_replicates(poisson, lab)["noise_factor"] == pytest.approx(1.0, rel=0.15)


def test_coverage_with_blur_pvc_psf_error_and_calibration_error():
    """200 blurred, noisy NHP replicates, each with its own true FWHM and calibration error.

    The analysis uses the nominal FWHM and calibration and states their SDs;
    the 95 % intervals on the recovery-corrected %ID must hold the exact
    truth 90-99 % of the time in every region holding >= 1 %ID (canal levels
    included), and stay within 0-100 %ID.
    """
    from scipy import ndimage

    from spectrack.kinetics import add_gtm_correction
    from spectrack.kinetics.recovery import sigma_voxels
    from spectrack.phantom import make_phantom

    fw, fw_sd, cv = 8.0, 1.0, 0.027
    ph = make_phantom("nhp", seed=1, noise=False)
    a_inj = ph.truth["injected_mbq"]
    lm = ph.timepoints[0].labels_spect
    lab = lm.image.array
    ids = sorted(lm.names)
    truth = {(tp.index, nm): tp.truth["regions"][nm]["pct_id"] for tp in ph.timepoints
             for nm in lm.names.values() if nm in tp.truth["regions"]}
    rng = np.random.default_rng(2026)
    hits: dict = {}
    for rep in range(200):
        fw_true = fw + fw_sd * rng.standard_normal()
        cal = 1 + cv * rng.standard_normal()
        imgs, rows = [], []
        for tp in ph.timepoints:
            mean = ndimage.gaussian_filter(tp.spect_ideal.array.astype(float),
                                           sigma_voxels(fw_true, tp.spect.spacing_mm), mode="constant")
            cnt = rng.poisson(np.clip(mean, 0, None)).astype(np.float32)
            img = tp.spect.with_array(cnt)
            imgs.append(img)
            k = tp.truth["mbq_per_stored_unit"] * cal
            d = tp.truth["decay_factor_to_injection"]
            for lid, s in zip(ids, ndimage.sum_labels(cnt.astype(float), lab, index=ids)):
                rows.append(dict(subject="s", timepoint=tp.index, time_h=tp.time_h, region=lm.names[lid],
                                 label=lid, kind="region", volume_ml=(lab == lid).sum() * img.voxel_volume_ml,
                                 activity_mbq=s * k, pct_id=100 * s * k * d / a_inj,
                                 pct_id_uncorrected=100 * s * k / a_inj))
        tab = add_gtm_correction(pd.DataFrame(rows), imgs, [lm] * len(imgs), fw)
        out = add_pct_id_intervals(tab, imgs, [lm] * len(imgs), fwhm_mm=fw, fwhm_sd_mm=fw_sd,
                                   segmentation_sd_mm=0.0, calibration_cv=cv, n_draws=400, seed=rep)
        fin = out[np.isfinite(out["pct_id_pvc_lo"])]
        assert (fin["pct_id_pvc_lo"] >= 0).all() and (fin["pct_id_pvc_hi"] <= 100).all()
        for r in out.itertuples():
            if truth[(r.timepoint, r.region)] >= 1.0:
                hits.setdefault(r.region, []).append(r.pct_id_pvc_lo <= truth[(r.timepoint, r.region)]
                                                     <= r.pct_id_pvc_hi)
    cover = {k: float(np.mean(v)) for k, v in hits.items()}
    assert {"canal_cervical", "canal_thoracic", "canal_lumbar", "canal_sacral"} <= set(cover)
    assert all(0.90 <= c <= 0.99 for c in cover.values()), cover


def test_psf_term_widens_the_pvc_interval_and_independent_sd_is_counting_only(grid):
    """Without a FWHM SD the PVC interval is counting + calibration; the SD column ignores shared terms."""
    from spectrack.kinetics import add_gtm_correction

    rng = np.random.default_rng(3)
    table, images = _replicate(rng, grid)
    tab = add_gtm_correction(table, images, grid[1], 3.0)
    base = add_pct_id_intervals(tab, images, grid[1], fwhm_mm=3.0, fwhm_sd_mm=0.0, segmentation_sd_mm=0.0,
                                n_draws=800, seed=1)
    wide = add_pct_id_intervals(tab, images, grid[1], fwhm_mm=3.0, fwhm_sd_mm=0.6, segmentation_sd_mm=0.0,
                                n_draws=800, seed=1)
    w0 = (base["pct_id_pvc_hi"] - base["pct_id_pvc_lo"]).to_numpy()
    w1 = (wide["pct_id_pvc_hi"] - wide["pct_id_pvc_lo"]).to_numpy()
    assert np.all(w1 > w0)
    # the independent SD of an uncorrected region is the Poisson SD of its counts, whatever the shared terms
    sdp = base["pct_id"] / np.sqrt(base["counts"])
    assert np.allclose(base["pct_id_sd_independent"], sdp)
    assert np.allclose(wide["pct_id_sd_independent"], sdp)


def test_kinetics_intervals_on_tia_and_half_lives_cover_the_truth():
    """Replicates of a mono-exponential curve with independent (5 %) and shared (calibration, 4 %) errors;
    each replicate's curve draws come from the same error model around its observed values. The TIA and
    half-life intervals of analyse_kinetics hold the analytic truth 88-99 % of the time. The region holds
    the injection (it starts at its back-extrapolated content, as the truth does)."""
    import pandas as pd

    from spectrack.kinetics import analyse_kinetics

    t = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 24.0])
    a0, k_bio = 30.0, 0.08
    truth = a0 * np.exp(-k_bio * t)                               # decay-corrected %ID
    tia_true = a0 / (k_bio + LAM)                                 # %ID h, analytic
    tbio_true, teff_true = math.log(2) / k_bio, math.log(2) / (k_bio + LAM)
    rng = np.random.default_rng(7)
    n_rep, n_draws, cv_ind, cv_cal = 100, 50, 0.05, 0.04

    def noisy(y, size):
        return y * (1 + cv_cal * rng.standard_normal((size, 1))) * (1 + cv_ind * rng.standard_normal((size, t.size)))

    hits = {"tia": [], "t_bio_h": [], "t_eff_h": []}
    for rep in range(n_rep):
        obs = noisy(truth, 1)[0]
        table = pd.DataFrame({"subject": "s", "region": "canal", "kind": "region", "timepoint": range(t.size),
                              "time_h": t, "pct_id": obs, "pct_id_uncorrected": obs * np.exp(-LAM * t),
                              "pct_id_sd_independent": cv_ind * obs})
        draws = {("s", "canal"): {"time_h": t, "pct_id": noisy(obs, n_draws)}}
        m = analyse_kinetics(table, half_life_h=HL, quantities=("pct_id",), models=("mono",), draws=draws,
                             injected_regions=["canal"]).metrics
        for metric, true in (("tia", tia_true), ("t_bio_h", tbio_true), ("t_eff_h", teff_true)):
            row = m[m.metric == metric].iloc[0]
            assert row["lo"] <= row["value"] <= row["hi"] and "50 draws" in row["interval_method"]
            hits[metric].append(row["lo"] <= true <= row["hi"])
    cover = {k: float(np.mean(v)) for k, v in hits.items()}
    assert all(0.88 <= c <= 0.99 for c in cover.values()), cover
    # metrics that are no estimate of anything (the number of terminal points) get no interval
    assert np.isnan(m[m.metric == "terminal_points"]["lo"]).all()


def test_kinetics_intervals_hold_scans_without_draws_and_need_matching_times():
    import pandas as pd

    from spectrack.kinetics import analyse_kinetics

    t = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 24.0])
    y = 10 * np.exp(-0.3 * t)
    table = pd.DataFrame({"subject": "s", "region": "r", "timepoint": range(6), "time_h": t, "pct_id": y})
    rng = np.random.default_rng(0)
    d = y[:5] * (1 + 0.05 * rng.standard_normal((40, 5)))
    m = analyse_kinetics(table, half_life_h=HL, quantities=("pct_id",), models=("mono",),
                         draws={("s", "r"): {"time_h": t[:5], "pct_id": d}}).metrics
    row = m[m.metric == "auc"].iloc[0]
    assert row["lo"] < row["value"] < row["hi"] and "24 h without an interval held" in row["interval_method"]
    none = analyse_kinetics(table, half_life_h=HL, quantities=("pct_id",), models=("mono",),
                            draws={("s", "other"): {"time_h": t, "pct_id": d}}).metrics
    assert none["lo"].isna().all() and none["interval_method"].str.startswith("no interval").all()


def test_recovery_and_intervals_are_quantification_the_old_kinetics_paths_give_the_same_objects():
    """Recovery correction and the %ID intervals live in spectrack.quantification; spectrack.kinetics,
    kinetics.recovery, kinetics.resolution and kinetics.uncertainty re-export them (the same objects)."""
    import importlib

    import spectrack.kinetics as k
    import spectrack.quantification as q

    new = {"recovery": ("recovery", "recovery_table", "resolution"), "resolution": ("resolution",),
           "uncertainty": ("count_intervals", "interval_terms", "intervals", "memory")}
    for old, homes in new.items():
        mod = importlib.import_module(f"spectrack.kinetics.{old}")
        homes = [importlib.import_module(f"spectrack.quantification.{h}") for h in homes]
        moved = [n for n in mod.__all__ if any(n in vars(h) for h in homes)]
        assert moved, old
        for name in moved:
            assert any(vars(h).get(name) is getattr(mod, name) for h in homes), (old, name)
    for name in ("add_gtm_correction", "gtm_correct", "sigma_voxels", "measure_fwhm", "add_pct_id_intervals",
                 "pct_id_interval", "boundary_sd_mm", "noise_factor_from_replicates", "default_fwhm_mm"):
        assert getattr(k, name) is getattr(q, name), name
