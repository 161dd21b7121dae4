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
from .count_intervals import DEFAULT_CALIBRATION_CV, pct_id_interval, percentile_interval
from .interval_terms import boundary_sd_mm, region_spread
from .intervals import add_pct_id_intervals, noise_factor_from_replicates
from .memory import check_draw_memory
from .parameters import DoseParameters, resolve_parameters
from .recovery import (
    FWHM_PRESETS_MM,
    GTMResult,
    cylinder_rc,
    default_fwhm_mm,
    gtm_correct,
    gtm_matrix,
    sigma_voxels,
    sphere_rc,
)
from .recovery_table import add_gtm_correction
from .resolution import image_fwhm_mm, measure_fwhm, measure_resolution, read_resolution_file
from .stats import RegionIndex, region_stats

__all__ = ["quantify", "QuantResult", "TABLE_COLUMNS", "Calibration", "calibrate_study", "DoseParameters",
           "resolve_parameters", "RegionIndex", "region_stats",
           "FWHM_PRESETS_MM", "GTMResult", "add_gtm_correction", "cylinder_rc", "sphere_rc", "default_fwhm_mm",
           "gtm_correct", "gtm_matrix", "sigma_voxels", "measure_fwhm", "measure_resolution", "read_resolution_file",
           "image_fwhm_mm",
           "DEFAULT_CALIBRATION_CV", "add_pct_id_intervals", "pct_id_interval", "percentile_interval",
           "region_spread", "boundary_sd_mm", "noise_factor_from_replicates", "check_draw_memory"]
