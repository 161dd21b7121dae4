"""Radionuclide data and decay arithmetic.

All functions take times in hours (``_h``) or seconds (``_s``) as their names
say, and activities in MBq. Formulas follow ``REFERENCE.md`` section 2.

Half-lives (with sources)
-------------------------
=========  ===============  =================================================
nuclide    half-life        source
=========  ===============  =================================================
Tc-99m     6.0067 h         DDEP (LNHB) recommended data; ENSDF 6.0072(9) h
In-111     2.8047 d         DDEP
Lu-177     6.647 d          DDEP
I-123      13.2232 h        DDEP
I-131      8.0233 d         DDEP
F-18       109.77 min       DDEP (Siemens headers write 6586.2 s)
=========  ===============  =================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Nuclide",
    "NUCLIDES",
    "nuclide",
    "nuclide_from_code",
    "decay_constant_per_h",
    "decay_factor",
    "in_frame_factor",
    "mean_activity_time_h",
    "net_injected_activity_mbq",
]


@dataclass(frozen=True)
class Nuclide:
    """A radionuclide with its half-life and the source of that value."""

    name: str
    half_life_h: float
    source: str
    codes: tuple[str, ...] = ()  # SCT and SNOMED-3 code values (only those we can source)

    @property
    def half_life_s(self) -> float:
        return self.half_life_h * 3600.0

    @property
    def decay_constant_per_h(self) -> float:
        return math.log(2.0) / self.half_life_h


NUCLIDES: dict[str, Nuclide] = {
    n.name: n
    for n in (
        Nuclide("Tc-99m", 6.0067, "DDEP: 6.0067 h (21624.1 s)", ("72454006", "C-163A8")),
        Nuclide("In-111", 2.8047 * 24, "DDEP: 2.8047 d", ()),
        Nuclide("Lu-177", 6.647 * 24, "DDEP: 6.647 d", ()),
        Nuclide("I-123", 13.2232, "DDEP: 13.2232 h", ()),
        Nuclide("I-131", 8.0233 * 24, "DDEP: 8.0233 d", ()),
        Nuclide("F-18", 109.77 / 60.0, "DDEP: 109.77 min", ("77004003", "C-111A1")),
    )
}

_ALIASES = {
    "tc99m": "Tc-99m", "99mtc": "Tc-99m", "technetium-99m": "Tc-99m", "technetium99m": "Tc-99m",
    "in111": "In-111", "111in": "In-111", "indium-111": "In-111",
    "lu177": "Lu-177", "177lu": "Lu-177", "lutetium-177": "Lu-177",
    "i123": "I-123", "123i": "I-123", "iodine-123": "I-123",
    "i131": "I-131", "131i": "I-131", "iodine-131": "I-131",
    "f18": "F-18", "18f": "F-18", "fluorine-18": "F-18", "fluorine18": "F-18",
}


def nuclide(name: str) -> Nuclide:
    """Look up a nuclide by name (``"Tc-99m"``, ``"99mTc"``, ``"tc99m"``, ...).

    Raises
    ------
    KeyError
        If the name is not in the table.

    Examples
    --------
    >>> nuclide("99mTc").half_life_h
    6.0067
    """
    if name in NUCLIDES:
        return NUCLIDES[name]
    key = "".join(ch for ch in name.lower() if ch.isalnum() or ch == "-").replace("^", "")
    key2 = key.replace("-", "")
    for k in (key, key2):
        if k in _ALIASES:
            return NUCLIDES[_ALIASES[k]]
    for n in NUCLIDES.values():
        if n.name.lower().replace("-", "") == key2:
            return n
    raise KeyError(f"unknown radionuclide {name!r}; known: {', '.join(NUCLIDES)}")


def nuclide_from_code(code_value: str | None, meaning: str | None = None) -> Nuclide | None:
    """Nuclide for a DICOM ``RadionuclideCodeSequence`` item (SCT or SNOMED-3).

    Falls back on the code meaning (e.g. ``"^99m^Technetium"``); ``None`` if
    neither is recognised.
    """
    if code_value:
        for n in NUCLIDES.values():
            if str(code_value).strip() in n.codes:
                return n
    if meaning:
        m = meaning.lower().replace("^", "").replace(" ", "")
        names = {
            "technetium": "Tc-99m", "indium": "In-111", "lutetium": "Lu-177",
            "fluorine": "F-18",
        }
        for word, nm in names.items():
            if word in m:
                return NUCLIDES[nm]
        if "iodine" in m:
            return NUCLIDES["I-131"] if "131" in m else NUCLIDES["I-123"] if "123" in m else None
    return None


def decay_constant_per_h(half_life_h: float) -> float:
    """lambda = ln 2 / T1/2, per hour."""
    if not half_life_h > 0:
        raise ValueError(f"half-life must be positive, got {half_life_h}")
    return math.log(2.0) / half_life_h


def decay_factor(dt_h, half_life_h: float):
    """exp(lambda * dt): multiply an activity measured ``dt_h`` after a
    reference time by this to get the activity at the reference time.

    Examples
    --------
    >>> round(float(decay_factor(6.0067, 6.0067)), 12)
    2.0
    """
    return np.exp(decay_constant_per_h(half_life_h) * np.asarray(dt_h, dtype=float))


def in_frame_factor(duration_h, half_life_h: float):
    """lambda D / (1 - exp(-lambda D)): turns the mean activity over an
    acquisition of length D into the activity at its start (>= 1).

    Examples
    --------
    >>> round(float(in_frame_factor(0.25, 6.0067)), 4)
    1.0145
    """
    d = np.asarray(duration_h, dtype=float)
    x = decay_constant_per_h(half_life_h) * d
    # -expm1(-x) = 1 - exp(-x) without cancellation for small x
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(x > 0, x / -np.expm1(-np.where(x > 0, x, 1.0)), 1.0)
    return out if out.ndim else float(out)


def mean_activity_time_h(duration_h, half_life_h: float):
    """When, after the start of an acquisition of length D, the activity equals its mean over D.

    ``T_ave = ln(lambda D / (1 - exp(-lambda D))) / lambda`` (hours), slightly
    before the midpoint ``D / 2``. PS3.3 C.8.9.4.1.5 gives it as one way to set
    ``FrameReferenceTime``; Siemens PET headers use it (``DecayFactor`` =
    ``exp(lambda FrameReferenceTime)``).

    Examples
    --------
    >>> round(float(mean_activity_time_h(300 / 3600, 6586.2 / 3600)) * 3600, 3)
    149.605
    """
    d = np.asarray(duration_h, dtype=float)
    out = np.log(np.asarray(in_frame_factor(d, half_life_h), dtype=float)) / decay_constant_per_h(half_life_h)
    return out if out.ndim else float(out)


def net_injected_activity_mbq(
    syringe_before_mbq: float,
    dt_before_h: float,
    half_life_h: float,
    residual_mbq: float = 0.0,
    dt_residual_h: float = 0.0,
) -> float:
    """Net activity at injection time.

    ``A_inj = A_before * exp(-lambda (t_inj - t_before)) - A_res * exp(lambda (t_res - t_inj))``

    Parameters
    ----------
    syringe_before_mbq : float
        Syringe activity measured before injection.
    dt_before_h : float
        ``t_inj - t_before`` in hours (>= 0 when measured before).
    residual_mbq : float
        Residual activity in syringe and lines after injection.
    dt_residual_h : float
        ``t_residual - t_inj`` in hours.
    """
    lam = decay_constant_per_h(half_life_h)
    return float(syringe_before_mbq * math.exp(-lam * dt_before_h)
                 - residual_mbq * math.exp(lam * dt_residual_h))
