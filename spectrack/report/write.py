"""The results folder of one study: ``study.json``, the tables, label maps, transforms and the report.

:func:`study_record` builds what ``study.json`` holds; :func:`write_results` writes every output of
:func:`spectrack.pipeline.run_study` into a results folder, as one unit
(:func:`spectrack.io_utils.output_folder`); :func:`write_label_maps` and :func:`write_json` are its parts
(re-exported by :mod:`spectrack.pipeline`).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..io_utils import atomic_path, atomic_write_text, output_folder
from ..load.model import Series, Study

__all__ = ["QUANTIFY_OUTPUTS", "describe_study", "study_record", "write_json", "write_label_maps", "write_results"]

#: Top-level entries :func:`spectrack.pipeline.run_study` may write into its results folder.
QUANTIFY_OUTPUTS = ("regions.csv", "study.json", "kinetics.csv", "fits.csv", "labels", "transforms",
                    "neuraxis_profile.csv", "neuraxis_front.csv", "neuraxis_spread.csv", "neuraxis_profile.png",
                    "neuraxis_vertebrae.csv", "mass_balance.csv", "report.html", "figures")


def resolved_paths(paths) -> list[Path]:
    """``[Path(p).resolve() for p in paths]``, each folder resolved once.

    ``Path.resolve`` looks at every component of every path (five ``lstat`` calls for a file five folders deep);
    the 1806 files of a study's DICOM folder share one folder, so that is resolved once and each file costs one
    ``lstat`` (is it a link?). Links, and names such as ``..``, are resolved in full, as ``Path.resolve`` does.
    """
    import os

    folders: dict[Path, Path] = {}
    out = []
    for f in paths:
        p = Path(f)
        if p.name in ("", ".", "..") or os.path.islink(p):
            out.append(p.resolve())
            continue
        folder = folders.get(p.parent)
        if folder is None:
            folder = folders[p.parent] = p.parent.resolve()
        out.append(folder / p.name)
    return out


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
    from ..io_utils import sha256_file
    from ..regions.formats.nifti import write_label_map
    from ..regions.labelmap import LabelMap

    out = Path(out_dir)
    outputs: dict[str, Path] = {}
    listing = []

    def series_ref(s):
        if s is None:
            return None
        files = resolved_paths(s.files)
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




def study_record(study: Study, quant, regions, *, registration: dict | None, method_notes: list[str], neuraxis,
                 settings, study_file: dict | None, command: list[str] | None) -> dict:
    """What ``study.json`` holds, in its order (``label_maps`` is filled by :func:`write_results`).

    Parameters
    ----------
    study : Study
        The quantified study.
    quant : spectrack.quantification.stage.StudyQuantities
        The table, the dose parameters and calibrations, the warnings and the mass balance.
    regions : spectrack.regions.resolve.StudyRegions
        The regions used (their label map may be the record without voxels), the reference time point and
        the time point they were drawn on.
    registration : dict or None
        :attr:`spectrack.align.study.Alignment.record`.
    method_notes : list of str
        How the intervals, the recovery correction and the kinetics were computed (``kinetics_method``).
    neuraxis : spectrack.regions.neuraxis.stage.NeuraxisProfile
        The front, spread measures and warnings of the canal profile.
    settings : Settings
        The settings used (``provenance.parameters``).
    study_file : dict or None
        The study file that filled settings (:func:`spectrack.settings.apply_study_file`).
    command : list of str, optional
        The command line, for the provenance record.

    Returns
    -------
    dict
        The record; its ``provenance`` has the hashes of no input yet (``inputs_sha256`` is set by the caller).
    """
    from ..provenance import provenance
    from ..quantification import TABLE_COLUMNS
    from ..quantification.balance import DOSE_COLUMNS

    details, table, balance, label_map0 = quant.details, quant.table, quant.balance, regions.label_map
    return {
        "study": describe_study(study),
        "dose": details.params.to_json(),
        "calibration": [c.to_json() for c in details.calibrations],
        "labels": {"source": label_map0.source, "names": {str(k): v for k, v in sorted(label_map0.names.items())},
                   "timepoint": regions.reference if regions.drawn_on is not None else None,
                   "meta": dict(label_map0.meta)},
        "warnings": details.warnings,
        "kinetics_method": method_notes,
        "registration": registration,
        "neuraxis_front": neuraxis.front,
        "neuraxis_spread": neuraxis.spread,
        "neuraxis_warnings": neuraxis.warnings,
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


def write_results(result, out_dir, *, registration, balance, report: bool, force: bool = False,
                  command: str = "spectrack quantify") -> None:
    """Write every output of a run into the results folder ``out_dir``, as one unit.

    Parameters
    ----------
    result : spectrack.pipeline.StudyResult
        The run; its ``outputs`` become the files written (named where they are once the folder is in place)
        and ``metadata["label_maps"]`` the listing of :func:`write_label_maps`.
    out_dir : path-like
        The results folder (:func:`spectrack.io_utils.output_folder`: written in a sibling folder renamed into
        place; files spectrack did not write are kept).
    registration : RegistrationSet or None
        The transforms from the reference to each time point (:attr:`spectrack.align.study.Alignment.results`),
        written to ``transforms/``.
    balance : pandas.DataFrame
        The mass balance (``mass_balance.csv``).
    report : bool
        Write ``report.html`` with its figures, and the neuraxis profile figure.
    force : bool
        Replace entries named like an output that spectrack did not write.
    command : str
        The command recorded as the folder's writer.
    """
    with output_folder(out_dir, QUANTIFY_OUTPUTS, force=force, command=command) as out:
        _write_into(result, out, reg=registration, balance=balance, report=report)
    final = Path(out_dir)  # the set is complete: name its files where they now are
    result.outputs = {k: final / Path(v).relative_to(out) for k, v in result.outputs.items()}


def _write_into(result, out: Path, *, reg, balance, report: bool) -> None:
    """Write every output of :func:`spectrack.pipeline.run_study` into ``out`` (a folder of its own, new)."""
    table, meta, study, details_labels = result.table, result.metadata, result.study, result.labels
    kin, neuraxis = result.kinetics, result.profile
    for name, frame in (("regions.csv", table), ("mass_balance.csv", balance)):
        with atomic_path(out / name) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.9g")
        result.outputs[name] = out / name
    if reg is not None:
        from ..align.register import save_transform

        for i, t in enumerate(reg):
            result.outputs[f"transform_tp{i}"] = save_transform(t, out / "transforms" / f"tp{i}.tfm")
    if kin is not None:
        for name, frame in (("kinetics.csv", kin.metrics), ("fits.csv", kin.fits)):
            with atomic_path(out / name) as tmp:
                frame.to_csv(tmp, index=False, float_format="%.9g")
            result.outputs[name] = out / name
    if neuraxis is not None and len(neuraxis):
        from ..regions.neuraxis import write_profile

        result.outputs.update(write_profile(neuraxis, out, plot=report))  # the figure is for readers
    if result.vertebrae is not None and len(result.vertebrae):
        with atomic_path(out / "neuraxis_vertebrae.csv") as tmp:
            result.vertebrae.to_csv(tmp, index=False, float_format="%.9g")
        result.outputs["neuraxis_vertebrae.csv"] = out / "neuraxis_vertebrae.csv"
    written, meta["label_maps"] = write_label_maps(study, details_labels, out)
    result.outputs.update(written)
    result.outputs["study.json"] = write_json(out / "study.json", meta)
    if report:
        from .core import write_report

        result.outputs.update(write_report(result, out))
