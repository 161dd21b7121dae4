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

import contextlib
import csv
import datetime as dt
import json
import math
import zlib
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..geometry import from_nifti_affine
from ..physics import nuclide
from ..regions.labels import nifti_stem
from .model import Series, Sourced

__all__ = ["read_nifti_series", "is_label_file", "find_nifti_files", "read_scans_tsv", "parse_datetime",
           "parse_datetime_offset", "parse_time_of_day", "activity_to_mbq"]

#: Refuse volumes whose float32 values would exceed this (a corrupt header, not an image).
MAX_BYTES = 8 * 1024**3
#: Largest time offset accepted in a sidecar (seconds): ten years.
_MAX_SECONDS = 10 * 365.25 * 86400

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


def _number(side: dict, key: str, src: str, *, minimum: float | None = None, positive: bool = False,
            seconds: bool = False) -> float | None:
    """A finite number from a sidecar key (first element of a list); ``None`` when absent or null.

    Raises
    ------
    InputError
        The value is not a number, not finite, or out of range.
    """
    v = side.get(key)
    if isinstance(v, list):
        if not v:
            return None
        v = v[0]
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    try:
        if isinstance(v, bool) or isinstance(v, (dict, list)):
            raise TypeError
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{src}: {key} = {v!r} is not a number; fix the sidecar") from None
    if not math.isfinite(f) or (positive and f <= 0) or (minimum is not None and f < minimum) or \
            (seconds and abs(f) > _MAX_SECONDS):
        want = "a positive" if positive else "a finite" if minimum is None else f"a number >= {minimum:g}"
        raise InputError(f"{src}: {key} = {v!r} is not {want} number" + (" of seconds" if seconds else "")
                         + "; fix the sidecar")
    return f


def parse_datetime(text: str, what: str = "date-time") -> dt.datetime:
    """Parse an ISO 8601 date-time (``2026-03-14T21:40:00``, space allowed), timezone-naive.

    A timezone offset, if given, is dropped: the result is the local time
    written (times in one study are compared, not placed on a world clock;
    :func:`parse_datetime_offset` also returns the offset).
    """
    return parse_datetime_offset(text, what)[0]


def parse_datetime_offset(text: str, what: str = "date-time") -> tuple[dt.datetime, str | None]:
    """Parse an ISO 8601 date-time: (naive local time, UTC offset as ``+HHMM`` or ``None``).

    Examples
    --------
    >>> parse_datetime_offset("2026-03-15T01:30:00+02:00")
    (datetime.datetime(2026, 3, 15, 1, 30), '+0200')
    """
    try:
        t = dt.datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except (ValueError, TypeError, OverflowError):
        raise InputError(f"cannot read {what} {text!r}: write it as ISO 8601, e.g. 2026-03-14T21:40:00") from None
    off = None
    if t.tzinfo is not None:
        delta = t.utcoffset()
        minutes = int(delta.total_seconds() // 60)
        sign = "-" if minutes < 0 else "+"
        off = f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    return t.replace(tzinfo=None), off


def parse_time_of_day(text: str, what: str = "time") -> dt.time:
    """Parse ``hh:mm[:ss[.ffffff]]`` or DICOM ``hhmmss[.ffffff]``."""
    s = str(text).strip()
    try:
        if ":" in s:
            return dt.time.fromisoformat(s)
        hh, mm = int(s[0:2]), int(s[2:4]) if len(s) >= 4 else 0
        sec = float(s[4:]) if len(s) > 4 else 0.0
        if not 0.0 <= sec < 61.0:
            raise ValueError(sec)
        sec = min(sec, 59.999999)  # a leap second becomes the end of minute 59
        return dt.time(hh, mm, int(sec), int(round((sec - int(sec)) * 1e6)) % 1000000)
    except (ValueError, IndexError, OverflowError):
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
        try:
            rows = list(csv.DictReader(tsv.read_text(encoding="utf-8-sig").splitlines(), delimiter="\t"))
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise InputError(f"cannot read {tsv} ({type(e).__name__}): it must be UTF-8 text with "
                             "tab-separated 'filename' and 'acq_time' columns") from None
        for r in rows:
            name, when = r.get("filename"), r.get("acq_time")
            if isinstance(name, str) and isinstance(when, str) and name.strip() and when.strip():
                out[Path(name.strip()).name] = parse_datetime(when, f"acq_time in {tsv}")
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


def _gz_length(path: Path, limit: int) -> int:
    """Uncompressed length of a gzip file, counted up to ``limit`` bytes in 16 MiB chunks."""
    import gzip

    n = 0
    with gzip.open(path, "rb") as f:
        while n < limit:
            chunk = f.read(min(1 << 24, limit - n))
            if not chunk:
                break
            n += len(chunk)
    return n


def _check_header(img, path: Path) -> None:
    """Refuse, before any voxel is read, a header whose voxels cannot be in the file or in memory."""
    shape = tuple(int(n) for n in img.shape)
    if len(shape) < 3 or any(n <= 0 for n in shape):
        raise InputError(f"{path}: NIfTI header declares shape {shape}: a 3-D volume is needed")
    if len(shape) > 3 and int(np.prod(shape[3:])) != 1:
        raise InputError(f"{path} has shape {shape}: one 3-D volume per file is needed "
                         "(split 4-D series into one file per time point)")
    n_vox = int(np.prod(shape[:3]))
    if n_vox * 4 > MAX_BYTES:
        raise InputError(f"{path}: NIfTI header declares {'x'.join(map(str, shape[:3]))} voxels "
                         f"({n_vox * 4 / 1024**3:.0f} GiB as float32), above {MAX_BYTES // 1024**3} GiB: "
                         "refusing to allocate it (corrupt header?)")
    try:
        itemsize = np.dtype(img.get_data_dtype()).itemsize
        offset = int(getattr(img.dataobj, "offset", 0) or 0)
    except (TypeError, ValueError, AttributeError):
        return
    end = offset + n_vox * itemsize
    try:
        size = path.stat().st_size
        if path.name.endswith(".gz"):
            if end < 2**32 and size >= 18:
                with open(path, "rb") as f:
                    f.seek(-4, 2)
                    size = int.from_bytes(f.read(4), "little")  # gzip ISIZE: uncompressed length
            else:
                size = _gz_length(path, end)  # ISIZE is the length modulo 2**32: count
    except (OSError, EOFError, zlib.error):
        return  # nibabel reports the corrupt stream
    if size < end:
        raise InputError(f"{path}: truncated: the header declares {end} bytes of header and voxels "
                         f"({'x'.join(map(str, shape[:3]))} {img.get_data_dtype()}) but the file holds {size}")


@contextlib.contextmanager
def _nibabel_log(warn: list[str], name: str):
    """Collect what nibabel logs about a header (e.g. fixed-up pixdim) as load warnings, not stderr lines."""
    import logging

    class _ToList(logging.Handler):
        def emit(self, record):
            warn.append(f"{name}: nibabel: {' '.join(record.getMessage().split())[:200]}")

    from nibabel.imageglobals import LoggingOutputSuppressor

    logger = logging.getLogger("nibabel")
    handler = _ToList(logging.WARNING)
    logger.addHandler(handler)
    try:
        with LoggingOutputSuppressor():  # nibabel's own stderr handler: off while we collect
            yield
    finally:
        logger.removeHandler(handler)


def _check_pixdim(img, path: Path, warn: list[str]) -> None:
    """Without an sform the voxel size is pixdim[1:4]: refuse zero, negative or non-finite values.

    (nibabel would silently take 1 mm.) Without qform and sform the position is
    unknown: warn.
    """
    import nibabel as nib

    hdr = img.header
    try:  # the header as written: nibabel's loaded header has zero pixdim already replaced by 1
        with nib.openers.ImageOpener(str(path)) as f:
            hdr = type(img.header).from_fileobj(f, check=False)
    except Exception:  # noqa: BLE001 - then the loaded header is all there is
        pass
    try:
        sform, qform = int(hdr["sform_code"]), int(hdr["qform_code"])
        pixdim = np.asarray(hdr["pixdim"][1:4], dtype=float)
    except (KeyError, TypeError, ValueError):
        return  # not a NIfTI-1/2 header (e.g. Analyze): nibabel's affine is all there is
    if sform > 0:
        return
    if not np.all(np.isfinite(pixdim)) or np.any(pixdim <= 0):
        raise InputError(f"{path}: voxel size pixdim[1:4] = {pixdim.tolist()} is not positive and there is no "
                         "sform: the voxel size is unknown; fix the header")
    if qform == 0:
        warn.append(f"{path.name}: no qform or sform in the NIfTI header: voxel size from pixdim, position "
                    "and orientation unknown (alignment with other images from the header is not possible)")


def _read_voxels(path: Path, warn: list[str]):
    """(float32 array [i, j, k], RAS affine) of a NIfTI file; non-finite voxels become 0 with a warning."""
    import warnings

    import nibabel as nib

    with warnings.catch_warnings(record=True) as caught, _nibabel_log(warn, path.name):
        warnings.simplefilter("always")
        try:
            img = nib.load(str(path))
            _check_header(img, path)
            _check_pixdim(img, path, warn)
            with np.errstate(all="ignore"):
                arr = np.asarray(img.dataobj, dtype=np.float32)
            affine = np.asarray(img.affine, dtype=float)
        except InputError:
            raise
        except MemoryError:
            raise InputError(f"{path}: not enough memory for the {img.shape} volume it declares") from None
        except Exception as e:  # nibabel raises many exception types for corrupt files
            raise InputError(f"cannot read {path} as NIfTI ({type(e).__name__}: "
                             f"{' '.join(str(e).split())[:200]})") from None
    for w in caught:
        warn.append(f"{path.name}: {' '.join(str(w.message).split())[:200]}")
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise InputError(f"{path} has shape {arr.shape}: one 3-D volume per file is needed "
                         "(split 4-D series into one file per time point)")
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InputError(f"{path}: the NIfTI affine (qform/sform) has non-finite values: fix the header")
    m = affine[:3, :3]
    scale = np.linalg.norm(m, axis=0)
    if np.all(scale > 0) and abs(np.linalg.det(m / scale)) < 1e-3:
        raise InputError(f"{path}: the NIfTI affine (qform/sform) is singular (two axes point the same way): "
                         "fix the header")
    bad = ~np.isfinite(arr)
    n_bad = int(np.count_nonzero(bad))
    if n_bad:
        if not arr.flags.writeable:
            arr = arr.copy()
        arr[bad] = 0.0
        warn.append(f"{path.name}: {n_bad} voxels are not finite (NaN or infinite): set to 0")
    return arr, affine


def _text_value(v) -> str | None:
    if v is None or isinstance(v, (dict, list)):
        return None
    t = str(v).strip()
    return t or None


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
    if warn:
        s.set("load_warnings", warn, "spectrack.load.nifti")
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
        s.set("injected_activity_mbq", activity_to_mbq(inj, u), f"{src}: InjectedRadioactivity ({u})")

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
    _set_times(s, side, src, path, scans)
    return s


def _flag(side: dict, key: str, src: str) -> bool:
    v = side.get(key)
    if isinstance(v, bool) or v is None:
        return bool(v)
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
        return v.strip().lower() in ("true", "yes", "1")
    raise InputError(f"{src}: {key} = {v!r} is not true or false; fix the sidecar")


def _set_times(s: Series, side: dict, src: str, path: Path, scans: dict | None) -> None:
    """Acquisition start, injection time and decay-correction state from a sidecar."""
    try:
        _set_times_checked(s, side, src, path, scans)
    except OverflowError:
        raise InputError(f"{src}: the times of {path.name} (AcquisitionDateTime, TimeZero, ScanStart, "
                         "InjectionStart) fall outside the calendar: fix the sidecar") from None


def _set_times_checked(s: Series, side: dict, src: str, path: Path, scans: dict | None) -> None:
    acq = None
    if scans and path.name in scans:
        acq = Sourced(scans[path.name], f"scans.tsv: acq_time of {path.name}")
    elif side.get("AcquisitionDateTime"):
        when, off = parse_datetime_offset(side["AcquisitionDateTime"], f"AcquisitionDateTime in {src}")
        acq = Sourced(when, f"{src}: AcquisitionDateTime")
        if off is not None:
            s.set("timezone_offset", off, f"{src}: AcquisitionDateTime offset")
    scan_start = _number(side, "ScanStart", src, seconds=True)
    frame_start = _number(side, "FrameTimesStart", src, seconds=True)
    inj_start = _number(side, "InjectionStart", src, seconds=True) or 0.0
    # PET-BIDS: ScanStart and FrameTimesStart are both seconds after TimeZero; the
    # acquisition start is the first frame's start
    if frame_start is not None and scan_start is not None:
        offset_s = frame_start - scan_start
    else:
        offset_s = 0.0
    tz = side.get("TimeZero")
    if tz is not None and _text_value(tz) is None:
        raise InputError(f"{src}: TimeZero = {tz!r} is not a time of day (hh:mm:ss); fix the sidecar")
    t0 = None
    if tz is not None:
        tod = parse_time_of_day(tz, f"TimeZero in {src}")
        if acq is not None and scan_start is not None:
            start = acq.value - dt.timedelta(seconds=offset_s)
            t0 = Sourced(start - dt.timedelta(seconds=scan_start),
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
            acq = Sourced(base + dt.timedelta(seconds=scan_start + offset_s),
                          f"{src}: TimeZero + ScanStart + FrameTimesStart")
    if acq is not None:
        s.meta["acquisition_start"] = acq
    if t0 is not None:
        s.meta["injection_time"] = Sourced(t0.value + dt.timedelta(seconds=inj_start),
                                           t0.source + " + InjectionStart")
        s.meta.pop("injection_time_of_day", None)
    elif tz is not None and "injection_time_of_day" in s.meta:
        tod = s.meta["injection_time_of_day"].value
        full = dt.datetime.combine(dt.date(2000, 1, 1), tod) + dt.timedelta(seconds=inj_start)
        s.meta["injection_time_of_day"] = Sourced(full.time(), s.meta["injection_time_of_day"].source)

    # decay-correction state
    if "ImageDecayCorrected" in side:
        if not _flag(side, "ImageDecayCorrected", src):
            s.set("decay_correction", "NONE", f"{src}: ImageDecayCorrected = false")
        else:
            ref = _number(side, "ImageDecayCorrectionTime", src, seconds=True)
            if ref is None:
                s.set("decay_correction", "START", f"{src}: ImageDecayCorrected = true (no time: scan start assumed)")
            elif scan_start is not None and math.isclose(ref, scan_start + offset_s, abs_tol=0.5):
                s.set("decay_correction", "START", f"{src}: ImageDecayCorrectionTime = ScanStart")
            elif math.isclose(ref, inj_start, abs_tol=0.5):
                s.set("decay_correction", "ADMIN", f"{src}: ImageDecayCorrectionTime = InjectionStart")
            else:
                s.set("decay_correction", "TIME", f"{src}: ImageDecayCorrectionTime = {ref:g} s")
                s.set("decay_correction_time_s", ref, f"{src}: ImageDecayCorrectionTime (s after TimeZero)")
    factor = _number(side, "DecayCorrectionFactor", src, positive=True)
    if factor is not None:
        s.set("decay_factor", factor, f"{src}: DecayCorrectionFactor")
