"""Read regions in any supported format: one entry point for ``--labels``.

=====================================  =======================================
input                                  read by
=====================================  =======================================
``*.nii`` / ``*.nii.gz`` (+ names)     :func:`spectrack.regions.labels.read_label_map`
DICOM Segmentation (``*.dcm``)         :func:`spectrack.regions.dicomseg.read_dicom_seg`
DICOM RTSTRUCT (``*.dcm``)             :func:`spectrack.regions.rtstruct.read_rtstruct`
                                       (rasterised onto the reference CT)
TotalSegmentator output folder         :func:`spectrack.regions.totalseg.read_totalsegmentator`
=====================================  =======================================
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError, LabelError
from ..geometry import Image
from .labels import LabelMap, read_label_map

__all__ = ["read_regions", "SEG_SOP_CLASS", "RTSTRUCT_SOP_CLASS"]

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"


def read_regions(path, reference: Image | None = None) -> LabelMap:
    """Read a label map from NIfTI, DICOM-SEG, RTSTRUCT or a TotalSegmentator folder.

    Parameters
    ----------
    path : path-like
        The regions file or folder.
    reference : Image, optional
        The grid RTSTRUCT contours are rasterised onto (the reference CT);
        required for RTSTRUCT, ignored otherwise.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"regions {path} do not exist: check the --labels path")
    if path.is_dir():
        from .totalseg import read_totalsegmentator

        return read_totalsegmentator(path)
    if path.name.endswith((".nii", ".nii.gz")):
        return read_label_map(path)
    from pydicom.errors import InvalidDicomError

    from ..load.dicom import dcmread_lenient

    try:
        ds = dcmread_lenient(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError) as e:
        raise InputError(f"regions {path} are neither NIfTI nor DICOM ({type(e).__name__}): give a .nii.gz label "
                         "map, a DICOM-SEG, an RTSTRUCT or a TotalSegmentator folder") from None
    sop = str(ds.get("SOPClassUID", ""))
    if sop == SEG_SOP_CLASS:
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
