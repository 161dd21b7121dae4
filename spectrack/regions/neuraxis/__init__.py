"""Neuraxis profile: activity along the spinal canal, sacrum to skull base, per time point.

* :mod:`.profile`: the profile itself (slabs along the centreline, partial-voxel weights);
* :mod:`.spread`: the rostral tracer front and the spread measures;
* :mod:`.vertebrae`: %ID per vertebra along the canal;
* :mod:`.output`: the profile's CSV files and figure;
* :mod:`.stage`: :func:`~.stage.profile_neuraxis`, the step of a study run.

Every public name of these modules that ``spectrack.regions.neuraxis`` exported before it became a package is
re-exported here, on first use (PEP 562) so that importing :mod:`spectrack.regions` stays light.
"""

__all__ = ["Centreline", "centreline_from_labels", "neuraxis_profile", "profile_study", "tracer_front",
           "spread_measures", "SPREAD_COLUMNS", "vertebra_table", "VERTEBRA_COLUMNS",
           "write_profile", "plot_profile", "PROFILE_COLUMNS", "FRONT_COLUMNS",
           "PROFILE_AXIS_LABELS", "EDGE_FRACTION", "WINDOW_MM", "ARRIVAL_FRACTION"]

#: name -> the module that holds it, relative to this package
_HOMES = {
    "Centreline": "..centreline",
    "centreline_from_labels": ".profile", "neuraxis_profile": ".profile", "profile_study": ".profile",
    "PROFILE_COLUMNS": ".profile",
    "tracer_front": ".spread", "spread_measures": ".spread", "SPREAD_COLUMNS": ".spread", "FRONT_COLUMNS": ".spread",
    "EDGE_FRACTION": ".spread", "WINDOW_MM": ".spread", "ARRIVAL_FRACTION": ".spread",
    "vertebra_table": ".vertebrae", "VERTEBRA_COLUMNS": ".vertebrae",
    "write_profile": ".output", "plot_profile": ".output", "PROFILE_AXIS_LABELS": ".output",
    # imported by the single module this package was, so importable from it
    "CANAL_LEVELS": "..vocabulary", "LabelMap": "..labelmap", "Image": "...geometry",
}


def __getattr__(name):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_HOMES))
