"""Checks of an output path before any work: a folder (batch, report) or a file (resolution) that can be
written, one :class:`~spectrack.errors.OutputError` line otherwise.
"""

from __future__ import annotations

from pathlib import Path


def _first_existing(path: Path) -> Path:
    above = path
    while not above.exists() and above != above.parent:
        above = above.parent
    return above


def _probe_writable(out, where: Path) -> None:
    import os
    import tempfile

    from ..errors import OutputError

    try:
        os.rmdir(tempfile.mkdtemp(prefix=".spectrack-probe-", dir=where))
    except OSError as e:
        raise OutputError(out, e.strerror or str(e)) from None


def _check_writable_folder(out: Path, command: str = "spectrack batch") -> None:
    """An output folder written into (batch, report): not a file, not under a file, writable; checked before
    any work."""
    import os

    from ..errors import OutputError

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

    from ..errors import OutputError

    final = Path(os.path.abspath(out))
    if final.is_dir():
        raise OutputError(out, "it is a folder: give a file name, such as resolution.json")
    above = _first_existing(final.parent)
    if not above.is_dir():
        raise OutputError(out, f"{above} is a file, not a folder: give a file path in a folder")
    _probe_writable(out, above)
