"""Resampling images and label maps onto another grid (SimpleITK)."""

from __future__ import annotations

import numpy as np

from ..geometry import Image, from_sitk, to_sitk

__all__ = ["resample_labels", "resample_image"]


def resample_labels(labels: Image, reference: Image, transform=None, *, method: str = "nearest") -> Image:
    """Resample an integer label image onto ``reference``.

    ``method="nearest"`` (default) takes the label of the nearest source
    voxel. ``method="vote"`` interpolates each region's indicator linearly
    and gives each output voxel the region with the largest value (0 where
    background wins): boundaries then fall between source voxel centres
    instead of snapping to them, which matters when labels are carried
    through a rotation onto a grid whose voxel centres do not coincide with
    the source's (with a CT 3x finer than the SPECT, nearest neighbour loses
    about 2 % of a monkey brain's activity at its boundary; the vote about
    0.5 %). Both give the same answer where output centres coincide with
    source centres.

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

    if method == "vote":
        return _resample_labels_vote(labels, reference, transform)
    if method != "nearest":
        raise ValueError(f"unknown label resampling method {method!r}: nearest or vote")
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


def _resample_labels_vote(labels: Image, reference: Image, transform=None) -> Image:
    arr = labels.array
    values = [int(v) for v in np.unique(arr) if v != 0]
    best = np.zeros(reference.array.shape if reference.array.ndim == 3 else reference.shape_ijk[::-1], np.float32)
    out = np.zeros(best.shape, np.int32)
    # background competes too: a voxel mostly outside every region stays 0
    bg = resample_image(labels.with_array((arr == 0).astype(np.float32)), reference, transform, order=1,
                        default_value=1.0).array
    best[...] = bg
    for v in values:
        ind = resample_image(labels.with_array((arr == v).astype(np.float32)), reference, transform, order=1,
                             default_value=0.0).array
        win = ind > best
        out[win] = v
        best[win] = ind[win]
    return Image(out, reference.origin_mm, reference.spacing_mm, reference.direction, units="label")


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
