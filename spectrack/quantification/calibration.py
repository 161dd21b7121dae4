"""From image values to activity (MBq per voxel at scan start).

Three routes (``REFERENCE.md`` section 2):

``image``
    Values already in Bq/mL. What time they refer to follows the header's
    decay-correction state (:func:`decay_state`): ``NONE`` (mean over the
    acquisition: times the in-frame factor), ``START`` (the acquisition start,
    or the series reference the loader found, e.g. for a later PET bed:
    decayed from it to the scan start), ``ADMIN`` (the header's injection
    time: decayed forward to the start), ``TIME`` (a given time).
``sensitivity``
    Counts (or cps) with a system volume sensitivity S in cps/MBq:
    ``A_start = counts / (S * D) * lambda D / (1 - exp(-lambda D))`` for
    ``NONE``; counts the scanner decay-corrected (START, ADMIN, TIME) get no
    in-frame factor and the same decay from their reference time as Bq/mL.

A state not in the header is assumed (``NONE``, or ``START`` when
``CorrectedImage`` lists ``DECY``) with a warning in
:attr:`Calibration.warnings`, which :func:`~spectrack.quantification.quantify`
passes on to ``study.json``, the report and the command line.
``fov``
    Normalisation to the whole field of view at one time point: the sum of
    that scan equals the injected activity decayed to its start. This gives
    a sensitivity (or a scale for Bq/mL images) applied to every time point.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from ..errors import InconsistentInputError, InputError, MissingMetadataError
from ..load.model import Sourced, Study, TimePoint
from ..physics import decay_factor, in_frame_factor
from .parameters import DoseParameters

__all__ = ["Calibration", "DecayState", "decay_state", "calibrate_study", "CALIBRATION_METHODS"]

CALIBRATION_METHODS = ("auto", "image", "sensitivity", "fov")
_DURATION_TAGS = "RotationInformationSequence ActualFrameDuration (0018,1242) x NumberOfFramesInRotation / " \
                 "sidecar FrameDuration"


@dataclass
class Calibration:
    """How one time point's values became MBq per voxel at scan start."""

    method: str
    #: multiply image values by this to get MBq per voxel at scan start
    mbq_per_voxel_per_unit: float
    duration_s: Sourced | None
    in_frame_factor: float
    time_factor: float  # decay factor from the values' reference time to scan start
    sensitivity_cps_per_mbq: Sourced | None = None
    notes: list[str] = field(default_factory=list)
    decay: DecayState | None = None

    @property
    def warnings(self) -> list[str]:
        """What was assumed rather than read (the decay state), for study.json, the report and the CLI."""
        return [] if self.decay is None else list(self.decay.warnings)

    def to_json(self) -> dict:
        dec = self.decay
        return {
            "method": self.method,
            "decay_correction": None if dec is None else {
                "state": dec.state, "source": dec.source, "assumed": dec.assumed,
                "reference_time": None if dec.reference_time is None else dec.reference_time.isoformat(sep=" ")},
            "mbq_per_voxel_per_unit": self.mbq_per_voxel_per_unit,
            "duration_s": None if self.duration_s is None else self.duration_s.to_json(),
            "in_frame_factor": self.in_frame_factor,
            "reference_time_to_start_factor": self.time_factor,
            "sensitivity_cps_per_mbq": None if self.sensitivity_cps_per_mbq is None
            else self.sensitivity_cps_per_mbq.to_json(),
            "notes": list(self.notes),
        }


def _duration(tp: TimePoint, override_s: float | None) -> Sourced:
    if override_s is not None:
        d = Sourced(float(override_s), "option --duration-s")
    else:
        v = tp.emission.get("duration_s")
        if v is None:
            raise MissingMetadataError(f"acquisition duration of time point {tp.index}", _DURATION_TAGS,
                                       "--duration-s")
        d = Sourced(float(v), tp.emission.source("duration_s"))
    if not (np.isfinite(d.value) and d.value > 0):
        raise InconsistentInputError(f"time point {tp.index}: acquisition duration is {d.value} s ({d.source}); "
                                     "it must be positive: give the real one with --duration-s")
    return d


@dataclass
class DecayState:
    """What time one emission volume's values refer to, and how that was decided."""

    #: NONE (means over the acquisition), START or TIME (a reference time), ADMIN (the injection)
    state: str
    source: str
    #: the time the values refer to (``None`` for NONE: they are means over the acquisition)
    reference_time: dt.datetime | None
    assumed: bool = False
    warnings: list[str] = field(default_factory=list)


def decay_state(tp: TimePoint, p: DoseParameters) -> DecayState:
    """The decay-correction state of a time point's emission values, read or (with a warning) assumed.

    ``NONE``: values integrate or average over the acquisition (the in-frame factor applies).
    ``START``: decay-corrected to the acquisition start, or to the series reference when the loader
    found one (``decay_reference_offset_s``, e.g. a later bed of a multi-bed PET series).
    ``ADMIN``: decay-corrected to the injection: the header's injection time (the scanner's), else the
    study's. ``TIME``: to a given time (PET-BIDS ``ImageDecayCorrectionTime``).
    """
    em = tp.emission
    start = em.acquisition_start
    raw = em.get("decay_correction")
    warns: list[str] = []
    assumed = False
    if raw is None:
        corr = [str(c).upper() for c in (em.get("corrections") or [])]
        assumed = True
        if "DECY" in corr:
            state, src = "START", f"assumed: no DecayCorrection, but {em.source('corrections')} lists DECY"
            warns.append(f"time point {tp.index}: decay-correction state assumed START (values decay-corrected to the "
                         "acquisition start): the header has no DecayCorrection (0054,1102) / ImageDecayCorrected "
                         "but CorrectedImage lists DECY")
        else:
            state, src = "NONE", "assumed: no DecayCorrection / ImageDecayCorrected in the header"
            warns.append(f"time point {tp.index}: decay-correction state assumed NONE (values are means over the "
                         "acquisition: in-frame factor and decay from the scan start applied): the header has no "
                         "DecayCorrection (0054,1102) / ImageDecayCorrected")
    else:
        state, src = str(raw).strip().upper(), em.source("decay_correction")
    if em.get("beds_not_normalised") is not None and state not in ("START", "ADMIN"):
        raise InputError(f"time point {tp.index}: {em.get('beds_not_normalised')} bed positions in one series that "
                         f"could not be put on one time footing ({em.source('beds_not_normalised')}): export the "
                         "beds as separate series or with decay correction")
    ref = None
    if state in ("START", "TIME"):
        off = em.get("decay_reference_offset_s")
        if off is None:
            if state == "TIME":
                raise MissingMetadataError(f"start of time point {tp.index} relative to its decay-correction time "
                                           "(ImageDecayCorrectionTime counts from TimeZero)",
                                           "sidecar ScanStart / FrameTimesStart",
                                           "ScanStart in the sidecar")
            off = 0.0
            src += "; reference: the acquisition start"
        else:
            src += f"; reference: {em.source('decay_reference_offset_s')}"
        ref = start + dt.timedelta(seconds=float(off))
    elif state == "ADMIN":
        hdr = em.get("injection_time")
        if hdr is not None:
            ref = hdr
            src += f"; reference: the header's injection time ({em.source('injection_time')})"
            if abs((hdr - p.injection_time.value).total_seconds()) > 1.0:
                used = p.injection_time.value
                warns.append(f"time point {tp.index}: values are decay-corrected to the injection time in the header "
                             f"({hdr:%Y-%m-%d %H:%M:%S}), not to the injection time used ({used:%Y-%m-%d %H:%M:%S}, "
                             f"{p.injection_time.source}): they are decayed from the header's")
        else:
            ref = p.injection_time.value
            src += f"; reference: the injection time ({p.injection_time.source})"
    elif state != "NONE":
        raise InputError(f"time point {tp.index}: DecayCorrection {state!r} not understood (NONE, START, ADMIN)")
    return DecayState(state, src, ref, assumed, warns)


def _time_terms(tp: TimePoint, p: DoseParameters, duration_s: float | None, *, counts: bool):
    """(decay state, duration, in-frame factor, factor from the values' reference time to the scan start)."""
    ds = decay_state(tp, p)
    hl = p.half_life_h.value
    d = _duration(tp, duration_s) if (ds.state == "NONE" or counts) else None
    if d is None and (duration_s is not None or tp.emission.get("duration_s") is not None):
        d = _duration(tp, duration_s)  # reported, not needed
    iff = float(in_frame_factor(d.value / 3600.0, hl)) if ds.state == "NONE" else 1.0
    tf = 1.0
    if ds.reference_time is not None:
        # activity at the scan start = value at the reference time x exp(-lambda (start - reference))
        tf = float(decay_factor((ds.reference_time - tp.emission.acquisition_start).total_seconds() / 3600.0, hl))
    return ds, d, iff, tf


def _state_note(ds: DecayState, tf: float) -> str:
    what = {"NONE": "values are means over the acquisition (DecayCorrection NONE): times the in-frame factor",
            "START": "values are decay-corrected to the acquisition start (DecayCorrection START)",
            "ADMIN": "values are decay-corrected to the injection (DecayCorrection ADMIN)",
            "TIME": "values are decay-corrected to ImageDecayCorrectionTime"}[ds.state]
    if ds.reference_time is not None and tf != 1.0:
        what += f"; decayed from {ds.reference_time:%Y-%m-%d %H:%M:%S} to the scan start (x{tf:.6g})"
    return what + (" - assumed" if ds.assumed else "")


def _bqml(tp: TimePoint, p: DoseParameters, duration_s: float | None) -> Calibration:
    em = tp.emission
    vox_ml = em.image.voxel_volume_ml
    ds, d, iff, tf = _time_terms(tp, p, duration_s, counts=False)
    return Calibration("image", vox_ml * 1e-6 * iff * tf, d, iff, tf, None, [_state_note(ds, tf)], ds)


def _counts(tp: TimePoint, p: DoseParameters, s_cps_per_mbq: Sourced, duration_s: float | None) -> Calibration:
    em = tp.emission
    units = em.get("units") or "counts"
    S = float(s_cps_per_mbq.value)
    if not (np.isfinite(S) and S > 0):
        raise InconsistentInputError(f"sensitivity must be positive, got {S} cps/MBq")
    ds, d, iff, tf = _time_terms(tp, p, duration_s, counts=units != "cps")
    k = iff * tf / S if units == "cps" else iff * tf / (S * d.value)
    return Calibration("sensitivity", k, d, iff, tf, s_cps_per_mbq,
                       [f"A = {'cps' if units == 'cps' else 'counts / D'} / S"
                        + (" x in-frame factor" if ds.state == "NONE" else ""), _state_note(ds, tf)], ds)


def calibrate_study(
    study: Study,
    params: DoseParameters,
    *,
    method: str = "auto",
    sensitivity_cps_per_mbq: float | None = None,
    fov_timepoint: int = 0,
    duration_s: float | None = None,
) -> list[Calibration]:
    """Calibration of every time point.

    Parameters
    ----------
    study : Study
    params : DoseParameters
    method : {"auto", "image", "sensitivity", "fov"}
        ``auto``: ``image`` for Bq/mL images, ``sensitivity`` for counts when
        a sensitivity is given; otherwise stop with the option to give.
    sensitivity_cps_per_mbq : float, optional
        System volume sensitivity (cps/MBq) for count images.
    fov_timepoint : int
        Time point whose whole field of view holds the injected activity
        (``fov`` method).
    duration_s : float, optional
        Acquisition duration (s) overriding the headers (all time points).

    Returns
    -------
    list of Calibration
        One per time point.
    """
    if method not in CALIBRATION_METHODS:
        raise InputError(f"unknown calibration {method!r}: choose one of {', '.join(CALIBRATION_METHODS)}")
    out = []
    if method == "fov":
        if not 0 <= fov_timepoint < len(study.timepoints):
            raise InputError(f"--fov-timepoint {fov_timepoint} is out of range (0..{len(study.timepoints) - 1})")
        # provisional: sensitivity 1 cps/MBq for counts, identity for Bq/mL
        prov = []
        for tp in study.timepoints:
            if (tp.emission.get("units") or "counts") == "Bq/mL":
                prov.append(_bqml(tp, params, duration_s))
            else:
                prov.append(_counts(tp, params, Sourced(1.0, "provisional"), duration_s))
        tpf = study.timepoints[fov_timepoint]
        total = float(np.sum(tpf.emission.image.array, dtype=np.float64)) * prov[fov_timepoint].mbq_per_voxel_per_unit
        if not total > 0:
            raise InconsistentInputError(f"time point {fov_timepoint} has no positive counts: "
                                         "cannot normalise to the field of view")
        dt_h = params.hours_after_injection(tpf.acquisition_start)
        expected = params.injected_mbq.value * float(decay_factor(-dt_h, params.half_life_h.value))
        scale = expected / total
        for tp, c in zip(study.timepoints, prov):
            c.method = "fov"
            c.mbq_per_voxel_per_unit *= scale
            if c.sensitivity_cps_per_mbq is not None:
                c.sensitivity_cps_per_mbq = Sourced(1.0 / scale, f"field-of-view normalisation at time point "
                                                    f"{fov_timepoint}")
            c.notes.append(f"scaled so the field of view at time point {fov_timepoint} holds the injected "
                           f"activity decayed to its start ({expected:.6g} MBq)")
            out.append(c)
        return out
    for tp in study.timepoints:
        units = tp.emission.get("units") or "counts"
        m = method
        if m == "auto":
            if units == "Bq/mL":
                m = "image"
            elif sensitivity_cps_per_mbq is not None:
                m = "sensitivity"
            else:
                raise MissingMetadataError(
                    f"calibration for time point {tp.index} (values are {units})",
                    "RealWorldValueMappingSequence (0040,9096) / Units (0054,1001) / sidecar Units",
                    "--sensitivity CPS_PER_MBQ or --calibration fov")
        if m == "image":
            if units != "Bq/mL":
                raise InputError(f"time point {tp.index} values are {units}, not Bq/mL: "
                                 "use --sensitivity or --calibration fov")
            out.append(_bqml(tp, params, duration_s))
        else:
            if sensitivity_cps_per_mbq is None:
                raise MissingMetadataError("system sensitivity", "no header holds it", "--sensitivity CPS_PER_MBQ")
            if units == "Bq/mL":
                raise InputError(f"time point {tp.index} is already in Bq/mL: drop --sensitivity "
                                 "(or use --calibration image)")
            out.append(_counts(tp, params, Sourced(float(sensitivity_cps_per_mbq), "option --sensitivity"),
                               duration_s))
    return out
