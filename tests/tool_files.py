"""Region files written by the tools people use (rt-utils, plastimatch), and checks against phantom truth.

Shared by the tests of the region readers; imported as ``tool_files`` (the
tests folder is on ``sys.path``, see ``conftest.py``).
"""

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from spectrack.regions.formats.dicomseg import read_reference_series
from spectrack.regions.labelmap import LabelMap


def series_folder(dicom_dir: Path, series_uid: str, dest: Path) -> Path:
    """Copy one series of the phantom's flat DICOM folder into its own folder (what rt-utils reads)."""
    dest.mkdir(parents=True, exist_ok=True)
    for p in dicom_dir.iterdir():
        if pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID == series_uid:
            shutil.copy(p, dest / p.name)
    return dest


def rtutils_rtstruct(ct_dir: Path, masks: dict[str, np.ndarray], path: Path) -> Path:
    """An RTSTRUCT written by rt-utils from masks on the CT grid (array order k, j, i)."""
    from rt_utils import RTStructBuilder

    _, grid = read_reference_series(ct_dir)
    with warnings.catch_warnings():  # rt-utils 1.2 still sets FileDataset.is_little_endian (pydicom 3 deprecates it)
        warnings.filterwarnings("ignore", message=".*will be removed in v4.0", category=DeprecationWarning)
        rs = RTStructBuilder.create_new(dicom_series_path=str(ct_dir))
        ks = [int(round(float(grid.world_to_index([float(v) for v in s.ImagePositionPatient])[2])))
              for s in rs.series_data]
        for name, m in masks.items():
            rs.add_roi(mask=np.stack([m[k] for k in ks], axis=-1), name=name)  # rt-utils: (rows, columns, slices)
        rs.save(str(path))
    return path


def plastimatch_rtstruct(ct_dir: Path, grid, masks: dict[str, np.ndarray], work: Path) -> Path:
    """An RTSTRUCT written by ``plastimatch convert`` from one binary .mha per structure."""
    import SimpleITK as sitk

    exe = Path(sys.executable).with_name("plastimatch")
    if not exe.exists():
        exe = shutil.which("plastimatch")
    if exe is None:
        pytest.fail("plastimatch is not installed: pip install plastimatch (in the test extra)")
    prefix = work / "structures"
    prefix.mkdir(parents=True, exist_ok=True)
    for name, m in masks.items():
        im = sitk.GetImageFromArray(m.astype(np.uint8))
        im.SetOrigin([float(v) for v in grid.origin_mm])
        im.SetSpacing([float(v) for v in grid.spacing_mm])
        im.SetDirection([float(v) for v in grid.direction.ravel()])
        sitk.WriteImage(im, str(prefix / f"{name}.mha"))
    out = work / "dicom"
    run = subprocess.run([str(exe), "convert", "--input-prefix", str(prefix), "--referenced-ct", str(ct_dir),
                          "--output-dicom", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    (rtss,) = [p for p in out.iterdir() if pydicom.dcmread(p, stop_before_pixels=True).Modality == "RTSTRUCT"]
    return rtss


def phantom_masks(labels: LabelMap) -> dict[str, np.ndarray]:
    return {name: labels.image.array == idx for idx, name in sorted(labels.names.items())
            if np.any(labels.image.array == idx)}


def assert_same_voxels(back: LabelMap, labels: LabelMap, names=None):
    """Every region's voxel count within 1 % of the phantom's, and (stricter) its voxels the same."""
    rev = {v: k for k, v in back.names.items()}
    for idx, name in sorted(labels.names.items()):
        if names is not None and name not in names:
            continue
        want = labels.image.array == idx
        assert name in rev, f"{name} lost"
        got = back.mask(rev[name])
        n_want, n_got = int(want.sum()), int(got.sum())
        assert n_got == pytest.approx(n_want, rel=0.01), f"{name}: {n_got} voxels, phantom {n_want}"
        assert np.count_nonzero(got != want) <= 0.01 * n_want, f"{name}: {np.count_nonzero(got != want)} voxels differ"


def assert_pct_id_truth(table, truth, *, rel=1e-3, skip=(), min_checked=20):
    """Every region and group of the table equals the phantom's truth within ``rel``."""
    checked = 0
    for tp in truth["timepoints"]:
        rows = table[table.timepoint == tp["index"]].set_index("region")
        for kind in ("regions", "groups"):
            for name, t in tp[kind].items():
                if name in skip or t.get("n_voxels", 1) == 0:
                    continue
                assert name in rows.index, f"time point {tp['index']}: {name} missing"
                assert rows.loc[name, "pct_id"] == pytest.approx(t["pct_id"], rel=rel, abs=1e-9), \
                    (tp["index"], name)
                checked += 1
    assert checked >= min_checked


