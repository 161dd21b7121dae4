"""DICOM loader against known truth: SimpleITK's geometry on real files, the
values stated in ``../shared/realdata/README.md``, and hand-built pydicom
datasets with known values (``REFERENCE.md`` section 3)."""

import datetime as dt
import math
import random
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from spectrack import physics
from spectrack.errors import InputError
from spectrack.load.dicom import (load_dicom_folder, planar_counts, read_ct_series, read_nm_multiframe,
                                  read_pet_series)
from spectrack.load.model import META_KEYS

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
LINAQA = REALDATA / "linaqa"
NM_SOP = "1.2.840.10008.5.1.4.1.1.20"
CT_SOP = "1.2.840.10008.5.1.4.1.1.2"
PET_SOP = "1.2.840.10008.5.1.4.1.1.128"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared/realdata not available)")
    return path


# ------------------------------------------------------------------ builders
def _base(sop: str, modality: str, series_uid: str | None = None, **kw) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SOPClassUID = sop
    ds.Modality = modality
    ds.StudyInstanceUID = kw.pop("study_uid", "1.2.3.4")
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientID = "nhp01"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def make_nm(frames: np.ndarray, *, sbs=4.0, ipp=(-100.0, -120.0, 50.0), iop=(1, 0, 0, 0, 1, 0),
            pixel_spacing=(3.0, 2.0), slice_vector=None, image_type="RECON TOMO", drop=(), **kw) -> Dataset:
    """A reconstructed NM multi-frame object; frames[f] is frame f in file order."""
    frames = np.asarray(frames, dtype=np.uint16)
    n = frames.shape[0]
    ds = _base(NM_SOP, "NM", **kw)
    ds.ImageType = ["DERIVED", "PRIMARY", image_type, "EMISSION"]
    ds.NumberOfFrames = n
    ds.Rows, ds.Columns = frames.shape[1], frames.shape[2]
    ds.PixelRepresentation = 0
    ds.PixelSpacing = list(pixel_spacing)
    ds.SpacingBetweenSlices = sbs
    ds.SliceThickness = abs(sbs)
    ds.FrameIncrementPointer = Tag(0x0054, 0x0080)
    sv = list(slice_vector if slice_vector is not None else range(1, n + 1))
    ds.SliceVector = sv
    ds.NumberOfSlices = len(set(sv))
    det = Dataset()
    det.ImagePositionPatient = list(ipp)
    det.ImageOrientationPatient = list(iop)
    ds.DetectorInformationSequence = Sequence([det])
    rot = Dataset()
    rot.ActualFrameDuration = 20000
    rot.NumberOfFramesInRotation = 60
    ds.RotationInformationSequence = Sequence([rot])
    ds.NumberOfRotations = 1
    ds.AcquisitionDate = "20260314"
    ds.AcquisitionTime = "231000"
    ds.PixelData = frames.tobytes()
    for name in drop:
        delattr(ds, name)
    return ds


def _ct_slice(z: float, stored: np.ndarray, series_uid: str, instance: int, *, slope=1.0, intercept=-1024.0,
              iop=(1, 0, 0, 0, 1, 0), ipp_xy=(-50.0, -60.0), time="231500.25", thickness=5.0) -> Dataset:
    ds = _base(CT_SOP, "CT", series_uid)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Rows, ds.Columns = stored.shape
    ds.PixelRepresentation = 1
    ds.PixelSpacing = [0.8, 0.6]
    ds.ImageOrientationPatient = list(iop)
    row, col = np.array(iop[:3], float), np.array(iop[3:], float)
    normal = np.cross(row, col)
    ds.ImagePositionPatient = [float(v) for v in (ipp_xy[0] * row + ipp_xy[1] * col + z * normal)]
    ds.SliceThickness = thickness
    ds.InstanceNumber = instance
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    ds.FrameOfReferenceUID = "1.2.3.4.5"
    ds.AcquisitionDate = "20260314"
    ds.AcquisitionTime = time
    ds.PixelData = stored.astype(np.int16).tobytes()
    return ds


def _save(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_ct(folder: Path, n=5, spacing=2.5, z0=-30.0, iop=(1, 0, 0, 0, 1, 0), seed=0, vary_slope=True):
    """CT slices in shuffled order, meaningless names, scrambled InstanceNumber, nested folders."""
    rng = np.random.default_rng(seed)
    uid = generate_uid()
    stored = [rng.integers(-1000, 2000, size=(4, 6)).astype(np.int16) for _ in range(n)]
    order = list(range(n))
    random.Random(seed).shuffle(order)
    paths = []
    for rank, k in enumerate(order):
        slope = 1.0 + 0.5 * (k % 2) * vary_slope
        ds = _ct_slice(z0 + k * spacing, stored[k], uid, instance=(7 * k + 3) % 11, slope=slope,
                       intercept=-1024.0, iop=iop, time=f"2315{10 + k:02d}")
        sub = folder / ("a" if rank % 2 else "b/c")
        paths.append(_save(ds, sub / f"x{rank * 37 % 101:03d}"))
    return stored, paths


# ------------------------------------------------------------------ real files: SPECT
@pytest.mark.parametrize("name", ["Jaszack.dcm", "TomoResolution.dcm"])
def test_nm_recon_geometry_and_values_equal_simpleitk(name):
    path = _need(LINAQA / "NMQC" / name)
    s = read_nm_multiframe(path)
    ref = sitk.ReadImage(str(path))
    n = np.array(s.image.shape_ijk)
    assert tuple(n) == ref.GetSize()
    corners = [(i, j, k) for i in (0, n[0] - 1) for j in (0, n[1] - 1) for k in (0, n[2] - 1)]
    for ijk in corners + [(5, 17, 3), (n[0] // 2, n[1] // 3, n[2] - 2)]:
        ours = s.image.index_to_world_mm(ijk)
        theirs = ref.TransformIndexToPhysicalPoint([int(v) for v in ijk])
        np.testing.assert_allclose(ours, theirs, atol=1e-3)
    centres = s.image.voxel_centres_mm()
    np.testing.assert_allclose(centres[-1, 0, 0], ref.TransformIndexToPhysicalPoint([0, 0, int(n[2] - 1)]), atol=1e-3)
    np.testing.assert_array_equal(s.image.array, sitk.GetArrayFromImage(ref).astype(np.float32))
    assert s.image.array.dtype == np.float32
    # SpacingBetweenSlices is negative in both files: the third axis runs to the feet
    np.testing.assert_allclose(s.image.direction[:, 2], [0, 0, -1], atol=1e-12)
    assert np.all(s.image.spacing_mm > 0)


def test_nm_jaszczak_metadata():
    s = read_nm_multiframe(_need(LINAQA / "NMQC" / "Jaszack.dcm"))
    assert s.modality == "NM"
    np.testing.assert_allclose(s.image.origin_mm, [0, -264.319977, -165.199986], atol=1e-6)
    np.testing.assert_allclose(s.image.spacing_mm, [4.12999964] * 3, atol=1e-6)
    assert s.get("radionuclide") == "Tc-99m" and "C-163A8" in s.source("radionuclide")
    assert s.get("half_life_h") == 6.0067 and s.source("half_life_h").startswith("table: DDEP")
    assert s.get("injected_activity_mbq") is None  # RadionuclideTotalDose is 0
    assert any("RadionuclideTotalDose" in w and "is 0" in w for w in s.get("load_warnings"))
    assert s.get("units") == "counts" and s.get("value_mapping") == "none"
    assert s.get("duration_s") == pytest.approx(45000 * 45 / 1000)
    assert s.get("acquisition_start") == dt.datetime(2014, 11, 14, 18, 45, 21)
    assert "AcquisitionDate (0008,0022)" in s.source("acquisition_start")
    assert s.get("image_type")[2] == "RECON TOMO"
    assert "frame_of_reference_uid" not in s.meta  # optional in NM, absent here
    for key, src in s.meta.items():
        assert isinstance(src.source, str) and src.source
    assert {"modality", "patient_id", "series_uid", "units", "acquisition_start"} <= set(META_KEYS) & set(s.meta)


# ------------------------------------------------------------------ real files: PET
@pytest.fixture(scope="module")
def earl():
    files = sorted(_need(LINAQA / "EARL-PET").glob("*.IMA"))
    return files, read_pet_series(files[::-1])  # reversed order on purpose


def test_pet_earl_total_activity_units_and_header(earl):
    files, s = earl
    img = s.image
    assert s.modality == "PT" and img.units == "Bq/mL" and s.get("units") == "Bq/mL"
    assert "Units (0054,1001) BQML" in s.source("units")
    assert img.shape_ijk == (200, 200, 85)
    np.testing.assert_allclose(img.spacing_mm, [4.07283, 4.07283, 3.0], atol=1e-6)  # not SliceThickness 5
    total_mbq = float(img.array.astype(np.float64).sum()) * img.voxel_volume_ml / 1e6
    assert total_mbq == pytest.approx(25.63, rel=1e-3)
    assert s.get("injected_activity_mbq") == pytest.approx(186.0)
    assert "Bq" in s.source("injected_activity_mbq")
    assert s.get("injection_time") == dt.datetime(2025, 7, 9, 12, 28, 4)
    assert s.get("half_life_h") * 3600 == pytest.approx(6586.2)
    assert s.get("decay_correction") == "START"
    assert s.get("radionuclide") == "F-18"
    assert s.get("acquisition_start") == dt.datetime(2025, 7, 9, 12, 28, 52)
    assert "DECY" in s.get("corrections") and "ATTN" in s.get("corrections")
    assert s.get("dose_calibration_factor") == pytest.approx(33976900)
    assert s.get("tracer") == "Fluorodeoxyglucose"


def test_pet_earl_per_slice_rescale(earl):
    files, s = earl
    ds = [pydicom.dcmread(f) for f in files[:3]]
    assert len({float(d.RescaleSlope) for d in ds}) == 3
    z0 = s.image.origin_mm[2]
    for d in ds:
        k = int(round((float(d.ImagePositionPatient[2]) - z0) / 3.0))
        want = d.pixel_array.astype(np.float64) * float(d.RescaleSlope) + float(d.RescaleIntercept)
        np.testing.assert_allclose(s.image.array[k], want, rtol=1e-6)


def test_pet_earl_decay_factor_is_exp_lambda_frame_reference_time(earl):
    """DecayFactor = exp(lambda * FrameReferenceTime): FrameReferenceTime counts from the
    series start (the START reference) to the time within the bed's frame at which the
    activity equals the frame mean, so it holds both the decay to the bed start and the
    in-frame factor."""
    files, s = earl
    hl_h = s.get("half_life_h")
    dfs = np.array(s.get("decay_factor_per_slice"))
    frt_s = np.array(s.get("frame_reference_time_s_per_slice"))
    assert dfs.size == frt_s.size == 85 and len(set(dfs.tolist())) > 1
    np.testing.assert_allclose(dfs, physics.decay_factor(frt_s / 3600.0, hl_h), rtol=2e-4)
    assert s.get("decay_factor") == dfs[0]
    # the two bed positions: series start 12:28:52 and 12:34:08, 300 s frames
    d300_h = 300.0 / 3600.0
    bed1 = physics.in_frame_factor(d300_h, hl_h)
    bed2 = physics.decay_factor(316.0 / 3600.0, hl_h) * physics.in_frame_factor(d300_h, hl_h)
    assert min(dfs) == pytest.approx(bed1, rel=2e-4)
    assert max(dfs) == pytest.approx(bed2, rel=2e-4)


def test_pet_earl_geometry_equals_simpleitk(earl):
    files, s = earl
    r = sitk.ImageSeriesReader()
    r.SetFileNames([str(f) for f in files])
    ref = r.Execute()
    n = s.image.shape_ijk
    for ijk in [(0, 0, 0), (n[0] - 1, n[1] - 1, n[2] - 1), (10, 150, 40)]:
        np.testing.assert_allclose(s.image.index_to_world_mm(ijk),
                                   ref.TransformIndexToPhysicalPoint(ijk), atol=1e-3)
    np.testing.assert_allclose(s.image.array, sitk.GetArrayFromImage(ref), rtol=1e-5, atol=1e-3)


# ------------------------------------------------------------------ real files: planar and folder
@pytest.mark.parametrize("name, counts, frames", [("Syringe_1cc", 719508, 1), ("PetriDish", 734056, 1),
                                                  ("Background", 10548, 2)])
def test_planar_counts_sensitivity_files(name, counts, frames):
    info = planar_counts(_need(LINAQA / "NMQC" / "sensitivity" / f"{name}.dcm"))
    assert info["total_counts"] == counts
    assert info["n_frames"] == frames and len(info["counts_per_frame"]) == frames
    assert sum(info["counts_per_frame"]) == counts
    # 300 s each; the two frames of Background are the two detectors, acquired at once
    assert info["duration_s"] == pytest.approx(300.0, abs=0.01)
    assert info["acquisition_start"].date() == dt.date(2012, 10, 2)
    assert "AcquisitionTime" in info["acquisition_start_source"]


def test_planar_counts_times():
    info = planar_counts(_need(LINAQA / "NMQC" / "sensitivity" / "Syringe_1cc.dcm"))
    assert info["acquisition_start"] == dt.datetime(2012, 10, 2, 17, 26, 16, 937000)
    assert info["frame_duration_s"] == pytest.approx(299.994)


def test_load_real_folder_skips_planar_and_text():
    series, warns = load_dicom_folder(_need(LINAQA))
    assert sorted(s.modality for s in series) == ["NM", "NM", "PT"]
    text = "\n".join(warns)
    for name in ("Background.dcm", "PetriDish.dcm", "Syringe_1cc.dcm"):
        assert name in text
    assert "planar STATIC" in text
    assert "skipped LICENCE.txt: not a DICOM file" in text


# ------------------------------------------------------------------ synthetic CT
def test_ct_sorted_by_position_not_instance_number(tmp_path):
    stored, paths = write_ct(tmp_path / "dicom", n=5, spacing=2.5, z0=-30.0)
    (tmp_path / "dicom" / "notes.txt").write_text("scan notes\n")
    series, warns = load_dicom_folder(tmp_path / "dicom")
    assert len(series) == 1
    s = series[0]
    assert s.modality == "CT" and s.image.units == "HU"
    np.testing.assert_allclose(s.image.spacing_mm, [0.6, 0.8, 2.5])  # SliceThickness (5) is not the spacing
    np.testing.assert_allclose(s.image.origin_mm, [-50, -60, -30])
    for k in range(5):
        slope = 1.0 + 0.5 * (k % 2)
        np.testing.assert_allclose(s.image.array[k], stored[k] * slope - 1024.0)
    assert "skipped notes.txt: not a DICOM file" in warns
    assert len(s.files) == 5
    # earliest slice time: AcquisitionTime 231510 of the slice with k = 0
    assert s.get("acquisition_start") == dt.datetime(2026, 3, 14, 23, 15, 10)
    assert "earliest of 5 slices" in s.source("acquisition_start")


def test_ct_oblique_equals_simpleitk(tmp_path):
    th = math.radians(25)
    iop = (1, 0, 0, 0, math.cos(th), math.sin(th))  # tilted plane: sort along its normal
    # one RescaleSlope for all slices: SimpleITK applies the first slice's to all
    stored, paths = write_ct(tmp_path, n=4, spacing=3.0, z0=12.0, iop=iop, seed=3, vary_slope=False)
    s = read_ct_series(paths)
    names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path), "", False, True)
    r = sitk.ImageSeriesReader()
    r.SetFileNames(names)
    ref = r.Execute()
    for ijk in [(0, 0, 0), (5, 3, 3), (2, 1, 2)]:
        np.testing.assert_allclose(s.image.index_to_world_mm(ijk), ref.TransformIndexToPhysicalPoint(ijk), atol=1e-3)
    np.testing.assert_allclose(s.image.array, sitk.GetArrayFromImage(ref), atol=1e-3)


def test_ct_missing_tags_are_absent(tmp_path):
    _, paths = write_ct(tmp_path, n=3)
    s = read_ct_series(paths)
    assert "series_description" not in s.meta and "injected_activity_mbq" not in s.meta
    assert s.get("patient_id") == "nhp01" and s.source("patient_id") == "PatientID (0010,0020)"
    assert s.get("frame_of_reference_uid") == "1.2.3.4.5"


def test_ct_two_acquisitions_in_one_series_are_split(tmp_path):
    uid = generate_uid()
    arr = np.zeros((2, 2), np.int16)
    for acq in (1, 2):
        for k in range(3):
            ds = _ct_slice(k * 2.0, arr + acq, uid, instance=k)
            ds.AcquisitionNumber = acq
            _save(ds, tmp_path / f"{acq}_{k}")
    series, _ = load_dicom_folder(tmp_path)
    assert len(series) == 2
    assert sorted(float(s.image.array.mean()) for s in series) == [1 - 1024.0, 2 - 1024.0]


def test_ct_missing_slice_is_reported(tmp_path):
    uid = generate_uid()
    for k in (0, 1, 2, 4):  # slice 3 is missing
        _save(_ct_slice(k * 2.0, np.zeros((2, 2), np.int16), uid, instance=k), tmp_path / f"ct{k}")
    nm = make_nm(np.ones((2, 2, 2)))
    _save(nm, tmp_path / "spect")
    series, warns = load_dicom_folder(tmp_path)
    assert [s.modality for s in series] == ["NM"]
    assert any("irregular slice spacing" in w for w in warns)
    with pytest.raises(InputError, match="irregular slice spacing"):
        read_ct_series(sorted(tmp_path.glob("ct*")))


# ------------------------------------------------------------------ synthetic NM
@pytest.mark.parametrize("sbs", [4.0, -4.0])
def test_nm_spacing_sign_equals_simpleitk(tmp_path, sbs):
    frames = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5)
    path = _save(make_nm(frames, sbs=sbs), tmp_path / "spect.dcm")
    s = read_nm_multiframe(path)
    ref = sitk.ReadImage(str(path))
    for ijk in [(0, 0, 0), (4, 3, 2), (1, 2, 1)]:
        np.testing.assert_allclose(s.image.index_to_world_mm(ijk), ref.TransformIndexToPhysicalPoint(ijk), atol=1e-3)
    np.testing.assert_array_equal(s.image.array, frames)
    np.testing.assert_allclose(s.image.spacing_mm, [2.0, 3.0, 4.0])  # PixelSpacing is [row, column]
    assert s.image.direction[2, 2] == math.copysign(1.0, sbs)
    np.testing.assert_allclose(s.image.index_to_world_mm([0, 0, 2]), [-100, -120, 50 + 2 * sbs])
    assert s.get("duration_s") == pytest.approx(20.0 * 60)


def test_nm_frames_ordered_by_slice_vector(tmp_path):
    frames = np.stack([np.full((2, 3), v, np.uint16) for v in (30, 10, 40, 20)])
    path = _save(make_nm(frames, slice_vector=[3, 1, 4, 2]), tmp_path / "f")
    s = read_nm_multiframe(path)
    np.testing.assert_array_equal(s.image.array[:, 0, 0], [10, 20, 30, 40])


def test_nm_gated_recon_gates_summed(tmp_path):
    frames = np.stack([np.full((2, 2), v, np.uint16) for v in (1, 2, 10, 20, 100, 200)])
    ds = make_nm(frames, slice_vector=[1, 2, 1, 2, 1, 2], image_type="RECON GATED TOMO")
    ds.FrameIncrementPointer = [Tag(0x0054, 0x0070), Tag(0x0054, 0x0080)]
    ds.TimeSlotVector = [1, 1, 2, 2, 3, 3]
    s = read_nm_multiframe(_save(ds, tmp_path / "g"))
    np.testing.assert_array_equal(s.image.array[:, 0, 0], [111, 222])
    assert s.get("gates_summed") == 3


def test_units_rwvm_beats_rescale_and_units(tmp_path):
    frames = np.full((2, 2, 2), 10, np.uint16)
    ds = make_nm(frames)
    ds.RescaleSlope, ds.RescaleIntercept, ds.Units = 2.0, 0.0, "CNTS"
    item = Dataset()
    item.RealWorldValueSlope = 0.5
    item.RealWorldValueIntercept = 1.0
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "Bq/ml", "UCUM", "Becquerels/milliliter"
    item.MeasurementUnitsCodeSequence = Sequence([code])
    ds.RealWorldValueMappingSequence = Sequence([item])
    s = read_nm_multiframe(_save(ds, tmp_path / "rwvm"))
    assert s.get("units") == "Bq/mL" and s.image.units == "Bq/mL"
    assert s.source("units") == "RealWorldValueMappingSequence (0040,9096) UCUM Bq/ml"
    assert s.get("value_mapping") == "RWVM"
    np.testing.assert_allclose(s.image.array, 10 * 0.5 + 1.0)

    del ds.RealWorldValueMappingSequence
    ds.Units = "BQML"
    s = read_nm_multiframe(_save(ds, tmp_path / "rescale"))
    assert s.get("units") == "Bq/mL" and s.get("value_mapping") == "rescale"
    assert "Units (0054,1001) BQML" in s.source("units")
    np.testing.assert_allclose(s.image.array, 20.0)

    for name in ("Units", "RescaleSlope", "RescaleIntercept"):
        delattr(ds, name)
    s = read_nm_multiframe(_save(ds, tmp_path / "plain"))
    assert s.get("units") == "counts" and s.get("value_mapping") == "none"
    np.testing.assert_allclose(s.image.array, 10.0)


def _radiopharm(dose=None, start_time=None, start_dt=None, half_life=None, code=("72454006", "SCT")):
    ri = Dataset()
    if dose is not None:
        ri.RadionuclideTotalDose = dose
    if start_time:
        ri.RadiopharmaceuticalStartTime = start_time
    if start_dt:
        ri.RadiopharmaceuticalStartDateTime = start_dt
    if half_life:
        ri.RadionuclideHalfLife = half_life
    ri.Radiopharmaceutical = "MAG3-tofersen"
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = code[0], code[1], "^99m^Technetium"
    ri.RadionuclideCodeSequence = Sequence([c])
    return Sequence([ri])


def test_nm_times_and_radiopharmaceutical(tmp_path):
    ds = make_nm(np.ones((2, 2, 2)))
    ds.AcquisitionDateTime = "20260315001500.5+0100"
    ds.TimezoneOffsetFromUTC = "+0100"
    ds.RadiopharmaceuticalInformationSequence = _radiopharm(dose=180.5, start_time="234000")
    s = read_nm_multiframe(_save(ds, tmp_path / "a"))
    assert s.get("acquisition_start") == dt.datetime(2026, 3, 15, 0, 15, 0, 500000)
    assert s.source("acquisition_start") == "AcquisitionDateTime (0008,002A)"
    assert s.get("timezone_offset") == "+0100"
    # only a time of day: no date invented (the study layer dates it)
    assert s.get("injection_time") is None
    assert s.get("injection_time_of_day") == dt.time(23, 40)
    assert s.source("injection_time_of_day") == "RadiopharmaceuticalStartTime (0018,1072)"
    assert s.get("injected_activity_mbq") == 180.5
    assert s.source("injected_activity_mbq").startswith("RadionuclideTotalDose (0018,1074)")
    assert s.get("radionuclide") == "Tc-99m" and s.get("tracer") == "MAG3-tofersen"
    assert s.get("half_life_h") == physics.nuclide("Tc-99m").half_life_h


def test_nm_time_fallbacks(tmp_path):
    ds = make_nm(np.ones((2, 2, 2)), drop=("AcquisitionDate", "AcquisitionTime"))
    ds.SeriesDate, ds.SeriesTime = "20260314", "2310"
    ds.ContentDate, ds.ContentTime = "20260316", "120000"
    s = read_nm_multiframe(_save(ds, tmp_path / "a"))
    assert s.get("acquisition_start") == dt.datetime(2026, 3, 14, 23, 10)
    assert "SeriesDate (0008,0021) + SeriesTime (0008,0031)" == s.source("acquisition_start")
    # a malformed date is reported and the next tag pair is used
    ds.AcquisitionDate, ds.AcquisitionTime = "20260101", "231000"
    bad = _save(ds, tmp_path / "b")
    bad.write_bytes(bad.read_bytes().replace(b"20260101", b"20261345"))  # month 13
    s = read_nm_multiframe(bad)
    assert s.get("acquisition_start") == dt.datetime(2026, 3, 14, 23, 10)
    assert any("AcquisitionDate" in w for w in s.get("load_warnings"))
    # nothing usable: key absent, never an exception
    for name in ("AcquisitionDate", "AcquisitionTime", "SeriesDate", "SeriesTime", "ContentDate", "ContentTime"):
        delattr(ds, name)
    s = read_nm_multiframe(_save(ds, tmp_path / "c"))
    assert "acquisition_start" not in s.meta


@pytest.mark.parametrize("sop, dose, want, note", [
    (NM_SOP, 185.0, 185.0, "MBq"),
    (NM_SOP, 1.85e8, 185.0, "read as Bq"),
    (PET_SOP, 3.7e8, 370.0, "Bq (PET convention)"),
    (PET_SOP, 370.0, 370.0, "read as MBq"),
])
def test_injected_activity_units_by_iod_and_magnitude(tmp_path, sop, dose, want, note):
    if sop == NM_SOP:
        ds = make_nm(np.ones((2, 2, 2)))
        ds.RadiopharmaceuticalInformationSequence = _radiopharm(dose=dose)
        s = read_nm_multiframe(_save(ds, tmp_path / "nm"))
    else:
        paths = write_pet(tmp_path, dose=dose)
        s = read_pet_series(paths)
    assert s.get("injected_activity_mbq") == pytest.approx(want)
    assert note in s.source("injected_activity_mbq")


def test_zero_dose_means_absent(tmp_path):
    ds = make_nm(np.ones((2, 2, 2)))
    ds.RadiopharmaceuticalInformationSequence = _radiopharm(dose=0, start_dt="20260314224000",
                                                            code=("C-163A8", "SNM3"))
    s = read_nm_multiframe(_save(ds, tmp_path / "z"))
    assert "injected_activity_mbq" not in s.meta
    assert s.get("injection_time") == dt.datetime(2026, 3, 14, 22, 40)
    assert s.get("radionuclide") == "Tc-99m"


def write_pet(folder: Path, dose=3.7e8, slopes=(0.5, 0.25, 2.0)):
    uid = generate_uid()
    paths = []
    for k, slope in enumerate(slopes):
        ds = _base(PET_SOP, "PT", uid)
        ds.Rows, ds.Columns = 2, 3
        ds.PixelRepresentation = 0
        ds.PixelSpacing = [4.0, 4.0]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, 10.0 - 3.0 * k]
        ds.SliceThickness = 5.0
        ds.RescaleSlope, ds.RescaleIntercept = slope, 0.0
        ds.Units, ds.DecayCorrection = "BQML", "START"
        ds.DecayFactor = 1.0 + 0.01 * k
        ds.FrameReferenceTime = 1000.0 * (k + 1)
        ds.ActualFrameDuration = 120000
        ds.SeriesDate, ds.SeriesTime = "20260314", "120000"
        ds.AcquisitionDate, ds.AcquisitionTime = "20260314", "120000"
        ds.RadiopharmaceuticalInformationSequence = _radiopharm(dose=dose, half_life=21624.1)
        ds.PixelData = np.full((2, 3), 100 * (k + 1), np.uint16).tobytes()
        paths.append(_save(ds, folder / f"pet{k}"))
    return paths


def test_pet_synthetic_per_slice_values(tmp_path):
    s = read_pet_series(write_pet(tmp_path))
    # z = 10, 7, 4: sorted ascending along the normal -> files 2, 1, 0
    np.testing.assert_allclose(s.image.array[:, 0, 0], [300 * 2.0, 200 * 0.25, 100 * 0.5])
    np.testing.assert_allclose(s.image.spacing_mm, [4, 4, 3])
    assert s.get("decay_factor_per_slice") == pytest.approx([1.02, 1.01, 1.0])
    assert s.get("frame_reference_time_s_per_slice") == pytest.approx([3.0, 2.0, 1.0])
    assert s.get("duration_s") == 120.0
    assert s.get("half_life_h") == pytest.approx(21624.1 / 3600)


# ------------------------------------------------------------------ robustness
def test_missing_or_empty_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_dicom_folder(tmp_path / "nope")
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(InputError, match="no usable image series") as e:
        load_dicom_folder(tmp_path)
    assert "\n" not in str(e.value)


def test_truncated_and_planar_files_are_skipped(tmp_path):
    good = _save(make_nm(np.ones((3, 4, 4))), tmp_path / "deep" / "er" / "spect.IMA")
    raw = good.read_bytes()
    (tmp_path / "cut1").write_bytes(raw[: len(raw) - 20])  # pixel data cut short
    (tmp_path / "cut2").write_bytes(raw[:150])  # cut inside the header
    planar = make_nm(np.ones((1, 4, 4)), image_type="STATIC", series_uid=None, SeriesDescription="syringe")
    _save(planar, tmp_path / "planar")
    enh = _base("1.2.840.10008.5.1.4.1.1.2.1", "CT", SeriesDescription="enhanced")
    enh.Rows = enh.Columns = 2
    enh.PixelData = np.zeros((2, 2), np.uint16).tobytes()
    _save(enh, tmp_path / "enh.dcm")
    series, warns = load_dicom_folder(tmp_path)
    assert len(series) == 1 and series[0].files == [good]
    text = "\n".join(warns)
    assert "skipped cut1: truncated" in text
    assert "skipped cut2" in text
    assert "'syringe'" in text and "planar STATIC" in text
    assert "Enhanced CT" in text


def test_malformed_spacing_raises_one_line(tmp_path):
    path = _save(make_nm(np.ones((2, 2, 2)), pixel_spacing=(3.5, 3.5)), tmp_path / "bad")
    path.write_bytes(path.read_bytes().replace(b"3.5\\3.5", b"3.x\\3.5"))
    with pytest.raises(InputError, match=r"bad: PixelSpacing \(0028,0030\)") as e:
        read_nm_multiframe(path)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("sbs", [0.0])
def test_zero_slice_spacing_raises(tmp_path, sbs):
    path = _save(make_nm(np.ones((2, 2, 2)), sbs=sbs), tmp_path / "zero")
    with pytest.raises(InputError, match="SpacingBetweenSlices"):
        read_nm_multiframe(path)


def test_absurd_dimensions_refused_before_allocating(tmp_path):
    ds = make_nm(np.ones((2, 2, 2)))
    ds.Rows = ds.Columns = 65535
    ds.NumberOfFrames = 1000
    path = _save(ds, tmp_path / "huge")
    with pytest.raises(InputError, match="8 GiB"):
        read_nm_multiframe(ds)
    with pytest.raises(InputError, match="8 GiB"):
        read_nm_multiframe(path)


def test_planar_counts_synthetic_and_wrong_input(tmp_path):
    frames = np.stack([np.full((4, 4), 1, np.uint16), np.full((4, 4), 2, np.uint16)])
    ds = make_nm(frames, image_type="STATIC")
    ds.FrameIncrementPointer = [Tag(0x0054, 0x0010), Tag(0x0054, 0x0020)]
    ds.EnergyWindowVector, ds.DetectorVector = [1, 1], [1, 2]
    ds.ActualFrameDuration = 600000
    info = planar_counts(_save(ds, tmp_path / "static"))
    assert info["counts_per_frame"] == [16, 32] and info["total_counts"] == 48
    assert info["duration_s"] == 600.0
    assert info["frame_vectors"]["DetectorVector"] == [1, 2]
    with pytest.raises(InputError):
        planar_counts(tmp_path / "missing.dcm")
    (tmp_path / "t.txt").write_text("x")
    with pytest.raises(InputError, match="not a DICOM file"):
        planar_counts(tmp_path / "t.txt")


def test_12_bit_signed_pixels_equal_pydicom(tmp_path):
    """BitsStored 12 in 16 allocated, signed, with junk in the unused high bits."""
    uid = generate_uid()
    paths = []
    values = np.array([[-5, 0], [2047, -2048]], np.int16)
    for k in range(2):
        ds = _ct_slice(k * 2.0, values, uid, instance=k, intercept=0.0)
        ds.BitsStored, ds.HighBit = 12, 11
        raw = (values.astype(np.uint16) & 0x0FFF) | 0xA000  # junk above bit 11
        ds.PixelData = raw.astype(np.uint16).tobytes()
        paths.append(_save(ds, tmp_path / f"b{k}"))
    s = read_ct_series(paths)
    np.testing.assert_array_equal(s.image.array[0], pydicom.dcmread(paths[0]).pixel_array)
    np.testing.assert_array_equal(s.image.array[1], values)


def test_nm_geometry_from_top_level_when_no_detector_sequence(tmp_path):
    ds = make_nm(np.ones((2, 2, 2)), drop=("DetectorInformationSequence",))
    ds.ImagePositionPatient = [1.0, 2.0, 3.0]
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]  # sagittal
    s = read_nm_multiframe(_save(ds, tmp_path / "top"))
    np.testing.assert_allclose(s.image.origin_mm, [1, 2, 3])
    np.testing.assert_allclose(s.image.direction, [[0, 0, -1], [1, 0, 0], [0, -1, 0]], atol=1e-12)
    assert "top level" in s.source("geometry")


def test_nm_one_slice_per_file_is_stacked(tmp_path):
    uid = generate_uid()
    for k in (2, 0, 1):
        ds = make_nm(np.full((1, 2, 2), 10 * (k + 1)), series_uid=uid, drop=("FrameIncrementPointer", "SliceVector"))
        ds.ImagePositionPatient = [0.0, 0.0, 4.0 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        _save(ds, tmp_path / f"n{k}")
    series, _ = load_dicom_folder(tmp_path)
    assert len(series) == 1 and series[0].modality == "NM"
    np.testing.assert_array_equal(series[0].image.array[:, 0, 0], [10, 20, 30])
    assert series[0].image.spacing_mm[2] == pytest.approx(4.0)


def test_ct_int16_when_exact_float32_otherwise(tmp_path):
    """HU go to int16 when every slice maps exactly into it, else the whole series is float32; values are exact."""
    stored, _ = write_ct(tmp_path / "int", n=4, vary_slope=False)
    s = load_dicom_folder(tmp_path / "int")[0][0]
    assert s.image.array.dtype == np.int16
    np.testing.assert_array_equal(s.image.array, np.stack(stored).astype(np.float64) - 1024.0)

    # integer slope 2: still exact in int16 (values up to 2 * 2000 - 1024)
    uid = generate_uid()
    st2 = [np.full((4, 6), 2000 - 7 * k, np.int16) for k in range(3)]
    for k in range(3):
        _save(_ct_slice(2.5 * k, st2[k], uid, k + 1, slope=2.0), tmp_path / "slope2" / f"s{k}")
    s2 = load_dicom_folder(tmp_path / "slope2")[0][0]
    assert s2.image.array.dtype == np.int16
    np.testing.assert_array_equal(s2.image.array, np.stack(st2).astype(np.float64) * 2 - 1024.0)

    # the last slice leaves int16 range (32000 + 1000): the series falls back to float32, earlier slices kept
    uid = generate_uid()
    st3 = [np.full((4, 6), v, np.int16) for v in (-5, 100, 32000)]
    for k in range(3):
        _save(_ct_slice(2.5 * k, st3[k], uid, k + 1, intercept=1000.0), tmp_path / "big" / f"s{k}")
    s3 = load_dicom_folder(tmp_path / "big")[0][0]
    assert s3.image.array.dtype == np.float32
    np.testing.assert_array_equal(s3.image.array, np.stack(st3).astype(np.float64) + 1000.0)

    # a fractional slope on some slices: float32 (the shuffled series of write_ct), equal to stored * slope - 1024
    stored4, _ = write_ct(tmp_path / "frac", n=4, vary_slope=True)
    s4 = load_dicom_folder(tmp_path / "frac")[0][0]
    assert s4.image.array.dtype == np.float32
    for k in range(4):
        np.testing.assert_allclose(s4.image.array[k], stored4[k] * (1.0 + 0.5 * (k % 2)) - 1024.0)


def _tomo_projections(n_views=6, n_det=2, description="SPECT raw", **kw) -> Dataset:
    """Raw SPECT projections as a camera writes them: NM TOMO, one frame per view and detector."""
    frames = np.random.default_rng(1).integers(0, 60, size=(n_views * n_det, 8, 8))
    ds = make_nm(frames, image_type="TOMO", SeriesDescription=description, drop=("SliceVector",), **kw)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "TOMO", "EMISSION"]
    ds.FrameIncrementPointer = [Tag(0x0054, 0x0010), Tag(0x0054, 0x0020), Tag(0x0054, 0x0050),
                                Tag(0x0054, 0x0090)]  # energy window, detector, rotation, angular view
    ds.EnergyWindowVector = [1] * (n_views * n_det)
    ds.DetectorVector = [d + 1 for d in range(n_det) for _ in range(n_views)]
    ds.RotationVector = [1] * (n_views * n_det)
    ds.AngularViewVector = list(range(1, n_views + 1)) * n_det
    ds.NumberOfDetectors = n_det
    ds.DetectorInformationSequence = Sequence([Dataset() for _ in range(n_det)])
    rot = ds.RotationInformationSequence[0]
    rot.AngularStep = 180.0 / n_views  # each detector covers half the circle
    rot.ScanArc = 180.0
    rot.NumberOfFramesInRotation = n_views
    return ds


def test_ct_plus_tomo_projections_refused_naming_them(tmp_path, capsys):
    """Issue 11 section 4: the refusal says which NM files were skipped and why."""
    from spectrack import load_study
    from spectrack.cli import main

    write_ct(tmp_path / "ct")
    _save(_tomo_projections(n_views=6, n_det=2), tmp_path / "nm" / "proj.dcm")
    with pytest.raises(InputError) as e:
        load_study(tmp_path)
    msg = str(e.value)
    assert "(found: CT)" in msg
    assert "NM series 'SPECT raw' (nm/proj.dcm): TOMO projections, not a reconstructed volume" in msg
    assert "ImageType ORIGINAL\\PRIMARY\\TOMO\\EMISSION" in msg
    assert "12 frames = 6 angular views x 2 detectors" in msg
    assert "30 deg steps, 180 deg arc" in msg
    assert "export the reconstruction (ImageType RECON TOMO)" in msg
    rc = main(["quantify", str(tmp_path), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 3
    # progress log lines (stderr without a terminal) start with a date; the error is the one other line
    lines = [ln for ln in err.strip().splitlines() if ln.strip() and not re.match(r"\d{4}-\d\d-\d\d ", ln)]
    assert len(lines) == 1 and "nm/proj.dcm" in lines[0] and "TOMO projections" in lines[0], err


def test_many_projection_files_are_summarised(tmp_path):
    """One projection per file (some cameras export so): the first three are named, the rest counted."""
    from spectrack import load_study

    write_ct(tmp_path / "ct")
    uid = generate_uid()
    for v in range(5):
        ds = _tomo_projections(n_views=1, n_det=1, description=f"view {v + 1}", series_uid=uid)
        _save(ds, tmp_path / "nm" / f"view{v + 1}.dcm")
    with pytest.raises(InputError) as e:
        load_study(tmp_path)
    msg = str(e.value)
    assert "(nm/view1.dcm): TOMO projections" in msg and "(nm/view3.dcm)" in msg and "view4" not in msg
    assert "1 frame = 1 angular view, 180 deg steps" in msg
    assert "and 2 more NM objects skipped" in msg
