"""One NIfTI volume and its JSON sidecar into a :class:`~spectrack.load.model.Series`: modality, identity,
units, radionuclide, injected activity, duration and corrections (the times are in :mod:`.times`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...errors import InputError
from ...geometry import from_nifti_affine
from ...io_utils import nifti_stem
from ...physics import nuclide
from ..model import Series
from .times import _set_times
from .values import _UNITS, _by_dcm2niix, _number, _text_value, activity_to_mbq
from .voxels import _read_voxels

__all__ = ["read_nifti_series"]


def _modality(path: Path, side: dict) -> str | None:
    m = str(side.get("Modality", "")).upper()
    if m in ("NM", "PT", "CT"):
        return m
    if m in ("PET",):
        return "PT"
    if m in ("SPECT",):
        return "NM"
    tokens = nifti_stem(path).lower().replace("-", "_").split("_")
    if "ct" in tokens:
        return "CT"
    if any(t in tokens for t in ("spect", "nm")):
        return "NM"
    if any(t in tokens for t in ("pet", "pt")):
        return "PT"
    if any(k in side for k in ("TracerRadionuclide", "InjectedRadioactivity", "Units")):
        return "NM"
    return None


def read_nifti_series(path, *, scans: dict | None = None, modality: str | None = None) -> Series:
    """Read one NIfTI volume and its JSON sidecar.

    Parameters
    ----------
    path : path-like
        ``.nii`` or ``.nii.gz``. A 4-D image with one volume is accepted.
    scans : dict, optional
        ``{file name: acquisition datetime}`` from ``scans.tsv``.
    modality : str, optional
        Force ``"NM"``, ``"PT"`` or ``"CT"``.

    Returns
    -------
    Series
        ``meta`` holds what the sidecar says, each value with the key it came from;
        ``meta['load_warnings']`` what the reader noted (non-finite voxels set
        to 0, nibabel's remarks on the header).

    Raises
    ------
    InputError
        The file is not a readable NIfTI volume (truncated, corrupt header,
        absurd dimensions, non-finite or singular affine), or the sidecar is
        not a JSON object or holds malformed values.
    """
    path = Path(path)
    warn: list[str] = []
    arr, affine = _read_voxels(path, warn)
    try:
        image = from_nifti_affine(arr, affine)
    except (ValueError, np.linalg.LinAlgError) as e:
        raise InputError(f"{path}: {e}") from None

    stem = nifti_stem(path)
    side_path = path.with_name(stem + ".json")
    side: dict = {}
    if side_path.exists():
        try:
            side = json.loads(side_path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as e:
            raise InputError(f"sidecar {side_path} is not valid JSON (line {e.lineno}): fix the file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read sidecar {side_path} ({type(e).__name__}): it must be UTF-8 JSON") from None
        if not isinstance(side, dict):
            raise InputError(f"sidecar {side_path} holds a JSON {type(side).__name__}, not an object "
                             "({\"Key\": value, ...}): fix the file")
    src = f"{side_path.name}"
    mod = modality or _modality(path, side) or "NM"
    s = Series(image=image, modality=mod, files=[path] + ([side_path] if side else []))
    s.set("modality", mod, f"{src}: Modality" if "Modality" in side else "file name / default")
    s.set("series_uid", str(path.resolve()), "file path")
    s.set("series_description", stem, "file name")
    for key, mkey in (("Manufacturer", "manufacturer"), ("TracerName", "tracer"),
                      ("FrameOfReferenceUID", "frame_of_reference_uid"), ("PatientID", "patient_id")):
        if _text_value(side.get(key)):
            s.set(mkey, _text_value(side[key]), f"{src}: {key}")

    if mod == "CT":
        s.image.units = "HU"
        s.set("units", "HU", "modality CT")
        _set_times(s, side, src, path, scans, warn)
        return _with_warnings(s, warn)

    # units
    units = side.get("Units")
    if units:
        key = str(units).strip().lower().replace(" ", "")
        if key not in _UNITS:
            raise InputError(f"{side_path}: Units {units!r} not understood; use Bq/mL, kBq/mL, counts or cps")
        u, scale = _UNITS[key]
        if scale != 1.0:
            s.image = s.image.with_array(s.image.array * np.float32(scale))
        s.set("units", u, f"{src}: Units = {units!r}")
        s.set("value_mapping", "sidecar Units", f"{src}: Units")
    else:
        s.set("units", "counts", "default: no Units in a sidecar, values taken as counts")
        s.set("value_mapping", "none", "no sidecar Units")
    s.image.units = s.get("units")

    # radionuclide
    tracer_nuc = _text_value(side.get("TracerRadionuclide"))
    if tracer_nuc:
        try:
            nuc = nuclide(tracer_nuc)
        except (KeyError, ValueError, TypeError):
            nuc = None
        if nuc is not None:
            s.set("radionuclide", nuc.name, f"{src}: TracerRadionuclide")
            s.set("half_life_h", nuc.half_life_h, f"table ({nuc.source}) for {nuc.name}")
    hl = _number(side, "RadionuclideHalfLife", src, positive=True)
    if hl:
        s.set("half_life_h", hl / 3600.0, f"{src}: RadionuclideHalfLife (s)")

    # injected activity
    inj = _number(side, "InjectedRadioactivity", src, minimum=0.0)
    if inj:
        u = side.get("InjectedRadioactivityUnits", "MBq")
        mbq = activity_to_mbq(inj, u)
        how = f"{src}: InjectedRadioactivity ({u})"
        if mod == "NM" and _by_dcm2niix(side) and mbq < 0.01 and 0.01 <= mbq * 1e6 <= 1e5:
            # dcm2niix divides RadionuclideTotalDose by 1e6 as for PET (Bq), but the NM IOD holds MBq
            warn.append(f"{src}: InjectedRadioactivity {inj:g} {u} is too small for an injection: dcm2niix "
                        "reads the NM RadionuclideTotalDose (MBq, PS3.3 C.8.4.10.1.7) as Bq; read as "
                        f"{mbq * 1e6:g} MBq")
            mbq *= 1e6
            how += " x 1e6 (dcm2niix wrote the NM MBq value divided by 1e6)"
        s.set("injected_activity_mbq", mbq, how)

    # duration
    dur = side.get("FrameDuration")
    if isinstance(dur, list):
        parts = [_number({"FrameDuration": v}, "FrameDuration", src, minimum=0.0, seconds=True) for v in dur]
        dur = sum(v for v in parts if v is not None) if any(v is not None for v in parts) else None
    else:
        dur = _number(side, "FrameDuration", src, minimum=0.0, seconds=True)
    if dur is not None:
        s.set("duration_s", float(dur), f"{src}: FrameDuration")
    corr = []
    if side.get("AttenuationCorrection"):
        corr.append("ATTN")
    if side.get("ScatterCorrectionMethod") or side.get("ScatterCorrection"):
        corr.append("SCAT")
    if corr:
        s.set("corrections", corr, f"{src}: AttenuationCorrection/ScatterCorrection")
    _set_times(s, side, src, path, scans, warn)
    return _with_warnings(s, warn)


def _with_warnings(s: Series, warn: list[str]) -> Series:
    if warn:
        s.set("load_warnings", warn, "spectrack.load.nifti")
    return s
