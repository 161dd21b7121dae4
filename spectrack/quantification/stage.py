"""The quantify stage of a study run: calibration and %ID, recovery correction, intervals, mass balance.

:func:`quantify_study` is what :func:`spectrack.pipeline.run_study` does between the registration and the
kinetics: :func:`spectrack.quantification.quantify` (calibration to MBq, %ID per region and time point) with
the settings of the run, then, when asked, the recovery correction (GTM) and the Monte Carlo intervals, then the
mass, %ID/g and ug/g columns and the mass balance. It returns a :class:`StudyQuantities`.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..load.model import Study
from ..settings import Settings
from .core import QuantResult

__all__ = ["StudyQuantities", "quantify_study"]


@dataclass
class StudyQuantities:
    """What :func:`quantify_study` computed."""

    #: the region table (:data:`spectrack.quantification.TABLE_COLUMNS`, with the dose, %ID/g, recovery and
    #: interval columns asked for)
    table: object  # pandas.DataFrame
    #: dose parameters, calibrations, the labels on each emission grid and the warnings (which the later
    #: stages extend)
    details: QuantResult
    #: the mass balance (:func:`spectrack.quantification.balance.mass_balance_table`)
    balance: object  # pandas.DataFrame
    #: the Monte Carlo draws of each curve (for the kinetics' intervals), None without intervals
    curve_draws: object | None = None
    #: how the recovery correction and the intervals were computed (``study.json`` ``kinetics_method``)
    notes: list[str] = field(default_factory=list)
    #: files read here (a resolution file, a removed-activity file), for the provenance record
    inputs: list[Path] = field(default_factory=list)


def quantify_study(study: Study, labels, settings: Settings, *, transforms: list | None = None) -> StudyQuantities:
    """%ID per region and time point with everything the settings ask for.

    Parameters
    ----------
    study : Study
        The loaded study.
    labels : LabelMap or list of LabelMap
        The regions (:attr:`spectrack.regions.resolve.StudyRegions.label_map`).
    settings : Settings
        The run's settings: calibration and dose values, ``species`` and ``group`` columns, ``pvc`` (recovery
        correction), ``uncertainty_draws`` (intervals), ``density_g_per_ml``, ``dose_mg`` and ``removed``.
    transforms : list of SimpleITK.Transform, optional
        Per time point, the transform carrying the labels onto its emission grid
        (:attr:`spectrack.align.study.Alignment.transforms`).

    Returns
    -------
    StudyQuantities
    """
    from .core import quantify

    table, details = quantify(
        study, labels,
        calibration=settings.calibration,
        sensitivity_cps_per_mbq=settings.sensitivity_cps_per_mbq,
        fov_timepoint=settings.fov_timepoint,
        injected_mbq=settings.injected_mbq,
        injection_time=settings.datetime("injection_time"),
        injected_measured_at=settings.datetime("injected_measured_at"),
        residual_mbq=settings.residual_mbq,
        residual_time=settings.datetime("residual_time"),
        half_life_h=settings.half_life_h,
        radionuclide=settings.radionuclide,
        duration_s=settings.duration_s,
        transforms=transforms,
        label_resampling=settings.label_resampling,
        return_details=True,
    )
    if settings.species:
        table.insert(1, "species", settings.species)
    if settings.group:
        table.insert(2 if settings.species else 1, "group", settings.group)

    images = [tp.emission.image for tp in study.timepoints]
    kin_notes: list[str] = []
    inputs: list[Path] = []
    if settings.pvc:
        table = _recovery_correction(table, images, details, settings, kin_notes, inputs,
                                     source_labels=labels, transforms=transforms)
    pvc_fwhm = table.attrs.pop("pvc_fwhm", None)
    curve_draws = None
    if settings.uncertainty_draws > 0:
        table, curve_draws = _add_intervals(table, study, details, settings, kin_notes, pvc_fwhm=pvc_fwhm)
    table, balance = _dose_bookkeeping(table, details, settings, inputs)
    return StudyQuantities(table=table, details=details, balance=balance, curve_draws=curve_draws, notes=kin_notes,
                           inputs=inputs)


def _add_intervals(table, study, details, settings, notes, pvc_fwhm=None):
    """95 % Monte Carlo intervals on %ID and, with ``--pvc``, on the corrected %ID (EANM terms)."""
    import numpy as np

    from .interval_terms import boundary_sd_mm
    from .intervals import add_pct_id_intervals

    counts_per_mbq = []
    counting = True
    for tp, cal in zip(study.timepoints, details.calibrations):
        units = tp.emission.get("units") or "counts"
        if units == "counts":
            counts_per_mbq.append(1.0 / cal.mbq_per_voxel_per_unit)
        elif units == "cps" and cal.duration_s is not None:
            counts_per_mbq.append(cal.duration_s.value / cal.mbq_per_voxel_per_unit)
        elif settings.sensitivity_cps_per_mbq and cal.duration_s is not None:
            counts_per_mbq.append(settings.sensitivity_cps_per_mbq * cal.duration_s.value / cal.in_frame_factor)
        else:
            counts_per_mbq.append(np.inf)
            counting = False
    if not counting:
        notes.append("counting noise not included in the intervals: Bq/mL images without a sensitivity "
                     "(give --sensitivity to include it)")
        counts_per_mbq = [1e15 if not np.isfinite(c) else c for c in counts_per_mbq]
    warn = details.warnings
    if settings.noise_factor == 1.0 and counting:
        warn.append("intervals: the counting noise of a region's sum is taken as Poisson (--noise-factor 1, "
                    "assumed); iterative reconstructions with attenuation correction are noisier (the realistic "
                    "phantom's OSEM gives 7-46x the Poisson variance): measure it on replicate reconstructions")
    seg = settings.segmentation_sd_mm
    if seg is None:
        seg = boundary_sd_mm(details.labels_per_timepoint[0])
        notes.append(f"region boundary position SD {seg:.3g} mm (assumed: the label voxel / sqrt(12); "
                     "give --segmentation-sd-mm)")
    fw_sd = 0.0
    if pvc_fwhm is not None:
        fw, how = pvc_fwhm
        fw_sd = settings.psf_fwhm_sd_mm
        if fw_sd is None:
            rel = 0.2 if "preset" in how else 0.1
            fw_sd = rel * float(np.mean(fw))
            warn.append(f"intervals: PSF FWHM SD {fw_sd:.3g} mm assumed ({100 * rel:g} % of the FWHM, "
                        f"{how}); give --psf-fwhm-sd-mm")
    return add_pct_id_intervals(table, [tp.emission.image for tp in study.timepoints], details.labels_per_timepoint,
                                counts_per_mbq=counts_per_mbq, calibration_cv=settings.calibration_cv,
                                noise_factor=settings.noise_factor, segmentation_sd_mm=seg,
                                fwhm_mm=None if pvc_fwhm is None else pvc_fwhm[0], fwhm_sd_mm=fw_sd,
                                n_draws=settings.uncertainty_draws, seed=settings.seed, return_draws=True)


def _dose_bookkeeping(table, details, settings: Settings, inputs: list):
    """Mass, %ID/g and ug/g columns (with ``--density`` or ``--dose-mg``) and the mass balance.

    Returns the table and the mass balance (:func:`spectrack.quantification.balance.mass_balance_table`);
    its warnings, and the values assumed, go into ``details.warnings``.
    """
    from .balance import (add_dose_columns, mass_balance_table, parse_densities, read_removed,
                                         removed_pct_id)

    warn = details.warnings
    if settings.density_g_per_ml is not None or settings.dose_mg is not None:
        table, notes = add_dose_columns(table, densities=parse_densities(settings.density_g_per_ml),
                                        dose_mg=settings.dose_mg)
        warn.extend(notes)
    removed, removed_json = [], None
    params = details.params
    if settings.removed is not None:
        path = Path(settings.removed).resolve()
        inj_time = params.injection_time.value if isinstance(params.injection_time.value, dt.datetime) else None
        rows, notes = read_removed(path, injection_time=inj_time)
        warn.extend(notes)
        inputs.append(path)
        removed = removed_pct_id(rows, injected_mbq=params.injected_mbq.value, half_life_h=params.half_life_h.value)
        removed_json = {"path": str(path), "rows": removed,
                        "total_pct_id": float(sum(r["pct_id"] for r in removed))}
    balance = mass_balance_table(table, removed, threshold_pct_id=settings.mass_balance_threshold_pct_id)
    balance.attrs["removed"] = removed_json
    if any(c.method == "fov" for c in details.calibrations):
        warn.append("calibration by field of view: the field of view holds 100 %ID by definition at time point "
                    f"{settings.fov_timepoint}, so the mass balance there checks nothing")
    warn.extend(balance.attrs["warnings"])
    return table, balance


def _pvc_fwhm(settings: Settings, kin_notes: list[str], inputs: list) -> tuple:
    """(FWHM in mm, isotropic or per axis; where it came from) for ``--pvc``."""
    from .recovery import default_fwhm_mm

    if settings.resolution is not None:
        from .resolution import read_resolution_file

        if settings.psf_fwhm_mm is not None:
            raise InputError("give the resolution once: --psf-fwhm-mm or --resolution, not both")
        res = read_resolution_file(settings.resolution)
        inputs.append(res["path"])
        fw = tuple(float(v) for v in res["fwhm_mm"])
        rec = res.get("reconstruction") or {}
        kin_notes.append(f"PSF FWHM (i, j, k) = ({fw[0]:.3g}, {fw[1]:.3g}, {fw[2]:.3g}) mm measured "
                         f"({res.get('method', 'method not stated')}) in {Path(res['path']).name}"
                         + (f", for the reconstruction {json.dumps(rec, sort_keys=True)}" if rec else "")
                         + (f"; {res['fwhm_note']}" if res.get("fwhm_note") else ""))
        return fw, f"measured, {Path(res['path']).name}", rec
    if settings.psf_fwhm_mm is not None:
        kin_notes.append(f"PSF FWHM {settings.psf_fwhm_mm:g} mm: given (--psf-fwhm-mm)")
        return float(settings.psf_fwhm_mm), "given with --psf-fwhm-mm", {}
    preset = settings.species or settings.auto_regions
    if preset is None:
        raise InputError("recovery correction needs the reconstructed resolution: give --resolution FILE (from "
                         "'spectrack resolution'), --psf-fwhm-mm, or --species rat|nhp|human for the preset default")
    fwhm = default_fwhm_mm(preset)
    kin_notes.append(f"PSF FWHM {fwhm} mm: default of preset {preset} (assumed, not measured)")
    return fwhm, f"the default of preset {preset}", {}


def _recovery_correction(table, images, details, settings: Settings, kin_notes: list[str], inputs: list, *,
                         source_labels=None, transforms=None):
    """GTM columns, and warnings when the FWHM does not fit the study (see :mod:`spectrack.quantification.resolution`).

    With ``settings.pvc_masks == "fractional"`` the masks are the share of each emission voxel in each region of
    ``source_labels`` (one LabelMap, or one per time point), carried by ``transforms`` like the labels.
    """
    from .recovery_table import add_gtm_correction
    from .resolution import FWHM_MISMATCH, image_fwhm_mm

    fwhm, how, rec = _pvc_fwhm(settings, kin_notes, inputs)
    warn = details.warnings
    fractions = None
    if settings.pvc_masks == "fractional":
        from ..regions.fractions import finer_than, region_fractions

        per_tp = source_labels if isinstance(source_labels, list) else [source_labels] * len(images)
        fractions = []
        for i, (img, lm) in enumerate(zip(images, per_tp)):
            ids = sorted(k for k in details.labels_per_timepoint[i].names)
            fractions.append(region_fractions(lm, img, None if transforms is None else transforms[i],
                                              label_ids=ids))
        coarse = [i for i, lm in enumerate(per_tp[:len(images)]) if not finer_than(lm, images[i])]
        if coarse:
            warn.append(f"--pvc-masks fractional: the regions are not on a grid finer than the SPECT of time "
                        f"point(s) {', '.join(map(str, coarse))}, so their masks are (nearly) whole voxels there; "
                        "draw or import the regions on the CT for partial-voxel masks")
        kin_notes.append("recovery correction on fractional masks: the share of each SPECT voxel in each region, "
                         "from 27 samples per voxel of the regions on their own grid")
    fw_mean = float(np.mean(fwhm))
    shown = f"{fw_mean:.3g} mm ({how})"
    if not isinstance(fwhm, float):
        spacing = rec.get("voxel_size_mm")
        if spacing is not None:
            here = np.asarray(images[0].spacing_mm, float)
            if np.any(np.abs(np.asarray(spacing, float) - here) > 0.05 * here):
                warn.append(f"the resolution file was measured on {spacing} mm voxels, the study has "
                            f"{here.round(3).tolist()} mm: the FWHM applies only to images reconstructed the same "
                            "way")
    table = add_gtm_correction(table, images, details.labels_per_timepoint, fwhm, fractions=fractions)
    warn.extend(table.attrs.pop("notes", []))
    table.attrs["pvc_fwhm"] = (fwhm, how)
    region_rows = table["kind"] == "region"
    change = np.abs(table.loc[region_rows, "pvc_factor"].to_numpy(float) - 1.0)
    change = change[np.isfinite(change)]  # regions without counts have no factor
    if change.size and float(change.max()) < 0.01:
        vox = np.asarray(images[0].spacing_mm, float)
        warn.append(f"recovery correction with PSF FWHM {shown} changes no region by 1 % or more (largest "
                    f"{100 * float(change.max()):.2g} %): at voxels of {', '.join(f'{v:.3g}' for v in vox)} mm it is "
                    "a no-op; if the camera's reconstructed resolution is coarser, measure it ('spectrack "
                    "resolution') and give --resolution")
    cond = table.loc[region_rows, "gtm_condition_number"].to_numpy(float)
    if cond.size and np.isfinite(cond).any():
        kin_notes.append(f"GTM condition number {np.nanmin(cond):.3g} to {np.nanmax(cond):.3g} over the time "
                         "points (relative noise in the regions' means is amplified by up to this factor)")
    est = image_fwhm_mm(images[0], details.labels_per_timepoint[0])
    kin_notes.append(f"the emission image of time point 0 is best reproduced by its regions blurred by "
                     f"{est['fwhm_mm']:.3g} mm FWHM ({est['method']})")
    ratio = fw_mean / est["fwhm_mm"] if est["fwhm_mm"] > 0 else float("nan")
    if np.isfinite(ratio) and not 1 / FWHM_MISMATCH <= ratio <= FWHM_MISMATCH:
        warn.append(f"the PSF FWHM for recovery correction, {shown}, disagrees with the blur of the region edges "
                    f"in the images ({est['fwhm_mm']:.3g} mm, {ratio:.2f}x): the correction is probably "
                    f"{'over' if ratio > 1 else 'under'}-correcting; measure the reconstructed resolution with "
                    "'spectrack resolution' on a point or line source reconstructed like the study")
    for tpi, g in table.groupby("timepoint"):
        regions_pvc = g.loc[g["kind"] == "region", "pct_id_pvc"].sum()
        fov = g.loc[g["kind"] == "fov", "pct_id"].sum()
        if fov > 0 and regions_pvc > 1.05 * fov:
            warn.append(f"time point {tpi}: recovery-corrected regions hold {regions_pvc:.1f} %ID, more than the "
                        f"field of view ({fov:.1f} %ID): the PSF FWHM {shown} is probably larger than the images' "
                        "reconstructed resolution")
        pinned = g[(g["kind"] == "region") & (g["pct_id_pvc"] <= 0) & (g["pct_id"] > 0)]
        if len(pinned):
            warn.append(f"time point {tpi}: recovery correction pinned {', '.join(pinned['region'].astype(str))} at "
                        f"zero (non-negative least squares): the PSF FWHM {shown} is the likely cause (too large)")
    return table
