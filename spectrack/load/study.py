"""Assemble a :class:`~spectrack.load.model.Study` from whatever the user has.

``load_study`` accepts

* a folder of DICOM files (any nesting, any names), possibly mixed with
  NIfTI files with sidecars;
* a folder of NIfTI files (``*_spect``/``*_pet``/``*_ct`` names or sidecar
  ``Modality``), with times from sidecars or ``scans.tsv``;
* a study file (``.toml`` or ``.json``) listing NIfTI or DICOM inputs with
  their times;
* a list of NIfTI files with ``times_h`` (hours after injection) given.

Emission volumes (NM, PT) become time points sorted by acquisition start; a
scan found twice (DICOM and NIfTI copies of one acquisition) is loaded once
(see :mod:`spectrack.load.duplicates`). Each is paired with the CT of the same frame of reference, else of the same
DICOM study nearest in time, else of the same file prefix.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from ..errors import InconsistentInputError, InputError
from ..settings import STUDY_FILE_NAMES as _STUDY_FILE_NAMES
from .duplicates import drop_duplicate_scans
from .model import Series, Study, TimePoint
from .nifti import parse_datetime
from .readers import load_series

__all__ = ["load_study", "load_series", "read_study_file", "NOMINAL_DATE"]

#: Date used when only times relative to injection are known.
NOMINAL_DATE = dt.date(2000, 1, 1)
_PAIR_WINDOW = dt.timedelta(hours=2)


def _resolve_injection_dates(emissions: list[Series], warnings: list[str]) -> None:
    """Give a date to injection times that have only a time of day.

    The date is the latest one that puts the injection before the first scan
    (late-evening injections are scanned after midnight).
    """
    starts = [s.acquisition_start for s in emissions if s.acquisition_start is not None]
    if not starts:
        return
    first = min(starts)
    said = set()
    for s in emissions:
        if s.get("injection_time") is None and s.get("injection_time_of_day") is not None:
            tod = s.get("injection_time_of_day")
            cand = dt.datetime.combine(first.date(), tod)
            if cand > first:
                cand -= dt.timedelta(days=1)
            s.set("injection_time", cand,
                  f"{s.source('injection_time_of_day')}, dated to the latest day before the first scan "
                  f"({first.isoformat(sep=' ')})")
            if (tod, cand) not in said:
                said.add((tod, cand))
                day = "the day before the first scan" if cand.date() < first.date() else "the first scan's day"
                warnings.append(f"injection time {tod.isoformat()} has no date ({s.source('injection_time_of_day')}): "
                                f"assumed {cand:%Y-%m-%d} ({day}, {(first - cand).total_seconds() / 3600:.2f} h "
                                "before it); give --injection-time with the date if that is wrong")


def _pair_ct(emission: Series, cts: list[Series]) -> Series | None:
    for_uid = emission.get("frame_of_reference_uid")
    if for_uid:
        same = [c for c in cts if c.get("frame_of_reference_uid") == for_uid]
        if same:
            return _nearest(emission, same)
    study_uid = emission.get("study_uid")
    if study_uid:
        same = [c for c in cts if c.get("study_uid") == study_uid and c.get("frame_of_reference_uid") is None]
        if same:
            return _nearest(emission, same)
    prefix = _prefix(emission)
    if prefix:
        same = [c for c in cts if _prefix(c) == prefix]
        if same:
            return _nearest(emission, same)
    near = _nearest(emission, cts)
    if near is not None and emission.acquisition_start and near.acquisition_start and \
            abs(near.acquisition_start - emission.acquisition_start) <= _PAIR_WINDOW:
        return near
    return None


def _prefix(s: Series) -> str | None:
    if not s.files or not str(s.files[0]).endswith((".nii", ".nii.gz")):
        return None
    from ..io_utils import nifti_stem

    stem = nifti_stem(s.files[0])
    return stem.rsplit("_", 1)[0] if "_" in stem else None


def _nearest(emission: Series, cands: list[Series]) -> Series | None:
    if not cands:
        return None
    t = emission.acquisition_start
    if t is None:
        return cands[0]
    return min(cands, key=lambda c: abs((c.acquisition_start or t) - t))


#: Largest pause between the end of one bed and the start of the next of the same time point.
BED_GAP = dt.timedelta(minutes=15)


def _bed_groups(emissions: list[Series]) -> list[list[Series]]:
    """Group consecutive emission series that are bed positions of one time point.

    Beds follow each other within :data:`BED_GAP`, have the same modality,
    orientation and voxel size, and cover different ranges along the slice
    axis (two reconstructions of one acquisition, e.g. with and without
    attenuation correction, cover the same range and are not beds).
    """
    import numpy as np

    groups: list[list[Series]] = []
    for s in emissions:
        g = groups[-1] if groups else None
        if g is not None:
            last = g[-1]
            end = last.acquisition_start + dt.timedelta(seconds=float(last.get("duration_s") or 0.0))
            same_kind = (s.modality == last.modality and np.allclose(s.image.direction, last.image.direction, atol=1e-4)
                         and np.allclose(s.image.spacing_mm, last.image.spacing_mm, rtol=1e-4)
                         and s.get("units") == last.get("units"))
            axis = last.image.direction[:, 2]
            shift = abs(float(np.dot(s.image.origin_mm - last.image.origin_mm, axis)))
            if same_kind and s.acquisition_start - end <= BED_GAP and shift > last.image.spacing_mm[2] and \
                    all(abs(float(np.dot(s.image.origin_mm - b.image.origin_mm, axis))) > b.image.spacing_mm[2]
                        for b in g):
                g.append(s)
                continue
        groups.append([s])
    return groups


def _stitch_bed_groups(emissions: list[Series], warnings: list[str]) -> list[Series]:
    """Stitch each group of bed positions into one emission series (see :func:`_bed_groups`)."""
    out = []
    for g in _bed_groups(emissions):
        out.append(g[0] if len(g) == 1 else _stitch(g, warnings))
    return out


def _stitch(beds: list[Series], warnings: list[str]) -> Series:
    from ..align.stitch import stitch_beds
    from ..physics import NUCLIDES, in_frame_factor

    first = beds[0]
    hl = first.get("half_life_h")
    if hl is None and first.get("radionuclide") in NUCLIDES:
        hl = NUCLIDES[first.get("radionuclide")].half_life_h
    if hl is None:
        from ..errors import MissingMetadataError

        raise MissingMetadataError("half-life to stitch bed positions", "RadionuclideHalfLife (0018,1075) / "
                                   "RadionuclideCodeSequence", "a header with the radionuclide")
    state = (first.get("decay_correction") or "NONE").upper()
    units = first.get("units") or "counts"
    d0 = float(first.get("duration_s") or 0.0)
    images = []
    for b in beds:
        scale = 1.0
        d = float(b.get("duration_s") or 0.0)
        if d > 0 and d0 > 0 and abs(d - d0) > 1e-6:
            # express every bed as if acquired for the first bed's duration
            if state == "NONE":
                scale = float(in_frame_factor(d / 3600, hl) / in_frame_factor(d0 / 3600, hl))
            if units == "counts":
                scale *= d0 / d
        images.append(b.image.with_array(b.image.array * scale) if scale != 1.0 else b.image)

    def values_time(b):  # the time a bed's values refer to (its decay reference when decay-corrected)
        return b.acquisition_start + dt.timedelta(seconds=float(b.get("decay_reference_offset_s") or 0.0))

    if state == "ADMIN":
        starts = [first.acquisition_start] * len(beds)  # already decay-corrected to injection
    elif state in ("START", "TIME"):
        starts = [values_time(b) for b in beds]  # each bed to the first bed's decay reference
    else:
        starts = [b.acquisition_start for b in beds]
    img = stitch_beds(images, starts, half_life_h=hl, reference_time=starts[0], overlap="average")
    img.units = first.image.units
    s = Series(image=img, modality=first.modality, meta=dict(first.meta), files=[f for b in beds for f in b.files])
    s.set("beds", [{"series_uid": b.get("series_uid"), "acquisition_start": b.acquisition_start.isoformat(sep=" "),
                    "duration_s": b.get("duration_s"), "description": b.describe()} for b in beds],
          f"{len(beds)} bed positions stitched: each decayed to the first bed's start "
          f"(half-life {hl:g} h), overlaps averaged")
    warnings.append(f"{len(beds)} bed positions starting {first.acquisition_start:%Y-%m-%d %H:%M} stitched into one "
                    "volume")
    return s


def _ranges():
    from ..settings import _RANGES

    return _RANGES["times_h"], _RANGES["duration_s"]


_TIME_H_RANGE, _DURATION_S_RANGE = _ranges()


def _number(value, what: str, lo: float, hi: float, unit: str, *, positive: bool = False) -> float:
    """A study file's number, checked as the options are (a number, finite, in range), or one line."""
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{what} must be a number ({unit.split(' (')[0]}), got {value!r}: write it without units "
                         "or quotes")
    if not math.isfinite(value):
        raise InputError(f"{what} must be a finite number, got {value!r}")
    if positive and not value > 0:
        raise InputError(f"{what} must be positive, got {value:g}")
    if not lo <= value <= hi:
        raise InputError(f"{what} must be between {lo:g} and {hi:g} {unit}, got {value:g}")
    return float(value)


def read_study_file(path) -> tuple[list[Series], dict, list[str]]:
    """Read a ``.toml`` or ``.json`` study file.

    Format (TOML shown; JSON has the same keys)::

        subject = "nhp01"
        injected_mbq = 180.0                 # optional, overrides headers
        injection_time = "2026-03-14T21:40"  # optional
        half_life_h = 6.0067                 # optional
        radionuclide = "Tc-99m"              # optional
        units = "counts"                     # optional, for images without a sidecar
        labels = "labels.nii.gz"             # optional

        [[timepoints]]
        spect = "tp0_spect.nii.gz"           # or a DICOM folder
        ct = "tp0_ct.nii.gz"                 # optional
        time_h = 0.5                         # or acquisition_start = "2026-03-14T22:10"
        duration_s = 900                     # optional

    Paths are relative to the study file. Without ``[[timepoints]]`` the file
    describes the images beside it: those of its folder, or of the folders or
    files listed as ``images`` (``images = "dicom"``), are loaded as a study
    folder would be, and the file gives the settings they do not say
    (``sensitivity = 30``, ``calibration``, ``labels``, ``species``...; any
    settings-file key, see :func:`spectrack.settings.apply_study_file`)::

        images = "dicom"                     # optional: default the whole folder
        labels = "labels.nii.gz"
        sensitivity = 30

    Returns the series, the study-level settings (options) and warnings.
    """
    path = Path(path)
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(path.read_text(encoding="utf-8"))
        else:
            data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read study file {path}: {e}") from None
    if not isinstance(data, dict):
        raise InputError(f"study file {path} must hold a table of keys (images, labels, sensitivity, timepoints...)")
    tps = data.get("timepoints")
    series: list[Series] = []
    warnings: list[str] = []
    settings = {k: v for k, v in data.items() if k not in ("timepoints", "images")}
    base = path.parent
    if tps is None:  # the images beside the file (or those it names), read as a study folder
        images = data.get("images", ".")
        images = [images] if isinstance(images, str) else images
        if not isinstance(images, list) or not images or not all(isinstance(i, str) and i for i in images):
            raise InputError(f"study file {path}: images must be a folder or file name, or a list of them "
                             f"(relative to the study file), got {data.get('images')!r}")
        for rel in images:
            p = base / rel
            if not p.exists():
                raise InputError(f"study file {path}: images {rel!r} does not exist in {base}: name the folder "
                                 "of the study's images (relative to the study file)")
            s_list, w = load_series(p)
            series += s_list
            warnings += [x for x in w if x not in warnings]
        return series, settings, warnings
    if "images" in data:
        raise InputError(f"study file {path} has both images and [[timepoints]]: give one of them")
    if not isinstance(tps, list) or not tps:
        raise InputError(f"study file {path} has no [[timepoints]] entries: list each time point's images")
    inj = settings.get("injection_time")
    inj_dt = parse_datetime(inj, f"injection_time in {path}") if inj else None
    if settings.get("units") is not None:
        from .nifti import _UNITS

        if str(settings["units"]).lower() not in _UNITS:
            raise InputError(f"study file {path}: units {settings['units']!r} not understood; use Bq/mL, counts "
                             "or cps")
    for n, tp in enumerate(tps):
        if not isinstance(tp, dict):
            raise InputError(f"study file {path}: time point {n + 1} is {type(tp).__name__} {tp!r}, not a table: "
                             "write each as [[timepoints]] with spect = \"...\" and time_h = ...")
        if "spect" not in tp and "pet" not in tp and "image" not in tp:
            raise InputError(f"study file {path}: time point {n + 1} has no 'spect' (or 'pet'/'image') entry")
        for key in ("spect", "pet", "image", "ct"):
            if key in tp and not (isinstance(tp[key], str) and tp[key].strip()):
                raise InputError(f"study file {path}: timepoints[{n}].{key} must be a file or folder name "
                                 f"(relative to the study file), got {tp[key]!r}")
        for key, (lo, hi, unit) in (("time_h", _TIME_H_RANGE), ("duration_s", _DURATION_S_RANGE)):
            if key in tp:
                tp = dict(tp, **{key: _number(tp[key], f"study file {path}: timepoints[{n}].{key}", lo, hi, unit,
                                              positive=key == "duration_s")})
        em_path = base / (tp.get("spect") or tp.get("pet") or tp.get("image"))
        s_list, w = load_series(em_path)
        warnings += w
        ems = [s for s in s_list if s.modality in ("NM", "PT")] or [s for s in s_list if s.modality != "CT"]
        if not ems and s_list:
            ems = s_list
            for s in ems:
                s.modality = "NM"
        if len(ems) != 1:
            raise InputError(f"study file {path}: time point {n + 1} ({em_path}) holds {len(ems)} emission volumes; "
                             "give one per time point")
        em = ems[0]
        src = f"{path.name}: timepoints[{n}]"
        if tp.get("units"):
            from .nifti import _UNITS

            key = str(tp["units"]).lower()
            if key not in _UNITS:
                raise InputError(f"{src}: units {tp['units']!r} not understood; use Bq/mL, counts or cps")
            em.set("units", _UNITS[key][0], f"{src}.units")
            em.image.units = _UNITS[key][0]
        elif settings.get("units") and em.source("units", ) and em.source("units").startswith("default"):
            from .nifti import _UNITS

            em.set("units", _UNITS[str(settings["units"]).lower()][0], f"{path.name}: units")
            em.image.units = em.get("units")
        if "acquisition_start" in tp:
            em.set("acquisition_start", parse_datetime(tp["acquisition_start"], f"{src}.acquisition_start"),
                   f"{src}.acquisition_start")
        elif "time_h" in tp:
            t0 = inj_dt or em.get("injection_time") or dt.datetime.combine(NOMINAL_DATE, dt.time(0, 0))
            if inj_dt is None and em.get("injection_time") is None:
                em.set("injection_time", t0, f"{path.name}: no injection time given; times are relative (time_h)")
            em.set("acquisition_start", t0 + dt.timedelta(hours=float(tp["time_h"])), f"{src}.time_h")
        if "duration_s" in tp:
            em.set("duration_s", float(tp["duration_s"]), f"{src}.duration_s")
        series.append(em)
        if tp.get("ct"):
            c_list, w = load_series(base / tp["ct"])
            warnings += w
            cts = [s for s in c_list if s.modality == "CT"] or c_list
            ct = cts[0]
            ct.modality = "CT"
            ct.set("pair_with", id(em), f"{src}.ct")
            series.append(ct)
    return series, settings, warnings


def _check_path_argument(path) -> None:
    """Refuse a ``path`` argument that is not a path or a list of paths (one line, not a TypeError)."""
    def ok(p):
        return isinstance(p, str) or (hasattr(p, "__fspath__") and isinstance(p.__fspath__(), str))

    if isinstance(path, (list, tuple)):
        bad = [p for p in path if not ok(p)]
        if bad:
            raise InputError(f"load_study() needs paths (str or pathlib.Path), and the list holds "
                             f"{type(bad[0]).__name__} {bad[0]!r}")
    elif not ok(path):
        raise InputError(f"load_study() needs a path (str or pathlib.Path) or a list of paths, not "
                         f"{type(path).__name__}")


def load_study(path, *, times_h=None, subject: str | None = None) -> Study:
    """Load a study: time points of emission volumes, each with its CT.

    Parameters
    ----------
    path : path-like or list of path-like
        A folder (DICOM and/or NIfTI), a study file (``.toml``/``.json``),
        or a list of NIfTI files (then ``times_h`` gives their times).
    times_h : sequence of float, optional
        Scan start times in hours after injection, one per emission volume in
        the order given (list input) or sorted by file name (folder input).
        Overrides the times in headers.
    subject : str, optional
        Subject identifier (default: PatientID or the folder name).

    Returns
    -------
    Study

    Examples
    --------
    >>> from spectrack.phantom.sample import sample_study
    >>> study = load_study(sample_study()["path"])
    >>> [f"{tp.acquisition_start:%d %H:%M}" for tp in study.timepoints]
    ['14 22:10', '14 22:40', '14 23:40', '15 01:40', '15 03:40', '15 21:40']
    """
    _check_path_argument(path)
    if times_h is not None:  # the checks of --times-h, with the same messages
        from ..settings import settings_from_mapping

        given = times_h if isinstance(times_h, str) or not hasattr(times_h, "__iter__") else list(times_h)
        times_h = settings_from_mapping({"times_h": given}, where="load_study()").times_h or []
    settings: dict = {}
    warnings: list[str] = []
    if isinstance(path, (list, tuple)):
        series = []
        for p in path:
            s, w = load_series(p)
            series += s
            warnings += w
        root = Path(path[0]).parent if path else Path(".")
    else:
        root = Path(path)
        if root.is_dir():
            for name in _STUDY_FILE_NAMES:
                if (root / name).exists():
                    root = root / name
                    break
        if root.is_file() and root.suffix.lower() in (".toml", ".json"):
            series, settings, warnings = read_study_file(root)
        else:
            series, warnings = load_series(root)
    emissions = [s for s in series if s.modality in ("NM", "PT")]
    cts = [s for s in series if s.modality == "CT"]
    if not emissions:
        found = ", ".join(sorted({s.modality for s in series})) or "nothing"
        nm_skipped = [w[len("skipped "):] for w in warnings if w.startswith("skipped NM")]
        why = ""
        if nm_skipped:
            more = f"; and {len(nm_skipped) - 3} more NM objects skipped" if len(nm_skipped) > 3 else ""
            why = f"; NM skipped: {'; '.join(nm_skipped[:3])}{more}"
        raise InputError(f"no SPECT (NM RECON TOMO) or PET volume found in {path} (found: {found}){why}")

    if times_h is not None:
        if len(times_h) != len(emissions):
            raise InconsistentInputError(f"{len(times_h)} times given for {len(emissions)} emission volumes: "
                                         "give one time per volume")
        if not isinstance(path, (list, tuple)):
            emissions.sort(key=lambda s: str(s.files[0]) if s.files else "")
        for s, t in zip(emissions, times_h):
            t0 = s.get("injection_time") or dt.datetime.combine(NOMINAL_DATE, dt.time(0, 0))
            if s.get("injection_time") is None:
                s.set("injection_time", t0, "no injection time given: times are relative (--times-h)")
            s.set("acquisition_start", t0 + dt.timedelta(hours=t), "option --times-h")

    # subjects
    ids = {s.get("patient_id") for s in series if s.get("patient_id")}
    if len(ids) > 1:
        raise InconsistentInputError(f"{path} holds images of {len(ids)} subjects ({', '.join(sorted(ids))}): "
                                     "put each subject's images in its own folder (or use 'spectrack batch')")
    if root.is_file():  # a study file: its stem names the study, unless it has one of the usual names
        folder_name = root.parent.resolve().name if root.name in _STUDY_FILE_NAMES else root.stem
    else:
        folder_name = root.name
    subj = subject or settings.get("subject") or (ids.pop() if ids else None) or folder_name

    kept = {id(s) for s in drop_duplicate_scans(series, warnings, root=root)}
    emissions = [s for s in emissions if id(s) in kept]
    cts = [s for s in cts if id(s) in kept]

    missing_t = [s for s in emissions if s.acquisition_start is None]
    if missing_t:
        raise InputError(f"no acquisition time for {missing_t[0].describe()} ({missing_t[0].files[0]}): "
                         "give the times with --times-h or a study file")
    _resolve_injection_dates(emissions, warnings)
    emissions.sort(key=lambda s: s.acquisition_start)
    emissions = _stitch_bed_groups(emissions, warnings)

    # pair CTs
    timepoints = []
    used: set[int] = set()
    for n, em in enumerate(emissions):
        explicit = [c for c in cts if c.get("pair_with") == id(em)]
        free = [c for c in cts if id(c) not in used]
        ct = explicit[0] if explicit else _pair_ct(em, free)
        if ct is not None:
            used.add(id(ct))
            if em.get("frame_of_reference_uid") and ct.get("frame_of_reference_uid") and \
                    em.get("frame_of_reference_uid") != ct.get("frame_of_reference_uid"):
                warnings.append(f"time point {n}: SPECT and CT have different FrameOfReferenceUID; "
                                "they are assumed to be in the same patient space")
        timepoints.append(TimePoint(emission=em, ct=ct, index=n))
    extra = [c for c in cts if id(c) not in used]
    if extra:
        warnings.append(f"{len(extra)} CT series not paired with an emission volume (ignored)")
    study = Study(timepoints=timepoints, subject=str(subj), path=Path(root), warnings=warnings, extra_series=extra)
    study.settings = settings  # type: ignore[attr-defined]
    return study
