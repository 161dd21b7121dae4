"""Study-wide dosing parameters, from options or headers, each with its source.

Options always win over headers. A value that is in neither stops the run
with :class:`~spectrack.errors.MissingMetadataError` naming the tag and the
option that supplies it.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from ..errors import InconsistentInputError, MissingMetadataError
from ..load.model import Sourced, Study
from ..physics import NUCLIDES, decay_constant_per_h, net_injected_activity_mbq, nuclide

__all__ = ["DoseParameters", "resolve_parameters"]

_TAG_DOSE = "RadionuclideTotalDose (0018,1074) / sidecar InjectedRadioactivity"
_TAG_TIME = ("RadiopharmaceuticalStartDateTime (0018,1078) or RadiopharmaceuticalStartTime (0018,1072) / "
             "sidecar TimeZero")


@dataclass
class DoseParameters:
    """What the %ID arithmetic needs, each value :class:`Sourced`."""

    injected_mbq: Sourced
    injection_time: Sourced
    half_life_h: Sourced
    radionuclide: Sourced
    notes: list[str] = field(default_factory=list)

    @property
    def decay_constant_per_h(self) -> float:
        return decay_constant_per_h(self.half_life_h.value)

    def hours_after_injection(self, t: dt.datetime) -> float:
        return (t - self.injection_time.value).total_seconds() / 3600.0

    def to_json(self) -> dict:
        return {
            "injected_activity_mbq": self.injected_mbq.to_json(),
            "injection_time": self.injection_time.to_json(),
            "half_life_h": self.half_life_h.to_json(),
            "radionuclide": self.radionuclide.to_json(),
            "notes": list(self.notes),
        }


def _header_value(study: Study, key: str, rel_tol: float = 1e-6):
    """The value of ``key`` in the emission headers, checking they agree."""
    vals = [(tp.emission.get(key), tp.emission.source(key), tp.index) for tp in study.timepoints
            if tp.emission.get(key) is not None]
    if not vals:
        return None
    v0, s0, _ = vals[0]
    for v, _, idx in vals[1:]:
        same = (abs(v - v0) <= rel_tol * max(abs(v0), 1e-12)) if isinstance(v0, float) else (v == v0)
        if not same:
            return Sourced(v0, s0 + f" (time point 0; time point {idx} says {v})")
    return Sourced(v0, s0)


def resolve_parameters(
    study: Study,
    *,
    injected_mbq: float | None = None,
    injection_time: dt.datetime | None = None,
    injected_measured_at: dt.datetime | None = None,
    residual_mbq: float | None = None,
    residual_time: dt.datetime | None = None,
    half_life_h: float | None = None,
    radionuclide: str | None = None,
) -> DoseParameters:
    """Resolve injected activity, injection time and half-life.

    Parameters
    ----------
    injected_mbq : float, optional
        Injected activity (MBq), measured at ``injected_measured_at`` (default:
        at injection). Overrides headers.
    injection_time : datetime, optional
        Injection date-time. Overrides headers.
    residual_mbq, residual_time : optional
        Residual activity left in syringe and lines, measured at
        ``residual_time`` (default: injection time); subtracted after decay.
    half_life_h : float, optional
        Physical half-life (h); overrides header and nuclide table.
    radionuclide : str, optional
        Nuclide name; gives the half-life from the table.
    """
    notes: list[str] = []
    settings = getattr(study, "settings", {}) or {}
    if injected_mbq is None and settings.get("injected_mbq") is not None:
        injected_mbq = float(settings["injected_mbq"])
        src_dose = "study file: injected_mbq"
    else:
        src_dose = "option --injected-mbq"
    if injection_time is None and settings.get("injection_time"):
        from ..load.nifti import parse_datetime

        injection_time = parse_datetime(settings["injection_time"], "injection_time in the study file")
        src_time = "study file: injection_time"
    else:
        src_time = "option --injection-time"
    if half_life_h is None and settings.get("half_life_h"):
        half_life_h = float(settings["half_life_h"])
    if radionuclide is None and settings.get("radionuclide"):
        radionuclide = str(settings["radionuclide"])

    # nuclide and half-life
    if radionuclide is not None:
        nuc = nuclide(radionuclide)
        nuc_s = Sourced(nuc.name, "option --radionuclide")
    else:
        nuc_s = _header_value(study, "radionuclide")
    if half_life_h is not None:
        if not half_life_h > 0:
            raise InconsistentInputError(f"--half-life-h must be positive, got {half_life_h}")
        hl = Sourced(float(half_life_h), "option --half-life-h")
    else:
        hl = _header_value(study, "half_life_h")
        if radionuclide is not None:
            hl = Sourced(NUCLIDES[nuc_s.value].half_life_h, f"table: {NUCLIDES[nuc_s.value].source}")
        if hl is None and nuc_s is not None:
            n = NUCLIDES.get(nuc_s.value)
            if n is not None:
                hl = Sourced(n.half_life_h, f"table: {n.source}")
    if hl is None:
        raise MissingMetadataError("half-life", "RadionuclideHalfLife (0018,1075) / RadionuclideCodeSequence / "
                                   "sidecar TracerRadionuclide", "--half-life-h or --radionuclide")
    if nuc_s is None:
        match = [n for n in NUCLIDES.values() if math.isclose(n.half_life_h, hl.value, rel_tol=2e-3)]
        nuc_s = Sourced(match[0].name, "guessed from the half-life") if match else Sourced("unknown", "not given")

    # injection time
    if injection_time is not None:
        t_inj = Sourced(injection_time, src_time)
    else:
        t_inj = _header_value(study, "injection_time")
        if t_inj is None:
            raise MissingMetadataError("injection time", _TAG_TIME, "--injection-time")

    # injected activity
    if injected_mbq is not None:
        if not injected_mbq > 0:
            raise InconsistentInputError(f"injected activity must be positive, got {injected_mbq} MBq")
        a = float(injected_mbq)
        src = src_dose
        if injected_measured_at is not None:
            dt_h = (t_inj.value - injected_measured_at).total_seconds() / 3600.0
            a = net_injected_activity_mbq(a, dt_h, hl.value)
            src += f" measured at {injected_measured_at.isoformat(sep=' ')}, decayed to injection"
        a_s = Sourced(a, src)
    else:
        a_s = _header_value(study, "injected_activity_mbq")
        if a_s is None:
            raise MissingMetadataError("injected activity", _TAG_DOSE, "--injected-mbq")
    if residual_mbq:
        rt = residual_time or t_inj.value
        dt_res = (rt - t_inj.value).total_seconds() / 3600.0
        net = net_injected_activity_mbq(a_s.value, 0.0, hl.value, residual_mbq, dt_res)
        if net <= 0:
            raise InconsistentInputError(f"residual activity {residual_mbq} MBq leaves no net injected activity "
                                         f"(syringe {a_s.value:.4g} MBq): check --residual-mbq")
        a_s = Sourced(net, a_s.source + f" minus residual {residual_mbq} MBq (option --residual-mbq)")
    if not a_s.value > 0:
        raise InconsistentInputError(f"injected activity is {a_s.value} MBq ({a_s.source}): "
                                     "give the real value with --injected-mbq")
    return DoseParameters(a_s, t_inj, hl, nuc_s, notes)
