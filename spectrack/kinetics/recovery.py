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

from ..quantification import recovery as _recovery
from ..quantification.recovery import *  # noqa: F401,F403 - every public name of the module that holds them
from ..quantification.recovery_table import add_gtm_correction
from ..quantification.resolution import measure_fwhm

__all__ = [*_recovery.__all__, "add_gtm_correction", "measure_fwhm"]
