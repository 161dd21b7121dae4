"""napari reader: DICOM folders, NIfTI studies, study files and single volumes.

``get_reader`` returns :func:`read_study` for paths spectrack can open and
``None`` otherwise; neither raises. Bad input gives one line in napari's
notification area and no layers.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ._layers import label_layer_data, series_layers, study_layers
from ._timeaxis import follow_current_viewer

__all__ = ["get_reader", "read_study", "study_path_layers"]

log = logging.getLogger(__name__)

_SUFFIXES = (".nii", ".nii.gz", ".dcm", ".ima", ".toml")
_MAX_SCAN = 200  # files looked at when deciding whether a folder holds images


def _looks_like_dicom(p: Path) -> bool:
    from spectrack.load.dicom import looks_like_dicom  # also files without preamble and file meta

    return looks_like_dicom(p)


def _folder_has_images(folder: Path) -> bool:
    for n, p in enumerate(folder.rglob("*")):
        if n >= _MAX_SCAN:
            return False
        if not p.is_file() or p.name.startswith("."):
            continue
        name = p.name.lower()
        if name.endswith(_SUFFIXES) or name in ("spectrack.json", "study.json") or _looks_like_dicom(p):
            return True
    return False


def get_reader(path):
    """Return :func:`read_study` if ``path`` looks like something spectrack reads, else None."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    try:
        p = Path(path)
        if p.is_dir():
            return read_study if _folder_has_images(p) else None
        if p.is_file() and (p.name.lower().endswith(_SUFFIXES) or _looks_like_dicom(p)):
            return read_study
    except (OSError, TypeError, ValueError):
        return None
    return None


def _label_files(folder: Path) -> list[Path]:
    from spectrack.load.nifti import is_label_file

    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.name.endswith((".nii", ".nii.gz")) and is_label_file(p))


def study_path_layers(path, *, reference: int = 0, labels=None) -> list[tuple]:
    """Layer data for the study at ``path`` (raises spectrack errors).

    The regions given as ``labels``, else those the study file names
    (``labels = ...``), else label maps lying in the study folder
    (``labels.nii.gz`` with a names TSV) become Labels layers. A single volume without scan
    times is shown as it is, without a time axis.
    """
    from spectrack.errors import InputError
    from spectrack.load import load_series, load_study
    from spectrack.load.nifti import is_label_file
    from spectrack.regions.formats.dispatch import read_regions
    from spectrack.regions.formats.nifti import read_label_map

    p = Path(path)
    if p.is_file() and p.name.endswith((".nii", ".nii.gz")) and is_label_file(p):
        return [label_layer_data(read_label_map(p), name=f"regions {p.name}", path=p)]
    try:
        study = load_study(p)
    except InputError:
        if not p.is_file():
            raise
        series, _ = load_series(p)  # a lone volume: show it without times
        return series_layers(series, path=p)
    layers = study_layers(study, reference=reference, path=p)
    folder = p if p.is_dir() else p.parent
    own = (getattr(study, "settings", None) or {}).get("labels")  # the study file names its regions
    if labels is not None:
        label_paths = [Path(labels)]
    elif own:
        base = Path(study.path).parent if Path(study.path).is_file() else Path(study.path)
        label_paths = [base / own]
    else:
        label_paths = _label_files(folder) if p.is_dir() else []
    tp = study.timepoints[min(max(reference, 0), len(study.timepoints) - 1)]
    ref_img = tp.ct.image if tp.ct is not None else tp.emission.image
    for lp in label_paths:
        name = f"{study.subject} regions" + ("" if len(label_paths) == 1 else f" {lp.name}")
        lm = read_label_map(lp) if lp.name.endswith((".nii", ".nii.gz")) else read_regions(lp, reference=ref_img)
        layers.append(label_layer_data(lm, name=name, path=lp, study_path=p))
    for w in study.warnings:
        _notify("warning", f"{p.name}: {w}")
    return layers


def _notify(level: str, message: str) -> None:
    try:
        from napari.utils import notifications
    except ImportError:  # used without napari (scripts, tests of the conversions)
        log.warning(message)
        return
    {"error": notifications.show_error, "warning": notifications.show_warning}.get(
        level, notifications.show_info)(message)


def read_study(path) -> list[tuple]:
    """napari reader function: layers for ``path``; on bad input, a notification and no layers."""
    from spectrack.errors import SpectrackError

    if isinstance(path, (list, tuple)):
        path = path[0]
    try:
        layers = study_path_layers(path)
        follow_current_viewer()  # the time slider reads in hours after injection
        return layers
    except SpectrackError as e:
        _notify("error", f"spectrack: {e}")
    except (OSError, ValueError) as e:
        _notify("error", f"spectrack: cannot read {path}: {e}")
    except Exception as e:  # a bug: keep the viewer alive, log the traceback
        log.exception("spectrack reader failed on %s", path)
        _notify("error", f"spectrack: unexpected error reading {path}: {type(e).__name__}: {e}")
    return [(None,)]  # napari's "read, but nothing to show"
