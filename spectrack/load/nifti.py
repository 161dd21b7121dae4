"""NIfTI volumes with PET-BIDS-style JSON sidecars.

A NIfTI image becomes a :class:`~spectrack.load.model.Series`; its sidecar
``<stem>.json`` (same stem) supplies the metadata, with PET-BIDS key names
(``REFERENCE.md`` section 4): ``TracerName``, ``TracerRadionuclide``,
``InjectedRadioactivity`` + ``InjectedRadioactivityUnits``, ``TimeZero``,
``InjectionStart``, ``ScanStart``, ``FrameTimesStart``, ``FrameDuration``,
``ImageDecayCorrected``, ``ImageDecayCorrectionTime``, ``Units``,
``Manufacturer``, ``AttenuationCorrection``. ``Modality`` (NM, PT, CT) and
``AcquisitionDateTime`` are read too (dcm2niix writes them). Scan dates come
from ``scans.tsv`` (``filename``, ``acq_time``) in the folder or a parent.

A NIfTI file with a ``<stem>.tsv`` beside it (or named ``labels*``/``*_dseg``)
is a label map, not an image, and is not loaded here.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..geometry import from_nifti_affine
from ..physics import nuclide
from ..regions.labels import nifti_stem
from .model import Series, Sourced

__all__ = ["read_nifti_series", "is_label_file", "find_nifti_files", "read_scans_tsv", "parse_datetime",
           "parse_time_of_day", "activity_to_mbq"]

_UNITS = {
    "bq/ml": ("Bq/mL", 1.0), "bqml": ("Bq/mL", 1.0), "bq/cc": ("Bq/mL", 1.0),
    "kbq/ml": ("Bq/mL", 1e3), "kbq/cc": ("Bq/mL", 1e3), "mbq/ml": ("Bq/mL", 1e6),
    "counts": ("counts", 1.0), "cnts": ("counts", 1.0), "count": ("counts", 1.0),
    "cps": ("cps", 1.0), "counts/s": ("cps", 1.0), "hu": ("HU", 1.0),
}
_ACTIVITY_TO_MBQ = {"bq": 1e-6, "kbq": 1e-3, "mbq": 1.0, "gbq": 1e3, "mci": 37.0, "uci": 0.037, "ci": 37000.0}


def activity_to_mbq(value: float, units: str) -> float:
    """Convert an activity in ``units`` (Bq, kBq, MBq, GBq, mCi, uCi) to MBq."""
    key = str(units).strip().lower().replace("µ", "u")
    if key not in _ACTIVITY_TO_MBQ:
        raise InputError(f"unknown activity unit {units!r}: use one of Bq, kBq, MBq, GBq, mCi, uCi")
    return float(value) * _ACTIVITY_TO_MBQ[key]


def parse_datetime(text: str, what: str = "date-time") -> dt.datetime:
    """Parse an ISO 8601 date-time (``2026-03-14T21:40:00``, space allowed), timezone-naive.

    A timezone offset, if given, is dropped after converting to that local
    time (times in one study are compared, not placed on a world clock).
    """
    try:
        t = dt.datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"cannot read {what} {text!r}: write it as ISO 8601, e.g. 2026-03-14T21:40:00") from None
    return t.replace(tzinfo=None)


def parse_time_of_day(text: str, what: str = "time") -> dt.time:
    """Parse ``hh:mm[:ss[.ffffff]]`` or DICOM ``hhmmss[.ffffff]``."""
    s = str(text).strip()
    try:
        if ":" in s:
            return dt.time.fromisoformat(s)
        hh, mm = int(s[0:2]), int(s[2:4]) if len(s) >= 4 else 0
        sec = float(s[4:]) if len(s) > 4 else 0.0
        return dt.time(hh, mm, int(sec), int(round((sec - int(sec)) * 1e6)) % 1000000)
    except (ValueError, IndexError):
        raise InputError(f"cannot read {what} {text!r}: write it as hh:mm:ss") from None


def is_label_file(path: Path) -> bool:
    """True for NIfTI files that are label maps (names sidecar TSV or label-like name)."""
    path = Path(path)
    stem = nifti_stem(path)
    low = stem.lower()
    if path.with_name(stem + ".tsv").exists():
        return True
    return low.startswith("labels") or low.endswith(("_labels", "_dseg", "_seg", "_mask", "_truth_labels"))


def find_nifti_files(folder: Path) -> list[Path]:
    """All NIfTI files under ``folder`` (any depth), sorted."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith((".nii", ".nii.gz"))
                  and not p.name.startswith("."))


def read_scans_tsv(folder: Path) -> dict[str, dt.datetime]:
    """``{file name: acquisition datetime}`` from ``scans.tsv`` files under ``folder``."""
    out: dict[str, dt.datetime] = {}
    for tsv in Path(folder).rglob("*scans.tsv"):
        rows = list(csv.DictReader(tsv.read_text(encoding="utf-8-sig").splitlines(), delimiter="\t"))
        for r in rows:
            if r.get("filename") and r.get("acq_time"):
                out[Path(r["filename"]).name] = parse_datetime(r["acq_time"], f"acq_time in {tsv}")
    return out


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
        ``meta`` holds what the sidecar says, each value with the key it came from.
    """
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.load(str(path))
        arr = np.asanyarray(img.dataobj, dtype=np.float32) if img.get_data_dtype().kind != "f" else np.asarray(img.dataobj, dtype=np.float32)
    except Exception as e:  # nibabel raises many exception types for corrupt files
        raise InputError(f"cannot read {path} as NIfTI ({type(e).__name__}: {e})") from None
    if arr.ndim == 4 and arr.shape[3] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise InputError(f"{path} has shape {arr.shape}: one 3-D volume per file is needed "
                         "(split 4-D series into one file per time point)")
    try:
        image = from_nifti_affine(arr, img.affine)
    except ValueError as e:
        raise InputError(f"{path}: {e}") from None

    stem = nifti_stem(path)
    side_path = path.with_name(stem + ".json")
    side: dict = {}
    if side_path.exists():
        try:
            side = json.loads(side_path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as e:
            raise InputError(f"sidecar {side_path} is not valid JSON (line {e.lineno}): fix the file") from None
    src = f"{side_path.name}"
    mod = modality or _modality(path, side) or "NM"
    s = Series(image=image, modality=mod, files=[path] + ([side_path] if side else []))
    s.set("modality", mod, f"{src}: Modality" if "Modality" in side else "file name / default")
    s.set("series_uid", str(path.resolve()), "file path")
    s.set("series_description", stem, "file name")
    for key, mkey in (("Manufacturer", "manufacturer"), ("TracerName", "tracer"),
                      ("FrameOfReferenceUID", "frame_of_reference_uid"), ("PatientID", "patient_id")):
        if side.get(key):
            s.set(mkey, side[key], f"{src}: {key}")

    if mod == "CT":
        s.image.units = "HU"
        s.set("units", "HU", "modality CT")
        _set_times(s, side, src, path, scans)
        return s

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
    if side.get("TracerRadionuclide"):
        try:
            nuc = nuclide(str(side["TracerRadionuclide"]))
        except KeyError:
            nuc = None
        if nuc is not None:
            s.set("radionuclide", nuc.name, f"{src}: TracerRadionuclide")
            s.set("half_life_h", nuc.half_life_h, f"table ({nuc.source}) for {nuc.name}")
    if side.get("RadionuclideHalfLife"):
        s.set("half_life_h", float(side["RadionuclideHalfLife"]) / 3600.0, f"{src}: RadionuclideHalfLife (s)")

    # injected activity
    if side.get("InjectedRadioactivity") not in (None, "", 0):
        u = side.get("InjectedRadioactivityUnits", "MBq")
        s.set("injected_activity_mbq", activity_to_mbq(float(side["InjectedRadioactivity"]), u),
              f"{src}: InjectedRadioactivity ({u})")

    # duration
    dur = side.get("FrameDuration")
    if isinstance(dur, list):
        dur = sum(float(v) for v in dur) if dur else None
    if dur is not None:
        s.set("duration_s", float(dur), f"{src}: FrameDuration")
    corr = []
    if side.get("AttenuationCorrection"):
        corr.append("ATTN")
    if side.get("ScatterCorrectionMethod") or side.get("ScatterCorrection"):
        corr.append("SCAT")
    if corr:
        s.set("corrections", corr, f"{src}: AttenuationCorrection/ScatterCorrection")
    _set_times(s, side, src, path, scans)
    return s


def _set_times(s: Series, side: dict, src: str, path: Path, scans: dict | None) -> None:
    """Acquisition start, injection time and decay-correction state from a sidecar."""
    acq = None
    if scans and path.name in scans:
        acq = Sourced(scans[path.name], f"scans.tsv: acq_time of {path.name}")
    elif side.get("AcquisitionDateTime"):
        acq = Sourced(parse_datetime(side["AcquisitionDateTime"], f"AcquisitionDateTime in {src}"),
                      f"{src}: AcquisitionDateTime")
    scan_start = side.get("ScanStart")
    frame_start = side.get("FrameTimesStart")
    if isinstance(frame_start, list) and frame_start:
        frame_start = frame_start[0]
    # PET-BIDS: ScanStart and FrameTimesStart are both seconds after TimeZero; the
    # acquisition start is the first frame's start
    if frame_start is not None and scan_start is not None:
        offset_s = float(frame_start) - float(scan_start)
    else:
        offset_s = 0.0
    tz = side.get("TimeZero")
    t0 = None
    if tz is not None:
        tod = parse_time_of_day(tz, f"TimeZero in {src}")
        if acq is not None and scan_start is not None:
            start = acq.value - dt.timedelta(seconds=offset_s)
            t0 = Sourced(start - dt.timedelta(seconds=float(scan_start)),
                         f"{src}: TimeZero, dated from the acquisition time and ScanStart")
            if abs((t0.value.time().hour * 3600 + t0.value.time().minute * 60 + t0.value.time().second)
                   - (tod.hour * 3600 + tod.minute * 60 + tod.second)) > 1.5:
                t0 = None  # inconsistent: fall back on the time of day
        if t0 is None:
            s.set("injection_time_of_day", tod, f"{src}: TimeZero + InjectionStart (date from the first scan)")
        if acq is None and scan_start is not None and t0 is None:
            # relative timing only: put TimeZero on a nominal date
            base = dt.datetime.combine(dt.date(2000, 1, 1), tod)
            t0 = Sourced(base, f"{src}: TimeZero (no date given: only times relative to it are used)")
            acq = Sourced(base + dt.timedelta(seconds=float(scan_start) + offset_s),
                          f"{src}: TimeZero + ScanStart + FrameTimesStart")
    if acq is not None:
        s.meta["acquisition_start"] = acq
    if t0 is not None:
        inj = float(side.get("InjectionStart", 0.0) or 0.0)
        s.meta["injection_time"] = Sourced(t0.value + dt.timedelta(seconds=inj),
                                           t0.source + " + InjectionStart")
        s.meta.pop("injection_time_of_day", None)
    elif tz is not None and "injection_time_of_day" in s.meta:
        inj = float(side.get("InjectionStart", 0.0) or 0.0)
        tod = s.meta["injection_time_of_day"].value
        full = dt.datetime.combine(dt.date(2000, 1, 1), tod) + dt.timedelta(seconds=inj)
        s.meta["injection_time_of_day"] = Sourced(full.time(), s.meta["injection_time_of_day"].source)

    # decay-correction state
    if "ImageDecayCorrected" in side:
        if not side["ImageDecayCorrected"]:
            s.set("decay_correction", "NONE", f"{src}: ImageDecayCorrected = false")
        else:
            ref = side.get("ImageDecayCorrectionTime")
            inj = float(side.get("InjectionStart", 0.0) or 0.0)
            if ref is None:
                s.set("decay_correction", "START", f"{src}: ImageDecayCorrected = true (no time: scan start assumed)")
            elif scan_start is not None and math.isclose(float(ref), float(scan_start) + offset_s, abs_tol=0.5):
                s.set("decay_correction", "START", f"{src}: ImageDecayCorrectionTime = ScanStart")
            elif math.isclose(float(ref), inj, abs_tol=0.5):
                s.set("decay_correction", "ADMIN", f"{src}: ImageDecayCorrectionTime = InjectionStart")
            else:
                s.set("decay_correction", "TIME", f"{src}: ImageDecayCorrectionTime = {ref} s")
                s.set("decay_correction_time_s", float(ref), f"{src}: ImageDecayCorrectionTime (s after TimeZero)")
    if side.get("DecayCorrectionFactor") is not None:
        f = side["DecayCorrectionFactor"]
        s.set("decay_factor", float(f[0] if isinstance(f, list) else f), f"{src}: DecayCorrectionFactor")
