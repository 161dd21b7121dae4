"""Build phantom studies in memory (:func:`make_phantom`) and on disk (:func:`make_study`).

The objects are in :mod:`.model`, the checked arguments in :mod:`.options`, the images and truth of each time
point in :mod:`.builder`; this module holds the public functions and the study files they write
(``removed.csv``, ``spectrack.toml``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np

from .builder import _Builder  # noqa: F401 - not public; tests/test_study_file.py reads it here
from .model import (DEFAULT_INJECTION, TC99M_HALF_LIFE_H, TRUTH_BASIS, UINT16_MAX,  # noqa: F401 - importable here
                    Phantom, PhantomTimePoint)
from .options import rotation_frames  # noqa: F401 - importable here as before the split

__all__ = ["Phantom", "PhantomTimePoint", "make_phantom", "make_study", "DEFAULT_INJECTION", "TRUTH_BASIS"]


# --------------------------------------------------------------- public API
def make_phantom(preset: str = "nhp", *, seed: int = 0, times_h=None, units: str = "counts",
                 psf_fwhm_mm: float = 0.0, noise: bool = False, motion=None, negative_slice_step: bool = False,
                 spect_shape=None, ct_refine: int = 1, subject_id: str | None = None, injection_datetime=None,
                 injected_mbq: float | None = None, sensitivity_cps_per_mbq: float | None = None,
                 frame_duration_s=None, jitter: float = 1.0, geometry: dict | None = None,
                 tracer_front_mm=None, half_life_h: float = TC99M_HALF_LIFE_H, acquisition: str = "exact",
                 camera=None, vertebrae: str = "continuous", intracranial_csf: bool = False) -> Phantom:
    """Build a phantom study in memory (no files).

    Parameters
    ----------
    preset : {'rat', 'nhp', 'human'}
        Species (see :data:`spectrack.phantom.PRESETS`).
    seed : int
        Drives the anatomy jitter, random motion, quantisation spreading,
        noise and (in :func:`make_study`) UIDs and file names.
    times_h : sequence of float, optional
        Scan start times after injection (h); the preset's by default
        (0.5, 1, 2, 4, 6, 24). Starts are rounded to whole seconds.
    units : {'counts', 'bqml'}
        Image values: integer counts (``A * S * D / in_frame_factor``), or Bq/mL
        averaged over the acquisition.
    psf_fwhm_mm : float
        Gaussian blur (FWHM, mm) of the written SPECT; 0 = none.
    noise : bool
        Poisson noise on the counts (and 10 HU Gaussian noise on the CT), from
        ``numpy.random.default_rng([seed, 0x6E6F, time_point])``.
    motion : None, 'random', sequence or dict
        Rigid motion of the subject per time point, ``(tx, ty, tz, rx, ry, rz)``
        in mm and degrees about the field-of-view centre (rotation
        ``Rz @ Ry @ Rx``), relative to time point 0. ``'random'`` draws up to 2
        voxels and 3 degrees from ``seed``.
    negative_slice_step : bool
        Store the SPECT with frames running toward the feet (negative
        ``SpacingBetweenSlices``; a negated third direction column).
    spect_shape : sequence of 3 int, optional
        SPECT voxels along x, y, z (i, j, k; the reverse of ``array.shape``);
        the field of view stays the preset's, so this sets the voxel size.
    ct_refine : int
        Odd factor (1 or 3) by which the CT grid refines the SPECT grid; every
        SPECT voxel centre is a CT voxel centre.
    subject_id : str, optional
        PatientID; ``phantom-<preset>-<seed>`` by default.
    injection_datetime : datetime or ISO str, optional
        Default 2026-03-14 21:40:00 (scans cross midnight).
    injected_mbq, sensitivity_cps_per_mbq : float, optional
        Injected activity and system sensitivity; preset defaults.
    frame_duration_s : float or sequence, optional
        Acquisition wall time per scan; preset default (900 s for the first
        two, 1800 s after).
    jitter : float
        Scale of the seed-driven anatomy jitter (0 = nominal anatomy).
    geometry : dict, optional
        Keys of the geometry dict to override (see
        :func:`spectrack.phantom.anatomy.make_geometry`).
    tracer_front_mm : float or sequence, optional
        Known tracer front: the brain and canal activity of the model is put
        uniformly in the canal from the injection level up to this arc length
        (mm) rostral of it, and nothing in the canal or brain beyond.
    half_life_h : float
        Tc-99m half-life used for decay (6.0067 h, DDEP).
    acquisition : {'exact', 'realistic'}
        ``'exact'``: the ideal image (optionally a Gaussian blur and Poisson
        noise per voxel): exact answers for the loaders and the arithmetic.
        ``'realistic'``: the activity drawn on a finer grid, projected with
        attenuation and a depth-dependent collimator response, Poisson noise
        on the projections, OSEM on the SPECT grid
        (:mod:`spectrack.phantom.acquisition`); the truth is the
        compartments' activity. For testing methods without an inverse crime.
    camera : Camera or dict, optional
        Settings of the realistic mode (:class:`spectrack.phantom.acquisition.Camera`).
    vertebrae : {'continuous', 'discrete'}
        ``'continuous'`` (default): one continuous bony arch and vertebral
        body. ``'discrete'``: separate vertebrae with the species' formula,
        intervertebral discs of soft tissue and arches open at each disc, the
        level boundaries on the L/S1, T/L1 and C7/T1 discs
        (:func:`spectrack.phantom.anatomy.discrete_spine`); the true vertebra
        and disc positions (body z and arc length) are in
        ``geometry["vertebrae"]`` (also in ``truth["geometry"]``). Both modes
        of acquisition draw it.
    intracranial_csf : bool
        Default False: ``brain`` holds the intracranial CSF (one compartment,
        brain HU). True: two lateral ventricles and a cisterna magna at the
        cranial end of the canal are drawn with CSF HU as region
        ``csf_intracranial`` (:func:`spectrack.phantom.anatomy.intracranial_csf_spaces`,
        ellipsoids in ``geometry["intracranial_csf"]``), with their own
        kinetic compartment fed by rostral CSF flow from the cervical canal and
        draining to the brain, blood and lymph nodes
        (``Preset.kinetics_intracranial_csf``); truth per time point as for
        every region, and the ``csf_space`` group. No random draw is used, so
        the rest of the phantom is the one without it.

    Returns
    -------
    Phantom
    """
    b = _Builder(preset, seed=seed, times_h=times_h, units=units, psf_fwhm_mm=psf_fwhm_mm, noise=noise,
                 motion=motion, negative_slice_step=negative_slice_step, spect_shape=spect_shape,
                 ct_refine=ct_refine, subject_id=subject_id, injection_datetime=injection_datetime,
                 injected_mbq=injected_mbq, sensitivity_cps_per_mbq=sensitivity_cps_per_mbq,
                 frame_duration_s=frame_duration_s, jitter=jitter, geometry=geometry,
                 tracer_front_mm=tracer_front_mm, half_life_h=half_life_h, acquisition=acquisition, camera=camera,
                 vertebrae=vertebrae, intracranial_csf=intracranial_csf)
    truth = b.study_truth()
    tps = []
    for n in range(len(b.times_h)):
        tp = b.timepoint(n)
        truth["timepoints"].append(tp.truth)
        tps.append(tp)
    return Phantom(b.pre.name, b.geometry, tps, truth, tps[0].labels_ct, dict(b.args))


#: Top-level entries :func:`make_study` writes (``spectrack phantom`` refuses to replace them unless it wrote them).
PHANTOM_OUTPUTS = ("dicom", "nifti", "labels.nii.gz", "labels.tsv", "truth", "truth.json", "spectrack.toml",
                   "removed.csv")


def make_study(out_dir, preset: str = "nhp", *, seed: int = 0, times_h=None, units: str = "counts",
               formats=("dicom", "nifti"), psf_fwhm_mm: float = 0.0, noise: bool = False, motion=None,
               negative_slice_step: bool = False, spect_shape=None, ct_refine: int = 1,
               subject_id: str | None = None, injection_datetime=None, injected_mbq: float | None = None,
               sensitivity_cps_per_mbq: float | None = None, frame_duration_s=None, jitter: float = 1.0,
               geometry: dict | None = None, tracer_front_mm=None,
               half_life_h: float = TC99M_HALF_LIFE_H, acquisition: str = "exact", camera=None,
               study_file: bool = False, vertebrae: str = "continuous", intracranial_csf: bool = False) -> dict:
    """Write a phantom study (DICOM and/or NIfTI, labels, truth) and return its truth.

    Parameters are those of :func:`make_phantom`, plus

    out_dir : path-like
        Folder to write (created; files of an earlier run are overwritten).
    formats : sequence of {'dicom', 'nifti'}
        What to write.
    study_file : bool
        Also write ``spectrack.toml`` (see :func:`study_file_text`), so that
        ``spectrack quantify OUT`` needs no option.

    Notes
    -----
    Files written:

    ``dicom/``
        One flat folder, random hex file names: per time point a CT series
        (one file per slice) and one NM multi-frame reconstructed SPECT.
    ``nifti/``
        ``tp{N}_spect.nii.gz`` + ``.json`` (PET-BIDS keys), ``tp{N}_ct.nii.gz``
        + ``.json``, ``scans.tsv``, ``labels.nii.gz`` + ``labels.tsv``.
    ``labels.nii.gz`` + ``labels.tsv``
        Time point 0 labels on its CT grid.
    ``truth/tp{N}_labels.nii.gz`` + ``.tsv``
        Each time point's labels on its own SPECT grid (moved anatomy).
    ``truth.json``
        Everything exact (see :data:`TRUTH_BASIS`).
    ``spectrack.toml``
        With ``study_file``: the images to read and what they do not say
        (labels, calibration and sensitivity, species, PSF).

    Returns
    -------
    dict
        The content of ``truth.json``.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     truth = make_study(d, "rat", times_h=[1.0], spect_shape=(24, 20, 66), formats=("nifti",))
    >>> round(truth["timepoints"][0]["total_pct_id"], 3)
    100.0
    """
    from ..io_utils import atomic_write_text
    from ..regions.formats.nifti import write_label_map
    from .dicom_writer import DicomNames, write_ct_series, write_nm_spect
    from .nifti_writer import write_nifti_timepoint, write_scans_tsv

    formats = tuple(formats)
    for f in formats:
        if f not in ("dicom", "nifti"):
            raise ValueError(f"unknown format {f!r}; use 'dicom' and/or 'nifti'")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    b = _Builder(preset, seed=seed, times_h=times_h, units=units, psf_fwhm_mm=psf_fwhm_mm, noise=noise,
                 motion=motion, negative_slice_step=negative_slice_step, spect_shape=spect_shape,
                 ct_refine=ct_refine, subject_id=subject_id, injection_datetime=injection_datetime,
                 injected_mbq=injected_mbq, sensitivity_cps_per_mbq=sensitivity_cps_per_mbq,
                 frame_duration_s=frame_duration_s, jitter=jitter, geometry=geometry,
                 tracer_front_mm=tracer_front_mm, half_life_h=half_life_h, acquisition=acquisition, camera=camera,
                 vertebrae=vertebrae, intracranial_csf=intracranial_csf)
    truth = b.study_truth()
    names = DicomNames(b) if "dicom" in formats else None
    scans = []
    files: dict = {"labels": "labels.nii.gz", "labels_names": "labels.tsv"}
    for n in range(len(b.times_h)):
        tp = b.timepoint(n)
        tfiles = {}
        if "dicom" in formats:
            tfiles["dicom_ct"] = write_ct_series(out / "dicom", tp, b, names)
            tfiles["dicom_spect"] = write_nm_spect(out / "dicom", tp, b, names)
        if "nifti" in formats:
            tfiles.update(write_nifti_timepoint(out / "nifti", tp, b))
            scans.append((f"tp{n}_spect.nii.gz", tp.acquisition_start))
            scans.append((f"tp{n}_ct.nii.gz", tp.acquisition_start + dt.timedelta(seconds=tp.duration_s + 60)))
        tl = out / "truth" / f"tp{n}_labels.nii.gz"
        write_label_map(tp.labels_spect, tl)
        tfiles["truth_labels_spect"] = f"truth/tp{n}_labels.nii.gz"
        if b.psf > 0 or b.noise:
            from .nifti_writer import write_image

            write_image(out / "truth" / f"tp{n}_spect_ideal.nii.gz", tp.spect_ideal, np.float32)
            tfiles["truth_spect_ideal"] = f"truth/tp{n}_spect_ideal.nii.gz"
        tp.truth["files"] = tfiles
        truth["timepoints"].append(tp.truth)
        if n == 0:
            write_label_map(tp.labels_ct, out / "labels.nii.gz")
            if "nifti" in formats:
                write_label_map(tp.labels_ct, out / "nifti" / "labels.nii.gz")
        del tp
    if "nifti" in formats:
        write_scans_tsv(out / "nifti" / "scans.tsv", scans)
        files["nifti"] = "nifti/"
    if "dicom" in formats:
        files["dicom"] = "dicom/"
        files["dicom_files"] = names.count
    voids = _collected_urine(b, truth)
    if voids:
        atomic_write_text(out / "removed.csv", voids)
        files["removed"] = "removed.csv"
    if study_file:
        atomic_write_text(out / "spectrack.toml", study_file_text(b, formats, removed=bool(voids)))
        files["study_file"] = "spectrack.toml"
    truth["files"] = files
    atomic_write_text(out / "truth.json", json.dumps(truth, indent=1, allow_nan=False) + "\n")
    return truth


def _collected_urine(b: "_Builder", truth: dict) -> str:
    """``removed.csv`` of a phantom: the urine of each bladder void up to the last scan, as if collected.

    Activities are physical (MBq when collected and measured, ``measured_h`` = ``time_h``), so the file reads
    like a metabolic cage's record; empty when no void precedes the last scan.
    """
    from .kinetics_model import voided_pct_id

    last = max(b.times_h) if len(b.times_h) else 0.0
    lam = math.log(2) / float(truth["half_life_h"])
    rows = [(t, p) for t, p in voided_pct_id(b.kinetics) if t <= last]
    if not rows:
        return ""
    lines = ["kind,time_h,activity_mbq,measured_h,note"]
    for t, p in rows:
        a = p / 100.0 * float(truth["injected_mbq"]) * math.exp(-lam * t)
        lines.append(f"urine,{t!r},{a!r},{t!r},bladder void (phantom truth: {p:.6g} %ID decay-corrected)")
    return "\n".join(lines) + "\n"


def study_file_text(b: "_Builder", formats, *, removed: bool = False) -> str:
    """The ``spectrack.toml`` of a phantom study: what its images do not say.

    Its keys are settings-file keys (``spectrack quantify --help``) plus
    ``images``: the DICOM export when written (``nifti/`` holds the same scans),
    else ``nifti``.
    """
    images = "dicom" if "dicom" in formats else "nifti"
    other = " (nifti/ holds the same scans as NIfTI)" if images == "dicom" and "nifti" in formats else ""
    lines = [
        "# spectrack study file: what the images of this study do not say. spectrack quantify, batch and",
        "# run_study read it when given this folder; options on the command line override it.",
        "# Keys are those of a settings file (spectrack quantify --help).",
        f'images = "{images}"' + f"  # the images to read{other}",
        'labels = "labels.nii.gz"  # region names in labels.tsv',
    ]
    if b.units == "counts":
        lines += ['calibration = "sensitivity"',
                  f"sensitivity = {b.sensitivity!r}  # cps/MBq: the system volume sensitivity of the counts"]
    else:
        lines += ['calibration = "image"  # the images hold Bq/mL']
    lines.append(f'species = "{b.pre.name}"')
    if b.psf > 0:
        lines.append(f"psf_fwhm_mm = {b.psf!r}  # reconstructed resolution, for --pvc")
    if removed:
        lines.append('removed = "removed.csv"  # urine collected at each bladder void: closes the mass balance')
    if any(m is not None for m in b.motion):
        lines.append("register = true  # the subject moves between scans; the labels are on time point 0")
    return "\n".join(lines) + "\n"
