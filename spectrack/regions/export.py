"""Export the regions a quantification used, for PACS and other tools (``spectrack export``).

``spectrack quantify`` writes the label map each time point was quantified
with, on that time point's emission grid (``labels/tp<N>_labels.nii.gz`` and
its names TSV, listed under ``label_maps`` in ``study.json`` with the CT series
they lie with). :func:`export_regions` writes them again as

* ``nifti``: ``tp<N>_labels.nii.gz`` + ``tp<N>_labels.tsv`` (the same voxels);
* ``seg``: a DICOM Segmentation per time point (:func:`~spectrack.regions.formats.dicomseg.write_dicom_seg`,
  highdicom), one BINARY segment per region, referencing the time point's CT;
* ``rtstruct``: an RT Structure Set per time point (:func:`~spectrack.regions.formats.rtstruct.write_rtstruct`),
  contours on the slices of the time point's CT.

DICOM-SEG and RTSTRUCT reference images, so they need the time point's CT as
DICOM (in the frame of reference the SPECT shares with it): the labels are
carried onto the CT grid by nearest neighbour, which keeps every voxel when the
CT grid is the SPECT's or divides it evenly. A time point without a DICOM CT
(a NIfTI study, a SPECT alone) can be exported as NIfTI only.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError, LabelError

__all__ = ["FORMATS", "export_regions", "read_used_labels"]

#: Export formats and the file each time point gets.
FORMATS = {"nifti": "tp{n}_labels.nii.gz", "seg": "tp{n}_seg.dcm", "rtstruct": "tp{n}_rtstruct.dcm"}


def _listing(results: Path) -> list[dict]:
    sj = results / "study.json"
    if not sj.is_file():
        raise InputError(f"{results} has no study.json: give the output folder of spectrack quantify")
    try:
        meta = json.loads(sj.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read {sj}: {e}") from None
    listing = meta.get("label_maps") if isinstance(meta, dict) else None
    if not listing:
        raise InputError(f"{sj} lists no label maps (results of an older spectrack): quantify the study again "
                         "to write them")
    return listing


def read_used_labels(results, timepoint: int):
    """The label map time point ``timepoint`` was quantified with (own masks of overlapping regions included).

    Parameters
    ----------
    results : path-like
        The output folder of ``spectrack quantify``.
    timepoint : int
        Time point index.

    Returns
    -------
    labels : LabelMap
    entry : dict
        Its ``study.json`` listing (grid, emission and CT series).
    """
    import numpy as np

    from .formats.names import read_names
    from .formats.nifti import read_label_map
    from .labelmap import LabelMap

    results = Path(results)
    listing = {int(m["timepoint"]): m for m in _listing(results)}
    if timepoint not in listing:
        raise InputError(f"time point {timepoint} is not among the label maps of {results} "
                         f"(have {', '.join(str(k) for k in sorted(listing))})")
    entry = listing[timepoint]
    path = results / entry["file"]
    if not path.is_file():
        raise InputError(f"label map {path} listed in {results / 'study.json'} is missing: quantify again")
    lab = read_label_map(path, names=read_names(results / entry["names"]))
    overlaps = {}
    for m in entry.get("own_masks") or []:
        own = read_label_map(results / m["file"], names={int(m["index"]): m["name"]})
        overlaps[int(m["index"])] = own.image.array == int(m["index"])
    if overlaps:
        lab = LabelMap(lab.image, lab.names, lab.source, overlaps, lab.meta, lab.warnings)
    if not np.any(lab.image.array):
        raise LabelError(f"label map {path} is empty: nothing to export")
    return lab, entry


def _ct_files(entry: dict, n: int, fmt: str) -> list[Path]:
    ct = entry.get("ct")
    what = "DICOM-SEG" if fmt == "seg" else "RTSTRUCT"
    if ct is None:
        raise InputError(f"time point {n} has no CT: a {what} references the CT series its regions lie on; "
                         "export it with --format nifti (or choose time points with --timepoint)")
    if ct.get("format") != "dicom":
        raise InputError(f"time point {n}'s CT is NIfTI ({Path(ct['files'][0]).name}): a {what} references a "
                         "DICOM CT series; export it with --format nifti")
    files = [Path(f) for f in ct["files"]]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise InputError(f"the CT of time point {n} is no longer where it was quantified ({missing[0]}, "
                         f"{len(missing)} of {len(files)} files missing): put the study back or quantify again")
    return files


def export_regions(results, fmt: str, out_dir=None, *, timepoints=None) -> tuple[list[Path], list[str]]:
    """Write the regions of a results folder as NIfTI, DICOM-SEG or RTSTRUCT.

    Parameters
    ----------
    results : path-like
        The output folder of ``spectrack quantify`` (``study.json`` and ``labels/``).
    fmt : {'nifti', 'seg', 'rtstruct'}
        What to write (see the module docstring).
    out_dir : path-like, optional
        Where to write; default ``RESULTS/export``.
    timepoints : sequence of int, optional
        Time points to export; default all.

    Returns
    -------
    paths : list of Path
        The files written (for NIfTI, the label maps and their names TSVs).
    warnings : list of str
        What the format could not hold (regions overlapping on the grid are
        exported as the exclusive partition: the smaller region keeps a shared
        voxel).

    Raises
    ------
    InputError
        Results without label maps, a time point without a DICOM CT (SEG,
        RTSTRUCT), an unknown format or time point.
    """
    from .formats.nifti import write_label_map

    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}: use {', '.join(FORMATS)}")
    results = Path(results)
    listing = _listing(results)
    have = sorted(int(m["timepoint"]) for m in listing)
    chosen = have if timepoints is None else [int(t) for t in timepoints]
    bad = [t for t in chosen if t not in have]
    if bad:
        raise InputError(f"time point {bad[0]} is not among the label maps of {results} "
                         f"(have {', '.join(str(t) for t in have)})")
    out = Path(out_dir) if out_dir is not None else results / "export"
    loaded = [(n, *read_used_labels(results, n)) for n in chosen]
    refs = {n: _ct_files(entry, n, fmt) for n, _, entry in loaded} if fmt != "nifti" else {}
    written: list[Path] = []
    warnings: list[str] = []
    for n, lab, entry in loaded:
        target = out / FORMATS[fmt].format(n=n)
        if lab.overlaps and fmt != "nifti":
            names = ", ".join(lab.names[k] for k in sorted(lab.overlaps))
            warnings.append(f"time point {n}: {names} overlap other regions; the {fmt.upper()} holds the "
                            "exclusive partition (a shared voxel belongs to the smaller region); their own masks "
                            f"are {', '.join(m['file'] for m in entry['own_masks'])}")
        if fmt == "nifti":
            written.append(write_label_map(lab, target))
            written.append(target.with_name(f"tp{n}_labels.tsv"))
        elif fmt == "seg":
            from .formats.dicomseg import write_dicom_seg

            written.append(write_dicom_seg(lab, refs[n], target, series_description=f"spectrack regions tp{n}",
                                           series_number=900 + n))
        else:
            from .formats.rtstruct import write_rtstruct

            written.append(write_rtstruct(lab, refs[n], target, structure_set_label=f"spectrack tp{n}",
                                          series_number=950 + n))
    if out.parent.resolve() == results.resolve():  # RESULTS/export: replaced with the results by a later run
        from ..io_utils import record_outputs

        record_outputs(results, (out.name,), command="spectrack export")
    return written, warnings
