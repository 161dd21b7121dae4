"""Hardening against bad input: times, time zones, untouched inputs, atomic outputs, memory.

* Times: scans after midnight and over several days, an injection time
  without its date (the latest date before the first scan), and UTC offsets
  (``TimezoneOffsetFromUTC``): the same offset everywhere keeps naive local
  times, different offsets are compared in UTC.
* Inputs are never modified: every input file hashes the same after a run.
* Outputs are atomic: a run interrupted while writing leaves no half-written
  table and no temporary file.
* Memory: a declared 4096^3 volume (NIfTI header, DICOM Rows/Columns/
  NumberOfFrames) is refused before allocation with one line.
* The per-region statistics (:class:`RegionIndex`) equal a brute-force
  computation in both of their layouts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import struct
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from spectrack import load_study, quantify, run_study
from spectrack.cli import main
from spectrack.errors import InputError
from spectrack.geometry import Image
from spectrack.io_utils import atomic_path, atomic_write_text
from spectrack.load.dicom import load_dicom_folder, normalise_timezones
from spectrack.load.model import Series, Sourced
from spectrack.load.nifti import parse_datetime_offset, read_nifti_series
from spectrack.quantification.stats import RegionIndex, region_stats
from spectrack.regions.labelmap import LabelMap

NM_SOP = "1.2.840.10008.5.1.4.1.1.20"
HL_H = 6.0067


# ------------------------------------------------------------------ builders
def write_nm(path: Path, *, date: str, time: str, tz: str | None = None, inj_time: str | None = "233000",
             inj_datetime: str | None = None, counts: float = 100.0, series_uid: str | None = None,
             extra: dict | None = None, shape=(4, 5, 6)) -> Path:
    """A small NM RECON TOMO file (``shape`` = slices, rows, columns; counts) acquired at ``date`` ``time``."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = NM_SOP
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SOPClassUID = NM_SOP
    ds.Modality = "NM"
    ds.PatientID = "subj01"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = shape[0]
    ds.Rows, ds.Columns = shape[1], shape[2]
    ds.PixelSpacing = [4.0, 4.0]
    ds.SpacingBetweenSlices = 4.0
    ds.FrameIncrementPointer = Tag(0x0054, 0x0080)
    ds.SliceVector = list(range(1, shape[0] + 1))
    ds.NumberOfSlices = shape[0]
    det = Dataset()
    det.ImagePositionPatient = [-10.0, -10.0, 0.0]
    det.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.DetectorInformationSequence = Sequence([det])
    rot = Dataset()
    rot.ActualFrameDuration = 15000
    rot.NumberOfFramesInRotation = 60
    ds.RotationInformationSequence = Sequence([rot])
    ds.NumberOfRotations = 1
    ds.AcquisitionDate = date
    ds.AcquisitionTime = time
    if tz is not None:
        ds.TimezoneOffsetFromUTC = tz
    ri = Dataset()
    ri.RadionuclideTotalDose = 150.0
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "C-163A8", "SRT", "^99m^Technetium"
    ri.RadionuclideCodeSequence = Sequence([code])
    if inj_time is not None:
        ri.RadiopharmaceuticalStartTime = inj_time
    if inj_datetime is not None:
        ri.RadiopharmaceuticalStartDateTime = inj_datetime
    ds.RadiopharmaceuticalInformationSequence = Sequence([ri])
    for k, v in (extra or {}).items():
        setattr(ds, k, v)
    ds.PixelData = np.full(shape, counts, np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _labels_on(img: Image) -> LabelMap:
    lab = np.zeros(img.array.shape, np.int16)
    lab[1:3, 1:4, 1:5] = 1
    return LabelMap(img.with_array(lab, units="label"), {1: "brain"})


def _hashes(folder: Path, skip: Path | None = None) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and (skip is None or skip not in p.parents):
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# ------------------------------------------------------------------ times
def test_injection_time_without_date_is_dated_before_a_scan_after_midnight(tmp_path):
    # injected 23:30 on the 14th (time only in the header); scans 00:15 and 04:30 on the 15th, 10:00 on the 17th
    for n, (d, t) in enumerate((("20260315", "001500"), ("20260315", "043000"), ("20260317", "100000"))):
        write_nm(tmp_path / f"f{n}", date=d, time=t, inj_time="233000")
    st = load_study(tmp_path)
    starts = [tp.acquisition_start for tp in st.timepoints]
    assert starts == [dt.datetime(2026, 3, 15, 0, 15), dt.datetime(2026, 3, 15, 4, 30),
                      dt.datetime(2026, 3, 17, 10, 0)]
    inj = st.timepoints[0].emission.get("injection_time")
    assert inj == dt.datetime(2026, 3, 14, 23, 30)
    assert "latest day before the first scan" in st.timepoints[0].emission.source("injection_time")
    df = quantify(st, _labels_on(st.timepoints[0].emission.image), sensitivity_cps_per_mbq=50.0)
    got = sorted(df.time_h.unique())
    assert got == pytest.approx([0.75, 5.0, 58.5])
    # decay correction follows the true elapsed time across days
    r = df[(df.region == "brain")].set_index("timepoint")
    ratio = r.loc[2, "activity_mbq_decay_corrected"] / r.loc[2, "activity_mbq"]
    assert ratio == pytest.approx(math.exp(math.log(2) / HL_H * 58.5), rel=1e-9)


def test_injection_time_of_day_after_the_first_scan_time_goes_to_the_day_before(tmp_path):
    # time of day 09:00 > first scan 08:00: the injection was the day before
    write_nm(tmp_path / "a", date="20260320", time="080000", inj_time="090000")
    write_nm(tmp_path / "b", date="20260320", time="120000", inj_time="090000")
    st = load_study(tmp_path)
    assert st.timepoints[0].emission.get("injection_time") == dt.datetime(2026, 3, 19, 9, 0)
    (w,) = [w for w in st.warnings if "has no date" in w]  # an inferred date is said, once
    assert "2026-03-19" in w and "the day before the first scan" in w and "--injection-time" in w


def test_same_timezone_offset_keeps_naive_local_times(tmp_path):
    write_nm(tmp_path / "a", date="20260329", time="013000", tz="+0100")
    write_nm(tmp_path / "b", date="20260329", time="033000", tz="+0100")
    series, warns = load_dicom_folder(tmp_path)
    assert sorted(s.acquisition_start for s in series) == [dt.datetime(2026, 3, 29, 1, 30),
                                                          dt.datetime(2026, 3, 29, 3, 30)]
    assert not any("UTC offsets" in w for w in warns)


def test_different_timezone_offsets_are_compared_in_utc(tmp_path):
    # a daylight-saving change between scans: 01:30 at +0100 and 03:30 at +0200 are one hour apart
    write_nm(tmp_path / "a", date="20260329", time="013000", tz="+0100", inj_time="003000")
    write_nm(tmp_path / "b", date="20260329", time="033000", tz="+0200", inj_time="003000")
    st = load_study(tmp_path)
    t0, t1 = (tp.acquisition_start for tp in st.timepoints)
    assert t1 - t0 == dt.timedelta(hours=1)
    assert t0 == dt.datetime(2026, 3, 29, 1, 30)  # the first scan's clock is the reference
    assert "converted from UTC+0200 to UTC+0100" in st.timepoints[1].emission.source("acquisition_start")
    assert any("different UTC offsets" in w for w in st.warnings)


def test_timezone_offsets_can_reverse_the_naive_order(tmp_path):
    # 02:00 at +0100 is 01:00 UTC; 02:30 at +0300 is 23:30 UTC the day before: b is the first scan
    write_nm(tmp_path / "a", date="20260310", time="020000", tz="+0100", inj_time=None,
             inj_datetime="20260309200000+0000", counts=50)
    write_nm(tmp_path / "b", date="20260310", time="023000", tz="+0300", inj_time=None,
             inj_datetime="20260309200000+0000", counts=90)
    st = load_study(tmp_path)
    first, second = st.timepoints
    assert first.emission.image.array.max() == 90  # b, once compared in UTC
    assert second.acquisition_start - first.acquisition_start == dt.timedelta(minutes=90)
    # the injection (20:00 UTC) is on the same clock: 03:30 and 05:00 after it
    inj = first.emission.get("injection_time")
    assert [tp.acquisition_start - inj for tp in st.timepoints] == [dt.timedelta(hours=3, minutes=30),
                                                                     dt.timedelta(hours=5)]


def test_injection_datetime_offset_differs_from_series_offset(tmp_path):
    write_nm(tmp_path / "a", date="20260314", time="010000", tz="+0100", inj_time=None,
             inj_datetime="20260313223000+0000")
    series, warns = load_dicom_folder(tmp_path)
    assert series[0].get("injection_time") == dt.datetime(2026, 3, 13, 23, 30)
    assert any("different UTC offsets" in w for w in warns)


def test_normalise_timezones_leaves_unmarked_series_alone():
    def s(h, tz):
        meta = {"acquisition_start": Sourced(dt.datetime(2026, 1, 1, h), "x")}
        if tz:
            meta["timezone_offset"] = Sourced(tz, "y")
        return Series(Image(np.zeros((1, 1, 1), np.float32)), "NM", meta)

    a, b = s(1, None), s(5, None)
    w: list[str] = []
    normalise_timezones([a, b], w)
    assert (a.acquisition_start.hour, b.acquisition_start.hour, w) == (1, 5, [])
    c, d = s(1, "-0500"), s(5, None)
    normalise_timezones([c, d], w)
    assert d.acquisition_start.hour == 5 and w == []  # one offset only: nothing to reconcile


def test_nifti_datetime_offsets_are_recorded():
    assert parse_datetime_offset("2026-03-14T23:10:00Z") == (dt.datetime(2026, 3, 14, 23, 10), "+0000")
    assert parse_datetime_offset("2026-03-14T23:10:00-05:30") == (dt.datetime(2026, 3, 14, 23, 10), "-0530")
    assert parse_datetime_offset("2026-03-14 23:10") == (dt.datetime(2026, 3, 14, 23, 10), None)
    with pytest.raises(InputError, match="ISO 8601"):
        parse_datetime_offset("14/03/2026")


def test_nifti_study_over_several_days(tmp_path, nifti_study):
    truth = nifti_study(tmp_path, times_h=(0.5, 26.0, 74.0), frac=((0.3, 0.1), (0.2, 0.25), (0.05, 0.4)))
    st = load_study(tmp_path)
    assert [tp.acquisition_start.date() for tp in st.timepoints] == [dt.date(2026, 3, 14), dt.date(2026, 3, 16),
                                                                     dt.date(2026, 3, 18)]
    df = quantify(st, str(tmp_path / "labels.nii.gz"))
    for tr in truth:
        row = df[(df.region == "brain") & (df.time_h.round(6) == round(tr["time_h"], 6))]
        assert row.pct_id.iloc[0] == pytest.approx(tr["brain"], rel=1e-5)


# ------------------------------------------------------------------ inputs never modified
def test_inputs_are_never_modified(tmp_path, nifti_study):
    study = tmp_path / "study"
    nifti_study(study)
    before = _hashes(study)
    out = tmp_path / "results"
    run_study(study, {"labels": str(study / "labels.nii.gz"), "uncertainty_draws": 20}, out_dir=out)
    assert main(["quantify", str(study), "--labels", str(study / "labels.nii.gz"), "-o", str(out / "cli"),
                 "--uncertainty-draws", "10", "--quiet", "--no-report"]) == 0
    assert main(["info", str(study)]) == 0
    assert _hashes(study) == before


def test_dicom_inputs_are_never_modified_even_with_results_inside(tmp_path):
    from spectrack.phantom import make_study

    root = tmp_path / "ph"
    make_study(root, "rat", times_h=[1.0, 4.0], spect_shape=(24, 20, 66), formats=("dicom",), seed=1)
    before = _hashes(root)
    res = run_study(root / "dicom", {"labels": str(root / "labels.nii.gz"), "calibration": "sensitivity",
                                     "sensitivity_cps_per_mbq": 100.0, "uncertainty_draws": 0,
                                     "report": False}, out_dir=root / "dicom" / "results")
    assert (root / "dicom" / "results" / "regions.csv").exists() and len(res.table)
    assert _hashes(root, skip=root / "dicom" / "results") == before


# ------------------------------------------------------------------ atomic outputs
def _half_then_fail(exc):
    real = pd.DataFrame.to_csv

    def to_csv(self, path_or_buf=None, *args, **kw):
        if path_or_buf is None or not str(path_or_buf).endswith("regions.csv"):
            return real(self, path_or_buf, *args, **kw)
        text = real(self, None, *args, **kw)
        with open(path_or_buf, "w", encoding="utf-8") as f:
            f.write(text[: len(text) // 2])
            f.flush()
            raise exc

    return to_csv


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()], ids=["oserror", "interrupt"])
def test_interrupted_run_leaves_no_half_written_table(tmp_path, nifti_study, monkeypatch, exc):
    study = tmp_path / "study"
    nifti_study(study)
    out = tmp_path / "out"
    settings = {"labels": str(study / "labels.nii.gz"), "uncertainty_draws": 0, "report": False}
    # a previous complete run
    run_study(study, settings, out_dir=out)
    old = (out / "regions.csv").read_bytes()
    monkeypatch.setattr(pd.DataFrame, "to_csv", _half_then_fail(exc))
    from spectrack.errors import OutputError

    raised = OutputError if isinstance(exc, OSError) else type(exc)  # a write error: "cannot write to OUT: ..."
    with pytest.raises(raised):
        run_study(study, settings, out_dir=out)
    assert (out / "regions.csv").read_bytes() == old  # the old table, whole
    assert not [p.name for p in out.rglob(".tmp-*")]
    # a first run that is interrupted leaves no table at all
    fresh = tmp_path / "fresh"
    with pytest.raises(raised):
        run_study(study, settings, out_dir=fresh)
    assert not (fresh / "regions.csv").exists()
    assert not [p.name for p in fresh.rglob("*") if p.name.startswith(".tmp-")]


def test_cli_interrupted_write_is_one_line_and_leaves_nothing(tmp_path, nifti_study, monkeypatch, capsys):
    study = tmp_path / "study"
    nifti_study(study)
    out = tmp_path / "out"
    monkeypatch.setattr(pd.DataFrame, "to_csv", _half_then_fail(KeyboardInterrupt()))
    rc = main(["quantify", str(study), "--labels", str(study / "labels.nii.gz"), "-o", str(out),
               "--uncertainty-draws", "0", "--no-report", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 130 and "Traceback" not in err
    assert not (out / "regions.csv").exists()
    assert not [p for p in out.rglob("*") if p.name.startswith(".tmp-")]


def test_atomic_write_text_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "a" / "study.json"
    atomic_write_text(target, "old\n")

    def boom(self, text, encoding=None, **kw):
        with open(self, "w", encoding=encoding) as f:
            f.write(text[:2])
        raise OSError("no space left on device")

    monkeypatch.setattr(Path, "write_text", boom)
    with pytest.raises(OSError):
        atomic_write_text(target, "new content\n")
    monkeypatch.undo()
    assert target.read_text() == "old\n"
    assert [p.name for p in target.parent.iterdir()] == ["study.json"]


def test_atomic_path_replaces_whole_and_keeps_suffix(tmp_path):
    target = tmp_path / "labels.nii.gz"
    with atomic_path(target) as tmp:
        assert tmp.name.endswith("labels.nii.gz") and tmp.parent == tmp_path
        assert not target.exists()
        tmp.write_bytes(b"x" * 10)
    assert target.read_bytes() == b"x" * 10
    assert [p.name for p in tmp_path.iterdir()] == ["labels.nii.gz"]


# ------------------------------------------------------------------ memory
def _nifti_claiming(path: Path, dims, gz: bool) -> Path:
    img = nib.Nifti1Image(np.ones((4, 5, 6), np.float32), np.eye(4))
    raw = path.with_name(path.name.replace(".gz", ""))
    nib.save(img, raw)
    blob = bytearray(raw.read_bytes())
    struct.pack_into("<8h", blob, 40, 3, *dims, 1, 1, 1, 1)
    if gz:
        import gzip

        raw.unlink()
        path.write_bytes(gzip.compress(bytes(blob)))
    else:
        raw.write_bytes(bytes(blob))
    return path


@pytest.mark.parametrize("gz", [False, True], ids=["nii", "nii.gz"])
@pytest.mark.parametrize("dims", [(4096, 4096, 4096), (1024, 1024, 512)], ids=["4096^3", "1024^2x512"])
def test_nifti_declaring_a_huge_volume_is_refused_before_allocation(tmp_path, gz, dims, capsys):
    p = _nifti_claiming(tmp_path / ("tp0_spect.nii.gz" if gz else "tp0_spect.nii"), dims, gz)
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as e:
            read_nifti_series(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 1024**2
    msg = str(e.value)
    assert "\n" not in msg and "x".join(map(str, dims)) in msg
    assert ("refusing to allocate" in msg) if dims[0] == 4096 else ("truncated" in msg)
    capsys.readouterr()
    assert main(["info", str(tmp_path)]) == 3
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("spectrack: error:") and "Traceback" not in err[0]


@pytest.mark.parametrize("rows,cols,frames", [(4096, 4096, 4096), (65535, 65535, 1), (2048, 2048, 64)])
def test_dicom_declaring_a_huge_volume_is_refused_before_allocation(tmp_path, rows, cols, frames, capsys):
    write_nm(tmp_path / "big", date="20260314", time="231000",
             extra={"Rows": rows, "Columns": cols, "NumberOfFrames": frames, "SliceVector": list(range(1, 5))})
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as e:
            load_dicom_folder(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 1024**2
    msg = str(e.value)
    assert "\n" not in msg and ("exceeds 8 GiB" in msg or "truncated" in msg), msg
    capsys.readouterr()
    assert main(["info", str(tmp_path)]) == 3
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("spectrack: error:")


def test_nan_voxels_in_nifti_become_zero_with_a_warning(tmp_path):
    arr = np.ones((4, 5, 6), np.float32)
    arr[0, 0, 0], arr[1, 1, 1], arr[2, 2, 2] = np.nan, np.inf, -5.0
    nib.save(nib.Nifti1Image(arr, np.eye(4)), tmp_path / "tp0_spect.nii.gz")
    s = read_nifti_series(tmp_path / "tp0_spect.nii.gz")
    assert np.all(np.isfinite(s.image.array))
    assert s.image.array.min() == -5.0  # negative values are data, kept
    assert any("2 voxels are not finite" in w for w in s.get("load_warnings"))


def test_nifti_zero_voxel_size_without_sform_is_refused_quietly(tmp_path, capsys):
    # nibabel would silently replace the zero pixdim by 1 mm (and print a line on stderr)
    nib.save(nib.Nifti1Image(np.ones((4, 5, 6), np.float32), np.diag([3.0, 3.0, 4.0, 1.0])),
             tmp_path / "tp0_spect.nii")
    blob = bytearray((tmp_path / "tp0_spect.nii").read_bytes())
    struct.pack_into("<hh", blob, 252, 0, 0)  # qform_code, sform_code
    (tmp_path / "ok_spect.nii").write_bytes(bytes(blob))
    struct.pack_into("<f", blob, 80, 0.0)  # pixdim[1]
    (tmp_path / "tp0_spect.nii").write_bytes(bytes(blob))
    capsys.readouterr()
    with pytest.raises(InputError, match="pixdim"):
        read_nifti_series(tmp_path / "tp0_spect.nii")
    s = read_nifti_series(tmp_path / "ok_spect.nii")  # no qform/sform: pixdim used, position unknown
    assert s.image.spacing_mm.tolist() == [3.0, 3.0, 4.0]
    assert any("no qform or sform" in w for w in s.get("load_warnings"))
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_dicom_pixels_are_not_kept_in_memory_by_the_folder_reader(tmp_path):
    # 6 files of 2 MB each: the datasets held while grouping must not hold the pixels
    from spectrack.load import dicom

    for n in range(6):
        write_nm(tmp_path / f"n{n}", date="20260314", time=f"2310{n:02d}", shape=(16, 256, 256))
        p = tmp_path / f"n{n}"
        ds = dicom._read_file(p)[0]
        assert dicom._deferred(ds, 0x7FE00010) is not None
    import pydicom

    ds = pydicom.dcmread(tmp_path / "n0")
    ds.PixelData = np.arange(16 * 256 * 256, dtype=np.uint16).tobytes()
    ds.save_as(tmp_path / "n0", enforce_file_format=True)
    series, _ = load_dicom_folder(tmp_path)
    s0 = [s for s in series if s.files[0].name == "n0"][0]
    assert np.array_equal(s0.image.array.ravel(), np.arange(16 * 256 * 256, dtype=np.uint16).astype(np.float32))


@pytest.mark.parametrize("syntax", ["deflated", "rle"])
def test_deflated_and_compressed_dicom_read_the_same_values(tmp_path, syntax):
    # pixel data is normally read straight from the file; a deflated data set has no file
    # offsets, an encapsulated one must be decoded
    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian, RLELossless

    p = write_nm(tmp_path / "a", date="20260314", time="231000", shape=(16, 128, 128))
    ds = pydicom.dcmread(p)
    want = (np.arange(16 * 128 * 128) % 3000).astype(np.uint16)
    ds.PixelData = want.tobytes()
    if syntax == "deflated":
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    else:
        ds.compress(RLELossless)
    p.unlink()
    ds.save_as(tmp_path / "b", enforce_file_format=True)
    series, _ = load_dicom_folder(tmp_path)
    assert np.array_equal(series[0].image.array.ravel(), want.astype(np.float32))


# ------------------------------------------------------------------ region statistics
def _brute(frame, lab):
    f, lb = frame.ravel().astype(np.float64), lab.ravel()
    keys = np.unique(lb[lb != 0])
    return (keys, np.array([(lb == k).sum() for k in keys], dtype=np.int64),
            np.array([f[lb == k].sum() for k in keys]), np.array([f[lb == k].max() for k in keys]))


@pytest.mark.parametrize("fill", [0.05, 0.3, 0.6, 1.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16])
def test_region_index_equals_brute_force(fill, dtype):
    rng = np.random.default_rng(int(fill * 100))
    lab = rng.integers(1, 7, size=(9, 11, 13)).astype(np.int16)
    lab[rng.random(lab.shape) > fill] = 0
    ri = RegionIndex(lab)
    assert ri.mode == ("dense" if fill >= 0.6 else "sparse")
    keys, counts, sums, maxs = _brute(np.zeros(lab.shape), lab)
    assert ri.labels.tolist() == keys.tolist() and ri.counts.tolist() == counts.tolist()
    for _ in range(3):
        frame = (rng.normal(size=lab.shape) * 100 + 50).astype(dtype) if dtype != np.uint16 else \
            rng.integers(0, 60000, size=lab.shape).astype(dtype)
        keys, counts, sums, maxs = _brute(frame, lab)
        s = ri.stats(frame)
        assert s["sum"] == pytest.approx(sums, rel=1e-6)
        assert s["mean"] == pytest.approx(sums / counts, rel=1e-6)
        assert np.array_equal(s["max"], maxs)
    flat = lab.ravel()
    v = ri.voxels
    assert np.array_equal(flat[v], np.repeat(ri.labels, ri.counts))
    assert np.array_equal(ri.starts, np.r_[0, np.cumsum(ri.counts)[:-1]])


def test_region_index_edge_cases():
    ri = RegionIndex(np.zeros((3, 4), np.int16))
    assert ri.labels.size == 0 and ri.stats(np.ones((3, 4)))["sum"].size == 0 and ri.voxels.size == 0
    with pytest.raises(ValueError, match="differs"):
        RegionIndex(np.ones((2, 2), np.int16)).stats(np.ones((2, 3)))
    # non-contiguous input, negative and large label values, a NaN voxel poisons only its region
    lab = np.asfortranarray(np.array([[[0, -3, 70000], [70000, -3, 0]]], np.int64))
    frame = np.asfortranarray(np.array([[[1.0, 2.0, np.nan], [4.0, 5.0, 6.0]]], np.float32))
    out = region_stats(frame, lab)
    assert out["label"].tolist() == [-3, 70000] and out["n_voxels"].tolist() == [2, 2]
    assert out["sum"][0] == 7.0 and math.isnan(out["sum"][1]) and math.isnan(out["max"][1])


def test_dicom_and_nifti_time_points_with_different_offsets_share_one_clock(tmp_path):
    """A DICOM scan at 01:30 (+01:00) and a NIfTI scan at 03:30 (+02:00) in one study are one hour apart."""
    import json

    import nibabel as nib

    from spectrack.geometry import to_nifti_affine

    write_nm(tmp_path / "dicom" / "a", date="20260329", time="013000", tz="+0100", inj_time="003000")
    img = Image(np.full((4, 5, 6), 100.0, np.float32), origin_mm=(-10, -10, 0), spacing_mm=(4, 4, 4))
    arr, aff = to_nifti_affine(img)
    nib.save(nib.Nifti1Image(arr, aff), tmp_path / "b_spect.nii.gz")
    (tmp_path / "b_spect.json").write_text(json.dumps({
        "Modality": "NM", "AcquisitionDateTime": "2026-03-29T03:30:00+02:00", "FrameDuration": [900],
        "TracerRadionuclide": "99mTc", "Units": "counts"}))
    st = load_study(tmp_path)
    t0, t1 = (tp.acquisition_start for tp in st.timepoints)
    assert t0 == dt.datetime(2026, 3, 29, 1, 30)  # the DICOM scan, first in UTC, sets the clock
    assert t1 - t0 == dt.timedelta(hours=1)
    assert "converted from UTC+0200 to UTC+0100" in st.timepoints[1].emission.source("acquisition_start")
    assert any("different UTC offsets" in w for w in st.warnings)


# ---------------------------------------------------------------- corrupt data is refused, not read
@pytest.mark.parametrize("change", [{"Rows": 4}, {"Columns": 3}, {"NumberOfFrames": 2}, {"BitsAllocated": 8},
                                    {"Rows": 6}, {"BitsAllocated": 32}],
                         ids=["fewer-rows", "fewer-columns", "fewer-frames", "bits-16-to-8", "more-rows", "bits-32"])
def test_nm_pixel_data_not_matching_the_header_is_refused(tmp_path, change, capsys):
    """Pixel data longer or shorter than Rows x Columns x frames x bits declare: exit 3, whichever way it differs."""
    import pydicom

    p = write_nm(tmp_path / "nm" / "IMG0001", date="20240305", time="100000")
    ds = pydicom.dcmread(p)
    for k, v in change.items():
        setattr(ds, k, v)
    if change.get("BitsAllocated") == 8:
        ds.BitsStored, ds.HighBit = 8, 7
    ds.save_as(p, enforce_file_format=True)
    rc = main(["info", str(tmp_path / "nm")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 3, err
    line = [ln for ln in err if "spectrack.progress" not in ln][-1]
    assert ("declare" in line) or ("truncated" in line), line
    assert "Traceback" not in "\n".join(err)


def test_nm_pixel_data_with_one_pad_byte_is_read(tmp_path):
    """An odd-length pixel data value padded to even length is not corrupt."""
    import pydicom

    p = write_nm(tmp_path / "nm" / "IMG0001", date="20240305", time="100000", shape=(3, 3, 3), counts=7)
    ds = pydicom.dcmread(p)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = np.full((3, 3, 3), 7, np.uint8).tobytes() + b"\x00"  # 27 bytes + one pad byte
    ds.save_as(p, enforce_file_format=True)
    series, _ = load_dicom_folder(tmp_path / "nm")
    assert len(series) == 1 and float(series[0].image.array.sum()) == 27 * 7


def _corrupt_gzip(path: Path, where: str, n: int = 0) -> None:
    blob = bytearray(path.read_bytes())
    if where == "crc":
        blob[-8] ^= 0xFF  # CRC-32 of the trailer
    elif where == "length":
        blob[-1] ^= 0x01  # ISIZE of the trailer
    else:  # a byte inside the deflate stream
        body = range(20, len(blob) - 8)
        i = body[(n * 7919) % len(body)]
        blob[i] ^= 0x5A
    path.write_bytes(bytes(blob))


@pytest.mark.parametrize("where", ["crc", "length"] + [f"stream{n}" for n in range(25)])
def test_nifti_gz_with_a_broken_stream_is_refused(tmp_path, nifti_study, where, capsys):
    nifti_study(tmp_path / "s")
    spect = tmp_path / "s" / "tp1_spect.nii.gz"
    before = nib.load(str(spect)).get_fdata()
    _corrupt_gzip(spect, where.rstrip("0123456789"), int(where[6:] or 0) if where.startswith("stream") else 0)
    rc = main(["quantify", str(tmp_path / "s"), "--labels", str(tmp_path / "s" / "labels.nii.gz"), "-o",
               str(tmp_path / "out"), "--no-report", "--uncertainty-draws", "0"])
    err = capsys.readouterr().err
    if rc == 0:  # only a change that leaves every voxel and the trailer intact may pass
        pytest.fail(f"corrupt stream ({where}) read as if fine; voxels equal before: "
                    f"{np.array_equal(before, nib.load(str(spect)).get_fdata()) if spect.exists() else None}")
    assert rc == 3, err
    assert "Traceback" not in err


def test_label_map_gz_with_a_broken_stream_is_refused(tmp_path, nifti_study, capsys):
    nifti_study(tmp_path / "s")
    lab = tmp_path / "s" / "labels.nii.gz"
    _corrupt_gzip(lab, "crc")
    rc = main(["quantify", str(tmp_path / "s"), "--labels", str(lab), "-o", str(tmp_path / "out"), "--no-report"])
    err = capsys.readouterr().err
    assert rc == 3 and "gzip stream" in err and "label map" in err, err


def _label_nifti(path: Path, arr, affine=None, slope=None, inter=None, names=None):
    img = nib.Nifti1Image(np.asarray(arr, np.int16), np.diag([3.0, 3.0, 4.0, 1.0]) if affine is None else affine)
    if slope is not None:
        img.header.set_slope_inter(slope, inter if inter is not None else 0.0)
    nib.save(img, str(path))
    if names:
        path.with_name(path.name.replace(".nii.gz", ".tsv")).write_text(
            "".join(f"{k}\t{v}\n" for k, v in names.items()))
    return path


@pytest.mark.parametrize("slope,inter", [(2.0, 0.0), (1.0, 1.0), (0.5, 3.0)])
def test_label_map_with_intensity_scaling_is_refused(tmp_path, slope, inter):
    from spectrack.errors import LabelError
    from spectrack.regions.formats.nifti import read_label_map

    arr = np.zeros((4, 4, 4), np.int16)
    arr[1:3, 1:3, 1:3] = 1
    arr[0, 0, 0] = 2
    p = _label_nifti(tmp_path / "lab.nii.gz", arr, slope=slope, inter=inter, names={1: "brain", 2: "liver"})
    with pytest.raises(LabelError, match="intensity scaling"):
        read_label_map(p)


def test_label_map_with_a_singular_affine_is_refused(tmp_path):
    from spectrack.regions.formats.nifti import read_label_map

    aff = np.array([[3.0, 3.0, 0, 0], [0, 0, 0, 0], [0, 0, 4.0, 0], [0, 0, 0, 1]])  # i and j point the same way
    p = _label_nifti(tmp_path / "lab.nii.gz", np.ones((4, 4, 4)), affine=aff, names={1: "brain"})
    with pytest.raises(InputError, match="singular"):
        read_label_map(p)


@pytest.mark.parametrize("names,match", [({1: "liver", 2: "liver"}, "both called 'liver'"),
                                         ({1: "field_of_view"}, "reserves"), ({1: "cns"}, "group"),
                                         ({1: "spinal_canal"}, "group"), ({1: "outside_regions"}, "reserves")])
def test_duplicate_and_reserved_region_names_are_refused(tmp_path, nifti_study, names, match, capsys):
    nifti_study(tmp_path / "s")
    arr = np.zeros((14, 12, 10), np.int16)
    arr[2:6, 3:7, 2:5] = 1
    arr[8:12, 2:5, 6:9] = 2
    lab = _label_nifti(tmp_path / "lab.nii.gz", arr, names=names)
    rc = main(["quantify", str(tmp_path / "s"), "--labels", str(lab), "-o", str(tmp_path / "out"), "--no-report"])
    err = capsys.readouterr().err
    assert rc == 6, err
    assert match in err


# ---------------------------------------------------------------- impossible numbers
@pytest.mark.parametrize("option,value,phrase", [
    ("--injected-mbq", "inf", "finite"), ("--half-life-h", "inf", "finite"), ("--half-life-h", "1e-4", "between"),
    ("--times-h", "nan,1,2", "finite"), ("--times-h", "-1,1,2", "between"), ("--seed", "-1", "zero or positive"),
    ("--radionuclide", "Xx-999", "not a known radionuclide"), ("--psf-fwhm-mm", "inf", "finite"),
    ("--uncertainty-draws", "100000000", "between"), ("--sensitivity", "nan", "finite"),
    ("--duration-s", "-inf", "finite")])
def test_options_must_be_finite_and_in_range(tmp_path, nifti_study, option, value, phrase, capsys):
    nifti_study(tmp_path / "s")
    rc = main(["quantify", str(tmp_path / "s"), "--labels", str(tmp_path / "s" / "labels.nii.gz"), "-o",
               str(tmp_path / "o"), option, value])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert phrase in err and option in err
    assert not (tmp_path / "o" / "regions.csv").exists()


@pytest.mark.parametrize("content,phrase", [(b"[1, 2]", "not a table of settings"),
                                            (b'{"sensitivity": 30, "subject": "caf\xe9"}'.replace(b"\\xe9", b"\xe9"),
                                             "not UTF-8"),
                                            (b'{"seed": -5}', "zero or positive")])
def test_bad_settings_file_is_one_line(tmp_path, nifti_study, content, phrase, capsys):
    nifti_study(tmp_path / "s")
    cfg = tmp_path / "c.json"
    cfg.write_bytes(content)
    rc = main(["quantify", str(tmp_path / "s"), "--config", str(cfg), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 3, err
    assert phrase in err and "Traceback" not in err


def test_injection_a_year_before_the_scan_is_refused_not_inf(tmp_path, nifti_study, capsys):
    nifti_study(tmp_path / "s")
    rc = main(["quantify", str(tmp_path / "s"), "--labels", str(tmp_path / "s" / "labels.nii.gz"), "-o",
               str(tmp_path / "o"), "--injection-time", "2025-03-14T22:40:00", "--no-report"])
    err = capsys.readouterr().err
    assert rc == 5, err
    assert "not be finite" in err and "half-lives" in err and "injection time" in err
    assert not (tmp_path / "o" / "regions.csv").exists()


def test_float32_sums_near_the_limit_do_not_overflow():
    lab = np.ones((2, 3, 4), np.int32)
    vals = np.full((2, 3, 4), 3.0e38, np.float32)  # each value fits float32, their sum does not
    st = RegionIndex(lab).stats(vals)
    assert np.isfinite(st["sum"][0]) and st["sum"][0] == pytest.approx(24 * 3.0e38, rel=1e-6)


@pytest.mark.parametrize("extra", [{"RescaleSlope": 0}, {"RescaleSlope": -2.0}])
def test_nm_with_a_zero_or_negative_slope_is_refused(tmp_path, extra, capsys):
    write_nm(tmp_path / "nm" / "IMG1", date="20240305", time="100000", extra=extra)
    rc = main(["info", str(tmp_path / "nm")])
    err = capsys.readouterr().err
    assert rc == 3, err
    assert "RescaleSlope" in err and "positive" in err


def test_nm_with_a_zero_rwvm_slope_is_refused(tmp_path, capsys):
    item = Dataset()
    item.RealWorldValueSlope, item.RealWorldValueIntercept = 0.0, 0.0
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "Bq/ml", "UCUM", "Becquerels/milliliter"
    item.MeasurementUnitsCodeSequence = Sequence([code])
    write_nm(tmp_path / "nm" / "IMG1", date="20240305", time="100000",
             extra={"RealWorldValueMappingSequence": Sequence([item])})
    rc = main(["info", str(tmp_path / "nm")])
    err = capsys.readouterr().err
    assert rc == 3 and "RealWorldValueSlope" in err, err


def test_field_of_view_above_100_percent_and_empty_images_are_warned(tmp_path, nifti_study, capsys):
    from conftest import A_INJ

    nifti_study(tmp_path / "s")
    # the true injected activity is A_INJ: a tenth of it makes the field of view hold ~10x the dose
    rc = main(["quantify", str(tmp_path / "s"), "--labels", str(tmp_path / "s" / "labels.nii.gz"), "-o",
               str(tmp_path / "o"), "--injected-mbq", str(A_INJ / 10), "--no-report", "--uncertainty-draws", "0"])
    err = capsys.readouterr().err
    assert rc == 0, err
    import json

    meta = json.loads((tmp_path / "o" / "study.json").read_text())
    assert sum("the field of view holds" in w for w in meta["warnings"]) == 3
    assert "the field of view holds" in err
    # an all-zero scan: every %ID is 0, and said so
    p = tmp_path / "s" / "tp2_spect.nii.gz"
    img = nib.load(str(p))
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.float32), img.affine), str(p))
    rc = main(["quantify", str(tmp_path / "s"), "--labels", str(tmp_path / "s" / "labels.nii.gz"), "-o",
               str(tmp_path / "o2"), "--no-report", "--uncertainty-draws", "0"])
    err = capsys.readouterr().err
    assert rc == 0, err
    meta = json.loads((tmp_path / "o2" / "study.json").read_text())
    assert any("time point 2: the emission image holds no positive value" in w for w in meta["warnings"])


def test_sidecar_times_contradicting_each_other_are_refused(tmp_path, nifti_study, capsys):
    import json

    nifti_study(tmp_path / "s")
    side = tmp_path / "s" / "tp1_spect.json"
    d = json.loads(side.read_text())
    d["AcquisitionDateTime"] = "2026-03-15T02:40:00"  # 4 h after TimeZero 22:40 ...
    d["ScanStart"] = d["FrameTimesStart"][0] = 3 * 3600.0  # ... but ScanStart says 3 h
    side.write_text(json.dumps(d))
    rc = main(["quantify", str(tmp_path / "s"), "--labels", str(tmp_path / "s" / "labels.nii.gz"), "-o",
               str(tmp_path / "o"), "--no-report"])
    err = capsys.readouterr().err
    assert rc == 5, err
    assert "TimeZero" in err and "contradict" in err


# ---------------------------------------------------------------- the Python API checks its arguments
@pytest.mark.parametrize("kwargs,phrase", [({"injected_mbq": float("inf")}, "finite"),
                                           ({"half_life_h": -1.0}, "positive"),
                                           ({"calibration": "magic"}, "must be one of"),
                                           ({"radionuclide": "Xx-999"}, "not a known radionuclide"),
                                           ({"injection_time": "yesterday"}, "datetime"),
                                           ({"sensitivity_cps_per_mbq": "fast"}, "bad value")])
def test_api_quantify_validates_like_the_cli(tmp_path, nifti_study, kwargs, phrase):
    from spectrack.errors import SpectrackError

    nifti_study(tmp_path / "s")
    st = load_study(tmp_path / "s")
    with pytest.raises(SpectrackError, match=phrase):
        quantify(st, tmp_path / "s" / "labels.nii.gz", **kwargs)


def test_api_run_study_validates_settings_objects(tmp_path, nifti_study):
    from spectrack.errors import SpectrackError
    from spectrack.settings import Settings

    nifti_study(tmp_path / "s")
    with pytest.raises(SpectrackError, match="finite"):
        run_study(tmp_path / "s", Settings(injected_mbq=float("inf"), labels=str(tmp_path / "s" / "labels.nii.gz")))
    with pytest.raises(SpectrackError, match="Settings or a dict"):
        run_study(tmp_path / "s", ["labels.nii.gz"])
    with pytest.raises(SpectrackError, match="needs a Study"):
        quantify(str(tmp_path / "s"), tmp_path / "s" / "labels.nii.gz")
