"""The phantom's objects in memory: :class:`Phantom` and its :class:`PhantomTimePoint` scans, and the constants
every phantom shares (default injection time, Tc-99m half-life, the basis of ``truth.json``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from ..geometry import Image
from ..regions.labelmap import LabelMap

__all__ = ["Phantom", "PhantomTimePoint", "DEFAULT_INJECTION", "TRUTH_BASIS", "TC99M_HALF_LIFE_H", "UINT16_MAX"]

#: Injection time of every phantom unless given: late evening, so that the
#: 2 h scan crosses midnight and the 24 h scan is on the next day.
DEFAULT_INJECTION = dt.datetime(2026, 3, 14, 21, 40, 0)
TC99M_HALF_LIFE_H = 6.0067
UINT16_MAX = 65535

TRUTH_BASIS = (
    "Region values are computed from the stored integers of the ideal image (unblurred, noise-free) times "
    "the known calibration (mbq_per_stored_unit): exact for the written image when psf_fwhm_mm == 0 and "
    "noise is false. The integer total of each region is round(model total) spread over its voxels "
    "(values differ by at most 1 stored unit), so the model values differ from the truth by at most half a "
    "stored unit per region. With a PSF or noise, the written image differs from the ideal one and the truth "
    "is the physical (ideal) one; image_pct_id gives what the written image holds inside each region."
)


@dataclass
class PhantomTimePoint:
    """One scan of a phantom study, in memory.

    Attributes
    ----------
    index : int
    time_h : float
        Scan start minus injection (h).
    acquisition_start : datetime.datetime
    duration_s : float
        Acquisition wall time.
    spect : Image
        Values in ``units`` (counts, or Bq/mL averaged over the acquisition),
        float32, exactly ``spect_stored * value_scale``.
    spect_stored : numpy.ndarray
        The uint16 values written to DICOM (same array order as ``spect``).
    value_scale : float
        Stored -> value factor (1 for counts, the rescale slope for Bq/mL).
    ct : Image
        Hounsfield units (int16) on the CT grid.
    labels_spect, labels_ct : LabelMap
        Truth labels on this scan's SPECT and CT grids (moved anatomy).
    pose : numpy.ndarray
        4x4 body -> world matrix of this scan.
    reference_to_timepoint : numpy.ndarray
        4x4 LPS world -> world motion from the reference scan (time point 0).
    spect_ideal : Image
        The ideal (unblurred, noise-free) image in ``units``; the same as
        ``spect`` without PSF and noise.
    truth : dict
        This time point's entry of ``truth.json``.
    """

    index: int
    time_h: float
    acquisition_start: dt.datetime
    duration_s: float
    spect: Image
    spect_stored: np.ndarray
    value_scale: float
    ct: Image
    labels_spect: LabelMap
    labels_ct: LabelMap
    pose: np.ndarray
    reference_to_timepoint: np.ndarray
    spect_ideal: Image
    truth: dict = field(default_factory=dict)


@dataclass
class Phantom:
    """A whole phantom study in memory (see :func:`make_phantom`)."""

    preset: str
    geometry: dict
    timepoints: list
    truth: dict
    reference_labels: LabelMap
    settings: dict
