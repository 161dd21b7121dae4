"""Fits, terminal rates and AUCs on realistic (phantom-like) curves: stable, sensible and fast."""

import math
import time
import warnings

import numpy as np
import pytest

import spectrack.kinetics.fits as fits_mod
import spectrack.kinetics.least_squares as least_squares_mod
import spectrack.kinetics.starting_values as starting_values_mod
from spectrack.kinetics import analyse_kinetics, fit_models, fit_tac, tac_metrics
from spectrack.kinetics.auc import terminal_rate

HL = 6.0067
LAM = math.log(2) / HL
T6 = np.array([0.5, 1, 2, 4, 6, 24.0])
AREAS = {"cmax", "auc", "auc_observed", "auc_fit", "tia", "tia_observed", "tia_fit", "start_value", "auc_lambda_z",
         "tia_lambda_z", "tia_upper_bound"}

BRAIN = np.array([0.26, 1.33, 4.55, 8.42, 8.14, 0.21])             # uptake, then fast washout
CANAL = np.array([45.105, 26.837, 12.260, 4.112, 1.691, 0.006])    # fast clearance from the lumbar canal
CERVICAL = np.array([4.709, 10.688, 15.252, 10.933, 6.111, 0.054])  # transit: rise and fall
LYMPH = np.array([0.809, 1.530, 2.705, 4.157, 4.798, 2.813])        # one scan after the peak
LIVER = 20 * (1 - np.exp(-0.15 * T6))                               # rising to a plateau, no washout
CURVES = {"brain": BRAIN, "canal": CANAL, "cervical": CERVICAL, "lymph": LYMPH, "liver": LIVER}


def _metrics(t, y, **kw):
    s = tac_metrics(t, y, half_life_h=HL, **kw)
    return {(r["metric"], r["correction"]): r["value"] for r in s.metrics}, s


def _same(a, b, rel, scale=1.0):
    """Two metric dicts agree (areas of ``b`` divided by ``scale``); NaN matches NaN."""
    bad = []
    for k, v in a.items():
        w = b[k] / (scale if k[0] in AREAS else 1.0)
        if not ((math.isnan(v) and math.isnan(w)) or math.isclose(v, w, rel_tol=rel, abs_tol=1e-12)):
            bad.append((k, v, w))
    return bad


# ------------------------------------------------------------ brain
def _log_down(t, y):
    """Linear-up/log-down area of (t, y) by hand, segment by segment."""
    a = 0.0
    for t1, t2, y1, y2 in zip(t[:-1], t[1:], y[:-1], y[1:]):
        a += (y1 - y2) / math.log(y1 / y2) * (t2 - t1) if y2 < y1 and y2 > 0 else 0.5 * (y1 + y2) * (t2 - t1)
    return a


def test_brain_curve_gets_the_delayed_arrival_model_and_an_honest_tail():
    m, s = _metrics(T6, BRAIN)
    dc = s.selections["decay_corrected"]
    # mono and uptake-washout cannot follow the late rise (R^2 < 0.9): never chosen; bi has no AICc at n = 6
    assert dc.best.model == "transit" and dc.best.r_squared >= 0.9
    assert {f.model for f in dc.compared} == {"transit"}
    assert "bi: AICc undefined (n=6 <= K+1=6)" in dc.reason and "mono: R^2" in dc.reason
    # the transit fit is not yet in its terminal phase at 24 h: the tail uses the last two points, named
    k = math.log(8.14 / 0.21) / 18
    assert m[("terminal_rate_per_h", "decay_corrected")] == pytest.approx(k, rel=1e-12)
    assert s.terminal["decay_corrected"].source == "log-linear" and not s.terminal["decay_corrected"].defined
    assert m[("terminal_points", "decay_corrected")] == 2
    assert m[("t_bio_h", "decay_corrected")] == pytest.approx(math.log(2) / k, rel=1e-12)
    rows = s.to_frame().set_index(["metric", "correction"])
    assert rows.loc[("auc", "decay_corrected"), "method"].startswith("estimate (no terminal phase of >= 3 points)")
    assert "tail from 2 points" in rows.loc[("auc", "decay_corrected"), "flag"]
    # observed area: linear-up/log-down from 0 at injection, by hand
    obs = m[("auc_observed", "decay_corrected")]
    assert obs == pytest.approx(_log_down(np.r_[0, T6], np.r_[0, BRAIN]), rel=1e-12)
    assert obs < m[("auc", "decay_corrected")] < 1.02 * obs
    assert m[("auc", "decay_corrected")] == pytest.approx(m[("auc_lambda_z", "decay_corrected")], rel=1e-12)
    # the physical curve gives the same biology: k_eff = k_bio + lambda
    assert m[("terminal_rate_per_h", "physical")] == pytest.approx(k + LAM, rel=1e-12)
    assert m[("t_bio_h_from_t_eff", "physical")] == pytest.approx(math.log(2) / k, rel=1e-9)
    tia, up = m[("tia", "physical")], m[("tia_upper_bound", "physical")]
    assert m[("tia_observed", "physical")] < tia < up < 1.01 * m[("tia_observed", "physical")]
    assert m[("tiac_h", "physical")] == pytest.approx(tia / 100, rel=1e-12)


def test_brain_uptake_washout_reaches_its_k1_equals_k2_limit_deterministically():
    # the best uptake-washout description is the limit k1 -> k2 (A t exp(-k t)); it is fitted as such
    r = fit_tac(T6, BRAIN, "uptake_washout", weighting="relative")
    assert r.converged and any(b.startswith("k1=k2") for b in r.at_bound)
    assert r.params["k1"] == pytest.approx(r.params["k2"], rel=1e-5)
    assert math.isnan(r.stderr["A"]) and np.isfinite(r.stderr["k2"]) and r.stderr["k2"] > 0
    # other starts (p0) and a different grid land on the same curve
    r2 = fit_tac(T6, BRAIN, "uptake_washout", weighting="relative", p0={"A": 30.0, "k1": 0.9, "k2": 0.1})
    assert r2.fitted == pytest.approx(r.fitted, rel=1e-6)
    assert r2.params["k2"] == pytest.approx(r.params["k2"], rel=1e-6)


# ----------------------------------------------------------- stability
@pytest.mark.parametrize("name", sorted(CURVES))
def test_results_do_not_depend_on_units_or_solver_settings(name, monkeypatch):
    y = CURVES[name]
    ref, _ = _metrics(T6, y)
    # data in other units (x1000, MBq: no dose bound): areas scale, everything else identical
    ref_mbq, _ = _metrics(T6, y, unit="MBq")
    big, _ = _metrics(T6, 1000 * y, unit="MBq")
    assert not _same(ref_mbq, big, 1e-6, scale=1000.0)
    # a coarser / finer start grid and more or fewer refined starts give the same numbers
    for grid, starts in ((7, 1), (16, 3)):
        monkeypatch.setattr(starting_values_mod, "_GRID_PER_DECADE", grid)
        monkeypatch.setattr(least_squares_mod, "_N_STARTS", starts)
        alt, _ = _metrics(T6, y)
        assert not _same(ref, alt, 1e-4), (grid, starts)
    # a 1e-7 change of the data changes no result by more than ~1e-5 (no jumps from solver noise)
    nudged, _ = _metrics(T6, y * (1 + 1e-7 * np.cos(np.arange(6))))
    assert not _same(ref, nudged, 1e-4)


@pytest.mark.parametrize("model,truth", [
    ("mono", {"A": 30.0, "k": 0.25}),
    ("bi", {"A1": 40.0, "k1": 0.9, "A2": 6.0, "k2": 0.15}),
    ("uptake_washout", {"A": 10.0, "k1": 1.1, "k2": 0.2}),
])
def test_perturbed_starting_values_give_the_same_fit(model, truth):
    rng = np.random.default_rng(4)
    t = np.array([0.25, 0.5, 1, 2, 4, 6, 8, 24.0])
    y0 = fits_mod.model_function(model, truth)(t)
    y = y0 * (1 + 0.03 * rng.standard_normal(t.size))
    ref = fit_tac(t, y, model, weighting="relative")
    assert ref.converged
    for f in (0.5, 0.8, 1.3, 2.0):
        p0 = {k: v * f for k, v in truth.items()}
        r = fit_tac(t, y, model, weighting="relative", p0=p0)
        assert r.wrss == pytest.approx(ref.wrss, rel=1e-7)
        assert r.terminal_rate_per_h == pytest.approx(ref.terminal_rate_per_h, rel=1e-4)
        assert r.fitted == pytest.approx(ref.fitted, rel=1e-5)
    # scaled data: same rates, scaled amplitudes
    r = fit_tac(t, 1000 * y, model, weighting="relative")
    for k, v in ref.params.items():
        assert r.params[k] == pytest.approx(v * (1000 if k.startswith("A") else 1), rel=1e-6), k


# ------------------------------------------------------- liver / plateau
def test_rising_plateau_has_no_terminal_rate_no_half_lives_and_no_infinite_auc():
    m, s = _metrics(T6, LIVER)
    # decay-corrected: the exact uptake fit has k2 = 0 on its bound; no decline -> AUC to infinity not estimable
    best = s.selections["decay_corrected"].best
    assert best.model == "uptake_washout" and best.r_squared == pytest.approx(1.0, abs=1e-9)
    assert "k2=0" in best.at_bound
    assert best.params["k1"] == pytest.approx(0.15, rel=1e-4)
    assert math.isnan(m[("terminal_rate_per_h", "decay_corrected")])
    assert math.isnan(m[("auc", "decay_corrected")]) and math.isnan(m[("auc_fit", "decay_corrected")])
    rows = s.to_frame().set_index(["metric", "correction"])
    assert "not estimable" in rows.loc[("auc", "decay_corrected"), "method"]
    # a curve that never declines: no biological half-life, and no effective half-life printed as measured
    assert math.isnan(m[("t_bio_h", "decay_corrected")])
    assert "never declines" in rows.loc[("t_bio_h", "decay_corrected"), "method"]
    assert math.isnan(m[("t_eff_h", "physical")]) and math.isnan(m[("t_bio_h_from_t_eff", "physical")])
    assert rows.loc[("t_eff_h", "physical"), "flag"] == "not measured"
    # observed decay-corrected area: linear up from 0 (the curve only rises), by hand
    assert m[("auc_observed", "decay_corrected")] == pytest.approx(
        float(np.sum(np.diff(np.r_[0, T6]) * (np.r_[0, LIVER][1:] + np.r_[0, LIVER][:-1]) / 2)), rel=1e-12)
    # physical: no rate below physical decay, so the TIA is the physical-decay upper bound, said so
    assert m[("terminal_rate_per_h", "physical")] == pytest.approx(LAM, rel=1e-12)
    c_last = LIVER[-1] * math.exp(-LAM * 24)
    assert m[("tia", "physical")] == pytest.approx(m[("tia_observed", "physical")] + c_last / LAM, rel=1e-12)
    assert m[("tia", "physical")] == m[("tia_upper_bound", "physical")]
    assert rows.loc[("tia", "physical"), "method"].startswith("upper bound")


def test_plateau_with_two_late_points_uses_them_but_never_below_physical_decay():
    t = np.array([0.5, 1, 2, 4, 6, 24, 48.0])
    y = 20 * (1 - np.exp(-0.15 * t))
    m, s = _metrics(t, y)
    assert m[("terminal_rate_per_h", "physical")] == pytest.approx(LAM, rel=1e-12)
    assert "raised to" in s.terminal["physical"].method
    assert math.isnan(m[("auc", "decay_corrected")])


# ------------------------------------------------------------ canal
def test_fast_clearing_canal_curves():
    m, s = _metrics(T6, CANAL)
    k = m[("terminal_rate_per_h", "decay_corrected")]
    assert 0.3 < k < 0.65                                # observed log-slopes between scans: 0.3-1.2 /h
    assert s.terminal["decay_corrected"].source == "fit" and s.terminal["decay_corrected"].defined
    obs = m[("auc_observed", "decay_corrected")]
    assert obs < m[("auc", "decay_corrected")] < 1.001 * obs
    assert m[("terminal_rate_per_h", "physical")] >= LAM
    # a noise-free bi-exponential sampled densely: the fit is good and its rate is used (3 points, 16-36 h,
    # in its terminal phase)
    t = np.array([0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 5, 6, 8, 12, 16, 24.0, 36.0])
    y = 50 * np.exp(-0.7 * t) + 0.5 * np.exp(-0.2 * t)
    m, s = _metrics(t, y)
    assert s.selections["decay_corrected"].best.model == "bi"
    assert s.terminal["decay_corrected"].source == "fit"
    assert m[("terminal_rate_per_h", "decay_corrected")] == pytest.approx(0.2, rel=1e-6)
    assert m[("auc_fit", "decay_corrected")] == pytest.approx(50 / 0.7 + 0.5 / 0.2, rel=1e-6)
    assert m[("terminal_rate_per_h", "physical")] == pytest.approx(0.2 + LAM, rel=1e-6)
    # the same curve at the six phantom times: the bi-exponential has no AICc (n = 6) and is not a candidate;
    # the mono-exponential describes the scans (the slow phase shows at one scan only)
    m6, s6 = _metrics(T6, 50 * np.exp(-0.7 * T6) + 0.5 * np.exp(-0.2 * T6))
    sel6 = s6.selections["decay_corrected"]
    assert sel6.best.model == "mono" and "bi: AICc undefined" in sel6.reason
    assert all(f.model != "bi" for f in sel6.compared)
    obs = m6[("auc_observed", "decay_corrected")]
    assert obs < m6[("auc", "decay_corrected")] < 1.001 * obs


def test_transit_curve_with_tiny_last_value():
    m, _ = _metrics(T6, CERVICAL)
    k = m[("terminal_rate_per_h", "decay_corrected")]
    assert 0.15 < k < 0.6 and 1 < m[("t_bio_h", "decay_corrected")] < 5
    obs = m[("auc_observed", "decay_corrected")]
    assert obs < m[("auc", "decay_corrected")] < 1.01 * obs


# ----------------------------------------------------- one point after the peak
def test_single_point_after_the_peak():
    m, s = _metrics(T6, LYMPH)
    tr = s.terminal["decay_corrected"]
    # the fit is excellent, but its terminal phase rests on one scan: the chord from the peak is used
    assert s.selections["decay_corrected"].best.r_squared > 0.99
    assert tr.source == "peak-to-last" and tr.n_points == 2
    assert tr.rate_per_h == pytest.approx(math.log(4.798 / 2.813) / 18, rel=1e-12)
    assert "only point after" in tr.method
    assert m[("terminal_points", "decay_corrected")] == 2
    assert m[("tail_fraction", "decay_corrected")] < 0.6
    assert m[("terminal_rate_per_h", "physical")] == pytest.approx(tr.rate_per_h + LAM, rel=1e-12)
    # direct use, no fit
    r = terminal_rate(T6, LYMPH)
    assert r.source == "peak-to-last" and r.fit_issues == ()


def test_terminal_rate_fallback_rules():
    # lambda_z: last >= 3 points by adjusted R^2 (ties to more points)
    t = np.array([1, 2, 3, 4, 6, 8, 12.0])
    y = np.r_[1.0, 10 * np.exp(-0.3 * t[1:])]
    r = terminal_rate(t, y)
    assert r.source == "log-linear" and r.n_points == 5
    assert r.rate_per_h == pytest.approx(0.3, rel=1e-12)
    # rising to the end: nothing to extrapolate
    r = terminal_rate(t, np.log1p(t))
    assert r.source == "none" and math.isnan(r.rate_per_h) and "not estimable" in r.method
    # rising again after a dip (bladder voiding): no clearance for a decay-corrected curve,
    # physical decay for a physical one
    y = np.array([1, 5, 8, 3, 4, 6, 7.0])
    assert math.isnan(terminal_rate(t, y).rate_per_h)
    assert terminal_rate(t, y, rate_lower_bound_per_h=LAM).rate_per_h == LAM


# --------------------------------------------------------- fit quality
def test_quality_issues_and_unresolved_fast_phase():
    t = np.array([0.5, 1, 2, 4, 6, 8, 24.0])
    y = 10 * np.exp(-0.1 * t)
    r = fit_tac(t, y, "mono")
    assert r.quality_issues() == () and r.terminal_points() == 6
    d = r.to_dict()
    assert d["quality"] == "ok" and d["terminal_points"] == 6 and d["rate_upper_bound_per_h"] == 100.0
    # a mono curve fitted with bi: the second component is not resolved, and it says so
    rb = fit_tac(t, y, "bi")
    assert rb.converged and rb.at_bound
    assert rb.terminal_rate_per_h == pytest.approx(0.1, rel=1e-6)
    assert rb.fitted == pytest.approx(y, rel=1e-6)
    assert any("bound" in i for i in rb.quality_issues())
    # the nested start keeps bi at least as good as mono, and AICc prefers mono
    sel = fit_models(t, y * (1 + 0.01 * np.sin(np.arange(7))), weighting="relative")
    fm, fb = sel.fits[0], sel.fits[1]
    assert fb.wrss <= fm.wrss * (1 + 1e-9)
    assert sel.best.model == "mono"


# ------------------------------------------------------------ speed
def test_single_curve_is_fast():
    tac_metrics(T6, BRAIN, half_life_h=HL)   # warm-up (imports)
    best = math.inf
    for _ in range(3):
        t0 = time.process_time()
        tac_metrics(T6, BRAIN, half_life_h=HL)
        best = min(best, time.process_time() - t0)
    assert best < 0.25   # ~20 ms; it was ~0.8 s


@pytest.fixture(scope="module")
def sample_table():
    import spectrack
    from spectrack.phantom.sample import sample_study
    from spectrack.regions.formats.nifti import read_label_map

    s = sample_study()
    st = spectrack.load_study(s["path"])
    lab = read_label_map(s["labels"])
    return spectrack.quantify(st, lab, sensitivity_cps_per_mbq=30.0)


def test_whole_sample_study_is_fast_and_sensible(sample_table):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t0 = time.process_time()
        k = analyse_kinetics(sample_table, half_life_h=HL, quantities=("pct_id",))
        cpu = time.process_time() - t0
    assert cpu < 3.0   # ~1 s for 3 models x 2 corrections x every region; it was ~100 s
    m = k.metrics
    piv = m.pivot_table(index=["region", "correction"], columns="metric", values="value", dropna=False)
    dc = piv.xs("decay_corrected", level="correction")
    ph = piv.xs("physical", level="correction")
    assert len(dc) >= 15
    # every AUC is finite and within a few times the observed area, or NaN because nothing declines
    ok = dc["auc"].notna()
    assert (dc.loc[ok, "auc"] <= 3 * dc.loc[ok, "auc_observed"]).all()
    assert (dc.loc[ok, "terminal_rate_per_h"] > 0.01).all()
    assert (dc.loc[~ok, "terminal_rate_per_h"].isna()).all()
    nan_auc = m[(m.metric == "auc") & m.value.isna()]["method"]
    assert nan_auc.str.contains("not estimable").all()
    # curves that end near zero (last value < 3 % of the peak): the tail is negligible
    table = m.pivot_table(index="region", columns="metric", values="value")
    for region in ("brain", "canal_lumbar", "canal_sacral", "canal_cervical", "canal_thoracic", "cns",
                   "spinal_canal", "injection_site"):
        assert dc.loc[region, "auc"] == pytest.approx(dc.loc[region, "auc_observed"], rel=0.02), region
        assert dc.loc[region, "auc_observed"] <= dc.loc[region, "auc"]
    assert table.shape[0] == len(dc)
    # physical curves always have a TIA (physical decay at worst) and rates >= lambda_phys
    assert ph["tia"].notna().all() and (ph["terminal_rate_per_h"] >= LAM * (1 - 1e-12)).all()
    # every method says where its terminal rate came from
    tr = m[m.metric == "terminal_rate_per_h"]["method"]
    assert tr.str.contains("fit|log-linear|not estimable|peak").all()


# ------------------------------------------------- phantom truth: TIA within 10 %
DENSE_H = (0.1, 0.25, 0.5, 1, 2, 4, 6, 10, 16, 24)
#: misses of the preset protocols (0.5, 1, 2, 4, 6, 24 h) measured on the noise-free phantoms, with the reason
#: no integration of these six scans can see (the kinetics are not sampled there); the dense protocol passes
DEFAULT_PROTOCOL_MISSES = {
    ("rat", "canal_sacral"): "peaks before the first scan at 0.5 h",
    ("rat", "canal_lumbar"): "clears faster in the first 0.5 h than between the first two scans",
    ("rat", "canal_thoracic"): "peaks before the first scan at 0.5 h",
    ("rat", "bladder"): "voided at 5 h and 12 h, between scans",
    ("nhp", "bladder"): "voided at 5 h and 12 h, between scans",
    ("nhp", "liver"): "keeps rising between the 6 h and 24 h scans (-10.5 %)",
    ("nhp", "kidneys"): "keeps rising between the 6 h and 24 h scans (-10.6 %)",
    ("human", "brain"): "peaks between the 6 h and 24 h scans",
}


def _phantom_kinetics(root, preset, times_h, blur):
    from spectrack import run_study
    from spectrack.phantom import make_study

    kw = {}
    if blur:
        probe = make_study(root / "probe", preset=preset, formats=(), times_h=[1.0], seed=5)
        kw["psf_fwhm_mm"] = 4 * min(probe["geometry"]["canal"]["radius_mm"].values())   # FWHM = 2 canal diameters
    if times_h is not None:
        kw.update(times_h=list(times_h), frame_duration_s=300)
    truth = make_study(root / "s", preset=preset, formats=("nifti",), seed=5, **kw)
    st = {"labels": str(root / "s" / "labels.nii.gz"), "sensitivity_cps_per_mbq": truth["sensitivity_cps_per_mbq"],
          "uncertainty_draws": 0, "report": False}
    if blur:
        st.update(pvc=True, psf_fwhm_mm=kw["psf_fwhm_mm"])
    return truth, run_study(root / "s" / "nifti", st)


def _tia_errors(truth, res, quantity):
    from spectrack.phantom.kinetics_model import time_integrated_pct_id
    from spectrack.phantom.presets import PRESETS

    exact = time_integrated_pct_id(PRESETS[truth["preset"]].kinetics, truth["half_life_h"])
    m = res.kinetics.metrics
    m = m[(m.quantity == quantity) & (m.metric == "tia") & (m.correction == "physical")].set_index("region")
    out = {}
    for region in exact:
        if region not in m.index or max(tp["regions"][region]["pct_id"] for tp in truth["timepoints"]) < 1.0:
            continue
        out[region] = (m.loc[region, "value"] / exact[region] - 1, m.loc[region, "flag"])
    return out


def test_exact_phantom_integral_matches_quadrature():
    from scipy.integrate import quad

    from spectrack.phantom.kinetics_model import simulate_pct_id, time_integrated_pct_id
    from spectrack.phantom.presets import PRESETS

    model = PRESETS["nhp"].kinetics
    exact = time_integrated_pct_id(model, HL)
    for region in ("canal_lumbar", "brain", "bladder"):
        def f(t):
            return simulate_pct_id(model, [t])[region][0] * math.exp(-LAM * t)
        num = sum(quad(f, a, b, limit=200)[0] for a, b in ((0, 5), (5, 12), (12, 48), (48, 400)))
        assert exact[region] == pytest.approx(num, rel=1e-6), region
    # everything ever injected decays: the sum over compartments is 100 %ID x T_phys / ln 2
    assert sum(exact.values()) == pytest.approx(100 / LAM, rel=1e-9)


@pytest.mark.parametrize("preset", ["rat", "nhp", "human"])
def test_tia_within_10_percent_on_noise_free_phantoms(preset, tmp_path):
    """Every region holding >= 1 %ID: TIA within 10 % of the phantom's exact integral."""
    truth, res = _phantom_kinetics(tmp_path / "d", preset, DENSE_H, blur=False)
    err = _tia_errors(truth, res, "pct_id")
    assert len(err) >= 10
    print(preset, "dense protocol:", {r: f"{e:+.1%}" for r, (e, _) in err.items()})
    bad = {r: e for r, (e, _) in err.items() if not abs(e) <= 0.10}
    assert not bad
    # the preset's own six scans: the same holds except where the scans do not sample the kinetics
    truth, res = _phantom_kinetics(tmp_path / "p", preset, None, blur=False)
    err = _tia_errors(truth, res, "pct_id")
    print(preset, "preset protocol:", {r: f"{e:+.1%}" for r, (e, _) in err.items()})
    for region, (e, flag) in err.items():
        if (preset, region) in DEFAULT_PROTOCOL_MISSES:
            assert 0.10 < abs(e) < 0.2, (region, e)
        else:
            assert abs(e) <= 0.10, (region, e)
    # a region whose area before the first scan is a large share says so
    if preset == "rat":
        for region in ("canal_sacral", "canal_lumbar", "canal_thoracic"):
            assert "before the first scan" in err[region][1]


@pytest.mark.parametrize("preset", ["rat", "nhp", "human"])
def test_tia_within_10_percent_with_recovery_correction_on_blurred_phantoms(preset, tmp_path):
    """PSF FWHM twice the canal diameter: uncorrected canal TIAs are 70-90 % low; the kinetics of the
    recovery-corrected curves (quantity pct_id_pvc) are within 10 % for every region holding >= 1 %ID."""
    truth, res = _phantom_kinetics(tmp_path, preset, DENSE_H, blur=True)
    raw = _tia_errors(truth, res, "pct_id")
    pvc = _tia_errors(truth, res, "pct_id_pvc")
    print(preset, "PVC:", {r: f"{e:+.1%}" for r, (e, _) in pvc.items()})
    for lvl in ("canal_lumbar", "canal_thoracic", "canal_cervical"):
        assert raw[lvl][0] < -0.5
    # the remainder (body outline minus every region) collects the GTM's own errors (e.g. human: -92 %): it is
    # a recovery-correction limit, not a kinetics one, and is left out here
    bad = {r: e for r, (e, _) in pvc.items() if r != "remainder" and not abs(e) <= 0.10}
    assert not bad
    assert len(pvc) >= 10
