"""Automatic regions, part 1: grid helpers, morphology in millimetres, the spinal canal.

The canal is found on CT as the fluid-density space enclosed by vertebral
bone, slice by slice along the image axis closest to the body's long axis:

1. bone = HU >= ``bone_hu``; each slice's bone is closed in-plane with a disk
   a little wider than the canal (this bridges gaps in the bony ring);
2. candidates = closed bone minus bone, with CSF-like density (``csf_hu``),
   inside the body; each slice's 2-D connected pieces are nodes;
3. the canal is the longest chain of nodes linked slice to slice (gaps of a
   few slices allowed, bounded in-plane steps): a longest path in a directed
   acyclic graph, so isolated fluid pockets never win;
4. the centreline is the chain's per-slice centroids (LPS mm), smoothed
   (Savitzky-Golay) and resampled evenly in arc length, caudal to cranial;
5. canal levels are cut at arc lengths along the centreline
   (:func:`split_levels`): user-set boundaries in mm, the discs between
   vertebrae counted on the CT (:mod:`spectrack.regions.auto.vertebrae`), or the
   preset's fractions of canal length (:mod:`spectrack.regions.auto.ct` picks
   and says which).

Everything is in physical units (mm) via the image geometry, so voxel size
and slice direction do not matter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ...geometry import Image
from ..centreline import Centreline
from ..vocabulary import CANAL_LEVELS

__all__ = ["View", "component_stats", "fill_holes", "dilate_mm", "erode_mm", "close_mm", "open_mm", "CanalResult", "find_canal",
           "centreline_from_mask", "split_levels"]


# ------------------------------------------------------------------ grid view
class View:
    """An image's array with its slice axis first.

    The slice axis is the index axis whose world direction is closest to
    LPS +z or -z (the body's long axis for a subject lying along the table).

    Parameters
    ----------
    image : Image
        Any grid.

    Examples
    --------
    >>> v = View(Image(np.zeros((4, 5, 6)), spacing_mm=(1, 2, 3)))
    >>> v.shape, v.spacing.tolist(), v.up
    ((4, 5, 6), [3.0, 2.0, 1.0], 1.0)
    """

    def __init__(self, image: Image):
        d = image.direction
        ax_ijk = int(np.argmax(np.abs(d[2, :])))
        arr_axis = 2 - ax_ijk
        others = [a for a in (0, 1, 2) if a != arr_axis]
        self.perm = (arr_axis, *others)
        self.inv = tuple(int(v) for v in np.argsort(self.perm))
        self.spacing = np.asarray(image.spacing_mm[::-1], float)[list(self.perm)]
        #: +1 when a higher slice index is further toward the head
        self.up = float(np.sign(d[2, ax_ijk]) or 1.0)
        self.image = image
        self.shape = tuple(image.array.shape[a] for a in self.perm)

    def to_view(self, arr: np.ndarray) -> np.ndarray:
        return np.transpose(arr, self.perm)

    def from_view(self, arr: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.transpose(arr, self.inv))

    def world(self, idx) -> np.ndarray:
        """LPS mm of view indices ``(..., 3)`` (slice, row, column of the view)."""
        idx = np.asarray(idx, float)
        arr_idx = idx[..., list(self.inv)]
        return self.image.index_to_world_mm(arr_idx[..., ::-1])

    def world_of_mask(self, mask_view: np.ndarray) -> np.ndarray:
        """LPS mm (n, 3) of the True voxels of a view-ordered mask."""
        return self.world(np.argwhere(mask_view))

    def slice_world_rows(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """In-plane world offsets: LPS mm of slice ``k``'s voxel centres, shape (rows, cols, 3)."""
        r, c = np.meshgrid(np.arange(self.shape[1]), np.arange(self.shape[2]), indexing="ij")
        idx = np.stack([np.full(r.shape, k), r, c], axis=-1)
        return self.world(idx)


# ---------------------------------------------------------- morphology in mm
# Ball (or in-plane disk) morphology of any radius in millimetres via scipy's
# exact Euclidean distance transform with the voxel spacing as sampling: exact
# in physical units on anisotropic grids and linear in the image size, where a
# footprint's cost grows with the cube of its radius in voxels.
_FLAT = 1e9  # sampling along the slice axis that keeps distances in-plane


def _sampling(spacing, in_plane: bool):
    s = np.asarray(spacing, float).copy()
    if in_plane:
        s[0] = _FLAT
    return s


def _crop(mask: np.ndarray, radius_mm: float, spacing, in_plane: bool):
    """Slices of ``mask``'s bounding box grown by ``radius_mm`` (plus a voxel), or None if empty."""
    idx = np.nonzero(mask.any(axis=(1, 2)))[0]
    if idx.size == 0:
        return None
    out = []
    for ax in range(3):
        other = tuple(a for a in range(3) if a != ax)
        nz = np.nonzero(mask.any(axis=other))[0]
        pad = 0 if (in_plane and ax == 0) else int(np.ceil(radius_mm / spacing[ax])) + 1
        out.append(slice(max(int(nz[0]) - pad, 0), min(int(nz[-1]) + pad + 1, mask.shape[ax])))
    return tuple(out)


def fill_holes(mask: np.ndarray, structure=None) -> np.ndarray:
    """``scipy.ndimage.binary_fill_holes`` within the mask's bounding box (the same result, less work).

    Examples
    --------
    >>> m = np.zeros((5, 8, 8), bool); m[1:4, 1:5, 1:5] = True; m[2, 2:4, 2:4] = False
    >>> int(m.sum()), int(fill_holes(m).sum()), bool(np.array_equal(fill_holes(m), ndi.binary_fill_holes(m)))
    (44, 48, True)
    """
    mask = np.asarray(mask, bool)
    box = _crop(mask, 0.0, (1.0, 1.0, 1.0), False)
    out = np.zeros(mask.shape, bool)
    if box is not None:
        out[box] = ndi.binary_fill_holes(mask[box], structure=structure)
    return out


def dilate_mm(mask: np.ndarray, radius_mm: float, spacing, *, in_plane: bool = False) -> np.ndarray:
    """Voxels within ``radius_mm`` of ``mask`` (ball, or disk in each slice when ``in_plane``)."""
    mask = np.asarray(mask, bool)
    box = _crop(mask, radius_mm, spacing, in_plane)
    if box is None or radius_mm <= 0:
        return mask.copy()
    out = np.zeros(mask.shape, bool)
    out[box] = ndi.distance_transform_edt(~mask[box], sampling=_sampling(spacing, in_plane)) <= radius_mm
    return out


def erode_mm(mask: np.ndarray, radius_mm: float, spacing, *, in_plane: bool = False) -> np.ndarray:
    """Voxels of ``mask`` farther than ``radius_mm`` from its outside (the array border counts as outside)."""
    mask = np.asarray(mask, bool)
    box = _crop(mask, 0.0, spacing, in_plane)
    if box is None or radius_mm <= 0:
        return mask.copy()
    padded = np.pad(mask[box], 1, constant_values=False)
    d = ndi.distance_transform_edt(padded, sampling=_sampling(spacing, in_plane))
    out = np.zeros(mask.shape, bool)
    out[box] = d[1:-1, 1:-1, 1:-1] > radius_mm
    return out


def close_mm(mask, radius_mm, spacing, *, in_plane=False):
    """Morphological closing with a ball (or in-plane disk) of ``radius_mm``."""
    mask = np.asarray(mask, bool)
    box = _crop(mask, 2.0 * radius_mm, spacing, in_plane)
    if box is None or radius_mm <= 0:
        return mask.copy()
    sub = mask[box]
    d = ndi.distance_transform_edt(~sub, sampling=_sampling(spacing, in_plane)) <= radius_mm
    e = ndi.distance_transform_edt(d, sampling=_sampling(spacing, in_plane))
    out = mask.copy()
    out[box] |= d & (e > radius_mm)
    return out


def open_mm(mask, radius_mm, spacing, *, in_plane=False):
    """Morphological opening with a ball (or in-plane disk) of ``radius_mm``."""
    return dilate_mm(erode_mm(mask, radius_mm, spacing, in_plane=in_plane), radius_mm, spacing,
                     in_plane=in_plane) & np.asarray(mask, bool)


# -------------------------------------------------------------- centreline
def component_stats(lab: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Voxel count and centroid (array index) of components ``1..n`` of a label array, in one pass.

    Examples
    --------
    >>> lab = np.array([[1, 1, 0], [0, 2, 2], [0, 0, 2]])
    >>> count, centroid = component_stats(lab, 2)
    >>> count.tolist(), centroid.round(3).tolist()
    ([2, 3], [[0.0, 0.5], [1.333, 1.667]])
    """
    flat = np.flatnonzero(lab)
    which = lab.ravel()[flat]
    count = np.bincount(which, minlength=n + 1)[1:]
    centroid = np.stack([np.bincount(which, weights=c, minlength=n + 1)[1:]
                         for c in np.unravel_index(flat, lab.shape)], axis=1)
    return count, centroid / np.maximum(count, 1)[:, None]


def _savgol(y: np.ndarray, window: int) -> np.ndarray:
    from scipy.signal import savgol_filter

    n = len(y)
    w = min(window, n if n % 2 else n - 1)
    if w < 5:
        return y
    return savgol_filter(y, w, 2, axis=0, mode="interp")


def _centreline_from_centroids(slices: np.ndarray, xyz: np.ndarray, view: View, smooth_mm: float | None,
                               step_mm: float | None = None) -> Centreline:
    """Smooth per-slice centroids (slice index, LPS mm) into a caudal->cranial centreline."""
    order = np.argsort(slices)
    slices, xyz = np.asarray(slices, float)[order], np.asarray(xyz, float)[order]
    full = np.arange(int(slices[0]), int(slices[-1]) + 1, dtype=float)
    pts = np.stack([np.interp(full, slices, xyz[:, a]) for a in range(3)], axis=1)
    h = float(view.spacing[0])
    if smooth_mm is None:
        smooth_mm = 6.0 * h
    win = int(round(smooth_mm / h)) | 1
    if len(pts) >= 5:
        pts = _savgol(pts, max(win, 5))
    if view.up < 0:
        pts = pts[::-1]
    # extend half a slice at both ends along the end tangents: the canal's
    # voxels reach half a slice beyond their centres
    if len(pts) >= 2:
        t0 = pts[0] - pts[1]
        t1 = pts[-1] - pts[-2]
        pts = np.vstack([pts[0] + 0.5 * t0, pts, pts[-1] + 0.5 * t1])
    else:
        axis = view.world([1.0, 0, 0]) - view.world([0.0, 0, 0])
        axis *= view.up
        pts = np.vstack([pts[0] - 0.5 * axis, pts[0] + 0.5 * axis])
    step = step_mm if step_mm is not None else 0.25 * float(np.min(view.spacing))
    return Centreline(pts).resampled(step)


def centreline_from_mask(mask: np.ndarray, image: Image, *, smooth_mm: float | None = None) -> Centreline | None:
    """Centreline of a tube-shaped mask (e.g. the canal labels), caudal to cranial.

    Parameters
    ----------
    mask : ndarray of bool
        In ``image``'s array order.
    image : Image
        The grid of ``mask``.
    smooth_mm : float, optional
        Length of the smoothing window along the tube (6 slices by default).

    Returns
    -------
    Centreline or None
        None when the mask is empty.
    """
    view = View(image)
    m = view.to_view(np.asarray(mask, bool))
    ks = np.nonzero(m.any(axis=(1, 2)))[0]
    if ks.size == 0:
        return None
    cents = []
    for k in ks:
        rc = np.argwhere(m[k])
        idx = np.column_stack([np.full(len(rc), k), rc])
        cents.append(view.world(idx).mean(axis=0))
    return _centreline_from_centroids(ks, np.array(cents), view, smooth_mm)


# ------------------------------------------------------------------- canal
@dataclass
class CanalResult:
    """What :func:`find_canal` found."""

    mask: np.ndarray  # array order of the image
    centreline: Centreline | None
    radius_mm: float = 0.0
    slices: int = 0
    notes: list[str] = field(default_factory=list)


def find_canal(ct: Image, body: np.ndarray, *, canal_radius_mm: float, bone_hu: float = 250.0,
               csf_hu=(-50.0, 25.0), max_gap_mm: float | None = None, min_length_mm: float = 0.0,
               smooth_mm: float | None = None) -> CanalResult:
    """Find the spinal canal on CT (see the module docstring).

    Parameters
    ----------
    ct : Image
        Hounsfield units.
    body : ndarray of bool
        Body mask in ``ct``'s array order.
    canal_radius_mm : float
        The largest expected canal radius (preset prior): sets the in-plane
        closing that bridges the bony ring and the largest accepted piece.
    bone_hu : float
        Bone threshold.
    csf_hu : (float, float)
        Density window of canal content (CSF 0-15 HU).
    max_gap_mm : float, optional
        Longest stretch along the canal without a candidate that the chain may
        bridge (default 3 slices or 2 canal radii, whichever is longer).
    min_length_mm : float
        Shortest chain accepted as the canal.
    smooth_mm : float, optional
        Centreline smoothing window.
    """
    view = View(ct)
    hu = view.to_view(np.asarray(ct.array, np.float32))
    body_v = view.to_view(np.asarray(body, bool))
    sp = view.spacing
    px = float(max(sp[1], sp[2]))
    r_close = max(1.5 * canal_radius_mm, 1.6 * px)
    bone = hu >= bone_hu
    # only the slab of slices holding bone matters
    ks = np.nonzero(bone.any(axis=(1, 2)))[0]
    notes: list[str] = []
    empty = CanalResult(np.zeros(ct.array.shape, bool), None, 0.0, 0, notes)
    if ks.size == 0:
        notes.append("no bone on the CT: no spinal canal")
        return empty
    k0, k1 = int(ks[0]), int(ks[-1]) + 1
    closed = close_mm(bone[k0:k1], r_close, sp, in_plane=True)
    cand = closed & ~bone[k0:k1] & (hu[k0:k1] >= csf_hu[0]) & (hu[k0:k1] <= csf_hu[1]) & body_v[k0:k1]
    st2 = np.zeros((3, 3, 3), bool)
    st2[1] = True
    lab, n = ndi.label(cand, structure=st2)
    if n == 0:
        notes.append("no fluid-density space enclosed by bone: no spinal canal")
        return empty
    count, com = component_stats(lab, n)  # com: view index (k, r, c)
    area = count * sp[1] * sp[2]
    max_area = np.pi * (2.0 * canal_radius_mm + px) ** 2
    keep = area <= max_area
    node_k = com[:, 0].round().astype(int)
    node_xyz = view.world(np.column_stack([com[:, 0] + k0, com[:, 1], com[:, 2]]))
    nodes = np.nonzero(keep)[0]
    if nodes.size == 0:
        notes.append("no canal-sized fluid space enclosed by bone: no spinal canal")
        return empty
    # longest chain through the slices (DAG longest path)
    h = float(sp[0])
    if max_gap_mm is None:
        max_gap_mm = max(3 * h, 2 * canal_radius_mm)
    max_gap = max(1, int(np.floor(max_gap_mm / h + 1e-6)))
    order = nodes[np.argsort(node_k[nodes], kind="stable")]
    by_k: dict[int, list[int]] = {}
    for nd in order:
        by_k.setdefault(int(node_k[nd]), []).append(int(nd))
    score, prev = {}, {}
    w = np.minimum(area / (np.pi * canal_radius_mm ** 2), 1.0)  # small weight for specks
    for nd in order:
        k = int(node_k[nd])
        best, arg = 0.0, -1
        for g in range(1, max_gap + 1):
            for m in by_k.get(k - g, ()):
                step = np.linalg.norm(node_xyz[nd] - node_xyz[m])
                lateral = np.sqrt(max(step ** 2 - (g * h) ** 2, 0.0))
                if lateral <= canal_radius_mm + px + 0.6 * g * h and score[m] > best:
                    best, arg = score[m], m
        score[nd] = best + 0.5 + 0.5 * w[nd]
        prev[nd] = arg
    end = max(score, key=score.get)
    chain = []
    while end != -1:
        chain.append(end)
        end = prev[end]
    chain = chain[::-1]
    ck = node_k[chain]
    length = (ck[-1] - ck[0] + 1) * h
    if length < min_length_mm:
        notes.append(f"the longest canal-like chain is {length:.0f} mm long (< {min_length_mm:.0f} mm): "
                     "no spinal canal")
        return empty
    mask_v = np.zeros(hu.shape, bool)
    sub = np.isin(lab, np.asarray(chain) + 1)
    # holes inside the canal (cord denser than CSF) belong to it
    sub = fill_holes(sub, structure=st2)
    # partial volume: the canal's rim mixes fluid and bone; rim voxels less than half bone belong to the canal.
    # The fluid window alone erodes the canal by the CT's blur (a monkey's canal on a CT of 1 mm FWHM: to half
    # its volume, and a quarter of a human canal's area on the 512x512x300 benchmark CT). One ring, in plane,
    # inside the bony ring; soft tissue touching the canal is taken too (one voxel at most), the lesser error.
    bb = _crop(sub, 3.0 * px, sp, in_plane=True)  # the canal's box, wide enough for the 3 rings below
    if bb is not None:
        s_bb, hu_bb = sub[bb], hu[k0:k1][bb]
        outer = ndi.binary_dilation(s_bb, structure=st2, iterations=3) & bone[k0:k1][bb]
        if outer.any():
            half = 0.5 * (float(np.median(hu_bb[s_bb])) + float(np.median(hu_bb[outer])))
            rim = ndi.binary_dilation(s_bb, structure=st2) & ~s_bb & closed[bb] & body_v[k0:k1][bb]
            sub[bb] |= rim & (hu_bb >= csf_hu[0]) & (hu_bb < half)
    mask_v[k0:k1] = sub
    r_eq = float(np.sqrt(np.median(area[chain]) / np.pi))
    # bridge missing slices: a disk of the median radius around the interpolated centre
    missing = np.setdiff1d(np.arange(ck[0], ck[-1] + 1), ck)
    if missing.size:
        notes.append(f"canal bridged over {missing.size} slice(s) without an enclosed fluid space")
        for k in missing:
            c = np.array([np.interp(k, ck, com[chain, a]) for a in (1, 2)])
            rr, cc = np.ogrid[:hu.shape[1], :hu.shape[2]]
            disk = ((rr - c[0]) * sp[1]) ** 2 + ((cc - c[1]) * sp[2]) ** 2 <= max(r_eq, 0.5 * px) ** 2
            mask_v[k + k0] |= disk & ~bone[k + k0]
    cl = _centreline_from_centroids(ck + k0, node_xyz[chain], view, smooth_mm)
    return CanalResult(view.from_view(mask_v), cl, r_eq, int(ck[-1] - ck[0] + 1), notes)


def split_levels(canal_mask: np.ndarray, image: Image, centreline: Centreline, boundaries_mm) -> dict:
    """Split canal voxels into levels by arc length along the centreline.

    Parameters
    ----------
    canal_mask : ndarray of bool
        In ``image``'s array order.
    image : Image
    centreline : Centreline
    boundaries_mm : sequence of 3 float
        Arc lengths (from the caudal end) of the sacral/lumbar,
        lumbar/thoracic and thoracic/cervical boundaries.

    Returns
    -------
    dict
        ``{level name: bool mask}`` in :data:`CANAL_LEVELS` order.
    """
    b = [float(v) for v in boundaries_mm]
    kk = np.argwhere(canal_mask)
    s, _ = centreline.project(image.index_to_world_mm(kk[:, ::-1]))
    # caudal -> cranial: sacral, lumbar, thoracic, cervical
    cuts = np.digitize(s, b)
    names = ("canal_sacral", "canal_lumbar", "canal_thoracic", "canal_cervical")
    out = {}
    for lvl in CANAL_LEVELS:
        m = np.zeros(canal_mask.shape, bool)
        sel = kk[cuts == names.index(lvl)]
        m[sel[:, 0], sel[:, 1], sel[:, 2]] = True
        out[lvl] = m
    return out
