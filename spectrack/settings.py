"""Run settings shared by ``quantify``, ``batch`` and the napari plugin.

Settings come from keyword arguments, a TOML/JSON config file, or a batch
manifest row; :func:`settings_from_mapping` validates them (unknown keys,
wrong types and out-of-range values give one clear error line).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = ["Settings", "SettingError", "SPECIES", "ALIASES", "settings_from_mapping", "read_settings_file",
           "option_name", "labels_for_study", "is_label_pattern", "given_keys", "with_given", "STUDY_FILE_NAMES",
           "find_study_file", "read_study_file_settings", "apply_study_file"]


#: Species with a preset (automatic regions, phantom, default PSF FWHM); ``--species`` and
#: ``--auto-regions`` accept exactly these (tests check the presets agree).
SPECIES = ("rat", "nhp", "human")


def _opt(default, help: str, *, flag: str | None = None, shown: str | None = None, short: str | None = None):
    """A setting that is also a command-line option of ``quantify`` and ``batch``.

    ``flag`` is the option's name when it is not the field name with ``-``
    (it is then also accepted as a settings-file key); ``shown`` is the
    default as ``--help`` shows it.
    """
    return field(default=default, metadata={"help": help, "flag": flag, "shown": shown, "short": short})


_DT = "ISO 8601, e.g. 2026-03-14T21:40:00"


@dataclass
class Settings:
    """Everything that changes a result (and so goes into provenance and the
    batch cache key). Times are ISO 8601 strings; activities in MBq.

    Each field is also a settings-file key (TOML/JSON, batch manifest column)
    and, with its ``help`` metadata, a command-line option of ``quantify`` and
    ``batch`` (``--injected-mbq``...; ``sensitivity_cps_per_mbq`` is
    ``--sensitivity``, and ``sensitivity`` is accepted as its key too).
    """

    labels: str | None = _opt(
        None, "Regions: NIfTI label map (names in <stem>.tsv), DICOM-SEG, RTSTRUCT or a TotalSegmentator folder. "
        "A pattern is resolved per study: {study} is the study folder, {name} its name, and * or ? glob "
        "relative to the study folder (e.g. '{study}/labels.nii.gz', '**/*_dseg.nii.gz').", short="-l",
        shown="none; batch: each study's labels.nii.gz")
    calibration: str = _opt("auto", "auto | image (Bq/mL) | sensitivity | fov.")
    sensitivity_cps_per_mbq: float | None = _opt(None, "System volume sensitivity, cps/MBq (count images).",
                                                 flag="sensitivity", shown="none")
    fov_timepoint: int = _opt(0, "Time point for field-of-view normalisation (--calibration fov).")
    injected_mbq: float | None = _opt(None, "Injected activity (MBq); overrides headers.", shown="from headers")
    injection_time: str | None = _opt(None, f"Injection date-time, {_DT}; overrides headers.", shown="from headers")
    injected_measured_at: str | None = _opt(None, "When --injected-mbq was measured.", shown="at injection")
    residual_mbq: float | None = _opt(None, "Residual activity in syringe/lines (MBq).", shown="none")
    residual_time: str | None = _opt(None, "When the residual was measured.", shown="at injection")
    half_life_h: float | None = _opt(None, "Physical half-life (h); overrides headers.", shown="from headers")
    radionuclide: str | None = _opt(None, "Radionuclide (e.g. Tc-99m); half-life from the table.",
                                    shown="from headers")
    duration_s: float | None = _opt(None, "Acquisition duration (s); overrides headers.", shown="from headers")
    times_h: list[float] | None = _opt(None, "Scan times after injection (h), comma-separated.",
                                       shown="from headers")
    subject: str | None = _opt(None, "Subject identifier.", shown="PatientID or folder name")
    species: str | None = _opt(None, f"{' | '.join(SPECIES)}: recorded in the table; sets preset defaults "
                               "(--pvc FWHM).", shown="none")
    group: str | None = _opt(None, "Cohort group (recorded in the table; batch statistics per group).",
                             shown="none")
    dose_mg: float | None = _opt(None, "Drug dose (mg): drug concentration per region (ug_per_g in regions.csv) "
                                 "follows from %ID; recorded in the cohort table.", shown="none")
    density_g_per_ml: str | None = _opt(
        None, "Tissue density (g/mL) for region masses, %ID/g and ug/g: one value, or per region "
        "(brain=1.04,liver=1.05,*=1.0).", flag="density", shown="none (1.0 assumed, with a warning, for --dose-mg)")
    removed: str | None = _opt(
        None, "CSV of activity that left the body (columns kind, time_h or collected_at, activity_mbq, optional "
        "measured_h or measured_at; kinds urine, feces, excreta, csf_sample, blood_sample, leakage, other) "
        "for the mass balance.", shown="none")
    mass_balance_threshold_pct_id: float = _opt(
        10.0, "Flag a time point when more than this %ID of the injected activity (decay-corrected) is "
        "unaccounted for by the field of view and the removed activity.")
    register: bool = _opt(False, "Register time points to the reference CT.")
    reference: int = _opt(0, "Reference time point for registration (labels live there).")
    # labels carried through registration: see spectrack.align.resample.resample_labels ("vote" = "linear")
    label_resampling: str = _opt("linear", "Labels through registration: linear (each region interpolated "
                                 "linearly, largest wins; alias vote) | nearest | gaussian.")
    auto_regions: str | None = _opt(None, f"Automatic regions: {' | '.join(SPECIES)}.", shown="none")
    canal_boundaries_mm: list[float] | None = _opt(
        None, "Canal level boundaries, 3 distances (mm) along the canal from its sacral end, comma-separated.",
        shown="preset fractions")
    neuraxis_margin_mm: float = _opt(0.0, "Margin (mm) around the canal for the neuraxis profile (PSF spill).")
    pvc: bool = _opt(False, "GTM recovery (partial-volume) correction.")
    psf_fwhm_mm: float | None = _opt(None, "Reconstructed system resolution FWHM (mm) for --pvc.",
                                     shown="species preset")
    resolution: str | None = _opt(None, "Resolution file from 'spectrack resolution' (FWHM measured on a source "
                                  "reconstructed like the study) for --pvc.", shown="none")
    pvc_masks: str = _opt("whole", "Region masks for --pvc: whole (each voxel to one region) | fractional (the "
                          "share of each voxel in each region, from labels on a finer grid such as the CT's).")
    injected_region: str | None = _opt(
        None, "Region(s) holding the injection, comma-separated: their kinetics integrals start at the "
        "back-extrapolated content instead of 0.", shown="injection_site and the region around it")
    calibration_cv: float = _opt(0.027, "Calibration coefficient of variation for the intervals.")
    noise_factor: float = _opt(1.0, "Variance of a region's summed counts over their Poisson variance, for the "
                               "intervals (measure it on replicate reconstructions; 1 = Poisson).")
    psf_fwhm_sd_mm: float | None = _opt(None, "SD (mm) of the PSF FWHM, carried through the GTM into the --pvc "
                                        "intervals.", shown="10 % of the FWHM, 20 % for a preset default")
    segmentation_sd_mm: float | None = _opt(None, "SD (mm) of a region boundary's position on the emission grid, for the intervals "
                                            "(one shift per interface; a segmentation's own error and the voxel's "
                                            "in quadrature).",
                                            shown="label voxel / sqrt(12)")
    uncertainty_draws: int = _opt(1000, "Monte Carlo draws for 95 % intervals (0 = none).")
    kinetics_draws: int = _opt(50, "Draws of each curve refitted for the intervals on TIA, MRT, TIAC and "
                               "half-lives (at most --uncertainty-draws; 0 = none).")
    seed: int = _opt(0, "Random seed of the Monte Carlo intervals.")
    report: bool = _opt(True, "Write the HTML report (batch: each study's and the cohort report).")
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def given(self) -> frozenset:
        """The fields set on purpose (an option, a settings file, a manifest column, a mapping's key).

        Recorded by :func:`settings_from_mapping` and the command line; a field
        that differs from its default counts as given too. A study file
        (:func:`apply_study_file`) fills only the fields not given.
        """
        return given_keys(self)

    def replace(self, **changes) -> "Settings":
        """A copy with ``changes``, keeping what was given on purpose (:func:`dataclasses.replace` forgets it)."""
        return with_given(dataclasses.replace(self, **changes), self.given)

    def datetime(self, name: str) -> dt.datetime | None:
        v = getattr(self, name)
        if v is None:
            return None
        from .load.nifti import parse_datetime

        return parse_datetime(v, f"--{name.replace('_', '-')}")


def option_name(key: str) -> str:
    """The command-line option of a setting: ``sensitivity_cps_per_mbq`` -> ``--sensitivity``."""
    f = _FIELDS[key]
    return "--" + (f.metadata.get("flag") or key).replace("_", "-")


class SettingError(InputError):
    """A setting with a bad value (exit 3 from a file; the CLI reports a bad option as a usage error, exit 2).

    Attributes
    ----------
    key : str
        The :class:`Settings` field.
    problem : str
        What is wrong, without the key (``must be positive, got 0.0``).
    """

    def __init__(self, where: str, key: str, shown: str, problem: str):
        self.key, self.problem = key, problem
        super().__init__(f"{where}: {shown} {problem}")


_FIELDS = {f.name: f for f in fields(Settings)}
#: Other accepted keys (the option name where it differs from the field): ``sensitivity``.
ALIASES = {f.metadata["flag"]: f.name for f in fields(Settings) if f.metadata.get("flag")}
_CHOICES = {"calibration": ("auto", "image", "sensitivity", "fov"),
            "species": (None,) + SPECIES,
            "auto_regions": (None,) + SPECIES,
            "label_resampling": ("linear", "nearest", "gaussian", "vote"),
            "pvc_masks": ("whole", "fractional")}
_POSITIVE = ("noise_factor", "sensitivity_cps_per_mbq", "injected_mbq", "half_life_h", "duration_s", "psf_fwhm_mm")
_NON_NEGATIVE = ("psf_fwhm_sd_mm", "segmentation_sd_mm", "neuraxis_margin_mm", "calibration_cv", "uncertainty_draws", "kinetics_draws", "fov_timepoint", "reference",
                 "residual_mbq", "dose_mg", "seed", "mass_balance_threshold_pct_id")
#: Inclusive ranges beyond which a value cannot be meant (and would overflow, exhaust memory or run for ever).
_RANGES = {
    "half_life_h": (1e-3, 1e7, "h (3.6 s to about 1,100 years)"),
    "uncertainty_draws": (0, 100_000, "draws (each costs one pass over the regions per time point)"),
    "kinetics_draws": (0, 10_000, "draws (each refits every curve: about 6 ms per curve)"),
    "duration_s": (0.0, 7 * 86400.0, "s (at most a week)"),
    "times_h": (0.0, 24 * 365.0, "h after injection (at most a year)"),
    "psf_fwhm_mm": (0.0, 200.0, "mm"),
    "psf_fwhm_sd_mm": (0.0, 50.0, "mm"),
    "segmentation_sd_mm": (0.0, 50.0, "mm"),
    "noise_factor": (0.0, 1e4, "(a variance ratio: 1 is Poisson)"),
    "calibration_cv": (0.0, 1.0, "(a fraction: 0.027 is 2.7 %)"),
    "seed": (0, 2**32 - 1, "(numpy's seed range)"),
    "neuraxis_margin_mm": (0.0, 100.0, "mm"),
    "sensitivity_cps_per_mbq": (0.0, 1e9, "cps/MBq"),
    "injected_mbq": (0.0, 1e6, "MBq (1 TBq)"),
    "dose_mg": (0.0, 1e6, "mg (1 kg)"),
    "mass_balance_threshold_pct_id": (0.0, 100.0, "%ID"),
}


def is_label_pattern(value) -> bool:
    """Whether a ``labels`` setting is resolved per study (``{study}``, ``{name}``, ``*`` or ``?``)."""
    s = str(value)
    return any(t in s for t in ("{study}", "{name}", "*", "?"))


def labels_for_study(value, study_path) -> str | None:
    """The label file a ``labels`` setting names for one study.

    Parameters
    ----------
    value : str or None
        A path (returned as given), or a pattern: ``{study}`` is replaced by
        the study folder, ``{name}`` by its name; then ``*``/``?`` (``**``
        for any depth) glob relative to the study folder, and exactly one
        match is required (``[`` is literal).
    study_path : path-like
        The study folder (or study file, or one of its image files).

    Raises
    ------
    LabelError
        When a pattern matches no file or several.

    Examples
    --------
    >>> labels_for_study("{study}/labels.nii.gz", "/data/rat01")
    '/data/rat01/labels.nii.gz'
    >>> labels_for_study("/atlas/{name}.nii.gz", "/data/rat01")
    '/atlas/rat01.nii.gz'
    """
    if value is None or not is_label_pattern(value):
        return value
    from .errors import LabelError

    p = Path(study_path)
    folder = p if p.is_dir() or not p.suffix else p.parent
    name = folder.name if folder == p else (p.name[:-7] if p.name.endswith(".nii.gz") else p.stem)
    text = str(value).replace("{study}", str(folder)).replace("{name}", name)
    if "*" not in text and "?" not in text:
        return text
    pat = Path(text)
    anchor = Path(pat.anchor) if pat.is_absolute() else folder
    rel = pat.relative_to(pat.anchor) if pat.is_absolute() else pat
    hits = sorted(q for q in anchor.glob(str(rel).replace("[", "[[]")) if not q.name.startswith("."))
    if not hits:
        raise LabelError(f"--labels {value}: no file matches it in {folder}: check the pattern (relative to "
                         "the study folder; {study} is the folder, {name} its name)")
    if len(hits) > 1:
        shown = ", ".join(str(h.relative_to(anchor)) for h in hits[:4])
        raise LabelError(f"--labels {value}: {len(hits)} files match it in {folder} ({shown}"
                         f"{', ...' if len(hits) > 4 else ''}): make the pattern match one")
    return str(hits[0])


def _unknown(where: str, key) -> InputError:
    import difflib

    known = sorted(set(_FIELDS) - {"extra"} | set(ALIASES))
    close = difflib.get_close_matches(str(key).replace("-", "_"), known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return InputError(f"{where}: unknown setting {key!r}; {hint}known: {', '.join(known)}")


def settings_from_mapping(data: dict, *, where: str = "settings", base: Path | None = None) -> Settings:
    """Validate a mapping into :class:`Settings`.

    Parameters
    ----------
    data : dict
        Keys of :class:`Settings` or their option names (``-`` may replace
        ``_``; ``sensitivity`` for ``sensitivity_cps_per_mbq``). Unknown keys
        fail, naming the closest known key.
    where : str
        Named in error messages (a file name, a manifest row).
    base : Path, optional
        Relative ``labels`` paths are resolved against it (patterns with
        ``{study}``, ``*``... are left to be resolved per study).

    Raises
    ------
    SettingError
        A value of the wrong type or out of range (an :class:`InputError`).
    InputError
        An unknown key, or a key given twice (as field and as option name).
    """
    out: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for key, val in data.items():
        k = str(key).replace("-", "_")
        k = ALIASES.get(k, k)
        if k not in _FIELDS:
            raise _unknown(where, key)
        if k in seen:
            raise InputError(f"{where}: {seen[k]!r} and {key!r} are the same setting: give it once")
        seen[k] = str(key)
        if val is None or (isinstance(val, str) and val == ""):
            continue
        t = _FIELDS[k].type
        try:
            if ("float" in t or t == "int") and type(val).__name__ in ("bool", "bool_"):
                raise TypeError(val)  # True is not 1.0 cps/MBq: a number must be written as one
            if k in ("times_h", "canal_boundaries_mm"):
                if not isinstance(val, str) and any(type(v).__name__ in ("bool", "bool_") for v in val):
                    raise TypeError(val)
                if isinstance(val, str):
                    val = [float(v) for v in val.replace(";", ",").split(",") if v.strip()]
                else:
                    val = [float(v) for v in val]
            elif "float" in t:
                val = float(val)
            elif t == "int":
                if isinstance(val, str):  # '3' and '3.0' as the command line takes them; '1e6', '1.5' refused
                    import re

                    if not re.fullmatch(r"\s*[+-]?[0-9]+(_[0-9]+)*(\.0*)?\s*", val):
                        raise ValueError(val)
                    val = int(val.strip().split(".")[0])
                if isinstance(val, float) and not val.is_integer():
                    raise ValueError(val)
                val = int(val)
            elif t == "bool":
                if isinstance(val, str):
                    if val.lower() not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError(val)
                    val = val.lower() in ("true", "1", "yes")
                else:
                    val = bool(val)
            elif "str" in t:
                if k == "density_g_per_ml" and isinstance(val, dict):  # a TOML table: brain = 1.04 ...
                    val = ",".join(f"{n}={v}" for n, v in val.items())
                if isinstance(val, (dt.datetime, dt.date)):
                    val = val.isoformat()
                val = str(val)
        except (TypeError, ValueError):
            kind = t.replace(" | None", "").replace("list[float]", "numbers, comma-separated")
            raise SettingError(where, k, str(key), f"has a bad value {val!r} (expected {kind})") from None
        nums = val if isinstance(val, list) else [val] if isinstance(val, (int, float)) and not isinstance(val, bool) \
            else []
        try:
            finite = all(math.isfinite(v) for v in nums)
        except OverflowError:  # an integer beyond any float
            raise SettingError(where, k, str(key), f"is far too large ({len(str(val))} digits)") from None
        if not finite:
            raise SettingError(where, k, str(key), f"must be a finite number, got {val!r}")
        if k == "radionuclide":
            from .physics import nuclide

            try:
                nuclide(val)
            except KeyError as e:
                raise SettingError(where, k, str(key), f"is not a known radionuclide ({e.args[0].split('; ')[-1]}); "
                                   "or give --half-life-h") from None
        if k in _CHOICES and val not in _CHOICES[k]:
            raise SettingError(where, k, str(key), f"must be one of {', '.join(str(c) for c in _CHOICES[k] if c)}, "
                               f"got {val!r}")
        if k in _POSITIVE and not val > 0:
            raise SettingError(where, k, str(key), f"must be positive, got {val}")
        if k in _NON_NEGATIVE and not val >= 0:
            raise SettingError(where, k, str(key), f"must be zero or positive, got {val}")
        if k in _RANGES and nums:
            lo, hi, unit = _RANGES[k]
            bad = [v for v in nums if not lo <= v <= hi]
            if bad:
                raise SettingError(where, k, str(key), f"must be between {lo:g} and {hi:g} {unit}, got {bad[0]:g}")
        if k == "canal_boundaries_mm" and len(val) != 3:
            raise SettingError(where, k, str(key), "needs 3 distances (mm from the sacral end): sacral/lumbar, "
                               "lumbar/thoracic, thoracic/cervical")
        if k == "labels" and base is not None and not is_label_pattern(val) and not Path(val).is_absolute():
            val = str((base / val).resolve())
        if k == "density_g_per_ml":
            from .quantification.balance import parse_densities

            try:
                parse_densities(val)
            except InputError as exc:
                raise SettingError(where, k, str(key), f"cannot be read: {exc}") from None
        if k in ("resolution", "removed") and base is not None and not Path(val).is_absolute():
            val = str((base / val).resolve())
        out[k] = val
    s = with_given(Settings(**out), out)
    for name in ("injection_time", "injected_measured_at", "residual_time"):
        try:
            s.datetime(name)  # validates the format now, not mid-run
        except InputError:
            raise SettingError(where, name, seen[name], f"cannot be read as a date-time ({getattr(s, name)!r}): "
                               f"write it as ISO 8601, e.g. 2026-03-14T21:40:00") from None
    return s


def read_settings_file(path) -> Settings:
    """Read settings from a TOML (``[spectrack]`` table or top level) or JSON file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read config {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise InputError(f"config {path} is not UTF-8 text (byte {e.start}): save it as UTF-8") from None
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ValueError as e:
        raise InputError(f"config {path} is not valid {path.suffix[1:].upper()}: {e}") from None
    if not isinstance(data, dict):
        raise InputError(f"config {path} holds a {type(data).__name__}, not a table of settings: write "
                         "{\"sensitivity\": 30, ...} (JSON) or key = value lines (TOML)")
    if isinstance(data.get("spectrack"), dict):
        data = data["spectrack"]
    return settings_from_mapping(data, where=str(path), base=path.parent)


# ---------------------------------------------------------------- what was given on purpose

_DEFAULTS: dict | None = None


def _defaults() -> dict:
    global _DEFAULTS
    if _DEFAULTS is None:
        _DEFAULTS = dataclasses.asdict(Settings())
    return _DEFAULTS


def given_keys(settings: Settings) -> frozenset:
    """The fields of ``settings`` given on purpose (see :attr:`Settings.given`)."""
    recorded = getattr(settings, "_given", frozenset())
    default = _defaults()
    changed = {k for k, v in dataclasses.asdict(settings).items() if k != "extra" and v != default[k]}
    return frozenset(recorded) | changed


def with_given(settings: Settings, keys) -> Settings:
    """``settings`` recording ``keys`` (field names) as given on purpose; returns ``settings``.

    A value given on purpose that equals the default (``--calibration auto``,
    ``--no-pvc``) still overrides a study file.
    """
    keys = {ALIASES.get(str(k).replace("-", "_"), str(k).replace("-", "_")) for k in keys}
    object.__setattr__(settings, "_given", frozenset(k for k in keys if k in _FIELDS and k != "extra"))
    return settings


# ---------------------------------------------------------------- the study file

#: Names of the study file looked for in a study folder (the first found is used).
STUDY_FILE_NAMES = ("spectrack.toml", "study.toml", "spectrack.json")
#: Study-file keys that are not settings: read by :func:`spectrack.load.load_study`.
LOADER_KEYS = ("timepoints", "images", "units")
#: Settings the loader and the dose resolution read from the study file themselves (naming it as their
#: source); :func:`apply_study_file` checks them but leaves them to those steps.
READ_WHERE_USED = ("subject", "injected_mbq", "injection_time", "half_life_h", "radionuclide")


def find_study_file(path) -> Path | None:
    """The study file of a study: ``path`` itself (a ``.toml``/``.json`` file), or one of
    :data:`STUDY_FILE_NAMES` in the folder ``path``; ``None`` otherwise (also for a list of files)."""
    if path is None or isinstance(path, (list, tuple)):
        return None
    if not isinstance(path, str) and not isinstance(getattr(path, "__fspath__", lambda: None)(), str):
        return None  # not a path: load_study says so in one line
    p = Path(path)
    if p.is_file():
        return p if p.suffix.lower() in (".toml", ".json") else None
    if p.is_dir():
        for name in STUDY_FILE_NAMES:
            if (p / name).is_file():
                return p / name
    return None


def _read_mapping(path: Path, what: str) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read {what} {path}: {e.strerror}") from None
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ValueError as e:
        raise InputError(f"{what} {path} is not valid {path.suffix[1:].upper()}: {e}") from None
    if not isinstance(data, dict):
        raise InputError(f"{what} {path} must hold a table of keys (sensitivity = 30, labels = \"...\")")
    return data


def read_study_file_settings(path) -> tuple[Settings, dict]:
    """The settings a study file gives, validated.

    Parameters
    ----------
    path : path-like
        A study file (see :func:`spectrack.load.read_study_file`): settings-file
        keys (``sensitivity = 30``, ``labels = "labels.nii.gz"``...) beside the
        loader's own keys (:data:`LOADER_KEYS`). Relative ``labels`` are
        relative to the file.

    Returns
    -------
    settings : Settings
        With :attr:`Settings.given` the keys the file gives.
    raw : dict
        The file's settings keys as written (without the loader keys).

    Raises
    ------
    InputError
        An unreadable file, an unknown key (the closest known one is named) or
        a bad value (exit 3).
    """
    path = Path(path)
    data = _read_mapping(path, "study file")
    raw = {k: v for k, v in data.items() if k not in LOADER_KEYS}
    return settings_from_mapping(raw, where=f"study file {path}", base=path.parent), raw


def apply_study_file(settings: Settings, path) -> tuple[Settings, dict | None]:
    """Fill the settings not given on purpose from the study's study file.

    Parameters
    ----------
    settings : Settings
        The run's settings; the fields in :attr:`Settings.given` (options,
        settings file, manifest) win over the study file.
    path : path-like
        The study (folder or study file); see :func:`find_study_file`.

    Returns
    -------
    settings : Settings
        The settings to run with (the same object when there is no study file).
    record : dict or None
        For ``study.json``: ``path``, ``sha256``, ``settings`` (what the file
        gives), ``used`` (the keys taken from it) and ``overridden``
        (``{key: {"study_file": value, "used": value}}``); ``None`` without a
        study file.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = (Path(d) / "spectrack.toml").write_text('sensitivity = 30\\ncalibration = "fov"\\n')
    ...     s, rec = apply_study_file(settings_from_mapping({"calibration": "auto"}), d)
    >>> s.sensitivity_cps_per_mbq, s.calibration, rec["overridden"]
    (30.0, 'auto', {'calibration': {'study_file': 'fov', 'used': 'auto'}})
    """
    from .io_utils import sha256_file

    sf = find_study_file(path)
    if sf is None:
        return settings, None
    own, _ = read_study_file_settings(sf)
    given = settings.given
    file_keys = sorted(own.given)
    used, overridden, changes = [], {}, {}
    for k in file_keys:
        mine, theirs = getattr(settings, k), getattr(own, k)
        if k in given and mine != theirs:
            overridden[k] = {"study_file": theirs, "used": mine}
            continue
        used.append(k)
        if k not in READ_WHERE_USED:
            changes[k] = theirs
    out = settings.replace(**changes) if changes else settings
    record = {"path": str(sf.resolve()), "sha256": sha256_file(sf),
              "settings": {k: getattr(own, k) for k in file_keys}, "used": used, "overridden": overridden}
    return out, record
