"""Shared fixtures: hand-built studies with analytic answers, real-data location."""

import datetime as dt
import json
import math
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spectrack.geometry import Image, to_nifti_affine
from spectrack.regions.formats.nifti import write_label_map
from spectrack.regions.labelmap import LabelMap

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests' own helper modules (tool_files)

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"

HL = 6.0067
LAM = math.log(2) / HL
INJ = dt.datetime(2026, 3, 14, 22, 40, 0)
A_INJ = 150.0
S_CPS = 80.0  # cps/MBq


def _grid(shape=(10, 12, 14), spacing=(3.0, 3.0, 4.0)):
    return Image(np.zeros(shape, np.float32), origin_mm=(-20, -15, 100), spacing_mm=spacing)


def _labels(img):
    lab = np.zeros(img.array.shape, np.int16)
    lab[2:5, 3:7, 2:6] = 1   # 3*4*4 = 48 voxels
    lab[6:9, 2:5, 8:12] = 2  # 36 voxels
    return LabelMap(img.with_array(lab, units="label"), {1: "brain", 2: "liver"})


def _write(path, img, side=None):
    arr, aff = to_nifti_affine(img)
    nib.save(nib.Nifti1Image(arr.astype(np.float32), aff), path)
    if side is not None:
        path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(side))


def fuzz_step(cases, kind: str, fn):
    """One counted fuzz step: ``fn()``'s result, or None when it is refused with a one-line SpectrackError
    (counted as ``kind + ': refused'``); any other exception is counted under ``failures`` and re-raised."""
    from spectrack.errors import SpectrackError

    cases[kind] += 1
    try:
        out = fn()
    except SpectrackError as e:
        msg = str(e)
        assert msg.strip() and "\n" not in msg and "Traceback" not in msg, repr(msg)
        cases[kind + ": refused"] += 1
        return None
    except BaseException:
        cases["failures"] += 1
        raise
    return out


def make_nifti_study(tmp_path, units="Bq/mL", times_h=(0.5, 4.0, 26.0), frac=((0.3, 0.1), (0.2, 0.25), (0.05, 0.4)),
                     duration_s=1200.0):
    """Two regions holding given fractions of the injected dose (decay-corrected)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    g = _grid()
    lm = _labels(g)
    vox_ml = g.voxel_volume_ml
    truth = []
    scans = ["filename\tacq_time"]
    for n, (t, (f1, f2)) in enumerate(zip(times_h, frac)):
        arr = np.zeros(g.array.shape, np.float64)
        phys = math.exp(-LAM * t)
        a1 = A_INJ * f1 * phys  # MBq at scan start
        a2 = A_INJ * f2 * phys
        iff = LAM * duration_s / 3600 / (1 - math.exp(-LAM * duration_s / 3600))
        m1, m2 = lm.image.array == 1, lm.image.array == 2
        if units == "Bq/mL":
            # mean over the frame (DecayCorrection NONE) = start / in-frame factor
            arr[m1] = a1 / m1.sum() / vox_ml * 1e6 / iff
            arr[m2] = a2 / m2.sum() / vox_ml * 1e6 / iff
        else:
            arr[m1] = a1 / m1.sum() * S_CPS * duration_s / iff
            arr[m2] = a2 / m2.sum() * S_CPS * duration_s / iff
        acq = INJ + dt.timedelta(hours=t)
        side = {"Modality": "NM", "TracerRadionuclide": "99mTc", "InjectedRadioactivity": A_INJ,
                "InjectedRadioactivityUnits": "MBq", "TimeZero": INJ.strftime("%H:%M:%S"), "InjectionStart": 0,
                "ScanStart": t * 3600, "FrameTimesStart": [t * 3600], "FrameDuration": [duration_s],
                "ImageDecayCorrected": False, "Units": units}
        _write(tmp_path / f"tp{n}_spect.nii.gz", g.with_array(arr.astype(np.float32)), side)
        scans.append(f"tp{n}_spect.nii.gz\t{acq.isoformat()}")
        truth.append({"time_h": t, "brain": 100 * f1, "liver": 100 * f2})
    (tmp_path / "scans.tsv").write_text("\n".join(scans) + "\n")
    write_label_map(lm, tmp_path / "labels.nii.gz")
    return truth




@pytest.fixture
def nifti_study():
    """Factory writing a two-region NIfTI study with exact %ID into a folder; returns the truth."""
    return make_nifti_study


@pytest.fixture
def realdata():
    """Path of ../shared/realdata; skips the test when it is absent."""
    if not REALDATA.is_dir():
        pytest.skip("../shared/realdata is absent")
    return REALDATA
