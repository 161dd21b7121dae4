"""A folder of DICOM files into volumes: files grouped by series and SOP class, series split into volumes."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ...errors import InputError
from ..model import Series
from .files import _IMAGE_KINDS, _image_type, _kind, _read_file, _where
from .header import _orientation
from .nm import _NM_PLANAR, _read_nm
from .stacks import _read_stack
from .tags import _floats, _int_or, _quiet, _safe_text, _SkipSeries
from .times import normalise_timezones


# files the other readers of spectrack handle: not reported as "not DICOM"
_OTHER_READERS = (".nii", ".nii.gz", ".json", ".tsv", ".toml")
_MAX_FILE_WARNINGS = 20


def _split_stack(items: list, kind: str) -> list[list]:
    """Split one series' slices into volumes: same size/orientation, no duplicate positions."""
    groups: dict = defaultdict(list)
    for p, ds in items:
        w = _where(p, ds)
        try:
            iop = _floats(ds, "ImageOrientationPatient", 6, w, required=False)
        except InputError:
            iop = None
        key = (_safe_text(ds, "Rows"), _safe_text(ds, "Columns"),
               None if iop is None else tuple(np.round(iop, 3)))
        groups[key].append((p, ds))
    out = []
    for sub in groups.values():
        try:
            normal = _orientation(_floats(sub[0][1], "ImageOrientationPatient", 6, "x"), "x")[2]
            pos = [round(float(_floats(ds, "ImagePositionPatient", 3, "x") @ normal), 2) for _, ds in sub]
        except InputError:  # the reader reports malformed geometry with the file name
            out.append(sub)
            continue
        if len(set(pos)) == len(pos):
            out.append(sub)
            continue
        for kw in ("AcquisitionNumber", "TemporalPositionIdentifier", "FrameReferenceTime", "AcquisitionTime"):
            parts: dict = defaultdict(list)
            for (p, ds), z in zip(sub, pos):
                parts[_safe_text(ds, kw)].append(((p, ds), z))
            if len(parts) > 1 and all(len({z for _, z in v}) == len(v) for v in parts.values()):
                out += [[it for it, _ in v] for v in parts.values()]
                break
        else:
            out.append(sub)  # the reader reports the duplicates
    return out


def _label(items: list, root: Path, kind: str) -> str:
    p, ds = items[0]
    desc = _safe_text(ds, "SeriesDescription")
    try:
        rel = str(p.relative_to(root)) if root.is_dir() else p.name
    except ValueError:
        rel = p.name
    more = f" + {len(items) - 1} files" if len(items) > 1 else ""
    return f"{kind} series '{desc}' ({rel}{more})" if desc else f"{kind} series ({rel}{more})"


def load_dicom_folder(path) -> tuple[list[Series], list[str]]:
    """Load every CT, SPECT (NM ``RECON TOMO``) and PET volume under a folder.

    Parameters
    ----------
    path : path-like
        A folder (searched at any depth, any file names) or one DICOM file.

    Returns
    -------
    series : list of Series
        One per usable volume, in the order of their first file's path.
    warnings : list of str
        Files and series skipped (non-DICOM, truncated, planar NM, unsupported
        SOP classes, ...) and what the readers noted.

    Raises
    ------
    InputError
        The folder does not exist or holds no usable image series, or a
        series has malformed geometry tags.

    Examples
    --------
    A folder of one study (not run here; see ``tests/test_load_dicom.py``)::

        series, warnings = load_dicom_folder("study/dicom")
        [s.describe() for s in series]
        # ['CT 512x512x120 @ 0.977x0.977x3 mm', 'NM 128x128x128 @ 4.8x4.8x4.8 mm SPECT']
    """
    root = Path(path)
    if not root.exists():
        raise InputError(f"{root} does not exist: give the folder holding the DICOM files")
    if root.is_file():
        files = [root]
    else:
        files = sorted(p for p in root.rglob("*") if p.is_file())
    warn: list[str] = []
    n_file_warn = 0
    groups: dict[str, list] = defaultdict(list)
    n_dicom = 0

    def rel(p: Path) -> str:
        try:
            return str(p.relative_to(root)) if root.is_dir() else p.name
        except ValueError:
            return p.name

    for p in files:
        if p.name.startswith(".") or p.name.lower().endswith(_OTHER_READERS):
            continue
        ds, why = _read_file(p)
        if ds is None:
            n_file_warn += 1
            if n_file_warn <= _MAX_FILE_WARNINGS:
                warn.append(f"skipped {rel(p)}: {why}")
            continue
        n_dicom += 1
        with _quiet():
            uid = _safe_text(ds, "SeriesInstanceUID")
            kind = _kind(ds)
        key = uid or f"(no SeriesInstanceUID) {kind} {_safe_text(ds, 'Rows')}x{_safe_text(ds, 'Columns')}"
        groups[key].append((p, ds))
    if n_file_warn > _MAX_FILE_WARNINGS:
        warn.append(f"... and {n_file_warn - _MAX_FILE_WARNINGS} more files skipped")

    found: list[tuple[Path, Series]] = []
    with _quiet():
        for uid, items in groups.items():
            by_kind: dict[str, list] = defaultdict(list)
            for p, ds in items:
                by_kind[_kind(ds)].append((p, ds))
            for kind, sub in by_kind.items():
                for first, series, msgs in _load_group(kind, sub, root):
                    warn += msgs
                    if series is not None:
                        found.append((first, series))
    found.sort(key=lambda x: str(x[0]))
    series = [s for _, s in found]
    if not series:
        detail = f"; {warn[0]}" if warn else ""
        raise InputError(f"no usable image series in {root} ({n_dicom} DICOM files read, "
                         f"{n_file_warn} files skipped){detail}")
    normalise_timezones(series, warn)
    return series, warn


def _load_group(kind: str, items: list, root: Path):
    """Yield (first path, Series or None, warnings) for the files of one series and SOP class."""
    items = sorted(items, key=lambda it: str(it[0]))
    label = _label(items, root, kind.split(":")[0] or "unknown")
    if kind.startswith("other"):
        sop = kind.split(":", 1)[1]
        yield items[0][0], None, [f"skipped {label}: SOP class {sop or 'missing'} is not a CT, NM or PET image"]
        return
    if kind not in _IMAGE_KINDS:
        yield items[0][0], None, [f"skipped {label}: {kind} objects are not read "
                                  "(only CT, NM and PET Image Storage; export as those)"]
        return
    if kind == "NM":
        single = all((_int_or(ds, "NumberOfFrames") or 1) == 1 and "ImagePositionPatient" in ds
                     and (_image_type(ds, "") + ["", "", ""])[2] not in _NM_PLANAR for _, ds in items)
        if len(items) > 1 and single:
            chunks = [("stack", c) for c in _split_stack(items, kind)]
        else:
            chunks = [("nm", [it]) for it in items]
    else:
        localizers = [it for it in items if kind == "CT" and "LOCALIZER" in _image_type(it[1], "")]
        if localizers:
            loc = {id(it[1]) for it in localizers}
            items = [it for it in items if id(it[1]) not in loc]
            yield localizers[0][0], None, [f"skipped {_label(localizers, root, kind)}: localizer (scout) image(s)"]
            if not items:
                return
        chunks = [("stack", c) for c in _split_stack(items, kind)]
    for how, chunk in chunks:
        desc = _safe_text(chunk[0][1], "SeriesDescription")
        lab = f"{kind} series '{desc}'" if desc else f"{kind} series"
        try:
            if how == "nm":
                s = _read_nm(chunk[0][0], chunk[0][1])
            else:
                s = _read_stack(chunk, kind)
        except _SkipSeries as e:
            if how == "nm":  # name the file by its path in the folder, not only its name
                msg = str(e).removeprefix(f"{_where(chunk[0][0], chunk[0][1])}: ")
                yield chunk[0][0], None, [f"skipped {_label(chunk, root, kind)}: {msg}"]
            else:
                yield chunk[0][0], None, [f"skipped {lab}: {e}"]
            continue
        msgs = [f"{lab}: {w}" for w in s.get("load_warnings", [])]
        yield chunk[0][0], s, msgs
