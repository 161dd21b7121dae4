"""Automatic regions, part 2: body outline, brain and skull, organs, injection site.

Priors
------
:data:`PRIORS` holds, per preset, the nominal canal length and radius, the
level fractions, and where each organ's centroid lies relative to the canal:
``t`` = height as a fraction of canal length (0 at the sacral end, 1 at the
skull base), ``dx`` = lateral offset (mm, + = subject's left), ``dy`` = dorsal
offset (mm, + = posterior) from the canal centreline at that height. Offsets
scale with the subject (measured canal length / nominal length). The numbers
are those of the nominal anatomy of the :mod:`spectrack.phantom` presets
(round, plausible values, not measurements; see
:mod:`spectrack.phantom.presets`). The windows are wide (a component is only
*chosen* by them; its shape comes from the CT).

CT density windows
------------------
:data:`HU_WINDOWS` are midpoints between typical unenhanced CT values (bone
> 250, fluid/CSF/urine 0-15, stomach 25, kidney 30, muscle and soft tissue
40, liver 55-65, thyroid 80-100 HU; general radiology knowledge, not sourced)
and match the phantom's materials. Organ windows are applied to a 3x3x3
median-filtered CT (noise), thin structures to the raw CT.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..centreline import Centreline
from .canal import View, component_stats, dilate_mm, fill_holes

__all__ = ["PRIORS", "HU_WINDOWS", "CSF_INTRACRANIAL_HU", "BodyFrame", "body_mask", "brain_and_skull",
           "intracranial_csf", "pick_components", "find_injection_site"]

#: Density windows (HU, lower inclusive, upper exclusive).
HU_WINDOWS: dict[str, tuple[float, float]] = {
    "body": (-500.0, 1e9),
    "bone": (250.0, 1e9),
    "csf": (-50.0, 25.0),
    "fluid": (-30.0, 18.0),
    "stomach": (18.0, 27.5),
    "kidneys": (27.5, 35.0),
    "salivary_glands": (42.5, 52.5),
    "liver": (50.0, 75.0),
    "thyroid": (70.0, 250.0),
}

#: Density window (HU) of CSF inside the brain mask: below the midpoint (20 HU) between CSF (0-15) and
#: brain tissue (white matter 25-30, grey matter 35-40; general radiology knowledge, not sourced); the phantom's
#: CSF is 5 HU and its brain 35 HU. Overridden by ``hu_windows["csf_intracranial"]``; not in
#: :data:`HU_WINDOWS` so that the recorded windows of a CT without intracranial CSF stay as they were.
CSF_INTRACRANIAL_HU: tuple[float, float] = (-30.0, 20.0)

# organ: list of nominal centroids (t, dx, dy) and the tolerance (dt, ddx, ddy);
# paired organs compare |dx|.
_P = "paired"
PRIORS: dict[str, dict] = {
    "rat": dict(
        canal_length_mm=194.0, canal_radius_mm=1.75, skull_mm=1.0, vertebra_reach_mm=10.0, brain_ml=1.73,
        level_fractions=(0.114, 0.373, 0.786),
        organs={
            "liver": ([(0.657, -4.0, -18.8)], (0.15, 14.0, 12.0)),
            "kidneys": ([(0.527, 9.0, -7.6)], (0.10, 5.0, 6.0), _P),
            "bladder": ([(0.062, 0.0, -23.2)], (0.10, 8.0, 10.0)),
            "stomach": ([(0.589, 10.0, -23.3)], (0.10, 10.0, 10.0)),
            "thyroid": ([(0.900, 3.0, -16.4)], (0.05, 5.0, 8.0), _P),
            "salivary_glands": ([(0.953, 5.0, -20.7), (0.995, 11.0, -9.3)], (0.05, 6.0, 8.0), _P),
        }),
    "nhp": dict(
        canal_length_mm=366.5, canal_radius_mm=3.5, skull_mm=3.0, vertebra_reach_mm=22.0, brain_ml=68.6,
        level_fractions=(0.110, 0.342, 0.752),
        organs={
            "liver": ([(0.506, -20.0, -45.6)], (0.12, 25.0, 25.0)),
            "kidneys": ([(0.396, 24.0, -16.0)], (0.10, 10.0, 10.0), _P),
            "bladder": ([(0.055, 0.0, -50.0)], (0.10, 15.0, 20.0)),
            "stomach": ([(0.473, 30.0, -49.8)], (0.10, 18.0, 18.0)),
            "thyroid": ([(0.830, 6.0, -36.5)], (0.05, 9.0, 12.0), _P),
            "salivary_glands": ([(0.947, 13.0, -42.0), (0.981, 30.0, -11.6)], (0.05, 12.0, 14.0), _P),
        }),
    "human": dict(
        canal_length_mm=695.5, canal_radius_mm=8.0, skull_mm=7.0, vertebra_reach_mm=50.0, brain_ml=1355.0,
        level_fractions=(0.147, 0.306, 0.843),
        organs={
            "liver": ([(0.479, -70.0, -88.7)], (0.12, 60.0, 50.0)),
            "kidneys": ([(0.334, 75.0, -21.7)], (0.10, 30.0, 25.0), _P),
            "bladder": ([(0.030, 0.0, -98.9)], (0.10, 40.0, 40.0)),
            "stomach": ([(0.508, 60.0, -114.8)], (0.10, 45.0, 40.0)),
            "thyroid": ([(0.866, 18.0, -52.7)], (0.06, 20.0, 30.0), _P),
            "salivary_glands": ([(0.925, 35.0, -65.4), (0.983, 55.0, -6.2)], (0.05, 25.0, 25.0), _P),
        }),
}


# ----------------------------------------------------------------- frame
class BodyFrame:
    """Positions relative to the canal: height fraction ``t``, lateral ``dx`` and dorsal ``dy`` (mm).

    The long axis is the chord of the centreline (sacral end to skull base);
    the lateral axis is LPS +x made orthogonal to it and the dorsal axis
    completes a right-handed frame (LPS +y for a subject lying straight).
    Heights beyond the canal's ends are extrapolated (1 mm of height = 1 mm of
    arc length) and use the nearest end's centre.
    """

    def __init__(self, centreline: Centreline):
        p = centreline.points_mm
        uz = p[-1] - p[0]
        uz /= np.linalg.norm(uz)
        ux = np.array([1.0, 0.0, 0.0]) - uz[0] * uz
        ux /= np.linalg.norm(ux)
        self.uz, self.ux, self.uy = uz, ux, np.cross(uz, ux)
        self.length_mm = centreline.length_mm
        h = (p - p[0]) @ uz
        order = np.argsort(h)
        self._h, self._s, self._p = h[order], centreline.arclength_mm[order], p[order]
        self.origin = p[0]

    def coords(self, xyz) -> np.ndarray:
        """(n, 3) array of ``t``, ``dx`` (mm), ``dy`` (mm) of LPS points."""
        xyz = np.atleast_2d(np.asarray(xyz, float))
        h = (xyz - self.origin) @ self.uz
        s = np.interp(h, self._h, self._s)
        s = np.where(h < self._h[0], self._s[0] + (h - self._h[0]), s)
        s = np.where(h > self._h[-1], self._s[-1] + (h - self._h[-1]), s)
        c = np.stack([np.interp(h, self._h, self._p[:, a]) for a in range(3)], axis=1)
        d = xyz - c
        return np.column_stack([s / self.length_mm, d @ self.ux, d @ self.uy])


# ------------------------------------------------------------------ body
def body_mask(ct_view: np.ndarray, *, threshold_hu: float = HU_WINDOWS["body"][0]) -> np.ndarray:
    """Body outline (view order): above ``threshold_hu``, holes filled per slice, largest component.

    Per-slice filling keeps the lungs inside the body even when the body is
    cut by the ends of the field of view.
    """
    m = ct_view > threshold_hu
    st2 = np.zeros((3, 3, 3), bool)
    st2[1] = ndi.generate_binary_structure(2, 1)
    m = ndi.binary_fill_holes(m, structure=st2)
    lab, n = ndi.label(m)
    if n == 0:
        return m
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


# ------------------------------------------------------------ brain, skull
def brain_and_skull(bone: np.ndarray, canal: np.ndarray, spacing, *, seal_mm: float, min_brain_ml: float,
                    skull_mm: float, head: np.ndarray | None = None):
    """Intracranial space enclosed by bone (plugged at the foramen magnum by the canal), and the skull.

    The bone is thickened until it encloses a cavity of at least
    ``min_brain_ml`` (thin voxelised skulls have pinholes); the brain is that
    cavity grown back by the thickening. When no thickening closes the skull
    (a skull only a voxel or two across), the fallback is the soft tissue
    inside the convex hull of the bone within ``head`` (a mask of the slices
    beyond the canal's cranial end).

    Returns ``(brain, skull, note)`` masks in the arrays' order.
    """
    sp = np.asarray(spacing, float)
    px = float(sp.max())
    vox_ml = float(np.prod(sp)) / 1000.0
    seal = bone | dilate_mm(canal, 1.01 * px, sp) if canal.any() else bone
    note = ""
    core = None
    # thicken the bone until the skull is closed (thin voxelised shells have
    # pinholes): the enclosed space left is the brain shrunk by the radius
    for r in sorted({1.01 * px, 1.5 * px, 2.01 * px, max(seal_mm, 1.01 * px)}):
        thick = dilate_mm(seal, r, sp)
        cav = fill_holes(thick) & ~thick
        lab, n = ndi.label(cav)
        if n == 0:
            continue
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        big = lab == int(np.argmax(sizes))
        # the core is the brain eroded by r: compare its dilation with the prior
        if dilate_mm(big, r, sp).sum() * vox_ml >= min_brain_ml:
            core = big
            break
    if core is None:
        if head is None or not (bone & head).any():
            return np.zeros_like(bone), np.zeros_like(bone), "no closed skull found: no brain"
        from skimage.morphology import convex_hull_image

        hull = convex_hull_image(bone & head)
        brain = hull & ~bone & ~canal
        if brain.sum() * vox_ml < min_brain_ml:
            return np.zeros_like(bone), np.zeros_like(bone), "no closed skull found: no brain"
        skull = bone & dilate_mm(brain, 2.0 * skull_mm + px, sp)
        return brain, skull, "skull not closed on this grid: brain = inside the convex hull of the cranial bone"
    if r > 2.01 * px:
        note = f"skull closed only by a {r:.1f} mm dilation: check the brain outline"
    cand = dilate_mm(core, r + 0.5 * px, sp) & ~bone & ~canal
    lab, n = ndi.label(cand)
    keep = np.unique(lab[core & cand])
    brain = np.isin(lab, keep[keep > 0])
    skull = bone & dilate_mm(brain, 2.0 * skull_mm + px, sp)
    return brain, skull, note


def intracranial_csf(ct_view: np.ndarray, brain: np.ndarray, canal: np.ndarray, spacing, *,
                     window_hu=CSF_INTRACRANIAL_HU, noise_hu: float = 0.0, foramen_reach_mm: float,
                     max_fraction: float = 0.25) -> tuple[np.ndarray, dict]:
    """CSF-density space inside the brain mask: ventricles, basal cisterns, cisterna magna.

    Voxels of ``brain`` in ``window_hu``, holes filled, form components (when
    ``noise_hu`` > 3 HU: on the CT smoothed by a Gaussian of 0.7 voxel, each
    component holding a voxel in the window on a 3x3x3 median, so noise
    alone does not make CSF); a component is kept
    when it reaches within ``foramen_reach_mm`` of the canal's cranial end
    (cisterna magna, basal cisterns: CSF continuous with the canal's) or
    lies inside the brain, none of it in the brain mask's outer voxel layer
    (ventricles; CSF over the convexity, thin and partial-volumed against the
    skull, stays in ``brain``). Components of fewer than two
    voxels are noise. Nothing is kept when the kept space would exceed
    ``max_fraction`` of the intracranial volume (a CT whose brain reads as
    fluid: wrong calibration or contrast, not anatomy).

    Parameters
    ----------
    ct_view : ndarray
        CT (HU) in view order (:class:`~spectrack.regions.auto.canal.View`).
    brain : ndarray of bool
        Intracranial mask from :func:`brain_and_skull`.
    canal : ndarray of bool
        Spinal canal mask (its cranial end marks the foramen magnum).
    spacing : sequence of 3 float
        Voxel size (mm) in view order.
    window_hu : (float, float)
        Lower inclusive, upper exclusive HU of CSF.
    noise_hu : float
        CT noise (HU); above 3 HU the window is applied to a median-filtered CT.
    foramen_reach_mm : float
        How near the canal a component must come to count as the cisterna
        magna / basal cisterns.
    max_fraction : float
        Largest plausible fraction of the intracranial volume.

    Returns
    -------
    mask : ndarray of bool
        The intracranial CSF (empty when none is separable).
    info : dict
        ``separated`` (bool), ``volume_ml``, ``components`` (volume_ml and why
        kept), ``window_hu``, ``note``.

    Examples
    --------
    >>> hu = np.full((9, 9, 9), 35.0); hu[3:6, 3:6, 3:6] = 5.0
    >>> brain = np.ones(hu.shape, bool); brain[0] = brain[-1] = False
    >>> m, info = intracranial_csf(hu, brain, np.zeros(hu.shape, bool), (1.0, 1.0, 1.0), foramen_reach_mm=2.0)
    >>> int(m.sum()), info["separated"], info["components"][0]["kept_as"]
    (27, True, 'deep in the brain (ventricles)')
    """
    sp = np.asarray(spacing, float)
    px = float(sp.max())
    vox_ml = float(np.prod(sp)) / 1000.0
    lo, hi = (float(v) for v in window_hu)
    info: dict = {"separated": False, "volume_ml": 0.0, "components": [], "window_hu": [lo, hi]}
    out = np.zeros(brain.shape, bool)
    if not brain.any():
        info["note"] = "no brain mask"
        return out, info
    bb = ndi.find_objects(brain.astype(np.int8))[0]
    pad = int(np.ceil(foramen_reach_mm / float(sp.min()))) + 2
    bb = tuple(slice(max(s.start - pad, 0), min(s.stop + pad, n)) for s, n in zip(bb, brain.shape))
    hu = np.asarray(ct_view[bb], np.float32)
    br = brain[bb]
    if noise_hu > 3.0:  # a light Gaussian keeps structures two voxels across; a median must seed each component
        med = ndi.median_filter(hu, size=3)
        hu = ndi.gaussian_filter(hu, 0.7)
    fluid = fill_holes((hu >= lo) & (hu < hi) & br) & br
    if noise_hu > 3.0:
        seeded, _ = ndi.label(fluid)
        ids = np.unique(seeded[(med >= lo) & (med < hi) & fluid])
        fluid = np.isin(seeded, ids[ids > 0])
    lab, n = ndi.label(fluid)
    if n == 0:
        info["note"] = f"no CSF-density voxels ({lo:g} to {hi:g} HU) inside the brain mask"
        return out, info
    depth = ndi.distance_transform_edt(br, sampling=sp)
    cn = canal[bb]
    near = dilate_mm(cn, foramen_reach_mm, sp) if cn.any() else np.zeros(br.shape, bool)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    min_depth = ndi.minimum(depth, lab, index=np.arange(1, n + 1))
    touches = ndi.maximum(near, lab, index=np.arange(1, n + 1)) if near.any() else np.zeros(n, bool)
    keep = []
    for k in range(1, n + 1):
        why = None
        if sizes[k] < 2:
            continue
        if touches[k - 1]:
            why = "at the foramen magnum (cisterna magna, basal cisterns)"
        elif min_depth[k - 1] > 1.5 * px:
            why = "deep in the brain (ventricles)"
        if why:
            keep.append(k)
            info["components"].append({"volume_ml": float(sizes[k] * vox_ml), "kept_as": why})
    total_ml = float(sum(sizes[k] for k in keep) * vox_ml)
    brain_ml = float(br.sum() * vox_ml)
    if not keep:
        info["note"] = "CSF-density voxels inside the brain mask, but none deep or at the foramen magnum"
        return out, info
    if total_ml > max_fraction * brain_ml:
        info["components"] = []
        info["note"] = (f"{total_ml:.3g} mL of CSF density is more than {100 * max_fraction:.0f} % of the "
                        f"{brain_ml:.3g} mL intracranial volume: not separated (check the CT's calibration)")
        return out, info
    out[bb] = np.isin(lab, keep)
    info.update(separated=True, volume_ml=total_ml, note="")
    return out, info


# ------------------------------------------------------------------ organs
def pick_components(mask: np.ndarray, view: View, frame: BodyFrame, prior, scale: float, *,
                    min_ml: float = 0.0, max_count: int = 1) -> tuple[np.ndarray, list[dict]]:
    """Connected components of ``mask`` (view order) whose centroids fit a position prior.

    Parameters
    ----------
    prior : tuple
        ``(centres, tolerance[, "paired"])`` from :data:`PRIORS`.
    scale : float
        Subject size / nominal size (mm offsets are multiplied by it).
    max_count : int
        Keep the largest ``max_count`` fitting components (per side when paired).

    Returns
    -------
    mask, list of dict
        The chosen voxels and a description of each chosen component.
    """
    centres, tol = prior[0], prior[1]
    paired = len(prior) > 2 and prior[2] == _P
    lab, n = ndi.label(mask)
    out = np.zeros(mask.shape, bool)
    if n == 0:
        return out, []
    vox_ml = float(np.prod(view.spacing)) / 1000.0
    count, com = component_stats(lab, n)
    vol = count * vox_ml
    tdy = frame.coords(view.world(com))
    fits = []
    for c in range(n):
        if vol[c] < min_ml:
            continue
        t, dx, dy = tdy[c]
        for (ct, cx, cy) in centres:
            ddx = (abs(dx) if paired else dx) - cx * scale
            if abs(t - ct) <= tol[0] and abs(ddx) <= tol[1] * scale and abs(dy - cy * scale) <= tol[2] * scale:
                fits.append(c)
                break
    chosen = []
    if paired:
        for side in (1.0, -1.0):
            cs = sorted((c for c in fits if np.sign(tdy[c, 1]) == side), key=lambda c: -vol[c])
            chosen += cs[:max_count]
    else:
        chosen = sorted(fits, key=lambda c: -vol[c])[:max_count]
    info = []
    for c in chosen:
        out |= lab == c + 1
        info.append({"volume_ml": float(vol[c]), "t": float(tdy[c, 0]), "dx_mm": float(tdy[c, 1]),
                     "dy_mm": float(tdy[c, 2])})
    return out, info


# ------------------------------------------------------------ injection site
def find_injection_site(spect_view: np.ndarray, canal_view: np.ndarray, view: View, centreline: Centreline,
                        s_range_mm, *, search_mm: float, canal_radius_mm: float, threshold: float = 0.5,
                        min_contrast: float = 3.0):
    """SPECT hot spot just outside the canal within arc lengths ``s_range_mm``.

    1. The peak is the hottest voxel within ``search_mm`` of the canal at those
       levels but outside the canal mask.
    2. The site is the peak's connected region outside the canal above
       ``threshold`` x peak.
    3. Canal voxels touching it join it (CT cannot tell injectate beside the
       canal from CSF) when they are off the canal's core (farther than half
       ``canal_radius_mm`` from the centreline), have site-like activity
       (within a factor ``1/threshold`` of the peak) and are at least 1.5
       times the median active canal voxel beside the peak.
    4. It is accepted when the peak is at least ``min_contrast`` times the
       median of the other voxels around the canal at those levels.

    Returns ``(mask, info)``; ``mask`` is empty and ``info["note"]`` says why when
    there is no hot spot (e.g. at a late time point).
    """
    sp = view.spacing
    near = dilate_mm(canal_view, search_mm, sp)
    idx = np.argwhere(near)
    s, _ = centreline.project(view.world(idx))
    ok = (s >= s_range_mm[0]) & (s <= s_range_mm[1])
    region = np.zeros(near.shape, bool)
    region[tuple(idx[ok].T)] = True
    empty = np.zeros(near.shape, bool)
    outside = region & ~canal_view
    if not outside.any():
        return empty, {"note": "no search region beside the lumbar canal: no injection site"}
    vals = np.where(outside, spect_view, -np.inf)
    peak_at = np.unravel_index(int(np.argmax(vals)), vals.shape)
    peak0 = float(vals[peak_at])
    if not peak0 > 0:
        return empty, {"note": "no activity beside the lumbar canal: no injection site"}
    s_peak = float(centreline.project(view.world(np.array(peak_at, float))[None])[0][0])
    cidx = np.argwhere(canal_view & region)
    cs, cd = centreline.project(view.world(cidx))
    cv = spect_view[tuple(cidx.T)]
    beside = (np.abs(cs - s_peak) <= search_mm) & (cv > 0)
    canal_median = float(np.median(cv[beside])) if beside.any() else 0.0
    joins = ((cd > 0.5 * canal_radius_mm) & (cv >= 1.5 * canal_median) & (np.abs(cs - s_peak) <= search_mm)
             & (cv >= threshold * peak0) & (cv <= peak0 / threshold))
    hot = outside & (spect_view >= threshold * peak0)
    lab, _ = ndi.label(hot, structure=np.ones((3, 3, 3), bool))
    site = lab == lab[peak_at]
    joined = np.zeros(site.shape, bool)
    joined[tuple(cidx[joins].T)] = True
    site |= joined & ndi.binary_dilation(site, structure=np.ones((3, 3, 3), bool))
    peak = peak0
    rest = outside & ~site
    background = float(np.median(spect_view[rest])) if rest.any() else 0.0
    if peak0 < min_contrast * background:
        return empty, {"note": f"no SPECT hot spot beside the lumbar canal (peak {peak0:.4g}, surroundings "
                               f"{background:.4g}): no injection site"}
    return site, {"peak": peak, "background": background, "canal_median": canal_median, "voxels": int(site.sum())}
