"""DICOM loading: spectrack against SimpleITK on the same files, same values and geometry.

Run ``python benchmarks/bench_dicom.py [--slices 300] [--size 512] [--nm 128]``.

Writes with pydicom, in a temporary folder, a CT series (``--slices`` files of
``--size`` x ``--size`` int16, rescale intercept -1024, oblique-free axial,
meaningless file names, shuffled ``InstanceNumber``) and one NM multi-frame
``RECON TOMO`` SPECT (``--nm``^3 uint16, geometry in
``DetectorInformationSequence``, negative ``SpacingBetweenSlices``). Then
times, with the page cache warm:

* spectrack ``load_dicom_folder`` (discovery of the folder, grouping,
  sorting, values to float32) and ``read_ct_series`` / ``read_nm_multiframe``;
* SimpleITK ``ImageSeriesReader`` (with ``GetGDCMSeriesFileNames`` for the
  CT folder) and ``ReadImage`` for the NM file, pixels as a numpy view;
* the floor: reading the raw bytes of every file.

Before timing, asserts that spectrack and SimpleITK give identical voxel
values and the same geometry (origin, spacing, direction within 1e-6 mm).
Not a test.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, interleaved, machine  # noqa: E402

CT_SOP = "1.2.840.10008.5.1.4.1.1.2"
NM_SOP = "1.2.840.10008.5.1.4.1.1.20"


def _base(sop: str, modality: str, series_uid: str):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop
    ds.SOPClassUID = sop
    ds.Modality = modality
    ds.PatientID = "bench01"
    ds.PatientName = "Bench^Phantom"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.10"
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.11"
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = "20260314"
    ds.StudyTime = ds.SeriesTime = "221000"
    ds.Manufacturer = "spectrack benchmark"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    return ds


def write_ct(folder: Path, n: int, size: int, seed: int = 0) -> np.ndarray:
    """``n`` axial CT slices, shuffled names; returns the HU volume [k, j, i]."""
    from pydicom.uid import generate_uid

    rng = np.random.default_rng(seed)
    uid = generate_uid()
    z = np.linspace(-1, 1, n)[:, None, None]
    y, x = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    body = (x ** 2 / 0.8 + y ** 2 / 0.5)[None] + 0.2 * z ** 2 <= 0.9
    hu = np.where(body, 40, -1000).astype(np.int16) + rng.integers(-30, 30, size=(n, size, size), dtype=np.int16)
    stored = (hu + 1024).astype(np.int16)
    names = list(range(n))
    random.Random(seed).shuffle(names)
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        ds = _base(CT_SOP, "CT", uid)
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.Rows = ds.Columns = size
        ds.PixelRepresentation = 1
        ds.PixelSpacing = [0.9765625, 0.9765625]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-249.51171875, -249.51171875, -600.0 + 3.0 * k]
        ds.SliceThickness = 3.0
        ds.InstanceNumber = (k * 7919) % n + 1
        ds.RescaleSlope = 1
        ds.RescaleIntercept = -1024
        ds.RescaleType = "HU"
        ds.KVP = 120
        ds.AcquisitionTime = "221500"
        ds.PixelData = stored[k].tobytes()
        ds.save_as(folder / f"{names[k]:08X}", enforce_file_format=True)
    return hu.astype(np.float32)


def write_nm(path: Path, n: int, seed: int = 1) -> np.ndarray:
    """One NM RECON TOMO multi-frame of ``n``^3 uint16 with a negative slice step."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.tag import Tag
    from pydicom.uid import generate_uid

    rng = np.random.default_rng(seed)
    frames = rng.poisson(50.0, size=(n, n, n)).astype(np.uint16)
    ds = _base(NM_SOP, "NM", generate_uid())
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    ds.NumberOfFrames = n
    ds.Rows = ds.Columns = n
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [4.7951998710632, 4.7951998710632]
    ds.SpacingBetweenSlices = -4.7951998710632
    ds.SliceThickness = 4.7951998710632
    ds.FrameIncrementPointer = Tag(0x0054, 0x0080)
    ds.SliceVector = list(range(1, n + 1))
    ds.NumberOfSlices = n
    det = Dataset()
    det.ImagePositionPatient = [-304.5, -304.5, 120.0]
    det.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.DetectorInformationSequence = Sequence([det])
    rot = Dataset()
    rot.ActualFrameDuration = 20000
    rot.NumberOfFramesInRotation = 60
    ds.RotationInformationSequence = Sequence([rot])
    ds.NumberOfRotations = 1
    ds.AcquisitionTime = "223000"
    ds.PixelData = frames.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return frames.astype(np.float32)


def _sitk_series(folder: Path):
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(str(folder))
    reader.SetFileNames(names)
    img = reader.Execute()
    return img, sitk.GetArrayViewFromImage(img)


def _sitk_file(path: Path):
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    return img, sitk.GetArrayViewFromImage(img)


def _raw_bytes(files: list[Path]) -> int:
    n = 0
    for f in files:
        with open(f, "rb") as fh:
            n += len(fh.read())
    return n


def _same(ours, sitk_img, what: str) -> None:
    """Assert identical voxel values and geometry."""
    import SimpleITK as sitk

    from spectrack.geometry import from_sitk

    theirs = from_sitk(sitk_img)
    a, b = ours.array, sitk.GetArrayViewFromImage(sitk_img)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    assert np.array_equal(a, b.astype(np.float32)), f"{what}: voxel values differ from SimpleITK"
    for attr in ("origin_mm", "spacing_mm", "direction"):
        x, y = np.asarray(getattr(ours, attr), float), np.asarray(getattr(theirs, attr), float)
        assert np.allclose(x, y, atol=1e-6), f"{what}: {attr} {x.tolist()} != SimpleITK {y.tolist()}"


def run(slices: int, size: int, nm: int, repeat: int) -> list[dict]:
    from spectrack.load.dicom import load_dicom_folder, read_ct_series, read_nm_multiframe

    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="spectrack-bench-dicom-") as tmp:
        ct_dir, nm_dir = Path(tmp) / "ct", Path(tmp) / "nm"
        truth_ct = write_ct(ct_dir, slices, size)
        nm_file = nm_dir / "5F3A9C01"
        truth_nm = write_nm(nm_file, nm)
        ct_files = sorted(ct_dir.iterdir())
        mb = sum(f.stat().st_size for f in ct_files) / 1e6
        print(f"CT: {slices} slices {size}x{size} ({mb:.0f} MB); NM: {nm}^3 multi-frame "
              f"({nm_file.stat().st_size / 1e6:.1f} MB)")

        # correctness first: identical values and geometry
        series, _ = load_dicom_folder(ct_dir)
        assert len(series) == 1
        ct_ours = series[0].image
        assert np.array_equal(ct_ours.array, truth_ct)
        _same(ct_ours, _sitk_series(ct_dir)[0], "CT")
        nm_ours = read_nm_multiframe(nm_file).image
        sitk_nm = _sitk_file(nm_file)[0]
        _same(nm_ours, sitk_nm, "NM")
        print("values and geometry identical to SimpleITK (CT and NM)")
        del series, ct_ours, nm_ours

        ct = interleaved({"floor": lambda: _raw_bytes(ct_files), "folder": lambda: load_dicom_folder(ct_dir),
                          "files": lambda: read_ct_series(ct_files), "sitk": lambda: _sitk_series(ct_dir)},
                         repeat=repeat)
        nmt = interleaved({"floor": lambda: _raw_bytes([nm_file]), "file": lambda: read_nm_multiframe(nm_file),
                           "folder": lambda: load_dicom_folder(nm_dir), "sitk": lambda: _sitk_file(nm_file)},
                          repeat=repeat * 5)
        t_floor, t_folder, t_files, t_sitk = ct["floor"], ct["folder"], ct["files"], ct["sitk"]
        t_nm_floor, t_nm, t_nm_folder, t_nm_sitk = nmt["floor"], nmt["file"], nmt["folder"], nmt["sitk"]

    def ms(t):
        return f"{t['median_s'] * 1e3:.0f} ms" if t["median_s"] >= 0.01 else f"{t['median_s'] * 1e3:.1f} ms"

    s_ct = t_sitk["median_s"]
    rows.append(dict(figure=f"CT {slices}x{size}^2: load_dicom_folder (discover+sort+HU)", ours=ms(t_folder),
                     peer_name="SimpleITK ImageSeriesReader+GDCM names", peer=ms(t_sitk),
                     ratio=t_folder["median_s"] / s_ct, target="<= 0.7x", ok=t_folder["median_s"] / s_ct <= 0.7))
    rows.append(dict(figure=f"CT {slices}x{size}^2: read_ct_series(files)", ours=ms(t_files),
                     peer_name="SimpleITK ImageSeriesReader+GDCM names", peer=ms(t_sitk),
                     ratio=t_files["median_s"] / s_ct, target="<= 0.7x", ok=t_files["median_s"] / s_ct <= 0.7))
    rows.append(dict(figure=f"CT {slices}x{size}^2: raw file bytes (floor)", ours=ms(t_floor),
                     peer_name="load_dicom_folder", peer=ms(t_folder),
                     ratio=t_folder["median_s"] / t_floor["median_s"], target="(ours / floor)"))
    s_nm = t_nm_sitk["median_s"]
    rows.append(dict(figure=f"NM {nm}^3 multi-frame: read_nm_multiframe", ours=ms(t_nm),
                     peer_name="SimpleITK ReadImage", peer=ms(t_nm_sitk),
                     ratio=t_nm["median_s"] / s_nm, target="<= 0.7x", ok=t_nm["median_s"] / s_nm <= 0.7))
    rows.append(dict(figure=f"NM {nm}^3 multi-frame: load_dicom_folder", ours=ms(t_nm_folder),
                     peer_name="SimpleITK ReadImage", peer=ms(t_nm_sitk),
                     ratio=t_nm_folder["median_s"] / s_nm, target="<= 0.7x",
                     ok=t_nm_folder["median_s"] / s_nm <= 0.7))
    rows.append(dict(figure=f"NM {nm}^3 multi-frame: raw file bytes (floor)", ours=ms(t_nm_floor),
                     peer_name="read_nm_multiframe", peer=ms(t_nm),
                     ratio=t_nm["median_s"] / t_nm_floor["median_s"], target="(ours / floor)"))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--nm", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--json", default=None, help="write the result rows here (used by run_all.py)")
    a = ap.parse_args(argv)
    print(machine())
    emit(run(a.slices, a.size, a.nm, a.repeat), a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
