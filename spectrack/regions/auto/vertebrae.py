"""Vertebrae counted on CT along the spinal canal: spinal levels by vertebra.

:func:`find_vertebrae` reads the vertebral bodies ventral to the canal, finds
the intervertebral discs as the periodic low-density gaps between them, and
names the vertebrae by counting from the skull base (C1 just below the cranial
end of the canal) down to the sacrum with the species' vertebral formula
(:data:`VERTEBRAL_FORMULA`). All in millimetres of arc length along the canal
centreline (:class:`~spectrack.regions.centreline.Centreline`, LPS mm, caudal
end = 0), so voxel size, slice direction and a curved spine do not matter.

The steps:

1. **ventral direction**: around the centreline, the bone's centre of mass
   lies ventral (the vertebral body outweighs the arch); its mean world
   direction, made perpendicular to the centreline at each point, is the
   ventral axis;
2. **vertebral body**: the median radial density profile along that axis
   gives the body's extent (from the canal wall to where the density falls
   below half-way between bone and soft tissue); its core (the middle 60 %
   in depth, as wide laterally) is the sampling region;
3. **density profile**: the mean CT value (linear interpolation) of that
   region at every arc length, half a voxel apart;
4. **discs**: dips of the profile (:func:`scipy.signal.find_peaks` on the
   negated profile) deeper than a quarter of the bone/soft-tissue contrast
   (and 5 times the profile's noise) that read at least half-way from the
   bodies' median density to soft tissue, at least 0.45 of the expected
   vertebral pitch apart, inside the bony column; of two dips closer than
   0.6 of the local pitch (the median of the neighbouring gaps), the
   shallower is dropped; each disc's centre is the midpoint of the dip at
   half its depth;
5. **naming**: the discs must number exactly C + T + L (C1/C2 down to the
   last lumbar/S1: 26 for a rat, 26 for a cynomolgus monkey, 24 for a
   human), with no gap over 1.8 times the neighbouring gaps (a missed disc
   whose place another dip took). The disc nearest the skull base is C1/C2,
   the next C2/C3 and so on; the lowest is L/S1 and the sacrum lies below it.

When the profile shows no dips, or their number does not fit the species
(a vertebra missing from the field of view, a transitional vertebra, a
fused segment, a CT too coarse for the discs), nothing is guessed: the
result is None with the reason, and the caller falls back to fractions of
canal length (:func:`spectrack.regions.auto.ct.segment_ct` says so in a warning).

Examples
--------
>>> from spectrack.phantom import make_phantom
>>> from spectrack.regions.auto.ct import segment_ct
>>> ph = make_phantom("nhp", seed=1, times_h=[1.0], vertebrae="discrete", ct_refine=3)
>>> meta = segment_ct(ph.timepoints[0].ct, preset="nhp").image.meta["auto_regions"]
>>> meta["canal_levels"]
'canal levels cut at vertebral boundaries (C7/T1, T12/L1, L7/S1) found on CT'
>>> len(meta["vertebrae"]["vertebrae_mm"])
27
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ...geometry import Image
from ..centreline import Centreline

__all__ = ["VERTEBRAL_FORMULA", "Vertebrae", "find_vertebrae", "vertebra_names"]

#: Vertebrae per region of the spine (the brief of issue 13; general anatomy): cervical, thoracic and lumbar
#: counts, and the sacrum's fused segments where given (counted as one bone, ``sacrum``).
VERTEBRAL_FORMULA: dict[str, dict] = {
    "rat": {"cervical": 7, "thoracic": 13, "lumbar": 6, "sacral": 4},
    "nhp": {"cervical": 7, "thoracic": 12, "lumbar": 7, "sacral": None},
    "human": {"cervical": 7, "thoracic": 12, "lumbar": 5, "sacral": None},
}

#: Soft tissue (muscle) HU, the low end of the bone/soft-tissue contrast (as in
#: :data:`spectrack.regions.auto.organs.HU_WINDOWS`; general radiology knowledge).
SOFT_TISSUE_HU = 40.0


def vertebra_names(preset: str) -> list[str]:
    """Names of the mobile vertebrae, cranial to caudal (C1 .. L-last).

    Examples
    --------
    >>> n = vertebra_names("human")
    >>> n[0], n[6], n[7], n[18], n[-1], len(n)
    ('C1', 'C7', 'T1', 'T12', 'L5', 24)
    """
    f = VERTEBRAL_FORMULA[preset]
    return ([f"C{i}" for i in range(1, f["cervical"] + 1)] + [f"T{i}" for i in range(1, f["thoracic"] + 1)]
            + [f"L{i}" for i in range(1, f["lumbar"] + 1)])


@dataclass
class Vertebrae:
    """Vertebrae found on CT (see :func:`find_vertebrae`); arc lengths in mm from the canal's caudal end.

    Attributes
    ----------
    preset : str
    intervals_mm : dict
        ``{name: (start_mm, end_mm)}`` caudal to cranial: ``sacrum`` (from the
        canal's caudal end to the L/S1 disc), the lumbar, thoracic and cervical
        vertebrae between disc centres, ``C1`` up to the canal's cranial end.
    discs_mm : ndarray
        Disc centres, caudal to cranial.
    disc_names : list of str
        ``"L5/S1"`` ... ``"C1/C2"``, in the order of ``discs_mm``.
    boundaries_mm : list of float
        The sacral/lumbar, lumbar/thoracic and thoracic/cervical level
        boundaries: the L/S1, T/L1 and C7/T1 disc centres.
    boundary_names : list of str
        E.g. ``["L5/S1", "T12/L1", "C7/T1"]``.
    disc_width_mm : float
        Median width of the dips at half depth.
    confidence : float
        The shallowest disc dip as a fraction of the bone/soft-tissue
        contrast of the vertebral bodies (1: every disc reads as soft tissue),
        times 0.8 for each crowded dip dropped.
    notes : list of str
    profile : dict
        ``s_mm`` and ``hu`` of the density profile (diagnostics, not JSON-sized).
    """

    preset: str
    intervals_mm: dict
    discs_mm: np.ndarray
    disc_names: list
    boundaries_mm: list
    boundary_names: list
    disc_width_mm: float
    confidence: float
    notes: list = field(default_factory=list)
    profile: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """The result without the profile, JSON-ready (the ``vertebrae`` entry of the auto-regions metadata)."""
        return {"method": "spectrack.regions.auto.vertebrae.find_vertebrae", "preset": self.preset,
                "vertebrae_mm": {k: [round(float(a), 3), round(float(b), 3)]
                                 for k, (a, b) in self.intervals_mm.items()},
                "discs_mm": {n: round(float(s), 3) for n, s in zip(self.disc_names, self.discs_mm)},
                "boundaries_mm": [round(float(v), 3) for v in self.boundaries_mm],
                "boundary_names": list(self.boundary_names), "disc_width_mm": round(float(self.disc_width_mm), 3),
                "confidence": round(float(self.confidence), 3), "notes": list(self.notes),
                "arc_length": "mm along the canal centreline from its caudal (sacral) end"}


def _frames(cl: Centreline, s: np.ndarray, baseline_mm: float):
    """Points, unit tangents and an in-plane basis (e1 toward LPS +x, e2 = t x e1) at arc lengths ``s``.

    Tangents are chords over ``baseline_mm`` either side: a centreline traced on a noisy CT wobbles by a
    fraction of a voxel, which tilts a local tangent (and the sampling plane, away from the canal) a lot.
    """
    p = cl.point_at(s)
    ends = np.clip(np.stack([s - baseline_mm, s + baseline_mm]), 0.0, cl.length_mm)
    t = cl.point_at(ends[1]) - cl.point_at(ends[0])
    t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-9)
    x = np.array([1.0, 0.0, 0.0])
    e1 = x[None, :] - (t @ x)[:, None] * t
    bad = np.linalg.norm(e1, axis=1) < 1e-6
    if bad.any():  # a centreline along x: use y
        y = np.array([0.0, 1.0, 0.0])
        e1[bad] = y - (t[bad] @ y)[:, None] * t[bad]
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    return p, t, e1, np.cross(t, e1)


def _sample(ct: Image, arr: np.ndarray, xyz: np.ndarray, outside: float = -1000.0) -> np.ndarray:
    """CT values (linear interpolation) at LPS points ``(..., 3)``."""
    shape = xyz.shape[:-1]
    ijk = ct.world_to_index(xyz.reshape(-1, 3))
    v = ndi.map_coordinates(arr, ijk[:, ::-1].T, output=np.float64, order=1, mode="constant", cval=outside,
                            prefilter=False)
    return v.reshape(shape)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of the True runs of a 1-D mask."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    d = np.diff(m.astype(np.int8))
    return list(zip(np.nonzero(d == 1)[0], np.nonzero(d == -1)[0]))


def _drop_crowded(centres, widths, depths, *, fraction: float = 0.6, neighbours: int = 3):
    """Drop the shallower of two dips closer than ``fraction`` of the local pitch, until none is.

    The local pitch of a gap is the median of the gaps within ``neighbours`` on either side: vertebrae change
    height slowly along the spine (cervical to lumbar), so a dip half-way inside a vertebra stands out.
    """
    centres, widths, depths = (np.asarray(a, float) for a in (centres, widths, depths))
    dropped = 0
    while centres.size >= 3:
        gaps = np.diff(centres)
        local = np.array([np.median(gaps[max(0, i - neighbours):i + neighbours + 1]) for i in range(gaps.size)])
        close = np.nonzero(gaps < fraction * local)[0]
        if close.size == 0:
            break
        # of all crowded pairs, drop the shallowest dip
        cand = np.unique(np.concatenate([close, close + 1]))
        k = cand[np.argmin(depths[cand])]
        centres, widths, depths = (np.delete(a, k) for a in (centres, widths, depths))
        dropped += 1
    return centres, widths, depths, dropped


def _long_gaps(centres, *, factor: float = 1.8, neighbours: int = 3) -> list[tuple[int, float, float]]:
    """Gaps between discs longer than ``factor`` times the median of the gaps around them (not themselves).

    Returns ``(index, gap_mm, local_mm)`` of each, where the gap runs from ``centres[index]`` to the next.
    """
    gaps = np.diff(np.asarray(centres, float))
    out = []
    for i, g in enumerate(gaps):
        around = np.concatenate([gaps[max(0, i - neighbours):i], gaps[i + 1:i + 1 + neighbours]])
        if around.size and g > factor * float(np.median(around)):
            out.append((i, float(g), float(np.median(around))))
    return out


def find_vertebrae(ct: Image, centreline: Centreline, *, preset: str, canal_radius_mm: float | None = None,
                   reach_mm: float | None = None, bone_hu: float = 250.0,
                   min_relative_dip: float = 0.25) -> tuple[Vertebrae | None, str]:
    """Count the vertebrae along the canal on CT and cut the spinal levels at their discs.

    Parameters
    ----------
    ct : Image
        CT in Hounsfield units, any grid.
    centreline : Centreline
        Canal centreline (LPS mm, caudal to cranial), e.g. from
        :func:`spectrack.regions.auto.canal.find_canal`; its cranial end is
        taken as the foramen magnum (top of C1).
    preset : {'rat', 'nhp', 'human'}
        Species: the vertebral formula (:data:`VERTEBRAL_FORMULA`) and the
        priors of :data:`spectrack.regions.auto.organs.PRIORS` (canal radius,
        how far from the canal the vertebrae reach), scaled by the measured
        canal length.
    canal_radius_mm : float, optional
        Measured canal radius (default: the preset's, scaled).
    reach_mm : float, optional
        How far ventral of the centreline the vertebral body may extend
        (default: the preset's ``vertebra_reach_mm``, scaled).
    bone_hu : float
        Bone threshold (finding the ventral direction).
    min_relative_dip : float
        A disc's dip must be at least this fraction of the bone/soft-tissue
        contrast of the vertebral bodies.

    Returns
    -------
    vertebrae : Vertebrae or None
        None when the vertebrae cannot be counted.
    reason : str
        Why not (empty when found).
    """
    from scipy.signal import find_peaks

    from .organs import PRIORS

    if preset not in VERTEBRAL_FORMULA:
        return None, f"no vertebral formula for preset {preset!r}"
    pri = PRIORS[preset]
    formula = VERTEBRAL_FORMULA[preset]
    length = centreline.length_mm
    scale = float(np.clip(length / pri["canal_length_mm"], 0.5, 2.0))
    r_c = float(canal_radius_mm) if canal_radius_mm else pri["canal_radius_mm"] * scale
    reach = float(reach_mm) if reach_mm else pri["vertebra_reach_mm"] * scale
    arr = ct.array  # sampled in place (no float copy of a large CT)
    vox = float(np.min(ct.spacing_mm))
    ds = 0.5 * vox
    s = np.arange(0.5 * ds, length, ds)
    if s.size < 20:
        return None, f"the canal centreline is too short ({length:.0f} mm) to count vertebrae"
    p, t, e1, e2 = _frames(centreline, s, max(2.0 * r_c, 2.0 * vox))

    # 1. ventral direction: the mean direction of the bone's centre of mass around the canal
    coarse = np.arange(0, s.size, max(1, int(round(2.0 * r_c / ds))))
    ang = np.deg2rad(np.arange(0.0, 360.0, 10.0))
    rad = np.arange(r_c, reach + 0.5 * vox, 0.5 * vox)
    dirs = np.cos(ang)[None, :, None] * e1[coarse, None, :] + np.sin(ang)[None, :, None] * e2[coarse, None, :]
    pts = p[coarse, None, None, :] + rad[None, None, :, None] * dirs[:, :, None, :]
    w = (_sample(ct, arr, pts) >= bone_hu).astype(float)  # (sections, angles, radii)
    com = np.einsum("nar,nad->nd", w * rad[None, None, :], dirs)
    if not np.any(w):
        return None, "no bone around the canal on the CT"
    g = com.sum(axis=0)
    if np.linalg.norm(g) < 1e-6 * max(float(w.sum()), 1.0):
        return None, "no side of the canal holds more bone than the other: no vertebral body found"
    g /= np.linalg.norm(g)
    v = g[None, :] - (t @ g)[:, None] * t
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)
    u = np.cross(t, v)

    # 2. the vertebral body's depth from the median radial profile along the ventral axis
    dd = np.arange(0.0, reach + 0.5 * vox, 0.5 * vox)
    radial = np.median(_sample(ct, arr, p[coarse, None, :] + dd[None, :, None] * v[coarse, None, :]), axis=0)
    peak = float(radial[dd >= 0.5 * r_c].max(initial=-1000.0))
    if peak < bone_hu:
        return None, f"no vertebral body ventral to the canal (median density at most {peak:.0f} HU)"
    half = 0.5 * (peak + SOFT_TISSUE_HU)
    runs = [(a, b) for a, b in _runs(radial >= half) if dd[b - 1] >= 0.5 * r_c]
    if not runs:
        return None, "no vertebral body ventral to the canal"
    d_in, d_out = float(dd[runs[0][0]]), float(dd[runs[0][1] - 1])
    depth = d_out - d_in
    if depth < vox:
        return None, f"the vertebral body ventral to the canal is thinner ({depth:.2g} mm) than a CT voxel"
    a_off = np.linspace(d_in + 0.2 * depth, d_out - 0.2 * depth, 5)
    l_off = np.linspace(-0.3 * depth, 0.3 * depth, 5)
    core = (p[:, None, None, :] + a_off[None, :, None, None] * v[:, None, None, :]
            + l_off[None, None, :, None] * u[:, None, None, :])
    # 3. the density profile along the canal
    prof = _sample(ct, arr, core).reshape(s.size, -1).mean(axis=1)

    # the bony column: the longest stretch with vertebral bone within 0.75 of the expected pitch (a running
    # maximum bridges the discs)
    n_mobile = formula["cervical"] + formula["thoracic"] + formula["lumbar"]
    pitch = length * (1.0 - pri["level_fractions"][0]) / n_mobile
    bony = ndi.maximum_filter1d(prof, max(1, int(round(1.5 * pitch / ds))), mode="nearest")
    col = _runs(bony >= 0.5 * (float(np.percentile(prof, 90)) + SOFT_TISSUE_HU))
    if not col:
        return None, "no bony column along the canal"
    c0, c1 = max(col, key=lambda r: r[1] - r[0])
    bone_level = float(np.median(prof[c0:c1]))
    contrast = bone_level - SOFT_TISSUE_HU
    d2 = np.diff(prof[c0:c1], 2)
    noise = float(1.4826 * np.median(np.abs(d2 - np.median(d2))) / np.sqrt(6.0)) if d2.size else 0.0
    prom = max(min_relative_dip * contrast, 5.0 * noise)

    # 4. discs: dips of the profile inside the column
    peaks, props = find_peaks(-prof, prominence=prom, distance=max(1, int(0.45 * pitch / ds)), width=0,
                              rel_height=0.5)
    # inside the column, and reading at least half-way from bone to soft tissue (a disc, not a thinner bone)
    inside = (peaks > c0) & (peaks < c1 - 1) & (prof[peaks] <= bone_level - 0.5 * contrast)
    centres = s[0] + ds * 0.5 * (props["left_ips"] + props["right_ips"])
    centres, widths = centres[inside], ds * props["widths"][inside]
    depths = props["prominences"][inside]
    centres, widths, depths, crowded = _drop_crowded(centres, widths, depths)
    n = centres.size
    col_mm = (s[c0], s[c1 - 1])
    if n == 0:
        return None, (f"no periodic low-density gaps (discs) in the vertebral bodies along the "
                      f"{col_mm[1] - col_mm[0]:.0f} mm bony column (dips of {prom:.0f} HU sought)")
    expected = n_mobile
    formula_txt = f"C{formula['cervical']} T{formula['thoracic']} L{formula['lumbar']}"
    if n != expected:
        return None, (f"{n} discs found between the sacrum and the skull base where a {preset} spine has "
                      f"{expected} ({formula_txt}, C1/C2 to L{formula['lumbar']}/S1): vertebrae not counted")

    long_gap = _long_gaps(centres)
    if long_gap:
        i, g, loc = long_gap[0]
        return None, (f"{n} discs found, but the {g:.0f} mm between the discs at {centres[i]:.0f} and "
                      f"{centres[i + 1]:.0f} mm is over 1.8 times the neighbouring gaps ({loc:.0f} mm): a disc "
                      "is missed there and another dip counted in its place; vertebrae not counted")

    # 5. names: counting from the skull base (C1/C2 is the highest disc) down to the sacrum
    names_td = vertebra_names(preset)
    top = centres[::-1]  # cranial -> caudal
    intervals = {"sacrum": (0.0, float(centres[0]))}
    for i in range(n - 1, -1, -1):
        hi = length if i == 0 else float(top[i - 1])
        intervals[names_td[i]] = (float(top[i]), hi)
    disc_names = [f"{names_td[i]}/{names_td[i + 1] if i + 1 < n else 'S1'}" for i in range(n)][::-1]
    nc, nt = formula["cervical"], formula["thoracic"]
    idx = [n - 1, nc + nt - 1, nc - 1]  # positions in ``top`` of L/S1, T/L1, C7/T1
    boundaries = [float(top[i]) for i in idx]
    boundary_names = [disc_names[::-1][i] for i in idx]
    confidence = float(np.clip(depths.min() / contrast, 0.0, 1.0))
    notes = [f"{n} discs found on CT ({formula_txt}); vertebral-body contrast {contrast:.0f} HU, shallowest "
             f"disc {depths.min():.0f} HU, profile noise {noise:.1f} HU; body sampled {d_in + 0.2 * depth:.1f}-"
             f"{d_out - 0.2 * depth:.1f} mm ventral of the centreline"]
    if crowded:
        notes.append(f"{crowded} shallower dip(s) within 0.6 of the local vertebral pitch of a deeper one "
                     "not counted as discs")
        confidence *= 0.8 ** crowded
    if formula.get("sacral"):
        notes.append(f"sacrum: {formula['sacral']} fused segments counted as one")
    return Vertebrae(preset, intervals, centres, disc_names, boundaries, boundary_names,
                     float(np.median(widths)), confidence, notes, {"s_mm": s, "hu": prof}), ""
