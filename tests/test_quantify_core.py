"""Quantification core on hand-built NIfTI studies with analytic answers."""

import datetime as dt
import json
import math

import nibabel as nib
import numpy as np
import pytest

from spectrack import load_study, quantify
from spectrack.errors import InconsistentInputError, LabelError, MissingMetadataError
from spectrack.geometry import Image, to_nifti_affine
from spectrack.regions.formats.nifti import read_label_map, write_label_map
from spectrack.regions.labelmap import LabelMap
from spectrack.settings import SettingError

HL = 6.0067
LAM = math.log(2) / HL
INJ = dt.datetime(2026, 3, 14, 22, 40, 0)
A_INJ = 150.0
S_CPS = 80.0


def _grid(shape=(10, 12, 14), spacing=(3.0, 3.0, 4.0)):
    return Image(np.zeros(shape, np.float32), origin_mm=(-20, -15, 100), spacing_mm=spacing)


def _labels(img):
    lab = np.zeros(img.array.shape, np.int16)
    lab[2:5, 3:7, 2:6] = 1
    lab[6:9, 2:5, 8:12] = 2
    return LabelMap(img.with_array(lab, units="label"), {1: "brain", 2: "liver"})


def _write(path, img, side=None):
    arr, aff = to_nifti_affine(img)
    nib.save(nib.Nifti1Image(arr.astype(np.float32), aff), path)


@pytest.mark.parametrize("units", ["Bq/mL", "counts"])
def test_pct_id_matches_analytic(tmp_path, units, nifti_study):
    truth = nifti_study(tmp_path, units=units)
    st = load_study(tmp_path)
    assert len(st.timepoints) == 3
    labels = read_label_map(tmp_path / "labels.nii.gz")
    kw = {"sensitivity_cps_per_mbq": S_CPS} if units == "counts" else {}
    df = quantify(st, labels, **kw)
    for tr, (tp, g) in zip(truth, df[df.kind == "region"].groupby("timepoint")):
        g = g.set_index("region")
        assert g.loc["brain", "time_h"] == pytest.approx(tr["time_h"], abs=1e-9)
        for r in ("brain", "liver"):
            assert g.loc[r, "pct_id"] == pytest.approx(tr[r], rel=1e-5)
            assert g.loc[r, "pct_id_uncorrected"] == pytest.approx(tr[r] * math.exp(-LAM * tr["time_h"]), rel=1e-5)
            assert g.loc[r, "activity_mbq_decay_corrected"] == pytest.approx(A_INJ * tr[r] / 100, rel=1e-5)
    brain = df[(df.region == "brain")].iloc[0]
    assert brain.volume_ml == pytest.approx(48 * 3 * 3 * 4 / 1000)
    assert brain.pct_id_per_ml == pytest.approx(brain.pct_id / brain.volume_ml)
    # uniform region: mean == max concentration
    assert brain.max_bq_per_ml == pytest.approx(brain.mean_bq_per_ml, rel=1e-5)
    fov = df[(df.kind == "fov") & (df.timepoint == 0)].iloc[0]
    assert fov.pct_id == pytest.approx(40.0, rel=1e-5)
    md = df.attrs["metadata"]["dose"]
    assert md["injected_activity_mbq"]["value"] == A_INJ
    assert "InjectedRadioactivity" in md["injected_activity_mbq"]["source"]


def test_scan_after_midnight_and_days_later(tmp_path, nifti_study):
    nifti_study(tmp_path, times_h=(0.5, 4.0, 50.0))
    st = load_study(tmp_path)
    days = [tp.acquisition_start.date() for tp in st.timepoints]
    assert days[0] == dt.date(2026, 3, 14) and days[1] == dt.date(2026, 3, 15) and days[2] == dt.date(2026, 3, 17)
    df = quantify(st, read_label_map(tmp_path / "labels.nii.gz"))
    assert sorted(df.time_h.unique()) == pytest.approx([0.5, 4.0, 50.0])


def test_fov_normalisation(tmp_path, nifti_study):
    # at the first time point 40 % of the dose is in the field of view; fov normalisation assumes 100 %,
    # so every %ID scales by 100/40
    truth = nifti_study(tmp_path, units="counts")
    st = load_study(tmp_path)
    df = quantify(st, read_label_map(tmp_path / "labels.nii.gz"), calibration="fov", fov_timepoint=0)
    g = df[(df.timepoint == 1)].set_index("region")
    assert g.loc["brain", "pct_id"] == pytest.approx(truth[1]["brain"] * 2.5, rel=1e-5)
    assert df[(df.kind == "fov") & (df.timepoint == 0)].pct_id.iloc[0] == pytest.approx(100.0, rel=1e-9)


def test_options_override_headers(tmp_path, nifti_study):
    truth = nifti_study(tmp_path)
    st = load_study(tmp_path)
    lm = read_label_map(tmp_path / "labels.nii.gz")
    df = quantify(st, lm, injected_mbq=2 * A_INJ)
    b = df[(df.region == "brain") & (df.timepoint == 0)].iloc[0]
    assert b.pct_id == pytest.approx(truth[0]["brain"] / 2, rel=1e-5)
    assert df.attrs["metadata"]["dose"]["injected_activity_mbq"]["source"] == "option --injected-mbq"
    # injection 1 h earlier: times shift by 1 h, decay correction grows by exp(lam)
    df2 = quantify(st, lm, injection_time=INJ - dt.timedelta(hours=1))
    b2 = df2[(df2.region == "brain") & (df2.timepoint == 0)].iloc[0]
    assert b2.time_h == pytest.approx(1.5)
    assert b2.pct_id == pytest.approx(truth[0]["brain"] * math.exp(LAM), rel=1e-5)


def test_residual_activity(tmp_path, nifti_study):
    truth = nifti_study(tmp_path)
    st = load_study(tmp_path)
    lm = read_label_map(tmp_path / "labels.nii.gz")
    # residual 10 MBq measured 2 h after injection -> 10*exp(2 lam) MBq at injection
    df = quantify(st, lm, injected_mbq=A_INJ, residual_mbq=10.0, residual_time=INJ + dt.timedelta(hours=2))
    net = A_INJ - 10 * math.exp(2 * LAM)
    b = df[(df.region == "brain") & (df.timepoint == 0)].iloc[0]
    assert b.pct_id == pytest.approx(truth[0]["brain"] * A_INJ / net, rel=1e-5)


def test_half_life_override_changes_decay_correction(tmp_path, nifti_study):
    nifti_study(tmp_path)
    st = load_study(tmp_path)
    lm = read_label_map(tmp_path / "labels.nii.gz")
    a = quantify(st, lm)
    b = quantify(st, lm, half_life_h=6.02)
    ra = a[(a.region == "brain") & (a.timepoint == 2)].iloc[0]
    rb = b[(b.region == "brain") & (b.timepoint == 2)].iloc[0]
    assert rb.pct_id < ra.pct_id
    assert b.attrs["metadata"]["dose"]["half_life_h"]["source"] == "option --half-life-h"


def test_missing_injected_activity_names_tag_and_option(tmp_path, nifti_study):
    nifti_study(tmp_path)
    for p in tmp_path.glob("*.json"):
        d = json.loads(p.read_text())
        d.pop("InjectedRadioactivity")
        p.write_text(json.dumps(d))
    st = load_study(tmp_path)
    with pytest.raises(MissingMetadataError) as e:
        quantify(st, read_label_map(tmp_path / "labels.nii.gz"))
    msg = str(e.value)
    assert "InjectedRadioactivity" in msg and "RadionuclideTotalDose" in msg and "--injected-mbq" in msg
    assert e.value.exit_code == 4


def test_missing_sensitivity_for_counts(tmp_path, nifti_study):
    nifti_study(tmp_path, units="counts")
    st = load_study(tmp_path)
    with pytest.raises(MissingMetadataError, match="--sensitivity"):
        quantify(st, read_label_map(tmp_path / "labels.nii.gz"))


def test_scan_before_injection(tmp_path, nifti_study):
    nifti_study(tmp_path)
    st = load_study(tmp_path)
    with pytest.raises(InconsistentInputError, match="before the injection"):
        quantify(st, read_label_map(tmp_path / "labels.nii.gz"), injection_time=INJ + dt.timedelta(hours=1))


@pytest.mark.parametrize("dur", [0.0, -10.0])
def test_zero_or_negative_duration(tmp_path, dur, nifti_study):
    nifti_study(tmp_path)
    st = load_study(tmp_path)
    with pytest.raises(SettingError, match="duration_s must be positive"):  # the command line's message
        quantify(st, read_label_map(tmp_path / "labels.nii.gz"), duration_s=dur)


def test_labels_not_overlapping(tmp_path, nifti_study):
    nifti_study(tmp_path)
    st = load_study(tmp_path)
    far = _grid()
    far.origin_mm = far.origin_mm + 1000.0
    lm = _labels(far)
    with pytest.raises(LabelError, match="does not overlap"):
        quantify(st, lm)


def test_labels_on_finer_grid_are_resampled(tmp_path, nifti_study):
    truth = nifti_study(tmp_path)
    st = load_study(tmp_path)
    lm = read_label_map(tmp_path / "labels.nii.gz")
    # the same regions on a grid 3x finer in each axis, voxel centres aligned on the coarse centres
    fine = np.repeat(np.repeat(np.repeat(lm.image.array, 3, 0), 3, 1), 3, 2)
    sp = lm.image.spacing_mm / 3
    origin = lm.image.origin_mm - sp  # centre of the first fine voxel
    fine_lm = LabelMap(Image(fine, origin, sp, lm.image.direction), lm.names)
    df = quantify(st, fine_lm)
    b = df[(df.region == "brain") & (df.timepoint == 0)].iloc[0]
    assert b.pct_id == pytest.approx(truth[0]["brain"], rel=1e-5)


def test_names_from_tsv_and_json(tmp_path, nifti_study):
    nifti_study(tmp_path)
    lm = read_label_map(tmp_path / "labels.nii.gz")
    assert lm.names == {1: "brain", 2: "liver"}
    (tmp_path / "labels.tsv").unlink()
    (tmp_path / "labels.json").write_text(json.dumps({"1": "cortex", "2": "hepar"}))
    assert read_label_map(tmp_path / "labels.nii.gz").names == {1: "cortex", 2: "hepar"}


def test_times_on_command_line_for_bare_nifti(tmp_path):
    g = _grid()
    lm = _labels(g)
    files = []
    for n, t in enumerate([4.0, 24.0]):
        arr = np.where(lm.image.array == 1, 1000.0 * math.exp(-LAM * t), 0.0).astype(np.float32)
        p = tmp_path / f"SPECT-{n}.nii.gz"
        _write(p, g.with_array(arr))
        files.append(p)
    st = load_study(files, times_h=[4.0, 24.0])
    df = quantify(st, lm, injected_mbq=10.0, sensitivity_cps_per_mbq=1.0, duration_s=1.0, radionuclide="Tc-99m")
    b = df[df.region == "brain"].set_index("timepoint")
    assert b.loc[0, "time_h"] == pytest.approx(4.0)
    # decay-corrected activity is constant when the physical one follows decay
    assert b.loc[1, "pct_id"] == pytest.approx(b.loc[0, "pct_id"], rel=1e-6)


def test_study_file_with_times(tmp_path):
    """A study.toml lists bare NIfTI volumes (no sidecars) with their times and the dose."""
    g = _grid()
    lm = _labels(g)
    write_label_map(lm, tmp_path / "regions.nii.gz")
    lines = ['subject = "rat07"', "injected_mbq = 10.0", 'injection_time = "2026-03-14T23:30:00"',
             'radionuclide = "Tc-99m"', 'units = "counts"', 'labels = "regions.nii.gz"']
    for n, t in enumerate([2.0, 30.0]):
        arr = np.where(lm.image.array == 1, 1000.0 * math.exp(-LAM * t), 0.0).astype(np.float32)
        _write(tmp_path / f"vol{n}.nii.gz", g.with_array(arr))
        lines += ["[[timepoints]]", f'spect = "vol{n}.nii.gz"', f"time_h = {t}", "duration_s = 600"]
    (tmp_path / "study.toml").write_text("\n".join(lines) + "\n")
    st = load_study(tmp_path)  # finds study.toml in the folder
    assert st.subject == "rat07"
    assert [tp.acquisition_start for tp in st.timepoints] == [dt.datetime(2026, 3, 15, 1, 30),
                                                            dt.datetime(2026, 3, 16, 5, 30)]
    df = quantify(st, lm, sensitivity_cps_per_mbq=5.0)
    b = df[df.region == "brain"].set_index("timepoint")
    assert b.loc[1, "time_h"] == pytest.approx(30.0)
    assert b.loc[1, "pct_id"] == pytest.approx(b.loc[0, "pct_id"], rel=1e-6)
    iff = LAM * 600 / 3600 / (1 - math.exp(-LAM * 600 / 3600))
    expected = 100 * 48 * 1000 / (5.0 * 600) * iff / 10.0  # counts / (S D) x in-frame, at injection
    assert b.loc[0, "pct_id"] == pytest.approx(expected, rel=1e-6)
    assert df.attrs["metadata"]["dose"]["injected_activity_mbq"]["source"] == "study file: injected_mbq"


def test_label_map_declaring_4096_cubed_is_refused_before_allocation(tmp_path):
    from spectrack.errors import InputError

    hdr = nib.Nifti1Header()
    hdr.set_data_shape((4096, 4096, 4096))
    hdr.set_data_dtype(np.int16)
    hdr.set_qform(np.eye(4), code=1)
    hdr["vox_offset"] = 352
    raw = hdr.binaryblock + b"\x00" * 4 + b"\x00" * 64  # header, extension flag, a few voxels
    (tmp_path / "big_labels.nii").write_bytes(raw)
    with pytest.raises(InputError, match="refusing to allocate|truncated"):
        read_label_map(tmp_path / "big_labels.nii")


def test_overlapping_regions_each_over_their_own_mask_groups_and_remainder_once(tmp_path, nifti_study):
    """A body outline around the organs: body holds everything in it, organs their own, outside adds up once."""
    truth = nifti_study(tmp_path, units="Bq/mL")
    st = load_study(tmp_path)
    g = st.timepoints[0].emission.image
    base = read_label_map(tmp_path / "labels.nii.gz")
    brain, liver = base.image.array == 1, base.image.array == 2
    body = np.zeros(g.array.shape, bool)
    body[1:10, 1:11, 1:13] = True  # holds both organs and more
    lm = LabelMap.from_masks(g, {1: brain, 2: liver, 3: body}, {1: "brain", 2: "liver", 3: "body"})
    assert sorted(lm.overlaps) == [3]
    assert sum("overlap" in w for w in lm.warnings) == 2
    df = quantify(st, lm)
    for tr, (_, t) in zip(truth, df.groupby("timepoint")):
        t = t.set_index("region")
        assert t.loc["brain", "pct_id"] == pytest.approx(tr["brain"], rel=1e-5)
        assert t.loc["liver", "pct_id"] == pytest.approx(tr["liver"], rel=1e-5)
        assert t.loc["body", "pct_id"] == pytest.approx(tr["brain"] + tr["liver"], rel=1e-5)
        assert t.loc["body", "n_voxels"] == int(body.sum())
        # the exclusive partition covers the body once: nothing is left outside it
        assert t.loc["outside_regions", "pct_id"] == pytest.approx(0.0, abs=1e-6)
        assert t.loc["outside_regions", "n_voxels"] == body.size - body.sum()
