"""NIfTI label maps: kept for compatibility, the code lives in :mod:`spectrack.regions.formats.nifti`.

``from spectrack.regions.labels import ...`` (the path the README and the tutorial used) keeps working; the
names come from where they are defined:

* :mod:`spectrack.regions.formats.nifti`: ``read_label_map``, ``read_label_image``, ``write_label_map``;
* :mod:`spectrack.regions.labelmap`: ``LabelMap``, ``RESERVED_NAMES``, ``note_regions_without_voxels``,
  ``dicom_region_meta``;
* :mod:`spectrack.regions.formats.names`: ``names_sidecar``, ``read_names``;
* :mod:`spectrack.io_utils`: ``LABEL_IMAGE_SUFFIXES``, ``nifti_stem``.

Any other attribute is looked up in :mod:`spectrack.regions.formats.nifti`.
"""

from ..io_utils import LABEL_IMAGE_SUFFIXES, nifti_stem
from .formats import nifti as _home
from .formats.names import names_sidecar, read_names
from .formats.nifti import read_label_image, read_label_map, write_label_map
from .labelmap import RESERVED_NAMES, LabelMap, dicom_region_meta, note_regions_without_voxels

__all__ = ["LabelMap", "LABEL_IMAGE_SUFFIXES", "read_label_map", "read_label_image", "names_sidecar", "write_label_map",
           "read_names", "nifti_stem", "note_regions_without_voxels", "dicom_region_meta", "RESERVED_NAMES"]


def __getattr__(name):
    return getattr(_home, name)
