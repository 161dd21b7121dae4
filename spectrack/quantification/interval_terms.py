"""The image terms of the %ID draws: region boundary shifts and the recovery correction of every draw.

For :func:`spectrack.quantification.intervals.add_pct_id_intervals`:
:func:`region_spread` (a region's sum nominal, eroded and dilated by one voxel),
:func:`boundary_sd_mm` (default SD of a boundary's position) and the factor of
a boundary shift; the transfer matrices at FWHM draws (computed at a few nodes,
cached, interpolated between them) and the GTM solved for every draw. A
boundary shift's effect on every region is :mod:`spectrack.quantification.boundary`.
"""

from __future__ import annotations

import math

import numpy as np

from .boundary import _dilate6, _erode6

__all__ = ["region_spread", "boundary_sd_mm"]


def region_spread(image_array: np.ndarray, mask: np.ndarray) -> tuple[float, float, float]:
    """Sums of ``image_array`` over ``mask``, ``mask`` eroded and ``mask`` dilated by one voxel.

    6-connected structuring element; erosion treats outside the volume as
    background. Returns ``(nominal, eroded, dilated)``.

    Examples
    --------
    >>> m = np.zeros((5, 5, 5), bool); m[1:4, 1:4, 1:4] = True
    >>> region_spread(np.ones((5, 5, 5)), m)
    (27.0, 1.0, 81.0)
    """
    mask = np.asarray(mask)
    # the bounding box from the mask's projections on the axes: a few reductions, not every voxel's index
    spans = [np.flatnonzero(mask.any(axis=tuple(b for b in range(mask.ndim) if b != ax))) for ax in range(mask.ndim)]
    if spans[0].size == 0:
        return 0.0, 0.0, 0.0
    box = tuple(slice(max(int(w[0]) - 1, 0), min(int(w[-1]) + 2, n)) for w, n in zip(spans, mask.shape))
    m = mask[box]
    v = image_array[box].astype(np.float64)
    ero = _erode6(m)
    dil = _dilate6(m)
    return float(v[m].sum()), float(v[ero].sum()), float(v[dil].sum())


def _row_mask(row, lab, rev, groups):
    kind = row.get("kind", "region")
    region = str(row["region"])
    if kind == "fov":
        return np.ones(lab.shape, bool)
    if kind == "outside":
        return lab == 0
    if kind == "group":
        members = groups.get(region, ())
        if not members or any(m not in rev for m in members):
            return None
        return np.isin(lab, [rev[m] for m in members])
    label = row.get("label")
    if label is not None and not (isinstance(label, float) and math.isnan(label)) and int(label) > 0:
        return lab == int(label)
    if region in rev:
        return lab == rev[region]
    return None


def boundary_sd_mm(labels) -> float:
    """Default SD (mm) of a region boundary's position: the label voxel size over sqrt(12).

    A boundary drawn on a grid is known to within one of its voxels; a
    uniform error over one voxel has this SD (GUM type B). The mean of the
    label map's three voxel sizes is used.

    Examples
    --------
    >>> from spectrack.geometry import Image
    >>> from spectrack.regions.labelmap import LabelMap
    >>> lm = LabelMap(Image(np.zeros((2, 2, 2), np.int16), spacing_mm=(3.0, 3.0, 3.0), units="label"), {})
    >>> round(boundary_sd_mm(lm), 4)
    0.866
    """
    sp = getattr(getattr(labels, "image", labels), "spacing_mm", None)
    if sp is None:
        raise TypeError("labels must be a LabelMap or an Image (the voxel size is needed)")
    return float(np.mean(np.asarray(sp, float))) / math.sqrt(12.0)


#: FWHM nodes (in SDs of the FWHM) at which the transfer matrix is computed and between which it is interpolated.
_FWHM_NODES = np.linspace(-3.0, 3.0, 7)
_GTM_CACHE: dict = {}


def _gtm_nodes(lab, ids, spacing, fwhm, rel_sd, truncate=4.0):
    """Transfer matrices at FWHM scales ``1 + rel_sd * _FWHM_NODES`` (cached by label content)."""
    import hashlib

    from .recovery import _fwhm3, gtm_matrix

    scales = (1.0 + rel_sd * _FWHM_NODES) if rel_sd > 0 else np.array([1.0])
    scales = np.clip(scales, 0.05, None)
    key = (hashlib.blake2b(np.ascontiguousarray(lab).view(np.uint8), digest_size=16).hexdigest(), lab.shape,
           tuple(np.asarray(spacing, float).round(6)), tuple(_fwhm3(fwhm).round(6)), round(float(rel_sd), 9),
           tuple(int(i) for i in ids), truncate)
    hit = _GTM_CACHE.get(key)
    if hit is None:
        mats = [gtm_matrix(lab, spacing, _fwhm3(fwhm) * s, label_ids=ids, truncate=truncate) for s in scales]
        hit = (np.stack([m[0] for m in mats]), mats[0][2].astype(float))
        if len(_GTM_CACHE) > 32:
            _GTM_CACHE.clear()
        _GTM_CACHE[key] = hit
    return hit


def _interp_nodes(W_nodes, z):
    """Transfer matrices (n, L, L) at FWHM draws ``z`` (in SDs), piecewise linear between the nodes."""
    if W_nodes.shape[0] == 1:
        return np.broadcast_to(W_nodes[0], (z.size,) + W_nodes.shape[1:])
    x = (np.clip(z, _FWHM_NODES[0], _FWHM_NODES[-1]) - _FWHM_NODES[0]) / (_FWHM_NODES[1] - _FWHM_NODES[0])
    i0 = np.clip(np.floor(x).astype(int), 0, W_nodes.shape[0] - 2)
    w = (x - i0)[:, None, None]
    return W_nodes[i0] * (1.0 - w) + W_nodes[i0 + 1] * w


def _solve_draws(W, y, nonnegative):
    """Solve ``W[d] t[d] = y[d]`` for every draw; non-negative least squares where a solution goes negative."""
    from scipy import optimize

    try:
        t = np.linalg.solve(W, y[..., None])[..., 0]
    except np.linalg.LinAlgError:
        t = np.stack([np.linalg.lstsq(W[d], y[d], rcond=None)[0] for d in range(y.shape[0])])
    if nonnegative:
        for d in np.flatnonzero((t < 0).any(axis=1)):
            t[d] = optimize.nnls(np.ascontiguousarray(W[d]), y[d])[0]
    return t
