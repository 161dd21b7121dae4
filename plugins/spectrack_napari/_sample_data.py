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

__all__ = ["cache_dir", "phantom_study_dir", "sample_settings", "rat_study", "nhp_study", "human_study"]


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


def sample_settings(root) -> dict:
    """What the phantom's ``truth.json`` says about quantifying it: calibration, sensitivity, species.

    The same known calibration :func:`spectrack.phantom.sample.sample_study`
    gives the bundled sample; the quantify dock fills its fields from it.
    """
    import json

    truth = json.loads((Path(root) / "truth.json").read_text(encoding="utf-8"))
    out = {"species": truth.get("preset")}
    if truth.get("units") == "counts" and truth.get("sensitivity_cps_per_mbq"):
        out.update(calibration="sensitivity", sensitivity_cps_per_mbq=float(truth["sensitivity_cps_per_mbq"]))
    return {k: v for k, v in out.items() if v is not None}


def sample_layers(preset: str) -> list[tuple]:
    """Layer data of a phantom study: CT, SPECT (4-D over time) and its regions."""
    from ._layers import METADATA_KEY
    from ._reader import study_path_layers

    root = phantom_study_dir(preset)
    folder = _study_folder(root)
    from spectrack.errors import SpectrackError

    try:
        layers = study_path_layers(folder, labels=root / "labels.nii.gz")
    except (ImportError, SpectrackError):  # no DICOM reader yet, or an unreadable export: use the NIfTI copy
        if folder.name != "dicom" or not (root / "nifti").is_dir():
            raise
        layers = study_path_layers(root / "nifti", labels=root / "labels.nii.gz")
    known = sample_settings(root)
    for _, kwargs, _ in layers:  # the phantom's calibration travels with its layers
        entry = kwargs.get("metadata", {}).get(METADATA_KEY)
        if entry is not None:
            entry["settings"] = dict(known)
            entry["settings_source"] = f"the sample's {root.name}/truth.json"
    from ._timeaxis import follow_current_viewer

    follow_current_viewer()  # the time slider reads in hours after injection
    return layers


def rat_study() -> list[tuple]:
    """Rat phantom: SPECT/CT time series with regions."""
    return sample_layers("rat")


def nhp_study() -> list[tuple]:
    """Non-human primate phantom: SPECT/CT time series with regions."""
    return sample_layers("nhp")


def human_study() -> list[tuple]:
    """Human phantom: SPECT/CT time series with regions."""
    return sample_layers("human")
