"""Decay state and decay reference time of scanner files and of dcm2niix's NIfTI sidecars.

The DICOM series are written here with pydicom the way a scanner writes them: each bed position of a
PET series measures the mean activity over its own frame, and the scanner multiplies it by its
``DecayFactor`` (START: ``exp(lambda FrameReferenceTime)``, with ``FrameReferenceTime`` counted from the
series reference ``SeriesDate/SeriesTime`` to the time of the frame's mean activity, as Siemens does;
ADMIN: the same from the injection; NONE: no factor). Count images hold ``S x integral of A(t) dt`` times
the same factor. The NIfTI files and sidecars are written by the real dcm2niix (PyPI ``dcm2niix``) from
those series. Truth: the analytic decay of a constant distribution, ``A(t) = A_inj exp(-lambda (t - t_inj))``;
%ID must be right within 0.1 %.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from spectrack import load_study, quantify
from spectrack.errors import MissingMetadataError
from spectrack.regions.labelmap import LabelMap

PET_SOP = "1.2.840.10008.5.1.4.1.1.128"
NM_SOP = "1.2.840.10008.5.1.4.1.1.20"
F18_S = 6586.2  # half-life in Siemens headers
TC99M_S = 21624.1
T_INJ = dt.datetime(2026, 3, 14, 11, 30, 0)
SERIES = dt.datetime(2026, 3, 14, 12, 0, 0)
C_INJ_BQML = 5.0e4  # background concentration at injection; the hot cube holds HOT times it
HOT = 5
A_INJ_MBQ = 200.0
ROWS = COLS = 6
SPACING = (4.0, 4.0, 3.0)
SENS = 120.0  # cps/MBq
REALDATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "realdata"


# ------------------------------------------------------------------ the analytic truth
def lam_s(hl_s):
    return math.log(2.0) / hl_s


def integral(t_from_inj_s, d_s, hl_s):
    """Integral over a frame of exp(-lambda (t - t_inj)) dt (s), the frame starting t_from_inj_s after injection."""
    k = lam_s(hl_s)
    return math.exp(-k * t_from_inj_s) * -math.expm1(-k * d_s) / k


def t_mean(d_s, hl_s):
    """Time after a frame start at which the activity equals its mean over the frame (PS3.3 C.8.9.4.1.5 ex. 2)."""
    k = lam_s(hl_s)
    return math.log(k * d_s / -math.expm1(-k * d_s)) / k


def truth_pct(n_hot_voxels):
    """%ID (decay-corrected to injection) of the hot cube: constant distribution, known concentration."""
    vox_ml = SPACING[0] * SPACING[1] * SPACING[2] / 1000.0
    return 100.0 * n_hot_voxels * HOT * C_INJ_BQML * vox_ml * 1e-6 / A_INJ_MBQ


def pattern():
    p = np.ones((ROWS, COLS))
    p[2:4, 2:4] = HOT
    return p


# ------------------------------------------------------------------ DICOM written with pydicom
def _file(sop_class):
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = sop_class
    fm.MediaStorageSOPInstanceUID = generate_uid()
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=fm, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, fm.MediaStorageSOPInstanceUID
    ds.PatientID, ds.PatientName = "decay01", "decay^01"
    ds.StudyDate, ds.StudyTime = "20260314", "112000"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    return ds


def _radiopharm(*, dose, hl_s, inj=T_INJ):
    ri = Dataset()
    ri.Radiopharmaceutical = "test tracer"
    ri.RadiopharmaceuticalStartTime = inj.strftime("%H%M%S")
    ri.RadiopharmaceuticalStartDateTime = inj.strftime("%Y%m%d%H%M%S")
    ri.RadionuclideTotalDose = f"{dose:.10g}"
    ri.RadionuclideHalfLife = f"{hl_s:g}"
    return ri


def write_pet(folder, *, state="START", units="BQML", n_beds=3, per_bed=4, gap_s=320.0, d_s=300.0,
              keep_beds=None, series_time=SERIES, hl_s=F18_S, df_injection=T_INJ):
    """A multi-bed PET series as a scanner writes it; ``keep_beds`` writes only those beds (a partial export).

    Returns the number of hot voxels written and the acquisition start of each bed.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    suid, study, forr = generate_uid(), generate_uid(), generate_uid()
    k = lam_s(hl_s)
    p = pattern()
    starts = []
    n_hot = 0
    for b in range(n_beds):
        acq = SERIES + dt.timedelta(seconds=b * gap_s)
        starts.append(acq)
        if keep_beds is not None and b not in keep_beds:
            continue
        t_rel = (acq - T_INJ).total_seconds()
        if units == "BQML":  # mean concentration over the frame
            per_p = C_INJ_BQML * integral(t_rel, d_s, hl_s) / d_s
        else:  # counts in the frame: S (cps/MBq) x integral of the activity (MBq s) of one voxel
            vox_mbq = C_INJ_BQML * SPACING[0] * SPACING[1] * SPACING[2] / 1000.0 * 1e-6
            per_p = SENS * vox_mbq * integral(t_rel, d_s, hl_s)
        frt_s = (acq - SERIES).total_seconds() + t_mean(d_s, hl_s)
        if state == "START":
            df = math.exp(k * frt_s)
        elif state == "ADMIN":
            df = math.exp(k * ((acq - df_injection).total_seconds() + t_mean(d_s, hl_s)))
        else:
            df = None
        value_per_p = per_p * (df or 1.0)
        for s in range(per_bed):
            z = b * per_bed + s
            ds = _file(PET_SOP)
            ds.Modality = "PT"
            ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.FrameOfReferenceUID = suid, study, forr
            ds.SeriesNumber, ds.InstanceNumber = 3, z + 1
            ds.SeriesDescription = "PET WB"
            if series_time is not None:
                ds.SeriesDate, ds.SeriesTime = series_time.strftime("%Y%m%d"), series_time.strftime("%H%M%S")
            ds.AcquisitionDate, ds.AcquisitionTime = acq.strftime("%Y%m%d"), acq.strftime("%H%M%S")
            ds.Rows, ds.Columns = ROWS, COLS
            ds.PixelSpacing = [SPACING[1], SPACING[0]]
            ds.SliceThickness = SPACING[2]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.ImagePositionPatient = [0.0, 0.0, SPACING[2] * z]
            ds.RescaleIntercept = "0"
            ds.RescaleSlope = f"{value_per_p / 1000.0:.9e}"
            ds.Units = units
            ds.DecayCorrection = state
            ds.CorrectedImage = ["ATTN", "DECY"] if state != "NONE" else ["ATTN"]
            ds.FrameReferenceTime = f"{frt_s * 1000.0:.6f}"
            if df is not None:
                ds.DecayFactor = f"{df:.10f}"
            ds.ActualFrameDuration = int(round(d_s * 1000))
            ds.NumberOfSlices = n_beds * per_bed
            ds.RadiopharmaceuticalInformationSequence = [_radiopharm(dose=A_INJ_MBQ * 1e6, hl_s=hl_s)]
            ds.PixelData = (p * 1000).astype("<u2").tobytes()
            n_hot += int(np.sum(p == HOT))
            ds.save_as(folder / f"pet_b{b}_s{s}.dcm", enforce_file_format=True)
    return n_hot, starts


def write_nm(path, *, state="NONE", n_slices=4, d_s=1200.0, acq=SERIES, hl_s=TC99M_S, decay_tags=True):
    """A reconstructed Tc-99m SPECT (NM multi-frame, RECON TOMO) in counts, as a camera writes it."""
    k = lam_s(hl_s)
    ds = _file(NM_SOP)
    ds.Modality = "NM"
    ds.SeriesInstanceUID, ds.StudyInstanceUID = generate_uid(), generate_uid()
    ds.SeriesNumber, ds.InstanceNumber = 5, 1
    ds.SeriesDescription = "SPECT recon"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    recon = acq + dt.timedelta(seconds=d_s + 600)  # the reconstruction series is made after the acquisition
    ds.SeriesDate, ds.SeriesTime = recon.strftime("%Y%m%d"), recon.strftime("%H%M%S")
    ds.AcquisitionDate, ds.AcquisitionTime = acq.strftime("%Y%m%d"), acq.strftime("%H%M%S")
    ds.NumberOfFrames = n_slices
    ds.FrameIncrementPointer = Tag(0x0054, 0x0080)
    ds.SliceVector = list(range(1, n_slices + 1))
    ds.NumberOfSlices = n_slices
    ds.Rows, ds.Columns = ROWS, COLS
    ds.PixelSpacing = [SPACING[1], SPACING[0]]
    ds.SliceThickness = ds.SpacingBetweenSlices = SPACING[2]
    det = Dataset()
    det.ImagePositionPatient = [0.0, 0.0, 0.0]
    det.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.DetectorInformationSequence = [det]
    rot = Dataset()
    n_views = 60
    rot.ActualFrameDuration = int(round(d_s * 1000 / n_views))
    rot.NumberOfFramesInRotation = n_views
    ds.RotationInformationSequence = [rot]
    ds.NumberOfRotations = 1
    ds.RadiopharmaceuticalInformationSequence = [_radiopharm(dose=A_INJ_MBQ, hl_s=hl_s)]  # MBq in NM
    t_rel = (acq - T_INJ).total_seconds()
    vox_mbq = C_INJ_BQML * SPACING[0] * SPACING[1] * SPACING[2] / 1000.0 * 1e-6
    counts_per_p = SENS * vox_mbq * integral(t_rel, d_s, hl_s)
    df = {"START": math.exp(k * t_mean(d_s, hl_s)),
          "ADMIN": math.exp(k * (t_rel + t_mean(d_s, hl_s))), "NONE": None}[state]
    if decay_tags:
        ds.Units = "CNTS"
        ds.DecayCorrection = state
        ds.CorrectedImage = ["ATTN", "SCAT"] + (["DECY"] if state != "NONE" else [])
        if df is not None:
            ds.DecayFactor = f"{df:.10f}"
            ds.FrameReferenceTime = f"{t_mean(d_s, hl_s) * 1000.0:.6f}"
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = f"{counts_per_p * (df or 1.0) / 1000.0:.9e}"
    p = pattern()
    ds.PixelData = np.repeat((p * 1000).astype("<u2")[None], n_slices, axis=0).tobytes()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return n_slices * int(np.sum(p == HOT))


def hot_labels(study):
    """The hot cube on the emission grid (its voxels are the ones HOT times the background)."""
    img = study.timepoints[0].emission.image
    a = img.array
    mask = a > 0.5 * (a.max() + a[a > 0].min())
    return LabelMap.from_masks(img, {1: mask}, {1: "liver"}, source="hot cube"), int(mask.sum())


def pct_of(df):
    return float(df.loc[df.region == "liver", "pct_id"].iloc[0])


# ------------------------------------------------------------------ PET in Bq/mL
@pytest.mark.parametrize("state", ["START", "ADMIN", "NONE"])
@pytest.mark.parametrize("keep", [None, (1, 2), (2,)], ids=["all-beds", "beds-1-2", "bed-2"])
def test_pet_bqml_multibed_decay_states(tmp_path, state, keep):
    n_hot, starts = write_pet(tmp_path / "pet", state=state, keep_beds=keep)
    study = load_study(tmp_path / "pet")
    em = study.timepoints[0].emission
    first = starts[min(keep) if keep else 0]
    assert em.acquisition_start == first
    if state == "START":  # the values refer to the series start, whichever bed comes first in the folder
        assert em.get("decay_reference_offset_s") == pytest.approx((SERIES - first).total_seconds())
        assert "SeriesTime" in em.source("decay_reference_offset_s")
    labels, n = hot_labels(study)
    assert n == n_hot
    df, det = quantify(study, labels, return_details=True)
    assert pct_of(df) == pytest.approx(truth_pct(n_hot), rel=1e-3)
    cal = det.calibrations[0]
    assert cal.in_frame_factor == (1.0 if state != "NONE" else pytest.approx(
        lam_s(F18_S) * 300 / -math.expm1(-lam_s(F18_S) * 300)))
    assert cal.to_json()["decay_correction"]["state"] == state
    assert not any("decay" in w.lower() and "assumed" in w for w in det.warnings)
    assert not any("puts the decay reference" in w for w in det.warnings)


def test_pet_start_without_series_time_uses_frame_reference_time(tmp_path):
    n_hot, starts = write_pet(tmp_path / "pet", state="START", keep_beds=(2,), series_time=None)
    study = load_study(tmp_path / "pet")
    em = study.timepoints[0].emission
    assert em.get("decay_reference_offset_s") == pytest.approx((SERIES - starts[2]).total_seconds(), abs=0.01)
    assert "FrameReferenceTime" in em.source("decay_reference_offset_s")
    assert not any("puts the decay reference" in w for w in study.warnings)  # DecayFactor agrees
    labels, _ = hot_labels(study)
    assert pct_of(quantify(study, labels)) == pytest.approx(truth_pct(n_hot), rel=1e-3)


def test_pet_start_routes_that_disagree_are_a_warning_and_the_series_time_is_used(tmp_path):
    # an exporter rewrote SeriesTime to the kept bed's start; FrameReferenceTime and DecayFactor still
    # count from the real series start, 640 s earlier
    n_hot, starts = write_pet(tmp_path / "pet", state="START", keep_beds=(2,), series_time=SERIES
                              + dt.timedelta(seconds=640))
    study = load_study(tmp_path / "pet")
    em = study.timepoints[0].emission
    assert em.get("decay_reference_offset_s") == pytest.approx(0.0)
    text = "\n".join(study.warnings)
    for what in ("FrameReferenceTime (0054,1300)", "DecayFactor (0054,1321)"):
        assert f"{what} puts the decay reference at 2026-03-14 12:00:00" in text
    assert "640.0 s from 2026-03-14 12:10:40 (SeriesDate/SeriesTime); the latter is used" in text
    labels, _ = hot_labels(study)
    df, det = quantify(study, labels, return_details=True)
    assert any("FrameReferenceTime (0054,1300) puts the decay reference" in w for w in det.warnings)
    # the standard's reference (SeriesTime) is used: the values are taken as of 12:10:40
    assert pct_of(df) == pytest.approx(truth_pct(n_hot) * math.exp(lam_s(F18_S) * 640.0), rel=1e-4)


def test_pet_admin_decay_factor_against_injection_time(tmp_path):
    write_pet(tmp_path / "ok", state="ADMIN")
    assert not any("DecayFactor" in w for w in load_study(tmp_path / "ok").warnings)
    # DecayFactor computed from an injection 10 min earlier than the header says
    n_hot, _ = write_pet(tmp_path / "bad", state="ADMIN", df_injection=T_INJ - dt.timedelta(minutes=10))
    study = load_study(tmp_path / "bad")
    assert any("DecayCorrection ADMIN, but DecayFactor (0054,1321) puts the administration at "
               "2026-03-14 11:20:00, 600.0 s from the injection time" in w for w in study.warnings)


def test_admin_values_refer_to_the_injection_time_in_the_header(tmp_path):
    n_hot, _ = write_pet(tmp_path / "pet", state="ADMIN")
    study = load_study(tmp_path / "pet")
    labels, _ = hot_labels(study)
    later = T_INJ + dt.timedelta(minutes=5)  # a corrected injection time given by the user
    df, det = quantify(study, labels, injection_time=later, return_details=True)
    # values are activity at the scanner's injection time; decayed to the user's injection time
    assert pct_of(df) == pytest.approx(truth_pct(n_hot) * math.exp(-lam_s(F18_S) * 300.0), rel=1e-3)
    assert any("decay-corrected to the injection time in the header" in w for w in det.warnings)


# ------------------------------------------------------------------ counts already decay-corrected
@pytest.mark.parametrize("state", ["START", "ADMIN", "NONE"])
@pytest.mark.parametrize("units", ["PROPCNTS", "CNTS"])
def test_pet_counts_honour_the_decay_state(tmp_path, state, units):
    # 20-minute frames of F-18: the in-frame factor is 1.065, so applying it twice is +6.5 %
    n_hot, _ = write_pet(tmp_path / "pet", state=state, units=units, n_beds=2, d_s=1200.0, gap_s=1230.0,
                         keep_beds=(1,))
    study = load_study(tmp_path / "pet")
    labels, _ = hot_labels(study)
    df, det = quantify(study, labels, sensitivity_cps_per_mbq=SENS, return_details=True)
    assert pct_of(df) == pytest.approx(truth_pct(n_hot), rel=1e-3)
    assert (det.calibrations[0].in_frame_factor == 1.0) == (state != "NONE")


def test_pet_counts_several_beds_in_one_series(tmp_path):
    # not decay-corrected counts of three beds in one series: each bed is decayed from its own start
    n_hot, _ = write_pet(tmp_path / "pet", state="NONE", units="CNTS", d_s=600.0, gap_s=620.0)
    study = load_study(tmp_path / "pet")
    em = study.timepoints[0].emission
    assert em.get("duration_s") == 600.0 and "first bed" in em.source("duration_s")
    labels, _ = hot_labels(study)
    assert pct_of(quantify(study, labels, sensitivity_cps_per_mbq=SENS)) == pytest.approx(truth_pct(n_hot),
                                                                                        rel=1e-3)


@pytest.mark.parametrize("state", ["START", "ADMIN", "NONE"])
def test_nm_counts_honour_the_decay_state(tmp_path, state):
    n_hot = write_nm(tmp_path / "nm" / "spect.dcm", state=state)
    study = load_study(tmp_path / "nm")
    labels, _ = hot_labels(study)
    df, det = quantify(study, labels, sensitivity_cps_per_mbq=SENS, return_details=True)
    assert pct_of(df) == pytest.approx(truth_pct(n_hot), rel=1e-3)
    # the NM START reference is the acquisition start (the series time is the later reconstruction)
    assert study.timepoints[0].emission.get("decay_reference_offset_s") == (0.0 if state == "START" else None)
    assert not any("puts the decay reference" in w or "assumed" in w for w in det.warnings)


# ------------------------------------------------------------------ an assumed decay state is said
def test_assumed_decay_state_reaches_study_json_report_and_cli(tmp_path, capsys):
    from spectrack.cli import main
    from spectrack.pipeline import run_study
    from spectrack.regions.formats.nifti import write_label_map

    n_hot = write_nm(tmp_path / "nm" / "spect.dcm", state="NONE", decay_tags=False)
    study = load_study(tmp_path / "nm")
    labels, _ = hot_labels(study)
    lab_path = write_label_map(labels, tmp_path / "labels.nii.gz")
    res = run_study(tmp_path / "nm", {"labels": str(lab_path), "sensitivity_cps_per_mbq": SENS,
                                      "uncertainty_draws": 0}, out_dir=tmp_path / "out")
    assert pct_of(res.table) == pytest.approx(truth_pct(n_hot), rel=1e-3)  # NONE is the truth here
    want = "decay-correction state assumed NONE"
    meta = json.loads((tmp_path / "out" / "study.json").read_text())
    assert any(want in w for w in meta["warnings"])
    assert meta["calibration"][0]["decay_correction"]["assumed"] is True
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert want in html
    rc = main(["quantify", str(tmp_path / "nm"), "--labels", str(lab_path), "--sensitivity", str(SENS),
               "-o", str(tmp_path / "cli"), "--no-report"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert want in " ".join((out.out + out.err).split())


def test_decy_without_decay_correction_is_assumed_start(tmp_path):
    n_hot = write_nm(tmp_path / "nm" / "spect.dcm", state="START")
    ds = pydicom.dcmread(tmp_path / "nm" / "spect.dcm")
    del ds.DecayCorrection
    ds.save_as(tmp_path / "nm" / "spect.dcm")
    study = load_study(tmp_path / "nm")
    labels, _ = hot_labels(study)
    df, det = quantify(study, labels, sensitivity_cps_per_mbq=SENS, return_details=True)
    assert pct_of(df) == pytest.approx(truth_pct(n_hot), rel=1e-3)
    assert any("decay-correction state assumed START" in w and "DECY" in w for w in det.warnings)


# ------------------------------------------------------------------ NIfTI from the real dcm2niix
def _dcm2niix(src: Path, out: Path, name: str) -> tuple[Path, dict]:
    dcm2niix = pytest.importorskip("dcm2niix")
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([dcm2niix.bin, "-b", "y", "-z", "y", "-f", name, "-o", str(out), str(src)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    side = json.loads((out / f"{name}.json").read_text())
    assert side["ConversionSoftware"] == "dcm2niix"
    return out / f"{name}.nii.gz", side


def _scans_tsv(folder: Path, nii: Path, when: dt.datetime) -> None:
    with open(folder / "scans.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["filename", "acq_time"])
        w.writerow([nii.name, when.isoformat()])


@pytest.mark.parametrize("state", ["START", "ADMIN", "NONE"])
def test_dcm2niix_pet_later_bed(tmp_path, state):
    n_hot, starts = write_pet(tmp_path / "dicom", state=state, keep_beds=(2,))
    nii, side = _dcm2niix(tmp_path / "dicom", tmp_path / "nifti", "sub-01_pet")
    # the key set dcm2niix writes: DICOM DecayCorrection, ScanStart 0 (the series start) with the bed's
    # FrameTimesStart after it, no InjectionStart or TimeZero
    assert side["DecayCorrection"] == state
    assert side["ScanStart"] == 0
    if state != "NONE":
        assert side["FrameTimesStart"] == [640]
    else:  # no FrameTimesStart, and DecayCorrectionFactor 0 for a DICOM without DecayFactor
        assert "FrameTimesStart" not in side and side["DecayCorrectionFactor"] == [0]
    assert "InjectionStart" not in side and "TimeZero" not in side
    _scans_tsv(tmp_path / "nifti", nii, starts[2])
    study = load_study(tmp_path / "nifti")
    em = study.timepoints[0].emission
    assert em.acquisition_start == starts[2]
    labels, n = hot_labels(study)
    assert n == n_hot
    if state == "ADMIN":  # dcm2niix writes the injection as ImageDecayCorrectionTime (s after the series start)
        assert side["ImageDecayCorrectionTime"] == -1800
        assert em.get("injection_time") == T_INJ
        df = quantify(study, labels)
    else:  # the sidecar holds no injection time: never assumed
        assert em.get("injection_time") is None
        with pytest.raises(MissingMetadataError, match="injection time.*--injection-time"):
            quantify(study, labels)
        df = quantify(study, labels, injection_time=T_INJ)
    if state == "START":
        assert em.get("decay_reference_offset_s") == pytest.approx(-640.0)
    assert pct_of(df) == pytest.approx(truth_pct(n_hot), rel=1e-3)


def test_dcm2niix_older_key_set_decay_factor_without_image_decay_corrected(tmp_path):
    """Older dcm2niix releases wrote DecayCorrection and DecayFactor but no ImageDecayCorrected."""
    n_hot, starts = write_pet(tmp_path / "dicom", state="START", keep_beds=(1, 2))
    nii, side = _dcm2niix(tmp_path / "dicom", tmp_path / "nifti", "pet")
    side["DecayFactor"] = side.pop("DecayCorrectionFactor")
    del side["ImageDecayCorrected"], side["ImageDecayCorrectionTime"]
    (tmp_path / "nifti" / "pet.json").write_text(json.dumps(side))
    _scans_tsv(tmp_path / "nifti", nii, starts[1])
    study = load_study(tmp_path / "nifti")
    em = study.timepoints[0].emission
    assert em.get("decay_correction") == "START" and em.get("decay_reference_offset_s") == pytest.approx(-320.0)
    assert em.get("decay_factor") == pytest.approx(math.exp(lam_s(F18_S) * (320.0 + t_mean(300.0, F18_S))),
                                                   rel=1e-5)  # dcm2niix keeps 6 digits
    assert not any("puts the decay reference" in w for w in study.warnings)
    labels, _ = hot_labels(study)
    assert pct_of(quantify(study, labels, injection_time=T_INJ)) == pytest.approx(truth_pct(n_hot), rel=1e-3)


def test_dcm2niix_decay_factor_that_disagrees_is_a_warning(tmp_path):
    n_hot, starts = write_pet(tmp_path / "dicom", state="START", keep_beds=(2,))
    nii, side = _dcm2niix(tmp_path / "dicom", tmp_path / "nifti", "pet")
    side["ScanStart"] = side["ImageDecayCorrectionTime"] = 320  # claims a reference 320 s after the series start
    (tmp_path / "nifti" / "pet.json").write_text(json.dumps(side))
    _scans_tsv(tmp_path / "nifti", nii, starts[2])
    study = load_study(tmp_path / "nifti")
    assert any("DecayCorrectionFactor" in w and "320.0 s from the START reference (320 s)" in w
               for w in study.warnings)


def test_dcm2niix_scans_tsv_holding_the_series_time(tmp_path):
    n_hot, starts = write_pet(tmp_path / "dicom", state="START", keep_beds=(2,))
    nii, side = _dcm2niix(tmp_path / "dicom", tmp_path / "nifti", "pet")
    _scans_tsv(tmp_path / "nifti", nii, SERIES)  # the user wrote the sidecar's SeriesTime, not AcquisitionTime
    study = load_study(tmp_path / "nifti")
    assert study.timepoints[0].acquisition_start == starts[2]
    assert any("is the sidecar's SeriesTime" in w for w in study.warnings)
    labels, _ = hot_labels(study)
    assert pct_of(quantify(study, labels, injection_time=T_INJ)) == pytest.approx(truth_pct(n_hot), rel=1e-3)


@pytest.mark.parametrize("state", ["START", "ADMIN", "NONE"])
def test_dcm2niix_nm_counts(tmp_path, state):
    n_hot = write_nm(tmp_path / "dicom" / "spect.dcm", state=state)
    nii, side = _dcm2niix(tmp_path / "dicom", tmp_path / "nifti", "sub-01_spect")
    assert side["DecayCorrection"] == state and side["Units"] == "CNTS"
    assert "ScanStart" not in side and "FrameDuration" not in side and "Modality" not in side
    assert side["InjectedRadioactivity"] == pytest.approx(A_INJ_MBQ * 1e-6)  # dcm2niix reads the MBq as Bq
    _scans_tsv(tmp_path / "nifti", nii, SERIES)
    study = load_study(tmp_path / "nifti")
    em = study.timepoints[0].emission
    assert em.get("injected_activity_mbq") == pytest.approx(A_INJ_MBQ)
    assert any("dcm2niix reads the NM RadionuclideTotalDose" in w for w in study.warnings)
    labels, _ = hot_labels(study)
    with pytest.raises(MissingMetadataError, match="--injection-time"):
        quantify(study, labels, sensitivity_cps_per_mbq=SENS, duration_s=1200.0)
    df = quantify(study, labels, sensitivity_cps_per_mbq=SENS, duration_s=1200.0, injection_time=T_INJ)
    assert pct_of(df) == pytest.approx(truth_pct(n_hot), rel=1e-3)


def test_sidecar_decay_time_equal_to_scan_start_is_start_and_no_injection_is_assumed(tmp_path):
    """PET-BIDS keys, no InjectionStart: ImageDecayCorrectionTime = ScanStart is START, not ADMIN."""
    import nibabel as nib

    arr = np.repeat(pattern()[None], 4, axis=0).T * 1000.0  # [i, j, k]
    img = nib.Nifti1Image(arr.astype(np.float32), np.diag([4.0, 4.0, 3.0, 1.0]))
    nib.save(img, tmp_path / "pet.nii.gz")
    acq = T_INJ + dt.timedelta(hours=1)
    side = {"Modality": "PT", "Units": "Bq/mL", "TracerRadionuclide": "F18", "InjectedRadioactivity": 200,
            "InjectedRadioactivityUnits": "MBq", "TimeZero": acq.strftime("%H:%M:%S"), "ScanStart": 0,
            "FrameTimesStart": [0], "FrameDuration": [300], "ImageDecayCorrected": True,
            "ImageDecayCorrectionTime": 0}
    (tmp_path / "pet.json").write_text(json.dumps(side))
    _scans_tsv(tmp_path, tmp_path / "pet.nii.gz", acq)
    study = load_study(tmp_path)
    em = study.timepoints[0].emission
    assert em.get("decay_correction") == "START" and em.get("injection_time") is None
    labels, _ = hot_labels(study)
    with pytest.raises(MissingMetadataError, match="--injection-time"):
        quantify(study, labels)


# ------------------------------------------------------------------ the real Siemens EARL series
EARL = REALDATA / "linaqa" / "EARL-PET"


def _earl_files():
    if not EARL.is_dir():
        pytest.skip("../shared/realdata is absent")
    return sorted(EARL.glob("*.IMA"))


def test_earl_later_bed_alone_refers_to_the_series_start(tmp_path):
    files = _earl_files()
    bed2 = [f for f in files if str(pydicom.dcmread(f, stop_before_pixels=True).AcquisitionTime).startswith("123408")]
    assert len(bed2) == 31
    full = load_study(EARL)
    assert not any("puts the decay reference" in w for w in full.warnings)  # the file's own routes agree
    crop = tmp_path / "bed2"
    crop.mkdir()
    for f in bed2:
        shutil.copy(f, crop / f.name)
    study = load_study(crop)
    em = study.timepoints[0].emission
    assert em.acquisition_start == dt.datetime(2025, 7, 9, 12, 34, 8)
    assert em.get("decay_reference_offset_s") == pytest.approx(-316.0)  # series start 12:28:52
    assert not any("puts the decay reference" in w for w in study.warnings)
    img = em.image
    labels = LabelMap.from_masks(img, {1: np.ones(img.array.shape, bool)}, {1: "liver"})
    df = quantify(study, labels)
    # the file states: Bq/mL decay-corrected to the series start 12:28:52, injection 12:28:04, 186 MBq
    total_mbq = float(img.array.astype(np.float64).sum()) * img.voxel_volume_ml * 1e-6
    want = 100.0 * total_mbq * math.exp(lam_s(F18_S) * 48.0) / 186.0
    assert pct_of(df) == pytest.approx(want, rel=1e-4)
    # dcm2niix on the same bed gives the same %ID
    nii, side = _dcm2niix(crop, tmp_path / "nifti", "earl_pet")
    assert side["FrameTimesStart"] == [316] and side["ScanStart"] == 0
    _scans_tsv(tmp_path / "nifti", nii, dt.datetime(2025, 7, 9, 12, 34, 8))
    nstudy = load_study(tmp_path / "nifti")
    nimg = nstudy.timepoints[0].emission.image
    nlab = LabelMap.from_masks(nimg, {1: np.ones(nimg.array.shape, bool)}, {1: "liver"})
    got = pct_of(quantify(nstudy, nlab, injection_time=dt.datetime(2025, 7, 9, 12, 28, 4)))
    assert got == pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize("state", ["START", "ADMIN", "NONE"])
def test_beds_exported_as_separate_series_are_stitched_from_their_decay_reference(tmp_path, state):
    # each bed its own series; both carry the PET series reference of the whole acquisition
    n0, starts = write_pet(tmp_path / "pet", state=state, n_beds=2, keep_beds=(0,))
    n1, _ = write_pet(tmp_path / "pet" / "bed1", state=state, n_beds=2, keep_beds=(1,))
    study = load_study(tmp_path / "pet")
    assert len(study.timepoints) == 1
    em = study.timepoints[0].emission
    assert len(em.get("beds")) == 2
    labels, n = hot_labels(study)
    assert n == n0 + n1
    assert pct_of(quantify(study, labels)) == pytest.approx(truth_pct(n), rel=1e-3)


def test_dcm2niix_start_sidecar_without_frame_times_start(tmp_path):
    """dcm2niix counts from SeriesTime (ScanStart 0): without FrameTimesStart, AcquisitionTime - SeriesTime
    is where the image starts."""
    n_hot, starts = write_pet(tmp_path / "dicom", state="START", keep_beds=(2,))
    nii, side = _dcm2niix(tmp_path / "dicom", tmp_path / "nifti", "pet")
    assert side["SeriesTime"] == "12:00:00" and side["AcquisitionTime"].startswith("12:10:40")
    del side["FrameTimesStart"]
    (tmp_path / "nifti" / "pet.json").write_text(json.dumps(side))
    _scans_tsv(tmp_path / "nifti", nii, starts[2])
    study = load_study(tmp_path / "nifti")
    assert study.timepoints[0].emission.get("decay_reference_offset_s") == pytest.approx(-640.0)
    labels, _ = hot_labels(study)
    assert pct_of(quantify(study, labels, injection_time=T_INJ)) == pytest.approx(truth_pct(n_hot), rel=1e-3)
