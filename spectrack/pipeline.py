"""The one orchestration function: load -> regions -> align -> quantify -> kinetics -> neuraxis -> report.

The command line, the napari plugin, batch runs and the Python API all call
:func:`run_study`. It composes one function per stage, each in its stage's
package and each taking and returning plain objects:
:func:`spectrack.load.load_study` (a ``Study``),
:func:`spectrack.regions.resolve.resolve_regions` and
:func:`~spectrack.regions.resolve.add_auto_regions` (``StudyRegions``),
:func:`spectrack.align.study.register_study` (an ``Alignment``),
:func:`spectrack.quantification.stage.quantify_study` (calibration, %ID,
recovery correction, intervals, mass balance: ``StudyQuantities``),
:func:`spectrack.kinetics.stage.analyse_study` (a ``KineticsResult``),
:func:`spectrack.regions.neuraxis.stage.profile_neuraxis` (a
``NeuraxisProfile``) and :func:`spectrack.report.write.write_results` (the
results folder, written as one unit).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .errors import InputError, SpectrackError
from .io_utils import check_output_folder
from .load.model import Study
from .settings import Settings

if TYPE_CHECKING:
    from .kinetics.stage import injected_regions
    from .report.write import describe_study, write_label_maps

__all__ = ["run_study", "StudyResult", "describe_study", "write_label_maps", "Cancelled", "STAGES", "injected_regions"]

STAGES = ("load", "align", "regions", "quantify", "kinetics", "report")

#: names that moved to their stage's module, re-exported here on first use (PEP 562) so that importing this
#: module does not import the stages' libraries
_MOVED = {"QUANTIFY_OUTPUTS": "report.write", "describe_study": "report.write", "write_json": "report.write",
          "write_label_maps": "report.write", "_json_default": "report.write", "_series_json": "report.write",
          "injected_regions": "kinetics.stage"}


def __getattr__(name):
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(f"{__package__}.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_MOVED))


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



def _checked_settings(settings) -> Settings:
    """``settings`` as a checked :class:`~spectrack.settings.Settings` (a dict, or a Settings built directly, get
    the same checks as the command line)."""
    from .settings import settings_from_mapping

    if settings is None:
        return Settings()
    if isinstance(settings, dict):
        return settings_from_mapping(settings)
    if isinstance(settings, Settings):  # built directly: the same checks as a dict or the command line
        from .settings import with_given

        given = {k: v for k, v in dataclasses.asdict(settings).items() if k != "extra"}
        checked = dataclasses.replace(settings_from_mapping(given, where="settings"), extra=dict(settings.extra))
        return with_given(checked, settings.given)
    raise InputError(f"settings must be a Settings or a dict, not {type(settings).__name__}")


def _check_run_arguments(*, out_dir, labels, study, progress, cancel) -> None:
    """The types of :func:`run_study`'s keyword arguments, refused in one line before any work."""
    from .regions.labelmap import LabelMap

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



def _with_study_file(settings: Settings, path, study: Study | None) -> tuple[Settings, dict | None]:
    """The settings filled by the study's own study file (``spectrack.toml`` beside the images), with
    ``labels`` absolute (so ``study.json`` and ``spectrack report`` find it from anywhere), and the study file's
    record."""
    from .settings import apply_study_file

    settings, study_file = apply_study_file(settings, study.path if study is not None else path)
    if settings.labels is not None:
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
    return settings, study_file


def _stepper(progress, cancel) -> Callable[[str, float], None]:
    """``step(stage, fraction)``: raise :class:`Cancelled` when ``cancel()`` says so, then report progress."""

    def step(stage, frac):
        if cancel is not None and cancel():
            raise Cancelled("cancelled by the user; nothing was written")
        if progress is not None:
            progress(stage, frac)

    return step


def _check_before_work(out_dir, settings: Settings, *, force: bool, writer: str) -> None:
    """A bad ``-o`` fails now, not after the whole computation, and so does a bad removed-activity file."""
    if out_dir is not None:
        from .report.write import QUANTIFY_OUTPUTS

        check_output_folder(out_dir, QUANTIFY_OUTPUTS, force=force, command=writer)
    if settings.removed is not None:
        from .quantification.balance import read_removed

        read_removed(settings.removed, check_only=True)


def _load(path, study: Study | None, settings: Settings) -> Study:
    """The study (``study`` itself when given, loaded from ``path`` otherwise), its reference checked."""
    from .load import load_study

    if study is None:
        study = load_study(path, times_h=settings.times_h, subject=settings.subject)
    if settings.reference >= len(study.timepoints):
        raise InputError(f"--reference {settings.reference} is out of range: the study has "
                         f"{len(study.timepoints)} time point(s), 0..{len(study.timepoints) - 1}")
    return study


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
        from .report.write import resolved_paths

        early = self._future.result()
        wanted = sorted({str(p) for p in resolved_paths(paths)})
        rest = hash_inputs([p for p in wanted if p not in early])
        return {p: early[p] if p in early else rest[p] for p in wanted if p in early or p in rest}



def run_study(path, settings: Settings | dict | None = None, *, out_dir=None, labels=None, study: Study | None = None,
              progress: Callable[[str, float], None] | None = None, cancel: Callable[[], bool] | None = None,
              command: list[str] | None = None, force: bool = False) -> StudyResult:
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
    from .align.study import register_study
    from .kinetics.stage import analyse_study
    from .quantification.stage import quantify_study
    from .regions.neuraxis.stage import profile_neuraxis
    from .regions.resolve import add_auto_regions, resolve_regions
    from .report.write import study_record, write_results

    settings = _checked_settings(settings)
    _check_run_arguments(out_dir=out_dir, labels=labels, study=study, progress=progress, cancel=cancel)
    settings, study_file = _with_study_file(settings, path, study)
    step = _stepper(progress, cancel)
    writer = "spectrack demo" if command and command[1:2] == ["demo"] else "spectrack quantify"
    _check_before_work(out_dir, settings, force=force, writer=writer)
    step("load", 0.0)
    study = _load(path, study, settings)
    step("regions", 0.2)
    regions = resolve_regions(study, settings, labels=labels)
    study_files = [Path(study_file["path"])] if study_file else []
    # the inputs' hashes for the provenance record: in a thread beside the work (reads and hashlib release the GIL)
    hashes = _InputHashes(study.input_files + regions.inputs + study_files)
    # registration does not need the regions: once they are known to exist it starts in a thread (SimpleITK
    # releases the GIL) and overlaps with segmenting them; its errors surface at the align stage
    registration = register_study(study, settings, reference=regions.reference)
    regions = add_auto_regions(study, settings, regions)
    step("align", 0.3)
    aligned = registration.result()
    step("quantify", 0.5)
    quant = quantify_study(study, regions.label_map, settings, transforms=aligned.transforms)
    # what the record needs of the source label map; its array (CT-sized) is let go here, before the kinetics
    # and neuraxis steps load their libraries, so it does not add to the run's peak memory
    regions = regions.without_voxels()
    step("kinetics", 0.7)
    kin, kin_notes = analyse_study(quant, study, settings, reference=regions.reference)
    neuraxis = profile_neuraxis(study, quant.details, regions.label_map, margin_mm=settings.neuraxis_margin_mm)
    step("report", 0.85)
    meta = study_record(study, quant, regions, registration=aligned.record, method_notes=quant.notes + kin_notes,
                        neuraxis=neuraxis, settings=settings, study_file=study_file, command=command)
    inputs = study.input_files + regions.inputs + quant.inputs + study_files
    meta["provenance"]["inputs_sha256"] = hashes.result(inputs)
    result = StudyResult(table=quant.table, study=study, metadata=meta, labels=quant.details.labels_per_timepoint,
                         kinetics=kin, transforms=aligned.transforms, profile=neuraxis.profile,
                         vertebrae=neuraxis.vertebrae)
    if out_dir is not None:
        write_results(result, out_dir, registration=aligned.results, balance=quant.balance, report=settings.report,
                      force=force, command=writer)
    step("report", 1.0)
    return result
