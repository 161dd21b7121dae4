"""The reconstructed resolution recovery correction needs: kept here for compatibility.

It lives in :mod:`spectrack.quantification.resolution` (``measure_fwhm``,
``measure_resolution``, ``write_resolution_file``, ``read_resolution_file``,
``image_fwhm_mm``, ``resolution_from_image``, ``RESOLUTION_FORMAT``,
``FWHM_MISMATCH``); ``from spectrack.kinetics.resolution import ...`` keeps
working.
"""

from ..quantification.resolution import (
    FWHM_MISMATCH,
    RESOLUTION_FORMAT,
    image_fwhm_mm,
    measure_fwhm,
    measure_resolution,
    read_resolution_file,
    resolution_from_image,
    write_resolution_file,
)

__all__ = ["measure_resolution", "write_resolution_file", "read_resolution_file", "image_fwhm_mm",
           "RESOLUTION_FORMAT", "FWHM_MISMATCH", "measure_fwhm", "resolution_from_image"]
