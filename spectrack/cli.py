"""The ``spectrack`` command line: thin wrappers around one library call each.

Exit codes: see :mod:`spectrack.errors` (``spectrack --help`` lists them).
Bad input prints one ``spectrack: error: ...`` line, never a traceback; a bad
option value is a usage error (exit 2).

The study options (``--labels``, ``--sensitivity``, ``--auto-regions``...)
are defined once, by the fields of :class:`spectrack.settings.Settings`, and
added to every command that runs studies with :func:`study_options`; a
settings file (``--config``) takes the same keys. Nothing the user or a file
supplies is ever parsed as rich markup (see :func:`_say`).

Progress goes to stderr: a rich bar on a terminal, otherwise (batch jobs,
``nohup``, schedulers, pipes) one log line per stage with the elapsed time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import logging
import math
import sys
import time
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

_STUDY_HELP = ("Study folder (DICOM and/or NIfTI), study file, or NIfTI files. A study file in the folder "
               "(spectrack.toml) gives the settings that no option gives.")
_CONFIG_HELP = ("Settings file (TOML/JSON) with the study options' keys (e.g. sensitivity = 30); "
                "options given on the command line override it.")


# ---------------------------------------------------------------- output without markup

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
    from .settings import option_name

    used = ", ".join(option_name(k)[2:] for k in rec["used"]) or "nothing"
    line = [("study file:", "bold"), f" {rec['path']} gave {used}"]
    if rec["overridden"]:
        line.append(f"; overridden by the options: {', '.join(option_name(k)[2:] for k in rec['overridden'])}")
    _say(*line, err=True)


# ---------------------------------------------------------------- the shared study options

_OPTION_TYPES = {"float": Optional[float], "int": Optional[int], "bool": Optional[bool], "str": Optional[str]}


def _study_option_params(include, exclude) -> list[inspect.Parameter]:
    """One typer option per :class:`~spectrack.settings.Settings` field with CLI help."""
    from .settings import Settings, option_name

    params = []
    for f in dataclasses.fields(Settings):
        if "help" not in f.metadata or f.name in exclude or (include is not None and f.name not in include):
            continue
        kind = f.type.replace(" | None", "")
        ann = Optional[str] if kind.startswith("list") else _OPTION_TYPES[kind]
        flag = option_name(f.name)
        decls = [f"{flag}/--no-{flag[2:]}"] if kind == "bool" else [flag]
        if f.metadata.get("short"):
            decls.append(f.metadata["short"])
        if f.metadata.get("shown"):
            shown = f.metadata["shown"]
        elif kind == "bool":
            shown = flag[2:] if f.default else f"no-{flag[2:]}"
        else:
            shown = str(f.default)
        help_ = f.metadata["help"]
        if flag[2:] != f.name.replace("_", "-"):
            help_ += f" Settings-file key {flag[2:]} or {f.name}."
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=ann,
                                        default=typer.Option(None, *decls, help=help_, show_default=shown)))
    return params


def study_options(*, include=None, exclude=()):
    """Add the study options (the :class:`~spectrack.settings.Settings` fields) to a command.

    The command takes a keyword ``options``: the options given on the command
    line, validated into a :class:`StudyOptions`. Use it as the decorator
    below ``@app.command()``.

    Parameters
    ----------
    include : iterable of str, optional
        Only these fields (default: all of them).
    exclude : iterable of str
        Fields that make no sense for the command (``subject`` for a batch).
    """

    def deco(fn):
        extra = _study_option_params(include, exclude)
        names = [p.name for p in extra]
        sig = inspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != "options"]
        ctx = inspect.Parameter("_typer_ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)

        @functools.wraps(fn)
        def command(**kwargs):
            given = {n: kwargs.pop(n) for n in names}
            opts = StudyOptions({k: v for k, v in given.items() if v is not None}, kwargs.pop("_typer_ctx"))
            return fn(**kwargs, options=opts)

        params = own + extra + [ctx]
        command.__signature__ = sig.replace(parameters=params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return deco


@dataclasses.dataclass
class StudyOptions:
    """The study options given on the command line (``{field: value}``) and the click context."""

    given: dict
    ctx: object = None

    def settings(self, config: Path | None = None, *, base=None):
        """:class:`~spectrack.settings.Settings`: ``base`` (or the settings file), then the given options.

        A bad option value is a usage error (exit 2) naming the option; a bad
        settings file is an :class:`~spectrack.errors.InputError` (exit 3).
        """
        from .settings import (Settings, SettingError, option_name, read_settings_file, settings_from_mapping,
                               with_given)

        try:
            cli = settings_from_mapping(self.given, where="options")
        except SettingError as e:
            raise typer.BadParameter(e.problem, ctx=self.ctx, param_hint=f"'{option_name(e.key)}'") from None
        if base is None:
            base = read_settings_file(config) if config else Settings()
        # what is given here (options, settings file) wins over each study's study file
        return with_given(dataclasses.replace(base, **{k: getattr(cli, k) for k in self.given}),
                          base.given | set(self.given))


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


# ---------------------------------------------------------------- commands

def _print_version(value: bool):
    if value:
        from ._version import __version__

        typer.echo(f"spectrack {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.",
                                       callback=_print_version, is_eager=True)):
    """Percent injected dose per region over time from SPECT/CT (and PET) series."""


def _study_arg(study: list[Path]):
    return study[0] if len(study) == 1 else list(study)


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


@app.command()
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

    from .load import load_study
    from .pipeline import _json_default, describe_study

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


@app.command()
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
    from .pipeline import run_study

    settings = options.settings(config)
    res = _run_with_progress(run_study, _study_arg(study), settings, out, command=["spectrack"] + sys.argv[1:],
                             force=force)
    if not quiet:
        print_table(res.table)
    _said_study_file(res.metadata)
    _warn(res.metadata.get("warnings", []))
    _wrote(res.outputs.values())


@app.command()
def demo(
    out: Path = typer.Option(Path("results/demo"), "--out", "-o", help="Output folder."),
    force: bool = typer.Option(False, "--force", help="Replace files in the output folder that spectrack did not write "
                                                       "(refused by default)."),
):
    """Run the main job on the bundled sample study and print the %ID table."""
    from .phantom.sample import sample_study

    info_ = sample_study()
    _say(f"sample study: {info_['study']} (settings in its spectrack.toml, truth in {info_['truth']})")
    from .pipeline import run_study
    from .settings import Settings

    res = _run_with_progress(run_study, info_["study"], Settings(), out, command=["spectrack", "demo"], force=force)
    print_table(res.table)
    _warn(res.metadata.get("warnings", []))
    _wrote(res.outputs.values())


@app.command()
def phantom(
    out: Path = typer.Argument(..., help="Folder to write the phantom study into."),
    preset: str = typer.Option("nhp", help="rat | nhp | human."),
    seed: int = typer.Option(0, help="Random seed (geometry jitter, noise, file names)."),
    units: str = typer.Option("counts", help="counts | bqml."),
    psf_fwhm_mm: float = typer.Option(0.0, help="Gaussian PSF FWHM (mm); 0 = none."),
    noise: bool = typer.Option(False, "--noise/--no-noise", help="Poisson noise on counts."),
    acquisition: str = typer.Option("exact", help="exact (ideal image, optional Gaussian blur and noise) | "
                                                  "realistic (projection with attenuation and collimator blur, "
                                                  "noise on the projections, OSEM)."),
    vertebrae: str = typer.Option("continuous", help="continuous (a bone shell around the canal) | discrete "
                                                     "(separate vertebral bodies with discs, their true positions "
                                                     "in truth.json; automatic regions then cut the canal levels "
                                                     "at the vertebrae)."),
    intracranial_csf: bool = typer.Option(False, "--intracranial-csf/--no-intracranial-csf",
                                          help="Draw lateral ventricles and a cisterna magna as their own "
                                               "compartment, csf_intracranial (off: brain holds them)."),
    force: bool = typer.Option(False, "--force", help="Replace files in the output folder that spectrack did not write "
                                                       "(refused by default)."),
):
    """Write a digital phantom study (DICOM export, NIfTI study, labels, exact truth, and a study file
    spectrack.toml so that 'spectrack quantify OUT' needs no option)."""
    from .phantom import make_study
    from .settings import SPECIES

    if preset not in SPECIES:
        raise typer.BadParameter(f"must be one of {', '.join(SPECIES)}, got {preset!r}", param_hint="'--preset'")
    if units not in ("counts", "bqml"):
        raise typer.BadParameter(f"must be counts or bqml, got {units!r}", param_hint="'--units'")
    if acquisition not in ("exact", "realistic"):
        raise typer.BadParameter(f"must be exact or realistic, got {acquisition!r}", param_hint="'--acquisition'")
    if vertebrae not in ("continuous", "discrete"):
        raise typer.BadParameter(f"must be continuous or discrete, got {vertebrae!r}", param_hint="'--vertebrae'")
    from .settings import _RANGES

    lo, hi, unit = _RANGES["seed"]
    if not lo <= seed <= hi:
        raise typer.BadParameter(f"must be zero or positive, got {seed}" if seed < 0 else
                                 f"must be between {lo} and {hi} {unit}, got {seed}", param_hint="'--seed'")
    lo, hi, unit = _RANGES["psf_fwhm_mm"]
    if not math.isfinite(psf_fwhm_mm):
        raise typer.BadParameter(f"must be a finite number, got {psf_fwhm_mm}", param_hint="'--psf-fwhm-mm'")
    if not lo <= psf_fwhm_mm <= hi:
        raise typer.BadParameter(f"must be between {lo:g} and {hi:g} {unit} (0 = no blur), got {psf_fwhm_mm:g}",
                                 param_hint="'--psf-fwhm-mm'")
    from .io_utils import output_folder
    from .phantom.core import PHANTOM_OUTPUTS

    with output_folder(out, PHANTOM_OUTPUTS, force=force, command="spectrack phantom") as tmp:
        make_study(tmp, preset=preset, seed=seed, units=units, psf_fwhm_mm=psf_fwhm_mm, noise=noise,
                   study_file=True, acquisition=acquisition, vertebrae=vertebrae, intracranial_csf=intracranial_csf)
    _say(f"wrote phantom study to {out} (settings in {out / 'spectrack.toml'}, truth in {out / 'truth.json'}); "
         f"quantify it with: spectrack quantify {out}")


@app.command()
def resolution(
    image: Path = typer.Argument(..., help="Reconstructed image of a point or line source (DICOM or NIfTI), "
                                           "reconstructed like the study."),
    out: Path = typer.Option(..., "--out", "-o", help="Resolution file to write (JSON), for quantify "
                                                      "--pvc --resolution."),
    source: str = typer.Option("point", help="point | line."),
    line_axis: Optional[str] = typer.Option(None, help="Line source only: the image axis it runs along (i, j, k)."),
):
    """Measure the reconstructed resolution (FWHM per axis) and store it for recovery correction."""
    from .kinetics.resolution import resolution_from_image

    if source not in ("point", "line"):
        raise typer.BadParameter(f"must be point or line, got {source!r}", param_hint="'--source'")
    if (line_axis is not None or source == "line") and line_axis not in ("i", "j", "k"):
        raise typer.BadParameter(f"a line source needs i, j or k (the image axis it runs along), got {line_axis!r}",
                                 param_hint="'--line-axis'")
    from .io_utils import write_errors

    _check_output_file(out)
    with write_errors(out):
        r = resolution_from_image(image, out, source=source, line_axis=line_axis)
    fw = ", ".join("-" if v != v else f"{v:.2f}" for v in r["fwhm_mm"])
    _say(f"FWHM (i, j, k) = ({fw}) mm; {r['method']}")
    _wrote([out])


def max_workers() -> int:
    """The most worker processes ``batch --workers`` starts: 4 per core (each is a Python process holding a study)."""
    import os

    return 4 * (os.cpu_count() or 1)


def _first_existing(path: Path) -> Path:
    above = path
    while not above.exists() and above != above.parent:
        above = above.parent
    return above


def _probe_writable(out, where: Path) -> None:
    import os
    import tempfile

    from .errors import OutputError

    try:
        os.rmdir(tempfile.mkdtemp(prefix=".spectrack-probe-", dir=where))
    except OSError as e:
        raise OutputError(out, e.strerror or str(e)) from None


def _check_writable_folder(out: Path, command: str = "spectrack batch") -> None:
    """An output folder written into (batch, report): not a file, not under a file, writable; checked before
    any work."""
    import os

    from .errors import OutputError

    final = Path(os.path.abspath(out))
    if final.exists() and not final.is_dir():
        raise OutputError(out, f"it is a file, not a folder: give a folder (new, or one {command} wrote)")
    above = _first_existing(final)
    if not above.is_dir():
        raise OutputError(out, f"{above} is a file, not a folder: give a folder path")
    _probe_writable(out, above)


def _check_output_file(out: Path) -> None:
    """An output file (``resolution -o``): not a folder, not under a file, in a writable folder."""
    import os

    from .errors import OutputError

    final = Path(os.path.abspath(out))
    if final.is_dir():
        raise OutputError(out, "it is a folder: give a file name, such as resolution.json")
    above = _first_existing(final.parent)
    if not above.is_dir():
        raise OutputError(out, f"{above} is a file, not a folder: give a file path in a folder")
    _probe_writable(out, above)


@app.command()
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
    from .batch import run_batch
    from .errors import BatchError

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


@app.command()
def export(
    results: Path = typer.Argument(..., help="Results folder of spectrack quantify (study.json, labels/)."),
    fmt: str = typer.Option(..., "--format", "-f", help="seg (DICOM-SEG) | rtstruct (RT Structure Set) | nifti."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", show_default="RESULTS/export",
                                       help="Folder to write into."),
    timepoint: Optional[List[int]] = typer.Option(None, "--timepoint", "-t", show_default="all",
                                                  help="Time point to export (repeat for several)."),
):
    """Write the regions each time point was quantified with as DICOM-SEG, RTSTRUCT (on its CT) or NIfTI."""
    from .regions.export import FORMATS, export_regions

    if fmt not in FORMATS:
        raise typer.BadParameter(f"must be one of {', '.join(('seg', 'rtstruct', 'nifti'))}, got {fmt!r}",
                                 param_hint="'--format'")
    from .io_utils import write_errors

    with write_errors(out if out is not None else results / "export"):
        paths, warnings = export_regions(results, fmt, out, timepoints=timepoint or None)
    _warn(warnings)
    _wrote(paths)


@app.command()
def report(
    results: Path = typer.Argument(..., help="Results folder of spectrack quantify (regions.csv, study.json)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", show_default="the results folder",
                                       help="Where to write report.html and figures/."),
    log_y: bool = typer.Option(False, "--log-y", help="Logarithmic %ID axis in the time-activity plots."),
):
    """Regenerate the HTML report (report.html, figures/*.png) from a results folder."""
    from .report import report_from_results

    _check_writable_folder(out if out is not None else results, "spectrack report")
    outputs = report_from_results(results, out_dir=out, log_y=log_y)
    _say(f"wrote {outputs['report.html']} and {len(outputs) - 1} figure(s) in "
         f"{outputs['report.html'].parent / 'figures'}")


# ---------------------------------------------------------------- entry point

def main(args=None) -> int:
    """Entry point: run the CLI, turning domain errors into one line and an exit code."""
    from .errors import SpectrackError

    cmd = typer.main.get_command(app)
    try:
        rv = cmd.main(args=args, prog_name="spectrack", standalone_mode=False)
        return int(rv) if isinstance(rv, int) else 0
    except SpectrackError as e:
        _say(("spectrack: error:", "red"), f" {e}", err=True)
        return e.exit_code
    except typer.Exit as e:
        return int(getattr(e, "exit_code", 0) or 0)
    except (typer.Abort, KeyboardInterrupt):
        _say("spectrack: interrupted", err=True)
        return 130
    except Exception as e:
        # click (vendored or not) usage errors: print usage and the message, exit 2
        if hasattr(e, "show") and hasattr(e, "exit_code"):
            e.show()
            return int(e.exit_code)
        raise


def _entry():  # console script and python -m spectrack
    sys.exit(main())


if __name__ == "__main__":
    _entry()
