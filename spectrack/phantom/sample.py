"""The bundled sample study: a cynomolgus (NHP) phantom, 6 scans over 24 h.

``sample_data/make_sample.py`` writes it with :data:`SAMPLE_ARGS`;
:func:`sample_study` finds it (or regenerates it in a temporary folder when
spectrack runs from an installed package without the repository).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from ..errors import InputError

__all__ = ["SAMPLE_ARGS", "sample_study", "write_sample", "REPO_SAMPLE"]

#: Arguments of :func:`spectrack.phantom.make_study` for the sample study.
SAMPLE_ARGS: dict = {
    "preset": "nhp",
    "seed": 0,
    "units": "counts",
    "formats": ("dicom", "nifti"),
    "subject_id": "NHP-PHANTOM-01",
    "study_file": True,
}

#: Where the committed sample lives in a source checkout.
REPO_SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "nhp_study"


def write_sample(path) -> dict:
    """Write the sample study into ``path`` (a folder); return its truth."""
    from .core import make_study

    return make_study(path, **SAMPLE_ARGS)


def sample_study(path=None) -> dict:
    """Locate (or create) the sample study.

    Parameters
    ----------
    path : path-like, optional
        A folder holding the sample; the repository's ``sample_data/nhp_study``
        by default, else a folder under the system temporary directory, written
        on first use.

    Returns
    -------
    dict
        ``study`` (the sample folder: its study file ``spectrack.toml`` names
        the DICOM export, the labels and the sensitivity, so it quantifies with
        no option), ``path`` (the DICOM folder), ``nifti`` (the NIfTI folder),
        ``truth`` (``truth.json``), ``labels`` and ``settings`` (what the study
        file says, as a mapping for
        :func:`spectrack.settings.settings_from_mapping`, for ``path`` and
        ``nifti``, which have no study file).
    """
    from .._version import __version__

    if path is None:
        path = REPO_SAMPLE
        if not (path / "truth.json").exists():
            path = Path(tempfile.gettempdir()) / f"spectrack-sample-{__version__}" / "nhp_study"
    if not isinstance(path, (str, Path)) and not hasattr(path, "__fspath__"):
        raise InputError(f"sample_study(): path must be a folder path (str or pathlib.Path) or None, not "
                         f"{type(path).__name__}")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"sample_study(): {path} is a file, not a folder: give a folder for the sample study")
    if not (path / "truth.json").exists() or not (path / "spectrack.toml").exists():
        write_sample(path)
    truth = json.loads((path / "truth.json").read_text(encoding="utf-8"))
    labels = path / "labels.nii.gz"
    return {
        "study": path,
        "path": path / "dicom",
        "nifti": path / "nifti",
        "truth": path / "truth.json",
        "labels": labels,
        "settings": {"labels": str(labels), "calibration": "sensitivity",
                     "sensitivity_cps_per_mbq": truth["sensitivity_cps_per_mbq"], "species": "nhp"},
    }
