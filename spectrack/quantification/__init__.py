"""Quantify: calibration to MBq, decay correction, %ID per region, recovery correction, %ID intervals.

Recovery correction: :mod:`~spectrack.quantification.recovery` (analytic
recovery coefficients, the GTM of one image),
:mod:`~spectrack.quantification.recovery_table` (GTM columns of a table),
:mod:`~spectrack.quantification.resolution` (the measured PSF FWHM it needs).
%ID intervals: :mod:`~spectrack.quantification.intervals` (the table's Monte
Carlo intervals), :mod:`~spectrack.quantification.count_intervals` (the
single-value model from counts), :mod:`~spectrack.quantification.interval_terms`
(boundary shifts, the GTM of every draw), :mod:`~spectrack.quantification.memory`
(the draws' memory check).
"""

from .calibration import Calibration, calibrate_study
from .core import TABLE_COLUMNS, QuantResult, quantify
from .parameters import DoseParameters, resolve_parameters
from .stats import RegionIndex, region_stats

#: Names re-exported lazily (PEP 562), by the module that holds them: importing the package (for
#: :func:`quantify`) does not load the recovery correction and the interval code.
_LAZY = {name: module for module, names in (
    ("recovery", ("FWHM_PRESETS_MM", "GTMResult", "cylinder_rc", "sphere_rc", "default_fwhm_mm", "gtm_correct",
                  "gtm_matrix", "sigma_voxels")),
    ("recovery_table", ("add_gtm_correction",)),
    ("resolution", ("measure_fwhm", "measure_resolution", "read_resolution_file", "image_fwhm_mm")),
    ("intervals", ("add_pct_id_intervals", "noise_factor_from_replicates")),
    ("count_intervals", ("DEFAULT_CALIBRATION_CV", "pct_id_interval", "percentile_interval")),
    ("interval_terms", ("region_spread", "boundary_sd_mm")),
    ("memory", ("check_draw_memory",)),
    ("stage", ("StudyQuantities", "quantify_study")),
) for name in names}

__all__ = ["quantify", "QuantResult", "TABLE_COLUMNS", "Calibration", "calibrate_study", "DoseParameters",
           "resolve_parameters", "RegionIndex", "region_stats", *_LAZY]


def __getattr__(name):  # lazy re-exports (PEP 562)
    if name not in _LAZY:  # first: the import system asks for submodules by this hook too
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import count_intervals, interval_terms, intervals, memory, recovery, recovery_table, resolution, stage

    homes = {"count_intervals": count_intervals, "interval_terms": interval_terms, "intervals": intervals,
             "memory": memory, "recovery": recovery, "recovery_table": recovery_table, "resolution": resolution,
             "stage": stage}
    return getattr(homes[_LAZY[name]], name)
