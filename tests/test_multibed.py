"""Multi-bed SPECT: bed positions of one time point are stitched into one volume.

The phantom's SPECT is cut into two overlapping beds; the second starts 20
minutes later, so its counts are lower by the decay (written exactly through
``RescaleSlope``). Loading must stitch them, decay-correcting each bed from
its own start, and give the phantom's %ID.
"""

import copy
import datetime as dt
import math

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from spectrack import load_study, quantify
from spectrack.phantom import make_study
from spectrack.regions.formats.nifti import read_label_map


def _split(nm_path, out_dir, overlap=6, delay_s=1200.0, half_life_h=6.0067):
    ds = pydicom.dcmread(nm_path)
    frames = ds.pixel_array  # (n, rows, cols)
    n = frames.shape[0]
    cut = n // 2
    det = ds.DetectorInformationSequence[0]
    ipp = np.array([float(v) for v in det.ImagePositionPatient])
    iop = np.array([float(v) for v in det.ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    step = float(ds.SpacingBetweenSlices)
    start = dt.datetime.strptime(ds.AcquisitionDate + ds.AcquisitionTime.split(".")[0], "%Y%m%d%H%M%S")
    lam = math.log(2) / half_life_h
    for b, (lo, hi, delay) in enumerate([(0, cut + overlap, 0.0), (cut - overlap, n, delay_s)]):
        d = copy.deepcopy(ds)
        sub = np.ascontiguousarray(frames[lo:hi])
        d.PixelData = sub.tobytes()
        d.NumberOfFrames = hi - lo
        d.NumberOfSlices = hi - lo
        d.SliceVector = list(range(1, hi - lo + 1))
        d.DetectorInformationSequence[0].ImagePositionPatient = [f"{v:.10g}" for v in ipp + lo * step * normal]
        t = start + dt.timedelta(seconds=delay)
        d.AcquisitionDate, d.AcquisitionTime = t.strftime("%Y%m%d"), t.strftime("%H%M%S")
        if "AcquisitionDateTime" in d:
            d.AcquisitionDateTime = t.strftime("%Y%m%d%H%M%S")
        if "SeriesTime" in d:
            d.SeriesTime = t.strftime("%H%M%S")
        # a later bed sees less activity: physical decay over the delay, exact through the slope
        d.RescaleSlope = f"{math.exp(-lam * delay / 3600.0):.14f}"  # DS holds 16 characters
        d.RescaleIntercept = "0"
        d.SeriesInstanceUID = generate_uid(entropy_srcs=[str(nm_path), str(b)])
        d.SOPInstanceUID = generate_uid(entropy_srcs=[str(nm_path), str(b), "sop"])
        d.file_meta.MediaStorageSOPInstanceUID = d.SOPInstanceUID
        d.save_as(out_dir / f"bed{b}")


def test_two_beds_are_stitched_and_quantified(tmp_path):
    truth = make_study(tmp_path, preset="rat", formats=("dicom",), times_h=[1.0], seed=8)
    folder = tmp_path / "dicom"
    nm = [p for p in folder.iterdir() if pydicom.dcmread(p, stop_before_pixels=True).Modality == "NM"]
    assert len(nm) == 1
    _split(nm[0], folder)
    nm[0].unlink()
    study = load_study(folder)
    assert len(study.timepoints) == 1
    em = study.timepoints[0].emission
    assert len(em.get("beds")) == 2
    assert any("stitched" in w for w in study.warnings)
    df = quantify(study, read_label_map(tmp_path / "labels.nii.gz"),
                  sensitivity_cps_per_mbq=truth["sensitivity_cps_per_mbq"])
    got = df[df.kind == "region"].set_index("region")
    for name, r in truth["timepoints"][0]["regions"].items():
        assert got.loc[name, "pct_id"] == pytest.approx(r["pct_id"], rel=1e-3), name
