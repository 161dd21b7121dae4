"""Monte Carlo intervals on %ID and on the numbers derived from it.

A quantification table gets its intervals from :func:`add_pct_id_intervals`
(EANM terms, split into independent and shared ones, carried through the
recovery correction; see its docstring). The model below is that of the
single-value :func:`pct_id_interval`.

Model
-----
A region's %ID is ``100 * (N - s N_b) / C * d / A_inj``: ``N`` counts in the
region, ``N_b`` counts in a background region scaled by ``s`` (e.g. volume
ratio), ``C`` counts per MBq (system sensitivity times duration, over the
in-frame factor), ``d`` the decay factor to injection and ``A_inj`` the
injected activity. Each Monte Carlo draw (parametric bootstrap, seeded
:class:`numpy.random.Generator`) combines

* **counting noise**: ``N* ~ Poisson(N)``, ``N_b* ~ Poisson(N_b)``, independent
  per row;
* **calibration**: ``C* = C (1 + cv z)``, ``z ~ N(0, 1)``, *one draw shared by
  every row of a subject* (one sensitivity serves all scans). Default CV
  2.7 %: reproducibility of a Tc-99m calibration over 18 months (EJNMMI Phys
  2016, doi 10.1186/s40658-016-0150-7). With normalisation to total counts
  (``counts_total``) ``C*`` is instead scaled by ``Poisson(N_tot) / N_tot``;
* **injected activity** (optional): ``A_inj* = A_inj (1 + cv_inj z')``, shared;
* **region boundary**: the spread of the results with the region eroded and
  dilated by one voxel (6-connected). With ``lo`` and ``hi`` the lowest and
  highest of (eroded, nominal, dilated) / nominal, the factor is drawn from a
  rectangular distribution *centred on the nominal result* with half-width
  ``(hi - lo) / 2`` (GUM type B; centring keeps the result as drawn the best
  estimate, so the interval always contains it), clipped at 0; one draw per
  region shared across its time points (a boundary error is systematic).

The interval is the percentile interval of the draws (default 95 %); the
output names it in ``interval_method``.

Caveat: reconstructed SPECT voxel values are not Poisson (iterative
reconstruction correlates and reshapes the noise); Poisson noise on the
region's total counts is the textbook approximation. Values below zero
(filtered back-projection) are clipped to zero for the Poisson mean.

Derived numbers (AUC, TIA, half-lives, MRT) get intervals by running the same
functions on every draw of the curve (:func:`propagate`,
:func:`derived_intervals`): the draws of one region's time points are
correlated exactly as above.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy import ndimage

from ..geometry import Image
from .recovery import _per_timepoint

__all__ = [
    "DEFAULT_CALIBRATION_CV",
    "percentile_interval",
    "pct_id_interval",
    "add_pct_id_intervals",
    "region_spread",
    "boundary_sd_mm",
    "noise_factor_from_replicates",
    "propagate",
    "derived_intervals",
    "DRAW_MEMORY_SHARE",
    "available_memory_bytes",
    "pct_id_draws_bytes",
    "kinetics_draws_bytes",
    "check_draw_memory",
]

#: Default calibration CV (EJNMMI Phys 2016, doi 10.1186/s40658-016-0150-7).
DEFAULT_CALIBRATION_CV = 0.027


#: Share of the available memory the Monte Carlo draw arrays may take before they are refused.
DRAW_MEMORY_SHARE = 0.5


def available_memory_bytes() -> int | None:
    """Memory available to a new allocation, in bytes (None when the system does not say).

    ``MemAvailable`` of ``/proc/meminfo`` (Linux: free memory plus what the
    page cache can give back), else ``os.sysconf("SC_AVPHYS_PAGES")``, else
    the physical memory ``os.sysconf("SC_PHYS_PAGES")``, times the page size.
    """
    import os

    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    for name in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
        try:
            pages, size = os.sysconf(name), os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            continue
        if pages > 0 and size > 0:
            return int(pages) * int(size)
    return None


def pct_id_draws_bytes(n_draws: int, n_rows: int, max_labels: int, *, pvc: bool = False,
                       return_draws: bool = False) -> int:
    """Peak bytes of the draw arrays of :func:`add_pct_id_intervals` (float64).

    Held throughout: the draws of every table row (``n_draws x n_rows``; twice
    with recovery correction); at the end the percentiles copy them (two
    more) and ``return_draws`` copies them per curve (two more, three with
    recovery correction). Per time point: the counting-noise draws of the
    labels and the outside (``n_draws x (max_labels + 1)``: the gamma draws
    and their masked copy), the boundary shifts, factors and perturbed sums,
    and the temporaries of the boundary factor (nine such arrays; four more
    with recovery correction: its boundary factor and the solved contents).

    Parameters
    ----------
    n_draws, n_rows : int
        Monte Carlo draws; rows of the table (time points x regions, groups,
        field of view and outside).
    max_labels : int
        Most labels quantified at one time point.
    pvc, return_draws : bool
        As for :func:`add_pct_id_intervals` (``pvc``: recovery-corrected
        intervals too).

    Returns
    -------
    int
        Bytes.

    Examples
    --------
    >>> pct_id_draws_bytes(1000, 10, 2)
    456000
    """
    per_draw = n_rows * ((2 if pvc else 1) + 2 + ((3 if pvc else 2) if return_draws else 0))
    per_draw += (int(max_labels) + 1) * (13 if pvc else 9)
    return 8 * int(n_draws) * per_draw


def kinetics_draws_bytes(n_draws: int, n_times: int, n_metrics: int) -> int:
    """Peak bytes of refitting one curve's draws (:func:`metric_intervals` through ``_curve_intervals``).

    The draws of the curve with the scans held (``n_draws x n_times``) and
    their slice, the value of every metric in every draw
    (``n_draws x n_metrics``) and the percentiles' copies of them (float64).

    Examples
    --------
    >>> kinetics_draws_bytes(100, 6, 20)
    41600
    """
    return 8 * int(n_draws) * (2 * int(n_times) + 2 * int(n_metrics))


def check_draw_memory(need_bytes: int, what: str, n_draws: int, fix: str, *, available: int | None = None) -> None:
    """Refuse Monte Carlo draws whose arrays would take more than a safe share of the available memory.

    Parameters
    ----------
    need_bytes : int
        The estimate (:func:`pct_id_draws_bytes`, :func:`kinetics_draws_bytes`).
    what : str
        What the draws are for, for the message.
    n_draws : int
        The draws asked for (the message gives the most that fit).
    fix : str
        The option that sets the draws (``--uncertainty-draws``).
    available : int, optional
        Available bytes; default :func:`available_memory_bytes`. Unknown
        available memory lets the draws run.

    Raises
    ------
    InputError
        One line: the estimate, the available memory, and how many draws fit.
    """
    from ..errors import InputError

    avail = available_memory_bytes() if available is None else available
    if avail is None or need_bytes <= DRAW_MEMORY_SHARE * avail:
        return
    fit = int(n_draws * DRAW_MEMORY_SHARE * avail // max(need_bytes, 1))
    raise InputError(f"{what}: {n_draws} Monte Carlo draws need about {_gib(need_bytes)} of memory, more than "
                     f"{100 * DRAW_MEMORY_SHARE:g} % of the {_gib(avail)} available: give fewer draws ({fix} "
                     f"{max(fit, 0)} or less), or free memory")


def _gib(n: float) -> str:
    """Bytes as text: ``1.5 GiB``, ``12 MiB``."""
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def percentile_interval(draws, level: float = 0.95, axis: int = 0):
    """``(lo, hi)`` percentiles of draws along ``axis`` (NaNs ignored).

    Examples
    --------
    >>> lo, hi = percentile_interval(np.arange(1001.0))
    >>> float(lo), float(hi)
    (25.0, 975.0)
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    a = (1 - level) / 2
    q = np.nanquantile(np.asarray(draws, dtype=float), [a, 1 - a], axis=axis)
    return q[0], q[1]


def _method(level, n_draws, seed, cv, inj_cv, background, total, region):
    parts = ["Poisson counting noise of the region" + (" and background" if background else "")]
    if total:
        parts.append("Poisson noise of the normalisation total counts")
    if cv:
        parts.append(f"calibration CV {100 * cv:.3g} % (normal, shared by all rows of a subject)")
    if inj_cv:
        parts.append(f"injected-activity CV {100 * inj_cv:.3g} % (normal, shared)")
    if region:
        parts.append("region boundary: rectangular, centred, half-width = half the spread between 1-voxel "
                     "erosion and dilation (shared across times)")
    return (f"Monte Carlo percentile interval ({100 * level:g} %, {n_draws} draws, seed {seed}): "
            + "; ".join(parts))


def _table_method(level, n_draws, seed, noise_factor, cv, inj_cv, seg_sd_mm, fwhm_sd_mm):
    parts = [f"independent per scan: counting noise of the region's sum (gamma, {noise_factor:g} x its Poisson "
             "variance)"]
    shared = []
    if cv:
        shared.append(f"calibration CV {100 * cv:.3g} %")
    if inj_cv:
        shared.append(f"injected-activity CV {100 * inj_cv:.3g} %")
    if seg_sd_mm:
        shared.append(f"region boundary position SD {seg_sd_mm:.3g} mm (content linear between the 1-voxel "
                      "eroded and dilated regions)")
    if fwhm_sd_mm is not None:
        shared.append(f"PSF FWHM SD {fwhm_sd_mm:.3g} mm, through the GTM of every draw")
    if shared:
        parts.append("shared by every scan: " + ", ".join(shared))
    return (f"Monte Carlo percentile interval ({100 * level:g} %, {n_draws} draws, seed {seed}; EANM terms, "
            "draws kept within 0-100 %ID): " + "; ".join(parts))


def _engine(rng, per_count, n_counts, *, n_bg=None, bg_scale=None, cal_group, cv, total=None, inj_cv=0.0,
            region_lo=None, region_hi=None, region_group=None, n_draws):
    """Draws (n_draws, n) of per_count * net counts / calibration / injection * region factor."""
    n = per_count.size
    lam = np.clip(np.nan_to_num(n_counts, nan=0.0), 0, None)
    net = rng.poisson(lam, size=(n_draws, n)).astype(float)
    if n_bg is not None:
        net -= bg_scale * rng.poisson(np.clip(n_bg, 0, None), size=(n_draws, n))
    ugroups, ginv = np.unique(cal_group, return_inverse=True)
    f = np.ones((n_draws, ugroups.size))
    if cv:
        f *= np.clip(1.0 + cv * rng.standard_normal((n_draws, ugroups.size)), 1e-3, None)
    if total is not None and total > 0:
        f *= rng.poisson(total, size=(n_draws, 1)) / total
    if inj_cv:
        f *= np.clip(1.0 + inj_cv * rng.standard_normal((n_draws, ugroups.size)), 1e-3, None)
    out = per_count[None, :] * net / f[:, ginv]
    if region_lo is not None:
        rg, rinv = np.unique(region_group, return_inverse=True)
        u = rng.uniform(-1.0, 1.0, (n_draws, rg.size))[:, rinv]
        out *= np.clip(1.0 + u * (0.5 * (region_hi - region_lo))[None, :], 0.0, None)
    return out


def pct_id_interval(
    counts_region,
    *,
    counts_per_mbq,
    injected_mbq,
    decay_factor=1.0,
    counts_background=None,
    background_scale=1.0,
    counts_total: float | None = None,
    calibration_cv: float | None = None,
    injected_cv: float = 0.0,
    region_factor_low=None,
    region_factor_high=None,
    region_group=None,
    n_draws: int = 4000,
    seed: int | None = 0,
    level: float = 0.95,
    return_draws: bool = False,
) -> dict:
    """%ID and its Monte Carlo interval from counts (see the module docstring).

    Parameters
    ----------
    counts_region : float or array_like
        Counts in the region (one entry per row: time point or region).
    counts_per_mbq : float or array_like
        Counts that one MBq (at scan start) gives in this acquisition.
    injected_mbq : float
        Injected activity (MBq).
    decay_factor : float or array_like
        Decay factor from scan start to injection (1 for %ID not decay-corrected).
    counts_background : float or array_like, optional
        Counts of a background region, subtracted times ``background_scale``.
    counts_total : float, optional
        Total counts of the normalisation scan when ``C`` comes from
        normalisation to the whole field of view (then ``calibration_cv``
        defaults to 0).
    calibration_cv : float, optional
        CV of ``counts_per_mbq``; default :data:`DEFAULT_CALIBRATION_CV`
        (0 with ``counts_total``).
    injected_cv : float
        CV of the injected activity (dose calibrator); default 0.
    region_factor_low, region_factor_high : float or array_like, optional
        Region-boundary range as factors on the result (e.g. eroded / nominal
        and dilated / nominal); see the module docstring for how it is drawn.
    region_group : array_like, optional
        Rows sharing one boundary draw (default: all rows share one).
    n_draws, seed, level
        Monte Carlo settings.
    return_draws : bool
        Also return the draws, shape (n_draws, n), under ``"draws"``.

    Returns
    -------
    dict
        ``pct_id``, ``pct_id_lo``, ``pct_id_hi``, ``pct_id_sd`` (1-D arrays)
        and ``method`` (str).

    Examples
    --------
    >>> r = pct_id_interval(10000, counts_per_mbq=1000.0, injected_mbq=100.0, calibration_cv=0.0)
    >>> float(r["pct_id"][0]), bool(r["pct_id_lo"][0] < 10 < r["pct_id_hi"][0])
    (10.0, True)
    """
    n_counts = np.atleast_1d(np.asarray(counts_region, dtype=float))
    n = n_counts.size
    C = np.broadcast_to(np.asarray(counts_per_mbq, dtype=float), (n,))
    d = np.broadcast_to(np.asarray(decay_factor, dtype=float), (n,))
    if np.any(C <= 0) or not injected_mbq > 0:
        raise ValueError("counts_per_mbq and injected_mbq must be positive")
    per_count = 100.0 * d / (C * float(injected_mbq))
    nb = None if counts_background is None else np.broadcast_to(np.asarray(counts_background, float), (n,))
    s = np.broadcast_to(np.asarray(background_scale, float), (n,))
    net = n_counts - (s * nb if nb is not None else 0.0)
    cv = (0.0 if counts_total is not None else DEFAULT_CALIBRATION_CV) if calibration_cv is None else calibration_cv
    region = region_factor_low is not None or region_factor_high is not None
    lo_f = hi_f = None
    if region:
        a = np.broadcast_to(np.asarray(1.0 if region_factor_low is None else region_factor_low, float), (n,))
        b = np.broadcast_to(np.asarray(1.0 if region_factor_high is None else region_factor_high, float), (n,))
        lo_f, hi_f = np.minimum(np.minimum(a, b), 1.0), np.maximum(np.maximum(a, b), 1.0)
    rng = np.random.default_rng(seed)
    draws = _engine(rng, per_count, n_counts, n_bg=nb, bg_scale=s, cal_group=np.zeros(n, int), cv=cv,
                    total=counts_total, inj_cv=injected_cv, region_lo=lo_f, region_hi=hi_f,
                    region_group=np.zeros(n, int) if region_group is None else np.asarray(region_group),
                    n_draws=int(n_draws))
    lo, hi = percentile_interval(draws, level)
    out = {"pct_id": per_count * net, "pct_id_lo": lo, "pct_id_hi": hi, "pct_id_sd": draws.std(axis=0, ddof=1),
           "method": _method(level, n_draws, seed, cv, injected_cv, nb is not None, counts_total is not None,
                             region)}
    if return_draws:
        out["draws"] = draws
    return out


# ----------------------------------------------------------- whole table
_STRUCT = ndimage.generate_binary_structure(3, 1)


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
    where = np.nonzero(mask)
    if where[0].size == 0:
        return 0.0, 0.0, 0.0
    box = tuple(slice(max(int(w.min()) - 1, 0), min(int(w.max()) + 2, n)) for w, n in zip(where, mask.shape))
    m = mask[box]
    v = image_array[box].astype(np.float64)
    ero = ndimage.binary_erosion(m, _STRUCT)
    dil = ndimage.binary_dilation(m, _STRUCT)
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
    >>> from spectrack.regions.labels import LabelMap
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


def _gtm_boundary_factors(arr, lab, ids, n_vox, spacing, fwhm, t0, truncate=4.0):
    """Corrected content of each region with its mask eroded / dilated by one voxel, over the nominal.

    Only region ``r``'s mask changes (its neighbours keep theirs): one blur
    of the changed mask gives its row and column of the transfer matrix (the
    Gaussian is symmetric). Returns ``(g_eroded, g_dilated)``; an erosion
    that removes the region is mirrored from the dilation.
    """
    from scipy import optimize

    from .recovery import gtm_matrix, sigma_voxels

    W, _, _ = gtm_matrix(lab, spacing, fwhm, label_ids=ids, truncate=truncate)
    lut = np.full(int(max(lab.max(initial=0), max(ids, default=0))) + 1, -1, dtype=np.int64)
    lut[np.asarray(ids, dtype=np.int64)] = np.arange(len(ids))
    idx = lut[np.clip(lab, 0, None)]
    sig = sigma_voxels(fwhm, spacing)
    rad = np.array([int(truncate * s + 0.5) for s in sig]) + 1
    o_mean = np.asarray(ndimage.sum_labels(arr, lab, index=ids), float) / n_vox
    L = len(ids)
    g = np.ones((2, L))
    for r, lid in enumerate(ids):
        if t0[r] <= 0:
            continue
        where = np.nonzero(lab == lid)
        box = tuple(slice(max(int(w.min()) - q, 0), min(int(w.max()) + q + 1, n))
                    for w, q, n in zip(where, rad, lab.shape))
        m = lab[box] == lid
        for e, op in enumerate((ndimage.binary_erosion, ndimage.binary_dilation)):
            m2 = op(m, _STRUCT)
            n2 = int(m2.sum())
            if n2 == 0:
                g[e, r] = np.nan
                continue
            blurred = ndimage.gaussian_filter(m2.astype(np.float64), sig, mode="constant", cval=0.0,
                                              truncate=truncate) if np.any(sig > 0) else m2.astype(np.float64)
            sub = idx[box].ravel()
            ok = sub >= 0
            col = np.bincount(sub[ok], weights=blurred.ravel()[ok], minlength=L) / n_vox  # W[i, r']
            W2 = W.copy()
            W2[:, r] = col
            W2[r, :] = col * n_vox / n2                                                   # symmetry
            W2[r, r] = float(blurred[m2].sum()) / n2
            y = o_mean.copy()
            y[r] = float(arr[box][m2].sum()) / n2
            t2 = optimize.nnls(W2, y)[0]
            g[e, r] = t2[r] * n2 / (t0[r] * n_vox[r])
    bad = ~np.isfinite(g[0])
    g[0, bad] = np.clip(2.0 - g[1, bad], 0.0, None)
    return g[0], g[1]


def _boundary_factor(u, f_ero, f_dil):
    """Factor on a region's content for a boundary shift of ``u`` voxels (linear in the shift)."""
    return np.clip(np.where(u >= 0, 1.0 + u * (f_dil - 1.0), 1.0 - u * (f_ero - 1.0)), 0.0, None)


def add_pct_id_intervals(
    table,
    images,
    labels,
    *,
    counts_per_mbq=None,
    noise_factor: float = 1.0,
    calibration_cv: float = DEFAULT_CALIBRATION_CV,
    injected_cv: float = 0.0,
    segmentation_sd_mm: float | None = None,
    fwhm_mm=None,
    fwhm_sd_mm: float = 0.0,
    nonnegative: bool = True,
    n_draws: int = 2000,
    seed: int | None = 0,
    level: float = 0.95,
    return_draws: bool = False,
):
    """Add Monte Carlo intervals to every %ID (and recovery-corrected %ID) of a quantification table.

    The terms follow the EANM guidance on uncertainty analysis (Gear et al.,
    EJNMMI 2018), split into *independent* terms (a new draw per time point)
    and *shared* systematic terms (one draw per subject or region, the same
    at every time point):

    * counting noise (independent): a region's sum is drawn from a gamma
      distribution with the mean of its counts and ``noise_factor`` times
      their Poisson variance (a reconstructed image is not Poisson:
      ``noise_factor`` is the variance of a region's sum over the sum, in
      counts, from replicates; see :func:`noise_factor_from_replicates`);
    * calibration and injected activity (shared by the subject): normal CVs;
    * region boundary (shared by the region): a shift of the boundary by
      ``delta ~ N(0, segmentation_sd_mm)``, as a fraction of the voxel size,
      moves the content linearly between the nominal and the 1-voxel
      eroded (inward) or dilated (outward) result; with recovery correction
      the eroded and dilated masks are run through the GTM;
    * PSF FWHM (shared by the subject; recovery correction only):
      ``FWHM * (1 + z fwhm_sd_mm / FWHM)``, the transfer matrix interpolated
      between matrices computed at -3 to +3 SDs, and the GTM solved for every
      draw.

    Draws are kept in the physical range 0-100 %ID, so no interval is wider.

    Parameters
    ----------
    table : pandas.DataFrame
        The quantification table (``subject, timepoint, time_h, region,
        activity_mbq, pct_id, pct_id_uncorrected``; ``kind``, ``label``,
        ``volume_ml`` and the ``*_pvc`` columns of
        :func:`~spectrack.kinetics.recovery.add_gtm_correction` used when
        present).
    images : Image, sequence or mapping of Image
        The emission image of each time point (a sequence follows the sorted
        ``timepoint`` values; a mapping is keyed by them), as quantified.
    labels : LabelMap, or sequence / mapping of LabelMap
        The regions (resampled onto each image with nearest neighbour).
    counts_per_mbq : float, sequence or mapping, optional
        Detected counts per MBq at each time point. None means the images hold
        counts: the region's counts are its summed voxel values.
    noise_factor : float
        Variance of a region's summed counts over their Poisson variance (1:
        Poisson).
    calibration_cv, injected_cv : float
        Relative SDs of the calibration and of the injected activity.
    segmentation_sd_mm : float, optional
        SD of a region boundary's position; default :func:`boundary_sd_mm`
        of the label map (voxel / sqrt(12)); 0 leaves the term out.
    fwhm_mm : float or array_like of 3 float, optional
        The FWHM of the recovery correction; with it, ``pct_id_pvc`` (when
        the table has it) gets intervals through the GTM.
    fwhm_sd_mm : float
        SD of that FWHM.
    nonnegative : bool
        Solve the GTM of every draw by non-negative least squares, as the
        correction does.
    n_draws, seed, level
        Monte Carlo settings.
    return_draws : bool
        Also return ``{(subject, region): {"time_h", "timepoint", "pct_id",
        "pct_id_uncorrected"[, "pct_id_pvc"]}}`` with draws of shape
        (n_draws, n_times) for :func:`derived_intervals`.

    Returns
    -------
    pandas.DataFrame
        A copy of ``table`` plus ``counts``, ``pct_id_lo``, ``pct_id_hi``,
        ``pct_id_sd_independent`` (SD of the independent terms alone: the
        weights of kinetic fits), ``pct_id_uncorrected_lo``/``_hi``,
        ``pct_id_per_ml_lo``/``_hi``, ``pct_id_eroded``, ``pct_id_dilated``,
        ``interval_method``, and with recovery correction ``pct_id_pvc_lo``,
        ``pct_id_pvc_hi``, ``pct_id_pvc_sd_independent``,
        ``pct_id_uncorrected_pvc_lo``/``_hi`` and
        ``pct_id_per_ml_pvc_lo``/``_hi``. Rows whose region cannot be located
        in the labels get NaN intervals.
    """
    from ..regions.labels import LabelMap
    from ..regions.vocabulary import GROUPS

    if not noise_factor > 0 or not math.isfinite(noise_factor):
        raise ValueError(f"noise_factor must be a positive number, got {noise_factor}")
    if not 0 <= fwhm_sd_mm < math.inf:
        raise ValueError(f"fwhm_sd_mm must be >= 0, got {fwhm_sd_mm}")
    df = table.copy()
    if df.empty:
        return (df, {}) if return_draws else df
    nd = int(n_draws)
    tps = sorted(df["timepoint"].unique())
    # the cost before any draw: the most regions quantified at one time point bounds the labels drawn
    is_region = (df["kind"].astype(str) == "region") if "kind" in df else np.ones(len(df), bool)
    max_labels = int(df.loc[is_region, "timepoint"].value_counts().max()) if is_region.any() else 0
    check_draw_memory(pct_id_draws_bytes(nd, len(df), max_labels, pvc=fwhm_mm is not None and "pct_id_pvc" in df,
                                         return_draws=return_draws),
                      f"%ID intervals of {len(df)} table rows ({len(tps)} time points)", nd,
                      "--uncertainty-draws")
    imgs = [getattr(i, "image", i) for i in _per_timepoint(images, tps, "images")]
    labs = _per_timepoint(labels, tps, "label maps")
    cpm = None if counts_per_mbq is None else _per_timepoint(counts_per_mbq, tps, "counts_per_mbq values")
    pvc = fwhm_mm is not None and "pct_id_pvc" in df
    n = len(df)
    kind = df["kind"].astype(str).to_numpy() if "kind" in df else np.full(n, "region", dtype=object)
    reg = df["region"].astype(str).to_numpy()
    subj = df["subject"].astype(str).to_numpy() if "subject" in df else np.full(n, "", dtype=object)
    tpv = df["timepoint"].to_numpy()
    pid = df["pct_id"].to_numpy(float)
    pidu = df["pct_id_uncorrected"].to_numpy(float)
    pidp = df["pct_id_pvc"].to_numpy(float) if pvc else None
    act = df["activity_mbq"].to_numpy(float)
    lab_col = df["label"].to_numpy(float) if "label" in df else np.full(n, np.nan)

    rng = np.random.default_rng(seed)
    # shared terms: one draw per subject (calibration, injection, FWHM) or per region (boundary)
    subjects = list(dict.fromkeys(subj))
    shared = {}
    for s in subjects:
        f = np.ones(nd)
        if calibration_cv:
            f *= np.clip(1.0 + calibration_cv * rng.standard_normal(nd), 1e-3, None)
        if injected_cv:
            f *= np.clip(1.0 + injected_cv * rng.standard_normal(nd), 1e-3, None)
        shared[s] = {"scale": 1.0 / f, "z_fwhm": rng.standard_normal(nd)}
    seg_u: dict = {}

    def boundary_u(s, name, h_mm, sd_mm):
        if (s, name) not in seg_u:
            seg_u[(s, name)] = rng.standard_normal(nd)
        return seg_u[(s, name)] * (sd_mm / h_mm)

    draws = np.full((nd, n), np.nan)
    draws_p = np.full((nd, n), np.nan) if pvc else None
    counts = np.full(n, np.nan)
    sd_ind = np.full(n, np.nan)
    sd_ind_p = np.full(n, np.nan)
    f_ero_all = np.full(n, np.nan)
    f_dil_all = np.full(n, np.nan)
    seg_used = []
    for t_i, tp in enumerate(tps):
        img = imgs[t_i]
        if not isinstance(img, Image):
            raise TypeError(f"images must be spectrack Image objects, got {type(img).__name__}")
        if cpm is None and img.units.replace(" ", "").lower() in ("bq/ml", "bqml"):
            raise ValueError("the images are in Bq/mL: give counts_per_mbq (detected counts per MBq) so that "
                             "counting noise can be modelled")
        lm = labs[t_i]
        lm = lm.resampled_to(img) if isinstance(lm, LabelMap) else lm
        lab = np.asarray(lm.image.array if isinstance(lm, LabelMap) else lm)
        names = lm.names if isinstance(lm, LabelMap) else {}
        rev = {v: k for k, v in names.items()}
        sd_seg = (boundary_sd_mm(lm) if isinstance(lm, LabelMap) else 0.0) if segmentation_sd_mm is None \
            else float(segmentation_sd_mm)
        seg_used.append(sd_seg)
        h_mm = float(np.mean(img.spacing_mm))
        arr = np.asarray(img.array, dtype=np.float64)
        ids = np.unique(lab[lab > 0]).astype(np.int64)
        L = ids.size
        pos_of = {int(i): p for p, i in enumerate(ids)}
        o = np.asarray(ndimage.sum_labels(arr, lab, index=ids), float) if L else np.zeros(0)
        total = float(arr.sum())
        o_out = total - float(o.sum())
        rows = np.flatnonzero(tpv == tp)

        def label_of(p):
            if np.isfinite(lab_col[p]) and int(lab_col[p]) in pos_of:
                return pos_of[int(lab_col[p])]
            if reg[p] in rev and int(rev[reg[p]]) in pos_of:
                return pos_of[int(rev[reg[p]])]
            return None

        # counts per image unit
        if cpm is None:
            cpu = 1.0
        else:
            est = [act[p] * float(cpm[t_i]) / o[label_of(p)] for p in rows
                   if kind[p] == "region" and label_of(p) is not None and o[label_of(p)] > 0 and act[p] > 0]
            cpu = float(np.median(est)) if est else float("nan")
        c = np.clip(np.r_[o, o_out] * cpu, 0.0, None)       # counts of the labels, then outside
        with np.errstate(divide="ignore", invalid="ignore"):
            X = np.where(c > 0, rng.gamma(np.where(c > 0, c / noise_factor, 1.0), noise_factor, (nd, L + 1)), 0.0)
            X /= cpu                                          # image units
        # boundary: eroded / dilated sums of every label
        f_ero, f_dil = np.ones(L), np.ones(L)
        for r, lid in enumerate(ids):
            nom, ero, dil = region_spread(arr, lab == lid)
            if nom > 0:
                f_ero[r], f_dil[r] = ero / nom, dil / nom
        U = np.zeros((nd, L))
        if sd_seg > 0:
            for r, lid in enumerate(ids):
                s_name = names.get(int(lid), f"label_{int(lid)}")
                for s in subjects:  # one label map per table subject in practice
                    U[:, r] = boundary_u(s, s_name, h_mm, sd_seg)
        seg = _boundary_factor(U, f_ero[None, :], f_dil[None, :]) if sd_seg > 0 else np.ones((nd, L))
        Y = X[:, :L] * seg                                     # boundary-perturbed sums
        # recovery correction of every draw
        if pvc and L:
            from scipy import optimize

            s0 = subjects[0]
            mean_fw = float(np.mean(np.atleast_1d(np.asarray(fwhm_mm, float))))
            W_nodes, n_vox = _gtm_nodes(lab, ids, img.spacing_mm, fwhm_mm, fwhm_sd_mm / mean_fw)
            W0 = W_nodes[W_nodes.shape[0] // 2]
            t0 = optimize.nnls(W0, o / n_vox)[0] if nonnegative else np.linalg.lstsq(W0, o / n_vox, rcond=None)[0]
            corr0 = t0 * n_vox
            gp = (np.ones(L), np.ones(L))
            if sd_seg > 0:
                gp = _gtm_boundary_factors(arr, lab, ids, n_vox, img.spacing_mm, fwhm_mm, t0)
            seg_p = _boundary_factor(U, gp[0][None, :], gp[1][None, :]) if sd_seg > 0 else np.ones((nd, L))
            T = np.empty((nd, L))
            z = shared[s0]["z_fwhm"]
            for a in range(0, nd, 256):
                b = min(a + 256, nd)
                T[a:b] = _solve_draws(_interp_nodes(W_nodes, z[a:b]), X[a:b, :L] / n_vox, nonnegative)
            CP = T * n_vox * seg_p
            # independent SD of the corrected content: linear propagation of the counting variance
            Winv = np.linalg.pinv(W0)
            var_y = noise_factor * np.clip(o, 0, None) / cpu / n_vox ** 2
        for p in rows:
            k = kind[p]
            r = label_of(p) if k == "region" else None
            members = None
            if k == "group":
                mem = GROUPS.get(reg[p], ())
                if mem and all(m in rev and int(rev[m]) in pos_of for m in mem):
                    members = [pos_of[int(rev[m])] for m in mem]
            scale = shared[subj[p]]["scale"]
            if r is not None:
                if o[r] > 0:
                    draws[:, p] = pid[p] * Y[:, r] / o[r] * scale
                    sd_ind[p] = pid[p] * math.sqrt(noise_factor / c[r]) if c[r] > 0 else 0.0
                counts[p] = c[r]
                f_ero_all[p], f_dil_all[p] = f_ero[r], f_dil[r]
            elif members is not None:
                om = o[members].sum()
                if om > 0:
                    draws[:, p] = pid[p] * Y[:, members].sum(axis=1) / om * scale
                    cm = c[members].sum()
                    sd_ind[p] = pid[p] * math.sqrt(noise_factor / cm) if cm > 0 else 0.0
                counts[p] = c[members].sum()
            elif k == "fov" and total > 0:
                draws[:, p] = pid[p] * X.sum(axis=1) / total * scale
                counts[p] = c.sum()
                sd_ind[p] = pid[p] * math.sqrt(noise_factor / c.sum()) if c.sum() > 0 else 0.0
            elif k == "outside" and o_out > 0:
                draws[:, p] = pid[p] * X[:, L] / o_out * scale
                counts[p] = c[L]
                sd_ind[p] = pid[p] * math.sqrt(noise_factor / c[L]) if c[L] > 0 else 0.0
            if not pvc or not L or not np.isfinite(pidp[p]):
                continue
            sel = [r] if r is not None else members
            if sel is None:
                continue
            c0 = corr0[sel].sum()
            if c0 > 0:
                draws_p[:, p] = pidp[p] * CP[:, sel].sum(axis=1) / c0 * scale
                wrow = (n_vox[sel][:, None] * Winv[sel]).sum(axis=0)
                sd_ind_p[p] = pidp[p] * math.sqrt(float(np.sum(wrow ** 2 * var_y))) / c0
            else:  # pinned at 0 by the solver: the draws' corrected content in %ID of the whole-voxel GTM
                per_unit = pid[p] / o[sel].sum() if o[sel].sum() > 0 else np.nan
                draws_p[:, p] = CP[:, sel].sum(axis=1) * per_unit * scale
    np.clip(draws, 0.0, 100.0, out=draws)
    ok = np.all(np.isfinite(draws), axis=0)
    lo_all, hi_all = np.full(n, np.nan), np.full(n, np.nan)
    if ok.any():
        lo_all[ok], hi_all[ok] = percentile_interval(draws[:, ok], level)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(pid > 0, pidu / pid, np.nan)
    df["counts"] = counts
    df["pct_id_lo"], df["pct_id_hi"] = lo_all, hi_all
    df["pct_id_sd_independent"] = np.where(ok, sd_ind, np.nan)
    df["pct_id_uncorrected_lo"], df["pct_id_uncorrected_hi"] = lo_all * ratio, hi_all * ratio
    vol = df["volume_ml"].to_numpy(float) if "volume_ml" in df else None
    if vol is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            df["pct_id_per_ml_lo"] = np.where(vol > 0, lo_all / vol, np.nan)
            df["pct_id_per_ml_hi"] = np.where(vol > 0, hi_all / vol, np.nan)
    df["pct_id_eroded"] = pid * f_ero_all
    df["pct_id_dilated"] = pid * f_dil_all
    if pvc:
        np.clip(draws_p, 0.0, 100.0, out=draws_p)
        okp = np.all(np.isfinite(draws_p), axis=0)
        lo_p, hi_p = np.full(n, np.nan), np.full(n, np.nan)
        if okp.any():
            lo_p[okp], hi_p[okp] = percentile_interval(draws_p[:, okp], level)
        df["pct_id_pvc_lo"], df["pct_id_pvc_hi"] = lo_p, hi_p
        df["pct_id_pvc_sd_independent"] = np.where(okp, sd_ind_p, np.nan)
        df["pct_id_uncorrected_pvc_lo"], df["pct_id_uncorrected_pvc_hi"] = lo_p * ratio, hi_p * ratio
        if vol is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                df["pct_id_per_ml_pvc_lo"] = np.where(vol > 0, lo_p / vol, np.nan)
                df["pct_id_per_ml_pvc_hi"] = np.where(vol > 0, hi_p / vol, np.nan)
    method = _table_method(level, nd, seed, noise_factor, calibration_cv, injected_cv, max(seg_used, default=0.0),
                           fwhm_sd_mm if pvc else None)
    df["interval_method"] = np.where(ok, method, "not computed: region not found in the labels")
    if not return_draws:
        return df
    out = {}
    tcol = df["time_h"].to_numpy(float)
    for key in dict.fromkeys(zip(subj, reg)):
        sel = np.flatnonzero((subj == key[0]) & (reg == key[1]) & ok)
        if sel.size == 0:
            continue
        sel = sel[np.argsort(tcol[sel], kind="stable")]
        out[key] = {"time_h": tcol[sel], "timepoint": tpv[sel], "pct_id": draws[:, sel],
                    "pct_id_uncorrected": draws[:, sel] * ratio[sel][None, :]}
        if pvc and np.all(np.isfinite(draws_p[:, sel])):
            out[key]["pct_id_pvc"] = draws_p[:, sel]
    return df, out


def noise_factor_from_replicates(images, labels, *, counts_per_unit: float = 1.0, min_counts: float = 100.0):
    """Variance of regions' summed counts over their mean, from replicate images of one object.

    Replicates are reconstructions of independent acquisitions of the same
    activity (repeated phantom scans, or list-mode data split into equal
    parts and each reconstructed). The pooled ratio is the ``noise_factor``
    of :func:`add_pct_id_intervals` for images reconstructed the same way.

    Parameters
    ----------
    images : sequence of Image or numpy.ndarray
        At least 3 replicate images on one grid.
    labels : LabelMap or numpy.ndarray
        Regions on that grid.
    counts_per_unit : float
        Counts per image unit (1 for images in counts).
    min_counts : float
        Regions with fewer mean counts are left out.

    Returns
    -------
    dict
        ``noise_factor`` (median over regions of variance / mean, in
        counts), ``per_region`` ({label: ratio}), ``n_replicates``.
    """
    arrs = [np.asarray(getattr(i, "array", i), np.float64) for i in images]
    if len(arrs) < 3:
        raise ValueError(f"at least 3 replicate images are needed, got {len(arrs)}")
    lab = np.asarray(getattr(getattr(labels, "image", labels), "array", labels))
    ids = np.unique(lab[lab > 0])
    sums = np.array([ndimage.sum_labels(a, lab, index=ids) for a in arrs]) * counts_per_unit
    mean, var = sums.mean(axis=0), sums.var(axis=0, ddof=1)
    keep = mean >= min_counts
    if not keep.any():
        raise ValueError(f"no region holds {min_counts:g} counts")
    ratios = var[keep] / mean[keep]
    return {"noise_factor": float(np.median(ratios)),
            "per_region": {int(i): float(r) for i, r in zip(ids[keep], ratios)}, "n_replicates": len(arrs)}


# ------------------------------------------------------- derived numbers
def propagate(draws, func: Callable, *, level: float = 0.95, vectorized: bool = False) -> dict:
    """Intervals of ``func`` applied to every draw of a curve.

    Parameters
    ----------
    draws : array_like, shape (n_draws, n_times)
    func : callable
        Maps one curve (1-D array) to a float or a dict of floats; with
        ``vectorized=True`` it maps the whole (n_draws, n_times) array to an
        array (n_draws,) or a dict of such arrays.
    level : float

    Returns
    -------
    dict
        ``{name: {"lo", "hi", "median", "n_failed"}}`` (``name`` is
        ``"value"`` for a float-valued ``func``). Draws giving NaN or
        infinite results count as failed and are left out.
    """
    d = np.asarray(draws, dtype=float)
    if vectorized:
        res = func(d)
        res = res if isinstance(res, dict) else {"value": res}
        vals = {k: np.asarray(v, dtype=float) for k, v in res.items()}
    else:
        rows = [func(c) for c in d]
        keys = list(rows[0].keys()) if rows and isinstance(rows[0], dict) else ["value"]
        vals = {k: np.array([(r[k] if isinstance(r, dict) else r) for r in rows], dtype=float) for k in keys}
    out = {}
    for k, v in vals.items():
        good = np.isfinite(v)
        lo, hi = percentile_interval(v[good], level) if good.any() else (np.nan, np.nan)
        out[k] = {"lo": float(lo), "hi": float(hi), "median": float(np.median(v[good])) if good.any() else np.nan,
                  "n_failed": int((~good).sum())}
    return out


#: metrics given an interval; the half-lives count a draw without one (its curve did not clear within
#: what the study measures) as beyond any finite bound
INTERVAL_METRICS = ("cmax", "start_value", "auc", "auc_observed", "auc_lambda_z", "auc_fit", "mrt_h", "tia",
                    "tia_observed", "tia_lambda_z", "tia_upper_bound", "tia_fit", "tiac_h", "terminal_rate_per_h")
HALF_LIFE_METRICS = ("t_bio_h", "t_eff_h", "t_bio_h_from_t_eff")


def metric_intervals(time_h, draws, nominal, *, half_life_h: float, level: float = 0.95, fixed_model: bool = True,
                     **tac_metrics_kwargs) -> dict:
    """Percentile intervals of a curve's kinetic numbers over Monte Carlo draws of the curve.

    Parameters
    ----------
    time_h : array_like
        Scan times (h), as for the nominal curve.
    draws : array_like, shape (n_draws, n_times)
        Draws of the decay-corrected curve.
    nominal : KineticSummary
        :func:`~spectrack.kinetics.auc.tac_metrics` of the nominal curve.
    half_life_h : float
    level : float
    fixed_model : bool
        Refit each draw with the nominal curve's chosen model only, from its
        parameters (fast; the interval then leaves out the uncertainty of the
        model choice); False repeats the whole model choice per draw.
    **tac_metrics_kwargs
        As given for the nominal curve (``start``, ``sigma``, ``unit``...).

    Returns
    -------
    dict
        ``{(metric, correction): (lo, hi, n_failed, note)}`` for
        :data:`INTERVAL_METRICS` and :data:`HALF_LIFE_METRICS` whose nominal
        value is finite. A half-life draw without a value counts as
        infinite (``hi`` may be ``inf``); for the other metrics, no interval
        (NaN) is given when more than ``(1 - level) / 2`` of the draws have no
        value.
    """
    from .auc import tac_metrics

    d = np.asarray(draws, dtype=float)
    kw = dict(tac_metrics_kwargs)
    if fixed_model:
        kw["refit"] = {c: sel.best for c, sel in nominal.selections.items()}
    wanted = [(r["metric"], r["correction"]) for r in nominal.metrics
              if r["metric"] in INTERVAL_METRICS + HALF_LIFE_METRICS and np.isfinite(r["value"])]
    vals = {k: np.full(len(d), np.nan) for k in wanted}
    for j, curve in enumerate(d):
        if not np.all(np.isfinite(curve)):
            continue
        s = tac_metrics(time_h, curve, half_life_h=half_life_h, decay_corrected=True, **kw)
        for r in s.metrics:
            k = (r["metric"], r["correction"])
            if k in vals:
                vals[k][j] = r["value"]
    tail = (1.0 - level) / 2.0
    out = {}
    for k, v in vals.items():
        good = np.isfinite(v)
        n_failed = int((~good).sum())
        if k[0] in HALF_LIFE_METRICS:
            big = 1e300   # stands for "unbounded" inside the quantile (inf - inf would be NaN)
            v = np.where(good, v, big)
            lo, hi = (float(np.quantile(v, tail)), float(np.quantile(v, 1 - tail))) if v.size else (np.nan, np.nan)
            lo, hi = (np.inf if x > 1e299 else x for x in (lo, hi))
            note = (f"; {n_failed} of {len(d)} draws gave no half-life (no clearance within what the study "
                    "measures): counted as unbounded") if n_failed else ""
        elif n_failed > tail * len(d) or not good.any():
            lo, hi = np.nan, np.nan
            note = f"; not given: {n_failed} of {len(d)} draws gave no value"
        else:
            lo, hi = percentile_interval(v[good], level)
            note = f"; {n_failed} of {len(d)} draws gave no value and are left out" if n_failed else ""
        out[k] = (float(lo), float(hi), n_failed, note)
    return out


def interval_text(level: float, n_draws: int, fixed_model: bool) -> str:
    """How the kinetic intervals were obtained, in one sentence."""
    return (f"Monte Carlo percentile interval ({100 * level:g} %): {n_draws} draws of the curve (every "
            "uncertainty term, shared ones included) refitted and reintegrated"
            + (" with the model fixed at the nominal curve's choice" if fixed_model else ", model choice repeated"))


def derived_intervals(
    time_h,
    values,
    draws,
    *,
    half_life_h: float,
    decay_corrected: bool = True,
    level: float = 0.95,
    max_draws: int | None = None,
    fixed_model: bool = False,
    **tac_metrics_kwargs,
):
    """Intervals on every number of :func:`~spectrack.kinetics.auc.tac_metrics`.

    The nominal curve gives ``value``; each Monte Carlo draw of the curve is
    run through the same fits and integrals, and the percentiles of the
    results give ``lo``/``hi`` (see :func:`metric_intervals`).

    Parameters
    ----------
    time_h, values : array_like
        The nominal curve.
    draws : array_like, shape (n_draws, n_times)
        Draws of the curve (same correction as ``values``), e.g. from
        :func:`add_pct_id_intervals` with ``return_draws=True``.
    half_life_h, decay_corrected
        As for :func:`~spectrack.kinetics.auc.tac_metrics`.
    max_draws : int, optional
        Use only the first draws (fits are the slow part).
    fixed_model : bool
        Refit only the nominal curve's chosen model per draw (fast) instead
        of repeating the model choice (default).
    **tac_metrics_kwargs
        ``models``, ``start``, ``tail``, ``rule``, ``weighting``, ``unit``.

    Returns
    -------
    pandas.DataFrame
        ``metric, correction, value, lo, hi, unit, method, interval_method,
        n_draws, n_failed`` (metrics without an interval have NaN bounds).
    """
    import pandas as pd

    from .auc import tac_metrics

    d = np.asarray(draws, dtype=float)
    if max_draws is not None:
        d = d[: int(max_draws)]
    t = np.asarray(time_h, dtype=float)
    y = np.asarray(values, dtype=float)
    nominal = tac_metrics(t, y if decay_corrected else y * np.exp(np.log(2) / float(half_life_h) * t),
                          half_life_h=half_life_h, decay_corrected=True, **tac_metrics_kwargs)
    check_draw_memory(kinetics_draws_bytes(len(d), len(t), len(nominal.metrics)) + (d.nbytes if not
                      decay_corrected else 0), "kinetic intervals", len(d), "max_draws")
    if not decay_corrected:   # the draws and the curve in the decay-corrected form the engine works on
        fac = np.exp(np.log(2) / float(half_life_h) * t)
        y, d = y * fac, d * fac[None, :]
    res = metric_intervals(t, d, nominal, half_life_h=half_life_h, level=level, fixed_model=fixed_model,
                           **tac_metrics_kwargs)
    imethod = interval_text(level, len(d), fixed_model)
    rows = []
    for r in nominal.metrics:
        k = (r["metric"], r["correction"])
        lo, hi, nf, note = res.get(k, (np.nan, np.nan, 0, ""))
        rows.append({"metric": k[0], "correction": k[1], "value": r["value"], "lo": lo, "hi": hi,
                     "unit": r["unit"], "method": r["method"], "interval_method": imethod + note if k in res else "",
                     "n_draws": len(d), "n_failed": nf})
    return pd.DataFrame(rows)
