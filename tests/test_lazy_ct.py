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
