"""Neuraxis profile (spectrack.regions.neuraxis) against phantoms with a known tracer front."""

import numpy as np
import pandas as pd
import pytest

from spectrack.phantom import make_phantom, make_study
from spectrack.regions.auto.canal import dilate_mm
from spectrack.regions.auto.ct import segment_ct, segment_study
from spectrack.regions.neuraxis import (FRONT_COLUMNS, PROFILE_COLUMNS, Centreline, centreline_from_labels,
                                        neuraxis_profile, profile_study, tracer_front, write_profile)
from spectrack.regions.vocabulary import CANAL_LEVELS, INDEX


def _activity(tp):
    """MBq per voxel at scan start of a phantom time point (stored values x the known calibration)."""
    t = tp.truth
    return tp.spect.with_array(tp.spect.array / t["value_scale"] * t["mbq_per_stored_unit"], units="MBq")


def _canal_truth_pct(tp):
    return sum(tp.truth["regions"][lv]["pct_id_uncorrected"] for lv in CANAL_LEVELS)


# ------------------------------------------------------------------ unit
def test_centreline_geometry():
    t = np.linspace(0, np.pi / 2, 400)
    arc = Centreline(np.column_stack([100 * np.cos(t), np.zeros_like(t), 100 * np.sin(t)]))
    assert arc.length_mm == pytest.approx(50 * np.pi, rel=1e-4)
    s, d = arc.project([[0.0, 0.0, -5.0], [110 * np.cos(0.3), 0.0, 110 * np.sin(0.3)]])
    assert d[1] == pytest.approx(10.0, abs=0.01) and s[1] == pytest.approx(30.0, abs=0.1)
    assert s[0] == 0.0 and d[0] == pytest.approx(np.hypot(100.0, 5.0), abs=0.01)  # beyond the start
    r = arc.resampled(5.0)
    assert np.allclose(np.diff(r.arclength_mm), r.length_mm / (len(r.points_mm) - 1), rtol=1e-3)
    np.testing.assert_allclose(arc.tangent_at([0.0])[0], [0, 0, 1], atol=5e-3)
    m = np.eye(4)
    m[:3, 3] = (1, 2, 3)
    assert np.allclose(arc.transformed(m).points_mm - arc.points_mm, [1, 2, 3])
    assert np.allclose(Centreline.from_json(arc.to_json()).points_mm, arc.points_mm, atol=1e-4)
    with pytest.raises(ValueError):
        Centreline([[0, 0, 0]])


def test_tracer_front_rules():
    base = dict(timepoint=0, time_h=1.0)
    d = np.arange(-4.0, 12.0, 2.0)  # slab centres, injection at 0
    p = pd.DataFrame({**base, "distance_mm": d, "position_mm": d + 10.0,
                      "pct_id_per_ml": [0, 0, 4, 4, 2, 1, 0, 0], "pct_id_per_cm": [0, 0, 4, 4, 2, 1, 0, 0]})
    # 50 % of the peak (4) is 2: reached at distance 4 exactly
    f = tracer_front(p)
    assert f["front_distance_mm"].iloc[0] == pytest.approx(4.0) and not f["reached_end"].iloc[0]
    assert f["front_position_mm"].iloc[0] == pytest.approx(14.0)
    assert list(f.columns) == list(FRONT_COLUMNS)
    # 10 %: 0.4 between distance 6 (1) and 8 (0): 6 + 2 * 0.6
    assert tracer_front(p, fraction=0.1)["front_distance_mm"].iloc[0] == pytest.approx(7.2)
    # reference = value at the injection level (slab at distance 0: 4)
    assert tracer_front(p, reference="injection")["front_distance_mm"].iloc[0] == pytest.approx(4.0)
    # empty (NaN) slabs are skipped; a profile that never falls reaches the end
    q = p.assign(pct_id_per_ml=[0, 0, 4, np.nan, 4, 4, 4, 4])
    fq = tracer_front(q)
    assert fq["reached_end"].iloc[0] and fq["front_distance_mm"].iloc[0] == pytest.approx(10.0)
    with pytest.raises(ValueError):
        tracer_front(p, fraction=1.5)


# ------------------------------------------------------- phantom fronts
FRONT_CASES = [
    ("rat", 41, [15.0, 50.0, 110.0], {}),
    ("nhp", 42, [20.0, 70.0, 160.0], {}),
    ("human", 43, [30.0, 120.0, 300.0], {}),
    ("nhp", 44, [25.0, 90.0, 600.0], dict(spect_shape=(32, 27, 100),
                                          motion=[None, (4.0, -3.0, 5.0, 2.0, -3.0, 2.5),
                                                  (-3.0, 2.0, -4.0, -2.5, 2.0, -3.0)])),
    ("human", 45, [40.0, 200.0], dict(spect_shape=(54, 37, 138), times_h=[0.5, 2.0])),
]


@pytest.mark.parametrize("preset,seed,fronts,kw", FRONT_CASES, ids=[f"{c[0]}-{c[1]}" for c in FRONT_CASES])
def test_front_within_one_voxel(preset, seed, fronts, kw, capsys):
    kw = dict(kw)
    times = kw.pop("times_h", [0.5, 1.0, 2.0][:len(fronts)])
    ph = make_phantom(preset, seed=seed, times_h=times, units="bqml", tracer_front_mm=fronts, **kw)
    moved = "motion" in kw
    # automatic regions of the reference scan (no motion), or each scan's truth labels (moved scans)
    auto = None if moved else segment_ct(ph.timepoints[0].ct, preset=preset, spect=ph.timepoints[0].spect)
    voxel = float(ph.timepoints[0].spect.spacing_mm.max())
    lines = []
    for tp in ph.timepoints:
        tf = tp.truth["tracer_front"]
        labels = tp.labels_spect if moved else auto.resampled_to(tp.spect)
        prof = neuraxis_profile(_activity(tp), labels, injected_mbq=ph.truth["injected_mbq"], time_h=tp.time_h,
                                timepoint=tp.index)
        assert list(prof.columns) == list(PROFILE_COLUMNS)
        fr = tracer_front(prof).iloc[0]
        # the canal's activity is all in the profile
        canal = np.isin(labels.image.array, [INDEX[lv] for lv in CANAL_LEVELS])
        assert prof["mbq"].sum() == pytest.approx(float(_activity(tp).array[canal].sum(dtype=np.float64)), rel=1e-6)
        if moved:
            assert prof["pct_id"].sum() == pytest.approx(_canal_truth_pct(tp), rel=1e-6)
        if tf["front_beyond_canal"]:
            assert fr["reached_end"]
            lines.append(f"{tf['distance_mm']:.0f} mm: beyond the skull base, reached_end")
            continue
        err = fr["front_distance_mm"] - tf["distance_mm"]
        lines.append(f"{tf['distance_mm']:.0f} mm: {fr['front_distance_mm']:.1f} ({err:+.2f} mm, "
                     f"{err / voxel:+.2f} voxel)")
        assert abs(err) <= voxel, (preset, seed, tf["distance_mm"], fr["front_distance_mm"])
    with capsys.disabled():
        print(f"\n  [neuraxis front] {preset} seed {seed} voxel {voxel:.1f} mm "
              f"({'truth labels, moved scans' if moved else 'automatic regions'}): " + "; ".join(lines))


def test_margin_and_centreline_sources():
    ph = make_phantom("nhp", seed=46, times_h=[1.0], units="bqml", tracer_front_mm=[80.0])
    tp = ph.timepoints[0]
    act, lab = _activity(tp), tp.labels_spect
    base = neuraxis_profile(act, lab, injected_mbq=74.0)
    wide = neuraxis_profile(act, lab, injected_mbq=74.0, margin_mm=5.0)
    a = lab.image.array
    canal = np.isin(a, [INDEX[lv] for lv in CANAL_LEVELS])
    allowed = np.isin(a, [0, INDEX["remainder"], INDEX["vertebrae"], INDEX["skull"]])
    ring = dilate_mm(canal, 5.0, act.spacing_mm[::-1]) & ~canal & allowed
    assert wide["mbq"].sum() == pytest.approx(base["mbq"].sum() + act.array[ring].sum(), rel=1e-9)
    assert (wide["n_voxels"] >= base["n_voxels"]).all()
    # concentration counts the margin's activity back into the canal's volume
    np.testing.assert_allclose(wide["canal_ml"], base["canal_ml"])
    # the injection level comes from the injection_site region, else it is the caudal end
    assert base.attrs["injection_source"].startswith("injection_site")
    no_site = lab.__class__(lab.image.with_array(np.where(a == INDEX["injection_site"], INDEX["remainder"], a)),
                            dict(lab.names))
    p0 = neuraxis_profile(act, no_site, injected_mbq=74.0)
    assert p0.attrs["injection_position_mm"] == 0.0
    given = neuraxis_profile(act, lab, injected_mbq=74.0, injection_position_mm=50.0)
    np.testing.assert_allclose(given["distance_mm"], given["position_mm"] - 50.0)
    # centreline rebuilt from the labels agrees with the CT one stored by the automatic regions
    auto = segment_ct(tp.ct, preset="nhp", spect=tp.spect)
    stored, rebuilt = centreline_from_labels(auto), centreline_from_labels(auto, use_stored=False)
    assert rebuilt.length_mm == pytest.approx(stored.length_mm, rel=0.03)
    assert stored.project(rebuilt.points_mm)[1].max() < 0.75 * tp.spect.spacing_mm.max()
    with pytest.raises(ValueError):
        neuraxis_profile(act, lab.__class__(lab.image.with_array(np.zeros_like(a)), {}), injected_mbq=74.0)


def test_profile_study_from_the_pipeline(tmp_path, capsys):
    """Loaded study -> automatic regions -> quantify -> profile_study -> files, as the pipeline runs it."""
    from spectrack.load import load_study
    from spectrack.quantification import quantify

    fronts = [20.0, 60.0, 120.0]
    truth = make_study(tmp_path / "s", "nhp", seed=47, times_h=[0.5, 1.0, 2.0], formats=("nifti",), units="bqml",
                       tracer_front_mm=fronts)
    study = load_study(tmp_path / "s" / "nifti")
    labels = segment_study(study, preset="nhp")
    table, details = quantify(study, labels, return_details=True)
    prof = profile_study(study, details.labels_per_timepoint, details.calibrations, details.params)
    assert sorted(prof["timepoint"].unique()) == [0, 1, 2]
    assert len(prof.attrs["timepoints"]) == 3
    # the profile holds the canal's %ID of the region table
    for n in range(3):
        canal = table[(table.timepoint == n) & (table.region == "spinal_canal")]["pct_id"].iloc[0]
        assert prof[prof.timepoint == n]["pct_id"].sum() == pytest.approx(canal, rel=1e-6)
    front = tracer_front(prof)
    voxel = float(study.timepoints[0].emission.image.spacing_mm.max())
    errs = front["front_distance_mm"].to_numpy() - np.array(fronts)
    with capsys.disabled():
        print(f"\n  [neuraxis front] pipeline nhp seed 47: errors {np.round(errs, 2).tolist()} mm (voxel {voxel} mm)")
    assert np.all(np.abs(errs) <= voxel)
    assert np.allclose(front["time_h"], [tp["time_h"] for tp in truth["timepoints"]])
    # a time point without canal voxels (e.g. out of the field of view) is skipped with a warning
    lab2 = details.labels_per_timepoint[2]
    in_canal = np.isin(lab2.image.array, [INDEX[lv] for lv in CANAL_LEVELS])
    no_canal = lab2.__class__(lab2.image.with_array(np.where(in_canal, INDEX["remainder"], lab2.image.array)),
                              dict(lab2.names))
    part = profile_study(study, details.labels_per_timepoint[:2] + [no_canal], details.calibrations, details.params)
    assert sorted(part["timepoint"].unique()) == [0, 1] and "time point 2" in part.attrs["warnings"][0]
    out = write_profile(prof, tmp_path / "out")
    assert set(out) == {"neuraxis_profile.csv", "neuraxis_front.csv", "neuraxis_spread.csv", "neuraxis_profile.png"}
    assert out["neuraxis_profile.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    back = pd.read_csv(out["neuraxis_profile.csv"])
    assert list(back.columns) == list(PROFILE_COLUMNS) and len(back) == len(prof)
    assert pd.read_csv(out["neuraxis_front.csv"])["front_distance_mm"].to_numpy() == pytest.approx(
        front["front_distance_mm"].to_numpy())


# ------------------------------------------------------------------ no voxel comb, and rostral spread
def test_oblique_canal_profile_follows_the_voxels_without_a_comb():
    """A thin straight canal running obliquely through the grid, uniform activity per voxel. Truth: every
    voxel supersampled 5x5x5 and each sub-point placed on the centreline (what the voxels hold along it). The
    profile's slabs match it within 10 %; assigning whole voxels to their nearest slab is off by 25 % (the comb)."""
    from spectrack.geometry import Image
    from spectrack.regions.labelmap import LabelMap

    g = Image(np.zeros((60, 30, 30)), (0, 0, 0), (2.0, 2.0, 2.0))
    p = g.voxel_centres_mm()
    a = np.array([30.0, 30.0, 10.0])
    axis = np.array([0.25, 0.15, 1.0]) / np.linalg.norm([0.25, 0.15, 1.0])
    rel = p - a
    t = rel @ axis
    r = np.linalg.norm(rel - t[..., None] * axis, axis=-1)
    canal = (r <= 3.0) & (t >= 0) & (t <= 100.0)
    lab = np.where(canal, INDEX["canal_thoracic"], 0).astype(np.int32)
    labels = LabelMap(g.with_array(lab, units="label"), {INDEX["canal_thoracic"]: "canal_thoracic"})
    prof = neuraxis_profile(g.with_array(canal.astype(float), units="MBq"), labels, injected_mbq=100.0)
    cl = centreline_from_labels(labels)
    step = prof.attrs["step_mm"]
    xyz = g.index_to_world_mm(np.argwhere(canal)[:, ::-1])
    sub = (np.arange(5) + 0.5) / 5 - 0.5
    off = np.stack(np.meshgrid(sub, sub, sub, indexing="ij"), -1).reshape(-1, 3) * 2.0
    s_sub, _ = cl.project((xyz[:, None, :] + off[None]).reshape(-1, 3))
    truth = np.histogram(s_sub, bins=np.arange(len(prof) + 1) * step)[0] / 125.0
    mid = slice(5, len(prof) - 5)
    got = prof["mbq"].to_numpy()
    assert got.sum() == pytest.approx(canal.sum(), rel=1e-9)
    assert np.max(np.abs(got[mid] / truth[mid] - 1)) < 0.10
    s_vox, _ = cl.project(xyz)
    nearest = np.bincount(np.clip(np.floor(s_vox / step).astype(int), 0, len(prof) - 1), minlength=len(prof))
    assert np.max(np.abs(nearest[mid] / truth[mid] - 1)) > 0.2  # the comb this avoids


def test_spread_measures_follow_a_known_front():
    """Tracer uniform from the injection level to a known front (40, 80, 120 mm at 0.5, 1, 1.5 h): the
    leading edge (10 % of the activity beyond it) is about 0.9 x the front, the spread rate about 0.9 x 80 mm/h,
    and the activity reaches the skull base only when the front does."""
    from spectrack.regions.neuraxis import SPREAD_COLUMNS, spread_measures

    fronts, times = [40.0, 80.0, 120.0, 1000.0], [0.5, 1.0, 1.5, 3.0]
    ph = make_phantom("nhp", seed=47, times_h=times, units="bqml", tracer_front_mm=fronts)
    frames = [neuraxis_profile(_activity(tp), tp.labels_spect, injected_mbq=ph.truth["injected_mbq"],
                               time_h=tp.time_h, timepoint=tp.index) for tp in ph.timepoints]
    prof = pd.concat(frames, ignore_index=True)
    sp = spread_measures(prof)
    assert list(sp.columns) == list(SPREAD_COLUMNS)
    voxel = float(ph.timepoints[0].spect.spacing_mm.max())
    for f, edge in zip(fronts[:3], sp.leading_edge_mm[:3]):
        assert edge == pytest.approx(0.9 * f, abs=voxel + 0.1 * f), (f, edge)
    assert sp.attrs["spread_rate_mm_per_h"] == pytest.approx(0.9 * 80.0, rel=0.15)
    assert sp.skull_base_pct_id[:3].max() < 0.05 * sp.skull_base_pct_id.iloc[3]  # nothing there before
    assert 1.5 < sp.attrs["arrival_time_h"] <= 3.0 and not sp.attrs["arrival_before_first_scan"]
    # fractions rostral of the levels only grow as the front moves up
    assert np.all(np.diff(sp.rostral_of_lumbar.to_numpy()) >= -1e-9)
