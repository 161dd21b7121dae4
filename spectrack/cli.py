"""The ``spectrack`` command line: thin wrappers around one library call each.

Exit codes: see :mod:`spectrack.errors` (``spectrack --help`` lists them).
Bad input prints one ``spectrack: error: ...`` line, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from .errors import EXIT_CODES

_EXIT_HELP = "Exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()) + "; 130 cancelled."

app = typer.Typer(
    name="spectrack",
    help="Percent injected dose per region over time from SPECT/CT (and PET) series.\n\n" + _EXIT_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

_DT_HELP = "ISO 8601, e.g. 2026-03-14T21:40:00"


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _warn(lines):
    con = _console(stderr=True)
    for w in lines:
        con.print(f"[yellow]warning:[/yellow] {w}")


def _print_version(value: bool):
    if value:
        from ._version import __version__

        typer.echo(f"spectrack {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.",
                                       callback=_print_version, is_eager=True)):
    """Percent injected dose per region over time from SPECT/CT (and PET) series."""


@app.command()
def info(
    study: List[Path] = typer.Argument(..., help="Study folder (DICOM and/or NIfTI), study file, or NIfTI files."),
    times_h: Optional[str] = typer.Option(None, "--times-h", help="Scan times after injection (h), comma-separated."),
    as_json: bool = typer.Option(False, "--json", help="Print the description as JSON."),
):
    """Show the series, time points and every metadata value with the tag it came from."""
    import json

    from .load import load_study
    from .pipeline import _json_default, describe_study
    from .settings import settings_from_mapping

    s = settings_from_mapping({"times_h": times_h}, where="options")
    st = load_study(study[0] if len(study) == 1 else list(study), times_h=s.times_h)
    desc = describe_study(st)
    if as_json:
        typer.echo(json.dumps(desc, indent=2, default=_json_default))
        return
    from rich.table import Table

    con = _console()
    con.print(f"[bold]subject[/bold] {st.subject}  [bold]time points[/bold] {len(st.timepoints)}  "
              f"[bold]path[/bold] {st.path}")
    for tp in st.timepoints:
        con.rule(f"time point {tp.index}: {tp.acquisition_start:%Y-%m-%d %H:%M:%S}")
        for s_ in (tp.emission, tp.ct):
            if s_ is None:
                con.print("  CT: none")
                continue
            t = Table(title=s_.describe(), title_justify="left", show_edge=False, pad_edge=False)
            t.add_column("key")
            t.add_column("value", overflow="fold")
            t.add_column("from", overflow="fold", style="dim")
            for k, v in sorted(s_.meta.items()):
                if k == "pair_with":
                    continue
                val = v.value
                if hasattr(val, "isoformat") and not isinstance(val, str):  # datetime, date or time of day
                    val = val.isoformat(sep=" ") if hasattr(val, "date") and hasattr(val, "time") else val.isoformat()
                t.add_row(k, str(val), v.source)
            con.print(t)
    _warn(st.warnings)


@app.command()
def quantify(
    study: List[Path] = typer.Argument(..., help="Study folder (DICOM and/or NIfTI), study file, or NIfTI files."),
    labels: Optional[Path] = typer.Option(None, "--labels", "-l", help="Regions: NIfTI label map (names in "
                                          "<stem>.tsv), DICOM-SEG, RTSTRUCT or a TotalSegmentator folder."),
    out: Path = typer.Option(Path("results"), "--out", "-o", help="Output folder."),
    config: Optional[Path] = typer.Option(None, "--config", help="Settings file (TOML/JSON); options override it."),
    calibration: Optional[str] = typer.Option(None, help="auto | image (Bq/mL) | sensitivity | fov."),
    sensitivity: Optional[float] = typer.Option(None, "--sensitivity", help="System sensitivity, cps/MBq."),
    fov_timepoint: Optional[int] = typer.Option(None, help="Time point for field-of-view normalisation."),
    injected_mbq: Optional[float] = typer.Option(None, help="Injected activity (MBq); overrides headers."),
    injection_time: Optional[str] = typer.Option(None, help=f"Injection date-time, {_DT_HELP}."),
    injected_measured_at: Optional[str] = typer.Option(None, help="When --injected-mbq was measured (default: at injection)."),
    residual_mbq: Optional[float] = typer.Option(None, help="Residual activity in syringe/lines (MBq)."),
    residual_time: Optional[str] = typer.Option(None, help="When the residual was measured (default: injection)."),
    half_life_h: Optional[float] = typer.Option(None, help="Physical half-life (h); overrides headers."),
    radionuclide: Optional[str] = typer.Option(None, help="Radionuclide (e.g. Tc-99m); half-life from the table."),
    duration_s: Optional[float] = typer.Option(None, help="Acquisition duration (s); overrides headers."),
    times_h: Optional[str] = typer.Option(None, "--times-h", help="Scan times after injection (h), comma-separated."),
    subject: Optional[str] = typer.Option(None, help="Subject identifier."),
    register: Optional[bool] = typer.Option(None, "--register/--no-register", help="Register time points to the reference CT."),
    reference: Optional[int] = typer.Option(None, help="Reference time point for registration (labels live there)."),
    label_resampling: Optional[str] = typer.Option(None, help="Labels through registration: linear (default: "
                                                   "each region interpolated linearly, largest wins; alias vote) | "
                                                   "nearest | gaussian."),
    auto_regions: Optional[str] = typer.Option(None, help="Automatic regions: rat | nhp | human."),
    canal_boundaries_mm: Optional[str] = typer.Option(None, help="Canal level boundaries, 3 distances (mm) along "
                                                      "the canal from its sacral end, comma-separated."),
    neuraxis_margin_mm: Optional[float] = typer.Option(None, help="Margin (mm) around the canal for the neuraxis "
                                                       "profile (PSF spill)."),
    species: Optional[str] = typer.Option(None, help="rat | nhp | human | mouse (recorded; sets preset defaults)."),
    pvc: Optional[bool] = typer.Option(None, "--pvc/--no-pvc", help="GTM recovery (partial-volume) correction."),
    psf_fwhm_mm: Optional[float] = typer.Option(None, help="Reconstructed system resolution FWHM (mm) for --pvc."),
    uncertainty_draws: Optional[int] = typer.Option(None, help="Monte Carlo draws for 95 % intervals (0 = none)."),
    calibration_cv: Optional[float] = typer.Option(None, help="Calibration coefficient of variation (default 0.027)."),
    seed: Optional[int] = typer.Option(None, help="Random seed of the Monte Carlo intervals."),
    report: Optional[bool] = typer.Option(None, "--report/--no-report", help="Write the HTML report."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the table."),
):
    """Quantify %ID per region and time point; write regions.csv and study.json."""
    from .pipeline import run_study
    from .settings import Settings, read_settings_file, settings_from_mapping

    base = read_settings_file(config).to_dict() if config else {}
    opts = dict(labels=str(labels) if labels else None, calibration=calibration,
                sensitivity_cps_per_mbq=sensitivity, fov_timepoint=fov_timepoint, injected_mbq=injected_mbq,
                injection_time=injection_time, injected_measured_at=injected_measured_at,
                residual_mbq=residual_mbq, residual_time=residual_time, half_life_h=half_life_h,
                radionuclide=radionuclide, duration_s=duration_s, times_h=times_h, subject=subject,
                register=register, reference=reference, label_resampling=label_resampling, auto_regions=auto_regions,
                canal_boundaries_mm=canal_boundaries_mm, neuraxis_margin_mm=neuraxis_margin_mm, report=report, species=species,
                pvc=pvc, psf_fwhm_mm=psf_fwhm_mm, uncertainty_draws=uncertainty_draws,
                calibration_cv=calibration_cv, seed=seed)
    base.update({k: v for k, v in opts.items() if v is not None})
    base.pop("extra", None)
    defaults = Settings().to_dict()
    settings = settings_from_mapping({k: v for k, v in base.items() if v != defaults.get(k)}, where="options")
    res = _run_with_progress(run_study, study[0] if len(study) == 1 else list(study), settings, out,
                             command=["spectrack"] + sys.argv[1:])
    if not quiet:
        print_table(res.table)
    _warn(res.metadata.get("warnings", []))
    _console().print(f"wrote {', '.join(str(p) for p in res.outputs.values())}")


def _run_with_progress(fn, path, settings, out, command=None):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=_console(stderr=True), transient=True) as prog:
        task = prog.add_task("load", total=1.0)

        def cb(stage, frac):
            prog.update(task, description=stage, completed=frac)

        return fn(path, settings, out_dir=out, progress=cb, command=command)


def print_table(table) -> None:
    """Print %ID (decay-corrected) per region (rows) and time point (columns)."""
    from rich.table import Table

    df = table[table["kind"].isin(["region", "group", "fov"])]
    piv = df.pivot_table(index="region", columns="time_h", values="pct_id", sort=False)
    t = Table(title="%ID, decay-corrected to injection", title_justify="left")
    t.add_column("region")
    for c in piv.columns:
        t.add_column(f"{c:.2f} h", justify="right")
    for region, row in piv.iterrows():
        t.add_row(region, *[f"{v:.3f}" for v in row.values])
    _console().print(t)


@app.command()
def demo(
    out: Path = typer.Option(Path("results/demo"), "--out", "-o", help="Output folder."),
):
    """Run the main job on the bundled sample study and print the %ID table."""
    from .phantom.sample import sample_study

    info_ = sample_study()
    _console().print(f"sample study: {info_['path']} (truth in {info_['truth']})")
    from .pipeline import run_study
    from .settings import settings_from_mapping

    settings = settings_from_mapping(info_["settings"], where="sample study")
    res = _run_with_progress(run_study, info_["path"], settings, out, command=["spectrack", "demo"])
    print_table(res.table)
    _warn(res.metadata.get("warnings", []))
    _console().print(f"wrote {', '.join(str(p) for p in res.outputs.values())}")


@app.command()
def phantom(
    out: Path = typer.Argument(..., help="Folder to write the phantom study into."),
    preset: str = typer.Option("nhp", help="rat | nhp | human."),
    seed: int = typer.Option(0, help="Random seed (geometry jitter, noise, file names)."),
    units: str = typer.Option("counts", help="counts | bqml."),
    psf_fwhm_mm: float = typer.Option(0.0, help="Gaussian PSF FWHM (mm); 0 = none."),
    noise: bool = typer.Option(False, "--noise/--no-noise", help="Poisson noise on counts."),
):
    """Write a digital phantom study (DICOM export, NIfTI study, labels, exact truth)."""
    from .phantom import make_study

    make_study(out, preset=preset, seed=seed, units=units, psf_fwhm_mm=psf_fwhm_mm, noise=noise)
    _console().print(f"wrote phantom study to {out} (truth in {out / 'truth.json'})")


@app.command()
def batch(
    root: Optional[Path] = typer.Argument(None, help="Folder with one study per subfolder (DICOM and/or NIfTI)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (studies/, logs/, cohort.csv, report)."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", "-m",
                                            help="CSV/TSV or TOML manifest: path, study and Settings columns "
                                                 "(per-study overrides); instead of ROOT."),
    config: Optional[Path] = typer.Option(None, "--config", help="Settings file (TOML/JSON) for every study; "
                                                                 "manifest columns override it."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=1,
                                          help="Worker processes of the embedded Dask cluster (default: cores)."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler",
                                            help="Address of an existing Dask scheduler (tcp://host:8786) "
                                                 "instead of an embedded cluster."),
    force: bool = typer.Option(False, "--force", help="Recompute studies whose results are up to date."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write cohort_report.html and figures."),
):
    """Quantify many studies in parallel (Dask); write per-study results, cohort table and report."""
    from .batch import run_batch
    from .errors import BatchError
    from .settings import read_settings_file

    if (root is None) == (manifest is None):
        raise typer.BadParameter("give a ROOT folder or --manifest FILE (one of them)", param_hint="ROOT")
    if scheduler and workers:
        raise typer.BadParameter("--workers sets the embedded cluster; with --scheduler the workers are the "
                                 "scheduler's", param_hint="--workers")
    settings = read_settings_file(config) if config else None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    err = _console(stderr=True)
    marks = {"done": "[green]done[/green]", "skipped": "[dim]skipped (unchanged)[/dim]",
             "failed": "[red]failed[/red]"}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as prog:
        task = prog.add_task("studies", total=None)

        def cb(outcome, n, total):
            prog.update(task, completed=n, total=total)
            if outcome is not None:
                line = f"{outcome.study}: {marks[outcome.status]}"
                if outcome.status == "done":
                    line += f" ({outcome.seconds:.1f} s)"
                elif outcome.status == "failed":
                    line += f": {outcome.reason}"
                prog.console.print(line, markup=True, highlight=False)

        summary = run_batch(root, out, settings=settings, manifest=manifest, workers=workers, scheduler=scheduler,
                            force=force, progress=cb, report=report, command=["spectrack"] + sys.argv[1:])
    con = _console()
    c = summary.counts()
    con.print(f"{len(summary.outcomes)} studies: {c['done']} done, {c['skipped']} skipped, {c['failed']} failed "
              f"({summary.seconds:.1f} s)")
    for o in summary.failed:
        con.print(f"  failed {o.study}: {o.reason}", markup=False)
    con.print(f"wrote {out / 'cohort.csv'}, {out / 'cohort.parquet'}"
              + (f", {out / 'cohort_report.html'}" if report else "") + f"; per study: {out / 'studies'}")
    if summary.failed:
        raise BatchError(f"{c['failed']} of {len(summary.outcomes)} studies failed: see {out / 'failures.csv'} "
                         f"and {out / 'logs'}")


@app.command()
def report(
    results: Path = typer.Argument(..., help="Results folder of spectrack quantify (regions.csv, study.json)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Where to write report.html and figures/ "
                                                                  "(default: the results folder)."),
    log_y: bool = typer.Option(False, "--log-y", help="Logarithmic %ID axis in the time-activity plots."),
):
    """Regenerate the HTML report (report.html, figures/*.png) from a results folder."""
    from .report import report_from_results

    outputs = report_from_results(results, out_dir=out, log_y=log_y)
    _console().print(f"wrote {outputs['report.html']} and {len(outputs) - 1} figure(s) in "
                     f"{outputs['report.html'].parent / 'figures'}")


def main(args=None) -> int:
    """Entry point: run the CLI, turning domain errors into one line and an exit code."""
    from .errors import SpectrackError

    cmd = typer.main.get_command(app)
    try:
        rv = cmd.main(args=args, prog_name="spectrack", standalone_mode=False)
        return int(rv) if isinstance(rv, int) else 0
    except SpectrackError as e:
        _console(stderr=True).print(f"[red]spectrack: error:[/red] {e}", markup=True)
        return e.exit_code
    except typer.Exit as e:
        return int(getattr(e, "exit_code", 0) or 0)
    except (typer.Abort, KeyboardInterrupt):
        _console(stderr=True).print("spectrack: interrupted")
        return 130
    except Exception as e:
        # click (vendored or not) usage errors: print usage and the message, exit 2
        if hasattr(e, "show") and hasattr(e, "exit_code"):
            e.show()
            return int(e.exit_code)
        raise


def _entry():  # console script
    sys.exit(main())


if __name__ == "__main__":
    _entry()
