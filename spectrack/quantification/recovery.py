"""Partial-volume (recovery) correction: analytic recovery coefficients and the GTM of one image.

The correction of a whole quantification table (every time point) is
:func:`spectrack.quantification.recovery_table.add_gtm_correction`; the
measured resolution it needs, :mod:`spectrack.quantification.resolution`.

What FWHM means here
--------------------
Every ``fwhm_mm`` in this module is the **reconstructed system resolution**:
the full width at half maximum of the point-spread function of the *final
reconstructed image* as it is quantified, including collimator, detector,
distance from the collimator, reconstruction (iterations, resolution
recovery) and any post-filter. It is not the collimator's geometric
resolution nor the detector's intrinsic resolution, which are both smaller.
Measure it on a point or line source reconstructed with the same protocol
(:func:`spectrack.quantification.resolution.measure_fwhm`). The PSF is modelled as a Gaussian,
``sigma = FWHM / (2 sqrt(2 ln 2))``; an anisotropic PSF is given as three
FWHMs along the image axes i, j, k.

Default FWHM per preset (:data:`FWHM_PRESETS_MM`)
-------------------------------------------------
======  =======  ==============================================================
preset  FWHM mm  source
======  =======  ==============================================================
rat     0.8      preclinical pinhole SPECT (U-SPECT-II rat collimator) resolves
                 below 0.8 mm (van der Have et al., J Nucl Med 2009): an upper
                 bound, so recovery is if anything under-corrected
nhp     12.0     **not sourced**: clinical LEHR SPECT is about 10-15 mm after
                 reconstruction (general knowledge); mid-range value chosen
human   12.0     **not sourced**: as nhp
======  =======  ==============================================================

Measure the real value for your camera and protocol whenever you can.

Recovery coefficients (RC = measured / true mean concentration)
---------------------------------------------------------------
For a uniform object ``S`` blurred by a Gaussian ``g``, the mean RC over the
object is ``(1/|S|) integral_S integral_S g(x - y) dx dy``, which depends only on
the distribution of ``|x - y|`` under ``g`` and the overlap of ``S`` with a
shifted copy of itself:

* sphere of diameter d = 2R, 3-D Gaussian: ``|x-y|`` is Maxwell distributed,
  overlap fraction ``(4R + s)(2R - s)^2 / (16 R^3)``;
* infinite cylinder of diameter d (resolution across its axis), 2-D Gaussian:
  ``|x-y|`` is Rayleigh distributed, overlap fraction
  ``(2/pi) (acos(u) - u sqrt(1 - u^2))``, ``u = s / 2R``.

Both 1-D integrals are computed with :func:`scipy.integrate.quad`. The RC at
the centre has a closed form: sphere
``erf(R / (sqrt2 sigma)) - sqrt(2/pi) (R/sigma) exp(-R^2 / 2 sigma^2)``,
cylinder axis ``1 - exp(-R^2 / 2 sigma^2)``.

Geometric transfer matrix (GTM)
-------------------------------
Rousset, Ma & Evans, J Nucl Med 1998;39:904-911. For regions ``i, j`` with
indicator ``chi_j`` and ``N_i`` voxels, ``W[i, j] = sum_{v in i} (g * chi_j)(v) /
N_i`` is the share of region j's (unit) concentration seen as mean value in
region i. With uniform true concentrations ``T`` the observed means are
``t_obs = W T``; solving gives ``T`` (least squares, or non-negative least
squares). The blur is :func:`scipy.ndimage.gaussian_filter` on the image grid
(``mode="constant"``: no activity outside the field of view), computed per
region within its bounding box padded by the kernel radius. All activity must
lie in labelled regions: unlabelled voxels (0) are taken as empty, so label a
background / remainder region when there is activity outside the regions of
interest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import integrate, ndimage, optimize, special
from scipy.linalg import lstsq

from ..geometry import Image

__all__ = [
    "FWHM_PRESETS_MM",
    "FWHM_TO_SIGMA",
    "default_fwhm_mm",
    "sigma_voxels",
    "sphere_rc",
    "cylinder_rc",
    "gtm_matrix",
    "gtm_matrix_fractional",
    "GTMResult",
    "gtm_correct",
]

#: sigma = FWHM * FWHM_TO_SIGMA
FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))

#: Default reconstructed-image FWHM (mm) per preset; see the module docstring
#: for sources ("nhp" and "human" are not sourced).
FWHM_PRESETS_MM: dict[str, float] = {"rat": 0.8, "nhp": 12.0, "human": 12.0}


def default_fwhm_mm(preset: str) -> float:
    """Default reconstructed FWHM for a preset (``rat``, ``nhp``, ``human``).

    Raises
    ------
    KeyError
        For a preset without a default (give the FWHM explicitly).
    """
    key = str(preset).lower()
    if key not in FWHM_PRESETS_MM:
        raise KeyError(f"no default FWHM for preset {preset!r} (have {', '.join(FWHM_PRESETS_MM)}): "
                       "give the measured reconstructed FWHM in mm")
    return FWHM_PRESETS_MM[key]


def _fwhm3(fwhm_mm) -> np.ndarray:
    f = np.broadcast_to(np.asarray(fwhm_mm, dtype=float), (3,)).copy()
    if not np.all(np.isfinite(f)) or np.any(f < 0):
        raise ValueError(f"FWHM must be finite and >= 0, got {fwhm_mm}")
    return f


def sigma_voxels(fwhm_mm, spacing_mm) -> np.ndarray:
    """Gaussian sigma in voxels **along the array axes (k, j, i)**.

    ``fwhm_mm`` (scalar or along i, j, k) and ``spacing_mm`` (along i, j, k)
    follow :class:`~spectrack.geometry.Image`; the result is reversed to the
    array's axis order for :func:`scipy.ndimage.gaussian_filter`.

    Examples
    --------
    >>> np.round(sigma_voxels((2.3548, 2.3548, 4.7096), (1.0, 1.0, 2.0)), 3).tolist()
    [1.0, 1.0, 1.0]
    """
    sp = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (3,))
    return (_fwhm3(fwhm_mm) * FWHM_TO_SIGMA / sp)[::-1]


# ------------------------------------------------------------- analytic RC
def _rc(fun, diameter_mm, fwhm_mm):
    d = np.asarray(diameter_mm, dtype=float)
    out = np.vectorize(lambda x: fun(float(x), float(fwhm_mm)), otypes=[float])(d)
    return float(out) if out.ndim == 0 else out


def _sphere_mean(d, fwhm):
    if d <= 0:
        return 0.0
    if fwhm == 0:
        return 1.0
    R, s = d / 2.0, fwhm * FWHM_TO_SIGMA

    def f(x):
        maxwell = math.sqrt(2.0 / math.pi) * x * x * math.exp(-x * x / (2 * s * s)) / s ** 3
        return maxwell * (4 * R + x) * (2 * R - x) ** 2 / (16 * R ** 3)

    hi = min(2 * R, 40 * s)
    val, _ = integrate.quad(f, 0.0, hi, points=[min(s, hi / 2), min(2 * s, hi * 0.75)], limit=200,
                            epsabs=1e-13, epsrel=1e-11)
    return val


def _sphere_centre(d, fwhm):
    if d <= 0:
        return 0.0
    if fwhm == 0:
        return 1.0
    a = d / 2.0 / (fwhm * FWHM_TO_SIGMA)
    return special.erf(a / math.sqrt(2)) - math.sqrt(2 / math.pi) * a * math.exp(-a * a / 2)


def _cyl_mean(d, fwhm):
    if d <= 0:
        return 0.0
    if fwhm == 0:
        return 1.0
    R, s = d / 2.0, fwhm * FWHM_TO_SIGMA

    def f(x):
        u = x / (2 * R)
        rayleigh = x / (s * s) * math.exp(-x * x / (2 * s * s))
        return rayleigh * (2 / math.pi) * (math.acos(min(u, 1.0)) - u * math.sqrt(max(1 - u * u, 0.0)))

    hi = min(2 * R, 40 * s)
    val, _ = integrate.quad(f, 0.0, hi, points=[min(s, hi / 2), min(2 * s, hi * 0.75)], limit=200,
                            epsabs=1e-13, epsrel=1e-11)
    return val


def _cyl_axis(d, fwhm):
    if d <= 0:
        return 0.0
    if fwhm == 0:
        return 1.0
    a = d / 2.0 / (fwhm * FWHM_TO_SIGMA)
    return -math.expm1(-a * a / 2)


def sphere_rc(diameter_mm, fwhm_mm: float, *, kind: str = "mean"):
    """Recovery coefficient of a uniform sphere under an isotropic 3-D Gaussian PSF.

    Parameters
    ----------
    diameter_mm : float or array_like
    fwhm_mm : float
        Reconstructed FWHM (see the module docstring).
    kind : {"mean", "centre"}
        Mean RC over the sphere's volume (measured mean / true concentration;
        the default), or RC at its centre (closed form).

    Examples
    --------
    >>> round(sphere_rc(1000.0, 10.0), 3)
    0.99
    >>> sphere_rc(10.0, 10.0) < sphere_rc(10.0, 10.0, kind="centre")
    True
    """
    if kind not in ("mean", "centre", "center"):
        raise ValueError(f"kind must be 'mean' or 'centre', got {kind!r}")
    return _rc(_sphere_mean if kind == "mean" else _sphere_centre, diameter_mm, fwhm_mm)


def cylinder_rc(diameter_mm, fwhm_mm: float, *, kind: str = "mean"):
    """Recovery coefficient of an infinitely long uniform cylinder (2-D Gaussian across it).

    Use the FWHM across the cylinder's axis (transaxial for the spinal canal).

    Parameters
    ----------
    diameter_mm : float or array_like
    fwhm_mm : float
    kind : {"mean", "axis"}
        Mean RC over the cross-section (the default) or RC on the axis
        (closed form ``1 - exp(-R^2 / 2 sigma^2)``).

    Examples
    --------
    >>> round(cylinder_rc(4.0, 8.0, kind="axis"), 4)
    0.1591
    """
    if kind not in ("mean", "axis"):
        raise ValueError(f"kind must be 'mean' or 'axis', got {kind!r}")
    return _rc(_cyl_mean if kind == "mean" else _cyl_axis, diameter_mm, fwhm_mm)


# ------------------------------------------------------------------- GTM
def _as_label_array(labels):
    """(array, names, spacing or None) from a LabelMap, Image or ndarray."""
    from ..regions.labelmap import LabelMap

    if isinstance(labels, LabelMap):
        return labels.image.array, dict(labels.names), labels.image.spacing_mm
    if isinstance(labels, Image):
        return np.asarray(labels.array), {}, labels.spacing_mm
    return np.asarray(labels), {}, None


def gtm_matrix(labels, spacing_mm, fwhm_mm, *, label_ids=None, truncate: float = 4.0):
    """The geometric transfer matrix of a label array.

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (nk, nj, ni)
        Label array (0 = unlabelled, taken as empty).
    spacing_mm : array_like of 3 float
        Voxel size along i, j, k.
    fwhm_mm : float or array_like of 3 float
        Reconstructed FWHM, isotropic or along i, j, k.
    label_ids : sequence of int, optional
        Regions (default: every non-zero label present, sorted).
    truncate : float
        Kernel radius in sigmas (as :func:`scipy.ndimage.gaussian_filter`).

    Returns
    -------
    W : numpy.ndarray, shape (n, n)
        ``W[i, j]``: mean value in region i of region j's blurred unit indicator.
    label_ids : numpy.ndarray of int
    n_voxels : numpy.ndarray of int
    """
    lab = np.asarray(labels)
    if lab.ndim != 3:
        raise ValueError(f"labels must be 3-D, got shape {lab.shape}")
    if label_ids is None:
        label_ids = np.unique(lab[lab != 0])
    ids = np.asarray(label_ids, dtype=np.int64)
    lut = np.full(int(max(lab.max(initial=0), ids.max(initial=0))) + 1, -1, dtype=np.int64)
    lut[ids] = np.arange(ids.size)
    idx = lut[np.clip(lab, 0, None)]
    n_vox = np.bincount(idx[idx >= 0].ravel(), minlength=ids.size)
    if np.any(n_vox == 0):
        missing = ids[n_vox == 0].tolist()
        raise ValueError(f"labels {missing} have no voxels")
    sig = sigma_voxels(fwhm_mm, spacing_mm)
    rad = np.array([int(truncate * s + 0.5) for s in sig])
    W = np.zeros((ids.size, ids.size))
    for j, lid in enumerate(ids):
        where = np.nonzero(lab == lid)
        box = tuple(slice(max(int(w.min()) - r, 0), min(int(w.max()) + r + 1, n))
                    for w, r, n in zip(where, rad, lab.shape))
        ind = (lab[box] == lid).astype(np.float64)
        blurred = ndimage.gaussian_filter(ind, sig, mode="constant", cval=0.0, truncate=truncate) \
            if np.any(sig > 0) else ind
        sub = idx[box].ravel()
        ok = sub >= 0
        W[:, j] = np.bincount(sub[ok], weights=blurred.ravel()[ok], minlength=ids.size) / n_vox
    return W, ids, n_vox


def gtm_matrix_fractional(fractions, spacing_mm, fwhm_mm, *, truncate: float = 4.0):
    """The geometric transfer matrix of fractional (partial-volume) masks.

    ``W[i, j] = sum_v f_i(v) (G * f_j)(v) / sum_v f_i(v)``: the mean, weighted
    by region i's mask, of region j's blurred mask (Rousset's GTM with the
    probabilistic masks of PETPVC). With hard 0/1 masks it is
    :func:`gtm_matrix`; with fractional ones it is not the identity even
    without blur, since a boundary voxel mixes its regions.

    Parameters
    ----------
    fractions : numpy.ndarray, shape (n, nk, nj, ni)
        Share of each voxel in each region (:func:`spectrack.regions.fractions.region_fractions`).
    spacing_mm, fwhm_mm, truncate
        As for :func:`gtm_matrix`.

    Returns
    -------
    W : numpy.ndarray, shape (n, n)
    weight : numpy.ndarray, shape (n,)
        ``sum_v f_i(v)``: each region's volume in voxels.
    """
    f = np.asarray(fractions, dtype=np.float64)
    if f.ndim != 4:
        raise ValueError(f"fractions must be (regions, k, j, i), got shape {f.shape}")
    weight = f.reshape(f.shape[0], -1).sum(axis=1)
    if np.any(weight <= 0):
        raise ValueError(f"regions {np.flatnonzero(weight <= 0).tolist()} (by position) have no volume")
    sig = sigma_voxels(fwhm_mm, spacing_mm)
    flat = f.reshape(f.shape[0], -1)
    W = np.zeros((f.shape[0], f.shape[0]))
    for j in range(f.shape[0]):
        blurred = ndimage.gaussian_filter(f[j], sig, mode="constant", cval=0.0, truncate=truncate) \
            if np.any(sig > 0) else f[j]
        W[:, j] = flat @ blurred.ravel() / weight
    return W, weight


@dataclass
class GTMResult:
    """Output of :func:`gtm_correct`; ``to_dict()`` / ``to_frame()`` give one row per region."""

    label: np.ndarray
    region: list[str]
    n_voxels: np.ndarray
    volume_ml: np.ndarray
    observed_mean: np.ndarray
    corrected_mean: np.ndarray
    rc: np.ndarray                  # diagonal of W: the region's own recovery on this grid
    matrix: np.ndarray
    activity_mbq: np.ndarray | None
    activity_mbq_corrected: np.ndarray | None
    pct_id: np.ndarray | None
    pct_id_corrected: np.ndarray | None
    condition_number: float
    method: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = {"label": self.label, "region": np.array(self.region, dtype=object), "n_voxels": self.n_voxels,
             "volume_ml": self.volume_ml, "observed_mean": self.observed_mean,
             "corrected_mean": self.corrected_mean, "rc": self.rc,
             "recovery_ratio": np.divide(self.observed_mean, self.corrected_mean,
                                         out=np.full(self.label.size, np.nan), where=self.corrected_mean != 0)}
        for name in ("activity_mbq", "activity_mbq_corrected", "pct_id", "pct_id_corrected"):
            v = getattr(self, name)
            if v is not None:
                d[name] = v
        d["method"] = np.array([self.method] * self.label.size, dtype=object)
        return d

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.to_dict())


def gtm_correct(
    image: Image,
    labels,
    fwhm_mm,
    *,
    nonnegative: bool = True,
    label_ids=None,
    mbq_per_voxel_per_unit: float | None = None,
    injected_mbq: float | None = None,
    truncate: float = 4.0,
    fractions=None,
) -> GTMResult:
    """Partial-volume-corrected mean concentration and activity of each region (GTM).

    Parameters
    ----------
    image : Image
        Emission image (any linear unit: counts, Bq/mL).
    labels : LabelMap or numpy.ndarray
        Regions on the image grid (a LabelMap on another grid is resampled
        with nearest neighbour). Unlabelled voxels are taken as empty.
    fwhm_mm : float or array_like of 3 float
        Reconstructed FWHM (see the module docstring), isotropic or along i, j, k.
    nonnegative : bool
        Solve by non-negative least squares (:func:`scipy.optimize.nnls`);
        otherwise by ordinary least squares (:func:`scipy.linalg.lstsq`).
    label_ids : sequence of int, optional
        Regions to use (default all present).
    mbq_per_voxel_per_unit : float, optional
        Multiply a voxel value by this to get MBq. Defaults to
        ``voxel volume (mL) * 1e-6`` when ``image.units`` is ``"Bq/mL"``;
        otherwise activities are not reported.
    injected_mbq : float, optional
        Also report ``pct_id`` and ``pct_id_corrected`` (percent of this, at
        the image's time reference: no decay correction is applied here).
    fractions : (label ids, numpy.ndarray), optional
        Fractional masks on the image grid
        (:func:`spectrack.regions.fractions.region_fractions`) instead of
        whole-voxel labels; ``labels`` then only names the regions.
        ``n_voxels`` is then each region's fractional volume in voxels.

    Returns
    -------
    GTMResult
    """
    from ..regions.labelmap import LabelMap

    if fractions is not None:  # (label ids, masks): partial-volume masks on the image grid
        ids, frac = np.asarray(fractions[0], dtype=np.int64), np.asarray(fractions[1])
        if frac.shape[1:] != image.array.shape:
            raise ValueError(f"fractions {frac.shape[1:]} and image {image.array.shape} are on different grids")
        names = dict(labels.names) if isinstance(labels, LabelMap) else {}
        W, n_vox = gtm_matrix_fractional(frac, image.spacing_mm, fwhm_mm, truncate=truncate)
        t_obs = frac.reshape(ids.size, -1).astype(np.float64) @ image.array.astype(np.float64).ravel() / n_vox
        masks = "fractional masks (share of each voxel in each region)"
    else:
        if isinstance(labels, LabelMap):
            labels = labels.resampled_to(image)
        lab, names, _ = _as_label_array(labels)
        if lab.shape != image.array.shape:
            raise ValueError(f"labels {lab.shape} and image {image.array.shape} are on different grids")
        W, ids, n_vox = gtm_matrix(lab, image.spacing_mm, fwhm_mm, label_ids=label_ids, truncate=truncate)
        sums = ndimage.sum_labels(image.array.astype(np.float64), lab, index=ids)
        t_obs = np.asarray(sums, dtype=float) / n_vox
        masks = "whole-voxel masks"
    notes = []
    if nonnegative:
        t_true, rnorm = optimize.nnls(W, t_obs)
        solver = "non-negative least squares (scipy.optimize.nnls)"
    else:
        t_true = lstsq(W, t_obs)[0]
        solver = "least squares (scipy.linalg.lstsq)"
    cond = float(np.linalg.cond(W))
    if cond > 1e3:
        notes.append(f"GTM is ill-conditioned (condition number {cond:.3g}): corrected values are noise-sensitive")
    k = mbq_per_voxel_per_unit
    if k is None and image.units.replace(" ", "").lower() in ("bq/ml", "bqml"):
        k = image.voxel_volume_ml * 1e-6
    act = act_c = pid = pid_c = None
    if k is not None:
        act = t_obs * n_vox * k
        act_c = t_true * n_vox * k
        if injected_mbq is not None:
            pid = 100.0 * act / injected_mbq
            pid_c = 100.0 * act_c / injected_mbq
    fw = _fwhm3(fwhm_mm)
    method = (f"GTM (Rousset 1998), Gaussian PSF FWHM (i, j, k) = ({fw[0]:g}, {fw[1]:g}, {fw[2]:g}) mm on the "
              f"image grid, {ids.size} regions, {masks}, solved by {solver}")
    return GTMResult(ids, [names.get(int(i), f"label_{int(i)}") for i in ids], n_vox,
                     n_vox * image.voxel_volume_ml, t_obs, t_true, np.diag(W).copy(), W, act, act_c, pid, pid_c,
                     cond, method, notes)
