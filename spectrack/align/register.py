"""Rigid registration of time points (SimpleITK), and label propagation.

Convention
----------
A registration of ``moving`` to ``fixed`` returns a transform that maps
*fixed-space* points to *moving-space* points (the ITK convention). That is
exactly what resampling needs to bring the moving image onto the fixed grid::

    result = register_rigid(reference_ct, later_ct)
    spect_on_reference = resample_image(later_spect, reference_ct, result.transform)

Labels drawn on the fixed (reference) image are carried the other way, onto a
moving time point's grid, by :func:`propagate_labels`, which inverts the
transform for the resampling.

This module registers a study's time points (:func:`register_timepoints`:
CT to CT with the SPECT following its CT, or SPECT to SPECT). One rigid
registration (:func:`register_rigid`: metric, optimizer, pyramid, start) is
in :mod:`.rigid`; the result types, label propagation and transform files in
:mod:`.transforms`; all are re-exported here.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import InconsistentInputError
from ..geometry import Image, to_sitk
from .rigid import register_rigid
from .shrink import shrink_to_spacing
from .transforms import RigidResult, TimepointTransforms, load_transform, propagate_labels, save_transform

__all__ = [
    "RigidResult",
    "TimepointTransforms",
    "register_rigid",
    "register_timepoints",
    "propagate_labels",
    "body_mask",
    "save_transform",
    "load_transform",
    "CT_CLAMP_HU",
    "CT_BODY_THRESHOLD_HU",
]

#: HU window applied to CT before registration (air to dense bone).
CT_CLAMP_HU = (-1000.0, 1500.0)
#: CT voxels above this HU (then dilated) form the body mask used for sampling.
CT_BODY_THRESHOLD_HU = -500.0


def body_mask(ct: Image, threshold_hu: float = CT_BODY_THRESHOLD_HU, dilate_mm: float = 8.0) -> Image:
    """Body mask of a CT: voxels above ``threshold_hu`` with holes filled, dilated.

    Holes (lungs, bowel gas) are filled slice by slice along the axis nearest
    to the patient's z, so the mask stays closed where the airway opens; the
    dilation by ``dilate_mm`` keeps the body outline (the strongest
    registration feature) inside the sampled region.
    """
    import SimpleITK as sitk
    from scipy import ndimage

    m = ct.array > threshold_hu
    axis_k = int(np.argmax(np.abs(ct.direction[2])))  # index axis (i, j, k) nearest to z
    arr_axis = 2 - axis_k
    m = np.moveaxis(m, arr_axis, 0)
    m = np.stack([ndimage.binary_fill_holes(s) for s in m])
    m = np.moveaxis(m, 0, arr_axis)
    ms = to_sitk(ct.with_array(m.astype(np.uint8)))
    radius = [max(1, int(round(dilate_mm / s))) for s in ct.spacing_mm]
    ms = sitk.BinaryDilate(ms, radius, sitk.sitkBall)
    return ct.with_array(sitk.GetArrayFromImage(ms).astype(bool), units="mask")


def _identity_result() -> RigidResult:
    import SimpleITK as sitk

    return RigidResult(transform=sitk.Euler3DTransform(), metric_value=float("nan"), iterations=0,
                       quality_ncc=1.0, elapsed_s=0.0, stop_condition="reference time point",
                       metric="identity")


def _for_warning(tp, label: str) -> str | None:
    """A warning when the SPECT and CT frames of reference differ or are missing."""
    if tp.ct is None:
        return None
    fe = tp.emission.get("frame_of_reference_uid")
    fc = tp.ct.get("frame_of_reference_uid")
    if fe is None or fc is None:
        which = " and ".join(n for n, v in (("SPECT", fe), ("CT", fc)) if v is None)
        return (f"{label}: FrameOfReferenceUID missing from the {which}; the SPECT is assumed to lie in "
                "the CT's patient coordinates: check the fusion")
    if str(fe) != str(fc):
        return (f"{label}: SPECT and CT have different FrameOfReferenceUIDs ({fe} vs {fc}); the SPECT is "
                "assumed to lie in the CT's patient coordinates: check the fusion or use mode='spect'")
    return None


def register_timepoints(timepoints, reference_index: int = 0, *, mode: str = "ct", working_spacing_mm="spect",
                        workers: int | None = None, **kwargs) -> TimepointTransforms:
    """Register every time point to a reference time point.

    Parameters
    ----------
    timepoints : sequence of TimePoint
        The time points (``spectrack.load.model.TimePoint``).
    reference_index : int
        Position of the reference time point in ``timepoints``.
    mode : {'ct', 'spect'}
        ``'ct'``: each CT is registered to the reference CT (HU clamped to
        :data:`CT_CLAMP_HU`, sampling restricted to the reference body mask)
        and the SPECT follows its own CT through the shared frame of
        reference; a time point without CT falls back to SPECT-to-SPECT with
        a warning. ``'spect'``: emission volumes are registered directly.
    working_spacing_mm : 'spect', float or None
        CTs finer than this are block-averaged to about this voxel size
        before registration (:func:`spectrack.align.shrink.shrink_to_spacing`):
        the transforms are used on SPECT grids, and a 512x512x300 CT holds
        several times more voxels than a rigid fit needs. ``'spect'``
        (default) uses 0.6 times the edge of the study's smallest SPECT
        voxel (the cube of the same volume): on the moving NHP phantom of the
        tests (SPECT 2.8x2.8x4.2 mm), 1.9 mm blocks of a 0.95 mm CT register
        within 0.1 mm on average; ``None`` registers the CTs as they are.
    workers : int, optional
        Time points registered at the same time (threads; the results do not
        depend on it). Default: the number of CPUs available.
    **kwargs
        Passed to :func:`register_rigid`.

    Returns
    -------
    TimepointTransforms
        A list with one ``SimpleITK.Euler3DTransform`` per time point mapping
        reference-space points to that time point's space (identity for the
        reference), with ``.results`` and ``.warnings``. Time point ``t``'s
        SPECT comes onto the reference grid with
        ``resample_image(tp.emission.image, reference_image, transforms[t])``.

    Raises
    ------
    InconsistentInputError
        For an unknown mode or a reference index out of range.
    """
    tps = list(timepoints)
    if mode not in ("ct", "spect"):
        raise InconsistentInputError(f"unknown registration mode {mode!r}: use 'ct' or 'spect'")
    if not tps:
        return TimepointTransforms([], [], reference_index)
    if not -len(tps) <= reference_index < len(tps):
        raise InconsistentInputError(
            f"reference time point {reference_index} out of range: there are {len(tps)} time points")
    reference_index %= len(tps)
    ref = tps[reference_index]
    warnings: list[str] = []

    def label(n, tp):
        return getattr(tp, "label", f"tp{n}")

    use_ct = mode == "ct"
    if use_ct and ref.ct is None:
        warnings.append(f"{label(reference_index, ref)}: the reference time point has no CT; "
                        "all time points registered SPECT to SPECT")
        use_ct = False
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if working_spacing_mm == "spect":
        # 0.6 times the edge of the smallest SPECT voxel (a cube of the same volume)
        working_spacing_mm = 0.6 * min(float(np.prod(tp.emission.image.spacing_mm)) for tp in tps) ** (1.0 / 3.0)
    elif working_spacing_mm is not None:
        working_spacing_mm = float(working_spacing_mm)
        if not (np.isfinite(working_spacing_mm) and working_spacing_mm > 0):
            raise InconsistentInputError(f"working_spacing_mm must be positive, 'spect' or None, "
                                         f"got {working_spacing_mm}")

    def ct_of(tp):
        img = tp.ct.image
        return img if working_spacing_mm is None else shrink_to_spacing(img, working_spacing_mm)

    ref_mask = ref_ct = None
    if use_ct:
        ref_ct = ct_of(ref)
        ref_mask = body_mask(ref_ct)

    def one(n, tp):
        lab = label(n, tp)
        own: list[str] = []
        if use_ct:
            w = _for_warning(tp, lab)
            if w:
                own.append(w)
        if n == reference_index:
            res = _identity_result()
        elif use_ct and tp.ct is not None:
            opts = {"clamp": CT_CLAMP_HU, "fixed_mask": ref_mask}
            opts.update(kwargs)
            res = register_rigid(ref_ct, ct_of(tp), **opts)
        else:
            if use_ct:
                own.append(f"{lab}: no CT; registered SPECT to the reference SPECT instead")
            res = register_rigid(ref.emission.image, tp.emission.image, **kwargs)
        res.warnings.extend(own)
        return res

    # each registration is seeded and independent; SimpleITK releases the GIL, so time points run side by side
    # (a rigid fit is mostly single-threaded inside ITK)
    n_workers = max(1, min(int(workers or 1), len(tps) - 1))
    if n_workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(n_workers) as pool:
            results = list(pool.map(one, range(len(tps)), tps))
    else:
        results = [one(n, tp) for n, tp in enumerate(tps)]
    for res in results:
        warnings.extend(res.warnings)
    return TimepointTransforms(results, warnings, reference_index, working_spacing_mm if use_ct else None)
