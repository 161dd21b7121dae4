"""NIfTI volumes with PET-BIDS-style JSON sidecars.

A NIfTI image becomes a :class:`~spectrack.load.model.Series`; its sidecar
``<stem>.json`` (same stem) supplies the metadata, with PET-BIDS key names
(``REFERENCE.md`` section 4): ``TracerName``, ``TracerRadionuclide``,
``InjectedRadioactivity`` + ``InjectedRadioactivityUnits``, ``TimeZero``,
``InjectionStart``, ``ScanStart``, ``FrameTimesStart``, ``FrameDuration``,
``ImageDecayCorrected``, ``ImageDecayCorrectionTime``, ``Units``,
``Manufacturer``, ``AttenuationCorrection``. ``Modality`` (NM, PT, CT),
``AcquisitionDateTime``, ``AcquisitionTime``, ``SeriesTime``, ``DecayCorrection``
and ``DecayCorrectionFactor``/``DecayFactor`` are read too (dcm2niix writes
them). Scan dates come from ``scans.tsv`` (``filename``, ``acq_time``: the
first frame's start) in the folder or a parent.

dcm2niix's PET sidecars count from the series start: ``ScanStart`` 0,
``FrameTimesStart`` the bed's start after it, ``ImageDecayCorrectionTime`` 0
for START (the values refer to ``ScanStart``, i.e. the series start) or the
injection for ADMIN; they hold no ``TimeZero`` or ``InjectionStart``. A
missing ``InjectionStart`` is never taken as 0: the injection time is then
unknown unless ADMIN's decay time gives it.

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
from ..io_utils import nifti_stem
from ..physics import nuclide
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
    "counts": ("counts", 1.0), "cnts": ("counts", 1.0), "count": ("counts", 1.0), "propcnts": ("counts", 1.0),
    "cps": ("cps", 1.0), "counts/s": ("cps", 1.0), "propcps": ("cps", 1.0), "hu": ("HU", 1.0),
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


def verify_gzip_stream(path: Path, what: str = "image") -> int | None:
    """Decompress a ``.gz`` file to its end so a corrupt stream is refused, not read.

    nibabel reads only the bytes the header declares, so the gzip trailer
    (CRC-32 and length of the whole stream) is never checked and a damaged
    deflate stream gives wrong voxels without complaint. Reading to the end
    checks both.

    Returns
    -------
    int or None
        The length of the decompressed stream in bytes; None for a file that
        is not ``.gz``.

    Raises
    ------
    InputError
        If the stream is truncated, its CRC or length is wrong, or it is not
        gzip at all.
    """
    import gzip

    path = Path(path)
    if not path.name.lower().endswith(".gz"):
        return None
    size = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 24):
                size += len(chunk)
    except (OSError, EOFError, zlib.error) as e:
        reason = " ".join(str(e).split())[:160] or type(e).__name__
        raise InputError(f"{path}: the gzip stream of this {what} is corrupt ({reason}): the voxels cannot be "
                         "trusted; copy or export the file again") from None
    return size


def verify_voxel_data(img, path: Path, what: str = "image") -> None:
    """Refuse a NIfTI file whose voxel data does not match its header: a corrupt gzip stream, or more bytes than
    the header declares.

    nibabel reads the declared voxels from the start of the data and ignores the rest, so a header whose
    datatype or size was changed (int16 data declared uint8, a dimension made smaller) reads other values as if
    fine; a file shorter than its header is refused when its voxels are read.

    Raises
    ------
    InputError
        The stream is corrupt, or the file holds more than the header's offset plus its voxels.
    """
    path = Path(path)
    size = verify_gzip_stream(path, what)
    try:
        itemsize = np.dtype(img.get_data_dtype()).itemsize
        offset = int(getattr(img.dataobj, "offset", 0) or 0)
        if size is None:
            size = path.stat().st_size
    except (TypeError, ValueError, AttributeError, OSError):
        return
    end = offset + int(np.prod(img.shape)) * itemsize
    if size > end:
        raise InputError(f"{what} {path}: the header declares {end} bytes of header and voxels "
                         f"({'x'.join(map(str, img.shape))} {img.get_data_dtype()}) but the file holds {size}: the "
                         "header does not describe the data (datatype or size changed?); export the file again")


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
            verify_voxel_data(img, path)
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


def _flag(side: dict, key: str, src: str) -> bool:
    v = side.get(key)
    if isinstance(v, bool) or v is None:
        return bool(v)
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
        return v.strip().lower() in ("true", "yes", "1")
    raise InputError(f"{src}: {key} = {v!r} is not true or false; fix the sidecar")


def _by_dcm2niix(side: dict) -> bool:
    return str(side.get("ConversionSoftware", "")).strip().lower().startswith("dcm2niix")


def _set_times(s: Series, side: dict, src: str, path: Path, scans: dict | None, warn: list[str]) -> None:
    """Acquisition start, injection time and decay-correction state from a sidecar."""
    try:
        _set_times_checked(s, side, src, path, scans, warn)
    except OverflowError:
        raise InputError(f"{src}: the times of {path.name} (AcquisitionDateTime, TimeZero, ScanStart, "
                         "InjectionStart) fall outside the calendar: fix the sidecar") from None


def _time_of_day_s(t) -> float:
    return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6


def _clock_gap_s(a, b) -> float:
    """Signed seconds from time of day ``b`` to ``a``, folded into (-12 h, 12 h]."""
    d = (_time_of_day_s(a) - _time_of_day_s(b)) % 86400.0
    return d - 86400.0 if d > 43200.0 else d


def _check_acquisition_time(acq: Sourced, side: dict, src: str, warn: list[str]) -> Sourced:
    """Compare a dated acquisition start with the time of day dcm2niix writes (``AcquisitionTime``).

    ``AcquisitionTime`` is this image's first slice; ``SeriesTime`` is the series start, earlier for a
    later bed. A date-time equal to the series time instead is moved to the acquisition time, with a warning.
    """
    tod = _text_value(side.get("AcquisitionTime"))
    if tod is None:
        return acq
    at = parse_time_of_day(tod, f"AcquisitionTime in {src}")
    gap = _clock_gap_s(acq.value.time(), at)
    if abs(gap) <= 1.0:
        return acq
    st = _text_value(side.get("SeriesTime"))
    if st is not None and abs(_clock_gap_s(acq.value.time(), parse_time_of_day(st, f"SeriesTime in {src}"))) <= 1.0:
        moved = acq.value - dt.timedelta(seconds=gap)
        warn.append(f"{src}: {acq.source} ({acq.value:%H:%M:%S}) is the sidecar's SeriesTime (the series start), "
                    f"not this image's AcquisitionTime {tod}: acquisition start taken as {moved:%Y-%m-%d %H:%M:%S}")
        return Sourced(moved, f"{acq.source}, moved to the sidecar's AcquisitionTime")
    warn.append(f"{src}: {acq.source} ({acq.value:%H:%M:%S}) differs by {abs(gap):.0f} s from the sidecar's "
                f"AcquisitionTime {tod}; {acq.source} is used")
    return acq


_DECAY_TERMS = ("NONE", "START", "ADMIN")


def _decay_state(side: dict, src: str, scan_start, first_rel, inj_start, warn: list[str]):
    """(state, reference in s after TimeZero, source) from ``DecayCorrection`` and/or
    ``ImageDecayCorrected`` + ``ImageDecayCorrectionTime``; ``(None, None, None)`` when the sidecar says nothing.

    ``DecayCorrection`` is the DICOM term dcm2niix copies (START, ADMIN, NONE); PET-BIDS says the same with
    ``ImageDecayCorrected`` and ``ImageDecayCorrectionTime`` (s after TimeZero): a time equal to
    ``ScanStart`` is START, one equal to ``InjectionStart`` is ADMIN, any other a given time (TIME).
    When both are present and disagree, ``DecayCorrection`` (the scanner's own attribute) is used.
    """
    dc = _text_value(side.get("DecayCorrection"))
    if dc is not None:
        dc = dc.upper()
        if dc not in _DECAY_TERMS:
            raise InputError(f"{src}: DecayCorrection = {side.get('DecayCorrection')!r} is not NONE, START or "
                             "ADMIN; fix the sidecar")
    bids = None
    ref = None
    if "ImageDecayCorrected" in side:
        ref = _number(side, "ImageDecayCorrectionTime", src, seconds=True)
        if not _flag(side, "ImageDecayCorrected", src):
            bids = ("NONE", None, "ImageDecayCorrected = false")
        elif ref is None:
            bids = ("START?", None, "ImageDecayCorrected = true")
        elif scan_start is not None and math.isclose(ref, scan_start, abs_tol=0.5):
            bids = ("START", ref, "ImageDecayCorrectionTime = ScanStart")
        elif scan_start is None and first_rel is not None and math.isclose(ref, first_rel, abs_tol=0.5):
            bids = ("START", ref, "ImageDecayCorrectionTime = FrameTimesStart")
        elif inj_start is not None and math.isclose(ref, inj_start, abs_tol=0.5):
            bids = ("ADMIN", ref, "ImageDecayCorrectionTime = InjectionStart")
        else:
            bids = ("TIME", ref, f"ImageDecayCorrectionTime = {ref:g} s")
    start_rel = scan_start if scan_start is not None else first_rel
    if dc is None:
        if bids is None:
            return None, None, None
        state, r, how = bids
        if state == "START?":
            warn.append(f"{src}: ImageDecayCorrected is true but ImageDecayCorrectionTime is absent: values "
                        "taken as decay-corrected to the scan start (ScanStart) - assumed")
            return "START", start_rel, f"{src}: {how}, no ImageDecayCorrectionTime: the scan start assumed"
        return state, r, f"{src}: {how}"
    how = f"{src}: DecayCorrection = {dc}"
    if bids is not None:
        b_state = bids[0]
        agree = (b_state == dc or (dc == "START" and b_state == "START?")
                 or (dc == "ADMIN" and b_state == "TIME" and inj_start is None))
        if not agree:
            warn.append(f"{src}: DecayCorrection {dc} but {bids[2]} says {b_state.rstrip('?')}: DecayCorrection "
                        "(the scanner's attribute) is used")
        elif b_state != "START?":
            how += f" ({bids[2]})"
    if dc == "NONE":
        return "NONE", None, how
    if dc == "START":
        return "START", start_rel, how
    return "ADMIN", ref if (bids is not None and bids[1] is not None) else None, how


def _decay_factor_check(s: Series, side: dict, src: str, state: str, first_rel, target_rel, what: str,
                        warn: list[str]) -> None:
    """Check the sidecar's DecayCorrectionFactor (or dcm2niix's DecayFactor) against the decay reference.

    For decay-corrected values the factor is ``exp(lambda (t_frame - t_ref))`` with ``t_frame`` the time in
    the frame at which the activity equals its mean (or the midpoint): the reference it implies is
    ``first frame start + t_frame - ln(factor) / lambda``.
    """
    from ..physics import decay_constant_per_h, mean_activity_time_h

    hl_h = s.get("half_life_h")
    key = "DecayCorrectionFactor" if side.get("DecayCorrectionFactor") is not None else "DecayFactor"
    raw = side.get(key)
    raw = raw[0] if isinstance(raw, list) and raw else raw
    f = _number({key: raw}, key, src, minimum=0.0) if raw is not None else None
    d = _number(side, "FrameDuration", src, minimum=0.0, seconds=True)
    if not f or not hl_h or first_rel is None or target_rel is None or not d:
        return
    lam_s = decay_constant_per_h(hl_h) / 3600.0
    text = repr(raw) if isinstance(raw, float) else str(raw)
    dec = len(text.split("e")[0].split(".")[1]) if "." in text.split("e")[0] else 0
    tol = max(1.0, 0.5 * 10.0 ** -dec / f / lam_s) if "e" not in text.lower() else 1.0
    taus = [float(mean_activity_time_h(d / 3600.0, hl_h)) * 3600.0, d / 2.0]
    implied = [first_rel + t - math.log(f) / lam_s for t in taus]
    gap = abs(implied[0] - target_rel)
    if min(abs(v - target_rel) for v in implied) > tol:
        warn.append(f"{src}: {key} {f:g} puts the decay reference ({what}) at {implied[0]:.1f} s after TimeZero, "
                    f"{gap:.1f} s from the {state} reference ({target_rel:g} s); the latter is used")


def _set_times_checked(s: Series, side: dict, src: str, path: Path, scans: dict | None, warn: list[str]) -> None:
    acq = None
    if scans and path.name in scans:
        acq = Sourced(scans[path.name], f"scans.tsv: acq_time of {path.name}")
    elif side.get("AcquisitionDateTime"):
        when, off = parse_datetime_offset(side["AcquisitionDateTime"], f"AcquisitionDateTime in {src}")
        acq = Sourced(when, f"{src}: AcquisitionDateTime")
        if off is not None:
            s.set("timezone_offset", off, f"{src}: AcquisitionDateTime offset")
    if acq is not None:
        acq = _check_acquisition_time(acq, side, src, warn)
    scan_start = _number(side, "ScanStart", src, seconds=True)
    frame_start = _number(side, "FrameTimesStart", src, seconds=True)
    # never defaulted: an absent InjectionStart leaves the injection time unknown
    inj_start = _number(side, "InjectionStart", src, seconds=True)
    if frame_start is None and scan_start == 0 and _by_dcm2niix(side):
        # dcm2niix counts from the series start (SeriesTime, ScanStart 0); without FrameTimesStart the
        # image's own start is its AcquisitionTime
        at, st = _text_value(side.get("AcquisitionTime")), _text_value(side.get("SeriesTime"))
        if at is not None and st is not None:
            frame_start = _clock_gap_s(parse_time_of_day(at, f"AcquisitionTime in {src}"),
                                       parse_time_of_day(st, f"SeriesTime in {src}"))
    # PET-BIDS: ScanStart and FrameTimesStart are seconds after TimeZero; the acquisition start (the
    # image's first slice) is the first frame's start. dcm2niix writes ScanStart 0 (the series start)
    # and FrameTimesStart > 0 for a later bed
    first_rel = frame_start if frame_start is not None else scan_start
    tz = side.get("TimeZero")
    if tz is not None and _text_value(tz) is None:
        raise InputError(f"{src}: TimeZero = {tz!r} is not a time of day (hh:mm:ss); fix the sidecar")
    tod = parse_time_of_day(tz, f"TimeZero in {src}") if tz is not None else None
    t0 = None  # TimeZero as a date-time: the origin of ScanStart, FrameTimesStart, InjectionStart, ...
    if acq is not None and first_rel is not None:
        t0 = Sourced(acq.value - dt.timedelta(seconds=first_rel),
                     f"{src}: TimeZero, from the acquisition time and "
                     + ("FrameTimesStart" if frame_start is not None else "ScanStart"))
        if tod is not None and abs(_clock_gap_s(t0.value.time(), tod)) > 1.5:
            from ..errors import InconsistentInputError

            raise InconsistentInputError(
                f"{src}: the times contradict each other: TimeZero {tz} is not the acquisition time "
                f"({acq.value:%H:%M:%S}, {acq.source.replace(src + ': ', '')}) minus "
                f"{'FrameTimesStart' if frame_start is not None else 'ScanStart'} {first_rel:g} s "
                f"({t0.value:%H:%M:%S}); fix TimeZero or ScanStart, or give --injection-time and --times-h")
        tod_only = False
    else:
        tod_only = tod is not None
        if acq is None and tod is not None and first_rel is not None:
            # relative timing only: put TimeZero on a nominal date
            base = dt.datetime.combine(dt.date(2000, 1, 1), tod)
            t0 = Sourced(base, f"{src}: TimeZero (no date given: only times relative to it are used)")
            acq = Sourced(base + dt.timedelta(seconds=first_rel), f"{src}: TimeZero + ScanStart + FrameTimesStart")
            tod_only = False
    if acq is not None:
        s.meta["acquisition_start"] = acq

    state, ref_rel, how = _decay_state(side, src, scan_start, first_rel, inj_start, warn)
    inj_rel, inj_how = (inj_start, "InjectionStart") if inj_start is not None else (None, None)
    if inj_rel is None and state == "ADMIN" and ref_rel is not None:
        inj_rel, inj_how = ref_rel, "ImageDecayCorrectionTime (DecayCorrection ADMIN: the administration)"
    if inj_rel is not None:
        if t0 is not None:
            s.set("injection_time", t0.value + dt.timedelta(seconds=inj_rel), f"{t0.source} + {inj_how}")
        elif tod_only and tod is not None:
            full = dt.datetime.combine(dt.date(2000, 1, 1), tod) + dt.timedelta(seconds=inj_rel)
            s.set("injection_time_of_day", full.time(), f"{src}: TimeZero + {inj_how} (date from the first scan)")
    if state is None:
        pass
    elif state == "NONE":
        s.set("decay_correction", "NONE", how)
    elif state == "ADMIN":
        s.set("decay_correction", "ADMIN", how)
        _decay_factor_check(s, side, src, "ADMIN", first_rel, inj_rel, "the administration", warn)
    else:
        s.set("decay_correction", state, how)
        if ref_rel is not None and first_rel is not None:
            offset = ref_rel - first_rel
        else:  # START with no ScanStart / FrameTimesStart: the acquisition start; TIME: unknown
            offset = 0.0 if state == "START" else None
        if offset is not None:
            s.set("decay_reference_offset_s", offset,
                  f"{how}: the values refer to {'ScanStart' if state == 'START' else 'ImageDecayCorrectionTime'}"
                  + (f", {offset:g} s from the first frame's start (FrameTimesStart)" if offset else
                     ", the acquisition start"))
        _decay_factor_check(s, side, src, state, first_rel, ref_rel if ref_rel is not None else first_rel,
                            "the decay-correction time", warn)
    for key in ("DecayCorrectionFactor", "DecayFactor"):
        raw = side.get(key)
        raw = raw[0] if isinstance(raw, list) and raw else raw
        # dcm2niix writes 0 when the DICOM has no DecayFactor
        factor = _number({key: raw}, key, src, minimum=0.0) if raw is not None and raw != [] else None
        if factor:
            s.set("decay_factor", factor, f"{src}: {key}")
            break
