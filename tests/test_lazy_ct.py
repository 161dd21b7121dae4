"""CT pixels are read only when a step needs them (issue 16: pay only for what is asked).

Truth: the same series read eagerly by SimpleITK's GDCM reader; a damaged file is still refused at load.
"""

import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from spectrack.errors import InputError
from spectrack.geometry import LazyImage
from spectrack.load.dicom import load_dicom_folder, read_ct_series
from spectrack.phantom.sample import REPO_SAMPLE
from spectrack.pipeline import run_study


def _ct_files(folder, n=0):
    series = {}
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        if ds.Modality == "CT":
            series.setdefault(ds.SeriesInstanceUID, []).append(f)
    return series[sorted(series)[n]]


def test_minimal_run_reads_no_ct_pixels_and_the_same_numbers():
    res = run_study(REPO_SAMPLE, {"report": False, "uncertainty_draws": 0})
    cts = [tp.ct.image for tp in res.study.timepoints]
    assert all(isinstance(c, LazyImage) and not c.loaded for c in cts)
    with_report = run_study(REPO_SAMPLE, {"uncertainty_draws": 0, "register": True})
    assert all(tp.ct.image.loaded for tp in with_report.study.timepoints)  # registration read them
    a = res.table.set_index(["timepoint", "region"])["pct_id"]
    b = with_report.table.set_index(["timepoint", "region"])["pct_id"]
    assert np.allclose(a.loc[b.index], b, rtol=1e-3)


def test_lazy_ct_equals_simpleitk():
    files = _ct_files(REPO_SAMPLE / "dicom")
    s = read_ct_series(files)
    assert isinstance(s.image, LazyImage) and not s.image.loaded
    assert s.image.shape_ijk == (int(pydicom.dcmread(files[0]).Columns), int(pydicom.dcmread(files[0]).Rows),
                                 len(files))
    r = sitk.ImageSeriesReader()
    r.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(files[0].parent),
                                                               str(pydicom.dcmread(files[0]).SeriesInstanceUID)))
    ref = r.Execute()
    assert np.array_equal(s.image.array, sitk.GetArrayFromImage(ref))
    assert s.image.loaded and np.allclose(s.image.origin_mm, ref.GetOrigin(), atol=1e-4)


def test_truncated_ct_slice_is_still_refused_at_load(tmp_path):
    files = _ct_files(REPO_SAMPLE / "dicom")
    for f in files:
        shutil.copy(f, tmp_path / f.name)
    victim = tmp_path / files[len(files) // 2].name
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.raises(InputError, match="truncated"):
        read_ct_series(sorted(tmp_path.iterdir()))
    with pytest.raises(InputError, match=r"skipped .*truncated"):  # the folder reader names the file
        load_dicom_folder(tmp_path)


def test_lazy_ct_on_a_series_written_by_gdcm(tmp_path):
    """A CT series written by SimpleITK's GDCM writer (not spectrack's): read lazily, the same voxels and grid."""
    arr = (np.arange(6 * 20 * 24).reshape(6, 20, 24) % 700 - 500).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.8, 0.9, 2.5))
    img.SetOrigin((-10.0, -20.0, 30.0))
    w = sitk.ImageFileWriter()
    w.KeepOriginalImageUIDOn()
    uid = "1.2.826.0.1.3680043.2.1125.77"
    for k in range(arr.shape[0]):
        s = img[:, :, k]
        pos = "\\".join(f"{v:g}" for v in img.TransformIndexToPhysicalPoint((0, 0, k)))
        for tag, val in (("0008|0060", "CT"), ("0020|000e", uid + ".2"), ("0020|000d", uid + ".3"),
                         ("0008|0020", "20260101"), ("0008|0030", "101010"), ("0020|0032", pos),
                         ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0020|0013", str(k + 1)), ("0028|1052", "0"),
                         ("0028|1053", "1"), ("0018|0050", "2.5")):
            s.SetMetaData(tag, val)
        w.SetFileName(str(tmp_path / f"slice{k:02d}.dcm"))
        w.Execute(s)
    assert str(pydicom.dcmread(tmp_path / "slice00.dcm").SOPClassUID) == "1.2.840.10008.5.1.4.1.1.2"
    s = read_ct_series(sorted(tmp_path.iterdir()))
    assert isinstance(s.image, LazyImage) and not s.image.loaded
    assert s.image.shape_ijk == (24, 20, 6)
    assert np.allclose(s.image.spacing_mm, (0.8, 0.9, 2.5)) and np.allclose(s.image.origin_mm, (-10, -20, 30))
    assert np.array_equal(s.image.array, arr) and s.image.array.dtype == np.int16
