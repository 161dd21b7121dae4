"""Regions given to the pipeline as DICOM-SEG, RTSTRUCT or a TotalSegmentator folder.

The phantom's reference labels are exported in each format, read back through
``--labels`` and must give the same %ID as the NIfTI label map (exactly for
SEG; within 1 % for RTSTRUCT, whose contours are rasterised).
"""

import nibabel as nib
import numpy as np
import pydicom
import pytest

from spectrack import run_study
from spectrack.cli import main
from spectrack.geometry import to_nifti_affine
from spectrack.phantom import make_study
from spectrack.regions.formats.dicomseg import write_dicom_seg
from spectrack.regions.formats.nifti import read_label_map
from spectrack.regions.formats.rtstruct import write_rtstruct


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("fmt")
    truth = make_study(out, preset="rat", formats=("dicom",), times_h=[0.5, 4.0], seed=21)
    ct0 = []
    first = None
    for p in sorted((out / "dicom").iterdir()):
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        if ds.Modality == "CT":
            key = (ds.AcquisitionDate, ds.AcquisitionTime)
            first = key if first is None else min(first, key)
            ct0.append((key, p))
    ct0 = [p for k, p in ct0 if k == first]
    settings = {"sensitivity_cps_per_mbq": truth["sensitivity_cps_per_mbq"], "uncertainty_draws": 0,
                "report": False}
    base = run_study(out / "dicom", dict(settings, labels=str(out / "labels.nii.gz"))).table
    return out, ct0, settings, base


def _same(a, b, rel):
    a = a[a.kind == "region"].set_index(["timepoint", "region"]).pct_id
    b = b[b.kind == "region"].set_index(["timepoint", "region"]).pct_id
    common = a.index.intersection(b.index)
    assert len(common) >= 10
    for k in common:
        if b[k] > 0.5:
            assert a[k] == pytest.approx(b[k], rel=rel), k


def test_dicom_seg_labels(study, tmp_path):
    out, ct0, settings, base = study
    lm = read_label_map(out / "labels.nii.gz")
    seg = tmp_path / "regions_seg.dcm"
    write_dicom_seg(lm, ct0, seg)
    res = run_study(out / "dicom", dict(settings, labels=str(seg)))
    _same(res.table, base, 1e-12)


def test_rtstruct_labels(study, tmp_path, capsys):
    out, ct0, settings, base = study
    lm = read_label_map(out / "labels.nii.gz")
    rs = tmp_path / "regions_rtstruct.dcm"
    write_rtstruct(lm, ct0, rs)
    rc = main(["quantify", str(out / "dicom"), "--labels", str(rs), "-o", str(tmp_path / "r"), "--no-report",
               "--sensitivity", str(settings["sensitivity_cps_per_mbq"]), "--uncertainty-draws", "0"])
    assert rc == 0, capsys.readouterr().err
    import pandas as pd

    _same(pd.read_csv(tmp_path / "r" / "regions.csv"), base, 0.01)


def test_totalsegmentator_folder(study, tmp_path):
    out, ct0, settings, base = study
    lm = read_label_map(out / "labels.nii.gz")
    ts = tmp_path / "ts"
    ts.mkdir()
    names = {"brain": "brain", "liver": "liver", "urinary_bladder": "bladder"}
    arr, aff = to_nifti_affine(lm.image)
    for ts_name, ours in names.items():
        nib.save(nib.Nifti1Image((arr == {v: k for k, v in lm.names.items()}[ours]).astype(np.uint8), aff),
                 ts / f"{ts_name}.nii.gz")
    kid = {v: k for k, v in lm.names.items()}["kidneys"]
    left = (arr == kid) & (np.arange(arr.shape[0])[:, None, None] >= arr.shape[0] // 2)
    nib.save(nib.Nifti1Image(left.astype(np.uint8), aff), ts / "kidney_left.nii.gz")
    nib.save(nib.Nifti1Image(((arr == kid) & ~left).astype(np.uint8), aff), ts / "kidney_right.nii.gz")
    res = run_study(out / "dicom", dict(settings, labels=str(ts)))
    got = res.table[res.table.kind == "region"].set_index(["timepoint", "region"]).pct_id
    ref = base[base.kind == "region"].set_index(["timepoint", "region"]).pct_id
    for r in ("brain", "liver", "bladder", "kidneys"):
        for t in (0, 1):
            assert got[(t, r)] == pytest.approx(ref[(t, r)], rel=1e-12)
