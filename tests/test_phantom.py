"""The digital phantom: determinism, exact truth, geometry of the written files, kinetics."""

import datetime as dt
import json
import math

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from spectrack import physics
from spectrack.align.resample import resample_labels
from spectrack.geometry import from_nifti_affine, from_sitk
from spectrack.phantom import PRESETS, make_geometry, make_phantom, make_study, simulate_pct_id
from spectrack.phantom.anatomy import canal_arclength_mm
from spectrack.regions.formats.nifti import read_label_map
from spectrack.regions.vocabulary import CANAL_LEVELS, INDEX, VOCABULARY

SMALL = dict(preset="rat", spect_shape=(23, 19, 66))  # 4.2 mm rat: fast
MOTION = [None, (2.0, -1.5, 3.0, 1.0, -2.0, 2.5)]


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """Two small written studies: counts + positive step, Bq/mL + negative step (both moved, CT refined 3x)."""
    out = {}
    for key, kw in {"pos_counts": dict(units="counts"),
                    "neg_bqml": dict(units="bqml", negative_slice_step=True)}.items():
        d = tmp_path_factory.mktemp(key)
        truth = make_study(d, times_h=[0.5, 25.0], ct_refine=3, motion=MOTION, **SMALL, **kw)
        ph = make_phantom(times_h=[0.5, 25.0], ct_refine=3, motion=MOTION, **SMALL, **kw)
        out[key] = (d, truth, ph)
    return out


def _nm_file(d, tp):
    return d / tp["files"]["dicom_spect"]["file"]


# ------------------------------------------------------------------ determinism
def test_same_arguments_give_identical_files(tmp_path):
    kw = dict(times_h=[1.0], **SMALL)
    make_study(tmp_path / "a", **kw)
    make_study(tmp_path / "b", **kw)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b
    assert len(files_a) > 60
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_seed_changes_geometry_and_jitter_zero_is_nominal():
    g0, g1 = make_geometry("nhp", seed=0), make_geometry("nhp", seed=1)
    assert g0["organs"]["liver"] != g1["organs"]["liver"]
    assert g0["pose"] != g1["pose"]
    assert make_geometry("nhp", seed=0) == g0
    nominal = make_geometry("nhp", seed=5, jitter=0.0)
    assert nominal["pose"]["rotation_deg"] == [0.0, 0.0, 0.0]
    assert nominal["brain"]["semi_axes_mm"] == [26.0, 30.0, 21.0]


# ------------------------------------------------------------------ truth
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_truth_is_consistent_with_physics(preset):
    ph = make_phantom(preset, times_h=[0.5, 4.0, 24.0])
    t = ph.truth
    hl = t["half_life_h"]
    assert hl == 6.0067
    inj = dt.datetime.fromisoformat(t["injection_datetime"])
    for tp in t["timepoints"]:
        t_h = (dt.datetime.fromisoformat(tp["acquisition_start"]) - inj).total_seconds() / 3600
        assert tp["time_h"] == pytest.approx(t_h, abs=1e-12)
        df = float(physics.decay_factor(t_h, hl))
        assert tp["decay_factor_to_injection"] == pytest.approx(df, rel=1e-12)
        assert tp["in_frame_factor"] == pytest.approx(physics.in_frame_factor(tp["duration_s"] / 3600, hl), rel=1e-12)
        # at most half a stored unit of quantisation per region
        bound = 100 * 0.5 * len(VOCABULARY) * tp["mbq_per_stored_unit"] * df / t["injected_mbq"]
        assert tp["in_body_pct_id"] + tp["excreted_pct_id"] == pytest.approx(100.0, abs=bound)
        assert tp["total_pct_id"] == pytest.approx(100.0, abs=bound)
        for name, r in tp["regions"].items():
            assert r["n_voxels"] > 0, f"{preset}: {name} has no SPECT voxel"
            assert r["activity_mbq_decay_corrected"] == pytest.approx(r["activity_mbq"] * df, rel=1e-12)
            assert r["pct_id"] == pytest.approx(100 * r["activity_mbq"] * df / t["injected_mbq"], rel=1e-12)
            assert r["pct_id_uncorrected"] == pytest.approx(r["pct_id"] / df, rel=1e-12)
            assert r["pct_id_per_ml"] == pytest.approx(r["pct_id"] / r["volume_ml"], rel=1e-12)
            assert r["activity_mbq"] == pytest.approx(r["stored_sum"] * tp["mbq_per_stored_unit"], rel=1e-12)
            assert abs(r["pct_id"] - r["model_pct_id"]) <= 100 * 0.5 * tp["mbq_per_stored_unit"] * df / t[
                "injected_mbq"] + 1e-12
            assert r["image_pct_id"] == pytest.approx(r["pct_id"], rel=1e-12)  # no PSF, no noise


def test_default_scans_cross_midnight():
    tps = make_phantom("nhp").timepoints
    starts = [tp.acquisition_start for tp in tps]
    ends = [s + dt.timedelta(seconds=tp.duration_s) for s, tp in zip(starts, tps)]
    assert any(s.date() != e.date() for s, e in zip(starts, ends))
    assert starts[-1].date() > starts[0].date()
    assert 4 <= len(tps) <= 8


# ------------------------------------------------------------------ grids and labels
@pytest.mark.parametrize("key", ["pos_counts", "neg_bqml"])
def test_ct_labels_nearest_neighbour_equal_spect_labels(studies, key):
    _, _, ph = studies[key]
    for tp in ph.timepoints:
        assert tp.ct.array.shape == tuple(3 * n for n in tp.spect.array.shape)
        on_spect = resample_labels(tp.labels_ct.image, tp.spect)
        np.testing.assert_array_equal(on_spect.array, tp.labels_spect.image.array)
    # the subject moved between the scans
    a, b = (tp.labels_spect.image.array for tp in ph.timepoints)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("key", ["pos_counts", "neg_bqml"])
def test_simpleitk_reads_the_intended_geometry(studies, key):
    d, truth, ph = studies[key]
    for tp_t, tp in zip(truth["timepoints"], ph.timepoints):
        nm = from_sitk(sitk.ReadImage(str(_nm_file(d, tp_t))))
        assert nm.array.shape == tp.spect.array.shape
        assert np.abs(nm.voxel_centres_mm() - tp.spect.voxel_centres_mm()).max() < 1e-3
        assert np.sign(nm.direction[2, 2]) == (-1 if key == "neg_bqml" else 1)
        np.testing.assert_allclose(nm.array, tp.spect.array, rtol=1e-6)
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(d / "dicom"), tp_t["files"]["dicom_ct"]["series_uid"]))
        ct = from_sitk(reader.Execute())
        assert ct.array.shape == tp.ct.array.shape
        assert np.abs(ct.voxel_centres_mm() - tp.ct.voxel_centres_mm()).max() < 1e-3
        np.testing.assert_array_equal(ct.array, tp.ct.array)


# ------------------------------------------------------------------ DICOM content
@pytest.mark.parametrize("key", ["pos_counts", "neg_bqml"])
def test_stored_values_recover_the_truth(studies, key):
    d, truth, _ = studies[key]
    labels = read_label_map(d / "labels.nii.gz")
    for tp in truth["timepoints"]:
        ds = pydicom.dcmread(_nm_file(d, tp))
        rot = ds.RotationInformationSequence[0]
        dur_s = float(rot.ActualFrameDuration) * int(rot.NumberOfFramesInRotation) * int(ds.NumberOfRotations) / 1000
        assert dur_s == tp["duration_s"]
        iff = physics.in_frame_factor(dur_s / 3600, float(ds.RadiopharmaceuticalInformationSequence[0]
                                                             .RadionuclideHalfLife) / 3600)
        stored = ds.pixel_array.astype(np.float64)
        if key == "pos_counts":
            assert ds.Units == "CNTS" and "RescaleSlope" not in ds
            mbq = stored / (truth["sensitivity_cps_per_mbq"] * dur_s) * iff
        else:
            rw = ds.RealWorldValueMappingSequence[0]
            assert rw.MeasurementUnitsCodeSequence[0].CodeValue == "Bq/ml"
            assert float(ds.RescaleSlope) == rw.RealWorldValueSlope and ds.Units == "BQML"
            vox_ml = float(np.prod(ds.PixelSpacing)) * float(ds.SliceThickness) / 1000
            mbq = stored * rw.RealWorldValueSlope * vox_ml * 1e-6 * iff
        lab = from_sitk(sitk.ReadImage(str(d / tp["files"]["truth_labels_spect"]))).array
        # the default phantom paints no intracranial CSF (opt-in): every other vocabulary region
        assert labels.names == {k: v for k, v in VOCABULARY.items() if v != "csf_intracranial"}
        for name, r in tp["regions"].items():
            got = mbq[lab == r["index"]].sum()
            assert got == pytest.approx(r["activity_mbq"], rel=1e-9, abs=1e-12), name


def test_dicom_header_conventions(studies):
    d, truth, _ = studies["neg_bqml"]
    files = [p for p in (d / "dicom").iterdir()]
    assert all(len(p.name) == 16 and p.suffix == "" for p in files)
    seen = {}
    for p in files:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        seen.setdefault((ds.Modality, ds.StudyID), set()).add(ds.FrameOfReferenceUID)
        assert ds.PatientID == truth["subject_id"] and ds.Manufacturer == "spectrack phantom"
    for n in range(2):
        assert seen[("CT", f"TP{n}")] == seen[("NM", f"TP{n}")] and len(seen[("CT", f"TP{n}")]) == 1
    tp = truth["timepoints"][1]
    ds = pydicom.dcmread(_nm_file(d, tp))
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.20"
    assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    assert ds.FrameIncrementPointer == 0x00540080
    assert int(ds.NumberOfFrames) == ds.NumberOfSlices == len(ds.SliceVector) == ds.SliceVector[-1]
    assert float(ds.SpacingBetweenSlices) < 0
    det = ds.DetectorInformationSequence[0]
    np.testing.assert_allclose([float(v) for v in det.ImagePositionPatient], truth["spect_grid"]["origin_mm"],
                               atol=1e-4)  # the first frame, the top slice
    assert [float(v) for v in det.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    rp = ds.RadiopharmaceuticalInformationSequence[0]
    assert float(rp.RadionuclideTotalDose) == truth["injected_mbq"]  # MBq in NM
    assert rp.RadiopharmaceuticalStartDateTime == "20260314214000"
    assert float(rp.RadionuclideHalfLife) == pytest.approx(21624.12)
    code = rp.RadionuclideCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == ("72454006", "SCT", "^99m^Technetium")
    assert ds.DecayCorrection == "NONE" and list(ds.CorrectedImage) == ["ATTN", "SCAT"]
    assert ds.AcquisitionDateTime == "20260315224000" and ds.AcquisitionDate == "20260315"


# ------------------------------------------------------------------ NIfTI
def test_nifti_study_files(studies):
    d, truth, ph = studies["neg_bqml"]
    nd = d / "nifti"
    rows = (nd / "scans.tsv").read_text().splitlines()
    assert rows[0] == "filename\tacq_time" and "tp1_spect.nii.gz\t2026-03-15T22:40:00" in rows
    for tp, mem in zip(truth["timepoints"], ph.timepoints):
        side = json.loads((nd / f"tp{tp['index']}_spect.json").read_text())
        assert side["Modality"] == "NM" and side["TracerRadionuclide"] == "Tc-99m"
        assert side["InjectedRadioactivity"] == truth["injected_mbq"] and side["InjectedRadioactivityUnits"] == "MBq"
        assert side["TimeZero"] == "21:40:00" and side["InjectionStart"] == 0
        assert side["ScanStart"] == pytest.approx(tp["time_h"] * 3600)
        assert side["FrameTimesStart"] == [side["ScanStart"]]
        assert side["FrameDuration"] == [tp["duration_s"]] and side["ImageDecayCorrected"] is False
        assert side["Units"] == "Bq/mL"
        img = nib.load(nd / f"tp{tp['index']}_spect.nii.gz")
        sp = from_nifti_affine(np.asanyarray(img.dataobj), img.affine)
        assert sp.same_grid(mem.spect, tol_mm=1e-4)
        np.testing.assert_array_equal(sp.array, mem.spect.array)
    assert side["ScanStart"] > 86400  # the last scan is on the next day
    for f in (d / "labels.nii.gz", nd / "labels.nii.gz"):
        lm = read_label_map(f)
        assert lm.image.same_grid(ph.timepoints[0].ct, tol_mm=1e-4)
        np.testing.assert_array_equal(lm.image.array, ph.reference_labels.image.array)
        assert lm.names[INDEX["canal_lumbar"]] == "canal_lumbar"


# ------------------------------------------------------------------ options
def test_psf_and_noise_leave_the_physical_truth():
    clean = make_phantom(times_h=[2.0], **SMALL)
    noisy = make_phantom(times_h=[2.0], psf_fwhm_mm=10.0, noise=True, **SMALL)
    rc, rn = clean.truth["timepoints"][0]["regions"], noisy.truth["timepoints"][0]["regions"]
    for name in rc:
        assert rn[name]["pct_id"] == rc[name]["pct_id"]
    w, ideal = noisy.timepoints[0].spect.array, noisy.timepoints[0].spect_ideal.array
    assert not np.array_equal(w, ideal)
    assert abs(w.sum() - ideal.sum()) < 5 * math.sqrt(ideal.sum()) + 0.01 * ideal.sum()
    assert rn["canal_cervical"]["image_pct_id"] < rn["canal_cervical"]["pct_id"]  # partial-volume loss


def test_known_tracer_front():
    front = [40.0, 120.0]
    ph = make_phantom("nhp", times_h=[1.0, 2.0], tracer_front_mm=front)
    for tp, f in zip(ph.timepoints, front):
        info = tp.truth["tracer_front"]
        assert info["distance_mm"] == f and not info["front_beyond_canal"]
        lab = tp.labels_spect.image.array
        canal = np.isin(lab, [INDEX[c] for c in CANAL_LEVELS])
        kk, jj, ii = np.nonzero(canal)
        world = tp.spect.index_to_world_mm(np.stack([ii, jj, kk], axis=1))
        inv = np.linalg.inv(tp.pose)
        s = canal_arclength_mm(ph.geometry, world @ inv[2, :3] + inv[2, 3])
        s0 = info["injection_level_arclength_mm"]
        active = tp.spect.array[kk, jj, ii] > 0
        np.testing.assert_array_equal(active, (s >= s0) & (s <= s0 + f))
        assert tp.truth["regions"]["brain"]["pct_id"] == 0.0
        assert np.unique(tp.spect.array[kk, jj, ii][active]).size <= 2  # uniform up to one count


def test_bad_arguments():
    with pytest.raises(ValueError, match="odd"):
        make_phantom(ct_refine=2, **SMALL)
    with pytest.raises(ValueError, match="units"):
        make_phantom(units="cps", **SMALL)
    with pytest.raises(ValueError, match="uint16"):
        make_phantom(sensitivity_cps_per_mbq=1e4, times_h=[0.5], **SMALL)


# ------------------------------------------------------------------ kinetics
T = np.array([0.25, 0.5, 1, 2, 3, 4, 6, 8, 12, 24.0])


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_kinetics_shapes(preset):
    p = simulate_pct_id(PRESETS[preset].kinetics, T)
    total = sum(p.values())
    np.testing.assert_allclose(total, 100.0, atol=1e-9)
    brain = p["brain"]
    if preset == "human":
        assert np.all(np.diff(brain[T <= 4]) > 0)  # still rising over the first 4 h
    else:
        peak = int(np.argmax(brain))
        assert 0 < peak < len(T) - 1 and brain[-1] < 0.5 * brain[peak]
    if preset == "nhp":
        assert 4.0 <= brain.max() <= 10.0  # REFERENCE.md: NHP brain roughly 4-10 %ID
    times = PRESETS[preset].times_h
    q = simulate_pct_id(PRESETS[preset].kinetics, times)
    for organ in ("liver", "kidneys"):
        assert np.all(np.diff(q[organ]) > 0), organ
    assert np.all(np.diff(q["injection_site"]) < 0)
    assert np.all(np.diff(q["bladder"] + q["excreted"]) > 0)
    assert q["excreted"][0] == 0.0
    tpeak = [T[np.argmax(p[c])] for c in ("canal_lumbar", "canal_thoracic", "canal_cervical", "brain")]
    assert tpeak == sorted(tpeak) and tpeak[0] < tpeak[-1]
