"""Phantom anatomy: seed-driven geometry and its rasterisation on any grid.

The anatomy lives in a body frame (see :mod:`spectrack.phantom.presets`) and
is placed in the LPS world by a rigid ``pose`` (4x4, body mm -> world mm).
Every structure is analytic (ellipsoids, elliptical cross-sections, a tube
around a smooth centreline), so a label map can be drawn on any grid by
evaluating the shapes at the voxel centres: grids whose voxel centres
coincide get identical labels there.

Paint order (a later structure wins where two overlap): body (remainder),
subcutaneous fat and lungs (remainder), lymph nodes, salivary glands,
thyroid, stomach, liver, kidneys, bladder, vertebrae, skull, injection site,
the four canal levels, brain, and (opt-in, ``intracranial_csf``) the
intracranial CSF spaces inside the brain. Everything is clipped to the body
outline.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from ..geometry import Image
from ..regions.vocabulary import INDEX, VOCABULARY
from .presets import PRESETS, Preset

__all__ = [
    "MATERIALS",
    "HU",
    "make_geometry",
    "pose_matrix",
    "rotation_matrix",
    "rasterize",
    "ct_from_materials",
    "canal_centreline",
    "canal_arclength_mm",
    "body_coordinates",
    "discrete_spine",
    "intracranial_csf_spaces",
]

#: CT materials (index -> name) used by :func:`rasterize`.
MATERIALS: dict[int, str] = {
    0: "air", 1: "soft_tissue", 2: "fat", 3: "lung", 4: "brain", 5: "liver", 6: "kidney", 7: "csf",
    8: "skull", 9: "vertebra", 10: "urine", 11: "thyroid", 12: "stomach", 13: "salivary", 14: "lymph_node",
    15: "injectate",
}
_MAT = {v: k for k, v in MATERIALS.items()}

#: Hounsfield units of each material.
HU: dict[str, float] = {
    "air": -1000.0, "soft_tissue": 40.0, "fat": -100.0, "lung": -750.0, "brain": 35.0, "liver": 60.0,
    "kidney": 30.0, "csf": 5.0, "skull": 1100.0, "vertebra": 750.0, "urine": 10.0, "thyroid": 90.0,
    "stomach": 25.0, "salivary": 45.0, "lymph_node": 40.0, "injectate": 15.0,
}

_ORGAN_MATERIAL = {"liver": "liver", "kidneys": "kidney", "bladder": "urine", "stomach": "stomach",
                   "thyroid": "thyroid", "salivary_glands": "salivary", "lymph_nodes": "lymph_node"}
_ORGAN_ORDER = ("lymph_nodes", "salivary_glands", "thyroid", "stomach", "liver", "kidneys", "bladder")
_LEVELS = ("canal_sacral", "canal_lumbar", "canal_thoracic", "canal_cervical")


# ------------------------------------------------------------------ rotations
def rotation_matrix(rotation_deg) -> np.ndarray:
    """``Rz @ Ry @ Rx`` for angles (rx, ry, rz) in degrees about the LPS axes.

    Examples
    --------
    >>> np.round(rotation_matrix([0, 0, 90]) @ [1, 0, 0], 12).tolist()
    [0.0, 1.0, 0.0]
    """
    rx, ry, rz = (math.radians(float(a)) for a in rotation_deg)
    cx, sx, cy, sy, cz, sz = math.cos(rx), math.sin(rx), math.cos(ry), math.sin(ry), math.cos(rz), math.sin(rz)
    mx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    my = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    mz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return mz @ my @ mx


def pose_matrix(geometry: dict, motion=None) -> np.ndarray:
    """4x4 body-frame -> LPS world matrix of ``geometry``, optionally moved.

    Parameters
    ----------
    geometry : dict
        From :func:`make_geometry`.
    motion : sequence of 6 float, optional
        ``(tx, ty, tz, rx, ry, rz)`` in mm and degrees: a rigid motion about the
        field-of-view centre applied after the reference pose.
    """
    p = geometry["pose"]
    body_c = np.array([0.0, 0.0, geometry["length_mm"] / 2.0])
    m = np.eye(4)
    m[:3, :3] = rotation_matrix(p["rotation_deg"])
    m[:3, 3] = np.asarray(geometry["fov_centre_mm"]) + np.asarray(p["translation_mm"]) - m[:3, :3] @ body_c
    if motion is not None:
        m = motion_matrix(motion, geometry["fov_centre_mm"]) @ m
    return m


def motion_matrix(motion, centre_mm) -> np.ndarray:
    """4x4 world -> world rigid motion ``(tx, ty, tz, rx, ry, rz)`` about ``centre_mm``."""
    motion = np.asarray(motion, dtype=float).reshape(6)
    r = rotation_matrix(motion[3:])
    c = np.asarray(centre_mm, dtype=float)
    m = np.eye(4)
    m[:3, :3] = r
    m[:3, 3] = c + motion[:3] - r @ c
    return m


# ------------------------------------------------------------------- geometry
def _ell(c, s):
    return {"centre_mm": [float(v) for v in c], "semi_axes_mm": [float(v) for v in s]}


def make_geometry(preset: str | Preset = "nhp", *, seed: int = 0, jitter: float = 1.0,
                  spect_spacing_mm=None, overrides: dict | None = None, vertebrae: str = "continuous",
                  intracranial_csf: bool = False) -> dict:
    """Anatomy of one phantom subject, jittered by ``seed``.

    Parameters
    ----------
    preset : str or Preset
        ``rat``, ``nhp`` or ``human``.
    seed : int
        Drives the jitter (sizes, positions, canal curvature, level boundaries,
        pose). The same seed gives the same geometry.
    jitter : float
        Scale of the jitter; 0 gives the nominal anatomy.
    spect_spacing_mm : sequence of 3 float, optional
        SPECT voxel size: structures thinner than the voxels are enlarged
        (semi-axes and shell thicknesses to >= 0.9 voxel, the canal radius to
        >= 0.75 in-plane voxel) so every region keeps voxels on the SPECT grid.
    overrides : dict, optional
        Keys of the returned dict to replace after jittering (e.g.
        ``{"pose": {"rotation_deg": [0, 0, 0], "translation_mm": [0, 0, 0]}}``).
    vertebrae : {'continuous', 'discrete'}
        ``'continuous'`` (default): the bony column is one continuous arch and
        vertebral body. ``'discrete'``: separate vertebrae (see
        :func:`discrete_spine`), recorded under the ``vertebrae`` key; no
        random draw is used, so the rest of the geometry is the same.
    intracranial_csf : bool
        Add ventricles and a cisterna magna inside the brain (see
        :func:`intracranial_csf_spaces`), recorded under the
        ``intracranial_csf`` key; no random draw is used, so the rest of the
        geometry is the same. Default False (brain holds its CSF).

    Returns
    -------
    dict
        JSON-serialisable geometry in body-frame mm (see the module docstring
        of :mod:`spectrack.phantom.presets`), with ``pose`` and
        ``fov_centre_mm`` placing it in the world.
    """
    if vertebrae not in ("continuous", "discrete"):
        raise ValueError(f"vertebrae must be 'continuous' or 'discrete', got {vertebrae!r}")
    pre = PRESETS[preset] if isinstance(preset, str) else preset
    a = copy.deepcopy(pre.anatomy)
    rng = np.random.default_rng([int(seed), 0x616E61])
    j = float(jitter)
    jm = pre.jitter_mm * j

    def u(lo=-1.0, hi=1.0, size=None):
        return rng.uniform(lo, hi, size)

    g = 1.0 + j * 0.05 * u()  # global scale
    size_scale = lambda: 1.0 + j * 0.08 * u(size=3)  # noqa: E731
    spacing = np.asarray(spect_spacing_mm if spect_spacing_mm is not None else pre.spacing_mm, dtype=float)
    min_feat = 0.9 * float(spacing.max())
    min_canal = 0.75 * float(spacing[:2].max())

    geo: dict = {"preset": pre.name, "seed": int(seed), "jitter": j, "global_scale": float(g),
                 "length_mm": float(a["length_mm"] * g), "fov_centre_mm": [float(v) for v in pre.fov_centre_mm]}
    geo["body"] = [[float(z * g), float(ax * g), float(ay * g)] for z, ax, ay in a["body"]]
    geo["fat_mm"] = float(a["fat_mm"] * g)
    bc, bs = a["brain"]
    bs = np.maximum(np.asarray(bs) * g * (1.0 + j * 0.05 * u(size=3)), min_feat)
    bc = np.asarray(bc) * g + jm * 0.3 * u(size=3) * np.array([1, 1, 0.5])
    geo["brain"] = _ell(bc, bs)
    geo["skull_mm"] = float(max(a["skull_mm"] * g, min_feat))

    # canal: stations, gentle lateral curvature, level boundaries
    st = np.asarray(a["canal"], dtype=float) * g
    z0, z1 = st[0, 0], st[-1, 0]
    amp = jm * u()
    st[:, 1] += amp * np.sin(np.pi * (st[:, 0] - z0) / (z1 - z0))
    st[1:-1, 2] += 0.5 * jm * u(size=len(st) - 2)
    st[-1, 0] = bc[2]  # the canal runs into the brain (foramen magnum)
    st[-1, 1] = bc[0]
    geo["canal"] = {"stations_mm": st.tolist()}
    lv = {k: [float(v[0] * g), float(v[1] * g)] for k, v in a["levels"].items()}
    for lo, hi in zip(_LEVELS[:-1], _LEVELS[1:]):  # shift inner boundaries together
        b = lv[lo][1] + 0.7 * jm * u()
        lv[lo][1] = lv[hi][0] = float(b)
    lv["canal_cervical"][1] = float(bc[2])
    geo["canal"]["levels_z_mm"] = lv
    geo["canal"]["radius_mm"] = {k: float(max(v * g * (1 + j * 0.05 * u()), min_canal))
                                 for k, v in a["canal_radius_mm"].items()}
    geo["arch_mm"] = float(max(a["arch_mm"] * g, min_feat))
    geo["vertebral_body_mm"] = [float(max(v * g, min_feat)) for v in a["vertebral_body_mm"]]
    geo["vertebrae_z_mm"] = [float(lv["canal_sacral"][0]), float(bc[2] - 0.9 * bs[2])]

    # injection site: dorsal to the lumbar canal, touching it
    zl0, zl1 = lv["canal_lumbar"]
    zi = float(np.clip(a["injection"]["z"] * g + 2 * jm * u(), zl0 + 0.2 * (zl1 - zl0), zl1 - 0.3 * (zl1 - zl0)))
    ri = float(max(a["injection"]["radius_mm"] * g, min_feat))
    xc, yc = canal_centreline(geo, np.array([zi]))
    rl = geo["canal"]["radius_mm"]["canal_lumbar"]
    geo["injection_site"] = {"centre_mm": [float(xc[0]), float(yc[0] + rl + ri), zi], "radius_mm": ri}

    geo["organs"] = {}
    for name, items in a["organs"].items():
        off = jm * u(size=3)
        sc = size_scale()
        out = []
        for c, s in items:
            c = np.asarray(c, dtype=float) * g + off + 0.3 * jm * u(size=3)
            s = np.maximum(np.asarray(s, dtype=float) * g * sc, min_feat)
            out.append(_ell(c, s))
        geo["organs"][name] = out
    geo["lungs"] = [_ell(np.asarray(c) * g, np.asarray(s) * g * size_scale()) for c, s in a["lungs"]]
    geo["pose"] = {"rotation_deg": (j * np.array([2.0, 2.0, 3.0]) * u(size=3)).tolist(),
                   "translation_mm": (jm * u(size=3)).tolist()}
    geo["min_feature_mm"] = min_feat
    geo["min_canal_radius_mm"] = min_canal
    if overrides:
        for k, v in overrides.items():
            geo[k] = copy.deepcopy(v)
    if vertebrae == "discrete" and not (overrides and "vertebrae" in overrides):
        geo["vertebrae"] = discrete_spine(geo, a["vertebrae"], min_disc_mm=float(spacing.max()))
    if intracranial_csf and not (overrides and "intracranial_csf" in overrides):
        geo["intracranial_csf"] = intracranial_csf_spaces(geo, a["intracranial_csf"],
                                                          min_semi_mm=float(spacing.max()))
    return geo


def _foramen_magnum_z(geometry: dict) -> float:
    """Body-frame z where the canal centreline enters the brain ellipsoid from below."""
    b = geometry["brain"]
    c, s = np.asarray(b["centre_mm"], float), np.asarray(b["semi_axes_mm"], float)
    z = np.linspace(c[2] - s[2], c[2], 2001)
    x, y = canal_centreline(geometry, z)
    inside = ((x - c[0]) / s[0]) ** 2 + ((y - c[1]) / s[1]) ** 2 + ((z - c[2]) / s[2]) ** 2 <= 1.0
    return float(z[np.argmax(inside)]) if inside.any() else float(c[2])


def intracranial_csf_spaces(geometry: dict, spec: dict, *, min_semi_mm: float = 0.0) -> dict:
    """Ventricles and cisterna magna of a geometry (body-frame ellipsoids inside the brain).

    Parameters
    ----------
    geometry : dict
        From :func:`make_geometry` (uses ``brain``, ``canal``).
    spec : dict
        The preset's ``intracranial_csf`` entry: ``ventricle_offset`` and
        ``ventricle_semi`` (fractions of the brain's semi-axes; the two
        ventricles mirror about the brain's midline), ``cisterna_semi``
        (multiples of the cervical canal radius) and ``cisterna_dorsal``
        (dorsal offset of its centre from the canal, in cervical canal radii).
    min_semi_mm : float
        Smallest semi-axis (the SPECT voxel size: each space stays at least
        two voxels across).

    Returns
    -------
    dict
        ``ventricles`` (two ellipsoids), ``cisterna_magna`` (one ellipsoid,
        its lower pole on the canal centreline where it enters the skull),
        ``foramen_magnum_z_mm`` and a ``note``. Every space is clipped to the
        brain ellipsoid when drawn.
    """
    b = geometry["brain"]
    bc, bs = np.asarray(b["centre_mm"], float), np.asarray(b["semi_axes_mm"], float)
    off, vs = np.asarray(spec["ventricle_offset"], float), np.asarray(spec["ventricle_semi"], float)
    semi_v = np.maximum(vs * bs, min_semi_mm)
    vents = [_ell(bc + np.array([sx * off[0], off[1], off[2]]) * bs, semi_v) for sx in (1.0, -1.0)]
    zf = _foramen_magnum_z(geometry)
    rc = geometry["canal"]["radius_mm"]["canal_cervical"]
    semi_c = np.maximum(np.asarray(spec["cisterna_semi"], float) * rc, min_semi_mm)
    xf, yf = canal_centreline(geometry, np.array([zf]))
    cm = _ell([float(xf[0]), float(yf[0]) + float(spec["cisterna_dorsal"]) * rc, zf + semi_c[2]], semi_c)
    return {"ventricles": vents, "cisterna_magna": cm, "foramen_magnum_z_mm": zf,
            "note": "CSF HU (material csf); clipped to the brain ellipsoid; region csf_intracranial"}


def discrete_spine(geometry: dict, formula: dict, *, min_disc_mm: float = 0.0) -> dict:
    """Layout of separate vertebrae along a geometry's bony column (body-frame z).

    The sacrum (one fused bone) fills the sacral level; each of the lumbar,
    thoracic and cervical levels is cut into its number of vertebrae of equal
    height, the cervical ones up to the cranial end of the column (the skull
    base), C1 uppermost. A disc is centred on every boundary between two
    vertebrae and between the last lumbar vertebra and the sacrum, so the
    preset's level boundaries (``canal.levels_z_mm``) are disc centres: L/S1,
    T/L1 and C7/T1.

    Parameters
    ----------
    geometry : dict
        From :func:`make_geometry` (levels, column extent, canal stations).
    formula : dict
        ``cervical``, ``thoracic``, ``lumbar`` counts, ``sacral`` (fused
        segments, or None) and the nominal ``disc_mm`` (see
        :mod:`spectrack.phantom.presets`).
    min_disc_mm : float
        Discs are at least this thick (the SPECT voxel size, so that every
        disc holds voxel centres on the SPECT grid and on the CT grids that
        refine it).

    Returns
    -------
    dict
        ``mode`` ("discrete"), ``disc_mm`` (thickness used), ``counts``,
        ``vertebrae`` (caudal to cranial: ``name``, ``z_mm`` and
        ``arclength_mm`` intervals between disc centres or column ends),
        ``discs`` (``name`` e.g. "L6/S1", ``z_mm``, ``arclength_mm``) and
        ``level_boundaries`` (``sacral_lumbar``, ``lumbar_thoracic``,
        ``thoracic_cervical``: ``z_mm`` and ``arclength_mm``). Arc lengths
        are along the canal centreline from its caudal end
        (:func:`canal_arclength_mm`).
    """
    lv = geometry["canal"]["levels_z_mm"]
    vz0, vz1 = geometry["vertebrae_z_mm"]
    g = float(geometry.get("global_scale", 1.0))
    disc = float(max(float(formula["disc_mm"]) * g, min_disc_mm))
    counts = {k: int(formula[k]) for k in ("cervical", "thoracic", "lumbar")}
    # boundaries caudal -> cranial: sacrum | L_n .. L1 | T_n .. T1 | C7 .. C1
    edges = [float(vz0), float(lv["canal_sacral"][1])]
    names = ["sacrum"]
    spans = (("lumbar", "L", lv["canal_lumbar"][0], lv["canal_lumbar"][1]),
             ("thoracic", "T", lv["canal_thoracic"][0], lv["canal_thoracic"][1]),
             ("cervical", "C", lv["canal_cervical"][0], float(vz1)))
    for key, letter, z0, z1 in spans:
        n = counts[key]
        edges += [float(v) for v in np.linspace(z0, z1, n + 1)[1:]]
        names += [f"{letter}{i}" for i in range(n, 0, -1)]
    z = np.asarray(edges)
    s = canal_arclength_mm(geometry, z)
    verts = [{"name": nm, "z_mm": [float(z[i]), float(z[i + 1])], "arclength_mm": [float(s[i]), float(s[i + 1])]}
             for i, nm in enumerate(names)]
    # a disc is named cranial/caudal vertebra, as anatomists write it (L5/S1)
    discs = [{"name": f"{names[i + 1]}/{'S1' if names[i] == 'sacrum' else names[i]}",
              "z_mm": float(z[i + 1]), "arclength_mm": float(s[i + 1])} for i in range(len(names) - 1)]
    nl, nt = counts["lumbar"], counts["thoracic"]
    cut = {"sacral_lumbar": 1, "lumbar_thoracic": 1 + nl, "thoracic_cervical": 1 + nl + nt}
    return {"mode": "discrete", "disc_mm": disc, "counts": dict(counts, sacral=formula.get("sacral")),
            "vertebrae": verts, "discs": discs,
            "level_boundaries": {k: {"z_mm": float(z[i]), "arclength_mm": float(s[i])} for k, i in cut.items()},
            "note": "sacrum fused (one bone); discs soft tissue; arches open dorsally and ventrally at each disc"}


def canal_centreline(geometry: dict, z_mm):
    """Body-frame (x, y) of the canal centreline at body heights ``z_mm``."""
    from scipy.interpolate import PchipInterpolator

    st = np.asarray(geometry["canal"]["stations_mm"], dtype=float)
    z = np.clip(np.asarray(z_mm, dtype=float), st[0, 0], st[-1, 0])
    return PchipInterpolator(st[:, 0], st[:, 1])(z), PchipInterpolator(st[:, 0], st[:, 2])(z)


def canal_arclength_mm(geometry: dict, z_mm, step_mm: float = 0.25):
    """Arc length along the canal centreline from its caudal end to body heights ``z_mm``."""
    st = np.asarray(geometry["canal"]["stations_mm"], dtype=float)
    zz = np.arange(st[0, 0], st[-1, 0] + step_mm, step_mm)
    zz[-1] = min(zz[-1], st[-1, 0])
    x, y = canal_centreline(geometry, zz)
    seg = np.sqrt(np.diff(zz) ** 2 + np.diff(x) ** 2 + np.diff(y) ** 2)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    return np.interp(np.asarray(z_mm, dtype=float), zz, s)


def _canal_radius(geometry: dict, z):
    lv, rad = geometry["canal"]["levels_z_mm"], geometry["canal"]["radius_mm"]
    r = np.zeros_like(z)
    for name in _LEVELS:
        lo, hi = lv[name]
        r = np.where((z >= lo) & (z < hi), rad[name], r)
    return r


# -------------------------------------------------------------- rasterising
def body_coordinates(grid: Image, pose: np.ndarray, index_ranges) -> tuple[np.ndarray, ...]:
    """Body-frame coordinates (x, y, z arrays) of the voxel centres in a sub-block of ``grid``.

    ``index_ranges`` is ``((k0, k1), (j0, j1), (i0, i1))``.
    """
    (k0, k1), (j0, j1), (i0, i1) = index_ranges
    inv = np.linalg.inv(pose)
    m = inv[:3, :3] @ (grid.direction * grid.spacing_mm[None, :])  # index -> body
    t = inv[:3, :3] @ grid.origin_mm + inv[:3, 3]
    k, j, i = np.meshgrid(np.arange(k0, k1, dtype=float), np.arange(j0, j1, dtype=float),
                          np.arange(i0, i1, dtype=float), indexing="ij")
    return tuple(m[r, 0] * i + m[r, 1] * j + m[r, 2] * k + t[r] for r in range(3))


class _Painter:
    """Paints analytic structures into label and material arrays (bounding box + slabs)."""

    def __init__(self, grid: Image, pose: np.ndarray, chunk_voxels: int = 1 << 21):
        self.grid, self.pose = grid, pose
        self.shape = grid.array.shape
        self.labels = np.zeros(self.shape, np.int16)
        self.material = np.zeros(self.shape, np.uint8)
        self.body = np.zeros(self.shape, bool)
        self.chunk = chunk_voxels

    def _ranges(self, lo, hi):
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
        world = corners @ self.pose[:3, :3].T + self.pose[:3, 3]
        idx = self.grid.world_to_index(world)  # (8, 3) as i, j, k
        out = []
        for ax, n in zip((2, 1, 0), self.shape):
            a0 = int(max(math.floor(idx[:, ax].min()) - 1, 0))
            a1 = int(min(math.ceil(idx[:, ax].max()) + 2, n))
            out.append((a0, a1))
        return out

    def paint(self, fn, lo, hi, label=None, material=None, *, is_body=False):
        (k0, k1), (j0, j1), (i0, i1) = self._ranges(lo, hi)
        if k1 <= k0 or j1 <= j0 or i1 <= i0:
            return
        step = max(1, self.chunk // max(1, (j1 - j0) * (i1 - i0)))
        for ka in range(k0, k1, step):
            kb = min(ka + step, k1)
            x, y, z = body_coordinates(self.grid, self.pose, ((ka, kb), (j0, j1), (i0, i1)))
            m = fn(x, y, z)
            sl = (slice(ka, kb), slice(j0, j1), slice(i0, i1))
            if is_body:
                self.body[sl] |= m
            else:
                m &= self.body[sl]
            if label is not None:
                self.labels[sl][m] = label
            if material is not None:
                self.material[sl][m] = _MAT[material]


def _ellipsoid(c, s, grow=0.0):
    c = np.asarray(c, float)
    s = np.asarray(s, float) + grow

    def fn(x, y, z):
        return ((x - c[0]) / s[0]) ** 2 + ((y - c[1]) / s[1]) ** 2 + ((z - c[2]) / s[2]) ** 2 <= 1.0

    return fn, c - s, c + s


def rasterize(grid: Image, geometry: dict, pose: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw the anatomy at the voxel centres of ``grid``.

    Parameters
    ----------
    grid : Image
        Target grid (its values are not used).
    geometry : dict
        From :func:`make_geometry`.
    pose : ndarray (4, 4), optional
        Body -> world matrix; :func:`pose_matrix` of ``geometry`` by default.

    Returns
    -------
    labels : ndarray of int16
        Region indices of :mod:`spectrack.regions.vocabulary` (0 outside the body).
    material : ndarray of uint8
        CT material indices of :data:`MATERIALS`.
    """
    pose = pose_matrix(geometry) if pose is None else np.asarray(pose, float)
    p = _Painter(grid, pose)
    body = np.asarray(geometry["body"], float)
    zs, axs, ays = body[:, 0], body[:, 1], body[:, 2]
    amax = float(max(axs.max(), ays.max()))

    def body_fn(shrink=0.0):
        def fn(x, y, z):
            ax = np.interp(z, zs, axs) - shrink
            ay = np.interp(z, zs, ays) - shrink
            inside = (z >= zs[0]) & (z <= zs[-1]) & (ax > 0) & (ay > 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                return inside & ((x / ax) ** 2 + (y / ay) ** 2 <= 1.0)
        return fn

    lo_b, hi_b = (-amax, -amax, zs[0]), (amax, amax, zs[-1])
    remainder = INDEX["remainder"]
    p.paint(body_fn(), lo_b, hi_b, remainder, "soft_tissue", is_body=True)
    inner = body_fn(geometry["fat_mm"])
    p.paint(lambda x, y, z: ~inner(x, y, z), lo_b, hi_b, None, "fat")
    for e in geometry["lungs"]:
        fn, lo, hi = _ellipsoid(e["centre_mm"], e["semi_axes_mm"])
        p.paint(fn, lo, hi, remainder, "lung")
    for name in _ORGAN_ORDER:
        for e in geometry["organs"].get(name, []):
            fn, lo, hi = _ellipsoid(e["centre_mm"], e["semi_axes_mm"])
            p.paint(fn, lo, hi, INDEX[name], _ORGAN_MATERIAL[name])

    # vertebral column: arch ring around the canal plus a ventral vertebral body
    canal = geometry["canal"]
    st = np.asarray(canal["stations_mm"], float)
    arch = geometry["arch_mm"]
    bx, by = geometry["vertebral_body_mm"]
    rmax = max(canal["radius_mm"].values())
    vz0, vz1 = geometry["vertebrae_z_mm"]

    spine = geometry.get("vertebrae") if isinstance(geometry.get("vertebrae"), dict) else None
    discrete = spine is not None and spine.get("mode") == "discrete"
    if discrete:
        # each disc is a slab perpendicular to the canal centreline at its centre (as discs are to the spine)
        dz = np.sort([d["z_mm"] for d in spine["discs"]])
        dx, dy = canal_centreline(geometry, dz)
        h = 1e-3
        xp, yp = canal_centreline(geometry, dz + h)
        xm, ym = canal_centreline(geometry, dz - h)
        tan = np.stack([xp - xm, yp - ym, np.full(dz.shape, 2 * h)], axis=1)
        tan /= np.linalg.norm(tan, axis=1, keepdims=True)
        disc_c = np.stack([dx, dy, dz], axis=1)
        half_disc = 0.5 * float(spine["disc_mm"])
    cos_open = math.cos(math.radians(35.0))

    def in_disc(x, y, z):
        """Within half a disc thickness of a disc plane (checking the discs nearest in z)."""
        i = np.searchsorted(dz, z)
        out = np.zeros(np.shape(z), bool)
        for k in (-2, -1, 0, 1):
            j = np.clip(i + k, 0, dz.size - 1)
            c, t = disc_c[j], tan[j]
            out |= np.abs((x - c[..., 0]) * t[..., 0] + (y - c[..., 1]) * t[..., 1] + (z - c[..., 2]) * t[..., 2]) \
                < half_disc
        return out

    def column(x, y, z):
        xc, yc = canal_centreline(geometry, z)
        r = _canal_radius(geometry, z)
        d2 = (x - xc) ** 2 + (y - yc) ** 2
        ring = (d2 > r ** 2) & (d2 <= (r + arch) ** 2)
        vb = ((x - xc) / bx) ** 2 + ((y - (yc - r - by)) / by) ** 2 <= 1.0
        keep = (z >= vz0) & (z <= vz1) & (r > 0)
        if not discrete:
            return keep & (ring | vb), None
        gap = in_disc(x, y, z)
        # at a disc: no vertebral body (disc instead), and the arch keeps only its lateral parts (articular
        # processes): it is open within 35 degrees of dorsal (interlaminar space) and of ventral
        dorsoventral = np.abs(y - yc) > cos_open * np.sqrt(d2)
        bone = keep & ((ring & ~(gap & dorsoventral)) | (vb & ~gap))
        return bone, keep & vb & gap

    def vert_fn(x, y, z):
        return column(x, y, z)[0]

    def disc_fn(x, y, z):
        return column(x, y, z)[1]

    pad = rmax + arch + 2 * by + bx
    lo_c = (st[:, 1].min() - pad, st[:, 2].min() - pad, vz0)
    hi_c = (st[:, 1].max() + pad, st[:, 2].max() + pad, vz1)
    if discrete:  # discs: soft tissue where the vertebral bodies are interrupted
        p.paint(disc_fn, lo_c, hi_c, INDEX["remainder"], "soft_tissue")
    p.paint(vert_fn, lo_c, hi_c, INDEX["vertebrae"], "vertebra")

    b = geometry["brain"]
    shell_out, lo, hi = _ellipsoid(b["centre_mm"], b["semi_axes_mm"], grow=geometry["skull_mm"])
    shell_in, _, _ = _ellipsoid(b["centre_mm"], b["semi_axes_mm"])
    p.paint(lambda x, y, z: shell_out(x, y, z) & ~shell_in(x, y, z), lo, hi, INDEX["skull"], "skull")

    inj = geometry["injection_site"]
    r = inj["radius_mm"]
    fn, lo, hi = _ellipsoid(inj["centre_mm"], (r, r, r))
    p.paint(fn, lo, hi, INDEX["injection_site"], "injectate")

    for name in _LEVELS:
        z0, z1 = canal["levels_z_mm"][name]
        rl = canal["radius_mm"][name]

        def canal_fn(x, y, z, z0=z0, z1=z1, rl=rl):
            xc, yc = canal_centreline(geometry, z)
            return (z >= z0) & (z < z1) & ((x - xc) ** 2 + (y - yc) ** 2 <= rl ** 2)

        lo = (st[:, 1].min() - rl - 1, st[:, 2].min() - rl - 1, z0)
        hi = (st[:, 1].max() + rl + 1, st[:, 2].max() + rl + 1, z1)
        p.paint(canal_fn, lo, hi, INDEX[name], "csf")

    fn, lo, hi = _ellipsoid(b["centre_mm"], b["semi_axes_mm"])
    p.paint(fn, lo, hi, INDEX["brain"], "brain")
    ic = geometry.get("intracranial_csf")
    if isinstance(ic, dict):
        for e in list(ic["ventricles"]) + [ic["cisterna_magna"]]:
            efn, elo, ehi = _ellipsoid(e["centre_mm"], e["semi_axes_mm"])
            p.paint(lambda x, y, z, efn=efn: efn(x, y, z) & fn(x, y, z), elo, ehi, INDEX["csf_intracranial"], "csf")
    return p.labels, p.material


def ct_from_materials(material: np.ndarray) -> np.ndarray:
    """Hounsfield units (float32) of a material index array."""
    lut = np.array([HU[MATERIALS[k]] for k in range(len(MATERIALS))], np.float32)
    return lut[material]


def region_names(intracranial_csf: bool = False) -> dict[int, str]:
    """``{index: name}`` of every region the phantom draws (``csf_intracranial`` only when asked for)."""
    return {k: v for k, v in VOCABULARY.items() if intracranial_csf or v != "csf_intracranial"}
