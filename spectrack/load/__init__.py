"""Load: DICOM folders and NIfTI studies into one geometry convention.

Start with :func:`load_study`; :func:`load_series` gives the raw series, read by the ordered list of readers
:data:`~spectrack.load.readers.READERS` (NIfTI, then DICOM).
"""

from .model import Series, Sourced, Study, TimePoint
from .readers import READERS, Reader
from .study import load_series, load_study, read_study_file

__all__ = ["load_study", "load_series", "read_study_file", "Series", "Sourced", "Study", "TimePoint", "READERS",
           "Reader"]
