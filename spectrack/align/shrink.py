"""Block-averaged working copies of large images (SimpleITK ``BinShrink``).

A 512x512x300 CT has 79 million voxels, several times more than a rigid
registration or an automatic segmentation needs when the result is used on a
SPECT grid of 2-8 mm. The steps that follow work on a copy whose voxels are
the means of integer blocks of CT voxels (the same field of view, anti-aliased,
no interpolation), chosen so that the copy's voxels are about a target size.
"""

from __future__ import annotations

import numpy as np

from ..geometry import Image, from_sitk, to_sitk

__all__ = ["shrink_factors", "shrink_to_spacing"]


def shrink_factors(spacing_mm, target_spacing_mm: float, shape_ijk=None) -> tuple[int, int, int]:
    """Integer block sizes (i, j, k) that bring ``spacing_mm`` nearest to ``target_spacing_mm``.

    An axis already at or above the target keeps its voxels (factor 1); an
    axis is never shrunk below 4 voxels.

    Parameters
    ----------
    spacing_mm : sequence of 3 float
        Voxel spacing along i, j, k.
    target_spacing_mm : float
        The voxel size wanted.
    shape_ijk : sequence of 3 int, optional
        Image size, to keep at least 4 voxels per axis.

    Examples
    --------
    >>> shrink_factors([0.75, 0.515625, 3.28], 2.0)
    (3, 4, 1)
    >>> shrink_factors([4.0, 4.0, 4.0], 2.0)
    (1, 1, 1)
    """
    sp = np.asarray(spacing_mm, dtype=float).reshape(3)
    if not (np.isfinite(target_spacing_mm) and target_spacing_mm > 0) or np.any(~(sp > 0)):
        raise ValueError(f"spacing and target must be positive, got {sp.tolist()} and {target_spacing_mm}")
    f = np.maximum(1, np.rint(float(target_spacing_mm) / sp)).astype(int)
    if shape_ijk is not None:
        f = np.minimum(f, np.maximum(1, np.asarray(shape_ijk, dtype=int).reshape(3) // 4))
    return tuple(int(v) for v in f)


def shrink_to_spacing(image: Image, target_spacing_mm: float, *, dtype=np.float32) -> Image:
    """``image`` block-averaged to voxels of about ``target_spacing_mm`` (itself when no axis shrinks).

    The block means keep the field of view from the first voxel's corner
    (a partial block at the far end of an axis is dropped, as ``BinShrink``
    does) and the geometry is exact: each output voxel centre is the centre
    of its block.

    Parameters
    ----------
    image : Image
        Any 3-D image.
    target_spacing_mm : float
        The wanted voxel size (mm).
    dtype : numpy dtype
        Pixel type of the block means (for an integer image, the means are
        rounded to whole units before conversion).

    Returns
    -------
    Image
        With ``meta["shrink_factors"]`` the factors used.

    Examples
    --------
    >>> img = Image(np.arange(512, dtype=np.float32).reshape(8, 8, 8), [0, 0, 0], [1, 1, 1], np.eye(3))
    >>> small = shrink_to_spacing(img, 2.0)
    >>> small.shape_ijk, small.origin_mm.tolist(), float(small.array[0, 0, 0])
    ((4, 4, 4), [0.5, 0.5, 0.5], 36.5)
    """
    import SimpleITK as sitk

    f = shrink_factors(image.spacing_mm, target_spacing_mm, image.shape_ijk)
    if max(f) == 1:
        return image
    if np.issubdtype(image.array.dtype, np.integer):
        # shrink in the image's own type (means rounded to whole units, e.g. 1 HU): half the memory of
        # converting the full-size image first
        small = sitk.BinShrink(to_sitk(image), list(f))
        out = from_sitk(small, units=image.units)
        out.array = out.array.astype(dtype)
    else:
        out = from_sitk(sitk.BinShrink(to_sitk(image, dtype=dtype), list(f)), units=image.units)
    out.meta = dict(image.meta) if isinstance(image.meta, dict) else {}
    out.meta["shrink_factors"] = list(f)
    return out
