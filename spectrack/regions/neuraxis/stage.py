"""The neuraxis stage of a study run: %ID along the canal, its front and spread, and %ID per vertebra.

:func:`profile_neuraxis` is what :func:`spectrack.pipeline.run_study` does after the kinetics when the regions
have canal levels: :func:`spectrack.regions.neuraxis.profile_study` and the measures derived from it, gathered
in a :class:`NeuraxisProfile`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["NeuraxisProfile", "profile_neuraxis"]


@dataclass
class NeuraxisProfile:
    """The canal profile of a study and what is derived from it (all None, no warning, without canal levels)."""

    #: %ID per slab along the canal centreline per time point (:func:`spectrack.regions.neuraxis.profile_study`)
    profile: object | None = None  # pandas.DataFrame
    #: the half-maximum front per time point (:func:`spectrack.regions.neuraxis.tracer_front`, as records)
    front: list | None = None
    #: rostral fractions, leading edge, arrival and spread rate (:func:`spectrack.regions.neuraxis.spread_measures`)
    spread: dict | None = None
    #: the profile's warnings, then the vertebra table's
    warnings: list[str] = field(default_factory=list)
    #: %ID per vertebra (:func:`spectrack.regions.neuraxis.vertebra_table`), when automatic regions counted the
    #: vertebrae on the CT
    vertebrae: object | None = None  # pandas.DataFrame


def profile_neuraxis(study, details, label_map, *, margin_mm: float) -> NeuraxisProfile:
    """The canal profile of a quantified study, when its regions have canal levels.

    Parameters
    ----------
    study : Study
        The quantified study.
    details : QuantResult
        The labels on each emission grid, the calibrations and the dose parameters
        (:attr:`spectrack.quantification.stage.StudyQuantities.details`).
    label_map : LabelMap
        The source regions (or their record without voxels): their names, and the vertebrae found by automatic
        regions (``image.meta["auto_regions"]``).
    margin_mm : float
        Margin around the canal for the profile, for the PSF spill (``settings.neuraxis_margin_mm``).

    Returns
    -------
    NeuraxisProfile
    """
    from ..vocabulary import CANAL_LEVELS

    neuraxis = front = spread = vert_table = None
    neuraxis_warnings: list[str] = []
    if not any(n in CANAL_LEVELS for n in label_map.names.values()):
        return NeuraxisProfile(neuraxis, front, spread, neuraxis_warnings, vert_table)
    from .profile import profile_study
    from .spread import spread_measures, tracer_front

    neuraxis = profile_study(study, details.labels_per_timepoint, details.calibrations, details.params,
                             margin_mm=margin_mm)
    if len(neuraxis):
        front = tracer_front(neuraxis).to_dict(orient="records")
        sp = spread_measures(neuraxis)
        spread = {"per_timepoint": sp.to_dict(orient="records"), **{k: v for k, v in sp.attrs.items()}}
    neuraxis_warnings = list(neuraxis.attrs.get("warnings", []))
    auto_meta = label_map.image.meta.get("auto_regions") if isinstance(label_map.image.meta, dict) else None
    if isinstance(auto_meta, dict) and auto_meta.get("vertebrae") and len(neuraxis):
        from .vertebrae import vertebra_table

        vert_table = vertebra_table(neuraxis, auto_meta["vertebrae"])
        neuraxis_warnings += vert_table.attrs.get("warnings", [])
    return NeuraxisProfile(neuraxis, front, spread, neuraxis_warnings, vert_table)
