"""The image readers :func:`load_series` consults, in order (:data:`READERS`), as nibabel's ``imageclasses``.

Each :class:`Reader` has a name, a cheap test of one file (``accepts``: by its name, no byte read), a reader of
one file, and what it takes from a folder. A file given alone is read by the first reader that accepts it:
NIfTI by its name (``.nii``, ``.nii.gz``), then DICOM, the last resort, for every other file (its reader says
when the file is not DICOM). A folder is offered to every reader in the same order; each reads the files under
it that it finds (NIfTI volumes that are not label maps, with ``scans.tsv``; DICOM: every file without a known
non-DICOM suffix), and the series are put together. A new format is one more :class:`Reader` in
:data:`READERS`, before DICOM.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import InputError
from .model import Series
from .nifti import find_nifti_files, is_label_file, read_nifti_series, read_scans_tsv

__all__ = ["Reader", "READERS", "reader_for", "load_series"]


@dataclass(frozen=True)
class Reader:
    """One image format :func:`load_series` can read.

    Attributes
    ----------
    name : str
        The format as messages name it (``"NIfTI"``, ``"DICOM"``).
    accepts : callable
        ``accepts(path) -> bool``: whether this reader takes a file given alone; a cheap test (the name).
    read : callable
        ``read(path) -> (series, warnings)``: the series of a file given alone.
    finds : callable
        ``finds(folder) -> list of Path``: the files under ``folder`` this reader reads (empty: nothing for it).
    read_folder : callable
        ``read_folder(folder, files) -> (series, warnings)``: the series of ``folder``, ``files`` being what
        ``finds`` returned.
    one_clock : bool
        True when ``read_folder`` already puts its series on one clock
        (:func:`~spectrack.load.dicom.normalise_timezones`); otherwise :func:`load_series` does it after
        reading the folder.
    """

    name: str
    accepts: Callable[[Path], bool]
    read: Callable[[Path], tuple[list[Series], list[str]]]
    finds: Callable[[Path], list[Path]]
    read_folder: Callable[[Path, list[Path]], tuple[list[Series], list[str]]]
    one_clock: bool = False


# ------------------------------------------------------------------ NIfTI
def _nifti_accepts(path: Path) -> bool:
    return path.name.endswith((".nii", ".nii.gz"))


def _nifti_read(path: Path) -> tuple[list[Series], list[str]]:
    s = read_nifti_series(path, scans=read_scans_tsv(path.parent))
    return [s], list(s.get("load_warnings") or [])


def _nifti_finds(folder: Path) -> list[Path]:
    return [p for p in find_nifti_files(folder) if not is_label_file(p)]


def _nifti_read_folder(folder: Path, files: list[Path]) -> tuple[list[Series], list[str]]:
    series: list[Series] = []
    warnings: list[str] = []
    scans = read_scans_tsv(folder)
    for p in files:
        series.append(read_nifti_series(p, scans=scans))
        warnings += [w for w in series[-1].get("load_warnings") or [] if w not in warnings]
    return series, warnings


# ------------------------------------------------------------------ DICOM
def _is_probably_dicom_candidate(p: Path) -> bool:
    name = p.name.lower()
    if name.startswith("."):
        return False
    if name.endswith((".nii", ".nii.gz", ".json", ".tsv", ".toml", ".csv", ".txt", ".md", ".tfm", ".png", ".html",
                      ".parquet", ".log")):
        return False
    return True


def _dicom_accepts(path: Path) -> bool:
    return True  # the last resort: the DICOM reader says when a file is not DICOM


def _dicom_read(path: Path) -> tuple[list[Series], list[str]]:
    from .dicom import load_dicom_folder

    return load_dicom_folder(path)


def _dicom_finds(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and _is_probably_dicom_candidate(p)]


def _dicom_read_folder(folder: Path, files: list[Path]) -> tuple[list[Series], list[str]]:
    from .dicom import load_dicom_folder

    return load_dicom_folder(folder)


#: The readers in the order they are consulted: the first that accepts a file reads it; each reads what it finds
#: in a folder. DICOM accepts every file, so it stays last.
READERS: tuple[Reader, ...] = (
    Reader("NIfTI", _nifti_accepts, _nifti_read, _nifti_finds, _nifti_read_folder, one_clock=False),
    Reader("DICOM", _dicom_accepts, _dicom_read, _dicom_finds, _dicom_read_folder, one_clock=True),
)


def reader_for(path, *, readers=READERS) -> Reader:
    """The first of ``readers`` that accepts the file ``path``.

    Examples
    --------
    >>> reader_for("tp0_spect.nii.gz").name, reader_for("IM000123").name
    ('NIfTI', 'DICOM')
    """
    path = Path(path)
    for r in readers:
        if r.accepts(path):
            return r
    raise InputError(f"{path}: no reader takes this file (readers: {', '.join(r.name for r in readers)})")


def load_series(path) -> tuple[list[Series], list[str]]:
    """Load every image series under ``path`` (DICOM and NIfTI).

    A file is read by the first reader of :data:`READERS` that accepts it; a folder by every reader that finds
    files in it, in that order (an error of a later reader, when an earlier one found series, becomes a
    warning).

    Returns
    -------
    series : list of Series
    warnings : list of str
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist: give the folder of the study's images")
    if path.is_file():
        return reader_for(path).read(path)
    warnings: list[str] = []
    series: list[Series] = []
    own_clocks = False  # read by a reader that does not put its series on one clock
    for reader in READERS:
        files = reader.finds(path)
        if not files:
            continue
        try:
            found, warn = reader.read_folder(path, files)
        except InputError:
            if not series:
                raise
            found, warn = [], [f"no {reader.name} image series among {len(files)} other files in {path}"]
        series += found
        warnings += warn
        own_clocks = own_clocks or not reader.one_clock
    if not series:
        raise InputError(f"no image found in {path}: expected DICOM files or NIfTI volumes")
    if own_clocks:  # DICOM alone was put on one clock by its loader; NIfTI sidecars may carry offsets too
        from .dicom import normalise_timezones

        normalise_timezones(series, warnings)
    return series, warnings
