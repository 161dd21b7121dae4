"""Finding NIfTI images in a folder: which files are images and which label maps, and the scan dates of
``scans.tsv``."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

from ...errors import InputError
from ...io_utils import nifti_stem
from .values import parse_datetime

__all__ = ["is_label_file", "find_nifti_files", "read_scans_tsv"]


def is_label_file(path: Path) -> bool:
    """True for NIfTI files that are label maps (names sidecar TSV or label-like name)."""
    path = Path(path)
    stem = nifti_stem(path)
    low = stem.lower()
    if path.with_name(stem + ".tsv").exists():
        return True
    return low.startswith("labels") or low.endswith(("_labels", "_dseg", "_seg", "_mask", "_truth_labels"))


def find_nifti_files(folder: Path) -> list[Path]:
    """All NIfTI files under ``folder`` (any depth), sorted."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith((".nii", ".nii.gz"))
                  and not p.name.startswith("."))


def read_scans_tsv(folder: Path) -> dict[str, dt.datetime]:
    """``{file name: acquisition datetime}`` from ``scans.tsv`` files under ``folder``."""
    out: dict[str, dt.datetime] = {}
    for tsv in Path(folder).rglob("*scans.tsv"):
        try:
            rows = list(csv.DictReader(tsv.read_text(encoding="utf-8-sig").splitlines(), delimiter="\t"))
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise InputError(f"cannot read {tsv} ({type(e).__name__}): it must be UTF-8 text with "
                             "tab-separated 'filename' and 'acq_time' columns") from None
        for r in rows:
            name, when = r.get("filename"), r.get("acq_time")
            if isinstance(name, str) and isinstance(when, str) and name.strip() and when.strip():
                out[Path(name.strip()).name] = parse_datetime(when, f"acq_time in {tsv}")
    return out
