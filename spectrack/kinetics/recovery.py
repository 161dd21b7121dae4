"""Recovery (partial-volume) correction: kept here for compatibility, it lives in :mod:`spectrack.quantification`.

Recovery correction works on one time point's image and regions, so it is
quantification; ``from spectrack.kinetics.recovery import ...`` keeps working:

* :mod:`spectrack.quantification.recovery`: ``FWHM_PRESETS_MM``,
  ``FWHM_TO_SIGMA``, ``default_fwhm_mm``, ``sigma_voxels``, ``sphere_rc``,
  ``cylinder_rc``, ``gtm_matrix``, ``gtm_matrix_fractional``, ``GTMResult``,
  ``gtm_correct``;
* :mod:`spectrack.quantification.recovery_table`: ``add_gtm_correction``;
* :mod:`spectrack.quantification.resolution`: ``measure_fwhm``.
"""

from ..quantification.recovery import (
    FWHM_PRESETS_MM,
    FWHM_TO_SIGMA,
    GTMResult,
    cylinder_rc,
    default_fwhm_mm,
    gtm_correct,
    gtm_matrix,
    gtm_matrix_fractional,
    sigma_voxels,
    sphere_rc,
)
from ..quantification.recovery_table import add_gtm_correction
from ..quantification.resolution import measure_fwhm

__all__ = [
    "FWHM_PRESETS_MM",
    "FWHM_TO_SIGMA",
    "default_fwhm_mm",
    "sigma_voxels",
    "sphere_rc",
    "cylinder_rc",
    "gtm_matrix",
    "gtm_matrix_fractional",
    "GTMResult",
    "gtm_correct",
    "add_gtm_correction",
    "measure_fwhm",
]
