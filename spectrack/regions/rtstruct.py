"""DICOM RT Structure Sets: kept for compatibility, the code lives in :mod:`spectrack.regions.formats.rtstruct`.

``from spectrack.regions.rtstruct import ...`` (the path the README used) keeps working: the names of
:mod:`spectrack.regions.formats.rtstruct`'s ``__all__`` are re-exported, any other attribute is looked up there.
"""

from .formats import rtstruct as _home
from .formats.rtstruct import RT_STRUCTURE_SET_STORAGE, read_rtstruct, write_rtstruct

__all__ = ["write_rtstruct", "read_rtstruct", "RT_STRUCTURE_SET_STORAGE"]


def __getattr__(name):
    return getattr(_home, name)
