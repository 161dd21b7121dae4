"""DICOM Segmentation: kept for compatibility, the code lives in :mod:`spectrack.regions.formats.dicomseg`.

``from spectrack.regions.dicomseg import ...`` (the path the README used) keeps working: the names of
:mod:`spectrack.regions.formats.dicomseg`'s ``__all__`` are re-exported, any other attribute is looked up there.
"""

from .formats import dicomseg as _home
from .formats.dicomseg import (FRACTION_THRESHOLD, SEG_SOP_CLASSES, TRACKING_ID_PREFIX, read_dicom_seg,
                               read_reference_series, write_dicom_seg)

__all__ = ["write_dicom_seg", "read_dicom_seg", "read_reference_series", "TRACKING_ID_PREFIX", "SEG_SOP_CLASSES",
           "FRACTION_THRESHOLD"]


def __getattr__(name):
    return getattr(_home, name)
