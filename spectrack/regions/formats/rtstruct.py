"""DICOM RT Structure Set (RTSTRUCT) import and export of label maps (pydicom).

Writing traces each region on each CT slice with
:func:`skimage.measure.find_contours` (outer outlines and hole outlines, as
closed planar polygons through the voxel-edge midpoints) and stores them in
patient coordinates; the ROI Number is the spectrack label index and the ROI
Name the region name.

Reading rasterises each ROI into its own mask, so overlapping ROIs (a BODY
outline around organs) keep their shapes (:meth:`LabelMap.from_masks`).
Tools draw contours in two ways: through the voxel-edge midpoints
(marching squares: spectrack, plastimatch) or through the centres of the
boundary voxels (OpenCV: rt-utils, and with it platipy and
TotalSegmentator's DICOM output). A plain polygon fill drops about half the
boundary voxels of the second kind, so index coordinates within a small
tolerance of a voxel centre are snapped onto it and a voxel centre on a
contour counts as inside; a voxel centre is never that close to a contour
of the first kind, whose voxels stay those of a plain fill. The
contours of a slice are combined by even-odd (XOR), so separate inner
contours (OpenCV) and keyhole outlines (plastimatch) both cut holes.
Contours of one or two points, of zero area, or enclosing no voxel centre
(a region one voxel wide) are drawn as the voxels they pass through.
Contours are matched to the slices of the reference grid, or rasterised on
their own planes and resampled (nearest neighbour) when they do not lie on
its slices.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np

from ...errors import InputError, LabelError
from ...geometry import Image
from ..labelmap import LabelMap
from .dicomseg import read_reference_series

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

    from ..._version import __version__
    from ...io_utils import atomic_path

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
#: Index coordinates (in voxels) this close to a voxel centre are snapped onto it, and voxel centres this close
#: to a contour edge lie on it. Contours through voxel-edge midpoints (marching squares: spectrack, plastimatch)
#: stay at least 0.35 voxel from every centre; contours through boundary-voxel centres (OpenCV: rt-utils,
#: platipy, TotalSegmentator) pass through them up to the rounding of their coordinates.
_SNAP_VOXEL = 0.05
_MIN_AREA = 1e-6  # voxel^2: outlines of less area are lines
_SAMPLE_VOXEL = 0.25  # step along contour edges when looking for the voxels they pass through


def _snap(xy: np.ndarray) -> np.ndarray:
    r = np.round(xy)
    return np.where(np.abs(xy - r) <= _SNAP_VOXEL, r, xy)


def _edge_samples(xy: np.ndarray):
    """Points every <= 0.25 voxel along the closed outline ``xy`` (n, 2), with the edge each lies on."""
    p = xy
    q = np.roll(xy, -1, axis=0)
    n = np.maximum(np.ceil(np.linalg.norm(q - p, axis=1) / _SAMPLE_VOXEL).astype(int), 1) + 1
    edge = np.repeat(np.arange(len(p)), n)
    start = np.cumsum(n) - n
    t = (np.arange(int(n.sum())) - np.repeat(start, n)) / np.repeat(n - 1, n)
    pts = p[edge] + t[:, None] * (q[edge] - p[edge])
    return pts, edge, p, q


def _path_voxels(xy: np.ndarray) -> np.ndarray:
    """(x, y) of the voxels a closed outline passes through: a digital line between its nearest voxels."""
    from skimage.draw import line

    v = np.round(xy).astype(np.int64)
    if len(v) == 1:
        return v
    parts = [np.column_stack(line(int(a[1]), int(a[0]), int(b[1]), int(b[0]))[::-1])
             for a, b in zip(v, np.roll(v, -1, axis=0))]
    return np.unique(np.concatenate(parts), axis=0)


def _voxels_on_outline(xy: np.ndarray) -> np.ndarray:
    """(x, y) of the voxel centres within the snap tolerance of the outline's edges."""
    pts, edge, p, q = _edge_samples(xy)
    cand = np.round(pts)
    d = q[edge] - p[edge]
    dd = np.einsum("ij,ij->i", d, d)
    t = np.where(dd > 0, np.einsum("ij,ij->i", cand - p[edge], d) / np.where(dd > 0, dd, 1.0), 0.0)
    foot = p[edge] + np.clip(t, 0.0, 1.0)[:, None] * d
    near = np.linalg.norm(cand - foot, axis=1) <= _SNAP_VOXEL + 1e-9
    return np.unique(cand[near].astype(np.int64), axis=0)


def _set(mask2d: np.ndarray, xy: np.ndarray) -> None:
    if len(xy):
        ok = (xy[:, 0] >= 0) & (xy[:, 0] < mask2d.shape[1]) & (xy[:, 1] >= 0) & (xy[:, 1] < mask2d.shape[0])
        mask2d[xy[ok, 1], xy[ok, 0]] = True


def _rasterise(polys_ijk: list[np.ndarray], shape) -> np.ndarray:
    """Voxels of the contours (continuous i, j, k of the grid) of one ROI.

    The contours of a slice are combined by even-odd (an inner contour cuts a
    hole, a contour inside that hole an island; a keyhole outline works the
    same), and a voxel centre on any contour belongs to the ROI. A contour of
    one or two points, of zero area or enclosing no voxel centre is drawn as
    the voxels it passes through.
    """
    from skimage.draw import polygon

    mask = np.zeros(shape, dtype=bool)
    by_slice: dict[int, list[np.ndarray]] = {}
    for p in polys_ijk:
        k = int(np.round(np.mean(p[:, 2])))
        if 0 <= k < shape[0]:
            by_slice.setdefault(k, []).append(_snap(p[:, :2]))
    for k, outlines in by_slice.items():
        inside = np.zeros(shape[1:], dtype=bool)
        on = np.zeros(shape[1:], dtype=bool)
        for xy in outlines:
            x, y = xy[:, 0], xy[:, 1]
            area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) if len(xy) >= 3 else 0.0
            covered = False
            if area > _MIN_AREA:
                rr, cc = polygon(y, x, shape[1:])
                inside[rr, cc] ^= True
                edge = _voxels_on_outline(xy)
                _set(on, edge)
                covered = len(rr) > 0 or len(edge) > 0
            if not covered:  # a point, a line, or a sliver between voxel centres
                _set(on, _path_voxels(xy))
        mask[k] = inside | on
    return mask


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
        The RTSTRUCT file (with or without preamble and file meta).
    reference : Image
        The grid to fill (usually the CT the structures were drawn on).

    Returns
    -------
    LabelMap
        One label per ROI (index = ROI Number, name = ROI Name from the
        Structure Set ROI Sequence). Each ROI is rasterised into its own mask
        (see :func:`_rasterise`: a voxel centre on a contour is inside, so
        contours through boundary-voxel centres as OpenCV-based tools write
        them and contours through voxel-edge midpoints give the same voxels)
        and the label map is built by :meth:`LabelMap.from_masks`, so a ROI
        around others (BODY) keeps its own full mask. ``meta`` holds the
        file's ``frame_of_reference_uid``, ``patient_id``, ``study_uid`` and
        ``referenced_series_uid``; ``warnings`` names every ROI that has
        contours but no voxel on the grid, or only points and open lines.

    Raises
    ------
    InputError
        If the file is missing or not an RTSTRUCT.
    LabelError
        If the ROIs lie in several frames of reference.
    """
    from pydicom.errors import InvalidDicomError

    from ...load.dicom import dcmread_lenient
    from ..labelmap import dicom_region_meta, note_regions_without_voxels

    path = Path(path)
    if not path.exists():
        raise InputError(f"RTSTRUCT {path} does not exist: check the path")
    try:
        ds = dcmread_lenient(path)
    except (InvalidDicomError, OSError) as e:
        raise InputError(f"cannot read {path} as DICOM ({type(e).__name__})") from None
    if ds.get("Modality") != "RTSTRUCT" or "StructureSetROISequence" not in ds:
        raise InputError(f"{path} is not an RTSTRUCT (Modality {ds.get('Modality')!r})")
    warnings: list[str] = []
    names: dict[int, str] = {}
    roi_frames: dict[int, str] = {}
    for roi in ds.StructureSetROISequence:
        number = int(roi.ROINumber)
        names[number] = str(roi.get("ROIName", "") or f"roi_{number}")
        if roi.get("ReferencedFrameOfReferenceUID"):
            roi_frames[number] = str(roi.ReferencedFrameOfReferenceUID)
    numbers = list(names)
    extra = [int(rc.ReferencedROINumber) for rc in ds.get("ROIContourSequence", [])
             if int(rc.ReferencedROINumber) not in names]
    for number in extra:
        warnings.append(f"RTSTRUCT {path.name}: contours of ROI number {number}, which the Structure Set ROI "
                        f"Sequence does not name: called roi_{number}")
        names[number] = f"roi_{number}"
        numbers.append(number)
    if any(n <= 0 for n in numbers):  # label 0 is background: renumber every ROI 1..N in file order
        remap = {n: pos + 1 for pos, n in enumerate(numbers)}
    else:
        remap = {n: n for n in numbers}
    names = {remap[n]: v for n, v in names.items()}

    polys: dict[int, list[np.ndarray]] = {}
    other_types: dict[int, set[str]] = {}
    for rc in ds.get("ROIContourSequence", []):
        number = int(rc.ReferencedROINumber)
        idx = remap[number]
        for c in rc.get("ContourSequence", []):
            kind = str(c.get("ContourGeometricType", "CLOSED_PLANAR") or "CLOSED_PLANAR").strip()
            data = np.asarray([float(v) for v in c.get("ContourData", [])], dtype=float)
            if kind != "CLOSED_PLANAR" or data.size < 3 or data.size % 3:
                other_types.setdefault(idx, set()).add(kind if data.size >= 3 and data.size % 3 == 0
                                                       else "empty")
                continue  # points and open lines enclose no volume
            polys.setdefault(idx, []).append(data.reshape(-1, 3))
    for idx, kinds in sorted(other_types.items()):
        if idx not in polys:
            warnings.append(f"RTSTRUCT {path.name}: ROI {names[idx]} has only {'/'.join(sorted(kinds))} "
                            "contours, which enclose no volume: it is not a region")

    used_frames = {roi_frames[n] for n in numbers if remap[n] in polys and n in roi_frames}
    if len(used_frames) > 1:
        raise LabelError(f"RTSTRUCT {path} has ROIs in {len(used_frames)} frames of reference: keep the ROIs "
                         "drawn on one image series in one file")
    meta = dicom_region_meta(ds)
    if used_frames:
        meta["frame_of_reference_uid"] = used_frames.pop()

    all_polys = [p for ps in polys.values() for p in ps]
    target = reference
    if all_polys:
        planar = [p for p in all_polys if len(p) >= 3]
        ijk_all = [reference.world_to_index(p) for p in all_polys]
        on_slices = all(np.ptp(q[:, 2]) < _SLICE_TOL and abs(np.mean(q[:, 2]) - np.round(np.mean(q[:, 2])))
                        < _SLICE_TOL for q in ijk_all)
        if not on_slices and planar:
            target = _contour_grid(planar, reference)
    shape = target.array.shape
    masks = {idx: _rasterise([target.world_to_index(p) for p in ps], shape) for idx, ps in polys.items()}
    out = LabelMap.from_masks(target, masks, names, source=str(path), meta=meta, warnings=warnings)
    if target is not reference:
        out = out.resampled_to(reference)
    note_regions_without_voxels(out, {idx: f"{len(ps)} contour{'s' if len(ps) > 1 else ''}"
                                      for idx, ps in polys.items()})
    return out
