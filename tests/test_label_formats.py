"""DICOM-SEG, RTSTRUCT and TotalSegmentator label import/export against known truth."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from spectrack.align.resample import resample_labels
from spectrack.errors import InputError, LabelError
from spectrack.geometry import Image, to_nifti_affine
from spectrack.regions.formats.dicomseg import read_dicom_seg, read_reference_series, write_dicom_seg
from spectrack.regions.formats.rtstruct import read_rtstruct, write_rtstruct
from spectrack.regions.formats.totalseg import map_structure_name, read_totalsegmentator
from spectrack.regions.labelmap import LabelMap
from spectrack.regions.vocabulary import INDEX, VOCABULARY


# ---------------------------------------------------------------- helpers
def write_ct_series(folder: Path, image: Image) -> list[Path]:
    """Write ``image`` (HU) as a single-frame CT series, one file per slice."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    d = image.direction
    files = []
    for k in range(image.array.shape[0]):
        sop = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CTImageStorage, sop, "CT"
        ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "SYN01", "Synthetic^Phantom", "", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240305", "100000", "1", ""
        ds.ReferringPhysicianName, ds.SeriesNumber, ds.InstanceNumber = "", 2, k + 1
        ds.Manufacturer, ds.PositionReferenceIndicator = "test", ""
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [float(v) for v in image.index_to_world_mm([0, 0, k])]
        ds.ImageOrientationPatient = [float(v) for v in np.concatenate([d[:, 0], d[:, 1]])]
        ds.PixelSpacing = [float(image.spacing_mm[1]), float(image.spacing_mm[0])]
        ds.SliceThickness = float(image.spacing_mm[2])
        ds.Rows, ds.Columns = image.array.shape[1:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = np.ascontiguousarray((image.array[k] + 1024).astype(np.int16)).tobytes()
        p = folder / f"ct_{(k * 7919) % 1000:04d}_{k}.dcm"  # names not in slice order
        pydicom.dcmwrite(p, ds, enforce_file_format=True)
        files.append(p)
    return files


def _ellipsoid(grid: Image, centre, radii) -> np.ndarray:
    p = grid.voxel_centres_mm()
    q = (p - np.asarray(centre, float)) / np.asarray(radii, float)
    return (q * q).sum(-1) <= 1


def _dice(a, b) -> float:
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    """A small CT (slices run feet-wards, in-plane axes rotated) and its files."""
    c, s = np.cos(np.radians(8)), np.sin(np.radians(8))
    direction = np.array([[c, -s, 0], [s, c, 0], [0, 0, -1.0]])  # columns: i, j, k
    img = Image(np.full((30, 48, 52), -1000.0, dtype=np.float32), origin_mm=(-55.0, -50.0, 40.0),
                spacing_mm=(2.0, 2.2, 3.0), direction=direction, units="HU")
    body = _ellipsoid(img, (0, 0, 0), (48, 45, 200))
    img.array[body] = 30.0
    files = write_ct_series(tmp_path_factory.mktemp("ct"), img)
    return img, files


@pytest.fixture(scope="module")
def truth(ct):
    """Labels with non-consecutive indices, a hollow shell and an absent name."""
    img, _ = ct
    arr = np.zeros(img.array.shape, dtype=np.int32)
    arr[_ellipsoid(img, (-15, 0, 5), (20, 16, 25))] = 7  # liver
    shell = _ellipsoid(img, (20, 8, 0), (14, 14, 20)) & ~_ellipsoid(img, (20, 8, 0), (7, 7, 11))
    arr[shell] = 9  # hollow bladder wall
    arr[_ellipsoid(img, (-20, 25, -20), (6, 6, 12)) | _ellipsoid(img, (22, 25, -20), (6, 6, 12))] = 8
    arr[_ellipsoid(img, (0, -20, 25), (10, 8, 6))] = 1
    arr[12:16, 5:9, 40:44] = 23  # a box: a user's own region
    names = {1: "brain", 7: "liver", 8: "kidneys", 9: "bladder", 23: "my_roi", 40: "absent_region"}
    return LabelMap(img.with_array(arr, units="label"), names, source="drawn")


# -------------------------------------------------------------- reference
def test_reference_series_grid(ct):
    img, files = ct
    ds, grid = read_reference_series(files[::-1], pixels=True)
    # sorted along the normal: same voxels, slice order reversed (k runs head-wards)
    assert np.allclose(grid.voxel_centres_mm()[::-1], img.voxel_centres_mm(), atol=1e-4)
    np.testing.assert_allclose(grid.array[::-1], img.array)
    assert [float(d.ImagePositionPatient[2]) for d in ds] == sorted(float(d.ImagePositionPatient[2]) for d in ds)


# -------------------------------------------------------------- DICOM SEG
def test_dicom_seg_round_trip_exact(ct, truth, tmp_path):
    img, files = ct
    out = write_dicom_seg(truth, files, tmp_path / "seg.dcm")
    back = read_dicom_seg(out, reference=img)
    assert back.image.same_grid(img)
    np.testing.assert_array_equal(back.image.array, truth.image.array)
    assert back.names == truth.names
    ds = pydicom.dcmread(out)
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert [s.SegmentLabel for s in ds.SegmentSequence] == [truth.names[k] for k in sorted(truth.names)]
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == pydicom.dcmread(files[0]).SeriesInstanceUID


def test_dicom_seg_own_geometry(ct, truth, tmp_path):
    img, files = ct
    out = write_dicom_seg(truth, files[0].parent, tmp_path / "s.dcm")  # the CT folder
    own = read_dicom_seg(out)  # the planes holding segments, on the CT lattice
    assert sorted(own.present()) == sorted(truth.present())
    on_ct = own.resampled_to(img)
    np.testing.assert_array_equal(on_ct.image.array, truth.image.array)


def test_dicom_seg_other_grids(ct, truth, tmp_path):
    img, files = ct
    coarse = Image(np.zeros((15, 24, 26)), img.origin_mm, img.spacing_mm * 2, img.direction)
    lab_coarse = LabelMap(resample_labels(truth.image, coarse), truth.names)
    out = write_dicom_seg(lab_coarse, files, tmp_path / "c.dcm")  # resampled onto the CT
    back = read_dicom_seg(out, reference=coarse)  # and back onto the coarse grid
    assert back.image.same_grid(coarse)
    for k in (7, 9):
        assert _dice(back.image.array == k, lab_coarse.image.array == k) > 0.95


def test_dicom_seg_errors(ct, tmp_path):
    img, files = ct
    with pytest.raises(InputError, match="does not exist"):
        read_dicom_seg(tmp_path / "none.dcm")
    with pytest.raises(InputError, match="not a DICOM SEG"):
        read_dicom_seg(files[0])
    empty = LabelMap(img.with_array(np.zeros(img.array.shape, np.int32)), {1: "brain"})
    with pytest.raises(LabelError, match="empty"):
        write_dicom_seg(empty, files, tmp_path / "e.dcm")


# ---------------------------------------------------------------- RTSTRUCT
def test_rtstruct_round_trip(ct, truth, tmp_path):
    img, files = ct
    out = write_rtstruct(truth, files, tmp_path / "rs.dcm")
    back = read_rtstruct(out, img)
    assert back.image.same_grid(img)
    assert back.names == truth.names
    for k in truth.present():
        d = _dice(back.image.array == k, truth.image.array == k)
        assert d >= 0.95, (truth.names[k], d)
    # the hole of the hollow bladder stays empty
    hole = _ellipsoid(img, (20, 8, 0), (5, 5, 8))
    assert not np.any(back.image.array[hole] == 9)
    ds = pydicom.dcmread(out)
    assert ds.Modality == "RTSTRUCT"
    assert {int(r.ROINumber): r.ROIName for r in ds.StructureSetROISequence} == truth.names


def test_rtstruct_onto_other_grids(ct, truth, tmp_path):
    img, files = ct
    out = write_rtstruct(truth, files, tmp_path / "rs.dcm")
    # a finer grid whose slices fall between the contour planes (1 mm off)
    fine = Image(np.zeros((58, 60, 64)), img.origin_mm + [0, 0, -1.0], (1.6, 1.7, 1.5), img.direction)
    back = read_rtstruct(out, fine)
    assert back.image.same_grid(fine)
    expect = resample_labels(truth.image, fine).array
    for k in (1, 7, 8, 9):
        assert _dice(back.image.array == k, expect == k) >= 0.95, truth.names[k]


def test_rtstruct_errors(ct, tmp_path):
    img, files = ct
    with pytest.raises(InputError, match="does not exist"):
        read_rtstruct(tmp_path / "none.dcm", img)
    with pytest.raises(InputError, match="not an RTSTRUCT"):
        read_rtstruct(files[0], img)


# -------------------------------------------------------- TotalSegmentator
VERTEBRAE = [f"C{n}" for n in range(1, 8)] + [f"T{n}" for n in range(1, 13)] + [f"L{n}" for n in range(1, 6)]


@pytest.fixture(scope="module")
def ts_grid():
    # NIfTI-style grid: 4 mm voxels, k running head-wards along a tall column
    return Image(np.zeros((110, 20, 24), dtype=np.uint8), origin_mm=(-46.0, -38.0, -200.0),
                 spacing_mm=(4.0, 4.0, 4.0))


def _ts_structures(g: Image) -> dict:
    """Synthetic TotalSegmentator masks: a spine of 24 vertebrae + sacrum beside a cord."""
    s = {}
    z0 = 208.0  # top of C1 (mm)
    vheight = 15.0
    p = g.voxel_centres_mm()
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    body = (x / 40) ** 2 + ((y - 20) / 14) ** 2 <= 1
    for n, v in enumerate(VERTEBRAE):
        top = z0 - n * vheight
        s[f"vertebrae_{v}"] = body & (z <= top - 1) & (z > top - vheight + 1)
    s["sacrum"] = body & (z <= z0 - 24 * vheight - 1) & (z > z0 - 24 * vheight - 40)
    cord_z_top = z0 - 8  # below the brain
    s["spinal_cord"] = ((x / 6) ** 2 + ((y + 2) / 6) ** 2 <= 1) & (z <= cord_z_top) & (z > z0 - 24 * vheight - 30)
    s["brain"] = ((x / 30) ** 2 + (y / 30) ** 2 + ((z - 224) / 8) ** 2) <= 1
    s["kidney_left"] = ((x - 25) ** 2 + (y + 20) ** 2 + (z + 50) ** 2) <= 100
    s["kidney_right"] = ((x + 25) ** 2 + (y + 20) ** 2 + (z + 50) ** 2) <= 100
    s["urinary_bladder"] = (x ** 2 + (y + 20) ** 2 + (z + 180) ** 2) <= 144
    s["thyroid_gland"] = (x ** 2 + (y + 25) ** 2 + (z - 150) ** 2) <= 64
    s["aorta"] = ((x + 10) ** 2 + (y + 5) ** 2 <= 16) & (z > -100) & (z < 100)
    s["liver"] = np.zeros(g.array.shape, dtype=bool)  # an empty mask, as TotalSegmentator writes
    return s


def _write_mask(path: Path, g: Image, mask: np.ndarray):
    arr, aff = to_nifti_affine(g.with_array(mask.astype(np.uint8)))
    nib.save(nib.Nifti1Image(arr, aff), str(path))


def _expected_levels(g: Image, s: dict) -> dict:
    z = g.voxel_centres_mm()[..., 2]
    cord = s["spinal_cord"]
    z0, h = 208.0, 15.0
    return {
        "canal_cervical": cord & (z > z0 - 7 * h),
        "canal_thoracic": cord & (z <= z0 - 7 * h) & (z > z0 - 19 * h),
        "canal_lumbar": cord & (z <= z0 - 19 * h) & (z > z0 - 24 * h),
        "canal_sacral": cord & (z <= z0 - 24 * h),
    }


def test_totalsegmentator_folder(ts_grid, tmp_path):
    g = ts_grid
    s = _ts_structures(g)
    for name, m in s.items():
        _write_mask(tmp_path / f"{name}.nii.gz", g, m)
    lm = read_totalsegmentator(tmp_path)
    assert lm.image.same_grid(g)
    arr = lm.image.array
    names = lm.names
    assert names[INDEX["kidneys"]] == "kidneys" and names[INDEX["bladder"]] == "bladder"
    np.testing.assert_array_equal(arr == INDEX["kidneys"], s["kidney_left"] | s["kidney_right"])
    np.testing.assert_array_equal(arr == INDEX["bladder"], s["urinary_bladder"])
    np.testing.assert_array_equal(arr == INDEX["thyroid"], s["thyroid_gland"])
    np.testing.assert_array_equal(arr == INDEX["brain"], s["brain"])
    vert = np.zeros(arr.shape, bool)
    for n, m in s.items():
        if n.startswith("vertebrae_") or n == "sacrum":
            vert |= m
    np.testing.assert_array_equal(arr == INDEX["vertebrae"], vert & ~s["spinal_cord"])
    # cord split by the level of the nearest vertebra; allow the boundary slices
    for level, expect in _expected_levels(g, s).items():
        got = arr == INDEX[level]
        assert _dice(got, expect) > 0.9, level
    assert "spinal_cord" not in names.values()
    aorta = [k for k, v in names.items() if v == "aorta"]  # unmapped structures keep their names,
    assert len(aorta) == 1 and aorta[0] > max(VOCABULARY)     # on indices after the vocabulary's
    np.testing.assert_array_equal(arr == aorta[0], s["aorta"] & ~s["spinal_cord"])
    assert "liver" not in names.values()  # empty masks add no region


def test_totalsegmentator_cord_without_vertebrae_and_reference(ts_grid, tmp_path):
    g = ts_grid
    s = _ts_structures(g)
    _write_mask(tmp_path / "spinal_cord.nii.gz", g, s["spinal_cord"])
    _write_mask(tmp_path / "kidney_left.nii.gz", g, s["kidney_left"])
    ref = Image(np.zeros((55, 10, 12)), g.origin_mm + 2.0, g.spacing_mm * 2)  # another grid
    lm = read_totalsegmentator(tmp_path, reference=ref)
    assert lm.image.same_grid(ref)
    assert set(lm.names.values()) == {"spinal_cord", "kidneys"}
    assert np.any(lm.mask("spinal_cord"))


def test_totalsegmentator_multilabel(ts_grid, tmp_path):
    g = ts_grid
    s = _ts_structures(g)
    classes = ["spinal_cord", "kidney_left", "kidney_right", "urinary_bladder"] + [
        f"vertebrae_{v}" for v in VERTEBRAE] + ["sacrum"]
    arr = np.zeros(g.array.shape, np.uint8)
    for n, c in enumerate(classes, start=1):
        arr[s[c]] = n
    ml = tmp_path / "seg.nii.gz"
    x, aff = to_nifti_affine(g.with_array(arr))
    nib.save(nib.Nifti1Image(x, aff), str(ml))
    with pytest.raises(LabelError, match="has no class names"):
        read_totalsegmentator(ml)
    (tmp_path / "seg.tsv").write_text("index\tname\n" + "".join(f"{n}\t{c}\n" for n, c in enumerate(classes, 1)))
    lm = read_totalsegmentator(ml)
    np.testing.assert_array_equal(lm.mask("kidneys"), s["kidney_left"] | s["kidney_right"])
    for level, expect in _expected_levels(g, s).items():
        assert _dice(lm.mask(level), expect) > 0.9, level
    with pytest.raises(LabelError, match="no name"):
        read_totalsegmentator(ml, names={1: "spinal_cord"})


def test_structure_names():
    assert map_structure_name("vertebrae_L3") == "vertebrae"
    assert map_structure_name("sacrum") == "vertebrae"
    assert map_structure_name("thyroid_gland") == "thyroid"
    assert map_structure_name("parotid_gland_left") == "salivary_glands"
    assert map_structure_name("heart") == "heart"


def test_totalsegmentator_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_totalsegmentator(tmp_path / "nope")
    with pytest.raises(InputError, match="no .nii.gz"):
        read_totalsegmentator(tmp_path)
