"""The commands that quantify studies: ``spectrack quantify`` (one study) and ``spectrack batch`` (many, on
Dask). Registered on the app by :mod:`spectrack.cli.root`.
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from .checks import _check_writable_folder
from .options import _CONFIG_HELP, _STUDY_HELP, _study_arg, study_options
from .output import _console, _progress_log, _run_with_progress, _said_study_file, _say, _warn, _wrote, print_table


@study_options()
def quantify(
    study: List[Path] = typer.Argument(..., help=_STUDY_HELP),
    out: Path = typer.Option(Path("results"), "--out", "-o", help="Output folder."),
    config: Optional[Path] = typer.Option(None, "--config", help=_CONFIG_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the table."),
    force: bool = typer.Option(False, "--force", help="Replace files in the output folder that spectrack did not write "
                                                       "(refused by default)."),
    *,
    options,
):
    """Quantify %ID per region and time point; write regions.csv, study.json and the report."""
    from ..pipeline import run_study

    settings = options.settings(config)
    res = _run_with_progress(run_study, _study_arg(study), settings, out, command=["spectrack"] + sys.argv[1:],
                             force=force)
    if not quiet:
        print_table(res.table)
    _said_study_file(res.metadata)
    _warn(res.metadata.get("warnings", []))
    _wrote(res.outputs.values())


def max_workers() -> int:
    """The most worker processes ``batch --workers`` starts: 4 per core (each is a Python process holding a study)."""
    import os

    return 4 * (os.cpu_count() or 1)


@study_options(exclude=("subject",))
def batch(
    root: Optional[Path] = typer.Argument(None, help="Folder with one study per subfolder (DICOM and/or NIfTI)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (studies/, logs/, cohort.csv, report)."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", "-m",
                                            help="CSV/TSV or TOML manifest: path, study and settings columns "
                                                 "(per-study overrides); instead of ROOT."),
    config: Optional[Path] = typer.Option(None, "--config", help=_CONFIG_HELP + " Manifest columns override both."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=1, show_default="one per core",
                                          help="Worker processes of the embedded Dask cluster."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler",
                                            help="Address of an existing Dask scheduler (tcp://host:8786) "
                                                 "instead of an embedded cluster."),
    force: bool = typer.Option(False, "--force", help="Recompute studies whose results are up to date."),
    *,
    options,
):
    """Quantify many studies in parallel (Dask) with the study options of quantify; write per-study results,
    the cohort table and report."""
    from ..batch import run_batch
    from ..errors import BatchError

    if (root is None) == (manifest is None):
        raise typer.BadParameter("give a ROOT folder or --manifest FILE (one of them)", param_hint="ROOT")
    if scheduler and workers:
        raise typer.BadParameter("--workers sets the embedded cluster; with --scheduler the workers are the "
                                 "scheduler's", param_hint="'--workers'")
    if workers is not None and workers > max_workers():
        raise typer.BadParameter(f"must be between 1 and {max_workers()} (4 worker processes per core of this "
                                 f"machine; each holds a study in memory), got {workers}", param_hint="'--workers'")
    settings = options.settings(config)
    _check_writable_folder(out)
    err = _console(stderr=True)
    marks = {"done": ("done", "green"), "skipped": ("skipped (unchanged)", "dim"), "failed": ("failed", "red")}

    def line(outcome):
        parts = [f"{outcome.study}: ", marks[outcome.status]]
        if outcome.status == "done":
            parts.append(f" ({outcome.seconds:.1f} s)")
        elif outcome.status == "failed":
            parts.append(f": {outcome.reason}")
        return parts

    run = functools.partial(run_batch, root, out, settings=settings, manifest=manifest, workers=workers,
                            scheduler=scheduler, force=force, report=settings.report,
                            command=["spectrack"] + sys.argv[1:])
    if err.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, transient=True) as prog:
            task = prog.add_task("studies", total=None)

            def cb(outcome, n, total):
                prog.update(task, completed=n, total=total)
                if outcome is not None:
                    _say(*line(outcome), console=prog.console)

            summary = run(progress=cb)
    else:
        t0 = time.perf_counter()
        with _progress_log() as log:
            def cb(outcome, n, total):
                if outcome is None:
                    log.info("batch: %d studies", total)
                else:
                    what = {"done": f"done in {outcome.seconds:.1f} s", "skipped": "skipped (unchanged)",
                            "failed": f"failed: {outcome.reason}"}[outcome.status]
                    log.info("batch: [%d/%d] %s: %s (%.1f s elapsed)", n, total, outcome.study, what,
                             time.perf_counter() - t0)

            summary = run(progress=cb)
            log.info("batch: finished (%.1f s elapsed)", time.perf_counter() - t0)
    con = _console()
    c = summary.counts()
    n = len(summary.outcomes)
    _say(f"{n} studies: {c['done']} done, {c['skipped']} skipped, {c['failed']} failed ({summary.seconds:.1f} s)",
         console=con)
    for o in summary.failed:
        _say(f"  failed {o.study}: {o.reason}", console=con)
    stale = [o.study for o in summary.failed if o.stale]
    if stale:
        _say(f"kept the earlier result of {len(stale)} failed stud{'y' if len(stale) == 1 else 'ies'} "
             f"({', '.join(stale[:5])}{', ...' if len(stale) > 5 else ''}): marked stale in cohort.csv, "
             "left out of the statistics", console=con)
    if not summary.succeeded:
        _say(("nothing succeeded", "red"), f": all {n} studies failed, so no new cohort was computed"
             + (" (cohort.csv lists the stale earlier results)" if stale else
                ", and no cohort table or report was written")
             + f"; wrote {out / 'failures.csv'} and {out / 'batch.json'}", console=con)
        raise BatchError(f"all {n} studies failed, nothing was quantified: see {out / 'failures.csv'} and "
                         f"{out / 'logs'}")
    _say(f"wrote {out / 'cohort.csv'}, {out / 'cohort.parquet'}"
         + (f", {out / 'cohort_report.html'}" if "cohort_report.html" in summary.outputs else "")
         + f"; per study: {out / 'studies'}", console=con)
    if summary.failed:
        raise BatchError(f"{c['failed']} of {n} studies failed: see {out / 'failures.csv'} and {out / 'logs'}")
