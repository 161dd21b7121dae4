"""The Quantify dock's form, without Qt: what a study says about its own quantification.

:func:`study_defaults` reads a study's own settings (its study file, validated
by :func:`spectrack.settings.settings_from_mapping`; for the sample data, the
phantom's known calibration), then its headers and sidecars (injected
activity, injection time, half-life, species), then what lies beside it (a
label map). What the study does not say is left empty, so a run that needs it
stops with one clear line instead of a number computed with another study's
value. The widget (:mod:`spectrack_napari._quantify`) shows these values in its
fields; :mod:`spectrack_napari._results` shows what a run gives.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

__all__ = ["StudyDefaults", "study_defaults", "species_preset"]

SOURCE_LAYER = "Labels layer"
SOURCE_FILE = "Label file"
SOURCE_AUTO = "Automatic regions"
CALIBRATIONS = ("auto", "image", "sensitivity", "fov")
#: Species with a preset (automatic regions, default PSF FWHM).
PRESETS = ("rat", "nhp", "human")
NO_SPECIES = "not given"
#: Rows of the results table (the same as ``spectrack quantify`` prints).
TABLE_KINDS = ("region", "group", "fov")
#: Settings the dock's fields stand for (the rest of a study's own settings pass through as they are).
FIELD_KEYS = ("calibration", "sensitivity_cps_per_mbq", "injected_mbq", "injection_time", "half_life_h",
              "species", "labels", "auto_regions")

# PatientSpeciesDescription (0010,2201) words -> preset (DICOM uses Latin or common names)
_SPECIES_WORDS = (
    ("rat", ("rattus", "rat", "rats")),
    ("nhp", ("macaca", "macaque", "monkey", "primate", "cynomolgus", "rhesus", "fascicularis", "mulatta",
             "callithrix", "marmoset", "chlorocebus", "papio", "baboon")),
    ("human", ("homo", "human")),
)


def species_preset(description) -> str | None:
    """The preset of a DICOM species description (``"Rattus norvegicus"`` -> ``"rat"``), or None.

    Examples
    --------
    >>> species_preset("Macaca fascicularis"), species_preset("Rattus norvegicus"), species_preset("Canis")
    ('nhp', 'rat', None)
    """
    words = set(re.findall(r"[a-z]+", str(description or "").lower()))
    for preset, names in _SPECIES_WORDS:
        if words & set(names):
            return preset
    return None


@dataclasses.dataclass
class StudyDefaults:
    """What a study says about its own quantification.

    Attributes
    ----------
    study : spectrack.load.Study
    values : dict
        Settings field -> ``(value, source)`` for every field the study gives
        (dose and times from headers, sidecars or study file; species;
        sensitivity and calibration from the study's own settings).
    own : dict
        The study's own settings (study file, sample data) other than the
        dock's fields: passed through to the run unchanged.
    label_file : tuple of (Path, str) or None
        A label map to quantify with and where it was found.
    """

    study: object
    values: dict
    own: dict
    label_file: tuple | None = None


def _own_settings(raw: dict, *, where: str, base: Path | None) -> dict:
    """The Settings fields a mapping gives, validated (keys spectrack does not know are left to the loader)."""
    from spectrack import settings as sm

    known = {f.name for f in dataclasses.fields(sm.Settings)} - {"extra"}
    known |= set(getattr(sm, "ALIASES", {}))
    picked = {k: v for k, v in (raw or {}).items() if str(k).replace("-", "_") in known}
    if not picked:
        return {}
    s = sm.settings_from_mapping(picked, where=where, base=base)
    default = sm.Settings()
    return {k: v for k, v in dataclasses.asdict(s).items() if k != "extra" and v != getattr(default, k)}


def _beside(study) -> Path | None:
    """The single label map in the study's folder, else in the folder above it (e.g. beside ``dicom/``)."""
    from spectrack.load.nifti import is_label_file

    p = Path(study.path)
    folder = p.parent if p.is_file() else p
    for d in (folder, folder.parent):
        try:
            found = sorted(q for q in d.iterdir() if q.is_file() and q.name.endswith((".nii", ".nii.gz"))
                           and not q.name.startswith(".") and is_label_file(q))
        except OSError:
            continue
        if len(found) == 1:
            return found[0]
        if found:  # several: the user chooses
            return None
    return None


def study_defaults(path, *, extra: dict | None = None, extra_source: str = "") -> StudyDefaults:
    """Load a study and collect what it says about its quantification (runs in a worker).

    Parameters
    ----------
    path : path-like
        The study (see :func:`spectrack.load.load_study`).
    extra : dict, optional
        Settings that come with the study from elsewhere (the sample data's
        known calibration), named ``extra_source`` in the tooltips.

    Returns
    -------
    StudyDefaults
    """
    from spectrack.errors import SpectrackError
    from spectrack.load import load_study
    from spectrack.quantification.parameters import resolve_parameters

    study = load_study(path)
    sp = Path(study.path)
    base = sp.parent if sp.is_file() else sp
    values: dict[str, tuple[object, str]] = {}
    own: dict[str, object] = {}
    file_settings = getattr(study, "settings", None) or {}
    if file_settings:  # the study file beside the data
        where = sp.name if sp.is_file() else "study file"
        for k, v in _own_settings(file_settings, where=where, base=base).items():
            own[k] = v
            values[k] = (v, f"study file {where}")
    if extra:
        for k, v in _own_settings(extra, where=extra_source or "study", base=base).items():
            own.setdefault(k, v)
            values.setdefault(k, (v, extra_source or "study"))
    try:  # what the run would use, with sources (reads the study file too)
        p = resolve_parameters(study)
    except SpectrackError:  # something is missing: take what the headers have
        p = None
    found = {}
    if p is not None:
        for key in ("injected_mbq", "injection_time", "half_life_h", "radionuclide"):
            s = getattr(p, key)
            found[key] = (s.value, s.source)
    em = study.timepoints[0].emission
    for key, meta_key in (("injected_mbq", "injected_activity_mbq"), ("injection_time", "injection_time"),
                          ("half_life_h", "half_life_h"), ("radionuclide", "radionuclide")):
        if key not in found and em.get(meta_key) is not None:
            found[key] = (em.get(meta_key), em.source(meta_key) or "header")
    for key, vs in found.items():  # the resolved values replace the raw study-file ones (same numbers)
        values[key] = vs
    if "species" not in values:
        for s in [tp.emission for tp in study.timepoints] + [tp.ct for tp in study.timepoints if tp.ct]:
            preset = species_preset(s.get("species_description"))
            if preset is not None:
                values["species"] = (preset, f"{s.source('species_description') or 'header'} "
                                              f"({s.get('species_description')})")
                break
    label_file = None
    if "labels" in own:
        from spectrack import settings as sm

        lab = own["labels"]
        if hasattr(sm, "labels_for_study"):  # a per-study pattern ('{study}/labels.nii.gz', '*_dseg.nii.gz')
            lab = sm.labels_for_study(lab, study.path)
        label_file = (Path(lab), values["labels"][1])
    else:
        lf = _beside(study)
        if lf is not None:
            label_file = (lf, "found beside the study")
    for k in FIELD_KEYS:
        own.pop(k, None)
    return StudyDefaults(study=study, values=values, own=own, label_file=label_file)
