"""How stored values become physical values: value mapping (RWVM, rescale, Units) and rescaling."""

from __future__ import annotations

import math

import numpy as np

from ...errors import InputError
from .tags import _float, _item0, _seq, _tag, _text


# UCUM codes of MeasurementUnitsCodeSequence -> (units, scale to those units)
_UCUM = {
    "Bq/ml": ("Bq/mL", 1.0), "Bq/mL": ("Bq/mL", 1.0), "Bq/cm3": ("Bq/mL", 1.0),
    "kBq/ml": ("Bq/mL", 1e3), "kBq/mL": ("Bq/mL", 1e3), "kBq/cm3": ("Bq/mL", 1e3),
    "MBq/ml": ("Bq/mL", 1e6), "MBq/mL": ("Bq/mL", 1e6),
    "{counts}": ("counts", 1.0), "{count}": ("counts", 1.0), "{cnts}": ("counts", 1.0),
    "{counts}/s": ("cps", 1.0), "{cps}": ("cps", 1.0),
    "[hnsf'U]": ("HU", 1.0),
}
# Units (0054,1001) -> units
_PET_UNITS = {
    "BQML": ("Bq/mL", ""), "CNTS": ("counts", ""), "CPS": ("cps", ""),
    "PROPCNTS": ("counts", " (proportional to counts)"), "PROPCPS": ("cps", " (proportional to counts/s)"),
}


def _value_mapping(ds, kind: str, where: str, warn: list[str]) -> dict:
    """How stored values become ``units``: slope, intercept, units and sources."""
    if kind != "CT":
        seq = _seq(ds, "RealWorldValueMappingSequence", where, warn)
        notes = []
        for item in seq or []:
            cs = _item0(item, "MeasurementUnitsCodeSequence")
            code = _text(cs, "CodeValue", where) if cs is not None else None
            scheme = _text(cs, "CodingSchemeDesignator", where) if cs is not None else None
            slope = _float(item, "RealWorldValueSlope", where)
            icpt = _float(item, "RealWorldValueIntercept", where) or 0.0
            if code not in _UCUM:
                notes.append(f"{where}: RealWorldValueMappingSequence units {code!r} not used "
                             "(only activity concentration, counts or cps)")
                continue
            if slope is None:
                notes.append(f"{where}: RealWorldValueMappingSequence item without RealWorldValueSlope "
                             "(LUT mapping) not used")
                continue
            if not math.isfinite(slope) or slope <= 0 or not math.isfinite(icpt):
                raise InputError(f"{where}: RealWorldValueSlope {slope:g} / RealWorldValueIntercept {icpt:g} cannot "
                                 "map counts to activity (the slope must be positive and finite): the header is "
                                 "damaged; export the image again")
            units, scale = _UCUM[code]
            return {
                "slope": slope * scale, "intercept": icpt * scale, "units": units,
                "units_source": f"{_tag('RealWorldValueMappingSequence')} {scheme or 'UCUM'} {code}",
                "mapping": "RWVM",
                "mapping_source": f"{_tag('RealWorldValueSlope')} {slope:g}, "
                                  f"{_tag('RealWorldValueIntercept')} {icpt:g}"
                                  + (f", x{scale:g} to {units}" if scale != 1 else ""),
            }
        warn += notes
    slope = _float(ds, "RescaleSlope", where)
    icpt = _float(ds, "RescaleIntercept", where)
    has_rescale = slope is not None or icpt is not None
    slope = 1.0 if slope is None else slope
    icpt = 0.0 if icpt is None else icpt
    resc_src = (f"{_tag('RescaleSlope')} {slope:g}, {_tag('RescaleIntercept')} {icpt:g}" if has_rescale
                else "no rescale: stored values")
    mapping = "rescale" if has_rescale else "none"
    if kind != "CT" and (not math.isfinite(slope) or slope <= 0 or not math.isfinite(icpt)):
        raise InputError(f"{where}: RescaleSlope {slope:g} / RescaleIntercept {icpt:g} cannot map stored values "
                         "to counts or activity (the slope must be positive and finite): the header is damaged; "
                         "export the image again")
    if kind == "CT":
        rtype = _text(ds, "RescaleType", where)
        units = "HU" if rtype in (None, "HU") else rtype
        return {"slope": slope, "intercept": icpt, "units": units,
                "units_source": f"{_tag('RescaleType')} {rtype}" if rtype else "CT Image: Hounsfield units",
                "mapping": mapping, "mapping_source": resc_src}
    for kw in ("Units", "RescaleType"):
        code = _text(ds, kw, where)
        if code is None:
            continue
        key = code.upper()
        if key in _PET_UNITS:
            units, note = _PET_UNITS[key]
            return {"slope": slope, "intercept": icpt, "units": units,
                    "units_source": f"{_tag(kw)} {code}{note}", "mapping": mapping, "mapping_source": resc_src}
        if kw == "Units":
            warn.append(f"{where}: Units (0054,1001) {code!r} is not an activity, counts or cps unit")
            return {"slope": slope, "intercept": icpt, "units": code, "units_source": f"{_tag(kw)} {code}",
                    "mapping": mapping, "mapping_source": resc_src}
    if kind == "NM":
        return {"slope": slope, "intercept": icpt, "units": "counts",
                "units_source": "NM image without RealWorldValueMappingSequence or Units: counts",
                "mapping": mapping, "mapping_source": resc_src}
    warn.append(f"{where}: no Units (0054,1001): the meaning of the values is unknown")
    return {"slope": slope, "intercept": icpt, "units": "", "units_source": "no Units (0054,1001)",
            "mapping": mapping, "mapping_source": resc_src}


def _may_be_non_finite(stored_dtype, slope, intercept) -> bool:
    """True when stored values times slope plus intercept may be NaN or overflow float32."""
    if np.dtype(stored_dtype).kind == "f":
        return True
    big = float(np.max(np.abs(slope))) * 2.0**32 + float(np.max(np.abs(intercept)))
    return not big < 3.0e38


def _zero_non_finite(values: np.ndarray, where: str, warn: list[str]) -> None:
    """Set NaN and infinite voxels to 0 in place, with a warning."""
    bad = ~np.isfinite(values)
    n = int(np.count_nonzero(bad))
    if n:
        values[bad] = 0.0
        warn.append(f"{where}: {n} voxels are not finite (NaN or infinite after rescaling): set to 0")


def _rescale_in_place(values: np.ndarray, slope: float, intercept: float) -> None:
    """values = values * slope + intercept in float32, in place (overflow gives infinities, no warning)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if slope != 1:
            values *= np.float32(slope)
        if intercept != 0:
            values += np.float32(intercept)


def _apply(stored: np.ndarray, slope, intercept, n_gates: int = 1) -> np.ndarray:
    """float32 values = stored * slope + intercept (scalars or per-slice arrays), vectorised.

    Overflow gives infinities (see :func:`_zero_non_finite`), not warnings.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        out = stored.astype(np.float32, copy=True)
        slope = np.asarray(slope, dtype=np.float64)
        intercept = np.asarray(intercept, dtype=np.float64) * n_gates
        if slope.ndim:
            slope, intercept = slope[:, None, None], intercept[:, None, None]
        if np.any(slope != 1):
            out *= slope.astype(np.float32)
        if np.any(intercept != 0):
            out += intercept.astype(np.float32)
    return out
