"""DICOM Segmentation (SEG) import and export of label maps (highdicom).

Writing makes one BINARY segment per named label, the region name as the
Segment Label, referencing the CT series the labels were drawn on. The
spectrack label index is kept in each segment's Tracking ID
(``"spectrack label <index>"``) so that a round trip restores the indices
exactly; SEGs from other software are numbered by segment number.

This module also holds the small reader of a reference image series
(:func:`read_reference_series`) shared with :mod:`spectrack.regions.formats.rtstruct`.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from ...errors import InconsistentInputError, InputError, LabelError
from ...geometry import Image
from ..labelmap import LabelMap

__all__ = ["write_dicom_seg", "read_dicom_seg", "read_reference_series", "TRACKING_ID_PREFIX", "SEG_SOP_CLASSES",
           "FRACTION_THRESHOLD"]

#: Segmentation Storage and Label Map Segmentation Storage.
SEG_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")

#: Prefix of the Tracking ID that carries the spectrack label index.
TRACKING_ID_PREFIX = "spectrack label "
_TRACKING_RE = re.compile(r"^spectrack label (\d+)$")

#: SNOMED CT keywords (pydicom's code dictionary) of the vocabulary regions.
_SCT_KEYWORDS = {
    "brain": "Brain",
    "canal_cervical": "SpinalCanalStructure",
    "canal_thoracic": "SpinalCanalStructure",
    "canal_lumbar": "SpinalCanalStructure",
    "canal_sacral": "SpinalCanalStructure",
    "spinal_cord": "SpinalCord",
    "liver": "Liver",
    "kidneys": "Kidney",
    "bladder": "UrinaryBladderStructure",
    "thyroid": "ThyroidStructure",
    "stomach": "Stomach",
    "salivary_glands": "SalivaryGland",
    "lymph_nodes": "LymphNode",
    "skull": "Skull",
    "vertebrae": "StructureOfVertebralColumn",
    "csf": "CerebrospinalFluid",
}


def _sct(keyword: str):
    from pydicom.sr.codedict import codes

    try:
        return getattr(codes.SCT, keyword)
    except AttributeError:
        return codes.SCT.BodyStructure


# ------------------------------------------------------- reference series
def _as_datasets(reference, *, pixels: bool):
    """Datasets from a folder, a list of files or a list of datasets."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    from ...load.dicom import dcmread_lenient

    if isinstance(reference, (str, Path)):
        p = Path(reference)
        if p.is_dir():
            reference = sorted(q for q in p.rglob("*") if q.is_file())
        elif p.is_file():
            reference = [p]
        else:
            raise InputError(f"reference series {p} does not exist: give the CT folder or its files")
    items = list(reference)
    if not items:
        raise InputError("no reference images given: give the CT series the labels belong to")
    out = []
    for it in items:
        if isinstance(it, pydicom.Dataset):
            out.append(it)
            continue
        try:
            out.append(dcmread_lenient(it, stop_before_pixels=not pixels))
        except (InvalidDicomError, OSError) as e:
            if len(items) > 1 and isinstance(e, InvalidDicomError):
                continue  # stray non-DICOM file in a folder
            raise InputError(f"cannot read reference image {it} as DICOM ({type(e).__name__})") from None
    out = [d for d in out if "ImagePositionPatient" in d and "ImageOrientationPatient" in d]
    if not out:
        raise InputError("the reference files hold no images with ImagePositionPatient: give a CT series")
    return out


def read_reference_series(reference, *, pixels: bool = False) -> tuple[list, Image]:
    """Read a single-frame image series (CT) as sorted datasets and its grid.

    Parameters
    ----------
    reference : path-like or sequence of path-like or pydicom.Dataset
        A folder, the files, or the datasets of one series.
    pixels : bool
        Also read the pixel data and return HU (``RescaleSlope``/``Intercept``
        applied) as the image values; otherwise the image holds zeros.

    Returns
    -------
    datasets : list of pydicom.Dataset
        Sorted by position along the slice normal (ascending).
    image : Image
        The series' grid (``array[k]`` is ``datasets[k]``).

    Raises
    ------
    InputError
        If nothing readable is given.
    InconsistentInputError
        For several series, orientations or image sizes, or uneven slice steps.
    """
    ds = _as_datasets(reference, pixels=pixels)
    series = {str(d.get("SeriesInstanceUID", "")) for d in ds}
    if len(series) > 1:
        raise InconsistentInputError(f"the reference holds {len(series)} series: give the files of one CT series")
    iop = np.array([float(v) for v in ds[0].ImageOrientationPatient])
    row, col = iop[:3] / np.linalg.norm(iop[:3]), iop[3:] / np.linalg.norm(iop[3:])
    normal = np.cross(row, col)
    for d in ds:
        if not np.allclose([float(v) for v in d.ImageOrientationPatient], iop, atol=1e-4):
            raise InconsistentInputError("reference slices have different orientations: give one CT series")
        if (int(d.Rows), int(d.Columns)) != (int(ds[0].Rows), int(ds[0].Columns)):
            raise InconsistentInputError("reference slices have different sizes: give one CT series")
    pos = np.array([[float(v) for v in d.ImagePositionPatient] for d in ds])
    order = np.argsort(pos @ normal, kind="stable")
    ds = [ds[n] for n in order]
    pos = pos[order]
    along = pos @ normal
    if len(ds) > 1:
        steps = np.diff(along)
        if np.any(steps <= 1e-6):
            raise InconsistentInputError("two reference slices share a position: give one CT series")
        step = float(np.median(steps))
        if np.max(np.abs(steps - step)) > max(0.01 * step, 1e-3):
            raise InconsistentInputError("reference slices are unevenly spaced: resample the CT to even slices")
    else:
        step = float(ds[0].get("SliceThickness", 1.0) or 1.0)
    ps = [float(v) for v in ds[0].PixelSpacing]  # row spacing (along j), column spacing (along i)
    shape = (len(ds), int(ds[0].Rows), int(ds[0].Columns))
    if pixels:
        arr = np.stack([d.pixel_array.astype(np.float32) * float(d.get("RescaleSlope", 1) or 1)
                        + float(d.get("RescaleIntercept", 0) or 0) for d in ds])
    else:
        arr = np.zeros(shape, dtype=np.uint8)
    image = Image(arr, pos[0], (ps[1], ps[0], step), np.column_stack([row, col, normal]),
                  units="HU" if pixels else "")
    return ds, image


# ----------------------------------------------------------------- write
def write_dicom_seg(labels: LabelMap, reference, path, *, series_description: str = "spectrack regions",
                    series_number: int = 900) -> Path:
    """Write labels as a DICOM SEG referencing a CT series.

    Parameters
    ----------
    labels : LabelMap
        Labels on any grid; they are resampled (nearest neighbour) onto the
        reference CT when the grids differ.
    reference : path-like or sequence
        The CT series (folder, files or pydicom datasets).
    path : path-like
        Output file (``.dcm``).
    series_description : str
        SeriesDescription of the SEG.
    series_number : int
        SeriesNumber of the SEG.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    LabelError
        If the labels have no regions or none falls on the reference CT.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from ..._version import __version__
    from ...io_utils import atomic_path

    datasets, grid = read_reference_series(reference)
    lab = labels.resampled_to(grid)
    indices = sorted(lab.names)
    if not indices:
        raise LabelError("the label map has no regions: nothing to write to DICOM SEG")
    seg_numbers = np.zeros(max(indices) + 1, dtype=np.uint16)
    for n, idx in enumerate(indices, start=1):
        seg_numbers[idx] = n
    pixel = seg_numbers[lab.image.array]  # every index present has a name (LabelMap guarantees it)
    automatic = any(w in (labels.source or "").lower() for w in ("automatic", "totalseg"))
    algo = None
    if automatic:
        algo = hd.AlgorithmIdentificationSequence(name="spectrack", version=__version__,
                                                  family=codes.DCM.ArtificialIntelligence)
    descriptions = []
    for n, idx in enumerate(indices, start=1):
        name = lab.names[idx]
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=n,
            segment_label=name[:64],
            segmented_property_category=codes.SCT.AnatomicalStructure,
            segmented_property_type=_sct(_SCT_KEYWORDS.get(name, "BodyStructure")),
            algorithm_type="AUTOMATIC" if automatic else "MANUAL",
            algorithm_identification=algo,
            tracking_id=f"{TRACKING_ID_PREFIX}{idx}",
            tracking_uid=generate_uid(entropy_srcs=["spectrack", str(idx), name]),
        ))
    if not np.any(pixel):
        raise LabelError("the label map is empty on the reference CT grid: nothing to write to DICOM SEG")
    seg = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=pixel,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=int(series_number),
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="spectrack",
        manufacturer_model_name="spectrack",
        software_versions=__version__,
        device_serial_number="0",
        series_description=series_description,
    )
    path = Path(path)
    with atomic_path(path) as tmp:
        seg.save_as(str(tmp))
    return path


# ------------------------------------------------------------------ read
#: Fraction at or above which a voxel of a FRACTIONAL segment belongs to it.
FRACTION_THRESHOLD = 0.5

_BACKGROUND_LABELS = {"background", "exterior", "clear label", "unlabeled", "unlabelled"}


def _is_background(desc) -> bool:
    """True for a segment that stands for the background, not a region.

    highdicom writes one in every LABELMAP SEG (segment 0, DCM 125040
    "Background"); other tools write a segment labelled ``Background``.
    """
    for seq in ("SegmentedPropertyTypeCodeSequence", "SegmentedPropertyCategoryCodeSequence"):
        for item in desc.get(seq, []):
            if str(item.get("CodeValue", "")) == "125040" and str(item.get("CodingSchemeDesignator", "")) == "DCM":
                return True
    return str(desc.get("SegmentLabel", "")).strip().lower() in _BACKGROUND_LABELS


def read_dicom_seg(path, reference: Image | None = None) -> LabelMap:
    """Read a DICOM SEG as a label map.

    Parameters
    ----------
    path : path-like
        The SEG file.
    reference : Image, optional
        Grid to return the labels on (nearest-neighbour resampling when it
        differs from the SEG's own geometry). Without it the labels are on
        the SEG's own grid (the planes holding segments).

    Returns
    -------
    LabelMap
        One label per segment: the index from a spectrack Tracking ID, else
        the segment number; the Segment Label as name. Background segments
        (highdicom's segment 0 of a LABELMAP SEG, DCM 125040, or a segment
        labelled ``Background``) are not regions. A FRACTIONAL segment
        (PROBABILITY or OCCUPANCY) holds the voxels whose fraction is
        >= :data:`FRACTION_THRESHOLD`; the rule is in ``meta["fraction_rule"]``
        and so in ``study.json``. Where segments overlap, each region keeps
        its own mask (:meth:`LabelMap.from_masks`), with a warning per pair.

    Raises
    ------
    InputError
        If the file is missing or not a SEG.
    LabelError
        If the segments do not form a regular 3-D volume.
    """
    import highdicom as hd
    from pydicom.errors import InvalidDicomError

    from ...load.dicom import dcmread_lenient
    from ..labelmap import dicom_region_meta, note_regions_without_voxels

    path = Path(path)
    if not path.exists():
        raise InputError(f"DICOM SEG {path} does not exist: check the path")
    try:
        ds = dcmread_lenient(path)
    except (InvalidDicomError, OSError) as e:
        raise InputError(f"cannot read {path} as DICOM ({type(e).__name__})") from None
    if ds.get("Modality") != "SEG" and str(ds.get("SOPClassUID", "")) not in SEG_SOP_CLASSES:
        raise InputError(f"{path} is not a DICOM SEG (Modality {ds.get('Modality')!r})")
    try:
        seg = hd.seg.Segmentation.from_dataset(ds, copy=False)
    except (ValueError, AttributeError, KeyError) as e:
        raise InputError(f"{path} is not a valid DICOM SEG ({e})") from None
    background = [int(num) for num in seg.segment_numbers if _is_background(seg.get_segment_description(num))]
    numbers = [int(num) for num in seg.segment_numbers if int(num) not in background]
    if not numbers:
        raise LabelError(f"DICOM SEG {path} has no segments" + (" other than background" if background else ""))
    try:
        with warnings.catch_warnings():
            # highdicom warns when it infers spacing; the geometry is checked below
            warnings.simplefilter("ignore", UserWarning)
            vol = seg.get_volume(combine_segments=False, segment_numbers=numbers, rescale_fractional=True)
    except (ValueError, RuntimeError) as e:
        raise LabelError(f"DICOM SEG {path} does not form a regular 3-D volume ({e})") from None
    arr = np.asarray(vol.array)
    if arr.ndim == 3:
        arr = arr[..., None]
    aff = np.asarray(vol.affine, dtype=float)
    m = aff[:3, :3][:, [2, 1, 0]]  # columns for array axes (slice, row, column) -> i, j, k
    spacing = np.linalg.norm(m, axis=0)
    indices, names = [], {}
    for n, num in enumerate(numbers):
        desc = seg.get_segment_description(num)
        tid = desc.get("TrackingID")
        match = _TRACKING_RE.match(str(tid)) if tid is not None else None
        idx = int(match.group(1)) if match else int(num)
        if idx in names:
            raise LabelError(f"DICOM SEG {path}: two segments carry label index {idx}")
        indices.append(idx)
        names[idx] = str(desc.SegmentLabel)
    meta = dicom_region_meta(ds)
    seg_type = str(ds.get("SegmentationType", "BINARY")).upper()
    meta["segmentation_type"] = seg_type
    if background:
        meta["background_segments"] = background
    if seg_type == "FRACTIONAL":
        kind = str(ds.get("SegmentationFractionalType", "PROBABILITY")).upper()
        meta["fraction_rule"] = (f"FRACTIONAL ({kind}) segments: a voxel belongs to a segment where its fraction "
                                 f"is >= {FRACTION_THRESHOLD}")
        masks = [arr[..., n] >= FRACTION_THRESHOLD for n in range(arr.shape[-1])]
    else:
        masks = [arr[..., n] > 0 for n in range(arr.shape[-1])]
    grid = Image(np.zeros(arr.shape[:3], dtype=np.uint8), aff[:3, 3], spacing, m / spacing[None, :], units="label")
    out = LabelMap.from_masks(grid, dict(zip(indices, masks)), names, source=str(path), meta=meta)
    data = {idx: "segment data" for n, idx in enumerate(indices) if np.any(arr[..., n] > 0)}
    note_regions_without_voxels(out, data)
    if reference is not None:
        out = out.resampled_to(reference)
    return out
