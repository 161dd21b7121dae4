"""The reconstructed resolution recovery correction needs: measured, stored, checked against the study.

Recovery correction (GTM) is only as good as the PSF it is given, and the
resolution OSEM leaves is neither the camera's nominal one nor exactly
Gaussian: a user typing the nominal 12 mm over-corrects a thin canal by
+80 % or more and pins the remainder at zero. So:

* :func:`measure_resolution` fits the FWHM per axis on an image of a point
  or line source reconstructed like the study
  (:func:`measure_fwhm`), and
  :func:`write_resolution_file` stores it with the reconstruction it belongs
  to (``spectrack resolution``); ``quantify --pvc --resolution FILE`` reads
  it back (:func:`read_resolution_file`).
* :func:`image_fwhm_mm` asks the study itself: the effective isotropic
  Gaussian FWHM with which the region model (each region uniform at its GTM
  value, blurred) reproduces the emission image best, in the least-squares
  sense over the field of view. The region edges (body outline, bladder,
  canal) decide it. A given FWHM far from it is a warning.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
from scipy import ndimage, optimize

from ..errors import InputError
from ..geometry import Image
from .boundary import _grown, label_boxes
from .recovery import FWHM_TO_SIGMA

__all__ = ["measure_fwhm", "measure_resolution", "write_resolution_file", "read_resolution_file", "image_fwhm_mm",
           "RESOLUTION_FORMAT", "FWHM_MISMATCH"]

RESOLUTION_FORMAT = "spectrack-resolution"
#: A given FWHM more than this factor away from the study's own estimate is a warning.
FWHM_MISMATCH = 1.3
_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def _gauss(x, b, mu, s, c):
    return b * np.exp(-0.5 * ((x - mu) / s) ** 2) + c


def measure_fwhm(image: Image, *, source: str = "point", line_axis: str | None = None) -> dict:
    """Reconstructed FWHM (mm) from an image of a point or line source.

    For each image axis the image is summed over the other two axes and a
    Gaussian plus a constant is fitted (:func:`scipy.optimize.curve_fit`) to
    that profile; for a separable Gaussian PSF the profile's sigma is the
    PSF's sigma along that axis. A line source must run along one image axis
    (``line_axis`` = ``"i"``, ``"j"`` or ``"k"``); its FWHM along that axis is
    NaN. Values are those of the image as sampled (no correction for voxel
    size; for a voxel-integrated image FWHM^2 includes about
    ``spacing^2 * 8 ln 2 / 12``).

    Returns
    -------
    dict
        ``fwhm_mm`` (i, j, k), ``centre_mm`` (i, j, k index positions in mm
        from voxel 0), ``r_squared`` per axis, ``method``.
    """
    from scipy.optimize import OptimizeWarning, curve_fit
    import warnings

    arr = np.asarray(image.array, dtype=float)
    if source not in ("point", "line"):
        raise ValueError(f"source must be 'point' or 'line', got {source!r}")
    skip = None
    if source == "line":
        if line_axis not in ("i", "j", "k"):
            raise ValueError("a line source needs line_axis = 'i', 'j' or 'k' (the image axis it runs along)")
        skip = "ijk".index(line_axis)
    fwhm, centre, r2 = [math.nan] * 3, [math.nan] * 3, [math.nan] * 3
    for a in range(3):            # a: i, j, k
        if a == skip:
            continue
        ax = 2 - a                # array axis
        prof = arr.sum(axis=tuple(x for x in range(3) if x != ax))
        x = np.arange(prof.size) * image.spacing_mm[a]
        c0 = float(np.min(prof))
        w = np.clip(prof - c0, 0, None)
        mu0 = float(x[int(np.argmax(prof))])
        s0 = math.sqrt(max(float(np.sum(w * (x - mu0) ** 2) / max(w.sum(), 1e-300)), image.spacing_mm[a] ** 2))
        s0 = min(s0, x[-1] / 4 if x[-1] > 0 else s0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            popt, _ = curve_fit(_gauss, x, prof, p0=[float(prof.max() - c0), mu0, max(s0, 1e-3), c0],
                                bounds=([0, x[0], 1e-6, -np.inf], [np.inf, x[-1], np.inf, np.inf]),
                                method="trf", xtol=1e-12, ftol=1e-12)
        res = prof - _gauss(x, *popt)
        ss = float(np.sum((prof - prof.mean()) ** 2))
        fwhm[a] = abs(popt[2]) / FWHM_TO_SIGMA
        centre[a] = popt[1]
        r2[a] = 1 - float(np.dot(res, res)) / ss if ss > 0 else math.nan
    return {"fwhm_mm": tuple(float(v) for v in fwhm), "centre_mm": tuple(float(v) for v in centre),
            "r_squared": tuple(float(v) for v in r2),
            "method": f"Gaussian + constant fitted to the summed profile along each axis ({source} source"
                      + (f" along {line_axis})" if skip is not None else ")")}


def measure_resolution(image: Image, *, source: str = "point", line_axis: str | None = None) -> dict:
    """FWHM per image axis (mm) of a reconstructed point or line source, and how it was measured.

    Returns
    -------
    dict
        ``fwhm_mm`` (i, j, k; NaN along a line source), ``r_squared``,
        ``centre_mm``, ``method``.

    Raises
    ------
    InputError
        If the image holds no positive value or a profile's Gaussian fit is
        poor (R^2 < 0.9: not a point or line source).
    """
    arr = np.asarray(image.array, float)
    if not np.any(arr > 0):
        raise InputError("the source image holds no positive value: give a reconstructed point or line source")
    try:
        r = measure_fwhm(image, source=source, line_axis=line_axis)
    except (RuntimeError, ValueError) as e:
        raise InputError(f"cannot fit a Gaussian to the source image ({e}): give a reconstructed point or line "
                         "source with some background around it") from None
    for axis, r2 in zip("ijk", r["r_squared"]):
        if np.isfinite(r2) and r2 < 0.9:
            raise InputError(f"the profile along {axis} is not Gaussian-like (R^2 {r2:.2f}): the image does not "
                             f"look like a single {source} source")
    return r


def write_resolution_file(path, measured: dict, *, source_path=None, reconstruction: dict | None = None) -> Path:
    """Write a resolution calibration file (JSON, atomically).

    Parameters
    ----------
    path : path-like
    measured : dict
        From :func:`measure_resolution`.
    source_path : path-like, optional
        The source image (its SHA-256 is recorded).
    reconstruction : dict, optional
        What the image's headers say about the reconstruction (method,
        iterations, subsets, filter, voxel size): the study must be
        reconstructed the same way for the FWHM to apply.
    """
    from .._version import __version__
    from ..io_utils import atomic_write_text
    from ..provenance import sha256_file

    data = {
        "format": RESOLUTION_FORMAT,
        "format_version": 1,
        "fwhm_mm": [None if not np.isfinite(v) else float(v) for v in measured["fwhm_mm"]],
        "axes": "image axes i, j, k (columns, rows, slices)",
        "r_squared": [None if not np.isfinite(v) else float(v) for v in measured["r_squared"]],
        "method": measured["method"],
        "reconstruction": dict(reconstruction or {}),
        "source": None if source_path is None else {"path": str(Path(source_path).resolve()),
                                                    "sha256": sha256_file(source_path)
                                                    if Path(source_path).is_file() else None},
        "spectrack_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    path = Path(path)
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    return path


def read_resolution_file(path) -> dict:
    """Read a resolution file: the dict written by :func:`write_resolution_file`, ``fwhm_mm`` as 3 floats.

    An axis without a value (a line source's own axis) takes the mean of
    the others, and ``fwhm_note`` says so.

    Raises
    ------
    InputError
        If the file is missing, not JSON, not a resolution file, or its FWHM
        values are not positive and finite.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"cannot read resolution file {path}: {e.strerror}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"resolution file {path} is not JSON ({e}): write it with 'spectrack resolution'") from None
    if not isinstance(data, dict) or data.get("format") != RESOLUTION_FORMAT:
        raise InputError(f"{path} is not a resolution file (no \"format\": \"{RESOLUTION_FORMAT}\"): write it with "
                         "'spectrack resolution'")
    fw = data.get("fwhm_mm")
    try:
        vals = [float("nan") if v is None else float(v) for v in fw]
    except (TypeError, ValueError):
        vals = []
    if len(vals) != 3:
        raise InputError(f"resolution file {path}: fwhm_mm must hold 3 values (i, j, k), got {fw!r}")
    given = [v for v in vals if np.isfinite(v)]
    if not given or any(v <= 0 or v > 200 for v in given):
        raise InputError(f"resolution file {path}: fwhm_mm {fw!r} must be positive and finite (mm, at most 200)")
    note = None
    if len(given) < 3:
        fill = float(np.mean(given))
        note = f"axes without a measured FWHM (line source) take the mean of the others, {fill:.3g} mm"
        vals = [v if np.isfinite(v) else fill for v in vals]
    out = dict(data)
    out["fwhm_mm"] = vals
    out["fwhm_note"] = note
    out["path"] = str(path)
    return out


class _RegionModel:
    """The squared residual of the image against its regions, each uniform, blurred and fitted (non-negative
    least squares), as a function of the FWHM (:meth:`residual`).

    Each region's indicator is blurred in its bounding box grown by the Gaussian's radius (that of
    :func:`scipy.ndimage.gaussian_filter` with ``truncate=3``): the blurred indicator is exactly zero beyond,
    and inside the box every output voxel sums the same taps, in the same order, as on the whole grid (the
    taps that leave the box read zeros either way, ``mode="constant"``), so the matrix, the fit and the
    residual are those of the whole-grid computation to the bit at a fraction of its cost.
    """

    def __init__(self, image: np.ndarray, lab: np.ndarray, ids, spacing_mm, fov: np.ndarray):
        self.lab, self.ids = lab, list(ids)
        self.spacing_mm = np.asarray(spacing_mm, float)[::-1]  # array axes k, j, i
        self.values = image[fov]
        self.row = np.full(lab.shape, -1, np.intp)  # each field-of-view voxel's row of the matrix
        self.row[fov] = np.arange(self.values.size)
        boxes = label_boxes(lab, self.ids)
        self.boxes = [boxes[i] for i in self.ids]

    def residual(self, fwhm_mm: float) -> float:
        sigma = fwhm_mm * _FWHM_TO_SIGMA / self.spacing_mm
        radius = [int(3.0 * float(s) + 0.5) for s in sigma]  # gaussian_filter's radius for truncate=3
        A = np.zeros((self.values.size, len(self.ids)))
        for col, (i, box) in enumerate(zip(self.ids, self.boxes)):
            grown = _grown(box, radius, self.lab.shape)
            blurred = ndimage.gaussian_filter((self.lab[grown] == i).astype(np.float64), sigma, mode="constant",
                                              truncate=3.0)
            rows = self.row[grown]
            inside = rows >= 0
            A[rows[inside], col] = blurred[inside]
        t, _ = optimize.nnls(A, self.values)
        res = self.values - A @ t
        return float(res @ res)


def image_fwhm_mm(image: Image, labels, *, fwhm_range_mm=(2.0, 30.0)) -> dict:
    """The isotropic Gaussian FWHM with which the regions reproduce the image best.

    The model is each region uniform (non-negative activities fitted by
    least squares, as GTM does in voxel space) blurred by a Gaussian; the
    FWHM minimising the squared residual over the field of view is found by
    a bounded scalar search (:func:`scipy.optimize.minimize_scalar`). It is
    an effective resolution at the regions' edges, not a measurement of the
    system PSF: use it to check a given FWHM, not to replace a measured one.

    Parameters
    ----------
    image : Image
        Emission image.
    labels : LabelMap
        Regions (resampled onto the image); the background should be a region
        too (``remainder``) for the fit to see the body outline.
    fwhm_range_mm : (float, float)
        Search interval.

    Returns
    -------
    dict
        ``fwhm_mm`` (float), ``method``.
    """
    from ..regions.labelmap import LabelMap

    lab = labels.resampled_to(image).image.array if isinstance(labels, LabelMap) else np.asarray(labels)
    arr = np.asarray(image.array, dtype=np.float64)
    ids = [int(v) for v in np.unique(lab) if v != 0]
    if not ids or not np.any(arr > 0):
        return {"fwhm_mm": float("nan"), "method": "no regions or no activity: not estimated"}
    # fit where the activity or the regions are, with a margin (the rest of the field of view is empty)
    fov = ndimage.binary_dilation((lab > 0) | (arr > 0.01 * arr.max()), iterations=3)
    lo, hi = (float(v) for v in fwhm_range_mm)
    model = _RegionModel(arr, lab, ids, image.spacing_mm, fov)
    r = optimize.minimize_scalar(model.residual, bounds=(lo, hi), method="bounded", options={"xatol": 0.1})
    return {"fwhm_mm": float(r.x),
            "method": ("isotropic Gaussian FWHM minimising the squared difference between the image and its "
                       f"regions, each uniform at its non-negative least-squares activity and blurred "
                       f"(bounded search {lo:g}-{hi:g} mm)")}


_RECON_TAGS = ("ReconstructionMethod", "ConvolutionKernel", "ReconstructionDiameter", "Manufacturer",
               "ManufacturerModelName", "SoftwareVersions", "CorrectedImage", "SeriesDescription")
_RECON_KEYS = ("ReconMethodName", "ReconMethodParameterLabels", "ReconMethodParameterUnits",
               "ReconMethodParameterValues", "ReconFilterType", "ReconFilterSize", "AttenuationCorrection",
               "Manufacturer", "ManufacturersModelName", "SoftwareVersions")


def _reconstruction_of(path: Path, image: Image) -> dict:
    """What the source image's headers say about its reconstruction (DICOM tags or PET-BIDS sidecar keys)."""
    rec: dict = {"voxel_size_mm": [round(float(v), 4) for v in image.spacing_mm],
                 "grid_ijk": [int(v) for v in image.shape_ijk]}
    files = sorted(q for q in path.rglob("*") if q.is_file()) if path.is_dir() else [path]
    for f in files:
        if f.name.endswith((".nii", ".nii.gz")):
            side = f.with_name(f.name[: -7 if f.name.endswith(".nii.gz") else -4] + ".json")
            if side.exists():
                try:
                    data = json.loads(side.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    data = {}
                rec.update({k: data[k] for k in _RECON_KEYS if isinstance(data, dict) and k in data})
            break
        try:
            from ..load.dicom import dcmread_lenient

            ds = dcmread_lenient(f, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not DICOM: look at the next file
            continue
        if str(ds.get("Modality", "")) in ("NM", "PT"):
            for k in _RECON_TAGS:
                v = ds.get(k)
                if v not in (None, ""):
                    rec[k] = str(v) if not isinstance(v, (list, tuple)) else [str(x) for x in v]
            break
    return rec


def resolution_from_image(path, out, *, source: str = "point", line_axis: str | None = None) -> dict:
    """Measure the FWHM on a reconstructed source image and write the resolution file ``out``.

    Parameters
    ----------
    path : path-like
        The source's reconstruction: a DICOM folder or file (NM or PET) or a
        NIfTI file (with or without a sidecar).
    out : path-like
        The resolution file to write (JSON).
    source : {'point', 'line'}
    line_axis : {'i', 'j', 'k'}, optional
        For a line source: the image axis it runs along.

    Returns
    -------
    dict
        The measurement (:func:`measure_resolution`) plus ``reconstruction``
        and ``path``.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist: give the reconstructed source image (DICOM or NIfTI)")
    if source not in ("point", "line"):
        raise InputError(f"source must be 'point' or 'line', got {source!r}")
    if source == "line" and line_axis not in ("i", "j", "k"):
        raise InputError("a line source needs --line-axis i, j or k (the image axis it runs along)")
    image = None
    if path.is_file() and path.name.endswith((".nii", ".nii.gz")):
        from ..geometry import from_nifti_affine
        from ..load.nifti import _read_voxels
        from ..regions.formats.nifti import read_label_image  # noqa: F401 - same header checks as every NIfTI reader

        arr, aff = _read_voxels(path, [])
        image = from_nifti_affine(arr, aff)
    else:
        from ..load.dicom import load_dicom_folder

        series, _ = load_dicom_folder(path if path.is_dir() else path.parent)
        emis = [s for s in series if s.modality in ("NM", "PT")]
        if path.is_file():
            emis = [s for s in emis if str(path) in {str(p) for p in s.files}] or emis
        if not emis:
            raise InputError(f"no NM or PET reconstruction in {path}: give the source's reconstructed image")
        if len(emis) > 1:
            raise InputError(f"{path} holds {len(emis)} reconstructions: give the folder or file of one")
        image = emis[0].image
    measured = measure_resolution(image, source=source, line_axis=line_axis)
    rec = _reconstruction_of(path, image)
    write_resolution_file(out, measured, source_path=path if path.is_file() else None, reconstruction=rec)
    return dict(measured, reconstruction=rec, path=str(out))
