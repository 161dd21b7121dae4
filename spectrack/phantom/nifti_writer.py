"""NIfTI export of phantom time points with PET-BIDS-style JSON sidecars."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np

from ..geometry import Image, to_nifti_affine
from ..io_utils import atomic_path, atomic_write_text
from .dicom_writer import MANUFACTURER, TRACER

__all__ = ["write_image", "write_nifti_timepoint", "write_scans_tsv", "spect_sidecar"]


def write_image(path, image: Image, dtype) -> Path:
    """Write ``image`` as NIfTI (RAS affine in qform and sform, code 1 = scanner)."""
    import nibabel as nib

    arr, aff = to_nifti_affine(image)
    img = nib.Nifti1Image(arr.astype(dtype), aff)
    img.set_qform(aff, code=1)
    img.set_sform(aff, code=1)
    img.header.set_xyzt_units("mm", "sec")
    path = Path(path)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path


def spect_sidecar(tp, b) -> dict:
    """PET-BIDS-style sidecar of a phantom SPECT (``AcquisitionDateTime`` is an extra key)."""
    scan_start = (tp.acquisition_start - b.injection).total_seconds()
    return {
        "Modality": "NM",
        "Manufacturer": MANUFACTURER,
        "ManufacturersModelName": "digital phantom",
        "PatientID": b.subject_id,
        "TracerName": TRACER,
        "TracerRadionuclide": "Tc-99m",
        "InjectedRadioactivity": b.injected_mbq,
        "InjectedRadioactivityUnits": "MBq",
        "TimeZero": b.injection.strftime("%H:%M:%S"),
        "InjectionStart": 0,
        "ScanStart": scan_start,
        "FrameTimesStart": [scan_start],
        "FrameDuration": [tp.duration_s],
        "ImageDecayCorrected": False,
        "Units": tp.truth["units"],
        "AcquisitionDateTime": tp.acquisition_start.isoformat(),
        "AttenuationCorrection": "CT-based (ideal: digital phantom)",
        "ScatterCorrectionMethod": "ideal (digital phantom)",
        "ReconMethodName": "none (analytic digital phantom)",
    }


def write_nifti_timepoint(folder, tp, b) -> dict:
    """Write ``tp{N}_spect.nii.gz`` / ``.json`` and ``tp{N}_ct.nii.gz`` / ``.json``; return the names."""
    folder = Path(folder)
    n = tp.index
    write_image(folder / f"tp{n}_spect.nii.gz", tp.spect, np.float32)
    atomic_write_text(folder / f"tp{n}_spect.json", json.dumps(spect_sidecar(tp, b), indent=1) + "\n")
    write_image(folder / f"tp{n}_ct.nii.gz", tp.ct, np.int16)
    ct_time = tp.acquisition_start + dt.timedelta(seconds=tp.duration_s + 60)
    ct_side = {"Modality": "CT", "Manufacturer": MANUFACTURER, "PatientID": b.subject_id, "Units": "HU",
               "AcquisitionDateTime": ct_time.isoformat()}
    atomic_write_text(folder / f"tp{n}_ct.json", json.dumps(ct_side, indent=1) + "\n")
    return {"nifti_spect": f"nifti/tp{n}_spect.nii.gz", "nifti_spect_sidecar": f"nifti/tp{n}_spect.json",
            "nifti_ct": f"nifti/tp{n}_ct.nii.gz"}


def write_scans_tsv(path, rows) -> Path:
    """``scans.tsv`` with ``filename`` and ``acq_time`` (ISO datetime) columns."""
    text = "filename\tacq_time\n" + "".join(f"{name}\t{t.isoformat()}\n" for name, t in rows)
    return atomic_write_text(path, text)
