"""Kinetics: time-activity curves, fits, integrals, intervals on the derived numbers.

* :mod:`~spectrack.kinetics.tac`: curves per region from the quantification table;
* :mod:`~spectrack.kinetics.fits`: mono-, bi-exponential, uptake-washout and
  transit (delayed arrival) fits, model choice by AICc (simplest model within
  2 units, R^2 >= 0.9);
* :mod:`~spectrack.kinetics.auc`: AUC / time-integrated activity (TIA) and its
  coefficient (MIRD residence time), Cmax, Tmax, half-lives, MRT;
* :mod:`~spectrack.kinetics.analyse`: all of it for every region of a table
  (:func:`analyse_kinetics`, the pipeline's kinetics stage);
* :mod:`~spectrack.kinetics.uncertainty`: Monte Carlo intervals on everything
  derived from %ID.

Recovery correction (GTM) and the %ID intervals work on one time point's
regions and live in :mod:`spectrack.quantification` (``recovery``,
``recovery_table``, ``resolution``, ``intervals``); their names are
re-exported here, and :mod:`~spectrack.kinetics.recovery`,
:mod:`~spectrack.kinetics.resolution` are kept for compatibility.
"""

from ..quantification.count_intervals import DEFAULT_CALIBRATION_CV, pct_id_interval, percentile_interval
from ..quantification.interval_terms import boundary_sd_mm, region_spread
from ..quantification.intervals import add_pct_id_intervals, noise_factor_from_replicates
from ..quantification.recovery import (
    FWHM_PRESETS_MM,
    GTMResult,
    cylinder_rc,
    default_fwhm_mm,
    gtm_correct,
    gtm_matrix,
    sigma_voxels,
    sphere_rc,
)
from ..quantification.recovery_table import add_gtm_correction
from ..quantification.resolution import measure_fwhm
from .analyse import KineticsResult, analyse_kinetics
from .auc import (
    Integral,
    KineticSummary,
    back_extrapolate,
    biological_half_life_h,
    effective_from_biological_h,
    effective_half_life_h,
    integrate_fit,
    integrate_tac,
    peak,
    tac_metrics,
)
from .fits import DEFAULT_MODELS, MODELS, FitResult, ModelSelection, fit_models, fit_tac, fits_to_frame, model_function
from .tac import QUANTITIES, TAC, get_tac, time_activity_curves
from .uncertainty import derived_intervals, propagate

__all__ = [
    "QUANTITIES", "TAC", "get_tac", "time_activity_curves",
    "DEFAULT_MODELS", "MODELS", "FitResult", "ModelSelection", "fit_models", "fit_tac", "fits_to_frame", "model_function",
    "Integral", "KineticSummary", "KineticsResult", "analyse_kinetics", "back_extrapolate", "integrate_tac", "integrate_fit", "peak",
    "effective_half_life_h", "biological_half_life_h", "effective_from_biological_h", "tac_metrics",
    "FWHM_PRESETS_MM", "GTMResult", "add_gtm_correction", "cylinder_rc", "sphere_rc", "default_fwhm_mm",
    "gtm_correct", "gtm_matrix", "measure_fwhm", "sigma_voxels",
    "DEFAULT_CALIBRATION_CV", "add_pct_id_intervals", "derived_intervals", "pct_id_interval",
    "percentile_interval", "propagate", "region_spread", "boundary_sd_mm", "noise_factor_from_replicates",
]
from .stage import analyse_study, injected_regions
__all__ += ["analyse_study", "injected_regions"]
