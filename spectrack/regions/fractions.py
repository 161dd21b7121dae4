"""Fractional (partial-volume) region masks: the share of each emission voxel each region covers.

A label map drawn on a CT finer than the SPECT knows region boundaries to a
fraction of an emission voxel. Giving each emission voxel to one region (the
hard mask :meth:`~spectrack.regions.labelmap.LabelMap.resampled_to` makes)
throws that away: a boundary voxel half brain, half CSF is all one or the
other. Recovery correction with fractional masks (as PETPVC's GTM takes
probabilistic masks) models the boundary voxel as the mix it is.

:func:`region_fractions` samples the label map at ``supersample**3`` points
evenly spread inside every emission voxel (through the registration
transform, nearest neighbour) and counts them per region.
"""

from __future__ import annotations

import numpy as np

from ..geometry import Image

__all__ = ["region_fractions", "finer_than"]


def finer_than(labels, reference: Image) -> bool:
    """Whether the label map's voxels are smaller than ``reference``'s (by volume)."""
    img = getattr(labels, "image", labels)
    return float(np.prod(img.spacing_mm)) < 0.999 * float(np.prod(reference.spacing_mm))


def region_fractions(labels, reference: Image, transform=None, *, supersample: int = 3, label_ids=None):
    """Share of each ``reference`` voxel covered by each region.

    Parameters
    ----------
    labels : LabelMap
        Regions on any grid (typically the CT's).
    reference : Image
        The emission grid.
    transform : SimpleITK.Transform, optional
        Maps ``reference`` points into the labels' space (as for
        :meth:`~spectrack.regions.labelmap.LabelMap.resampled_to`).
    supersample : int
        Sample points per voxel edge (``supersample**3`` per voxel); the
        fractions are multiples of ``1 / supersample**3``.
    label_ids : sequence of int, optional
        Regions to return (default: every non-zero label sampled).

    Returns
    -------
    label_ids : numpy.ndarray of int
    fractions : numpy.ndarray of float32, shape ``(len(label_ids),) + reference.array.shape``
        In [0, 1]; over regions they sum to at most 1 (the rest is unlabelled).

    Examples
    --------
    >>> from spectrack.regions.labelmap import LabelMap
    >>> fine = np.zeros((4, 4, 4), np.int16); fine[:, :, :1] = 1     # i < 1 of 4 fine voxels
    >>> lm = LabelMap(Image(fine, (-0.375,) * 3, (0.25,) * 3), {1: "a"})
    >>> ids, f = region_fractions(lm, Image(np.zeros((1, 1, 1)), (0.0,) * 3, (1.0,) * 3), supersample=4)
    >>> ids.tolist(), float(f[0, 0, 0, 0])
    ([1], 0.25)
    """
    s = int(supersample)
    if s < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    sub_spacing = reference.spacing_mm / s
    # the first sample of a voxel sits half a sample in from the voxel's corner
    shift = reference.direction @ (-reference.spacing_mm / 2.0 + sub_spacing / 2.0)
    nk, nj, ni = reference.array.shape
    sub = Image(np.zeros((nk * s, nj * s, ni * s), np.uint8), reference.origin_mm + shift, sub_spacing,
                reference.direction, units="label")
    arr = labels.resampled_to(sub, transform, method="nearest").image.array
    if label_ids is None:
        label_ids = np.unique(arr[arr != 0])
    ids = np.asarray(label_ids, dtype=np.int64)
    blocks = arr.reshape(nk, s, nj, s, ni, s)
    out = np.zeros((ids.size, nk, nj, ni), np.float32)
    for n, lid in enumerate(ids):
        out[n] = np.count_nonzero(blocks == lid, axis=(1, 3, 5)) / float(s ** 3)
    return ids, out
