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

Method: centred initialisation (identity or image moments, whichever matches
better on the coarsest level), Mattes mutual information on a bounded number
of random samples with a fixed seed (results are repeatable), regular-step
gradient descent with optimizer scales from physical shifts, and a
coarse-to-fine pyramid of block-averaged images (4, 2, 1). A 128^3 CT pair
takes about one CPU-second.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InconsistentInputError, InputError
from ..geometry import Image, to_sitk
from ..regions.labels import LabelMap
from .shrink import shrink_to_spacing

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

_METRICS = ("mattes", "correlation", "meansquares")
_INITIALISERS = ("auto", "identity", "moments", "geometry")


@dataclass
class RigidResult:
    """Outcome of one rigid registration.

    Attributes
    ----------
    transform : SimpleITK.Euler3DTransform
        Maps fixed-space LPS points (mm) to moving-space points.
    metric_value : float
        Final value of the optimised metric (Mattes MI is negative: lower is better).
    iterations : int
        Optimizer iterations summed over all pyramid levels.
    quality_ncc : float
        Normalised cross-correlation between the fixed image and the moving
        image resampled through ``transform``, inside the fixed mask (or the
        overlap); 1 is a perfect match.
    elapsed_s : float
        Wall time of the registration (seconds).
    stop_condition : str
        The optimizer's stop condition at the finest level.
    metric : str
        Metric name used.
    warnings : list of str
        Things the caller should know (e.g. frames of reference that differ).
    """

    transform: object
    metric_value: float = float("nan")
    iterations: int = 0
    quality_ncc: float = float("nan")
    elapsed_s: float = 0.0
    stop_condition: str = ""
    metric: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def translation_mm(self) -> np.ndarray:
        """Translation part of the transform (mm)."""
        return np.asarray(self.transform.GetTranslation(), dtype=float)

    @property
    def rotation_deg(self) -> np.ndarray:
        """Euler angles (x, y, z) of the transform in degrees."""
        return np.degrees([self.transform.GetAngleX(), self.transform.GetAngleY(),
                           self.transform.GetAngleZ()])

    def map_points_mm(self, points_mm) -> np.ndarray:
        """Map fixed-space LPS points ``(..., 3)`` (mm) into moving space."""
        return _apply_transform(self.transform, points_mm)


class TimepointTransforms(list):
    """One transform per time point (a list), plus the full results and warnings.

    Item ``t`` maps reference-space points to time point ``t``'s points
    (identity for the reference itself).

    Attributes
    ----------
    results : list of RigidResult
        Per time point; the reference has an identity result.
    warnings : list of str
        Frame-of-reference problems and fallbacks, one line each.
    reference_index : int
        Index of the reference time point.
    working_spacing_mm : float or None
        Voxel size the CTs were block-averaged to before registration
        (``None``: registered as they are).
    """

    def __init__(self, results, warnings, reference_index, working_spacing_mm=None):
        super().__init__(r.transform for r in results)
        self.results = list(results)
        self.warnings = list(warnings)
        self.reference_index = reference_index
        self.working_spacing_mm = working_spacing_mm


# ----------------------------------------------------------------- helpers
def _apply_transform(transform, points_mm) -> np.ndarray:
    pts = np.asarray(points_mm, dtype=float)
    flat = pts.reshape(-1, 3)
    out = np.array([transform.TransformPoint(tuple(float(v) for v in p)) for p in flat])
    return out.reshape(pts.shape)


def _as_transform(transform):
    return transform.transform if isinstance(transform, RigidResult) else transform


def _prepare(image: Image, clamp):
    import SimpleITK as sitk

    img = to_sitk(image, dtype=np.float32)
    if clamp is not None:
        lo, hi = (float(v) for v in clamp)
        img = sitk.Clamp(img, sitk.sitkFloat32, lo, hi)
    return img


def _mask_to_sitk(mask, image: Image):
    import SimpleITK as sitk

    if isinstance(mask, Image):
        arr = mask.array
        ref = mask
    else:
        arr = np.asarray(mask)
        ref = image
        if arr.shape != image.array.shape:
            raise InconsistentInputError(
                f"fixed mask shape {arr.shape} differs from the fixed image {image.array.shape}: "
                "give a mask on the fixed grid (or as an Image)")
    m = to_sitk(ref.with_array((arr > 0).astype(np.uint8)))
    return sitk.Cast(m, sitk.sitkUInt8)


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


def _ncc(fixed_sitk, moving_sitk, transform, mask_sitk) -> float:
    """NCC of fixed vs. resampled moving on a 2x-shrunk fixed grid."""
    import SimpleITK as sitk

    shrink = [2 if n >= 32 else 1 for n in fixed_sitk.GetSize()]
    f = sitk.Shrink(fixed_sitk, shrink)
    mv = sitk.Resample(moving_sitk, f, transform, sitk.sitkLinear, float("nan"), sitk.sitkFloat32)
    a = sitk.GetArrayViewFromImage(f).astype(np.float64)
    b = sitk.GetArrayViewFromImage(mv).astype(np.float64)
    ok = np.isfinite(b)
    if mask_sitk is not None:
        m = sitk.Resample(mask_sitk, f, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        ok &= sitk.GetArrayViewFromImage(m) > 0
    if ok.sum() < 10:
        return float("nan")
    a, b = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float("nan")


def _registration_method(metric: str, bins: int, threads: int | None = None):
    import SimpleITK as sitk

    R = sitk.ImageRegistrationMethod()
    if threads is not None:
        R.SetNumberOfThreads(int(threads))
    if metric == "mattes":
        R.SetMetricAsMattesMutualInformation(numberOfHistogramBins=int(bins))
    elif metric == "correlation":
        R.SetMetricAsCorrelation()
    else:
        R.SetMetricAsMeanSquares()
    R.SetInterpolator(sitk.sitkLinear)
    # image gradients by finite differences at the sample points: far cheaper
    # than precomputing Gaussian gradient images at every level
    R.MetricUseFixedImageGradientFilterOff()
    R.MetricUseMovingImageGradientFilterOff()
    return R


def _pyramid_level(img, shrink: int, sigma_vox: float):
    """``img`` block-averaged by ``shrink`` (never below 4 voxels), optionally smoothed first."""
    import SimpleITK as sitk

    if sigma_vox > 0:
        img = sitk.SmoothingRecursiveGaussian(img, [float(sigma_vox) * s for s in img.GetSpacing()])
    factors = [max(1, min(int(shrink), n // 4)) for n in img.GetSize()]
    return sitk.BinShrink(img, factors) if max(factors) > 1 else img


def _initial_transform(f, m, initialiser: str, shrink: int, metric: str, bins: int):
    """Centred Euler transform to start the optimisation from (see register_rigid)."""
    import SimpleITK as sitk

    def centred(a, b, mode):
        if mode == "moments":  # moments need non-negative "mass": shift to a zero minimum
            a = a - float(sitk.GetArrayViewFromImage(a).min())
            b = b - float(sitk.GetArrayViewFromImage(b).min())
            mode_id = sitk.CenteredTransformInitializerFilter.MOMENTS
        else:
            mode_id = sitk.CenteredTransformInitializerFilter.GEOMETRY
        try:
            return sitk.Euler3DTransform(sitk.CenteredTransformInitializer(a, b, sitk.Euler3DTransform(), mode_id))
        except RuntimeError:  # an empty image has no centre of mass
            return sitk.Euler3DTransform(sitk.CenteredTransformInitializer(
                a, b, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.GEOMETRY))

    if initialiser == "geometry":
        return centred(f, m, "geometry")
    mom = centred(f, m, "moments")
    ident = sitk.Euler3DTransform()
    ident.SetCenter(mom.GetCenter())
    if initialiser == "moments":
        return mom
    if initialiser == "identity":
        return ident
    # auto: the better of the two by the metric on the coarsest level
    fs, ms = _pyramid_level(f, shrink, 0.0), _pyramid_level(m, shrink, 0.0)
    values = []
    for cand in (ident, mom):
        R = _registration_method(metric, bins)
        R.SetInitialTransform(sitk.Euler3DTransform(cand), inPlace=False)
        try:
            values.append(R.MetricEvaluate(fs, ms))
        except RuntimeError:  # no overlap
            values.append(np.inf)
    return ident if values[0] <= values[1] else mom


# ----------------------------------------------------------- registration
def register_rigid(
    fixed: Image,
    moving: Image,
    *,
    metric: str = "mattes",
    levels=(4, 2, 1),
    smoothing_sigmas_vox=None,
    sampling_fraction=0.15,
    max_samples=(10_000, 20_000, 40_000),
    histogram_bins: int = 50,
    max_iterations: int = 200,
    learning_rate_mm: float = 2.0,
    min_step_mm: float = 0.002,
    clamp=None,
    fixed_mask=None,
    initialiser: str = "auto",
    initial_transform=None,
    seed: int = 1234,
    threads: int | None = None,
) -> RigidResult:
    """Rigidly register ``moving`` to ``fixed``.

    Parameters
    ----------
    fixed, moving : Image
        The two volumes (any grids, same patient coordinate system).
    metric : {'mattes', 'correlation', 'meansquares'}
        Similarity metric; Mattes mutual information suits CT-CT and
        SPECT-SPECT with changing activity.
    levels : sequence of int
        Pyramid shrink factors, coarse to fine.
    smoothing_sigmas_vox : sequence of float, optional
        Gaussian smoothing per level in full-resolution voxels, on top of
        the block averaging that shrinks each level; default none.
    sampling_fraction : float or sequence of float
        Fraction of the voxels of each pyramid level sampled (random, seeded)
        for the metric; one value or one per level.
    max_samples : int, sequence of int or None
        Upper bound on the samples per level (keeps large CTs fast), one
        value or one per level counted from the finest (the first value
        repeats for extra coarse levels); ``None`` for no bound. The default draws
        few samples where the pyramid is coarse and 40,000 at the finest
        level, which sets the accuracy.
    histogram_bins : int
        Mattes histogram bins.
    max_iterations : int
        Optimizer iterations per level.
    learning_rate_mm, min_step_mm : float
        First and smallest optimizer step at the finest level, multiplied by
        the level's shrink factor on coarser levels; the optimizer scales are
        set from physical shifts so steps are roughly millimetres.
    clamp : (float, float), optional
        Clip intensities of both images to this window (e.g. :data:`CT_CLAMP_HU`).
    fixed_mask : Image or array, optional
        Only fixed voxels inside this mask are sampled (e.g. :func:`body_mask`).
    initialiser : {'auto', 'identity', 'moments', 'geometry'}
        Starting transform, rotating about the fixed image's centre of mass:
        ``'identity'`` trusts the scanners' patient coordinates,
        ``'moments'`` aligns the intensity centres of mass, ``'geometry'``
        the centres of the fields of view; ``'auto'`` evaluates the metric
        for identity and moments on the coarsest level and keeps the better.
    initial_transform : SimpleITK.Transform, optional
        Start from this rigid transform instead (``initialiser`` is ignored).
    seed : int
        Sampling seed: the same inputs give the same result (to rounding,
        about 1e-12: multithreaded sums may add in another order).
    threads : int, optional
        Threads for this registration (SimpleITK's global default, all
        cores, when omitted; the global setting is never changed).

    Returns
    -------
    RigidResult

    Raises
    ------
    InconsistentInputError
        For an unknown metric or initialiser, or images too small to register.
    """
    import SimpleITK as sitk

    if metric not in _METRICS:
        raise InconsistentInputError(f"unknown registration metric {metric!r}: use one of {', '.join(_METRICS)}")
    if initialiser not in _INITIALISERS:
        raise InconsistentInputError(
            f"unknown registration initialiser {initialiser!r}: use one of {', '.join(_INITIALISERS)}")
    levels = tuple(int(v) for v in levels)
    if not levels or any(v < 1 for v in levels):
        raise InconsistentInputError(f"pyramid levels must be positive integers, got {levels}")
    if min(fixed.shape_ijk) < 4 or min(moving.shape_ijk) < 4:
        raise InconsistentInputError("images smaller than 4 voxels along an axis cannot be registered")
    if smoothing_sigmas_vox is None:
        smoothing_sigmas_vox = (0.0,) * len(levels)
    if len(smoothing_sigmas_vox) != len(levels):
        raise InconsistentInputError("give one smoothing sigma per pyramid level")

    t0 = time.perf_counter()
    f = _prepare(fixed, clamp)
    m = _prepare(moving, clamp)

    if initial_transform is not None:
        tx = sitk.Euler3DTransform()
        init = _as_transform(initial_transform)
        try:
            tx.SetMatrix(init.GetMatrix())
            tx.SetTranslation(init.GetTranslation())
            tx.SetCenter(init.GetCenter())
        except (AttributeError, RuntimeError):
            raise InconsistentInputError("initial_transform must be a rigid (Euler/versor) transform") from None
    else:
        tx = _initial_transform(f, m, initialiser, levels[0], metric, histogram_bins)

    fractions = np.broadcast_to(np.asarray(sampling_fraction, dtype=float), (len(levels),)).copy()
    if np.any(fractions <= 0) or np.any(fractions > 1):
        raise InconsistentInputError(f"sampling fractions must be in (0, 1], got {sampling_fraction}")
    if max_samples is not None:
        caps = np.atleast_1d(np.asarray(max_samples, dtype=float))
        # aligned at the finest level: the first value repeats for extra coarse levels
        caps = np.concatenate([np.full(max(0, len(levels) - caps.size), caps[0]), caps])[-len(levels):]
        n_vox = [float(np.prod([max(1, n // s) for n in fixed.shape_ijk])) for s in levels]
        fractions = np.minimum(fractions, [min(1.0, c / n) for c, n in zip(caps, n_vox)])
    mask_sitk = _mask_to_sitk(fixed_mask, fixed) if fixed_mask is not None else None
    if mask_sitk is not None:
        # samples falling outside the mask are dropped: draw more so that the
        # number inside stays as asked
        inside = float(sitk.GetArrayViewFromImage(mask_sitk).mean())
        if inside <= 0:
            raise InconsistentInputError("the fixed mask is empty: give a mask covering the body")
        fractions = np.minimum(1.0, fractions / inside)

    # One optimisation per pyramid level (coarse to fine), so that the first
    # and smallest steps shrink with the level's voxel size.
    finest = levels[-1]
    iterations, stop, value = 0, "", float("nan")
    for shrink, sigma, frac in zip(levels, smoothing_sigmas_vox, fractions):
        R = _registration_method(metric, histogram_bins, threads)
        R.SetMetricSamplingStrategy(R.RANDOM)
        R.SetMetricSamplingPercentage(float(frac), int(seed))
        if mask_sitk is not None:
            R.SetMetricFixedMask(mask_sitk)
        scale = shrink / finest
        # coarse levels are cheap: let their steps shrink slowly so rotations
        # (small gradients in mm) still travel far; the finest level only polishes
        relax = 0.5 if shrink == finest else min(0.85, 0.6 + 0.1 * math.log2(scale))
        R.SetOptimizerAsRegularStepGradientDescent(
            learningRate=float(learning_rate_mm) * scale, minStep=float(min_step_mm) * scale,
            numberOfIterations=int(max_iterations), relaxationFactor=relax,
            gradientMagnitudeTolerance=1e-8)
        R.SetOptimizerScalesFromPhysicalShift()
        # the pyramid: block means (cheap, anti-aliased) plus optional smoothing
        fl, ml = _pyramid_level(f, shrink, sigma), _pyramid_level(m, shrink, sigma)
        R.SetShrinkFactorsPerLevel([1])
        R.SetSmoothingSigmasPerLevel([0.0])
        R.SetInitialTransform(tx, inPlace=True)
        try:
            R.Execute(fl, ml)
        except RuntimeError as e:
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise InconsistentInputError(
                f"registration failed ({msg}): the images may not overlap; check that both show the same "
                "body region or give initial_transform") from None
        iterations += int(R.GetOptimizerIteration())
        stop, value = R.GetOptimizerStopConditionDescription(), float(R.GetMetricValue())
    elapsed = time.perf_counter() - t0
    quality = _ncc(f, m, tx, mask_sitk)
    return RigidResult(
        transform=tx,
        metric_value=value,
        iterations=iterations,
        quality_ncc=quality,
        elapsed_s=elapsed,
        stop_condition=stop,
        metric=metric,
    )


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


# ------------------------------------------------------------- labels, I/O
def propagate_labels(labels: LabelMap, transform, target: Image) -> LabelMap:
    """Carry labels drawn in the fixed (reference) space onto a moving grid.

    Parameters
    ----------
    labels : LabelMap
        Labels in the fixed space of the registration (any grid).
    transform : SimpleITK.Transform or RigidResult
        Maps fixed-space points to moving-space points, as returned by
        :func:`register_rigid` (fixed = the labels' time point) and
        :func:`register_timepoints`; it is inverted for the resampling.
    target : Image
        The moving time point's image: its grid is the output grid.

    Returns
    -------
    LabelMap
        Nearest-neighbour labels on ``target``'s grid, same names.
    """
    tf = _as_transform(transform)
    try:
        inverse = tf.GetInverse()
    except RuntimeError:
        raise InconsistentInputError("the transform cannot be inverted: give a rigid or affine transform") from None
    out = labels.resampled_to(target, inverse, method="nearest")
    out.source = f"{labels.source} propagated" if labels.source else "propagated"
    return out


def save_transform(transform, path) -> Path:
    """Write a transform (or a :class:`RigidResult`'s) as an ITK ``.tfm`` file."""
    import SimpleITK as sitk

    from ..io_utils import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        sitk.WriteTransform(_as_transform(transform), str(tmp))
    return path


def load_transform(path):
    """Read an ITK transform file (``.tfm``/``.txt``/``.h5``) written by :func:`save_transform`.

    Returns
    -------
    SimpleITK.Transform
        Downcast to its concrete class (e.g. ``Euler3DTransform``).
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.exists():
        raise InputError(f"transform file {path} does not exist: check the path")
    try:
        tf = sitk.ReadTransform(str(path))
    except RuntimeError:
        raise InputError(f"cannot read {path} as an ITK transform file: write it with save_transform") from None
    try:
        return tf.Downcast()
    except (AttributeError, RuntimeError):
        return tf
