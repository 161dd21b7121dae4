"""Regions the user can take away: the label maps quantify used, and `spectrack export` as DICOM-SEG,
RTSTRUCT and NIfTI, read back by independent readers (highdicom; pydicom + matplotlib point-in-polygon).

Truth: the phantom's own labels on each SPECT grid (truth/tp<N>_labels.nii.gz) and voxel counts of the
label map quantify used; the DICOM files are read without spectrack's readers.
"""

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from spectrack.cli import main
from spectrack.phantom import make_study
from spectrack.phantom.sample import sample_study


def _run(capsys, args):
    rc = main(args)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.fixture(scope="module")
def sample_results(tmp_path_factory):
    """The sample quantified with no option (its study file), without report or intervals."""
    out = tmp_path_factory.mktemp("sample") / "r"
    assert main(["quantify", str(sample_study()["study"]), "-o", str(out), "-q", "--no-report",
                 "--uncertainty-draws", "0"]) == 0
    return out


@pytest.fixture(scope="module")
def fine_ct_results(tmp_path_factory):
    """A rat phantom whose CT is 3x finer than its SPECT (0.7 vs 2.1 mm), DICOM only, quantified."""
    root = tmp_path_factory.mktemp("rat3")
    make_study(root / "study", "rat", times_h=[1.0, 4.0], ct_refine=3, formats=("dicom",), study_file=True)
    assert main(["quantify", str(root / "study"), "-o", str(root / "r"), "-q", "--no-report",
                 "--uncertainty-draws", "0"]) == 0
    return root / "r"


def _nifti_counts(path: Path, names_tsv: Path) -> tuple[dict, np.ndarray]:
    img = nib.load(str(path))
    arr = np.asarray(img.dataobj)
    names = dict(ln.split("\t") for ln in names_tsv.read_text().splitlines()[1:])
    vox_ml = float(np.prod(img.header.get_zooms()[:3])) / 1000
    return {name: int(np.count_nonzero(arr == int(k))) * vox_ml for k, name in names.items()}, arr


def test_quantify_writes_the_label_maps_it_used(sample_results):
    """labels/tp<N>_labels.nii.gz are the phantom's labels on each SPECT grid, voxel for voxel."""
    meta = json.loads((sample_results / "study.json").read_text())
    listing = meta["label_maps"]
    assert [m["timepoint"] for m in listing] == list(range(6))
    truth_dir = sample_study()["study"] / "truth"
    for m in listing:
        got = nib.load(str(sample_results / m["file"]))
        want = nib.load(str(truth_dir / f"tp{m['timepoint']}_labels.nii.gz"))
        assert np.allclose(got.affine, want.affine)
        assert np.array_equal(np.asarray(got.dataobj), np.asarray(want.dataobj))
        assert (sample_results / m["names"]).read_text() == (truth_dir / f"tp{m['timepoint']}_labels.tsv").read_text()
        assert m["grid"]["shape_ijk"] == meta["study"]["timepoints"][m["timepoint"]]["emission"]["grid"]["shape_ijk"]
        assert m["ct"]["format"] == "dicom" and len(m["ct"]["files"]) == 118
        assert all(Path(f).is_absolute() for f in m["ct"]["files"])


def _seg_volumes(path: Path) -> tuple[dict, pydicom.Dataset]:
    import highdicom as hd

    seg = hd.seg.segread(str(path))
    vol = seg.get_volume(combine_segments=False)
    spacing = np.linalg.norm(np.asarray(vol.affine)[:3, :3], axis=0)
    vox_ml = float(np.prod(spacing)) / 1000
    out = {}
    for n, num in enumerate(seg.segment_numbers):
        out[str(seg.get_segment_description(num).SegmentLabel)] = int(np.count_nonzero(vol.array[..., n])) * vox_ml
    return out, seg


def _rtstruct_volumes(path: Path, ct_files: list) -> dict:
    """Voxels whose centre is inside each ROI's contours (even-odd per slice), on the referenced CT."""
    from matplotlib.path import Path as Polygon

    cts = {}
    for f in ct_files:
        d = pydicom.dcmread(f, stop_before_pixels=True)
        cts[d.SOPInstanceUID] = d
    d0 = next(iter(cts.values()))
    assert [float(v) for v in d0.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    dy, dx = (float(v) for v in d0.PixelSpacing)
    z = sorted(float(d.ImagePositionPatient[2]) for d in cts.values())
    vox_ml = dx * dy * (z[1] - z[0]) / 1000
    rows, cols = int(d0.Rows), int(d0.Columns)
    jj, ii = np.mgrid[0:rows, 0:cols]
    centres = np.column_stack([ii.ravel(), jj.ravel()]).astype(float)
    rs = pydicom.dcmread(path)
    assert rs.Modality == "RTSTRUCT"
    names = {int(r.ROINumber): str(r.ROIName) for r in rs.StructureSetROISequence}
    out = {}
    for rc in rs.ROIContourSequence:
        per_slice: dict = {}
        for c in getattr(rc, "ContourSequence", []):
            uid = c.ContourImageSequence[0].ReferencedSOPInstanceUID
            ct = cts[uid]
            xyz = np.asarray(c.ContourData, float).reshape(-1, 3)
            assert np.allclose(xyz[:, 2], float(ct.ImagePositionPatient[2]), atol=1e-3)
            x0, y0 = float(ct.ImagePositionPatient[0]), float(ct.ImagePositionPatient[1])
            poly = np.column_stack([(xyz[:, 0] - x0) / dx, (xyz[:, 1] - y0) / dy])
            # closed=True makes the last vertex the CLOSEPOLY one (ignored): repeat the first point
            inside = Polygon(np.vstack([poly, poly[:1]]), closed=True).contains_points(centres)
            per_slice[uid] = per_slice.get(uid, np.zeros(len(centres), bool)) ^ inside
        out[names[int(rc.ReferencedROINumber)]] = sum(int(m.sum()) for m in per_slice.values()) * vox_ml
    return out


def _check_format(capsys, results: Path, fmt: str, timepoints: list[int]):
    out = results / f"export_{fmt}"
    args = ["export", str(results), "--format", fmt, "-o", str(out)]
    for t in timepoints:
        args += ["--timepoint", str(t)]
    rc, said, err = _run(capsys, args)
    assert rc == 0, err
    meta = json.loads((results / "study.json").read_text())
    for t in timepoints:
        entry = meta["label_maps"][t]
        want, _ = _nifti_counts(results / entry["file"], results / entry["names"])
        want = {k: v for k, v in want.items() if v > 0}
        if fmt == "seg":
            got, seg = _seg_volumes(out / f"tp{t}_seg.dcm")
            ref = seg.ReferencedSeriesSequence[0].SeriesInstanceUID
            assert ref == entry["ct"]["series_uid"]
            assert seg.FrameOfReferenceUID == entry["ct"]["frame_of_reference_uid"]
        elif fmt == "rtstruct":
            got = _rtstruct_volumes(out / f"tp{t}_rtstruct.dcm", entry["ct"]["files"])
        else:
            got, _ = _nifti_counts(out / f"tp{t}_labels.nii.gz", out / f"tp{t}_labels.tsv")
            got = {k: v for k, v in got.items() if v > 0}
        assert set(got) == set(want)
        for name, ml in want.items():
            assert got[name] == pytest.approx(ml, rel=0.01), (fmt, t, name)
    return said


@pytest.mark.parametrize("fmt", ["seg", "rtstruct", "nifti"])
def test_export_sample(sample_results, capsys, fmt):
    """The sample (CT on the SPECT grid): every region's volume back within 1 % (in fact exactly)."""
    said = _check_format(capsys, sample_results, fmt, [0, 5])
    assert str(sample_results / f"export_{fmt}") in said


@pytest.mark.parametrize("fmt", ["seg", "rtstruct"])
def test_export_onto_a_finer_ct(fine_ct_results, capsys, fmt):
    """Labels on the 2.1 mm SPECT carried onto the 0.7 mm CT: 27 CT voxels per SPECT voxel, volumes kept."""
    _check_format(capsys, fine_ct_results, fmt, [1])


def test_export_all_timepoints_by_default(sample_results, capsys, tmp_path):
    rc, said, err = _run(capsys, ["export", str(sample_results), "--format", "seg", "-o", str(tmp_path / "e")])
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == [f"tp{n}_seg.dcm" for n in range(6)]


def test_export_needs_a_dicom_ct_for_seg(tmp_path, capsys, nifti_study):
    """A NIfTI study has no DICOM to reference: one line naming --format nifti (exit 3); NIfTI works."""
    nifti_study(tmp_path / "s")
    assert main(["quantify", str(tmp_path / "s"), "--labels", "{study}/labels.nii.gz", "-q", "--no-report",
                 "-o", str(tmp_path / "r")]) == 0
    capsys.readouterr()
    for fmt in ("seg", "rtstruct"):
        rc, _, err = _run(capsys, ["export", str(tmp_path / "r"), "--format", fmt])
        assert rc == 3
        (line,) = [ln for ln in err.splitlines() if ln.strip()]
        assert line.startswith("spectrack: error: time point 0 has no CT") and "--format nifti" in line, line
    rc, _, err = _run(capsys, ["export", str(tmp_path / "r"), "--format", "nifti"])
    assert rc == 0, err
    got, arr = _nifti_counts(tmp_path / "r" / "export" / "tp0_labels.nii.gz", tmp_path / "r" / "export" / "tp0_labels.tsv")
    assert got == pytest.approx({"brain": 48 * 0.036, "liver": 36 * 0.036})  # conftest: 3x3x4 mm voxels


@pytest.mark.parametrize("args, code, phrase", [
    (["--format", "png"], 2, "must be one of seg, rtstruct, nifti"),
    (["--format", "seg", "--timepoint", "9"], 3, "time point 9 is not among the label maps"),
])
def test_export_usage_errors(sample_results, capsys, args, code, phrase):
    rc, out, err = _run(capsys, ["export", str(sample_results)] + args)
    assert rc == code
    assert phrase in " ".join((out + err).split())
    assert "Traceback" not in err


def test_export_of_a_folder_without_label_maps(tmp_path, capsys):
    (tmp_path / "study.json").write_text(json.dumps({"study": {}, "warnings": []}))
    rc, _, err = _run(capsys, ["export", str(tmp_path), "--format", "nifti"])
    assert rc == 3 and re.search(r"lists no label maps .*quantify the study again", err), err
