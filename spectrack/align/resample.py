"""Resampling images and label maps onto another grid (SimpleITK)."""

from __future__ import annotations

import numpy as np

from ..geometry import Image, from_sitk, to_sitk

__all__ = ["resample_labels", "resample_image"]


def resample_labels(labels: Image, reference: Image, transform=None) -> Image:
    """Nearest-neighbour resampling of an integer label image onto ``reference``.

    Parameters
    ----------
    labels : Image
        Integer labels on any grid.
    reference : Image
        The target grid (its values are not used).
    transform : SimpleITK.Transform, optional
        Maps points of ``reference`` space to ``labels`` space (ITK convention).
        Identity when omitted.
    """
    import SimpleITK as sitk

    src = to_sitk(labels, dtype=np.int32)
    f = sitk.ResampleImageFilter()
    f.SetSize([int(n) for n in reference.shape_ijk])
    f.SetOutputOrigin(tuple(float(v) for v in reference.origin_mm))
    f.SetOutputSpacing(tuple(float(v) for v in reference.spacing_mm))
    f.SetOutputDirection(tuple(float(v) for v in reference.direction.ravel()))
    f.SetInterpolator(sitk.sitkNearestNeighbor)
    f.SetDefaultPixelValue(0)
    f.SetOutputPixelType(sitk.sitkInt32)
    if transform is not None:
        f.SetTransform(transform)
    out = from_sitk(f.Execute(src), units="label")
    return out


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
