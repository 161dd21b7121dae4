"""Metadata every reader takes from the header: geometry, identity, start time, radiopharmaceutical."""

from __future__ import annotations

import numpy as np

from ...errors import InputError
from ...physics import nuclide_from_code
from ..model import Series, Sourced
from .tags import _as_list, _float, _floats, _item0, _safe_raw, _safe_text, _tag, _text
from .times import _parse_dt, _parse_tm, _start_of, _START_ROUTES, _TZ_RE


def _orientation(iop: np.ndarray, where: str, keyword: str = "ImageOrientationPatient") -> tuple:
    row, col = iop[:3], iop[3:]
    nr, nc = np.linalg.norm(row), np.linalg.norm(col)
    if nr < 1e-6 or nc < 1e-6:
        raise InputError(f"{where}: {_tag(keyword)} {iop.tolist()} has a zero direction")
    row, col = row / nr, col / nc
    if abs(float(row @ col)) > 1e-3:
        raise InputError(f"{where}: {_tag(keyword)} {iop.tolist()} is not orthogonal")
    col = col - (row @ col) * row
    col /= np.linalg.norm(col)
    return row, col, np.cross(row, col)


def _pixel_spacing(ds, where: str) -> tuple[float, float]:
    """(spacing along i = columns, along j = rows) from PixelSpacing [row, column]."""
    ps = _floats(ds, "PixelSpacing", 2, where)
    if np.any(ps <= 0):
        raise InputError(f"{where}: {_tag('PixelSpacing')} {ps.tolist()} must be positive")
    return float(ps[1]), float(ps[0])


def _set(meta: dict, key: str, value, source: str) -> None:
    if value is not None:
        meta[key] = Sourced(value, source)


def _optional(fn, *args, what: str) -> None:
    """Run a metadata reader; a malformed optional tag becomes a warning (``args[-1]``) and the value stays absent."""
    try:
        fn(*args)
    except InputError as e:
        args[-1].append(f"{e}; {what} not read from the header")


def _common_meta(ds, modality: str, where: str, warn: list[str]) -> dict:
    meta: dict[str, Sourced] = {}
    mod_text = _safe_text(ds, "Modality")
    _set(meta, "modality", modality, _tag("Modality") if mod_text == modality else _tag("SOPClassUID"))
    for key, kw in (("patient_id", "PatientID"), ("patient_name", "PatientName"), ("study_uid", "StudyInstanceUID"),
                    ("series_uid", "SeriesInstanceUID"), ("series_description", "SeriesDescription"),
                    ("frame_of_reference_uid", "FrameOfReferenceUID"), ("manufacturer", "Manufacturer"),
                    ("species_description", "PatientSpeciesDescription")):
        _set(meta, key, _safe_text(ds, kw) or None, _tag(kw))
    tz = _safe_text(ds, "TimezoneOffsetFromUTC")
    if tz:
        if _TZ_RE.match(tz):
            _set(meta, "timezone_offset", tz, _tag("TimezoneOffsetFromUTC"))
        else:
            warn.append(f"{where}: {_tag('TimezoneOffsetFromUTC')} {tz!r} is not +HHMM/-HHMM; ignored")
    it = [str(v).strip() for v in _as_list(_safe_raw(ds, "ImageType"))]
    if it:
        _set(meta, "image_type", it, _tag("ImageType"))
    return meta


def _start_meta(meta: dict, datasets: list, where: str, warn: list[str]) -> None:
    """acquisition_start: best route of the first dataset, earliest over all slices."""
    found = [s for s in (_start_of(d, where, warn if n == 0 else []) for n, d in enumerate(datasets))
             if s is not None]
    if not found:
        warn.append(f"{where}: no acquisition time in AcquisitionDateTime, AcquisitionDate/Time, "
                    "SeriesDate/Time or ContentDate/Time")
        return
    best = min(f[0] for f in found)
    cands = [f for f in found if f[0] == best]
    first = min(cands, key=lambda f: f[1])
    src = first[2]
    if len(datasets) > 1:
        src += f", earliest of {len(datasets)} slices"
    meta["acquisition_start"] = Sourced(first[1], src)
    if first[3] and "timezone_offset" not in meta:
        meta["timezone_offset"] = Sourced(first[3], f"{_tag(_START_ROUTES[best][0])} offset suffix")


def _radiopharm_meta(ds, meta: dict, pet_iod: bool, where: str, warn: list[str]) -> None:
    ri = _item0(ds, "RadiopharmaceuticalInformationSequence", where, warn)
    if ri is None:
        return
    seq = f"{_tag('RadiopharmaceuticalInformationSequence')}[0]"
    # radionuclide and half-life
    nuc = None
    code = _item0(ri, "RadionuclideCodeSequence", where, warn)
    if code is not None:
        cv, scheme, meaning = (_text(code, k, where) for k in ("CodeValue", "CodingSchemeDesignator", "CodeMeaning"))
        nuc = nuclide_from_code(cv, meaning)
        desc = " ".join(x for x in (cv, f"({scheme})" if scheme else None, meaning) if x)
        if nuc is not None:
            _set(meta, "radionuclide", nuc.name, f"{_tag('RadionuclideCodeSequence')} {desc}")
        elif desc:
            _set(meta, "radionuclide_code", desc, _tag("RadionuclideCodeSequence"))
            warn.append(f"{where}: radionuclide code {desc!r} not recognised")
    hl_s = None
    try:
        hl_s = _float(ri, "RadionuclideHalfLife", where)
    except InputError as e:
        warn.append(f"{e}; half-life not read from the header")
    if hl_s is not None and hl_s > 0:
        _set(meta, "half_life_h", hl_s / 3600.0, f"{_tag('RadionuclideHalfLife')} {hl_s:g} s")
        if nuc is not None and abs(hl_s / 3600.0 / nuc.half_life_h - 1) > 0.01:
            warn.append(f"{where}: RadionuclideHalfLife {hl_s:g} s differs by more than 1 % from {nuc.name} "
                        f"({nuc.half_life_s:.1f} s, {nuc.source})")
    elif nuc is not None:
        _set(meta, "half_life_h", nuc.half_life_h, f"table: {nuc.source} ({nuc.name})")
    # injected activity: MBq in the NM IOD, Bq in the PET IOD (PS3.3 C.8.4.10.1.7)
    try:
        dose = _float(ri, "RadionuclideTotalDose", where)
    except InputError as e:
        dose = None
        warn.append(f"{e}; injected activity not read from the header")
    src = _tag("RadionuclideTotalDose")
    if dose is not None:
        if dose <= 0:
            warn.append(f"{where}: {src} is {dose:g}: no injected activity in the header")
        elif pet_iod:
            if dose < 1e4:
                _set(meta, "injected_activity_mbq", dose,
                     f"{src} = {dose:g} read as MBq (PET convention is Bq; value too small for Bq)")
                warn.append(f"{where}: {src} {dose:g} is too small for Bq: read as MBq")
            else:
                _set(meta, "injected_activity_mbq", dose / 1e6, f"{src} = {dose:g} Bq (PET convention)")
        else:
            if dose > 1e5:
                _set(meta, "injected_activity_mbq", dose / 1e6,
                     f"{src} = {dose:g} read as Bq (NM convention is MBq; value too large for MBq)")
                warn.append(f"{where}: {src} {dose:g} is too large for MBq: read as Bq")
            else:
                _set(meta, "injected_activity_mbq", dose, f"{src} = {dose:g} MBq (NM convention)")
    # injection time: a full date-time, else a time of day only (the study layer dates it)
    sdt = _text(ri, "RadiopharmaceuticalStartDateTime", where)
    stm = _text(ri, "RadiopharmaceuticalStartTime", where)
    done = False
    if sdt is not None:
        try:
            when, off = _parse_dt(sdt)
            meta["injection_time"] = Sourced(when, _tag("RadiopharmaceuticalStartDateTime"))
            if off:
                meta["injection_timezone_offset"] = Sourced(off, f"{_tag('RadiopharmaceuticalStartDateTime')} "
                                                                 "offset suffix")
            done = True
        except ValueError as e:
            warn.append(f"{where}: RadiopharmaceuticalStartDateTime (0018,1078) not usable ({e})")
    if not done and stm is not None:
        try:
            meta["injection_time_of_day"] = Sourced(_parse_tm(stm), _tag("RadiopharmaceuticalStartTime"))
        except ValueError as e:
            warn.append(f"{where}: RadiopharmaceuticalStartTime (0018,1072) not usable ({e})")
    tracer = _text(ri, "Radiopharmaceutical", where)
    if tracer:
        _set(meta, "tracer", tracer, f"{seq}.{_tag('Radiopharmaceutical')}")
    else:
        rc = _item0(ri, "RadiopharmaceuticalCodeSequence", where, warn)
        if rc is not None and _text(rc, "CodeMeaning", where):
            _set(meta, "tracer", _text(rc, "CodeMeaning", where),
                 f"{_tag('RadiopharmaceuticalCodeSequence')} CodeMeaning")


def _finish(series: Series, warn: list[str]) -> Series:
    if warn:
        series.meta["load_warnings"] = Sourced(list(warn), "spectrack.load.dicom")
    return series
