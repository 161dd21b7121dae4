"""Resampling images and label maps onto another grid (SimpleITK)."""

from __future__ import annotations

import numpy as np

from ..geometry import Image, from_sitk, to_sitk

__all__ = ["resample_labels", "resample_image", "LABEL_METHODS"]


#: ``method`` of :func:`resample_labels` -> SimpleITK interpolator name ("vote" is the former name of "linear").
LABEL_METHODS = {"nearest": "sitkNearestNeighbor", "linear": "sitkLabelLinear", "vote": "sitkLabelLinear",
                 "gaussian": "sitkLabelGaussian"}


def resample_labels(labels: Image, reference: Image, transform=None, *, method: str = "nearest") -> Image:
    """Resample an integer label image onto ``reference``.

    Parameters
    ----------
    labels : Image
        Integer labels on any grid.
    reference : Image
        The target grid (its values are not used).
    transform : SimpleITK.Transform, optional
        Maps points of ``reference`` space to ``labels`` space (ITK convention).
        Identity when omitted.
    method : {"nearest", "linear", "gaussian", "vote"}
        SimpleITK interpolator (:data:`LABEL_METHODS`):

        ``"nearest"``
            ``sitkNearestNeighbor``: the label of the nearest source voxel.
        ``"linear"``
            ``sitkLabelLinear``: each label's indicator (background included)
            is interpolated linearly and the largest wins (ties to the lower
            label), so boundaries fall between source voxel centres instead
            of snapping to them. ``"vote"`` is its former name (a loop doing
            the same in Python; identical labels).
        ``"gaussian"``
            ``sitkLabelGaussian``: each indicator is averaged under a Gaussian
            of sigma = the source spacing, truncated at one sigma; SimpleITK
            fixes both and exposes no setting for them. Smooth boundaries, but
            it shaves corners and erases structures one or two source voxels
            thick.

        ``"nearest"`` and ``"linear"`` return the source labels where output
        voxel centres coincide with source voxel centres.

    Returns
    -------
    Image
        int32 labels on ``reference``'s grid, 0 outside ``labels``' extent.

    Notes
    -----
    Carrying labels drawn on a CT 3 to 5 times finer than the SPECT through a
    rigid motion, ``"linear"`` is the most accurate of the three against
    centre-sampled truth: on the moving monkey phantom of
    ``tests/test_pipeline_registration.py`` it cuts the %ID error summed over
    regions by 14-40 % against ``"nearest"`` (the Gaussian: from 20 % better
    to 12 % worse, as it shaves thin hot regions), with Dice higher on almost
    every region. It costs about 1.2 s for a 128^3 target from a 384^3 map of
    16 regions (nearest neighbour 0.25 s, on 2 threads). No choice removes the
    error: a boundary voxel still goes whole to one region, which costs a
    region two SPECT voxels across (the spinal canal) several percent of its
    activity.

    Examples
    --------
    A region seen in one voxel of a 2 x 2 block, sampled 0.4 voxel from its
    centre along i and j: nearest neighbour keeps it; linear weighs it
    0.6 x 0.6 = 0.36 against 0.64 for background, rounding the corner off.

    >>> import numpy as np
    >>> lab = Image(np.array([[[1, 0], [0, 0]]], np.int16), (0, 0, 0), (1, 1, 1), np.eye(3))
    >>> point = Image(np.zeros((1, 1, 1)), (0.4, 0.4, 0), (1, 1, 1), np.eye(3))
    >>> int(resample_labels(lab, point, method="nearest").array[0, 0, 0])
    1
    >>> int(resample_labels(lab, point, method="linear").array[0, 0, 0])
    0
    """
    import SimpleITK as sitk

    if method not in LABEL_METHODS:
        raise ValueError(f"unknown label resampling method {method!r}: {', '.join(LABEL_METHODS)}")
    small = labels.array.dtype in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32)
    src = to_sitk(labels, dtype=None if small else np.int32)  # no widening copy of a CT-sized map
    f = sitk.ResampleImageFilter()
    f.SetSize([int(n) for n in reference.shape_ijk])
    f.SetOutputOrigin(tuple(float(v) for v in reference.origin_mm))
    f.SetOutputSpacing(tuple(float(v) for v in reference.spacing_mm))
    f.SetOutputDirection(tuple(float(v) for v in reference.direction.ravel()))
    f.SetInterpolator(getattr(sitk, LABEL_METHODS[method]))
    f.SetDefaultPixelValue(0)
    f.SetOutputPixelType(sitk.sitkInt32)
    if transform is not None:
        f.SetTransform(transform)
    return from_sitk(f.Execute(src), units="label")


def resample_image(image: Image, reference: Image, transform=None, *, order: int = 1,
                   default_value: float = 0.0) -> Image:
    """Resample an intensity image onto ``reference`` (linear by default).

    ``order`` 0 = nearest, 1 = linear, 3 = B-spline.
    """
    import SimpleITK as sitk

    interp = {0: sitk.sitkNearestNeighbor, 1: sitk.sitkLinear, 3: sitk.sitkBSpline}[order]
    f = sitk.ResampleImageFilter()
    f.SetSize([int(n) for n in reference.shape_ijk])
    f.SetOutputOrigin(tuple(float(v) for v in reference.origin_mm))
    f.SetOutputSpacing(tuple(float(v) for v in reference.spacing_mm))
    f.SetOutputDirection(tuple(float(v) for v in reference.direction.ravel()))
    f.SetInterpolator(interp)
    f.SetDefaultPixelValue(float(default_value))
    f.SetOutputPixelType(sitk.sitkFloat32)
    if transform is not None:
        f.SetTransform(transform)
    return from_sitk(f.Execute(to_sitk(image, dtype=np.float32)), units=image.units)
