"""DICOM export of phantom time points: a CT series and one NM multi-frame SPECT.

Everything is deterministic: UIDs come from
``pydicom.uid.generate_uid(entropy_srcs=...)`` seeded by the study arguments,
dates from the injection time, file names from a seeded random generator.
The NM object follows ``REFERENCE.md`` section 3: geometry in
``DetectorInformationSequence``, a signed ``SpacingBetweenSlices``,
``RotationInformationSequence`` timing, ``RadionuclideTotalDose`` in MBq.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, NuclearMedicineImageStorage, generate_uid
from pydicom.valuerep import format_number_as_ds

from .._version import __version__

__all__ = ["DicomNames", "write_ct_series", "write_nm_spect", "MANUFACTURER", "TRACER"]

MANUFACTURER = "spectrack phantom"
TRACER = "[99mTc]Tc-MAG3-tofersen"
_IMPL_UID = "1.2.826.0.1.3680043.8.498.1"  # pydicom's root, fixed so files do not depend on the pydicom version


def _ds(v) -> str:
    return format_number_as_ds(float(v))


def _da(t: dt.datetime) -> str:
    return t.strftime("%Y%m%d")


def _tm(t: dt.datetime) -> str:
    return t.strftime("%H%M%S")


def _dt(t: dt.datetime) -> str:
    return t.strftime("%Y%m%d%H%M%S")


class DicomNames:
    """Deterministic UIDs and random-looking file names for one study."""

    def __init__(self, builder):
        self.b = builder
        self.rng = np.random.default_rng([builder.seed, 0x66696C])
        self.used: set[str] = set()
        self.count = 0

    def uid(self, *parts) -> str:
        return generate_uid(entropy_srcs=["spectrack-phantom", self.b.digest] + [str(p) for p in parts])

    def file_name(self) -> str:
        while True:
            name = self.rng.bytes(8).hex().upper()
            if name not in self.used:
                self.used.add(name)
                self.count += 1
                return name


def _code(value, scheme, meaning) -> Dataset:
    d = Dataset()
    d.CodeValue = value
    d.CodingSchemeDesignator = scheme
    d.CodeMeaning = meaning
    return d


def _base(b, names: DicomNames, tp, sop_class, sop_uid, when: dt.datetime, modality: str) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = _IMPL_UID
    meta.ImplementationVersionName = "SPECTRACK"
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    study_t = tp.acquisition_start
    ds.InstanceCreationDate = _da(when)
    ds.InstanceCreationTime = _tm(when)
    ds.StudyDate, ds.StudyTime = _da(study_t), _tm(study_t)
    ds.SeriesDate, ds.SeriesTime = _da(when), _tm(when)
    ds.AcquisitionDate, ds.AcquisitionTime = _da(when), _tm(when)
    ds.ContentDate, ds.ContentTime = _da(when), _tm(when)
    ds.AcquisitionDateTime = _dt(when)
    ds.AccessionNumber = ""
    ds.Modality = modality
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "digital phantom"
    ds.SoftwareVersions = f"spectrack {__version__}"
    ds.InstitutionName = ""
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = f"phantom {b.pre.name} SPECT/CT tp{tp.index}"
    ds.PatientName = f"Phantom^{b.pre.name.upper()}^{b.seed}"
    ds.PatientID = b.subject_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.PatientWeight = _ds(b.pre.weight_kg)
    if b.pre.species_description:
        ds.PatientSpeciesDescription = b.pre.species_description
    ds.StudyInstanceUID = names.uid("study", tp.index)
    ds.StudyID = f"TP{tp.index}"
    ds.FrameOfReferenceUID = names.uid("frame-of-reference", tp.index)
    ds.PositionReferenceIndicator = ""
    return ds


def _write(ds: FileDataset, folder: Path, names: DicomNames) -> str:
    name = names.file_name()
    folder.mkdir(parents=True, exist_ok=True)
    ds.save_as(folder / name, enforce_file_format=True)
    return name


def write_ct_series(folder, tp, b, names: DicomNames) -> dict:
    """Write the CT of time point ``tp`` (one file per slice, shuffled, int16 + rescale)."""
    folder = Path(folder)
    ct = tp.ct
    when = tp.acquisition_start + dt.timedelta(seconds=tp.duration_s + 60)  # CT right after the SPECT
    series_uid = names.uid("ct-series", tp.index)
    nk, nj, ni = ct.array.shape
    stored = (ct.array.astype(np.int32) + 1024).astype(np.int16)
    order = np.random.default_rng([b.seed, 0x5348, tp.index]).permutation(nk)
    iop = [_ds(v) for v in np.concatenate([ct.direction[:, 0], ct.direction[:, 1]])]
    normal = ct.direction[:, 2]
    ds = _base(b, names, tp, CTImageStorage, names.uid("ct-sop", tp.index, 0), when, "CT")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 2
    ds.SeriesDescription = f"CT tp{tp.index}"
    ds.BodyPartExamined = "WHOLEBODY"
    ds.PatientPosition = "HFS"
    ds.KVP = "120"
    ds.SliceThickness = _ds(ct.spacing_mm[2])
    ds.ImageOrientationPatient = iop
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = nj, ni
    ds.PixelSpacing = [_ds(ct.spacing_mm[1]), _ds(ct.spacing_mm[0])]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter, ds.WindowWidth = "40", "400"
    for k in order:  # one dataset, per-slice elements replaced (fast)
        k = int(k)
        sop = names.uid("ct-sop", tp.index, k)
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.SOPInstanceUID = sop
        ds.InstanceNumber = nk - k  # numbered head to feet, unlike the slice order
        pos = ct.index_to_world_mm([0, 0, k])
        ds.ImagePositionPatient = [_ds(v) for v in pos]
        ds.SliceLocation = _ds(float(pos @ normal))
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        _write(ds, folder, names)
    return {"series_uid": series_uid, "n_files": nk, "frame_of_reference_uid": names.uid("frame-of-reference",
                                                                                         tp.index)}


def write_nm_spect(folder, tp, b, names: DicomNames) -> dict:
    """Write the SPECT of time point ``tp`` as one NM Image Storage multi-frame object."""
    folder = Path(folder)
    img = tp.spect
    when = tp.acquisition_start
    series_uid = names.uid("nm-series", tp.index)
    sop = names.uid("nm-sop", tp.index)
    ds = _base(b, names, tp, NuclearMedicineImageStorage, sop, when, "NM")
    nk, nj, ni = img.array.shape
    step = float(img.spacing_mm[2])
    # a negated third direction column is stored as a negative slice step
    normal = np.cross(img.direction[:, 0], img.direction[:, 1])
    sign = 1.0 if float(normal @ img.direction[:, 2]) > 0 else -1.0
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 1
    ds.SeriesDescription = f"SPECT tp{tp.index} {TRACER}"
    ds.InstanceNumber = 1
    ds.ContentDate = _da(when + dt.timedelta(seconds=tp.duration_s))
    ds.ContentTime = _tm(when + dt.timedelta(seconds=tp.duration_s))
    ds.PatientOrientationCodeSequence = Sequence([_code("102538003", "SCT", "recumbent")])
    ds.PatientOrientationCodeSequence[0].PatientOrientationModifierCodeSequence = Sequence(
        [_code("40199007", "SCT", "supine")])
    ds.PatientGantryRelationshipCodeSequence = Sequence([_code("102540008", "SCT", "headfirst")])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = str(nk)
    ds.FrameIncrementPointer = Tag(0x0054, 0x0080)
    ds.Rows, ds.Columns = nj, ni
    ds.PixelSpacing = [_ds(img.spacing_mm[1]), _ds(img.spacing_mm[0])]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.SliceThickness = _ds(step)
    ds.SpacingBetweenSlices = _ds(sign * step)
    ds.SliceVector = list(range(1, nk + 1))
    ds.NumberOfSlices = nk

    det = Dataset()
    det.CollimatorGridName = "LEHR"
    det.CollimatorType = "PARA"
    det.ImagePositionPatient = [_ds(v) for v in img.origin_mm]
    det.ImageOrientationPatient = [_ds(v) for v in np.concatenate([img.direction[:, 0], img.direction[:, 1]])]
    ds.DetectorInformationSequence = Sequence([det])
    ds.NumberOfDetectors = 1

    win = Dataset()
    rng_item = Dataset()
    rng_item.EnergyWindowLowerLimit = "126.45"
    rng_item.EnergyWindowUpperLimit = "154.55"
    win.EnergyWindowRangeSequence = Sequence([rng_item])
    win.EnergyWindowName = "Tc99m 140keV"
    ds.EnergyWindowInformationSequence = Sequence([win])
    ds.NumberOfEnergyWindows = 1

    rp = Dataset()
    rp.Radiopharmaceutical = TRACER
    rp.RadiopharmaceuticalStartTime = _tm(b.injection)
    rp.RadiopharmaceuticalStartDateTime = _dt(b.injection)
    rp.RadionuclideTotalDose = _ds(b.injected_mbq)  # MBq: the NM convention (PS3.3 C.8.4.10.1.7)
    rp.RadionuclideHalfLife = _ds(b.half_life_h * 3600.0)
    rp.RadionuclideCodeSequence = Sequence([_code("72454006", "SCT", "^99m^Technetium")])
    ds.RadiopharmaceuticalInformationSequence = Sequence([rp])

    nrot, ms = rotation_timing(tp)
    rot = Dataset()
    rot.StartAngle = "0"
    rot.AngularStep = _ds(360.0 / nrot)
    rot.RotationDirection = "CW"
    rot.ScanArc = "360"
    rot.ActualFrameDuration = str(ms)
    rot.NumberOfFramesInRotation = nrot
    ds.RotationInformationSequence = Sequence([rot])
    ds.NumberOfRotations = 1
    ds.TypeOfDetectorMotion = "STEP AND SHOOT"

    ds.CorrectedImage = ["ATTN", "SCAT"]
    ds.DecayCorrection = "NONE"
    if tp.truth["units"] == "counts":
        ds.Units = "CNTS"
        ds.CountsAccumulated = str(int(tp.spect_stored.sum(dtype=np.int64)))
    else:
        ds.Units = "BQML"
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = _ds(tp.value_scale)
        rw = Dataset()
        rw.add_new(0x00409216, "US", 0)  # RealWorldValueFirstValueMapped
        rw.add_new(0x00409211, "US", 65535)  # RealWorldValueLastValueMapped
        rw.RealWorldValueIntercept = 0.0
        rw.RealWorldValueSlope = float(tp.value_scale)
        rw.LUTExplanation = "Bq/ml"
        rw.LUTLabel = "BQML"
        rw.MeasurementUnitsCodeSequence = Sequence([_code("Bq/ml", "UCUM", "becquerels/milliliter")])
        ds.RealWorldValueMappingSequence = Sequence([rw])
    ds.PixelData = np.ascontiguousarray(tp.spect_stored.astype("<u2")).tobytes()
    name = _write(ds, folder, names)
    return {"file": f"dicom/{name}", "series_uid": series_uid, "sop_instance_uid": sop,
            "frame_of_reference_uid": ds.FrameOfReferenceUID,
            "spacing_between_slices_mm": float(ds.SpacingBetweenSlices)}


def rotation_timing(tp) -> tuple[int, int]:
    """``(NumberOfFramesInRotation, ActualFrameDuration ms)`` of a time point."""
    return int(tp.truth["frames_in_rotation"]), int(tp.truth["actual_frame_duration_ms"])

