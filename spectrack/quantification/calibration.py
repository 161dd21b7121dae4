"""From image values to activity (MBq per voxel at scan start).

Three routes (``REFERENCE.md`` section 2):

``image``
    Values already in Bq/mL. What time they refer to follows the header's
    decay-correction state: ``NONE`` (mean over the acquisition: times the
    in-frame factor), ``START`` (acquisition start: as is), ``ADMIN``
    (injection: decayed forward to the start), ``TIME`` (a given time).
``sensitivity``
    Counts (or cps) with a system volume sensitivity S in cps/MBq:
    ``A_start = counts / (S * D) * lambda D / (1 - exp(-lambda D))``.
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

__all__ = ["Calibration", "calibrate_study", "CALIBRATION_METHODS"]

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

    def to_json(self) -> dict:
        return {
            "method": self.method,
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


def _bqml(tp: TimePoint, p: DoseParameters, duration_s: float | None) -> Calibration:
    em = tp.emission
    vox_ml = em.image.voxel_volume_ml
    state = (em.get("decay_correction") or "NONE").upper()
    hl = p.half_life_h.value
    start = em.acquisition_start
    notes = []
    d = None
    iff = 1.0
    tf = 1.0
    if state == "NONE":
        d = _duration(tp, duration_s)
        iff = float(in_frame_factor(d.value / 3600.0, hl))
        notes.append("values are means over the acquisition (DecayCorrection NONE): times the in-frame factor")
    elif state == "START":
        notes.append("values refer to the acquisition start (DecayCorrection START)")
    elif state == "ADMIN":
        dt_h = p.hours_after_injection(start)
        tf = float(decay_factor(-dt_h, hl))
        notes.append("values refer to the injection (DecayCorrection ADMIN): decayed forward to the scan start")
    elif state == "TIME":
        ref_s = em.get("decay_correction_time_s")
        inj_rel = (em.get("injection_time") or p.injection_time.value)
        ref = inj_rel + dt.timedelta(seconds=float(ref_s))
        dt_h = (start - ref).total_seconds() / 3600.0
        tf = float(decay_factor(-dt_h, hl))
        notes.append("values refer to ImageDecayCorrectionTime: decayed to the scan start")
    else:
        raise InputError(f"time point {tp.index}: DecayCorrection {state!r} not understood (NONE, START, ADMIN)")
    return Calibration("image", vox_ml * 1e-6 * iff * tf, d, iff, tf, None, notes)


def _counts(tp: TimePoint, p: DoseParameters, s_cps_per_mbq: Sourced, duration_s: float | None) -> Calibration:
    em = tp.emission
    units = em.get("units") or "counts"
    d = _duration(tp, duration_s)
    iff = float(in_frame_factor(d.value / 3600.0, p.half_life_h.value))
    S = float(s_cps_per_mbq.value)
    if not (np.isfinite(S) and S > 0):
        raise InconsistentInputError(f"sensitivity must be positive, got {S} cps/MBq")
    if units == "cps":
        k = iff / S
    else:
        k = iff / (S * d.value)
    return Calibration("sensitivity", k, d, iff, 1.0, s_cps_per_mbq,
                       [f"A = {'cps' if units == 'cps' else 'counts / D'} / S x in-frame factor"])


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
