"""The commands around one study's files: ``spectrack info`` (describe a study), ``resolution`` (measure a
point or line source), ``export`` (regions as DICOM-SEG, RTSTRUCT or NIfTI) and ``report`` (regenerate the
report of a results folder). Registered on the app by :mod:`spectrack.cli.root`.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .checks import _check_output_file, _check_writable_folder
from .options import _STUDY_HELP, _study_arg, study_options
from .output import _console, _say, _warn, _wrote


def _fmt_value(v) -> str:
    if hasattr(v, "isoformat") and not isinstance(v, str):  # datetime, date or time of day
        return v.isoformat(sep=" ") if hasattr(v, "date") and hasattr(v, "time") else v.isoformat()
    return str(v)


def timepoint_summary(study) -> list[dict]:
    """One row per time point: time, modality, grid, units, decay state, dose (``spectrack info``)."""
    rows = []
    for tp in study.timepoints:
        e = tp.emission
        start, inj = e.get("acquisition_start"), e.get("injection_time")
        after = f"{(start - inj).total_seconds() / 3600:+.2f} h" if start is not None and inj is not None else "?"
        img = e.image
        grid = ("x".join(str(n) for n in img.shape_ijk) + " @ " + "x".join(f"{v:.3g}" for v in img.spacing_mm)
                + " mm")
        dose = e.get("injected_activity_mbq")
        rows.append({
            "tp": str(tp.index),
            "acquisition start": f"{start:%Y-%m-%d %H:%M:%S}" if start is not None else "?",
            "after injection": after,
            "modality": e.modality + ("+CT" if tp.ct is not None else ""),
            "grid": grid,
            "units": str(e.get("units") or "?"),
            "decay": str(e.get("decay_correction") or "?"),
            "dose": f"{dose:.4g} MBq" if dose is not None else "?",
            "nuclide": str(e.get("radionuclide") or "?"),
        })
    return rows


@study_options(include=("times_h", "subject"))
def info(
    study: List[Path] = typer.Argument(..., help=_STUDY_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the full description as JSON."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Every metadata value with the tag it came from."),
    *,
    options,
):
    """Summarise the time points (one line each); --verbose: every value and the tag it came from."""
    import json

    from ..load import load_study
    from ..pipeline import _json_default, describe_study

    s = options.settings()
    st = load_study(_study_arg(study), times_h=s.times_h, subject=s.subject)
    if as_json:
        typer.echo(json.dumps(describe_study(st), indent=2, default=_json_default))
        return
    con = _console()
    _say(("subject", "bold"), f" {st.subject}  ", ("time points", "bold"), f" {len(st.timepoints)}  ",
         ("path", "bold"), f" {st.path}", console=con)
    if not verbose:
        rows = timepoint_summary(st)
        cols = list(rows[0]) if rows else []
        width = {c: max([len(c)] + [len(r[c]) for r in rows]) for c in cols}
        _say(("  ".join(c.ljust(width[c]) for c in cols).rstrip(), "bold"), console=con)
        for r in rows:
            _say("  ".join(r[c].ljust(width[c]) for c in cols).rstrip(), console=con)
        if st.extra_series:
            _say(f"{len(st.extra_series)} CT series without an emission scan", console=con)
        _say(("(spectrack info --verbose: every value and the tag it came from)", "dim"), console=con)
        _warn(st.warnings)
        return
    from rich.table import Table
    from rich.text import Text

    for tp in st.timepoints:
        con.rule(Text(f"time point {tp.index}: {_fmt_value(tp.acquisition_start)}"))
        for s_ in (tp.emission, tp.ct):
            if s_ is None:
                _say("  CT: none", console=con)
                continue
            t = Table(title=Text(s_.describe()), title_justify="left", show_edge=False, pad_edge=False)
            t.add_column("key")
            t.add_column("value", overflow="fold")
            t.add_column("from", overflow="fold", style="dim")
            for k, v in sorted(s_.meta.items()):
                if k == "pair_with":
                    continue
                t.add_row(Text(k), Text(_fmt_value(v.value)), Text(str(v.source)))
            con.print(t)
    _warn(st.warnings)


def resolution(
    image: Path = typer.Argument(..., help="Reconstructed image of a point or line source (DICOM or NIfTI), "
                                           "reconstructed like the study."),
    out: Path = typer.Option(..., "--out", "-o", help="Resolution file to write (JSON), for quantify "
                                                      "--pvc --resolution."),
    source: str = typer.Option("point", help="point | line."),
    line_axis: Optional[str] = typer.Option(None, help="Line source only: the image axis it runs along (i, j, k)."),
):
    """Measure the reconstructed resolution (FWHM per axis) and store it for recovery correction."""
    from ..kinetics.resolution import resolution_from_image

    if source not in ("point", "line"):
        raise typer.BadParameter(f"must be point or line, got {source!r}", param_hint="'--source'")
    if (line_axis is not None or source == "line") and line_axis not in ("i", "j", "k"):
        raise typer.BadParameter(f"a line source needs i, j or k (the image axis it runs along), got {line_axis!r}",
                                 param_hint="'--line-axis'")
    from ..io_utils import write_errors

    _check_output_file(out)
    with write_errors(out):
        r = resolution_from_image(image, out, source=source, line_axis=line_axis)
    fw = ", ".join("-" if v != v else f"{v:.2f}" for v in r["fwhm_mm"])
    _say(f"FWHM (i, j, k) = ({fw}) mm; {r['method']}")
    _wrote([out])


def export(
    results: Path = typer.Argument(..., help="Results folder of spectrack quantify (study.json, labels/)."),
    fmt: str = typer.Option(..., "--format", "-f", help="seg (DICOM-SEG) | rtstruct (RT Structure Set) | nifti."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", show_default="RESULTS/export",
                                       help="Folder to write into."),
    timepoint: Optional[List[int]] = typer.Option(None, "--timepoint", "-t", show_default="all",
                                                  help="Time point to export (repeat for several)."),
):
    """Write the regions each time point was quantified with as DICOM-SEG, RTSTRUCT (on its CT) or NIfTI."""
    from ..regions.export import FORMATS, export_regions

    if fmt not in FORMATS:
        raise typer.BadParameter(f"must be one of {', '.join(('seg', 'rtstruct', 'nifti'))}, got {fmt!r}",
                                 param_hint="'--format'")
    from ..io_utils import write_errors

    with write_errors(out if out is not None else results / "export"):
        paths, warnings = export_regions(results, fmt, out, timepoints=timepoint or None)
    _warn(warnings)
    _wrote(paths)


def report(
    results: Path = typer.Argument(..., help="Results folder of spectrack quantify (regions.csv, study.json)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", show_default="the results folder",
                                       help="Where to write report.html and figures/."),
    log_y: bool = typer.Option(False, "--log-y", help="Logarithmic %ID axis in the time-activity plots."),
):
    """Regenerate the HTML report (report.html, figures/*.png) from a results folder."""
    from ..report import report_from_results

    _check_writable_folder(out if out is not None else results, "spectrack report")
    outputs = report_from_results(results, out_dir=out, log_y=log_y)
    _say(f"wrote {outputs['report.html']} and {len(outputs) - 1} figure(s) in "
         f"{outputs['report.html'].parent / 'figures'}")
