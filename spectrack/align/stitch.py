"""Multi-bed stitching: several SPECT bed positions of one time point in one volume.

Each bed is decay-corrected from its own acquisition start to a common
reference time (and, when the acquisition lengths are given, by the in-frame
factor that turns the mean over the acquisition into the activity at its
start, see :func:`spectrack.physics.in_frame_factor`) before the beds are
combined on the union of their grids.
"""

from __future__ import annotations

import datetime as _dt

import numpy as np

from ..errors import InconsistentInputError, MissingMetadataError
from ..geometry import Image
from ..physics import decay_factor, in_frame_factor
from .resample import resample_image

__all__ = ["stitch_beds", "bed_correction_factors", "OVERLAP_MODES"]

#: How voxels seen by several beds are combined.
OVERLAP_MODES = ("average", "best_counts", "nearest_centre")

_LATTICE_TOL = 1e-3  # voxel fraction within which a bed counts as on the union lattice


def bed_correction_factors(acquisition_starts, *, half_life_h: float, reference_time,
                           durations_s=None) -> np.ndarray:
    """Factor per bed turning its values into activity at ``reference_time``.

    ``exp(lambda (t_start - t_ref))``, times ``lambda D / (1 - exp(-lambda D))``
    when the acquisition durations ``D`` are given (values that are a mean
    over the acquisition, i.e. not decay-corrected by the scanner).

    Examples
    --------
    >>> import datetime as dt
    >>> t0 = dt.datetime(2024, 1, 1, 12)
    >>> bed_correction_factors([t0, t0 + dt.timedelta(hours=6.0067)], half_life_h=6.0067,
    ...                        reference_time=t0).round(6).tolist()
    [1.0, 2.0]
    """
    starts = list(acquisition_starts)
    if reference_time is None:
        raise MissingMetadataError("reference time for stitching", "the call", "reference_time=")
    if not isinstance(reference_time, _dt.datetime):
        raise InconsistentInputError(f"reference_time must be a datetime, got {type(reference_time).__name__}")
    out = []
    for n, t in enumerate(starts):
        if not isinstance(t, _dt.datetime):
            raise MissingMetadataError(f"acquisition start of bed {n}", "the bed headers",
                                       "acquisition_starts= (datetime per bed)")
        out.append(float(decay_factor((t - reference_time).total_seconds() / 3600.0, half_life_h)))
    out = np.asarray(out)
    if durations_s is not None:
        d = np.asarray(list(durations_s), dtype=float)
        if d.shape != out.shape:
            raise InconsistentInputError(f"{len(d)} durations given for {len(out)} beds: give one per bed")
        if np.any(~np.isfinite(d)) or np.any(d <= 0):
            raise InconsistentInputError(f"bed durations must be positive seconds, got {d.tolist()}")
        out = out * np.asarray(in_frame_factor(d / 3600.0, half_life_h), dtype=float)
    return out


def _union_grid(beds: list[Image]) -> tuple[Image, list]:
    """Grid of bed 0's orientation and spacing covering all beds, and each bed's
    integer voxel offset on it (``None`` when the bed is off the lattice)."""
    ref = beds[0]
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    cont = []
    for b in beds:
        n = np.array(b.shape_ijk, dtype=float) - 1
        corners = np.array([[a, c, d] for a in (0, n[0]) for c in (0, n[1]) for d in (0, n[2])])
        idx = ref.world_to_index(b.index_to_world_mm(corners))
        cont.append(ref.world_to_index(b.origin_mm))
        lo = np.minimum(lo, idx.min(0))
        hi = np.maximum(hi, idx.max(0))
    lo = np.floor(lo + _LATTICE_TOL)
    hi = np.ceil(hi - _LATTICE_TOL)
    shape_ijk = (hi - lo + 1).astype(int)
    grid = Image(np.zeros(tuple(shape_ijk[::-1]), dtype=np.float32), ref.index_to_world_mm(lo),
                 ref.spacing_mm, ref.direction, units=ref.units)
    offsets = []
    for b, c in zip(beds, cont):
        off = c - lo
        on_lattice = (np.allclose(b.spacing_mm, ref.spacing_mm, rtol=1e-5, atol=1e-6)
                      and np.allclose(b.direction, ref.direction, atol=1e-6)
                      and np.all(np.abs(off - np.round(off)) < _LATTICE_TOL))
        offsets.append(np.round(off).astype(int) if on_lattice else None)
    return grid, offsets


def stitch_beds(
    beds,
    acquisition_starts,
    *,
    half_life_h: float,
    reference_time,
    overlap: str = "average",
    durations_s=None,
) -> Image:
    """Combine the bed positions of one time point into one decay-corrected volume.

    Parameters
    ----------
    beds : list of Image
        Bed volumes in the same units, same orientation (direction cosines),
        overlapping along the patient axis. Beds on the lattice of the first
        bed are placed exactly; others are resampled (linear) onto it.
    acquisition_starts : list of datetime
        Acquisition start of each bed (timezone-naive).
    half_life_h : float
        Physical half-life of the nuclide in hours.
    reference_time : datetime
        Time all beds are decay-corrected to (e.g. the first bed's start or
        the injection time).
    overlap : {'average', 'best_counts', 'nearest_centre'}
        Voxels seen by several beds take the mean of the corrected values
        (``'average'``), the values of the bed with the most counts (sum of
        uncorrected values) in that overlap region (``'best_counts'``: the
        bed that sees the region with the better sensitivity), or of the bed
        whose field-of-view centre is nearest (``'nearest_centre'``).
    durations_s : list of float, optional
        Acquisition length of each bed. When given, the values are taken as
        means over the acquisition and also multiplied by the in-frame factor.

    Returns
    -------
    Image
        Float volume on the union grid in the beds' units, corrected to
        ``reference_time``; voxels seen by no bed are 0. ``meta`` holds the
        correction factors, the overlap mode and the reference time.

    Raises
    ------
    InconsistentInputError
        For no beds, mismatched list lengths, different orientations, or an
        unknown overlap mode.
    MissingMetadataError
        When a bed's start time or the reference time is missing.
    """
    beds = list(beds)
    starts = list(acquisition_starts)
    if not beds:
        raise InconsistentInputError("no beds to stitch: give at least one bed image")
    if len(starts) != len(beds):
        raise InconsistentInputError(f"{len(starts)} acquisition starts for {len(beds)} beds: give one per bed")
    if overlap not in OVERLAP_MODES:
        raise InconsistentInputError(f"unknown overlap mode {overlap!r}: use one of {', '.join(OVERLAP_MODES)}")
    for n, b in enumerate(beds[1:], start=1):
        if not np.allclose(b.direction, beds[0].direction, atol=1e-4):
            raise InconsistentInputError(
                f"bed {n} is oriented differently from bed 0: beds of one time point must share "
                "their direction cosines")
        if b.units != beds[0].units:
            raise InconsistentInputError(f"bed {n} is in {b.units!r} but bed 0 in {beds[0].units!r}: "
                                         "convert the beds to the same units first")
    factors = bed_correction_factors(starts, half_life_h=half_life_h, reference_time=reference_time,
                                     durations_s=durations_s)

    grid, offsets = _union_grid(beds)
    shape = grid.array.shape
    dtype = np.result_type(np.float32, *[b.array.dtype for b in beds])
    if not np.issubdtype(dtype, np.floating):
        dtype = np.float64
    total = np.zeros(shape, dtype=np.float64)
    count = np.zeros(shape, dtype=np.int32)
    owner_bits = np.zeros(shape, dtype=np.int64)
    raw_on_grid, corr_on_grid, covers = [], [], []
    resampled = []
    for n, (b, off, fac) in enumerate(zip(beds, offsets, factors)):
        raw = np.zeros(shape, dtype=np.float64)
        cov = np.zeros(shape, dtype=bool)
        if off is not None:
            i, j, k = off
            nk, nj, ni = b.array.shape
            sl = (slice(k, k + nk), slice(j, j + nj), slice(i, i + ni))
            raw[sl] = b.array
            cov[sl] = True
        else:
            resampled.append(n)
            raw = resample_image(b, grid, order=1).array.astype(np.float64)
            idx = b.world_to_index(grid.voxel_centres_mm())
            cov = np.all((idx > -0.5) & (idx < np.array(b.shape_ijk) - 0.5), axis=-1)
        corr = raw * fac
        raw_on_grid.append(raw)
        corr_on_grid.append(corr)
        covers.append(cov)
        total[cov] += corr[cov]
        count[cov] += 1
        owner_bits[cov] |= 1 << n

    if overlap == "average":
        out = np.divide(total, count, out=np.zeros(shape), where=count > 0)
    else:
        out = np.zeros(shape, dtype=np.float64)
        if overlap == "nearest_centre":
            centres = [b.index_to_world_mm((np.array(b.shape_ijk) - 1) / 2.0) for b in beds]
            pos = grid.voxel_centres_mm()
            dist = np.stack([np.where(c, np.linalg.norm(pos - ctr, axis=-1), np.inf)
                             for c, ctr in zip(covers, centres)])
            best = np.argmin(dist, axis=0)
            for n in range(len(beds)):
                sel = (best == n) & covers[n]
                out[sel] = corr_on_grid[n][sel]
        else:  # best_counts: per region seen by the same set of beds
            for bits in np.unique(owner_bits[owner_bits > 0]):
                region = owner_bits == bits
                members = [n for n in range(len(beds)) if bits >> n & 1]
                best = max(members, key=lambda n: float(raw_on_grid[n][region].sum()))
                out[region] = corr_on_grid[best][region]

    meta = {
        "stitch": {
            "n_beds": len(beds),
            "overlap": overlap,
            "reference_time": reference_time.isoformat(),
            "half_life_h": float(half_life_h),
            "correction_factors": [float(v) for v in factors],
            "in_frame_factor_applied": durations_s is not None,
            "resampled_beds": resampled,
            "uncovered_voxels": int((count == 0).sum()),
        }
    }
    return Image(out.astype(dtype, copy=False), grid.origin_mm, grid.spacing_mm, grid.direction,
                 units=beds[0].units, meta=meta)
