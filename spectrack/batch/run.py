"""Run many studies through :func:`spectrack.run_study` on a Dask cluster.

Each study is one task. A task writes its results into a temporary folder
beside ``OUT/studies/<study>`` and renames it into place, so a study's folder
holds either a complete result or none. Every computed study writes
``OUT/logs/<study>.log`` (settings, warnings, and the error if it failed).

A study is skipped when ``OUT/studies/<study>/cache_key.json`` matches the
SHA-256 of its input files (names and contents), its settings and the
spectrack version; ``force=True`` recomputes. A study that fails loses any
previous result (it no longer matches the inputs) and is retried next run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import sys
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import InputError, SpectrackError
from ..settings import Settings, is_label_pattern
from .studies import BatchStudy, resolve_studies

__all__ = ["run_batch", "BatchSummary", "StudyOutcome", "run_one", "cache_key"]

CACHE_FILE = "cache_key.json"

log = logging.getLogger("spectrack.batch")

#: No dashboard, and the scheduler's small HTTP server on a free port rather
#: than 8787 (which another cluster may hold: that gives a warning).
QUIET_SCHEDULER = {"scheduler_kwargs": {"dashboard": False, "dashboard_address": "127.0.0.1:0"}}


@dataclass
class StudyOutcome:
    """What happened to one study of a batch.

    ``status`` is ``"done"`` (computed now), ``"skipped"`` (inputs and
    settings unchanged since the stored result) or ``"failed"`` (``reason``
    is the one-line error; ``error_type`` its class). A failed study whose
    earlier result is still in ``studies/<id>`` keeps it (``out_dir``) with
    ``stale`` True: the cohort table shows its rows marked stale.
    """

    study: str
    path: str
    status: str
    reason: str | None = None
    error_type: str | None = None
    exit_code: int = 0
    seconds: float = 0.0
    peak_rss_mb: float | None = None
    worker: str | None = None
    log: str | None = None
    out_dir: str | None = None
    cache_key: str | None = None
    n_warnings: int = 0
    stale: bool = False


@dataclass
class BatchSummary:
    """Result of :func:`run_batch`: one outcome per study and the cohort files."""

    out_dir: Path
    outcomes: list[StudyOutcome]
    studies: list[BatchStudy] = field(default_factory=list)
    outputs: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0

    def _with(self, status):
        return [o for o in self.outcomes if o.status == status]

    @property
    def done(self) -> list[StudyOutcome]:
        return self._with("done")

    @property
    def skipped(self) -> list[StudyOutcome]:
        return self._with("skipped")

    @property
    def failed(self) -> list[StudyOutcome]:
        return self._with("failed")

    @property
    def succeeded(self) -> list[StudyOutcome]:
        """Studies with a result (computed now or unchanged); empty when every study failed."""
        return [o for o in self.outcomes if o.status != "failed"]

    @property
    def exit_code(self) -> int:
        """0 when every study succeeded or was skipped, else :class:`~spectrack.errors.BatchError`'s 7."""
        from ..errors import BatchError

        return BatchError.exit_code if self.failed else 0

    def counts(self) -> dict[str, int]:
        return {"done": len(self.done), "skipped": len(self.skipped), "failed": len(self.failed)}


# ---------------------------------------------------------------- the task

def _input_files(path: Path) -> tuple[Path, list[Path]]:
    """(base folder, visible files) that a study's result depends on."""
    base = path if path.is_dir() else path.parent
    files = sorted(p for p in base.rglob("*") if p.is_file() and not p.name.startswith("."))
    return base, files


def cache_key(path, settings: dict) -> dict:
    """The cache record of a study: SHA-256 of every input file, settings, version.

    Parameters
    ----------
    path : path-like
        Study folder (or study file: then its whole folder is hashed).
    settings : dict
        ``Settings.to_dict()`` as run (with the label map path filled in).

    Returns
    -------
    dict
        ``{"key": hex digest, "inputs_sha256": {file: digest}, "settings": ...,
        "spectrack_version": ...}``.
    """
    from .._version import __version__
    from ..io_utils import nifti_stem, sha256_file

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist: check the study path")
    base, files = _input_files(path)
    inputs = {p.relative_to(base).as_posix(): sha256_file(p) for p in files}
    lab = settings.get("labels")
    if lab:
        lab = Path(lab)
        extra = [lab] + [lab.with_name(nifti_stem(lab) + e) for e in (".tsv", ".json")]
        for p in extra:
            if p.is_file() and not p.resolve().is_relative_to(base.resolve()):
                inputs[str(p.resolve())] = sha256_file(p)
    record = {"spectrack_version": __version__, "settings": settings, "inputs_sha256": inputs}
    blob = json.dumps(record, sort_keys=True, default=str).encode()
    return {"key": hashlib.sha256(blob).hexdigest(), **record}


def _stored_key(folder: Path) -> str | None:
    try:
        data = json.loads((folder / CACHE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (folder / "regions.csv").is_file():
        return None
    return data.get("key") if isinstance(data, dict) else None


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 1024


class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(f"{record.levelname.lower()}: {record.name}: {record.getMessage()}")


def _keep_last_good(outcome: dict, final: Path) -> dict:
    """A failed study's outcome keeps its last good result (``final`` holding ``regions.csv``), marked stale:
    it stays until a new one is complete, and the cohort table says it is old."""
    if (final / "regions.csv").is_file():
        outcome.update(out_dir=str(final), stale=True)
    return outcome


def run_one(spec: dict, out_root: str, force: bool = False) -> dict:
    """Run one study of a batch (the Dask task); never raises for a bad study.

    Parameters
    ----------
    spec : dict
        :meth:`BatchStudy.to_spec` (``study``, ``path``, ``settings``;
        optional ``command``).
    out_root : str
        The batch output folder.
    force : bool
        Recompute even when the stored cache key matches.

    Returns
    -------
    dict
        The fields of :class:`StudyOutcome`.
    """
    import datetime as dt
    import socket
    import traceback

    t0 = time.perf_counter()
    started = dt.datetime.now().replace(microsecond=0)
    sid = spec["study"]
    path = Path(spec["path"])
    out_root = Path(out_root)
    final = out_root / "studies" / sid
    log_path = out_root / "logs" / f"{sid}.log"
    worker = f"{socket.gethostname()}:{os.getpid()}"
    outcome = dict(study=sid, path=str(path), status="failed", worker=worker, out_dir=None)
    settings = dict(spec["settings"])
    lines: list[str] = []
    warn_lines: list[str] = []
    tb = None
    handler = _ListHandler()
    tmp = out_root / "studies" / f".tmp-{sid}-{uuid.uuid4().hex[:8]}"
    given = frozenset(spec.get("given") or ())
    try:
        from ..settings import apply_study_file, with_given

        # the study's own study file fills what the batch did not give (before the labels are looked for)
        effective, _ = apply_study_file(with_given(Settings(**settings), given), path)
        settings, given = effective.to_dict(), effective.given
        if settings.get("labels"):
            from ..settings import labels_for_study

            settings["labels"] = labels_for_study(settings["labels"], path)
        elif not settings.get("auto_regions") and path.exists():
            from .studies import find_label_map

            lab = find_label_map(path if path.is_dir() else path.parent)
            if lab is not None:
                settings["labels"] = str(lab)
        key = cache_key(path, settings)
        outcome["cache_key"] = key["key"]
        if not force and _stored_key(final) == key["key"]:
            outcome.update(status="skipped", out_dir=str(final), seconds=time.perf_counter() - t0,
                           peak_rss_mb=_peak_rss_mb(), log=str(log_path) if log_path.exists() else None)
            return outcome
        from ..pipeline import run_study, write_json

        spk = logging.getLogger("spectrack")
        spk.addHandler(handler)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                res = run_study(path, with_given(Settings(**settings), given), out_dir=tmp,
                                command=spec.get("command"))
        finally:
            spk.removeHandler(handler)
        warn_lines += [str(w) for w in res.metadata.get("warnings", [])]
        warn_lines += [str(w) for w in res.study.warnings if str(w) not in warn_lines]
        warn_lines += [f"{w.category.__name__}: {w.message} ({Path(w.filename).name}:{w.lineno})" for w in caught]
        write_json(tmp / CACHE_FILE, {**key, "study": sid, "path": str(path),
                                      "created": started.isoformat()})
        from ..io_utils import swap_folder

        swap_folder(tmp, final)
        outcome.update(status="done", out_dir=str(final))
    except SpectrackError as e:
        outcome.update(reason=str(e), error_type=type(e).__name__, exit_code=e.exit_code)
    except Exception as e:  # an unexpected error in one study must not stop the batch
        reason = " ".join(f"{type(e).__name__}: {e}".split())
        outcome.update(reason=reason, error_type=type(e).__name__, exit_code=1)
        tb = traceback.format_exc()
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if outcome["status"] == "failed":
        _keep_last_good(outcome, final)
    outcome["seconds"] = time.perf_counter() - t0
    outcome["peak_rss_mb"] = _peak_rss_mb()
    outcome["n_warnings"] = len(warn_lines)
    lines = [f"spectrack batch: study {sid}", f"path: {path}", f"worker: {worker}",
             f"started: {started.isoformat()}", f"seconds: {outcome['seconds']:.2f}",
             f"status: {outcome['status']}", f"cache key: {outcome.get('cache_key')}",
             "settings: " + json.dumps(settings, sort_keys=True, default=str),
             f"warnings ({len(warn_lines)}):"] + [f"  - {w}" for w in warn_lines]
    if handler.lines:
        lines += ["log:"] + [f"  {ln}" for ln in handler.lines]
    if outcome["status"] == "failed":
        lines.append(f"error ({outcome['error_type']}, exit code {outcome['exit_code']}): {outcome['reason']}")
        if tb:
            lines += ["traceback:", tb.rstrip()]
    from ..io_utils import atomic_write_text

    with contextlib.suppress(OSError):
        atomic_write_text(log_path, "\n".join(lines) + "\n")
        outcome["log"] = str(log_path)
    return outcome


# ---------------------------------------------------------------- the driver

@contextlib.contextmanager
def _client(workers: int | None, scheduler, n_tasks: int):
    """A dask.distributed Client: an embedded LocalCluster of processes, or an existing scheduler."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # a core dependency: only a broken environment lacks it
        raise InputError("spectrack batch needs dask.distributed, which this environment lacks: "
                         "pip install 'dask[distributed]' (or reinstall spectrack)") from None
    if scheduler is None:
        n = workers or max(1, min(os.cpu_count() or 1, n_tasks))
        log.info("batch: starting a local Dask cluster of %d worker process(es)", n)
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR, **QUIET_SCHEDULER)
        try:
            client = Client(cluster)
            try:
                yield client
            finally:
                client.close()
        finally:
            cluster.close()
    elif isinstance(scheduler, str):
        try:
            client = Client(scheduler, timeout="15s")
        except (OSError, TimeoutError) as e:
            raise InputError(f"cannot connect to the Dask scheduler at {scheduler} ({type(e).__name__}: {e}): "
                             "check the address (tcp://host:8786) and that the scheduler runs") from None
        log.info("batch: connected to the Dask scheduler at %s (%d worker(s))", scheduler,
                 len(client.scheduler_info().get("workers", {})))
        try:
            yield client
        finally:
            client.close()
    else:  # an existing distributed.Client
        yield scheduler


def _clean_stale(out: Path) -> None:
    """Remove temporary folders left by an interrupted batch."""
    for p in (out / "studies").glob(".tmp-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in (out / "studies").glob(".old-*"):
        shutil.rmtree(p, ignore_errors=True)


def run_batch(
    studies_or_root=None,
    out_dir="batch_results",
    *,
    settings: Settings | dict | None = None,
    manifest=None,
    workers: int | None = None,
    scheduler=None,
    force: bool = False,
    progress: Callable[[StudyOutcome | None, int, int], None] | None = None,
    command: list[str] | None = None,
    report: bool = True,
) -> BatchSummary:
    """Quantify many studies in parallel and write the cohort table and report.

    Parameters
    ----------
    studies_or_root : path-like or list, optional
        A root folder with one study per subfolder, or a list of study
        folders (or :class:`~spectrack.batch.BatchStudy`). Not with ``manifest``.
    out_dir : path-like
        Output folder (see Notes).
    settings : Settings or dict, optional
        Settings for every study; manifest columns override them per study.
    manifest : path-like, optional
        CSV/TSV or TOML manifest (see :func:`~spectrack.batch.read_manifest`).
    workers : int, optional
        Worker processes of the embedded ``LocalCluster`` (one thread each);
        default: one per core, at most one per study.
    scheduler : str or distributed.Client, optional
        Address of an existing Dask scheduler (``tcp://host:8786``) or a
        connected client; then no cluster is started and ``workers`` is
        ignored. Its workers must have spectrack installed and see the paths.
    force : bool
        Recompute studies whose stored result is up to date.
    progress : callable(outcome, n_finished, n_total), optional
        Called with ``None`` once the studies are known, then once per
        finished study (in the calling process). An exception it raises
        (e.g. KeyboardInterrupt) stops the batch; finished studies keep
        their results and a re-run skips them.
    command : list of str, optional
        Recorded in each study's provenance.
    report : bool
        Write ``cohort_report.html`` and its figures.

    Returns
    -------
    BatchSummary

    Notes
    -----
    Layout of ``out_dir``::

        studies/<study>/regions.csv, study.json, cache_key.json
        logs/<study>.log
        cohort.csv, cohort.parquet     all studies' rows, with study/species/group/dose_mg
        cohort_stats.csv               mean, SD, n of pct_id per group, region, time point
        failures.csv                   study, reason
        batch.json                     every study's outcome
        cohort_report.html, figures/*.png

    When every study failed, only ``failures.csv`` and ``batch.json`` are
    written (and the cohort files of an earlier run are removed: they no
    longer match the inputs); :attr:`BatchSummary.succeeded` is then empty.

    Examples
    --------
    A run over a folder of studies (not executed here; see ``tests/test_batch.py``)::

        from spectrack.batch import run_batch
        summary = run_batch("studies/", "out/", workers=2)
        summary.counts()    # {'done': 11, 'skipped': 0, 'failed': 1}
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    studies = resolve_studies(studies_or_root, manifest=manifest, settings=settings, exclude=out)
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    for s in studies:  # a label file (not a per-study pattern) must exist before anything runs
        lab = s.settings.labels
        if lab and not is_label_pattern(lab):
            if not Path(lab).exists():
                raise InputError(f"labels {lab} (study {s.study_id}) does not exist: check the path, or give a "
                                 "per-study pattern such as '{study}/labels.nii.gz'")
            s.settings = s.settings.replace(labels=str(Path(lab).resolve()))
    (out / "studies").mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    _clean_stale(out)
    specs = []
    for s in studies:
        spec = s.to_spec()
        if command is not None:
            spec["command"] = list(command)
        specs.append(spec)
    if progress is not None:
        progress(None, 0, len(specs))
    results: dict[str, StudyOutcome] = {}
    with _client(workers, scheduler, len(specs)) as client:
        from distributed import as_completed

        tag = uuid.uuid4().hex[:8]
        futures = client.map(run_one, specs, out_root=str(out.resolve()), force=force, pure=False,
                             key=[f"spectrack-batch-{tag}-{s['study']}" for s in specs])
        by_key = {f.key: spec for f, spec in zip(futures, specs)}
        try:
            for fut in as_completed(futures):
                spec = by_key[fut.key]
                try:
                    o = StudyOutcome(**fut.result())
                except Exception as e:  # the worker died (KilledWorker) or the task could not run there
                    failed = dict(study=spec["study"], path=spec["path"], status="failed",
                                  reason=" ".join(f"{type(e).__name__}: {e}".split()),
                                  error_type=type(e).__name__, exit_code=1)
                    o = StudyOutcome(**_keep_last_good(failed, out.resolve() / "studies" / spec["study"]))
                results[o.study] = o
                if progress is not None:
                    progress(o, len(results), len(specs))
        except BaseException:
            client.cancel(futures)
            raise
    summary = BatchSummary(out_dir=out, outcomes=[results[s.study_id] for s in studies], studies=studies)
    from .cohort import write_cohort

    log.info("batch: writing the cohort outputs" if summary.succeeded else
             "batch: every study failed: writing failures.csv and batch.json only")
    summary.outputs = write_cohort(summary, report=report)
    summary.seconds = time.perf_counter() - t0
    return summary


def outcome_rows(summary: BatchSummary) -> list[dict]:
    """Outcomes as JSON-ready dicts."""
    return [dataclasses.asdict(o) for o in summary.outcomes]
