"""DICOM RT Structure Set (RTSTRUCT) import and export of label maps (pydicom).

Writing traces each region on each CT slice with
:func:`skimage.measure.find_contours` (outer outlines and hole outlines, as
closed planar polygons through the voxel-edge midpoints) and stores them in
patient coordinates; the ROI Number is the spectrack label index and the ROI
Name the region name. Reading fills every contour with
:func:`skimage.draw.polygon` and combines the contours of a slice by
even-odd (XOR), so holes and islands inside holes come out right; contours
are matched to the slices of the reference grid, or rasterised on their own
planes and resampled (nearest neighbour) when they do not lie on its slices.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np

from ..errors import InputError, LabelError
from ..geometry import Image
from .dicomseg import _combine, read_reference_series
from .labels import LabelMap

__all__ = ["write_rtstruct", "read_rtstruct", "RT_STRUCTURE_SET_STORAGE"]

#: SOP Class UID of RT Structure Set Storage.
RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"

_SLICE_TOL = 0.2  # contour plane within this fraction of a slice step of a slice centre

_COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255)]


def _ds_number(v: float) -> str:
    """A DS string (at most 16 characters) for a coordinate in mm."""
    s = f"{v:.4f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def _slice_contours(mask2d: np.ndarray) -> list[np.ndarray]:
    """Closed outlines (row, col) of a 2-D mask, last point not repeated."""
    from skimage.measure import find_contours

    out = []
    for c in find_contours(np.pad(mask2d, 1).astype(np.float32), 0.5):
        c = c - 1.0
        if len(c) > 1 and np.allclose(c[0], c[-1]):
            c = c[:-1]
        if len(c) >= 3:
            out.append(c)
    return out


def write_rtstruct(labels: LabelMap, reference_ct_files, path, *, structure_set_label: str = "spectrack",
                   series_number: int = 901) -> Path:
    """Write labels as an RTSTRUCT referencing a CT series.

    Parameters
    ----------
    labels : LabelMap
        Labels on any grid; resampled (nearest neighbour) onto the CT when the
        grids differ.
    reference_ct_files : path-like or sequence
        The CT series (folder, files or pydicom datasets).
    path : path-like
        Output file.
    structure_set_label : str
        StructureSetLabel (at most 16 characters).
    series_number : int
        SeriesNumber of the RTSTRUCT.

    Returns
    -------
    Path
        ``path``.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import UID_dictionary, ExplicitVRLittleEndian, generate_uid

    from .._version import __version__
    from ..io_utils import atomic_path

    datasets, grid = read_reference_series(reference_ct_files)
    lab = labels.resampled_to(grid)
    if not lab.names:
        raise LabelError("the label map has no regions: nothing to write to RTSTRUCT")
    ct0 = datasets[0]
    frame_uid = ct0.get("FrameOfReferenceUID") or generate_uid()
    now = _dt.datetime.now()

    meta = FileMetaDataset()
    sop_uid = generate_uid()
    meta.MediaStorageSOPClassUID = RT_STRUCTURE_SET_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = RT_STRUCTURE_SET_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.Modality = "RTSTRUCT"
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
               "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName"):
        setattr(ds, kw, ct0.get(kw, ""))
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = int(series_number)
    ds.InstanceNumber = 1
    ds.Manufacturer = "spectrack"
    ds.SoftwareVersions = __version__
    ds.StructureSetLabel = structure_set_label[:16]
    ds.StructureSetDate = now.strftime("%Y%m%d")
    ds.StructureSetTime = now.strftime("%H%M%S")

    contour_images = []
    for d in datasets:
        ci = Dataset()
        ci.ReferencedSOPClassUID = d.SOPClassUID
        ci.ReferencedSOPInstanceUID = d.SOPInstanceUID
        contour_images.append(ci)
    series_item = Dataset()
    series_item.SeriesInstanceUID = ct0.SeriesInstanceUID
    series_item.ContourImageSequence = Sequence(contour_images)
    study_item = Dataset()
    study_class = [k for k, v in UID_dictionary.items() if v[0] == "Detached Study Management SOP Class"]
    if study_class:  # the value RT systems conventionally put here
        study_item.ReferencedSOPClassUID = study_class[0]
    study_item.ReferencedSOPInstanceUID = ct0.StudyInstanceUID
    study_item.RTReferencedSeriesSequence = Sequence([series_item])
    frame_item = Dataset()
    frame_item.FrameOfReferenceUID = frame_uid
    frame_item.RTReferencedStudySequence = Sequence([study_item])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame_item])

    automatic = any(w in (labels.source or "").lower() for w in ("automatic", "totalseg"))
    arr = lab.image.array
    rois, roi_contours, observations = [], [], []
    for n, idx in enumerate(sorted(lab.names)):
        roi = Dataset()
        roi.ROINumber = int(idx)
        roi.ReferencedFrameOfReferenceUID = frame_uid
        roi.ROIName = lab.names[idx][:64]
        roi.ROIGenerationAlgorithm = "AUTOMATIC" if automatic else "MANUAL"
        rois.append(roi)

        rc = Dataset()
        rc.ReferencedROINumber = int(idx)
        rc.ROIDisplayColor = list(_COLOURS[n % len(_COLOURS)])
        contours = []
        mask = arr == idx
        for k in np.flatnonzero(mask.any(axis=(1, 2))):
            for c in _slice_contours(mask[k]):
                ijk = np.column_stack([c[:, 1], c[:, 0], np.full(len(c), float(k))])
                xyz = grid.index_to_world_mm(ijk)
                item = Dataset()
                ci = Dataset()
                ci.ReferencedSOPClassUID = datasets[k].SOPClassUID
                ci.ReferencedSOPInstanceUID = datasets[k].SOPInstanceUID
                item.ContourImageSequence = Sequence([ci])
                item.ContourGeometricType = "CLOSED_PLANAR"
                item.NumberOfContourPoints = len(xyz)
                item.ContourData = [_ds_number(v) for v in xyz.ravel()]
                contours.append(item)
        if contours:
            rc.ContourSequence = Sequence(contours)
        roi_contours.append(rc)

        obs = Dataset()
        obs.ObservationNumber = int(idx)
        obs.ReferencedROINumber = int(idx)
        obs.RTROIInterpretedType = "ORGAN"
        obs.ROIInterpreter = ""
        observations.append(obs)
    ds.StructureSetROISequence = Sequence(rois)
    ds.ROIContourSequence = Sequence(roi_contours)
    ds.RTROIObservationsSequence = Sequence(observations)

    path = Path(path)
    with atomic_path(path) as tmp:
        pydicom.dcmwrite(str(tmp), ds, enforce_file_format=True)
    return path


# ------------------------------------------------------------------ read
def _plane_normal(pts: np.ndarray) -> np.ndarray | None:
    """Unit normal of a planar polygon (Newell's method); None if degenerate."""
    nxt = np.roll(pts, -1, axis=0)
    n = np.array([
        np.sum((pts[:, 1] - nxt[:, 1]) * (pts[:, 2] + nxt[:, 2])),
        np.sum((pts[:, 2] - nxt[:, 2]) * (pts[:, 0] + nxt[:, 0])),
        np.sum((pts[:, 0] - nxt[:, 0]) * (pts[:, 1] + nxt[:, 1])),
    ])
    norm = np.linalg.norm(n)
    return None if norm < 1e-9 else n / norm


def _rasterise(polys_ijk: list[np.ndarray], shape) -> np.ndarray:
    """Even-odd fill of polygons given in continuous (i, j, k) of a grid."""
    from skimage.draw import polygon

    mask = np.zeros(shape, dtype=bool)
    for p in polys_ijk:
        k = int(np.round(np.mean(p[:, 2])))
        if not 0 <= k < shape[0]:
            continue
        rr, cc = polygon(p[:, 1], p[:, 0], shape[1:])
        mask[k, rr, cc] ^= True
    return mask


def _contour_grid(polys_xyz: list[np.ndarray], reference: Image) -> Image:
    """A grid whose slices are the contour planes, in-plane like ``reference``."""
    normals = [n for n in (_plane_normal(p) for p in polys_xyz) if n is not None]
    if not normals:
        raise LabelError("the RTSTRUCT contours are degenerate (no planar polygon)")
    normal = normals[0]
    if np.dot(normal, reference.direction[:, 2]) < 0:
        normal = -normal
    # in-plane axes: the reference's i and j made orthogonal to the normal
    u = reference.direction[:, 0] - np.dot(reference.direction[:, 0], normal) * normal
    if np.linalg.norm(u) < 1e-3:
        u = reference.direction[:, 1] - np.dot(reference.direction[:, 1], normal) * normal
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    d = np.array([float(np.mean(p @ normal)) for p in polys_xyz])
    planes = np.unique(np.round(d, 2))
    step = float(np.min(np.diff(planes))) if len(planes) > 1 else float(reference.spacing_mm[2])
    su, sv = float(reference.spacing_mm[0]), float(reference.spacing_mm[1])
    allp = np.concatenate(polys_xyz)
    pu, pv = allp @ u, allp @ v
    # keep the in-plane lattice of the reference so only the slice direction is resampled
    ou, ov = float(reference.origin_mm @ u), float(reference.origin_mm @ v)
    u0 = ou + (np.floor((pu.min() - ou) / su) - 1) * su
    v0 = ov + (np.floor((pv.min() - ov) / sv) - 1) * sv
    nu = int(np.ceil((pu.max() - u0) / su)) + 2
    nv = int(np.ceil((pv.max() - v0) / sv)) + 2
    nk = int(np.round((planes.max() - planes.min()) / step)) + 1
    origin = u0 * u + v0 * v + planes.min() * normal
    return Image(np.zeros((nk, nv, nu), dtype=np.uint8), origin, (su, sv, step), np.column_stack([u, v, normal]))


def read_rtstruct(path, reference: Image) -> LabelMap:
    """Rasterise an RTSTRUCT onto a reference grid.

    Parameters
    ----------
    path : path-like
        The RTSTRUCT file.
    reference : Image
        The grid to fill (usually the CT the structures were drawn on).

    Returns
    -------
    LabelMap
        One label per ROI with contours (index = ROI Number, name = ROI Name
        from the Structure Set ROI Sequence); ROIs without closed planar
        contours keep their names but no voxels. Where ROIs overlap (a body
        outline around organs), the smaller ROI wins.

    Raises
    ------
    InputError
        If the file is missing or not an RTSTRUCT.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    if not path.exists():
        raise InputError(f"RTSTRUCT {path} does not exist: check the path")
    try:
        ds = pydicom.dcmread(str(path))
    except (InvalidDicomError, OSError) as e:
        raise InputError(f"cannot read {path} as DICOM ({type(e).__name__})") from None
    if ds.get("Modality") != "RTSTRUCT" or "StructureSetROISequence" not in ds:
        raise InputError(f"{path} is not an RTSTRUCT (Modality {ds.get('Modality')!r})")
    names: dict[int, str] = {}
    for roi in ds.StructureSetROISequence:
        number = int(roi.ROINumber)
        names[number] = str(roi.get("ROIName", "") or f"roi_{number}")
    bad = [n for n in names if n <= 0]
    if bad:  # label 0 is background: renumber every ROI 1..N in file order
        names = {n + 1: v for n, v in enumerate(names.values())}
        remap = {int(r.ROINumber): n + 1 for n, r in enumerate(ds.StructureSetROISequence)}
    else:
        remap = {n: n for n in names}

    polys: dict[int, list[np.ndarray]] = {}
    for rc in ds.get("ROIContourSequence", []):
        idx = remap.get(int(rc.ReferencedROINumber))
        if idx is None:
            continue
        for c in rc.get("ContourSequence", []):
            if str(c.get("ContourGeometricType", "CLOSED_PLANAR")) != "CLOSED_PLANAR":
                continue  # points and open lines enclose no volume
            data = np.asarray([float(v) for v in c.get("ContourData", [])], dtype=float)
            if data.size < 9 or data.size % 3:
                continue
            polys.setdefault(idx, []).append(data.reshape(-1, 3))

    all_polys = [p for ps in polys.values() for p in ps]
    target = reference
    if all_polys:
        ijk_all = [reference.world_to_index(p) for p in all_polys]
        on_slices = all(np.ptp(q[:, 2]) < _SLICE_TOL and abs(np.mean(q[:, 2]) - np.round(np.mean(q[:, 2])))
                        < _SLICE_TOL for q in ijk_all)
        if not on_slices:
            target = _contour_grid(all_polys, reference)
    shape = target.array.shape
    masks, indices = [], []
    for idx, ps in polys.items():
        masks.append(_rasterise([target.world_to_index(p) for p in ps], shape))
        indices.append(idx)
    arr = _combine(masks, indices) if masks else np.zeros(shape, dtype=np.int32)
    out = LabelMap(target.with_array(arr, units="label"), names, source=str(path))
    if target is not reference:
        out = out.resampled_to(reference)
    return out
