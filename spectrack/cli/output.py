"""Console output of the command line: plain lines without markup, the progress display, the %ID table.

Nothing the user or a file supplies is ever parsed as rich markup (see
:func:`_say`). Progress goes to stderr: a rich bar on a terminal, otherwise
(batch jobs, ``nohup``, schedulers, pipes) one log line per stage with the
elapsed time.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _say(*parts, err: bool = False, console=None) -> None:
    """Print one line; each part is plain text or ``(text, style)``, never parsed as markup.

    Paths, region names, file names and error messages come from the user
    and from files: ``[batch]``, ``scan[old]`` and ``[/x]`` must print as
    written.
    """
    from rich.text import Text

    (console or _console(stderr=err)).print(Text.assemble(*[str(p) if isinstance(p, Path) else p for p in parts]))


def _warn(lines) -> None:
    con = _console(stderr=True)
    for w in lines:
        _say(("warning:", "yellow"), " ", str(w), console=con)


def _wrote(outputs) -> None:
    """Say what was written; the per-time-point label maps (``labels/``) as one entry."""
    outputs = [Path(p) for p in outputs]
    label_dirs = {p.parent for p in outputs if p.parent.name == "labels" and p.name.startswith("tp")}
    shown, seen = [], set()
    for p in outputs:
        if p.parent in label_dirs:
            if p.parent not in seen:
                seen.add(p.parent)
                n = sum(1 for q in outputs if q.parent == p.parent and q.name.endswith("_labels.nii.gz"))
                shown.append(f"{p.parent}{'/'} ({n} label maps used, with names)")
            continue
        shown.append(str(p))
    _say("wrote ", ", ".join(shown))


def _said_study_file(metadata: dict) -> None:
    """One line on stderr naming the study file a run read and what it took from it."""
    rec = metadata.get("study_file")
    if not rec:
        return
    from ..settings import option_name

    used = ", ".join(option_name(k)[2:] for k in rec["used"]) or "nothing"
    line = [("study file:", "bold"), f" {rec['path']} gave {used}"]
    if rec["overridden"]:
        line.append(f"; overridden by the options: {', '.join(option_name(k)[2:] for k in rec['overridden'])}")
    _say(*line, err=True)


# ---------------------------------------------------------------- progress

@contextlib.contextmanager
def _progress_log():
    """Log records of ``spectrack.*`` at INFO to stderr, one line each, while the block runs."""
    logger = logging.getLogger("spectrack")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s spectrack: %(message)s", datefmt="%Y-%m-%d %H:%M:%S"))
    old = logger.level
    logger.addHandler(handler)
    if not logger.isEnabledFor(logging.INFO):
        logger.setLevel(logging.INFO)
    try:
        yield logging.getLogger("spectrack.progress")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


@contextlib.contextmanager
def _stage_progress(label: str):
    """A ``progress(stage, fraction)`` callback for :func:`spectrack.run_study`.

    On a terminal: a transient rich bar. Otherwise: one log line on stderr as
    each stage starts and when the run ends, with the elapsed time.
    """
    err = _console(stderr=True)
    if err.is_terminal:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}", markup=False), BarColumn(), TimeElapsedColumn(),
                      console=err, transient=True) as prog:
            task = prog.add_task("load", total=1.0)
            yield lambda stage, frac: prog.update(task, description=stage, completed=frac)
        return
    t0 = time.perf_counter()
    current: list = [None]

    def cb(stage, frac):
        if stage != current[0]:
            current[0] = stage
            log.info("%s: %s (%.1f s elapsed)", label, stage, time.perf_counter() - t0)

    with _progress_log() as log:
        yield cb
        log.info("%s: finished (%.1f s elapsed)", label, time.perf_counter() - t0)


def _run_with_progress(fn, path, settings, out, command=None, force=False):
    label = Path(path[0] if isinstance(path, list) else path).name
    with _stage_progress(label) as cb:
        return fn(path, settings, out_dir=out, progress=cb, command=command, force=force)


def print_table(table) -> None:
    """Print %ID (decay-corrected) per region (rows) and time point (columns)."""
    from rich.table import Table
    from rich.text import Text

    df = table[table["kind"].isin(["region", "group", "fov"])]
    piv = df.pivot_table(index="region", columns="time_h", values="pct_id", sort=False)
    t = Table(title="%ID, decay-corrected to injection", title_justify="left")
    t.add_column("region")
    for c in piv.columns:
        t.add_column(f"{c:.2f} h", justify="right")
    for region, row in piv.iterrows():
        t.add_row(Text(str(region)), *[f"{v:.3f}" for v in row.values])
    _console().print(t)
