"""Which time point a region file belongs to: frame of reference and subject checks.

DICOM region files (RTSTRUCT, SEG) say where they were drawn: their readers
put the file's ``FrameOfReferenceUID``, ``PatientID`` and referenced series
into :attr:`LabelMap.meta` (``frame_of_reference_uid``, ``patient_id``,
``referenced_series_uid``; see :func:`spectrack.regions.labelmap.dicom_region_meta`).
:func:`locate_regions` compares them with the study once, for every format:

* another subject's regions (PatientID not the study's) are refused;
* regions drawn in the frame of reference of another time point's CT are
  placed on that time point (the pipeline makes it the registration
  reference, so they are propagated to the other time points as labels of the
  reference time point are);
* regions in a frame of reference that no time point of the study has are
  refused, naming the file's and the study's frames.

Files without these keys (NIfTI, NRRD, TotalSegmentator folders) and studies
without frame of reference UIDs (NIfTI without them in the sidecars) are
taken as drawn on the reference time point, as before.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InconsistentInputError
from .labelmap import LabelMap

__all__ = ["locate_regions", "read_study_regions"]


def _series_of(tp):
    return [s for s in (tp.ct, tp.emission) if s is not None]


def locate_regions(labels: LabelMap, study, *, reference_index: int = 0) -> int:
    """The index of the time point whose images the regions were drawn on.

    Parameters
    ----------
    labels : LabelMap
        Regions as read; only ``meta`` and ``source`` are used.
    study : Study
        The loaded study.
    reference_index : int
        The reference time point, returned when the file says nothing (or
        matches it).

    Returns
    -------
    int
        ``reference_index``, or the time point whose CT (or emission image)
        has the file's frame of reference (the one of its referenced series
        when several share that frame).

    Raises
    ------
    InconsistentInputError
        If the file is of another subject, or in a frame of reference that no
        time point of the study has.

    Examples
    --------
    >>> import numpy as np
    >>> from spectrack.geometry import Image
    >>> from spectrack.load.model import Series, Study, TimePoint
    >>> def series(frame):
    ...     s = Series(image=Image(np.zeros((2, 2, 2)), (0, 0, 0), (1, 1, 1)), modality="CT")
    ...     s.set("frame_of_reference_uid", frame, "header")
    ...     return s
    >>> study = Study([TimePoint(series("1.2.1"), series("1.2.1"), 0), TimePoint(series("1.2.2"), series("1.2.2"), 1)])
    >>> lm = LabelMap(Image(np.zeros((2, 2, 2), int), (0, 0, 0), (1, 1, 1)), meta={"frame_of_reference_uid": "1.2.2"})
    >>> locate_regions(lm, study)
    1
    """
    meta = labels.meta or {}
    name = Path(labels.source).name if labels.source else "the regions"
    file_pid = str(meta.get("patient_id") or "").strip()
    pids = sorted({str(s.get("patient_id")).strip() for tp in study.timepoints for s in _series_of(tp)
                   if s.get("patient_id") and str(s.get("patient_id")).strip()})
    if file_pid and pids and file_pid not in pids:
        raise InconsistentInputError(
            f"regions {name} belong to subject {file_pid!r}, the study's images to {', '.join(map(repr, pids))}: "
            "give the regions drawn on this subject's images")
    frame = str(meta.get("frame_of_reference_uid") or "").strip()
    frames = [{str(s.get("frame_of_reference_uid")) for s in _series_of(tp) if s.get("frame_of_reference_uid")}
              for tp in study.timepoints]
    if not frame or not any(frames):
        return reference_index
    matches = [n for n, f in enumerate(frames) if frame in f]
    if not matches:
        have = "; ".join(f"time point {n}: {', '.join(sorted(f)) or 'none'}" for n, f in enumerate(frames))
        raise InconsistentInputError(
            f"regions {name} were drawn in frame of reference {frame}, which no time point of the study has "
            f"({have}): give regions drawn on one of the study's CTs")
    series = str(meta.get("referenced_series_uid") or "").strip()
    if len(matches) > 1 and series:
        on_series = [n for n in matches if any(s.get("series_uid") == series
                                               for s in _series_of(study.timepoints[n]))]
        matches = on_series or matches
    return reference_index if reference_index in matches else matches[0]


def read_study_regions(path, study, *, reference_index: int = 0) -> tuple[LabelMap, int]:
    """Read a region file for a study and place it on the time point it was drawn on.

    Parameters
    ----------
    path : path-like
        Any format :func:`spectrack.regions.formats.dispatch.read_regions` reads.
    study : Study
        The loaded study.
    reference_index : int
        The reference time point (clamped to the study).

    Returns
    -------
    labels : LabelMap
        The regions; an RTSTRUCT is rasterised onto the CT (else the emission
        image) of the time point it belongs to.
    timepoint : int
        That time point (see :func:`locate_regions`).
    """
    from .formats.dispatch import RTSTRUCT_SOP_CLASS, read_regions

    def grid(n):
        tp = study.timepoints[n]
        return tp.ct.image if tp.ct is not None else tp.emission.image

    ref = min(max(int(reference_index), 0), len(study.timepoints) - 1)
    labels = read_regions(path, reference=grid(ref))
    where = locate_regions(labels, study, reference_index=ref)
    if where != ref and labels.meta.get("sop_class_uid") == RTSTRUCT_SOP_CLASS:
        labels = read_regions(path, reference=grid(where))  # contours are rasterised onto the CT they were drawn on
    return labels, where
