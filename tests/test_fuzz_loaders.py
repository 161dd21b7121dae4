"""Property-based and fuzz tests of the DICOM and NIfTI loaders (hypothesis).

Every input is built byte by byte (a small explicit-VR little-endian DICOM
encoder and NIfTI-1 header patching below), so malformed values reach the
loaders exactly as a broken scanner export would present them: missing and
malformed tags (dates, times, spacing, orientation, units), odd value
lengths, zero/NaN/negative spacing, NaN or negative voxels, truncated files,
flipped bytes, and huge dimensions declared in tiny files.

The property everywhere: a loader either returns a usable series (finite
float32 values, positive finite spacing, orthonormal direction) or raises a
:class:`spectrack.errors.SpectrackError` with a one-line message; the
command line prints that line, never a traceback. ``CASES`` counts the fuzz
cases run and the unexpected failures; ``test_zz_fuzz_summary`` prints them.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import tempfile
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import fuzz_step
from spectrack.cli import main
from spectrack.load.dicom import load_dicom_folder, read_nm_multiframe
from spectrack.load.nifti import read_nifti_series
from spectrack.load.study import load_study

CASES: Counter = Counter()
# a longer random campaign: SPECTRACK_FUZZ_EXAMPLES=2000 SPECTRACK_FUZZ_RANDOM=1 pytest tests/test_fuzz_loaders.py
N_EXAMPLES = int(os.environ.get("SPECTRACK_FUZZ_EXAMPLES", "150"))
DERANDOMIZE = not os.environ.get("SPECTRACK_FUZZ_RANDOM")
FUZZ = settings(max_examples=N_EXAMPLES, deadline=None, derandomize=DERANDOMIZE, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NM_SOP = "1.2.840.10008.5.1.4.1.1.20"
CT_SOP = "1.2.840.10008.5.1.4.1.1.2"


# ------------------------------------------------------------------ a tiny DICOM encoder
class Raw(bytes):
    """A value written verbatim (possibly of odd length or the wrong size for its VR)."""


_LONG_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "SQ", "UN", "UT", "UC", "UR"}
_PACK = {"US": "<H", "SS": "<h", "UL": "<I", "SL": "<i", "FL": "<f", "FD": "<d"}


def _tag_vr(keyword: str) -> tuple[int, str]:
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    tag = tag_for_keyword(keyword)
    vr = dictionary_VR(tag)
    return tag, ("OW" if vr == "OB or OW" else "US" if vr == "US or SS" else vr)


def _value_bytes(vr: str, value) -> bytes:
    if isinstance(value, Raw):
        return bytes(value)
    if vr == "SQ":
        out = b""
        for item in value:
            body = _encode_elements(item)
            out += struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body
        return out
    if vr in _PACK:
        vals = value if isinstance(value, (list, tuple)) else [value]
        return b"".join(struct.pack(_PACK[vr], v) for v in vals)
    if vr == "AT":
        vals = value if isinstance(value, (list, tuple)) else [value]
        return b"".join(struct.pack("<HH", v >> 16, v & 0xFFFF) for v in vals)
    if vr in ("OB", "OW", "UN", "OF", "OD", "OL", "OV"):
        b = bytes(value)
        return b + b"\x00" * (len(b) % 2)
    vals = value if isinstance(value, (list, tuple)) else [value]
    b = "\\".join(str(v) for v in vals).encode("latin-1")
    return b + (b"\x00" if vr == "UI" else b" ") * (len(b) % 2)


def _element(tag: int, vr: str, value) -> bytes:
    v = _value_bytes(vr, value)
    g, e = tag >> 16, tag & 0xFFFF
    if vr in _LONG_VRS or len(v) > 0xFFFF:
        return struct.pack("<HH2sHI", g, e, vr.encode(), 0, len(v)) + v
    return struct.pack("<HH2sH", g, e, vr.encode(), len(v)) + v


def _encode_elements(ds: dict) -> bytes:
    items = []
    for kw, value in ds.items():
        tag, vr = _tag_vr(kw)
        items.append((tag, _element(tag, vr, value)))
    return b"".join(b for _, b in sorted(items))


def encode(ds: dict, sop: str) -> bytes:
    """A DICOM Part 10 file (explicit VR little endian) of ``ds`` (keyword -> value)."""
    meta = (_element(0x00020001, "OB", b"\x00\x01") + _element(0x00020002, "UI", sop)
            + _element(0x00020003, "UI", "1.2.826.0.1.3680043.8.498.77")
            + _element(0x00020010, "UI", "1.2.840.10008.1.2.1"))
    meta = _element(0x00020000, "UL", len(meta)) + meta
    return b"\x00" * 128 + b"DICM" + meta + _encode_elements(ds)


def nm_dataset(n=(6, 5, 4), *, values=None) -> dict:
    """A valid RECON TOMO NM object: ``n`` = (frames, rows, columns)."""
    f, r, c = n
    px = (np.arange(f * r * c) % 50).astype(np.uint16) if values is None else np.asarray(values, np.uint16)
    return {
        "SpecificCharacterSet": "ISO_IR 100",
        "ImageType": ["DERIVED", "PRIMARY", "RECON TOMO", "EMISSION"],
        "SOPClassUID": NM_SOP, "SOPInstanceUID": "1.2.826.0.1.3680043.8.498.78",
        "AcquisitionDate": "20260314", "AcquisitionTime": "231000", "Modality": "NM",
        "Manufacturer": "fuzz", "SeriesDescription": "SPECT", "PatientID": "fuzz01",
        "RadiopharmaceuticalInformationSequence": [{
            "Radiopharmaceutical": "Tc99m MAG3", "RadiopharmaceuticalStartTime": "224000",
            "RadionuclideTotalDose": "150", "RadionuclideHalfLife": "21624.12",
            "RadionuclideCodeSequence": [{"CodeValue": "C-163A8", "CodingSchemeDesignator": "SRT",
                                          "CodeMeaning": "^99m^Technetium"}]}],
        "SliceThickness": "4", "SpacingBetweenSlices": "-4",
        "DetectorInformationSequence": [{"ImagePositionPatient": ["-100", "-120", "50"],
                                         "ImageOrientationPatient": ["1", "0", "0", "0", "1", "0"]}],
        "RotationInformationSequence": [{"ActualFrameDuration": "20000", "NumberOfFramesInRotation": 60}],
        "NumberOfRotations": 1,
        "StudyInstanceUID": "1.2.826.0.1.3680043.8.498.79", "SeriesInstanceUID": "1.2.826.0.1.3680043.8.498.80",
        "FrameOfReferenceUID": "1.2.826.0.1.3680043.8.498.81", "TimezoneOffsetFromUTC": "+0100",
        "SamplesPerPixel": 1, "PhotometricInterpretation": "MONOCHROME2",
        "NumberOfFrames": str(f), "FrameIncrementPointer": 0x00540080,
        "Rows": r, "Columns": c, "PixelSpacing": ["3", "2"],
        "BitsAllocated": 16, "BitsStored": 16, "HighBit": 15, "PixelRepresentation": 0,
        "RescaleSlope": "1", "RescaleIntercept": "0", "Units": "CNTS", "DecayCorrection": "NONE",
        "SliceVector": list(range(1, f + 1)), "NumberOfSlices": f,
        "PixelData": px.tobytes(),
    }


def ct_dataset(k: int, *, n=(5, 4)) -> dict:
    r, c = n
    px = ((np.arange(r * c) + 7 * k) % 300).astype(np.int16)
    return {
        "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"], "SOPClassUID": CT_SOP,
        "SOPInstanceUID": f"1.2.826.0.1.3680043.8.498.9{k}", "AcquisitionDate": "20260314",
        "AcquisitionTime": "231500", "Modality": "CT", "PatientID": "fuzz01",
        "SliceThickness": "2.5", "StudyInstanceUID": "1.2.826.0.1.3680043.8.498.79",
        "SeriesInstanceUID": "1.2.826.0.1.3680043.8.498.90", "InstanceNumber": str(3 - k),
        "ImagePositionPatient": ["-50", "-60", f"{-30 + 2.5 * k}"],
        "ImageOrientationPatient": ["1", "0", "0", "0", "1", "0"],
        "FrameOfReferenceUID": "1.2.826.0.1.3680043.8.498.81",
        "SamplesPerPixel": 1, "PhotometricInterpretation": "MONOCHROME2", "Rows": r, "Columns": c,
        "PixelSpacing": ["0.8", "0.6"], "BitsAllocated": 16, "BitsStored": 16, "HighBit": 15,
        "PixelRepresentation": 1, "RescaleIntercept": "-1024", "RescaleSlope": "1",
        "PixelData": px.tobytes(),
    }


# ------------------------------------------------------------------ strategies
DS_VALUES = ["", " ", "nan", "NaN", "inf", "-inf", "1e400", "-0", "0", "-4.8", "abc", "1\\2", "4.8\\nan",
             "1\\2\\3\\4\\5\\6\\7", "1e-320", "99999999999999999999", "0\\0\\0\\0\\0\\0", "1\\0\\0\\1\\0\\0",
             "0.7071\\0.7071\\0\\0\\0\\1", "+5", " 3 ", "1e300", "3e38", "-1e-300"]
IS_VALUES = ["", "0", "-1", "1", "2", "4096", "65536", "1.5", "abc", "2147483648", "99999999999", "-0"]
DA_VALUES = ["", "20261345", "00000000", "18991231", "2026-03-14", "2026.03.14", "abc", "20260230", "99999999",
             "20260315", "2026031"]
TM_VALUES = ["", "250000", "236161", "2400", "12", "12:30:00", "123045.1234567", "abc", "-10000", "240000",
             "001500", "235960.5"]
DT_VALUES = ["20260314", "2026031423", "20260314236000", "20260314120000+2500", "20260314120000-0000", "abc",
             "2026031412000.5", "20260315001500.000000+0100", ""]
TZ_VALUES = ["+0100", "-0500", "+1400", "abc", "+99", "0100", "+2500", "", "-1200"]
CS_VALUES = ["BQML", "CNTS", "CPS", "PROPCNTS", "XYZ", "", "bqml", "NONE", "START", "ADMIN", "RECON TOMO",
             "DERIVED\\PRIMARY", "DERIVED\\PRIMARY\\STATIC", "DERIVED\\PRIMARY\\TOMO", "HU"]
US_VALUES = [0, 1, 2, 3, 8, 12, 16, 17, 32, 64, 4096, 65535]

_TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=24)
_RAWB = st.binary(max_size=16).map(Raw)


def _value_strategy(vr: str):
    base = {"DS": DS_VALUES, "IS": IS_VALUES, "DA": DA_VALUES, "TM": TM_VALUES, "DT": DT_VALUES,
            "CS": CS_VALUES, "SH": TZ_VALUES}.get(vr)
    if vr in _PACK:
        fmt = _PACK[vr]
        return st.one_of(st.sampled_from(US_VALUES).map(lambda v: Raw(struct.pack("<H", v))),
                         st.integers(0, 0xFFFFFFFF).map(lambda v: Raw(struct.pack("<I", v))), _RAWB,
                         st.floats(allow_nan=True, allow_infinity=True).map(lambda v: Raw(struct.pack("<d", v)))
                         if fmt in ("<f", "<d") else _RAWB)
    if base is not None:
        return st.one_of(st.sampled_from(base), _TEXT.map(lambda t: Raw(t.encode("latin-1"))), _RAWB)
    return st.one_of(_TEXT.map(lambda t: Raw(t.encode("latin-1"))), _RAWB)


NM_PATHS = [
    ("Rows",), ("Columns",), ("NumberOfFrames",), ("BitsAllocated",), ("BitsStored",), ("PixelRepresentation",),
    ("PixelSpacing",), ("SpacingBetweenSlices",), ("SliceThickness",), ("SliceVector",), ("NumberOfSlices",),
    ("FrameIncrementPointer",), ("ImageType",), ("SOPClassUID",), ("Modality",), ("AcquisitionDate",),
    ("AcquisitionTime",), ("AcquisitionDateTime",), ("SeriesDate",), ("SeriesTime",), ("TimezoneOffsetFromUTC",),
    ("Units",), ("RescaleSlope",), ("RescaleIntercept",), ("DecayCorrection",), ("SamplesPerPixel",),
    ("PixelData",), ("NumberOfRotations",), ("SeriesInstanceUID",), ("PatientID",), ("DecayFactor",),
    ("FrameReferenceTime",), ("ActualFrameDuration",), ("CorrectedImage",),
    ("DetectorInformationSequence",), ("DetectorInformationSequence", 0, "ImagePositionPatient"),
    ("DetectorInformationSequence", 0, "ImageOrientationPatient"),
    ("RotationInformationSequence",), ("RotationInformationSequence", 0, "ActualFrameDuration"),
    ("RotationInformationSequence", 0, "NumberOfFramesInRotation"),
    ("RadiopharmaceuticalInformationSequence",),
    ("RadiopharmaceuticalInformationSequence", 0, "RadiopharmaceuticalStartTime"),
    ("RadiopharmaceuticalInformationSequence", 0, "RadiopharmaceuticalStartDateTime"),
    ("RadiopharmaceuticalInformationSequence", 0, "RadionuclideTotalDose"),
    ("RadiopharmaceuticalInformationSequence", 0, "RadionuclideHalfLife"),
    ("RadiopharmaceuticalInformationSequence", 0, "RadionuclideCodeSequence"),
    ("RealWorldValueMappingSequence",),
]
CT_PATHS = [("ImagePositionPatient",), ("ImageOrientationPatient",), ("PixelSpacing",), ("Rows",), ("Columns",),
            ("RescaleSlope",), ("RescaleIntercept",), ("RescaleType",), ("SliceThickness",), ("BitsAllocated",),
            ("BitsStored",), ("PixelRepresentation",), ("AcquisitionDate",), ("AcquisitionTime",),
            ("SeriesInstanceUID",), ("SOPClassUID",), ("ImageType",), ("PixelData",), ("NumberOfFrames",),
            ("FrameOfReferenceUID",), ("AcquisitionNumber",)]


@st.composite
def mutation(draw, paths):
    """(path, action, value): delete the element, or set it to a drawn (possibly malformed) value."""
    path = draw(st.sampled_from(paths))
    kw = path[-1]
    tag, vr = _tag_vr(kw)
    action = draw(st.sampled_from(["delete", "set", "set"]))
    if action == "delete":
        return path, "delete", None
    if vr == "SQ":
        return path, "set", draw(st.sampled_from([[], [{}], [{"CodeValue": "x"}], Raw(b"\x00" * 6)]))
    if kw == "PixelData":
        return path, "set", draw(st.one_of(_RAWB, st.binary(max_size=300)))
    if kw == "FrameIncrementPointer":
        return path, "set", draw(st.one_of(st.sampled_from([0x00540080, 0x00540010, 0x00540020, 0x00280010]),
                                           _RAWB))
    if kw == "SliceVector":
        return path, "set", draw(st.one_of(st.lists(st.integers(0, 9), max_size=8), _RAWB))
    return path, "set", draw(_value_strategy(vr))


def apply(ds: dict, mut) -> None:
    path, action, value = mut
    node = ds
    for p in path[:-1]:
        try:
            node = node[p]
        except (KeyError, IndexError, TypeError):
            return
        if not isinstance(node, (dict, list)):
            return
    if not isinstance(node, dict):
        return
    if action == "delete":
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value


def _check_series(s) -> None:
    img = s.image
    a = img.array
    # float32, or int16 for a CT whose Hounsfield units fit it exactly
    assert a.ndim == 3 and (a.dtype == np.float32 or (s.modality == "CT" and a.dtype == np.int16)) and a.size > 0
    assert np.all(np.isfinite(a)), "loader returned non-finite voxels"
    sp = np.asarray(img.spacing_mm, float)
    assert np.all(np.isfinite(sp)) and np.all(sp > 0), sp
    d = np.asarray(img.direction, float)
    assert np.allclose(d.T @ d, np.eye(3), atol=1e-5), d
    assert np.all(np.isfinite(np.asarray(img.origin_mm, float)))


def run_case(kind: str, fn):
    """Run one fuzz case: success or a one-line SpectrackError; anything else is counted and re-raised."""
    return fuzz_step(CASES, kind, fn)


# ------------------------------------------------------------------ DICOM
@FUZZ
@given(muts=st.lists(mutation(NM_PATHS), min_size=1, max_size=4))
def test_nm_multiframe_malformed_tags(muts):
    ds = nm_dataset()
    for m in muts:
        apply(ds, m)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "A1B2C3"
        p.write_bytes(encode(ds, NM_SOP))

        def load():
            series, warns = load_dicom_folder(d)
            for s in series:
                _check_series(s)
            assert all(isinstance(w, str) for w in warns)
            return series

        run_case("DICOM NM tags", load)
        run_case("DICOM NM tags", lambda: _check_series(read_nm_multiframe(p)))


@FUZZ
@given(data=st.data())
def test_dicom_truncated_or_flipped_bytes(data):
    kind = data.draw(st.sampled_from(["nm", "ct"]))
    with tempfile.TemporaryDirectory() as d:
        if kind == "nm":
            files = [encode(nm_dataset(), NM_SOP)]
        else:
            files = [encode(ct_dataset(k), CT_SOP) for k in range(3)]
        k = data.draw(st.integers(0, len(files) - 1))
        blob = bytearray(files[k])
        how = data.draw(st.sampled_from(["truncate", "flip", "both"]))
        if how in ("truncate", "both"):
            blob = blob[:data.draw(st.integers(0, len(blob) - 1))]
        if how in ("flip", "both") and blob:
            for _ in range(data.draw(st.integers(1, 8))):
                i = data.draw(st.integers(0, len(blob) - 1))
                blob[i] = data.draw(st.integers(0, 255))
        files[k] = bytes(blob)
        for n, b in enumerate(files):
            (Path(d) / f"F{n:03d}").write_bytes(b)

        def load():
            series, _ = load_dicom_folder(d)
            for s in series:
                _check_series(s)

        run_case("DICOM bytes", load)


@FUZZ
@given(muts=st.lists(mutation(CT_PATHS), min_size=1, max_size=3), which=st.integers(0, 2))
def test_ct_series_malformed_tags(muts, which):
    sl = [ct_dataset(k) for k in range(3)]
    for m in muts:
        apply(sl[which], m)
    with tempfile.TemporaryDirectory() as d:
        for k, ds in enumerate(sl):
            (Path(d) / f"S{k}").write_bytes(encode(ds, CT_SOP))

        def load():
            series, _ = load_dicom_folder(d)
            for s in series:
                _check_series(s)

        run_case("DICOM CT tags", load)


@FUZZ
@given(values=st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), min_size=120, max_size=120),
       slope=st.sampled_from(["1", "-1", "1e30", "1e-30", "0"]))
def test_dicom_float_pixels_nan_and_negative(values, slope):
    ds = nm_dataset()
    del ds["PixelData"]
    ds.update(BitsAllocated=32, BitsStored=32, HighBit=31, RescaleSlope=slope,
              FloatPixelData=np.array(values, np.float32).tobytes())
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "F1").write_bytes(encode(ds, NM_SOP))

        def load():
            series, warns = load_dicom_folder(d)
            for s in series:
                _check_series(s)
            return series, warns

        out = run_case("DICOM float voxels", load)
        if out is not None:
            with np.errstate(over="ignore", invalid="ignore"):
                want = np.array(values, np.float32) * np.float32(float(slope))
            if not np.all(np.isfinite(want)):
                assert any("not finite" in w for w in out[1]), out[1]


@settings(max_examples=40, deadline=None, derandomize=DERANDOMIZE, database=None)
@given(frames=st.sampled_from([1, 128, 4096, 65535]), rows=st.sampled_from([1, 512, 4096, 65535]),
       cols=st.sampled_from([1, 512, 4096, 65535]), bits=st.sampled_from([8, 16, 32, 64]))
def test_dicom_huge_declared_dimensions_in_tiny_file(frames, rows, cols, bits):
    import tracemalloc

    ds = nm_dataset()
    ds.update(NumberOfFrames=str(frames), Rows=rows, Columns=cols, BitsAllocated=bits, BitsStored=bits,
              HighBit=bits - 1, SliceVector=list(range(1, min(frames, 64) + 1)))
    assume(frames * rows * cols > 1000)
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "X").write_bytes(encode(ds, NM_SOP))
        tracemalloc.start()
        try:
            assert run_case("DICOM huge dims", lambda: load_dicom_folder(d)) is None
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 64 * 1024**2, f"{peak / 1e6:.0f} MB allocated for a refused file"


# ------------------------------------------------------------------ NIfTI
# NIfTI-1 header fields: (offset, struct format)
NII_FIELDS = {
    "dim": (40, "<8h"), "datatype": (70, "<h"), "bitpix": (72, "<h"), "pixdim": (76, "<8f"),
    "vox_offset": (108, "<f"), "scl_slope": (112, "<f"), "scl_inter": (116, "<f"), "qform_code": (252, "<h"),
    "sform_code": (254, "<h"), "quatern": (256, "<6f"), "srow": (280, "<12f"),
}
_F32 = st.one_of(st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, float("nan"), float("inf"), -float("inf"), 1e30,
                                  -1e30, 1e-30, 3.4e38]),
                 st.floats(width=32, allow_nan=True, allow_infinity=True))
_I16 = st.one_of(st.sampled_from([0, 1, 2, 3, 4, 7, 8, 16, 64, 256, 512, 768, 1024, 2048, 4096, 32767, -1]),
                 st.integers(-32768, 32767))


@st.composite
def nii_mutation(draw):
    field = draw(st.sampled_from(sorted(NII_FIELDS)))
    off, fmt = NII_FIELDS[field]
    n = struct.calcsize(fmt) // (2 if fmt.endswith("h") else 4)
    i = draw(st.integers(0, n - 1))
    v = draw(_I16 if fmt.endswith("h") else _F32)
    return field, i, v


def _write_nifti(folder: Path, name: str, arr: np.ndarray, side: dict | None, muts=(), gz=False) -> Path:
    img = nib.Nifti1Image(arr, np.diag([3.0, 3.0, 4.0, 1.0]))
    img.header.set_xyzt_units("mm", "sec")
    raw = folder / (name + ".nii")
    nib.save(img, raw)
    blob = bytearray(raw.read_bytes())
    for field, i, v in muts:
        off, fmt = NII_FIELDS[field]
        vals = list(struct.unpack_from(fmt, blob, off))
        vals[i] = v
        struct.pack_into(fmt, blob, off, *vals)
    if gz:
        raw.unlink()
        path = folder / (name + ".nii.gz")
        path.write_bytes(gzip.compress(bytes(blob), compresslevel=1))
    else:
        raw.write_bytes(bytes(blob))
        path = raw
    if side is not None:
        (folder / (name + ".json")).write_text(json.dumps(side))
    return path


SIDECAR = {"Modality": "NM", "TracerRadionuclide": "99mTc", "InjectedRadioactivity": 150.0,
           "InjectedRadioactivityUnits": "MBq", "TimeZero": "22:40:00", "InjectionStart": 0, "ScanStart": 1800,
           "FrameTimesStart": [1800], "FrameDuration": [1200], "ImageDecayCorrected": False, "Units": "Bq/mL",
           "AcquisitionDateTime": "2026-03-14T23:10:00"}
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
              st.floats(allow_nan=True, allow_infinity=True),
              st.sampled_from(["", "abc", "25:61:00", "22:40", "224000", "2026-13-45T00:00", "2026-03-14T23:10:00+02:00",
                               "Bq/mL", "kBq/mL", "counts", "furlongs", "MBq", "mCi", "nan", "-5", "1e400", "Tc-99m",
                               "I-131", "99mTc"]),
              _TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=2)),
    max_leaves=4)


def _check_nifti_case(folder: Path, path: Path):
    run_case("NIfTI", lambda: _check_series(read_nifti_series(path)))
    run_case("NIfTI study", lambda: load_study(folder))


@FUZZ
@given(muts=st.lists(nii_mutation(), min_size=1, max_size=3), gz=st.booleans())
def test_nifti_malformed_header(muts, gz):
    arr = (np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6) * 10.0)
    with tempfile.TemporaryDirectory() as d:
        p = _write_nifti(Path(d), "tp0_spect", arr, SIDECAR, muts, gz)
        _check_nifti_case(Path(d), p)


@FUZZ
@given(data=st.data())
def test_nifti_truncated_or_flipped_bytes(data):
    arr = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    gz = data.draw(st.booleans())
    with tempfile.TemporaryDirectory() as d:
        p = _write_nifti(Path(d), "tp0_spect", arr, SIDECAR, (), gz)
        blob = bytearray(p.read_bytes())
        if data.draw(st.booleans()):
            blob = blob[:data.draw(st.integers(0, len(blob) - 1))]
        else:
            for _ in range(data.draw(st.integers(1, 6))):
                blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
        p.write_bytes(bytes(blob))
        _check_nifti_case(Path(d), p)


@FUZZ
@given(values=st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                                 st.sampled_from([float("nan"), -1.0, -1e30, 0.0])), min_size=120, max_size=120),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_nifti_nan_and_negative_voxels(values, dtype):
    arr = np.array(values, dtype=dtype).reshape(4, 5, 6)
    with tempfile.TemporaryDirectory() as d:
        p = _write_nifti(Path(d), "tp0_spect", arr, SIDECAR)
        s = run_case("NIfTI voxels", lambda: read_nifti_series(p))
        if s is not None:
            _check_series(s)
            bad = ~np.isfinite(arr.astype(np.float32))
            if bad.any():
                assert any("not finite" in w for w in s.get("load_warnings", []))


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(sorted(SIDECAR) + ["RadionuclideHalfLife", "DecayCorrectionFactor",
                                                                  "ImageDecayCorrectionTime", "PatientID"]),
                               JSON_VALUES, min_size=1, max_size=4),
       drop=st.lists(st.sampled_from(sorted(SIDECAR)), max_size=3))
def test_nifti_sidecar_malformed_values(changes, drop):
    side = dict(SIDECAR)
    for k in drop:
        side.pop(k, None)
    side.update(changes)
    arr = np.ones((4, 5, 6), np.float32)
    with tempfile.TemporaryDirectory() as d:
        try:
            text = json.dumps(side)
        except (ValueError, TypeError):
            return
        p = _write_nifti(Path(d), "tp0_spect", arr, None)
        (Path(d) / "tp0_spect.json").write_text(text)
        _check_nifti_case(Path(d), p)


@settings(max_examples=60, deadline=None, derandomize=DERANDOMIZE, database=None)
@given(text=st.one_of(_TEXT, st.sampled_from(["{", "[1,2", '{"Units": }', "\ufeff{}", "null", "[]", "42", '"x"'])),
       scans=st.one_of(st.none(), _TEXT, st.sampled_from(["filename\tacq_time\ntp0_spect.nii.gz\tabc\n",
                                                          "filename\tacq_time\ntp0_spect.nii.gz\t\n",
                                                          "filename\nx\n", "\x00\x01"])))
def test_nifti_broken_sidecar_and_scans_files(text, scans):
    with tempfile.TemporaryDirectory() as d:
        p = _write_nifti(Path(d), "tp0_spect", np.ones((4, 5, 6), np.float32), None)
        (Path(d) / "tp0_spect.json").write_text(text, encoding="utf-8", errors="replace")
        if scans is not None:
            (Path(d) / "scans.tsv").write_text(scans, encoding="utf-8", errors="replace")
        _check_nifti_case(Path(d), p)


@settings(max_examples=20, deadline=None, derandomize=DERANDOMIZE, database=None)
@given(dims=st.sampled_from([(4096, 4096, 4096), (32767, 32767, 2), (2048, 2048, 2048), (1000, 1000, 1000),
                             (4096, 4096, 1)]), gz=st.booleans(), dtype=st.sampled_from([np.uint8, np.float32]))
def test_nifti_huge_declared_dimensions_in_tiny_file(dims, gz, dtype):
    import tracemalloc

    muts = [("dim", i + 1, v) for i, v in enumerate(dims)]
    with tempfile.TemporaryDirectory() as d:
        p = _write_nifti(Path(d), "tp0_spect", np.ones((4, 5, 6), dtype), SIDECAR, muts, gz)
        tracemalloc.start()
        try:
            assert run_case("NIfTI huge dims", lambda: read_nifti_series(p)) is None
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 64 * 1024**2, f"{peak / 1e6:.0f} MB allocated for a refused file"


# ------------------------------------------------------------------ command line
@settings(max_examples=30, deadline=None, derandomize=DERANDOMIZE, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(muts=st.lists(mutation(NM_PATHS), min_size=1, max_size=3))
def test_cli_info_never_prints_a_traceback(muts, capsys):
    ds = nm_dataset()
    for m in muts:
        apply(ds, m)
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "Z9").write_bytes(encode(ds, NM_SOP))
        capsys.readouterr()
        CASES["CLI"] += 1
        try:
            rc = main(["info", d])
        except BaseException:
            CASES["failures"] += 1
            raise
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        if rc != 0:
            CASES["CLI: refused"] += 1
            lines = [ln for ln in err.splitlines() if ln.strip()]
            assert rc in (3, 4, 5, 6), (rc, err)
            assert len(lines) == 1 and lines[0].startswith("spectrack: error:"), err


@settings(max_examples=30, deadline=None, derandomize=DERANDOMIZE, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(muts=st.lists(nii_mutation(), min_size=1, max_size=3), gz=st.booleans())
def test_cli_info_nifti_never_prints_a_traceback(muts, gz, capsys):
    arr = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    with tempfile.TemporaryDirectory() as d:
        _write_nifti(Path(d), "tp0_spect", arr, SIDECAR, muts, gz)
        capsys.readouterr()
        CASES["CLI"] += 1
        try:
            rc = main(["info", d])
        except BaseException:
            CASES["failures"] += 1
            raise
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        if rc != 0:
            CASES["CLI: refused"] += 1
            lines = [ln for ln in err.splitlines() if ln.strip()]
            assert rc in (3, 4, 5, 6), (rc, err)
            assert len(lines) == 1 and lines[0].startswith("spectrack: error:"), err


# ------------------------------------------------------------------ silent wrong numbers
@FUZZ
@given(changes=st.dictionaries(st.sampled_from(["Rows", "Columns", "NumberOfFrames", "BitsAllocated"]),
                               st.sampled_from([1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32]), min_size=1, max_size=3))
def test_nm_size_tags_never_give_a_silent_wrong_total(changes):
    """Rows, Columns, frames or bits changed: refused, or the same counts as the file holds."""
    ds = nm_dataset()
    truth = float(np.frombuffer(ds["PixelData"], np.uint16).sum())
    for k, v in changes.items():
        ds[k] = str(v) if k == "NumberOfFrames" else v
        if k == "BitsAllocated":
            ds["BitsStored"], ds["HighBit"] = v, v - 1
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "A1").write_bytes(encode(ds, NM_SOP))
        series = run_case("DICOM NM size", lambda: load_dicom_folder(d)[0])
        for s in series or []:
            total = float(np.asarray(s.image.array, np.float64).sum())
            if total != pytest.approx(truth, rel=1e-6):
                CASES["failures"] += 1
                pytest.fail(f"{changes}: read as fine with total {total}, the file holds {truth}")


@FUZZ
@given(data=st.data())
def test_nifti_gz_damage_is_refused_or_harmless(data):
    """A damaged .nii.gz is refused, or (damage outside the voxels' stream) reads the exact voxels."""
    arr = (np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6) * 10.0 + 1.0)
    with tempfile.TemporaryDirectory() as d:
        p = _write_nifti(Path(d), "tp0_spect", arr, SIDECAR, (), gz=True)
        blob = bytearray(p.read_bytes())
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(10, len(blob) - 1))  # past the gzip member header
            blob[i] ^= data.draw(st.integers(1, 255))
        p.write_bytes(bytes(blob))
        s = run_case("NIfTI gz damage", lambda: read_nifti_series(p))
        if s is not None and not np.array_equal(np.asarray(s.image.array), arr.transpose(2, 1, 0)):
            CASES["failures"] += 1
            pytest.fail("a damaged gzip stream was read as if fine, with different voxels")


def test_zz_fuzz_summary(capsys):
    """Print how many fuzz cases ran and how many failed unexpectedly (run last)."""
    runs = {k: v for k, v in CASES.items() if ":" not in k and k != "failures"}
    refused = sum(v for k, v in CASES.items() if k.endswith(": refused"))
    line = (f"fuzz summary: {sum(runs.values())} cases ({', '.join(f'{k} {v}' for k, v in sorted(runs.items()))}); "
            f"{refused} refused with a SpectrackError, {CASES['failures']} unexpected failures")
    with capsys.disabled():
        print("\n" + line)
    assert CASES["failures"] == 0
