"""Provenance recorded with every result: versions, input hashes, parameters."""

from __future__ import annotations

import datetime as dt
import platform
import sys
from importlib import metadata
from pathlib import Path

from ._version import __version__
from .io_utils import sha256_file

__all__ = ["provenance", "hash_inputs"]

_PACKAGES = ("numpy", "scipy", "pandas", "pydicom", "nibabel", "SimpleITK", "scikit-image", "highdicom")


def hash_inputs(paths) -> dict[str, str]:
    """``{absolute path: sha256}`` of every input file (sorted, de-duplicated)."""
    out = {}
    for p in sorted({str(Path(p).resolve()) for p in paths}):
        if Path(p).is_file():
            out[p] = sha256_file(p)
    return out


def provenance(inputs, parameters: dict, *, command: list[str] | None = None) -> dict:
    """The provenance block of ``study.json``.

    Parameters
    ----------
    inputs : iterable of path-like
        Files read (images, sidecars, label maps).
    parameters : dict
        Settings used (JSON-serialisable).
    command : list of str, optional
        The command line, when run from it.
    """
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "spectrack_version": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "created": dt.datetime.now().replace(microsecond=0).isoformat(),
        "command": command,
        "parameters": parameters,
        "inputs_sha256": hash_inputs(inputs),
    }
