"""TotalSegmentator output: kept for compatibility, the code lives in :mod:`spectrack.regions.formats.totalseg`.

``from spectrack.regions.totalseg import ...`` (the path the README used) keeps working: the names of
:mod:`spectrack.regions.formats.totalseg`'s ``__all__`` are re-exported, any other attribute is looked up there.
"""

from .formats import totalseg as _home
from .formats.totalseg import (TOTALSEG_TO_SPECTRACK, is_totalsegmentator_vocabulary, map_structure_name,
                               map_totalsegmentator_labels, normalise_class_name, read_totalsegmentator)

__all__ = ["read_totalsegmentator", "map_structure_name", "TOTALSEG_TO_SPECTRACK", "normalise_class_name",
           "is_totalsegmentator_vocabulary", "map_totalsegmentator_labels"]


def __getattr__(name):
    return getattr(_home, name)
