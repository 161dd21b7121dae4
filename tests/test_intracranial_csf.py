"""Intracranial CSF kept apart from brain tissue (issue 13, Neuraxis), against phantom truth.

The opt-in phantom (``intracranial_csf=True``) draws two lateral ventricles and a
cisterna magna with CSF HU as ``csf_intracranial``, with their own kinetic
compartment; the default phantom is unchanged and its automatic regions keep
one ``brain``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import simpson

from spectrack.phantom import make_phantom, make_study
from spectrack.phantom.kinetics_model import COMPARTMENTS, simulate_pct_id, time_integrated_pct_id
from spectrack.phantom.presets import PRESETS
from spectrack.pipeline import run_study
from spectrack.regions.auto.ct import segment_ct
from spectrack.regions.auto.organs import intracranial_csf
from spectrack.regions.vocabulary import CANAL_LEVELS, GROUPS, INDEX, VOCABULARY

IC, BRAIN = INDEX["csf_intracranial"], INDEX["brain"]


def _dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


# ------------------------------------------------------------------ vocabulary
def test_vocabulary_has_csf_intracranial_and_its_group():
    assert VOCABULARY[17] == "csf_intracranial" and INDEX["csf_intracranial"] == 17
    assert GROUPS["csf_space"] == ("csf_intracranial",) + CANAL_LEVELS
    assert GROUPS["cns"] == ("brain",) + CANAL_LEVELS  # unchanged: a group reports only when all members are


# ------------------------------------------------------------------ kinetics
def test_default_kinetics_are_the_old_model_rate_for_rate():
    for name, pre in PRESETS.items():
        k = pre.kinetics
        assert k.compartments == COMPARTMENTS and "csf_intracranial" not in k.compartments
        assert ("canal_cervical", "brain") in k.rates_per_h
        ic = pre.kinetics_intracranial_csf
        assert ("canal_cervical", "brain") not in ic.rates_per_h
        assert ic.rates_per_h[("canal_cervical", "csf_intracranial")] == k.rates_per_h[("canal_cervical", "brain")]
        # every rate of the default model not touching the canal-brain exchange is the same in the opt-in one
        for (a, b), v in k.rates_per_h.items():
            if {a, b} != {"canal_cervical", "brain"}:
                assert ic.rates_per_h[(a, b)] == v, (name, a, b)


@pytest.mark.parametrize("preset", ["rat", "nhp", "human"])
def test_intracranial_compartment_conserves_dose_and_integrates_exactly(preset):
    m = PRESETS[preset].kinetics_intracranial_csf
    t = np.array([0.0, 0.5, 2.0, 6.0, 24.0])
    p = simulate_pct_id(m, t)
    total = sum(p[c] for c in m.compartments)
    np.testing.assert_allclose(total, 100.0, atol=1e-9)
    assert p["csf_intracranial"][0] == 0.0 and p["csf_intracranial"][2] > 0.5  # fed by rostral CSF flow
    # exact TIA against a fine quadrature of the decaying curve
    hl = 6.0067
    tia = time_integrated_pct_id(m, hl)["csf_intracranial"]
    tt = np.linspace(0.0, 150.0, 3001)  # no void moves this compartment: a smooth curve, Simpson is enough
    y = simulate_pct_id(m, tt)["csf_intracranial"] * np.exp(-math.log(2) / hl * tt)
    assert tia == pytest.approx(simpson(y, x=tt), rel=1e-5)


# ------------------------------------------------------------------ phantom
@pytest.fixture(scope="module")
def pairs():
    out = {}
    for preset in ("rat", "nhp", "human"):
        off = make_phantom(preset, seed=4, times_h=[1.0, 4.0], units="bqml")
        on = make_phantom(preset, seed=4, times_h=[1.0, 4.0], units="bqml", intracranial_csf=True)
        out[preset] = (off, on)
    return out


@pytest.mark.parametrize("preset", ["rat", "nhp", "human"])
def test_opt_in_changes_only_the_brain_and_its_csf(pairs, preset):
    off, on = pairs[preset]
    assert "intracranial_csf" not in off.geometry and "intracranial_csf" not in off.truth["generator"]["arguments"]
    assert on.truth["generator"]["arguments"]["intracranial_csf"] is True
    assert "csf_intracranial" not in off.truth["region_names"].values()
    assert "csf_space" not in off.truth["groups"] and "csf_space" in on.truth["groups"]
    g_off = {k: v for k, v in off.geometry.items()}
    g_on = {k: v for k, v in on.geometry.items() if k != "intracranial_csf"}
    assert g_on == g_off  # no extra random draw: the rest of the anatomy is the same
    for a, b in zip(off.timepoints, on.timepoints):
        la, lb = a.labels_ct.image.array, b.labels_ct.image.array
        changed = la != lb
        assert changed.any()
        assert set(np.unique(la[changed])) == {BRAIN} and set(np.unique(lb[changed])) == {IC}
        # CSF HU where the intracranial CSF is drawn, brain HU elsewhere in the brain
        ct = b.ct.array
        assert np.all(ct[lb == IC] == 5) and np.all(ct[lb == BRAIN] == 35)
        np.testing.assert_array_equal(a.ct.array[~changed], ct[~changed])
        assert "csf_intracranial" not in a.labels_ct.names.values()
        assert b.labels_ct.names[IC] == "csf_intracranial"


@pytest.mark.parametrize("preset", ["rat", "nhp", "human"])
def test_opt_in_truth_is_its_own_compartment(pairs, preset):
    _, on = pairs[preset]
    model = simulate_pct_id(PRESETS[preset].kinetics_intracranial_csf, on.truth["generator"]["arguments"]["times_h"])
    for n, tp in enumerate(on.truth["timepoints"]):
        r = tp["regions"]["csf_intracranial"]
        assert r["n_voxels"] > 0 and r["model_pct_id"] == pytest.approx(model["csf_intracranial"][n], rel=1e-12)
        assert r["pct_id"] == pytest.approx(model["csf_intracranial"][n], rel=1e-3, abs=1e-4)  # quantisation
        assert tp["groups"]["csf_space"]["pct_id"] == pytest.approx(
            sum(tp["regions"][m]["pct_id"] for m in GROUPS["csf_space"]), rel=1e-12)
        assert tp["total_pct_id"] == pytest.approx(100.0, abs=0.05)


# ------------------------------------------------------------------ automatic regions
@pytest.mark.parametrize("preset", ["rat", "nhp", "human"])
def test_auto_regions_find_the_intracranial_csf(pairs, preset):
    off, on = pairs[preset]
    tp = on.timepoints[0]
    lab = segment_ct(tp.ct, preset=preset)
    assert lab.image.array.shape == tp.labels_ct.image.array.shape
    got, truth = lab.image.array, tp.labels_ct.image.array
    d_ic = _dice(got == IC, truth == IC)
    d_brain = _dice(got == BRAIN, truth == BRAIN)
    print(f"\n  [csf_intracranial] {preset}: Dice csf_intracranial {d_ic:.3f}, brain {d_brain:.3f}")
    assert lab.names[IC] == "csf_intracranial"
    assert d_ic >= 0.7 and d_brain >= 0.9
    meta = lab.image.meta["auto_regions"]
    assert meta["csf_intracranial"]["separated"] is True
    assert not any("brain includes intracranial CSF" in n for n in meta["notes"])
    # the default phantom: one brain, and the metadata says why
    lab0 = segment_ct(off.timepoints[0].ct, preset=preset)
    assert "csf_intracranial" not in lab0.names.values()
    assert "brain includes intracranial CSF: none separable on CT" in lab0.image.meta["auto_regions"]["notes"]
    assert lab0.image.meta["auto_regions"]["csf_intracranial"]["separated"] is False
    assert not lab0.warnings or all("csf" not in w.lower() for w in lab0.warnings)


def test_noisy_ct_at_a_ct_resolution_still_separates():
    ph = make_phantom("nhp", seed=2, times_h=[1.0], units="bqml", noise=True, ct_refine=3, intracranial_csf=True)
    tp = ph.timepoints[0]
    lab = segment_ct(tp.ct, preset="nhp")
    d = _dice(lab.image.array == IC, tp.labels_ct.image.array == IC)
    print(f"\n  [csf_intracranial] nhp noisy CT (10 HU) at 1.4 mm: Dice {d:.3f}")
    assert d >= 0.7


def test_intracranial_csf_keeps_deep_and_foramen_components_only():
    hu = np.full((20, 20, 20), 35.0, np.float32)
    brain = np.zeros(hu.shape, bool)
    brain[2:18, 2:18, 2:18] = True
    canal = np.zeros(hu.shape, bool)
    canal[0:2, 9:11, 9:11] = True          # the canal reaching the brain from below
    hu[8:11, 8:11, 8:11] = 5.0             # a ventricle deep inside
    hu[2:4, 9:12, 9:12] = 5.0              # a cistern at the canal's end (on the brain's edge)
    hu[9:11, 2, 5:8] = 5.0                 # convexity CSF in the outer layer: stays brain
    hu[14, 14, 14] = 5.0                   # one voxel: noise
    m, info = intracranial_csf(hu, brain, canal, (1.0, 1.0, 1.0), foramen_reach_mm=2.0)
    assert info["separated"] and len(info["components"]) == 2
    assert m[8:11, 8:11, 8:11].all() and m[2:4, 9:12, 9:12].all()
    assert not m[9:11, 2, 5:8].any() and not m[14, 14, 14]
    assert int(m.sum()) == 27 + 18
    # a brain that reads as fluid (wrong calibration): not separated
    m2, info2 = intracranial_csf(np.full(hu.shape, 5.0, np.float32), brain, canal, (1.0, 1.0, 1.0),
                                 foramen_reach_mm=2.0)
    assert not m2.any() and not info2["separated"] and "calibration" in info2["note"]


# ------------------------------------------------------------------ whole pipeline
@pytest.mark.parametrize("preset", ["nhp", "human"])
def test_run_study_pct_id_of_brain_and_intracranial_csf(tmp_path, preset):
    truth = make_study(tmp_path / "study", preset, seed=5, times_h=[1.0, 4.0], formats=("nifti",), units="bqml",
                       intracranial_csf=True)
    res = run_study(tmp_path / "study" / "nifti", {"auto_regions": preset, "uncertainty_draws": 0, "report": False})
    t = res.table
    for n, tp in enumerate(truth["timepoints"]):
        for name in ("brain", "csf_intracranial"):
            got = float(t[(t.timepoint == n) & (t.region == name)]["pct_id"].iloc[0])
            want = tp["regions"][name]["pct_id"]
            print(f"\n  [csf_intracranial] {preset} t={tp['time_h']:.1f} h {name}: {got:.4f} %ID vs truth "
                  f"{want:.4f} ({100 * (got / want - 1):+.2f} %)")
            assert got == pytest.approx(want, rel=0.03, abs=0.005), (name, n)
        got = float(t[(t.timepoint == n) & (t.region == "csf_space")]["pct_id"].iloc[0])
        assert got == pytest.approx(tp["groups"]["csf_space"]["pct_id"], rel=0.03)
