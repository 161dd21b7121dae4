"""Which studies a batch runs, with which settings.

A batch is either a root folder (one study per subfolder) or a manifest
(CSV/TSV or TOML) whose columns are ``path``, an optional ``study``
identifier and any :class:`~spectrack.settings.Settings` field
(``labels``, ``injected_mbq``, ``species``, ``group``, ``dose_mg``...).
Manifest values override the batch-wide settings (``--config``); relative
paths are resolved against the manifest's folder. Everything is validated
before any study runs, so a bad manifest gives one error line.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..settings import Settings, settings_from_mapping, with_given

__all__ = ["BatchStudy", "discover_studies", "read_manifest", "find_label_map", "resolve_studies"]

_ID_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class BatchStudy:
    """One study of a batch.

    Attributes
    ----------
    study_id : str
        Names the output folder ``OUT/studies/<study_id>`` and the ``study``
        column of the cohort table.
    path : Path
        Study folder (or study file) given to :func:`spectrack.run_study`.
    settings : Settings
        Batch settings with this study's manifest overrides applied.
    """

    study_id: str
    path: Path
    settings: Settings

    def to_spec(self) -> dict:
        """Plain, picklable description sent to a worker."""
        return {"study": self.study_id, "path": str(self.path), "settings": self.settings.to_dict(),
                "given": sorted(self.settings.given)}


def _safe_id(name: str) -> str:
    out = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")
    return out or "study"


def _default_id(path: Path) -> str:
    from ..io_utils import nifti_stem

    return _safe_id(nifti_stem(path) if path.is_file() else path.name)


def discover_studies(root, *, exclude=None) -> list[Path]:
    """Study folders of a batch root: its visible subfolders, sorted.

    Parameters
    ----------
    root : path-like
        Folder holding one folder per study (images at any depth below it).
    exclude : path-like, optional
        A folder to leave out (the batch output, when it lies in ``root``).
    """
    root = Path(root)
    skip = Path(exclude).resolve() if exclude is not None else None
    if not root.is_dir():
        raise InputError(f"batch root {root} is not a folder: give a folder with one subfolder per study "
                         "(or --manifest FILE)")
    subs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and (skip is None or p.resolve() != skip))
    if not subs:
        raise InputError(f"batch root {root} has no study subfolders: put each study in its own folder "
                         "(or list them in a --manifest)")
    return subs


def find_label_map(folder) -> Path | None:
    """The label map of a study folder, or ``None``.

    A label map is a NIfTI with a same-stem ``.tsv`` names file or a
    label-like name (see :func:`spectrack.load.nifti.is_label_file`). One named
    ``labels.nii[.gz]`` (the shallowest) wins; otherwise there must be exactly
    one candidate.

    Raises
    ------
    LabelError
        When several label maps are found and none is named ``labels``.
    """
    from ..errors import LabelError
    from ..io_utils import nifti_stem
    from ..load.nifti import find_nifti_files, is_label_file

    folder = Path(folder)
    cands = [p for p in find_nifti_files(folder) if is_label_file(p)]
    named = [p for p in cands if nifti_stem(p).lower() == "labels"]
    pool = named or cands
    if not pool:
        return None
    if not named and len(cands) > 1:
        shown = ", ".join(str(p.relative_to(folder)) for p in cands[:4])
        raise LabelError(f"{folder} holds {len(cands)} label maps ({shown}): name the one to use labels.nii.gz "
                         "or give labels in the manifest")
    return min(pool, key=lambda p: (len(p.relative_to(folder).parts), str(p)))


def _read_rows(manifest: Path) -> list[tuple[str, dict]]:
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise InputError(f"cannot read manifest {manifest}: {e.strerror}") from None
    suffix = manifest.suffix.lower()
    if suffix == ".toml":
        import tomllib

        try:
            data = tomllib.loads(text)
        except ValueError as e:
            raise InputError(f"manifest {manifest} is not valid TOML: {e}") from None
        rows = data.get("studies", data.get("study"))
        extra = sorted(set(data) - {"studies", "study"})
        if extra:
            raise InputError(f"manifest {manifest}: unknown top-level key {extra[0]!r}; list studies as [[studies]] "
                             "tables")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise InputError(f"manifest {manifest} has no [[studies]] tables: add one per study with a path key")
        return [(f"{manifest.name}: studies[{n}]", dict(r)) for n, r in enumerate(rows)]
    if suffix not in (".csv", ".tsv", ".txt"):
        raise InputError(f"manifest {manifest}: unknown format {suffix or '(no suffix)'}; use .csv, .tsv or .toml")
    delim = "\t" if suffix == ".tsv" else ","
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    reader = csv.reader(lines, delimiter=delim)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise InputError(f"manifest {manifest} is empty: give a header line (path,...) and one row per study") \
            from None
    out = []
    for n, row in enumerate(reader, start=2):
        if len(row) > len(header):
            raise InputError(f"{manifest.name}: row {n} has {len(row)} values for {len(header)} columns")
        out.append((f"{manifest.name}: row {n}", {h: v.strip() for h, v in zip(header, row)}))
    return out


def read_manifest(manifest, settings: Settings | None = None) -> list[BatchStudy]:
    """Read and validate a batch manifest.

    Parameters
    ----------
    manifest : path-like
        CSV/TSV (header ``path,study,injected_mbq,...``) or TOML
        (``[[studies]]`` tables with the same keys).
    settings : Settings, optional
        Batch-wide settings; each row's non-empty values override them.

    Returns
    -------
    list of BatchStudy

    Examples
    --------
    A CSV manifest::

        path,study,species,group,injected_mbq
        rat01,,rat,control,12.5
        /data/rat02,rat02b,rat,treated,
    """
    manifest = Path(manifest)
    base = manifest.parent.resolve()
    settings = settings or Settings()
    studies: list[BatchStudy] = []
    rows = _read_rows(manifest)
    if not rows:
        raise InputError(f"manifest {manifest} lists no studies")
    for where, row in rows:
        row = dict(row)
        path = row.pop("path", None)
        sid = row.pop("study", None)
        if path is None or str(path).strip() == "":
            raise InputError(f"{where}: no path: every study needs a path (folder of its images)")
        p = Path(str(path)).expanduser()
        p = p if p.is_absolute() else (base / p)
        own = settings_from_mapping(row, where=where, base=base)
        given = {k.replace("-", "_") for k, v in row.items() if v is not None and v != ""}
        merged = with_given(dataclasses.replace(settings, **{k: getattr(own, k) for k in given}),
                            settings.given | own.given)
        if sid not in (None, ""):
            sid = str(sid)
            if not _ID_OK.match(sid):
                raise InputError(f"{where}: study {sid!r} must be letters, digits, '.', '_' or '-' "
                                 "(it names an output folder)")
        else:
            sid = _default_id(p)
        studies.append(BatchStudy(sid, p, merged))
    _check_unique(studies)
    return studies


def _check_unique(studies: list[BatchStudy]) -> None:
    seen: dict[str, Path] = {}
    for s in studies:
        if s.study_id in seen:
            raise InputError(f"two studies are named {s.study_id!r} ({seen[s.study_id]} and {s.path}): "
                             "give each a unique name in a 'study' column")
        seen[s.study_id] = s.path


def resolve_studies(studies_or_root=None, *, manifest=None, settings=None, exclude=None) -> list[BatchStudy]:
    """The studies of a batch from a root folder, a list, or a manifest.

    Parameters
    ----------
    studies_or_root : path-like, list of path-like or list of BatchStudy, optional
        A root folder (one study per subfolder) or the studies themselves.
    manifest : path-like, optional
        Manifest file (see :func:`read_manifest`); used instead of
        ``studies_or_root``.
    settings : Settings or dict, optional
        Settings for every study (manifest values override them).
    exclude : path-like, optional
        Folder not to take for a study (the batch output).
    """
    if settings is None:
        settings = Settings()
    elif isinstance(settings, dict):
        settings = settings_from_mapping(settings, where="batch settings")
    if manifest is not None:
        if studies_or_root is not None:
            raise InputError("give either a batch root folder or --manifest, not both")
        return read_manifest(manifest, settings)
    if studies_or_root is None:
        raise InputError("nothing to run: give a batch root folder or --manifest FILE")
    if isinstance(studies_or_root, (str, Path)):
        paths = discover_studies(studies_or_root, exclude=exclude)
        out = [BatchStudy(_default_id(p), p.resolve(), settings) for p in paths]
    else:
        out = []
        for item in studies_or_root:
            if isinstance(item, BatchStudy):
                out.append(item)
            else:
                p = Path(item).resolve()
                out.append(BatchStudy(_default_id(p), p, settings))
    if not out:
        raise InputError("the batch lists no studies")
    _check_unique(out)
    return out
