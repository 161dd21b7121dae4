"""Read regions in any supported format: one entry point for ``--labels``.

=====================================  =======================================
input                                  read by
=====================================  =======================================
``*.nii`` / ``*.nii.gz`` (+ names)     :func:`spectrack.regions.formats.nifti.read_label_map`
``*.nrrd``, ``*.mha`` (+ names)        :func:`spectrack.regions.formats.nifti.read_label_map` (SimpleITK)
3D Slicer ``*.seg.nrrd``               :func:`spectrack.regions.formats.itk.read_slicer_segmentation`
DICOM Segmentation (``*.dcm``), also   :func:`spectrack.regions.formats.dicomseg.read_dicom_seg`
Label Map Segmentation
DICOM RTSTRUCT (``*.dcm``)             :func:`spectrack.regions.formats.rtstruct.read_rtstruct`
                                       (rasterised onto the reference CT)
TotalSegmentator output folder         :func:`spectrack.regions.formats.totalseg.read_totalsegmentator`
=====================================  =======================================

Names: a ``<stem>.tsv``/``.json``/ITK-SNAP ``.txt`` beside a label image, the
label table in a NIfTI header extension, the segment or ROI names of the DICOM
files. Whatever the format, TotalSegmentator class names are mapped onto the
spectrack vocabulary (:func:`spectrack.regions.formats.totalseg.map_totalsegmentator_labels`).
"""

from __future__ import annotations

from pathlib import Path

from ...errors import InputError, LabelError
from ...geometry import Image
from ...io_utils import LABEL_IMAGE_SUFFIXES
from ..labelmap import LabelMap
from .nifti import read_label_map

__all__ = ["read_regions", "SEG_SOP_CLASS", "SEG_SOP_CLASSES", "RTSTRUCT_SOP_CLASS"]

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
#: Segmentation Storage and Label Map Segmentation Storage (highdicom ``LABELMAP``).
SEG_SOP_CLASSES = (SEG_SOP_CLASS, "1.2.840.10008.5.1.4.1.1.66.7")
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"


def read_regions(path, reference: Image | None = None) -> LabelMap:
    """Read a label map from any supported format (see the module docstring).

    Parameters
    ----------
    path : path-like
        The regions file or folder.
    reference : Image, optional
        The grid RTSTRUCT contours are rasterised onto (the reference CT);
        required for RTSTRUCT, ignored otherwise.
    """
    from .totalseg import map_totalsegmentator_labels

    return map_totalsegmentator_labels(_read(Path(path), reference))


def _read(path: Path, reference: Image | None) -> LabelMap:
    if not path.exists():
        raise InputError(f"regions {path} do not exist: check the --labels path")
    if path.is_dir():
        from .totalseg import read_totalsegmentator

        return read_totalsegmentator(path)
    if path.name.lower().endswith(LABEL_IMAGE_SUFFIXES):
        return read_label_map(path)
    from pydicom.errors import InvalidDicomError

    from ...load.dicom import dcmread_lenient

    try:
        ds = dcmread_lenient(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError) as e:
        raise InputError(f"regions {path} are neither a label image nor DICOM ({type(e).__name__}): give a "
                         ".nii.gz/.nrrd/.seg.nrrd/.mha label map, a DICOM-SEG, an RTSTRUCT or a TotalSegmentator "
                         "folder") from None
    sop = str(ds.get("SOPClassUID", ""))
    if sop in SEG_SOP_CLASSES:
        from .dicomseg import read_dicom_seg

        return read_dicom_seg(path)
    if sop == RTSTRUCT_SOP_CLASS:
        if reference is None:
            raise LabelError(f"RTSTRUCT {path} needs a reference CT to rasterise onto: the study has no CT at the "
                             "reference time point")
        from .rtstruct import read_rtstruct

        return read_rtstruct(path, reference)
    raise LabelError(f"{path} is DICOM but not a Segmentation or RTSTRUCT (SOP class {sop}): "
                     "give a label map in a supported format")
