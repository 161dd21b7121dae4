"""Run settings shared by ``quantify``, ``batch`` and the napari plugin.

Settings come from keyword arguments, a TOML/JSON config file, or a batch
manifest row; :func:`settings_from_mapping` validates them (unknown keys,
wrong types and out-of-range values give one clear error line).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = ["Settings", "settings_from_mapping", "read_settings_file"]


@dataclass
class Settings:
    """Everything that changes a result (and so goes into provenance and the
    batch cache key). Times are ISO 8601 strings; activities in MBq.
    """

    labels: str | None = None
    calibration: str = "auto"
    sensitivity_cps_per_mbq: float | None = None
    fov_timepoint: int = 0
    injected_mbq: float | None = None
    injection_time: str | None = None
    injected_measured_at: str | None = None
    residual_mbq: float | None = None
    residual_time: str | None = None
    half_life_h: float | None = None
    radionuclide: str | None = None
    duration_s: float | None = None
    times_h: list[float] | None = None
    subject: str | None = None
    species: str | None = None
    group: str | None = None
    dose_mg: float | None = None
    register: bool = False
    reference: int = 0
    # labels carried through registration: see spectrack.align.resample.resample_labels ("vote" = "linear")
    label_resampling: str = "linear"
    auto_regions: str | None = None
    canal_boundaries_mm: list[float] | None = None
    neuraxis_margin_mm: float = 0.0
    pvc: bool = False
    psf_fwhm_mm: float | None = None
    calibration_cv: float = 0.027
    uncertainty_draws: int = 1000
    seed: int = 0
    report: bool = True
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def datetime(self, name: str) -> dt.datetime | None:
        v = getattr(self, name)
        if v is None:
            return None
        from .load.nifti import parse_datetime

        return parse_datetime(v, f"--{name.replace('_', '-')}")


_CHOICES = {"calibration": ("auto", "image", "sensitivity", "fov"),
            "species": (None, "rat", "nhp", "human", "mouse"),
            "auto_regions": (None, "rat", "nhp", "human"),
            "label_resampling": ("linear", "nearest", "gaussian", "vote")}
_POSITIVE = ("sensitivity_cps_per_mbq", "injected_mbq", "half_life_h", "duration_s", "psf_fwhm_mm")
_NON_NEGATIVE = ("neuraxis_margin_mm", "calibration_cv", "uncertainty_draws", "fov_timepoint", "reference", "residual_mbq")


def settings_from_mapping(data: dict, *, where: str = "settings", base: Path | None = None) -> Settings:
    """Validate a mapping into :class:`Settings`.

    Parameters
    ----------
    data : dict
        Keys of :class:`Settings` (``-`` may replace ``_``). Unknown keys fail.
    where : str
        Named in error messages (a file name, a manifest row).
    base : Path, optional
        Relative ``labels`` paths are resolved against it.
    """
    kinds = {f.name: f for f in fields(Settings)}
    out: dict[str, Any] = {}
    for key, val in data.items():
        k = str(key).replace("-", "_")
        if k not in kinds:
            raise InputError(f"{where}: unknown setting {key!r}; known: {', '.join(sorted(kinds))}")
        if val is None or val == "":
            continue
        t = kinds[k].type
        try:
            if k in ("times_h", "canal_boundaries_mm"):
                if isinstance(val, str):
                    val = [float(v) for v in val.replace(";", ",").split(",") if v.strip()]
                else:
                    val = [float(v) for v in val]
            elif "float" in t:
                val = float(val)
            elif t == "int":
                val = int(val)
            elif t == "bool":
                if isinstance(val, str):
                    if val.lower() not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError(val)
                    val = val.lower() in ("true", "1", "yes")
                else:
                    val = bool(val)
            elif "str" in t:
                if isinstance(val, (dt.datetime, dt.date)):
                    val = val.isoformat()
                val = str(val)
        except (TypeError, ValueError):
            raise InputError(f"{where}: setting {key!r} has a bad value {val!r} (expected {t})") from None
        if k in _CHOICES and val not in _CHOICES[k]:
            raise InputError(f"{where}: {key} must be one of {', '.join(str(c) for c in _CHOICES[k] if c)}, "
                             f"got {val!r}")
        if k in _POSITIVE and not val > 0:
            raise InputError(f"{where}: {key} must be positive, got {val}")
        if k in _NON_NEGATIVE and not val >= 0:
            raise InputError(f"{where}: {key} must be zero or positive, got {val}")
        if k == "labels" and base is not None and not Path(val).is_absolute():
            val = str((base / val).resolve())
        out[k] = val
    if out.get("canal_boundaries_mm") is not None and len(out["canal_boundaries_mm"]) != 3:
        raise InputError(f"{where}: canal_boundaries_mm needs 3 distances (mm from the sacral end): "
                         "sacral/lumbar, lumbar/thoracic, thoracic/cervical")
    s = Settings(**out)
    for name in ("injection_time", "injected_measured_at", "residual_time"):
        s.datetime(name)  # validates the format now, not mid-run
    return s


def read_settings_file(path) -> Settings:
    """Read settings from a TOML (``[spectrack]`` table or top level) or JSON file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read config {path}: {e.strerror}") from None
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ValueError as e:
        raise InputError(f"config {path} is not valid {path.suffix[1:].upper()}: {e}") from None
    if isinstance(data.get("spectrack"), dict):
        data = data["spectrack"]
    return settings_from_mapping(data, where=str(path), base=path.parent)
