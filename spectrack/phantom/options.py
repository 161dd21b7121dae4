"""The checked arguments of a phantom: injection time, per-time-point values, rotation frames, motion, the
SPECT and CT grids, and the digest of the arguments (written into ``truth.json``)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import numpy as np

from ..geometry import Image
from .model import DEFAULT_INJECTION
from .presets import Preset


def _parse_datetime(v) -> dt.datetime:
    if v is None:
        return DEFAULT_INJECTION
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            raise ValueError("injection_datetime must be timezone-naive (local scanner time)")
        return v
    return dt.datetime.fromisoformat(str(v))


def _per_timepoint(value, default, n, what):
    if value is None:
        vals = list(default)
        vals = vals[:n] + [vals[-1]] * max(0, n - len(vals))
        return [float(v) for v in vals]
    if np.ndim(value) == 0:
        return [float(value)] * n
    vals = [float(v) for v in value]
    if len(vals) != n:
        raise ValueError(f"{what} has {len(vals)} values for {n} time points")
    return vals


def rotation_frames(duration_s: float) -> tuple[int, int]:
    """``(NumberOfFramesInRotation, ActualFrameDuration ms)`` whose product is the duration exactly."""
    total_ms = duration_s * 1000.0
    if abs(total_ms - round(total_ms)) > 1e-6 or total_ms <= 0:
        raise ValueError(f"frame_duration_s must be a positive whole number of milliseconds, got {duration_s}")
    total_ms = int(round(total_ms))
    for n in (60, 64, 120, 128, 40, 50, 32, 30, 20, 16, 10, 8, 5, 4, 2, 1):
        if total_ms % n == 0:
            return n, total_ms // n
    raise AssertionError("unreachable")  # n = 1 always divides


def _parse_motion(motion, n, seed, pre: Preset):
    """Per-time-point ``(tx, ty, tz, rx, ry, rz)`` or None."""
    if motion is None or motion is False:
        return [None] * n
    if isinstance(motion, str) or motion is True:
        if motion is not True and motion != "random":
            raise ValueError(f"motion must be None, 'random', a list or a dict, got {motion!r}")
        rng = np.random.default_rng([int(seed), 0x6D6F74])
        out = [None]
        for _ in range(1, n):
            t = rng.uniform(-1, 1, 3) * 2.0 * max(pre.spacing_mm)
            r = rng.uniform(-1, 1, 3) * 3.0
            out.append(tuple(float(v) for v in np.round(np.concatenate([t, r]), 3)))
        return out
    if isinstance(motion, dict):
        out = [None] * n
        for k, v in motion.items():
            out[int(k)] = None if v is None else tuple(float(a) for a in v)
        return out
    out = [None if v is None else tuple(float(a) for a in v) for v in motion]
    if len(out) != n:
        raise ValueError(f"motion has {len(out)} entries for {n} time points")
    for v in out:
        if v is not None and len(v) != 6:
            raise ValueError("each motion entry is (tx, ty, tz, rx, ry, rz) in mm and degrees")
    return out


def _grid(pre: Preset, spect_shape, ct_refine: int):
    n = np.asarray(spect_shape if spect_shape is not None else pre.spect_shape, dtype=int).reshape(3)
    if np.any(n < 4):
        raise ValueError(f"spect_shape must be at least 4 voxels per axis, got {tuple(n)}")
    if ct_refine < 1 or ct_refine % 2 == 0:
        raise ValueError(f"ct_refine must be an odd integer >= 1 (1 or 3), got {ct_refine}")
    sp = np.array([round(f / k, 6) for f, k in zip(pre.fov_mm, n)])
    origin = np.round(np.asarray(pre.fov_centre_mm) - sp * (n - 1) / 2.0, 4)
    spect = Image(np.zeros(n[::-1], np.float32), origin, sp, np.eye(3), units="")
    r = int(ct_refine)
    csp = sp / r
    corigin = origin - csp * (r - 1) / 2.0
    ct = Image(np.zeros(n[::-1] * r, np.int16), corigin, csp, np.eye(3), units="HU")
    return spect, ct


def _args_digest(args: dict) -> str:
    return hashlib.sha256(json.dumps(args, sort_keys=True, default=str).encode()).hexdigest()[:16]
