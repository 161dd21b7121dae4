"""load_series consults an ordered list of readers (spectrack.load.readers.READERS), as nibabel's imageclasses.

The list is a refactor of a load_series that picked NIfTI by file name and gave every other file to the DICOM
folder reader: these tests pin the order, which reader each kind of input gets, and that the errors and
warnings are those of before (the messages are written out).
"""

from pathlib import Path

import numpy as np
import pytest
from conftest import _grid, _write, make_nifti_study
from test_hardening import write_nm

from spectrack.errors import InputError
from spectrack.load import READERS, Reader, load_series
from spectrack.load.dicom import load_dicom_folder
from spectrack.load.nifti import read_nifti_series, read_scans_tsv
from spectrack.load.readers import reader_for


def _by_name(name):
    return next(r for r in READERS if r.name == name)


def test_the_readers_and_their_order():
    assert [r.name for r in READERS] == ["NIfTI", "DICOM"]
    assert all(isinstance(r, Reader) for r in READERS)
    # DICOM is the last resort: it accepts every file (its reader says when a file is not DICOM)
    assert all(_by_name("DICOM").accepts(Path(n)) for n in ("IM0001", "x.dcm", "notes.txt", "a.nii.gz"))
    assert [r.one_clock for r in READERS] == [False, True]


@pytest.mark.parametrize("name, reader", [
    ("tp0_spect.nii.gz", "NIfTI"), ("ct.nii", "NIfTI"), ("labels.nii.gz", "NIfTI"),  # a label file alone too
    ("IM000123", "DICOM"), ("nm.dcm", "DICOM"), ("scan.nii.gz.bak", "DICOM"), ("notes.bin", "DICOM"),
    ("scans.tsv", "DICOM"), ("sidecar.json", "DICOM"),
])
def test_which_reader_a_file_gets(name, reader):
    assert reader_for(name).name == reader


def test_a_nifti_file_is_read_by_the_nifti_reader(tmp_path):
    make_nifti_study(tmp_path)
    p = tmp_path / "tp1_spect.nii.gz"
    series, warnings = load_series(p)
    want = read_nifti_series(p, scans=read_scans_tsv(tmp_path))
    assert len(series) == 1 and warnings == []
    assert series[0].modality == "NM"
    np.testing.assert_array_equal(series[0].image.array, want.image.array)
    assert series[0].acquisition_start == want.acquisition_start  # scans.tsv of the file's folder


def test_a_dicom_folder_is_read_by_the_dicom_reader_alone(tmp_path):
    write_nm(tmp_path / "a" / "1.dcm", date="20260315", time="013000")
    write_nm(tmp_path / "b" / "2", date="20260315", time="033000", counts=50.0)
    assert _by_name("NIfTI").finds(tmp_path) == []
    assert sorted(p.name for p in _by_name("DICOM").finds(tmp_path)) == ["1.dcm", "2"]
    series, warnings = load_series(tmp_path)
    want, want_warn = load_dicom_folder(tmp_path)
    assert [s.modality for s in series] == ["NM", "NM"]
    assert [s.get("series_uid") for s in series] == [s.get("series_uid") for s in want]
    assert warnings == want_warn
    # one DICOM file alone: the DICOM folder reader on that file
    one, _ = load_series(tmp_path / "b" / "2")
    assert len(one) == 1 and float(one[0].image.array.max()) == 50.0


def test_a_pet_bids_folder_is_read_by_the_nifti_reader_alone(tmp_path):
    g = _grid()
    pet = tmp_path / "sub-01" / "pet"
    pet.mkdir(parents=True)
    _write(pet / "sub-01_trc-FDG_pet.nii.gz", g.with_array(np.ones(g.array.shape, np.float32)),
           {"Modality": "PT", "Units": "Bq/mL", "TracerRadionuclide": "F18", "TimeZero": "10:00:00",
            "ScanStart": 3600, "InjectionStart": 0, "FrameTimesStart": [3600], "FrameDuration": [600],
            "AcquisitionDateTime": "2026-03-14T11:00:00", "ImageDecayCorrected": True,
            "ImageDecayCorrectionTime": 3600})
    (pet / "sub-01_trc-FDG_labels.nii.gz").write_bytes(b"")  # a label map by its name: not an image
    assert [p.name for p in _by_name("NIfTI").finds(tmp_path)] == ["sub-01_trc-FDG_pet.nii.gz"]
    assert _by_name("DICOM").finds(tmp_path) == []  # .nii.gz and .json are not DICOM candidates
    series, warnings = load_series(tmp_path)
    assert [s.modality for s in series] == ["PT"] and warnings == []
    assert series[0].get("units") == "Bq/mL" and series[0].get("decay_correction") == "START"


def test_a_nifti_study_folder_with_a_stray_file(tmp_path):
    """A later reader's error, when an earlier one found series, is a warning (as before)."""
    make_nifti_study(tmp_path)
    (tmp_path / "junk.bin").write_bytes(b"\0junk" * 50)
    series, warnings = load_series(tmp_path)
    assert len(series) == 3
    assert warnings == [f"no DICOM image series among 1 other files in {tmp_path}"]


def test_an_unknown_file_gets_the_dicom_readers_error_unchanged(tmp_path):
    p = tmp_path / "notes.bin"
    p.write_bytes(b"this is not an image\n" * 20)
    assert reader_for(p).name == "DICOM"
    with pytest.raises(InputError) as got:
        load_series(p)
    with pytest.raises(InputError) as direct:
        load_dicom_folder(p)
    assert str(got.value) == str(direct.value)
    assert str(got.value).startswith(f"no usable image series in {p} (0 DICOM files read, 1 files skipped)")


def test_the_errors_of_a_missing_path_and_an_empty_folder_are_unchanged(tmp_path):
    with pytest.raises(InputError) as e:
        load_series(tmp_path / "nope")
    assert str(e.value) == f"{tmp_path / 'nope'} does not exist: give the folder of the study's images"
    with pytest.raises(InputError) as e:
        load_series(tmp_path)
    assert str(e.value) == f"no image found in {tmp_path}: expected DICOM files or NIfTI volumes"
