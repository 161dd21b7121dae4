"""Quantify: calibration to MBq, decay correction, %ID per region."""

from .calibration import Calibration, calibrate_study
from .core import TABLE_COLUMNS, QuantResult, quantify
from .parameters import DoseParameters, resolve_parameters
from .stats import RegionIndex, region_stats

__all__ = ["quantify", "QuantResult", "TABLE_COLUMNS", "Calibration", "calibrate_study", "DoseParameters",
           "resolve_parameters", "RegionIndex", "region_stats"]
from .stage import StudyQuantities, quantify_study
__all__ += ["StudyQuantities", "quantify_study"]
