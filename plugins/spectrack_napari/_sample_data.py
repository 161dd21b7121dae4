"""File > Open Sample: the digital phantom studies, generated on first use.

Studies are written by :func:`spectrack.phantom.make_study` into a cache
folder (``$SPECTRACK_CACHE_DIR`` or ``~/.cache/spectrack``), one per preset
and spectrack version, and reused afterwards.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["cache_dir", "phantom_study_dir", "rat_study", "nhp_study", "human_study"]


def cache_dir() -> Path:
    """Where generated sample studies live."""
    env = os.environ.get("SPECTRACK_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "spectrack"


def phantom_study_dir(preset: str, *, seed: int = 0) -> Path:
    """Folder of the phantom study ``preset`` (written on first call).

    Holds ``dicom/``, ``nifti/``, ``labels.nii.gz`` (+ ``labels.tsv``) and
    ``truth.json``.
    """
    from spectrack import __version__
    from spectrack.phantom import make_study

    out = cache_dir() / "samples" / f"{preset}-seed{seed}-v{__version__}"
    if (out / "truth.json").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():  # left incomplete by an interrupted run
        shutil.rmtree(out, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{preset}-", dir=out.parent))
    try:
        make_study(tmp, preset=preset, seed=seed)
        try:
            tmp.rename(out)
        except OSError:  # another process got there first
            if not (out / "truth.json").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _study_folder(root: Path) -> Path:
    for sub in ("dicom", "nifti"):
        if (root / sub).is_dir() and any((root / sub).iterdir()):
            return root / sub
    return root


def sample_layers(preset: str) -> list[tuple]:
    """Layer data of a phantom study: CT, SPECT (4-D over time) and its regions."""
    from ._reader import study_path_layers

    root = phantom_study_dir(preset)
    folder = _study_folder(root)
    from spectrack.errors import SpectrackError

    try:
        return study_path_layers(folder, labels=root / "labels.nii.gz")
    except (ImportError, SpectrackError):  # no DICOM reader yet, or an unreadable export: use the NIfTI copy
        if folder.name != "dicom" or not (root / "nifti").is_dir():
            raise
        return study_path_layers(root / "nifti", labels=root / "labels.nii.gz")


def rat_study() -> list[tuple]:
    """Rat phantom: SPECT/CT time series with regions."""
    return sample_layers("rat")


def nhp_study() -> list[tuple]:
    """Non-human primate phantom: SPECT/CT time series with regions."""
    return sample_layers("nhp")


def human_study() -> list[tuple]:
    """Human phantom: SPECT/CT time series with regions."""
    return sample_layers("human")
