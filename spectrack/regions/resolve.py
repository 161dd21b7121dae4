"""The regions stage of a study run: which regions, drawn on which time point, and the files they came from.

:func:`resolve_regions` reads the regions a run was given (a label map, a path, or the study file's
``labels``) and finds the time point they were drawn on, which becomes the reference;
:func:`add_auto_regions` segments them automatically when none were given (after the registration has
started: it does not need the regions). Both return a :class:`StudyRegions`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, LabelError

__all__ = ["StudyRegions", "add_auto_regions", "resolve_regions"]


@dataclass
class StudyRegions:
    """The regions of a study run."""

    #: one LabelMap, one per time point, or None until :func:`add_auto_regions` segments them
    label_map: object | None
    #: the reference time point: ``settings.reference``, or the time point the regions were drawn on
    reference: int
    #: the time point the region file says it was drawn on (None when it says nothing)
    drawn_on: int | None = None
    #: the region files read (with their names sidecars), for the provenance record
    inputs: list[Path] = field(default_factory=list)

    def without_voxels(self) -> StudyRegions:
        """The same regions with the (first) label map replaced by its names, source and metadata: its array,
        CT-sized, is let go (the kinetics and neuraxis stages need no more)."""
        from types import SimpleNamespace

        lm = self.label_map[0] if isinstance(self.label_map, list) else self.label_map
        record = SimpleNamespace(names=lm.names, source=lm.source, meta=lm.meta,
                                 image=SimpleNamespace(meta=lm.image.meta))
        return dataclasses.replace(self, label_map=record)


def resolve_regions(study, settings, *, labels=None) -> StudyRegions:
    """The regions a run was given, read and placed on the study.

    Parameters
    ----------
    study : Study
        The loaded study (its study file's ``labels``, relative to the study, is used when nothing else is).
    settings : Settings
        ``settings.labels`` (an absolute path), ``settings.reference`` and ``settings.auto_regions``.
    labels : LabelMap, list of LabelMap or path, optional
        Regions; override ``settings.labels``.

    Returns
    -------
    StudyRegions
        ``label_map`` None when automatic regions are to be made (:func:`add_auto_regions`). A label map given
        as an object is copied before the warning about its time point is added.

    Raises
    ------
    LabelError
        No regions given and no automatic regions asked for.
    InputError
        ``labels`` of another type.
    """
    from .labelmap import LabelMap

    label_inputs = []
    lab = labels if labels is not None else settings.labels
    study_settings = getattr(study, "settings", {}) or {}
    if lab is None and study_settings.get("labels") and study.path is not None:
        base = Path(study.path)
        lab = str((base.parent if base.is_file() else base) / study_settings["labels"])
    reference = settings.reference
    drawn_on = None  # the time point the region file says it was drawn on
    if isinstance(lab, (str, Path)) or hasattr(lab, "__fspath__"):
        from .formats.names import names_sidecar
        from .placement import read_study_regions

        lab_path = Path(lab)
        lab, drawn_on = read_study_regions(lab_path, study, reference_index=settings.reference)
        if lab_path.is_dir():
            label_inputs += [p for p in lab_path.rglob("*") if p.is_file()]
        else:
            sidecar = names_sidecar(lab_path)
            label_inputs += [lab_path] + ([sidecar] if sidecar else [])
    if lab is None and not settings.auto_regions:
        raise LabelError("no regions given: pass a label map with --labels FILE (NIfTI with a names TSV) "
                         "or ask for automatic regions with --auto-regions rat|nhp|human")
    if not isinstance(lab, (LabelMap, list, type(None))):
        raise InputError(f"labels must be a LabelMap or a path, got {type(lab).__name__}")
    if isinstance(lab, LabelMap) and drawn_on is None:
        from .placement import locate_regions

        drawn_on = locate_regions(lab, study, reference_index=settings.reference)
        lab = lab._derived(lab.image, lab.overlaps)  # warnings below must not change the caller's object
    if drawn_on is not None and drawn_on != settings.reference:
        lab.warnings.append(f"regions {Path(lab.source).name or 'given'} were drawn on time point {drawn_on}'s images "
                            f"(FrameOfReferenceUID {lab.meta.get('frame_of_reference_uid')}), not on the reference "
                            f"time point {settings.reference}: time point {drawn_on} is used as the reference")
        reference = drawn_on
    return StudyRegions(label_map=lab, reference=reference, drawn_on=drawn_on, inputs=label_inputs)


def add_auto_regions(study, settings, regions: StudyRegions) -> StudyRegions:
    """``regions``, with regions segmented automatically when none were given.

    Parameters
    ----------
    study : Study
        The loaded study.
    settings : Settings
        ``settings.auto_regions`` (the preset), ``settings.reference`` and ``settings.canal_boundaries_mm``.
    regions : StudyRegions
        From :func:`resolve_regions`.

    Returns
    -------
    StudyRegions
        ``regions`` itself when it has a label map; otherwise a copy with the regions of
        :func:`spectrack.regions.auto.ct.segment_study`.
    """
    if regions.label_map is not None:
        return regions
    from .auto.ct import segment_study

    lab = segment_study(study, preset=settings.auto_regions, reference=settings.reference,
                        canal_boundaries_mm=settings.canal_boundaries_mm)
    return dataclasses.replace(regions, label_map=lab)
