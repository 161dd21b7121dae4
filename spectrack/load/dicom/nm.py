"""NM multi-frame objects: reconstructed SPECT volumes (``RECON TOMO``) and planar counts for calibrations."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...errors import InputError
from ...geometry import Image
from ..model import Series, Sourced
from .decay import _decay_reference_meta, _pet_style_meta
from .files import _as_dataset, _declared, _image_type, _kind, _stored_pixels, _where
from .header import _common_meta, _finish, _optional, _orientation, _pixel_spacing, _radiopharm_meta, _start_meta
from .tags import (_as_list, _float, _floats, _int, _int_or, _item0, _quiet, _raw, _safe_raw, _safe_text, _seq,
                   _SkipSeries, _tag, _text)
from .times import _start_of
from .units import _apply, _may_be_non_finite, _value_mapping, _zero_non_finite


_NM_RECON = ("RECON TOMO", "RECON GATED TOMO")
_NM_PLANAR = ("STATIC", "WHOLE BODY", "DYNAMIC", "GATED", "TOMO", "GATED TOMO")


def _nm_duration(ds, meta: dict, where: str, warn: list[str]) -> None:
    """duration_s = sum over rotations of ActualFrameDuration x NumberOfFramesInRotation."""
    seq = _seq(ds, "RotationInformationSequence", where, warn)
    if not seq:
        afd = _float(ds, "ActualFrameDuration", where)
        warn.append(f"{where}: no RotationInformationSequence (0054,0052): acquisition duration unknown"
                    + (f" (top-level ActualFrameDuration {afd:g} ms is ambiguous)" if afd else ""))
        return
    total = 0.0
    for n, item in enumerate(seq):
        afd = _float(item, "ActualFrameDuration", where)
        nf = _int(item, "NumberOfFramesInRotation", where)
        if afd is None or nf is None:
            warn.append(f"{where}: RotationInformationSequence item {n} lacks ActualFrameDuration or "
                        "NumberOfFramesInRotation: duration unknown")
            return
        total += afd * nf / 1000.0
    nrot = _int(ds, "NumberOfRotations", where)
    if nrot is not None and nrot != len(seq):
        warn.append(f"{where}: NumberOfRotations {nrot} but {len(seq)} RotationInformationSequence items; "
                    "the items are summed")
    meta["duration_s"] = Sourced(total, f"{_tag('RotationInformationSequence')}: sum of "
                                        f"{_tag('ActualFrameDuration')} (ms) x {_tag('NumberOfFramesInRotation')} "
                                        f"over {len(seq)} rotation(s)")


_FRAME_VECTORS = {
    0x00540010: "EnergyWindowVector", 0x00540020: "DetectorVector", 0x00540030: "PhaseVector",
    0x00540050: "RotationVector", 0x00540060: "RRIntervalVector", 0x00540070: "TimeSlotVector",
    0x00540080: "SliceVector", 0x00540090: "AngularViewVector", 0x00540100: "TimeSliceVector",
}
_GATE_VECTORS = ("RRIntervalVector", "TimeSlotVector", "PhaseVector")


def _frame_pointers(ds, where: str) -> list[str]:
    v = _raw(ds, "FrameIncrementPointer", where)
    out = []
    for t in _as_list(v):
        try:
            out.append(_FRAME_VECTORS.get(int(t), f"({int(t) >> 16:04X},{int(t) & 0xFFFF:04X})"))
        except (TypeError, ValueError):
            raise InputError(f"{where}: FrameIncrementPointer (0028,0009) {v!r} is malformed") from None
    return out


def _acquisition_summary(ds, itype: list[str]) -> str:
    """What an NM acquisition object holds, for the message that skips it (never raises)."""
    parts = ["ImageType " + "\\".join(itype)]
    frames = _int_or(ds, "NumberOfFrames") or 1
    counts = []
    for kw, what in (("AngularViewVector", "angular views"), ("DetectorVector", "detectors"),
                     ("EnergyWindowVector", "energy windows"), ("RotationVector", "rotations")):
        n = len(set(str(v) for v in _as_list(_safe_raw(ds, kw))))
        if n > 1 or (n == 1 and kw == "AngularViewVector"):
            counts.append(f"{n} {what if n != 1 else what[:-1]}")
    if not any("detectors" in c for c in counts) and (_int_or(ds, "NumberOfDetectors") or 0) > 1:
        counts.append(f"{_int_or(ds, 'NumberOfDetectors')} detectors")
    parts.append(f"{frames} frame{'s' if frames != 1 else ''}" + (f" = {' x '.join(counts)}" if counts else ""))
    rot = _safe_raw(ds, "RotationInformationSequence")
    if rot:
        item = rot[0]
        for kw, what in (("AngularStep", "deg steps"), ("ScanArc", "deg arc")):
            try:
                parts.append(f"{float(_safe_text(item, kw)):g} {what}")
            except ValueError:  # absent or malformed: not worth a word here
                pass
    return ", ".join(parts)


def read_nm_multiframe(path_or_dataset) -> Series:
    """Read a reconstructed SPECT volume (NM Image Storage, ``RECON TOMO``).

    Parameters
    ----------
    path_or_dataset : path-like or pydicom.Dataset
        One multi-frame NM object.

    Returns
    -------
    Series
        ``modality`` ``"NM"``; image values float32 in ``meta['units']``.

    Raises
    ------
    InputError
        Not a reconstructed NM volume, or geometry tags missing or malformed.

    Notes
    -----
    Position and orientation come from ``DetectorInformationSequence[0]``
    (else the top level), in-plane spacing from ``PixelSpacing``, the slice
    step from ``SpacingBetweenSlices`` with its sign: a negative step gives a
    negated third direction column (as SimpleITK). Frames are ordered by
    ``SliceVector``. Gates (``RECON GATED TOMO``) are summed when values are
    counts, else refused.
    """
    with _quiet():
        path, ds = _as_dataset(path_or_dataset)
        return _read_nm(path, ds)


def _read_nm(path: Path | None, ds) -> Series:
    where = _where(path, ds)
    warn: list[str] = []
    kind = _kind(ds)
    if kind != "NM":
        raise InputError(f"{where}: not an NM image (SOP class {kind}); use read_ct_series or read_pet_series")
    itype = _image_type(ds, where)
    v3 = itype[2] if len(itype) > 2 else None
    pointers = _frame_pointers(ds, where)
    if v3 not in _NM_RECON:
        if v3 in _NM_PLANAR:
            what = f"{v3} projections, not a reconstructed volume ({_acquisition_summary(ds, itype)}); reconstruct " \
                "them and export the reconstruction (ImageType RECON TOMO)" if "TOMO" in v3 else \
                f"planar {v3} acquisition, not a volume ({_acquisition_summary(ds, itype)}; planar_counts() reads it)"
            raise _SkipSeries(f"{where}: {what}")
        if "SliceVector" not in pointers:
            raise _SkipSeries(f"{where}: ImageType {itype} is not RECON TOMO and frames are not slices")
        warn.append(f"{where}: ImageType {itype} lacks RECON TOMO; read as a volume since "
                    "FrameIncrementPointer points to SliceVector")

    declared = _declared(ds, where)
    frames, rows, cols, _, _ = declared
    vectors: dict[str, np.ndarray] = {}
    for kw in pointers:
        if kw.startswith("("):
            raise _SkipSeries(f"{where}: FrameIncrementPointer to {kw} is not supported")
        v = np.atleast_1d(np.asarray(_as_list(_raw(ds, kw, where)), dtype=np.int64))
        if v.size != frames:
            raise InputError(f"{where}: {_tag(kw)} has {v.size} values for {frames} frames")
        vectors[kw] = v
    if "SliceVector" in vectors:
        slices = vectors.pop("SliceVector")
    else:
        slices = np.arange(1, frames + 1)
        if pointers:
            warn.append(f"{where}: FrameIncrementPointer {pointers} has no SliceVector: frames taken in file order")
    gates = np.zeros(frames, dtype=np.int64)
    n_gates = 1
    for kw, v in vectors.items():
        distinct = np.unique(v)
        if distinct.size <= 1:
            continue
        if kw not in _GATE_VECTORS:
            raise _SkipSeries(f"{where}: {distinct.size} values of {kw} in one reconstruction "
                              "(several volumes in one object) are not supported")
        gates = gates * (int(distinct.max()) + 1) + v
    in_file_order = bool(np.array_equal(slices, np.arange(1, frames + 1)))
    if in_file_order:  # the usual case: one frame per slice, in order
        n_slices, n_gates = frames, 1
    else:
        uniq_s, per_slice = np.unique(slices, return_counts=True)
        if np.any(per_slice != per_slice[0]):
            raise InputError(f"{where}: SliceVector (0054,0080) does not give every slice the same number of "
                             "frames")
        n_slices, n_gates = uniq_s.size, int(per_slice[0])
    n_decl = _int(ds, "NumberOfSlices", where)
    if n_decl is not None and n_decl != n_slices:
        warn.append(f"{where}: NumberOfSlices {n_decl} but {n_slices} distinct SliceVector values")
    order = np.arange(frames) if in_file_order else np.lexsort((gates, slices))

    mp = _value_mapping(ds, "NM", where, warn)
    if n_gates > 1 and mp["units"] != "counts":
        raise _SkipSeries(f"{where}: gated reconstruction with {n_gates} gates in {mp['units'] or 'unknown units'}: "
                          "summing gates is only meaningful for counts; export an ungated reconstruction")
    stored = _stored_pixels(ds, where, declared)
    if in_file_order or np.array_equal(order, np.arange(frames)):
        vol = stored.reshape(n_slices, n_gates, rows, cols)  # frames already in slice order: no copy
    else:
        vol = stored[order].reshape(n_slices, n_gates, rows, cols)
    if n_gates > 1:
        vol = vol.sum(axis=1, dtype=np.float64)
        warn.append(f"{where}: {n_gates} gates summed into one volume")
    else:
        vol = vol[:, 0]
    values = _apply(vol, mp["slope"], mp["intercept"], n_gates)
    if _may_be_non_finite(stored.dtype, mp["slope"], mp["intercept"]):
        _zero_non_finite(values, where, warn)

    # geometry
    det = _item0(ds, "DetectorInformationSequence", where, warn)
    places = [(det, "DetectorInformationSequence[0]"), (ds, "top level")] if det is not None else [(ds, "top level")]
    ipp = iop = None
    ipp_src = iop_src = "default"
    for where_ds, name in places:
        if ipp is None:
            ipp = _floats(where_ds, "ImagePositionPatient", 3, where, required=False)
            ipp_src = name
        if iop is None:
            iop = _floats(where_ds, "ImageOrientationPatient", 6, where, required=False)
            iop_src = name
    if ipp is None:
        ipp, ipp_src = np.zeros(3), "default (0, 0, 0)"
        warn.append(f"{where}: no ImagePositionPatient in DetectorInformationSequence or at the top level: "
                    "origin (0, 0, 0) assumed; alignment with CT is not possible from the header")
    if iop is None:
        iop, iop_src = np.array([1.0, 0, 0, 0, 1, 0]), "default (axial)"
        warn.append(f"{where}: no ImageOrientationPatient: axial orientation assumed")
    row, col, normal = _orientation(iop, where)
    sp_i, sp_j = _pixel_spacing(ds, where)
    step = _float(ds, "SpacingBetweenSlices", where)
    step_src = _tag("SpacingBetweenSlices")
    if step is None:
        step = _float(ds, "SliceThickness", where)
        step_src = _tag("SliceThickness")
        if step is None:
            if n_slices > 1:
                raise InputError(f"{where}: neither SpacingBetweenSlices (0018,0088) nor SliceThickness (0018,0050): "
                                 "slice spacing unknown")
            step = sp_i
        warn.append(f"{where}: no SpacingBetweenSlices: slice step taken from {step_src}")
    if step == 0:
        raise InputError(f"{where}: {step_src} is 0: slice spacing unknown")
    direction = np.column_stack([row, col, normal * math.copysign(1.0, step)])
    image = Image(values, origin_mm=ipp, spacing_mm=(sp_i, sp_j, abs(step)), direction=direction,
                  units=mp["units"])

    meta = _common_meta(ds, "NM", where, warn)
    meta["geometry"] = Sourced("NM", f"ImagePositionPatient from {ipp_src}, ImageOrientationPatient from {iop_src}, "
                                     f"{_tag('PixelSpacing')}, {step_src} {step:g} (sign kept)")
    meta["units"] = Sourced(mp["units"], mp["units_source"])
    meta["value_mapping"] = Sourced(mp["mapping"], mp["mapping_source"])
    _optional(_start_meta, meta, [ds], where, warn, what="acquisition time")
    _optional(_nm_duration, ds, meta, where, warn, what="acquisition duration")
    _optional(_radiopharm_meta, ds, meta, False, where, warn, what="radiopharmaceutical information")
    _optional(_pet_style_meta, [ds], meta, where, warn, what="decay-correction information")
    _optional(_decay_reference_meta, [ds], meta, False, where, warn, what="decay reference time")
    if n_gates > 1:
        meta["gates_summed"] = Sourced(n_gates, "frames with the same SliceVector (0054,0080) summed")
    return _finish(Series(image=image, modality="NM", meta=meta, files=[path] if path else []), warn)


def planar_counts(path) -> dict:
    """Counts and timing of a planar NM acquisition (for sensitivity calibration).

    Parameters
    ----------
    path : path-like or pydicom.Dataset
        One NM object (``STATIC``, ``WHOLE BODY``, ``DYNAMIC``, ``TOMO``...).

    Returns
    -------
    dict
        ``counts_per_frame`` (list of int: stored values summed per frame),
        ``total_counts`` (int), ``n_frames``, ``frame_vectors`` (the frame
        vectors named by ``FrameIncrementPointer``, e.g. ``DetectorVector``),
        ``frame_duration_s`` (``ActualFrameDuration`` ms -> s),
        ``duration_s`` with ``duration_source`` (frames acquired at the same
        time, such as two detectors or energy windows, count once; dynamic
        phases and tomographic rotations are summed),
        ``acquisition_start`` (naive datetime) with
        ``acquisition_start_source``, ``image_type``, ``series_description``,
        ``counts_accumulated`` (``CountsAccumulated`` when present), ``path``
        and ``warnings``.

    Raises
    ------
    InputError
        The file cannot be read or is not an NM image.

    Examples
    --------
    A planar source acquisition (not run here; see ``tests/test_load_dicom.py``)::

        info = planar_counts("Syringe_1cc.dcm")
        info["total_counts"] / info["duration_s"]  # cps, e.g. 2398.4
    """
    with _quiet():
        p, ds = _as_dataset(path)
        where = _where(p, ds)
        if _kind(ds) != "NM":
            raise InputError(f"{where}: not an NM image (SOP class {_kind(ds)}): planar counts need an NM acquisition")
        warn: list[str] = []
        stored = _stored_pixels(ds, where)
        per_frame = stored.reshape(stored.shape[0], -1).sum(axis=1, dtype=np.int64 if stored.dtype.kind in "ui"
                                                              else np.float64)
        pointers = _frame_pointers(ds, where)
        vectors = {}
        for kw in pointers:
            if not kw.startswith("("):
                vals = _as_list(_raw(ds, kw, where))
                vectors[kw] = [int(v) for v in vals]
        afd = _float(ds, "ActualFrameDuration", where)
        itype = _image_type(ds, where)
        v3 = itype[2] if len(itype) > 2 else ""
        duration, dsrc = None, ""
        rot = _seq(ds, "RotationInformationSequence", where, warn)
        phase = _seq(ds, "PhaseInformationSequence", where, warn)
        if v3 in ("TOMO", "GATED TOMO", "RECON TOMO", "RECON GATED TOMO") and rot:
            m: dict = {}
            _nm_duration(ds, m, where, warn)
            if "duration_s" in m:
                duration, dsrc = m["duration_s"].value, m["duration_s"].source
        elif v3 == "DYNAMIC" and phase:
            total = 0.0
            for item in phase:
                a = _float(item, "ActualFrameDuration", where)
                nf = _int(item, "NumberOfFramesInPhase", where)
                if a is None or nf is None:
                    total = None
                    break
                total += a * nf / 1000.0
            if total is not None:
                duration = total
                dsrc = (f"{_tag('PhaseInformationSequence')}: sum of {_tag('ActualFrameDuration')} x "
                        f"{_tag('NumberOfFramesInPhase')}")
        if duration is None and afd is not None:
            n_time = len(set(vectors.get("TimeSliceVector", [1])))
            duration = afd / 1000.0 * n_time
            dsrc = f"{_tag('ActualFrameDuration')} (ms -> s)" + (
                f" x {n_time} time slices" if n_time > 1 else
                (" (frames acquired simultaneously: " + ", ".join(vectors) + ")" if len(per_frame) > 1 else ""))
        if duration is None:
            warn.append(f"{where}: no ActualFrameDuration (0018,1242): duration unknown")
        start = _start_of(ds, where, warn)
        out = {
            "path": p,
            "counts_per_frame": [int(v) if stored.dtype.kind in "ui" else float(v) for v in per_frame],
            "total_counts": int(per_frame.sum()) if stored.dtype.kind in "ui" else float(per_frame.sum()),
            "n_frames": int(stored.shape[0]),
            "frame_vectors": vectors,
            "frame_duration_s": None if afd is None else afd / 1000.0,
            "duration_s": duration,
            "duration_source": dsrc or None,
            "acquisition_start": None if start is None else start[1],
            "acquisition_start_source": None if start is None else start[2],
            "image_type": [str(v) for v in _as_list(_raw(ds, "ImageType", where))],
            "series_description": _text(ds, "SeriesDescription", where),
            "counts_accumulated": _int_or(ds, "CountsAccumulated"),
            "warnings": warn,
        }
        return out
