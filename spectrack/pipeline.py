"""The one orchestration function: load -> align -> regions -> quantify -> kinetics -> report.

The command line, the napari plugin, batch runs and the Python API all call
:func:`run_study`.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import InputError, LabelError, SpectrackError
from .io_utils import atomic_path, atomic_write_text, check_output_folder, output_folder
from .load.model import Series, Study
from .settings import Settings

__all__ = ["run_study", "StudyResult", "describe_study", "write_label_maps", "Cancelled", "STAGES", "injected_regions"]

STAGES = ("load", "align", "regions", "quantify", "kinetics", "report")


#: Top-level entries :func:`run_study` may write into its results folder.
QUANTIFY_OUTPUTS = ("regions.csv", "study.json", "kinetics.csv", "fits.csv", "labels", "transforms",
                    "neuraxis_profile.csv", "neuraxis_front.csv", "neuraxis_spread.csv", "neuraxis_profile.png",
                    "neuraxis_vertebrae.csv", "mass_balance.csv", "report.html", "figures")


class Cancelled(SpectrackError):
    """The run was cancelled by the user (exit 130)."""

    exit_code = 130


@dataclass
class StudyResult:
    """What :func:`run_study` produced."""

    table: object  # pandas.DataFrame
    study: Study
    metadata: dict
    outputs: dict[str, Path] = field(default_factory=dict)
    labels: list = field(default_factory=list)
    kinetics: object | None = None
    transforms: list | None = None
    profile: object | None = None
    #: %ID per vertebra along the canal (:func:`spectrack.regions.neuraxis.vertebra_table`), when automatic
    #: regions counted the vertebrae on the CT
    vertebrae: object | None = None


def _series_json(s: Series | None) -> dict | None:
    if s is None:
        return None
    img = s.image
    return {
        "modality": s.modality,
        "description": s.describe(),
        "n_files": len(s.files),
        "grid": {"shape_ijk": list(img.shape_ijk), "spacing_mm": img.spacing_mm.tolist(),
                 "origin_mm_lps": img.origin_mm.tolist(), "direction": img.direction.tolist()},
        "meta": {k: v.to_json() for k, v in sorted(s.meta.items()) if k != "pair_with"},
    }


def describe_study(study: Study) -> dict:
    """JSON-ready description of a loaded study: series, time points, metadata with sources."""
    return {
        "subject": study.subject,
        "path": str(Path(study.path).resolve()) if study.path is not None else None,
        "timepoints": [
            {"index": tp.index,
             "acquisition_start": tp.acquisition_start.isoformat(sep=" ") if tp.acquisition_start else None,
             "emission": _series_json(tp.emission), "ct": _series_json(tp.ct)}
            for tp in study.timepoints
        ],
        "unpaired_ct": [_series_json(s) for s in study.extra_series],
        "warnings": list(study.warnings),
    }


def _json_default(o):
    import datetime as dt

    import numpy as np

    if isinstance(o, (dt.datetime, dt.date, dt.time)):
        return o.isoformat()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def write_json(path: Path, data: dict) -> Path:
    """Write JSON atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _add_intervals(table, study, details, settings, notes, pvc_fwhm=None):
    """95 % Monte Carlo intervals on %ID and, with ``--pvc``, on the corrected %ID (EANM terms)."""
    import numpy as np

    from .quantification.interval_terms import boundary_sd_mm
    from .quantification.intervals import add_pct_id_intervals

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


def injected_regions(label_map, setting: str | None = None) -> tuple[list[str], str]:
    """The regions that hold the injection at t = 0, and how they were found.

    ``setting`` (comma-separated names) wins; otherwise the ``injection_site``
    region and the region it lies in (the region, canal levels first, with
    the most voxels touching it). Without either, no region: every curve
    then starts at 0 at injection.
    """
    import numpy as np
    from scipy.ndimage import binary_dilation

    from .regions.vocabulary import CANAL_LEVELS

    names = {int(k): str(v) for k, v in label_map.names.items()}
    if setting:
        want = [n.strip() for n in str(setting).split(",") if n.strip()]
        unknown = [n for n in want if n not in names.values()]
        if unknown:
            raise InputError(f"--injected-region {', '.join(unknown)}: no such region; the regions are "
                             f"{', '.join(sorted(names.values()))}")
        return want, "given (--injected-region)"
    site = [k for k, v in names.items() if v == "injection_site"]
    if not site:
        return [], ("no injection_site region: every region starts at 0 at injection (give --injected-region "
                    "for the region holding the injection)")
    lab = np.asarray(label_map.image.array)
    m = lab == site[0]
    if not m.any():
        return ["injection_site"], "injection_site region (it has no voxel, so its neighbour is unknown)"
    shell = binary_dilation(m, iterations=2) & ~m
    counts = {names[int(v)]: int(c) for v, c in zip(*np.unique(lab[shell], return_counts=True))
              if int(v) in names and names[int(v)] not in ("injection_site", "remainder")}
    around = sorted(counts, key=lambda n: (n not in CANAL_LEVELS, -counts[n]))
    if not around:
        return ["injection_site"], "injection_site region (no region touches it)"
    return ["injection_site", around[0]], f"injection_site and the region it lies in ({around[0]})"


def write_label_maps(study: Study, labels_per_timepoint: list, out_dir) -> tuple[dict[str, Path], list[dict]]:
    """Write the label map each time point was quantified with, on its emission grid.

    Parameters
    ----------
    study : Study
        The quantified study.
    labels_per_timepoint : list of LabelMap
        The labels on each emission grid (``QuantResult.labels_per_timepoint``).
    out_dir : path-like
        The results folder: files go to ``labels/`` in it.

    Returns
    -------
    outputs : dict
        ``{"labels/tp<N>_labels.nii.gz": path, ...}`` (the NIfTI, its names
        TSV, and the own masks of overlapping regions).
    listing : list of dict
        For ``study.json``: per time point the files (relative to the results
        folder), SHA-256, grid, the emission series and the CT it lies with
        (series UID and files, for ``spectrack export``).

    Notes
    -----
    ``tp<N>_labels.nii.gz`` holds an exclusive partition; a region whose own
    shape overlaps another's (a BODY outline around organs) was quantified
    over its own mask, written as ``tp<N>_mask_<index>_<name>.nii.gz``.
    """
    from .io_utils import sha256_file
    from .regions.labels import LabelMap, write_label_map

    out = Path(out_dir)
    outputs: dict[str, Path] = {}
    listing = []

    def series_ref(s):
        if s is None:
            return None
        files = [Path(f).resolve() for f in s.files]
        return {"modality": s.modality, "description": s.describe(), "series_uid": s.get("series_uid"),
                "frame_of_reference_uid": s.get("frame_of_reference_uid"),
                "format": "nifti" if files and files[0].name.endswith((".nii", ".nii.gz")) else "dicom",
                "files": [str(f) for f in files]}

    written: dict[int, tuple[Path, Path, str]] = {}  # id(label map) -> its files and hash, written once
    for n, (tp, lab) in enumerate(zip(study.timepoints, labels_per_timepoint)):
        nii = out / "labels" / f"tp{n}_labels.nii.gz"
        tsv = nii.with_name(f"tp{n}_labels.tsv")
        if id(lab) in written:  # time points that share one label map (one emission grid): the same bytes
            import shutil

            for src, dst in zip(written[id(lab)][:2], (nii, tsv)):
                with atomic_path(dst) as tmp:
                    shutil.copyfile(src, tmp)
            digest = written[id(lab)][2]
        else:
            nii = write_label_map(lab, nii)
            digest = sha256_file(nii)
            written[id(lab)] = (nii, tsv, digest)
        outputs[nii.relative_to(out).as_posix()] = nii
        outputs[tsv.relative_to(out).as_posix()] = tsv
        masks = []
        for idx, m in sorted(lab.overlaps.items()):
            safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in lab.names[idx])
            own = LabelMap(lab.image.with_array(m.astype("int16") * idx, units="label"), {idx: lab.names[idx]})
            mp = write_label_map(own, out / "labels" / f"tp{n}_mask_{idx}_{safe}.nii.gz")
            outputs[mp.relative_to(out).as_posix()] = mp
            outputs[mp.with_name(mp.name[:-7] + ".tsv").relative_to(out).as_posix()] = mp.with_name(mp.name[:-7] + ".tsv")
            masks.append({"index": idx, "name": lab.names[idx], "file": mp.relative_to(out).as_posix(),
                          "names": mp.with_name(mp.name[:-7] + ".tsv").relative_to(out).as_posix()})
        img = lab.image
        listing.append({
            "timepoint": n,
            "file": nii.relative_to(out).as_posix(),
            "names": tsv.relative_to(out).as_posix(),
            "sha256": digest,
            "grid": {"shape_ijk": list(img.shape_ijk), "spacing_mm": img.spacing_mm.tolist(),
                     "origin_mm_lps": img.origin_mm.tolist(), "direction": img.direction.tolist()},
            "regions": {str(k): v for k, v in sorted(lab.names.items())},
            "own_masks": masks,
            "emission": series_ref(tp.emission),
            "ct": series_ref(tp.ct),
        })
    for m in listing:  # the emission's own file list is long and not needed to place the regions
        if m["emission"] is not None:
            m["emission"].pop("files")
    return outputs, listing


def _check_run_arguments(*, out_dir, labels, study, progress, cancel) -> None:
    """The types of :func:`run_study`'s keyword arguments, refused in one line before any work."""
    from .regions.labels import LabelMap

    if out_dir is not None and not isinstance(out_dir, (str, Path)) and not hasattr(out_dir, "__fspath__"):
        raise InputError(f"run_study(): out_dir must be a path (str or pathlib.Path) or None, not "
                         f"{type(out_dir).__name__}")
    if labels is not None and not (isinstance(labels, (str, Path, LabelMap)) or hasattr(labels, "__fspath__")
                                   or (isinstance(labels, list) and all(isinstance(x, LabelMap) for x in labels))):
        raise InputError(f"run_study(): labels must be a LabelMap, a list of one LabelMap per time point or a "
                         f"path to a label map, not {type(labels).__name__}")
    if study is not None and not isinstance(study, Study):
        raise InputError(f"run_study(): study must be a Study (from spectrack.load_study) or None, not "
                         f"{type(study).__name__}")
    for name, fn in (("progress", progress), ("cancel", cancel)):
        if fn is not None and not callable(fn):
            raise InputError(f"run_study(): {name} must be a function or None, not {type(fn).__name__}")


def run_study(
    path,
    settings: Settings | dict | None = None,
    *,
    out_dir=None,
    labels=None,
    study: Study | None = None,
    progress: Callable[[str, float], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    command: list[str] | None = None,
    force: bool = False,
) -> StudyResult:
    """Run the whole pipeline on one study.

    Parameters
    ----------
    path : path-like
        Study folder, study file or single image (see :func:`spectrack.load_study`).
    settings : Settings or dict, optional
        Options (see :class:`spectrack.settings.Settings`); a dict is validated.
        The study's study file (``spectrack.toml`` in the folder, or ``path``
        itself) fills the settings not given on purpose
        (:func:`spectrack.settings.apply_study_file`); ``study.json`` records
        it under ``study_file``.
    out_dir : path-like, optional
        Where to write ``regions.csv``, ``study.json``, the label maps used
        (``labels/``, see :func:`write_label_maps`) and the report; nothing is
        written when ``None``.
    labels : LabelMap or path, optional
        Regions; overrides ``settings.labels``.
    study : Study, optional
        An already loaded study (skips loading ``path``).
    progress : callable(stage, fraction), optional
        Called as stages start and end.
    cancel : callable() -> bool, optional
        Polled between stages; when it returns True the run stops with
        :class:`Cancelled` and writes nothing.
    command : list of str, optional
        The command line, for the provenance record.
    force : bool
        Replace entries of ``out_dir`` named like an output (``regions.csv``,
        ``labels``, ...) that spectrack did not write. By default such a
        folder is refused before anything is computed.

    Notes
    -----
    ``out_dir`` is checked before the study is loaded (a file, a folder that
    cannot be written: :class:`~spectrack.errors.OutputError`, exit 3) and
    written as one unit (:func:`spectrack.io_utils.output_folder`): a reader,
    or a run killed at any moment, finds the complete earlier results or the
    complete new ones, never a mix. Files in ``out_dir`` that spectrack did
    not write are kept.

    Returns
    -------
    StudyResult
    """
    from .load import load_study
    from .provenance import provenance
    from .quantification import TABLE_COLUMNS, quantify
    from .quantification.balance import DOSE_COLUMNS
    from .regions.labels import LabelMap
    import dataclasses

    from .settings import settings_from_mapping

    from .settings import apply_study_file

    if settings is None:
        settings = Settings()
    elif isinstance(settings, dict):
        settings = settings_from_mapping(settings)
    elif isinstance(settings, Settings):  # built directly: the same checks as a dict or the command line
        from .settings import with_given

        given = {k: v for k, v in dataclasses.asdict(settings).items() if k != "extra"}
        checked = dataclasses.replace(settings_from_mapping(given, where="settings"), extra=dict(settings.extra))
        settings = with_given(checked, settings.given)
    else:
        raise InputError(f"settings must be a Settings or a dict, not {type(settings).__name__}")
    _check_run_arguments(out_dir=out_dir, labels=labels, study=study, progress=progress, cancel=cancel)
    # the study's own study file (spectrack.toml beside the images) fills what was not given on purpose
    settings, study_file = apply_study_file(settings, study.path if study is not None else path)
    if settings.labels is not None:  # absolute, so study.json and 'spectrack report' find it from anywhere
        from .settings import is_label_pattern, labels_for_study

        lab_setting = settings.labels
        if is_label_pattern(lab_setting):  # '{study}/labels.nii.gz', '*_dseg.nii.gz': this study's file
            where = path[0] if isinstance(path, (list, tuple)) and path else path
            if where is None and study is not None:
                where = study.path
            if where is None:
                raise InputError(f"labels {lab_setting} is a per-study pattern: give the study path")
            lab_setting = labels_for_study(lab_setting, where)
        settings = settings.replace(labels=str(Path(lab_setting).resolve()))

    def step(stage, frac):
        if cancel is not None and cancel():
            raise Cancelled("cancelled by the user; nothing was written")
        if progress is not None:
            progress(stage, frac)

    writer = "spectrack demo" if command and command[1:2] == ["demo"] else "spectrack quantify"
    if out_dir is not None:  # a bad -o fails now, not after the whole computation
        check_output_folder(out_dir, QUANTIFY_OUTPUTS, force=force, command=writer)
    if settings.removed is not None:  # and so does a bad removed-activity file
        from .quantification.balance import read_removed

        read_removed(settings.removed, check_only=True)
    step("load", 0.0)
    if study is None:
        study = load_study(path, times_h=settings.times_h, subject=settings.subject)
    if settings.reference >= len(study.timepoints):
        raise InputError(f"--reference {settings.reference} is out of range: the study has "
                         f"{len(study.timepoints)} time point(s), 0..{len(study.timepoints) - 1}")
    label_inputs = []
    step("regions", 0.2)
    lab = labels if labels is not None else settings.labels
    study_settings = getattr(study, "settings", {}) or {}
    if lab is None and study_settings.get("labels") and study.path is not None:
        base = Path(study.path)
        lab = str((base.parent if base.is_file() else base) / study_settings["labels"])
    reference = settings.reference
    drawn_on = None  # the time point the region file says it was drawn on
    if isinstance(lab, (str, Path)) or hasattr(lab, "__fspath__"):
        from .regions.labels import names_sidecar
        from .regions.placement import read_study_regions

        lab_path = Path(lab)
        lab, drawn_on = read_study_regions(lab_path, study, reference_index=settings.reference)
        if lab_path.is_dir():
            label_inputs += [p for p in lab_path.rglob("*") if p.is_file()]
        else:
            sidecar = names_sidecar(lab_path)
            label_inputs += [lab_path] + ([sidecar] if sidecar else [])
    if lab is None and not settings.auto_regions:
        raise LabelError("no regions given: pass a label map with --labels FILE (NIfTI with a names TSV) "
                         "or ask for automatic regions with --auto-regions rat|nhp|human")
    if not isinstance(lab, (LabelMap, list, type(None))):
        raise InputError(f"labels must be a LabelMap or a path, got {type(lab).__name__}")
    # the inputs' hashes for the provenance record: in a thread beside the work (reads and hashlib release the GIL)
    hashes = _InputHashes(study.input_files + label_inputs + ([Path(study_file["path"])] if study_file else []))
    if isinstance(lab, LabelMap) and drawn_on is None:
        from .regions.placement import locate_regions

        drawn_on = locate_regions(lab, study, reference_index=settings.reference)
        lab = lab._derived(lab.image, lab.overlaps)  # warnings below must not change the caller's object
    if drawn_on is not None and drawn_on != settings.reference:
        lab.warnings.append(f"regions {Path(lab.source).name or 'given'} were drawn on time point {drawn_on}'s images "
                            f"(FrameOfReferenceUID {lab.meta.get('frame_of_reference_uid')}), not on the reference "
                            f"time point {settings.reference}: time point {drawn_on} is used as the reference")
        reference = drawn_on
    # registration does not need the regions: once they are known to exist it starts in a thread (SimpleITK
    # releases the GIL) and overlaps with segmenting them; its errors surface at the align stage
    pending_registration = None
    if settings.register and len(study.timepoints) > 1:
        from concurrent.futures import ThreadPoolExecutor

        from .align.register import register_timepoints

        mode = "ct" if all(tp.ct is not None for tp in study.timepoints) else "spect"
        executor = ThreadPoolExecutor(1, thread_name_prefix="spectrack-register")
        pending_registration = (mode, executor.submit(register_timepoints, study.timepoints,
                                                      reference_index=reference, mode=mode))
        executor.shutdown(wait=False)
    if lab is None:
        from .regions.auto import segment_study

        lab = segment_study(study, preset=settings.auto_regions, reference=settings.reference,
                            canal_boundaries_mm=settings.canal_boundaries_mm)

    transforms = None
    reg = None
    registration = None
    step("align", 0.3)
    if pending_registration is not None:
        mode, future = pending_registration
        reg = future.result()
        study.warnings.extend(reg.warnings)
        # registration maps reference points to each time point; labels are resampled with the inverse
        transforms = [t.GetInverse() for t in reg]
        registration = {"mode": mode, "reference": reference,
                        "ct_working_spacing_mm": reg.working_spacing_mm,
                        "timepoints": [{"index": i, "quality_ncc": r.quality_ncc,
                                        "translation_mm": list(r.translation_mm), "rotation_deg": list(r.rotation_deg),
                                        "metric_value": r.metric_value, "iterations": r.iterations,
                                        "elapsed_s": r.elapsed_s, "stop_condition": r.stop_condition}
                                       for i, r in enumerate(reg.results)]}

    step("quantify", 0.5)
    table, details = quantify(
        study, lab,
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
    if settings.pvc:
        table = _recovery_correction(table, images, details, settings, kin_notes, label_inputs,
                                     source_labels=lab, transforms=transforms)
    pvc_fwhm = table.attrs.pop("pvc_fwhm", None)
    curve_draws = None
    if settings.uncertainty_draws > 0:
        table, curve_draws = _add_intervals(table, study, details, settings, kin_notes, pvc_fwhm=pvc_fwhm)
    table, balance = _dose_bookkeeping(table, details, settings, label_inputs)
    # what the record needs of the source label map; its array (CT-sized) is let go here, before the kinetics
    # and neuraxis steps load their libraries, so it does not add to the run's peak memory
    label_map0 = _label_record(lab[0] if isinstance(lab, list) else lab)
    lab = None

    step("kinetics", 0.7)
    kin = _kinetics_stage(table, study, details, settings, curve_draws, reference, kin_notes)
    neuraxis, front, spread, neuraxis_warnings, vert_table = _neuraxis_stage(study, details, settings, label_map0)
    step("report", 0.85)
    inputs = study.input_files + label_inputs + ([Path(study_file["path"])] if study_file else [])
    meta = {
        "study": describe_study(study),
        "dose": details.params.to_json(),
        "calibration": [c.to_json() for c in details.calibrations],
        "labels": {"source": label_map0.source, "names": {str(k): v for k, v in sorted(label_map0.names.items())},
                   "timepoint": reference if drawn_on is not None else None, "meta": dict(label_map0.meta)},
        "warnings": details.warnings,
        "kinetics_method": kin_notes,
        "registration": registration,
        "neuraxis_front": front,
        "neuraxis_spread": spread,
        "neuraxis_warnings": neuraxis_warnings,
        "auto_regions": label_map0.image.meta.get("auto_regions") if isinstance(label_map0.image.meta, dict)
        else None,
        "columns": {**TABLE_COLUMNS, **{k: v for k, v in DOSE_COLUMNS.items() if k in table}},
        "mass_balance": {"threshold_pct_id": balance.attrs["threshold_pct_id"],
                         "removed": balance.attrs["removed"],
                         "per_timepoint": balance.to_dict(orient="records")},
        "study_file": study_file,
        "label_maps": [],
        "provenance": provenance([], settings.to_dict(), command=command),
    }
    meta["provenance"]["inputs_sha256"] = hashes.result(inputs)
    result = StudyResult(table=table, study=study, metadata=meta, labels=details.labels_per_timepoint,
                         kinetics=kin, transforms=transforms, profile=neuraxis, vertebrae=vert_table)
    if out_dir is not None:
        with output_folder(out_dir, QUANTIFY_OUTPUTS, force=force, command=writer) as out:
            _write_results(result, out, reg=reg, kin=kin, neuraxis=neuraxis, settings=settings, balance=balance)
        final = Path(out_dir)  # the set is complete: name its files where they now are
        result.outputs = {k: final / Path(v).relative_to(out) for k, v in result.outputs.items()}
    step("report", 1.0)
    return result


def _kinetics_stage(table, study, details, settings, curve_draws, reference, kin_notes):
    """Kinetics of every region (:func:`spectrack.kinetics.analyse_kinetics`), None with fewer than 3 scans;
    the method notes go into ``kin_notes``."""
    n_tp = len(study.timepoints)
    if n_tp < 3:
        kin_notes.append(f"kinetics not fitted: {n_tp} time point(s), at least 3 needed")
        return None
    from .kinetics import analyse_kinetics

    lab0 = details.labels_per_timepoint[reference]
    inj, inj_txt = injected_regions(lab0, settings.injected_region)
    kin_notes.append("integrals start at 0 at injection for every region"
                     + (f" but {', '.join(inj)} (and groups holding them), which start at the content "
                        f"back-extrapolated from the first two scans: {inj_txt}" if inj else f": {inj_txt}"))
    # activity_mbq is pct_id times a constant: fitting pct_id alone gives every kinetic number; with
    # recovery correction the corrected curves get their own kinetics (quantity pct_id_pvc)
    quantities = ("pct_id", "pct_id_pvc") if "pct_id_pvc" in table else ("pct_id",)
    n_kd = min(settings.kinetics_draws, settings.uncertainty_draws)
    kin = analyse_kinetics(table, half_life_h=details.params.half_life_h.value, quantities=quantities,
                           injected_regions=inj, draws=curve_draws if n_kd > 0 else None, max_draws=n_kd)
    if n_kd > 0 and curve_draws is not None:
        kin_notes.append(f"intervals on AUC, TIA, MRT, TIAC and half-lives: the first {n_kd} Monte Carlo draws "
                         "of each curve (all uncertainty terms) refitted with the model chosen for the nominal "
                         "curve and reintegrated; 95 % percentile intervals (kinetics.csv lo, hi)")
    return kin


def _neuraxis_stage(study, details, settings, label_map0):
    """The canal profile, half-maximum front, spread measures, their warnings and the per-vertebra table
    (None, None, None, [], None without canal levels)."""
    from .regions.vocabulary import CANAL_LEVELS

    neuraxis = front = spread = vert_table = None
    neuraxis_warnings: list[str] = []
    if not any(n in CANAL_LEVELS for n in label_map0.names.values()):
        return neuraxis, front, spread, neuraxis_warnings, vert_table
    from .regions.neuraxis import profile_study, spread_measures, tracer_front

    neuraxis = profile_study(study, details.labels_per_timepoint, details.calibrations, details.params,
                             margin_mm=settings.neuraxis_margin_mm)
    if len(neuraxis):
        front = tracer_front(neuraxis).to_dict(orient="records")
        sp = spread_measures(neuraxis)
        spread = {"per_timepoint": sp.to_dict(orient="records"), **{k: v for k, v in sp.attrs.items()}}
    neuraxis_warnings = list(neuraxis.attrs.get("warnings", []))
    auto_meta = label_map0.image.meta.get("auto_regions") if isinstance(label_map0.image.meta, dict) else None
    if isinstance(auto_meta, dict) and auto_meta.get("vertebrae") and len(neuraxis):
        from .regions.neuraxis import vertebra_table

        vert_table = vertebra_table(neuraxis, auto_meta["vertebrae"])
        neuraxis_warnings += vert_table.attrs.get("warnings", [])
    return neuraxis, front, spread, neuraxis_warnings, vert_table


def _label_record(lm):
    """The names, source and metadata of a label map, without its voxels."""
    from types import SimpleNamespace

    return SimpleNamespace(names=lm.names, source=lm.source, meta=lm.meta, image=SimpleNamespace(meta=lm.image.meta))


class _InputHashes:
    """:func:`spectrack.provenance.hash_inputs` of the files known early, computed in a thread; :meth:`result`
    gives ``hash_inputs(paths)`` for the final list (files added since are hashed then)."""

    def __init__(self, paths):
        from concurrent.futures import ThreadPoolExecutor

        from .provenance import hash_inputs

        executor = ThreadPoolExecutor(1, thread_name_prefix="spectrack-hash")
        self._future = executor.submit(hash_inputs, list(paths))
        executor.shutdown(wait=False)

    def result(self, paths) -> dict[str, str]:
        from .provenance import hash_inputs

        early = self._future.result()
        wanted = sorted({str(Path(p).resolve()) for p in paths})
        rest = hash_inputs([p for p in wanted if p not in early])
        return {p: early[p] if p in early else rest[p] for p in wanted if p in early or p in rest}


def _write_results(result: StudyResult, out: Path, *, reg, kin, neuraxis, settings: Settings, balance) -> None:
    """Write every output of :func:`run_study` into ``out`` (a folder of its own, new)."""
    table, meta, study, details_labels = result.table, result.metadata, result.study, result.labels
    for name, frame in (("regions.csv", table), ("mass_balance.csv", balance)):
        with atomic_path(out / name) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.9g")
        result.outputs[name] = out / name
    if reg is not None:
        from .align.register import save_transform

        for i, t in enumerate(reg):
            result.outputs[f"transform_tp{i}"] = save_transform(t, out / "transforms" / f"tp{i}.tfm")
    if kin is not None:
        for name, frame in (("kinetics.csv", kin.metrics), ("fits.csv", kin.fits)):
            with atomic_path(out / name) as tmp:
                frame.to_csv(tmp, index=False, float_format="%.9g")
            result.outputs[name] = out / name
    if neuraxis is not None and len(neuraxis):
        from .regions.neuraxis import write_profile

        result.outputs.update(write_profile(neuraxis, out, plot=settings.report))  # the figure is for readers
    if result.vertebrae is not None and len(result.vertebrae):
        with atomic_path(out / "neuraxis_vertebrae.csv") as tmp:
            result.vertebrae.to_csv(tmp, index=False, float_format="%.9g")
        result.outputs["neuraxis_vertebrae.csv"] = out / "neuraxis_vertebrae.csv"
    written, meta["label_maps"] = write_label_maps(study, details_labels, out)
    result.outputs.update(written)
    result.outputs["study.json"] = write_json(out / "study.json", meta)
    if settings.report:
        try:
            from .report import write_report
        except ImportError:  # report package not available
            write_report = None
        if write_report is not None:
            result.outputs.update(write_report(result, out))


def _dose_bookkeeping(table, details, settings: Settings, inputs: list):
    """Mass, %ID/g and ug/g columns (with ``--density`` or ``--dose-mg``) and the mass balance.

    Returns the table and the mass balance (:func:`spectrack.quantification.balance.mass_balance_table`);
    its warnings, and the values assumed, go into ``details.warnings``.
    """
    from .quantification.balance import (add_dose_columns, mass_balance_table, parse_densities, read_removed,
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
    from .quantification.recovery import default_fwhm_mm

    if settings.resolution is not None:
        from .quantification.resolution import read_resolution_file

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
    """GTM columns, and warnings when the FWHM does not fit the study (see :mod:`spectrack.kinetics.resolution`).

    With ``settings.pvc_masks == "fractional"`` the masks are the share of each emission voxel in each region of
    ``source_labels`` (one LabelMap, or one per time point), carried by ``transforms`` like the labels.
    """
    from .quantification.recovery_table import add_gtm_correction
    from .quantification.resolution import FWHM_MISMATCH, image_fwhm_mm

    fwhm, how, rec = _pvc_fwhm(settings, kin_notes, inputs)
    warn = details.warnings
    fractions = None
    if settings.pvc_masks == "fractional":
        from .regions.fractions import finer_than, region_fractions

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
