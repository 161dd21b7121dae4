"""Slice stacks, one slice per file: CT (int16 while exact, pixels read when first used) and PET."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError
from ...geometry import Image, LazyImage
from ..model import Series, Sourced
from .decay import _decay_reference_meta, _pet_style_meta
from .files import (_as_dataset, _declared, _MAX_BYTES, _PIXEL_TAGS, _read_file, _stored_pixels, _transfer_syntax,
                    _value_length, _where)
from .header import _common_meta, _finish, _optional, _orientation, _pixel_spacing, _radiopharm_meta, _start_meta
from .nm import _nm_duration
from .pet import _normalise_beds, _pet_duration
from .tags import _float, _floats, _int, _quiet, _SkipSeries, _tag, _text
from .units import _may_be_non_finite, _rescale_in_place, _value_mapping, _zero_non_finite


def _as_items(files) -> list[tuple[Path | None, Any]]:
    if isinstance(files, (str, Path)):
        p = Path(files)
        files = sorted(q for q in p.iterdir() if q.is_file()) if p.is_dir() else [p]
    items = []
    for f in files:
        if isinstance(f, (str, Path)):
            ds, why = _read_file(Path(f))
            if ds is None:
                raise InputError(f"cannot read {Path(f)}: {why}")
            items.append((Path(f), ds))
        else:
            items.append(_as_dataset(f))
    if not items:
        raise InputError("no files given")
    return items


def read_ct_series(files) -> Series:
    """Read a CT volume stored one slice per file.

    Parameters
    ----------
    files : sequence of path-like or pydicom.Dataset, or a folder
        The slices of one series, in any order.

    Returns
    -------
    Series
        ``modality`` ``"CT"``, values float32 HU
        (stored * ``RescaleSlope`` + ``RescaleIntercept``).

    Raises
    ------
    InputError
        Fewer than two slices, mixed orientations, duplicate or irregular
        slice positions, malformed geometry tags.
    """
    with _quiet():
        return _read_stack(_as_items(files), "CT")


def read_pet_series(files) -> Series:
    """Read a PET volume stored one slice per file (PET Image Storage).

    Parameters
    ----------
    files : sequence of path-like or pydicom.Dataset, or a folder
        The slices of one series, in any order.

    Returns
    -------
    Series
        ``modality`` from ``Modality`` (``"PT"``; ``"NM"`` for SPECT saved as
        PET objects); values float32 in ``meta['units']``, each slice with its
        own ``RescaleSlope``. ``meta['decay_factor_per_slice']`` and
        ``meta['frame_reference_time_s_per_slice']`` hold per-slice values
        when they vary (several bed positions).

    Notes
    -----
    The slice spacing comes from the slice positions; ``SliceThickness`` is
    not the spacing.
    """
    with _quiet():
        return _read_stack(_as_items(files), "PT")


def _normal_positions(items, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(row, col, normal, positions (n,3)) with one orientation for all slices."""
    iops = np.array([_floats(ds, "ImageOrientationPatient", 6, _where(p, ds)) for p, ds in items])
    if np.max(np.abs(iops - iops[0])) > 1e-4:
        raise _SkipSeries(f"{where}: slices have different ImageOrientationPatient (0020,0037)")
    row, col, normal = _orientation(iops[0], where)
    ipps = np.array([_floats(ds, "ImagePositionPatient", 3, _where(p, ds)) for p, ds in items])
    return row, col, normal, ipps


_I16 = np.iinfo(np.int16)


def _int16_exact(px: np.ndarray, slope: float, intercept: float) -> bool:
    """True when ``px * slope + intercept`` is an integer in int16 range for every voxel of ``px`` (one slice).

    Hounsfield units usually are: a CT time series then takes int16 (six 512x512x300 CTs: 0.9 GB instead of
    1.9 GB as float32).
    """
    if px.dtype.kind not in "iu" or slope != round(slope) or intercept != round(intercept) or px.size == 0:
        return False
    ends = np.array([float(px.min()), float(px.max())]) * slope
    return bool(np.all(np.abs(ends) <= _I16.max) and _I16.min <= ends.min() + intercept
                and ends.max() + intercept <= _I16.max)


def _read_stack(items: list, kind: str) -> Series:
    where = _where(items[0][0], items[0][1]) + (f" (+{len(items) - 1} files)" if len(items) > 1 else "")
    warn: list[str] = []
    if len(items) < 2:
        raise _SkipSeries(f"{where}: a single slice is not a volume")
    shapes = {(_int(ds, "Rows", where), _int(ds, "Columns", where)) for _, ds in items}
    if len(shapes) != 1:
        raise _SkipSeries(f"{where}: slices of different sizes {sorted(shapes)}")
    row, col, normal, ipps = _normal_positions(items, where)
    d = ipps @ normal
    order = np.argsort(d, kind="stable")
    d_sorted = d[order]
    gaps = np.diff(d_sorted)
    if np.any(gaps < 1e-3):
        raise _SkipSeries(f"{where}: {int(np.sum(gaps < 1e-3))} duplicate slice positions (several volumes "
                          "in one series?)")
    n = len(items)
    step = (d_sorted[-1] - d_sorted[0]) / (n - 1)
    if np.max(np.abs(gaps - step)) > 0.05 * step:
        raise _SkipSeries(f"{where}: irregular slice spacing (gaps {gaps.min():.4g} to {gaps.max():.4g} mm): "
                          "missing slices?")
    offset = ipps[order[-1]] - ipps[order[0]]
    shear = np.linalg.norm(offset - (offset @ normal) * normal) / (n - 1)
    if shear > 0.01 * step:
        warn.append(f"{where}: slice positions are not along the slice normal (gantry tilt, {shear:.3g} mm "
                    "per slice in plane): the grid ignores the tilt")
    items = [items[k] for k in order]
    p0, ds0 = items[0]
    sp_i, sp_j = _pixel_spacing(ds0, where)
    for p, ds in items[1:]:
        if abs(_pixel_spacing(ds, _where(p, ds))[0] - sp_i) > 1e-4 * sp_i:
            raise _SkipSeries(f"{where}: slices have different PixelSpacing (0028,0030)")
    th = _float(ds0, "SliceThickness", where)
    if th is not None and abs(th - step) > 0.01 * step:
        warn.append(f"{where}: SliceThickness {th:g} mm differs from the slice spacing {step:.4g} mm "
                    "(spacing from positions used)")

    rows, cols = shapes.pop()
    if n * rows * cols * 4 > _MAX_BYTES:
        raise InputError(f"{where}: {n} slices of {rows}x{cols} exceed 8 GiB")
    values, maps = None, None  # values None: read when first used (LazyImage)
    if kind == "CT" and _lazy_pixels_ok(items, rows, cols):
        # headers say the pixels are plain integers of the declared size: read them when first used
        first: list[str] = []
        maps = [_value_mapping(ds, kind, _where(p, ds), first if k == 0 else []) for k, (p, ds) in enumerate(items)]
        for m in maps:
            m["float"] = False
        if any(_may_be_non_finite(np.dtype(np.int32), m["slope"], m["intercept"]) for m in maps):
            maps = None
        else:
            warn.extend(first)
    if maps is None:
        values, maps = _stack_pixels(items, kind, (n, rows, cols), where, warn)
    units = {m["units"] for m in maps}
    if len(units) != 1:
        raise InputError(f"{where}: slices are in different units {sorted(units)}")
    slopes = np.array([m["slope"] for m in maps])
    icpts = np.array([m["intercept"] for m in maps])
    mp = maps[0]
    varies = np.ptp(slopes) > 0 or np.ptp(icpts) > 0
    geometry = dict(origin_mm=ipps[order[0]], spacing_mm=(sp_i, sp_j, step),
                    direction=np.column_stack([row, col, normal]), units=mp["units"])
    if values is None:
        def load(items=items, shape=(n, rows, cols), where=where):
            with _quiet():
                return _stack_pixels(items, kind, shape, where, [])[0]

        image = LazyImage((n, rows, cols), load, **geometry)
    else:
        image = Image(values, **geometry)

    datasets = [ds for _, ds in items]
    modality = kind
    if kind == "PT":
        mod = _text(ds0, "Modality", where)
        modality = "NM" if mod == "NM" else "PT"
    meta = _common_meta(ds0, modality, where, warn)
    meta["geometry"] = Sourced("slices", f"{_tag('ImagePositionPatient')} of {n} slices sorted along the normal "
                                         f"of {_tag('ImageOrientationPatient')}; spacing {step:.6g} mm from positions")
    meta["units"] = Sourced(mp["units"], mp["units_source"])
    if varies:
        names = (f"{_tag('RealWorldValueSlope')} / {_tag('RealWorldValueIntercept')}" if mp["mapping"] == "RWVM"
                 else f"{_tag('RescaleSlope')} / {_tag('RescaleIntercept')}")
        meta["value_mapping"] = Sourced(mp["mapping"], f"{names} of each slice (they differ slice by slice)")
    else:
        meta["value_mapping"] = Sourced(mp["mapping"], mp["mapping_source"])
    _optional(_start_meta, meta, datasets, where, warn, what="acquisition time")
    if kind == "PT":
        _optional(_pet_duration, datasets, meta, where, warn, what="acquisition duration")
        _optional(_radiopharm_meta, ds0, meta, True, where, warn, what="radiopharmaceutical information")
        _optional(_pet_style_meta, datasets, meta, where, warn, what="decay-correction information")
        _optional(_decay_reference_meta, datasets, meta, True, where, warn, what="decay reference time")
        _optional(_normalise_beds, image.array, datasets, meta, where, warn, what="bed positions")
        nsl = _int(ds0, "NumberOfSlices", where)
        if nsl is not None and nsl != n:
            warn.append(f"{where}: NumberOfSlices (0054,0081) is {nsl} but {n} slices were found")
    elif kind == "NM":
        _optional(_nm_duration, ds0, meta, where, warn, what="acquisition duration")
        _optional(_radiopharm_meta, ds0, meta, False, where, warn, what="radiopharmaceutical information")
        _optional(_pet_style_meta, datasets, meta, where, warn, what="decay-correction information")
        _optional(_decay_reference_meta, datasets, meta, False, where, warn, what="decay reference time")
    return _finish(Series(image=image, modality=modality, meta=meta, files=[p for p, _ in items if p]), warn)


def _lazy_pixels_ok(items: list, rows: int, cols: int) -> bool:
    """Whether every slice's pixels can be read later without surprises: one frame, one sample, uncompressed
    8/16/32-bit integers whose declared length matches the header and fits in the file."""
    pixel_data = _PIXEL_TAGS["PixelData"]
    floats = (_PIXEL_TAGS["FloatPixelData"], _PIXEL_TAGS["DoubleFloatPixelData"])
    for p, ds in items:
        if p is None or any(t in ds for t in floats) or pixel_data not in ds:
            return False
        try:
            frames, r, c, bits, spp = _declared(ds, "")
            ts = _transfer_syntax(ds)
        except InputError:
            return False
        if (frames, r, c, spp) != (1, rows, cols, 1) or ts.is_compressed or bits not in (8, 16, 32):
            return False
        need = rows * cols * bits // 8
        have = _value_length(ds, pixel_data)
        if have is None or not need <= have <= need + 1:
            return False
        try:
            if os.path.getsize(p) < have:
                return False
        except OSError:
            return False
    return True


def _stack_pixels(items: list, kind: str, shape: tuple, where: str, warn: list[str]):
    """(values, value mappings) of a slice stack, slice by slice: CT as int16 while every slice maps exactly
    into it, else float32."""
    n, rows, cols = shape
    values = np.empty((n, rows, cols), dtype=np.int16 if kind == "CT" else np.float32)
    maps = []
    for k, (p, ds) in enumerate(items):
        w = _where(p, ds)
        px = _stored_pixels(ds, w)
        if px.shape[0] != 1:
            raise _SkipSeries(f"{w}: multi-frame file in a slice series")
        m = _value_mapping(ds, kind, w, warn if k == 0 else [])
        m["float"] = px.dtype.kind == "f"
        maps.append(m)
        if values.dtype == np.int16:
            slope, icpt = float(m["slope"]), float(m["intercept"])
            if _int16_exact(px[0], slope, icpt):
                dst = values[k]
                if slope == 1:
                    np.add(px[0], np.int32(icpt), out=dst, casting="unsafe")  # exact: the result fits (checked)
                else:
                    np.copyto(dst, px[0].astype(np.int32) * int(slope) + int(icpt), casting="unsafe")
                continue
            values = np.concatenate([values[:k].astype(np.float32), np.empty((n - k, rows, cols), np.float32)])
        dst = values[k]  # rescale slice by slice while it is in cache
        with np.errstate(over="ignore", invalid="ignore"):
            np.copyto(dst, px[0], casting="unsafe")
        _rescale_in_place(dst, m["slope"], m["intercept"])
    if values.dtype == np.float32 and any(_may_be_non_finite(
            np.dtype(np.float32) if m.get("float") else np.dtype(np.int32), m["slope"], m["intercept"])
            for m in maps):
        _zero_non_finite(values, where, warn)
    return values, maps
