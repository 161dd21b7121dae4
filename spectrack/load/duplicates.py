"""One scan found twice (DICOM and NIfTI, or two copies of a file) is loaded once.

A folder often holds the same scans in two formats: the scanner's DICOM and
the NIfTI a converter wrote from it (the bundled sample study is exactly
that). Two volumes of one modality and one subject whose acquisitions start
at the same time (within :data:`SAME_START_S`) and last as long (within
:data:`SAME_DURATION_S`, when both durations are known) are copies of one
scan. :func:`drop_duplicate_scans` keeps one copy (DICOM before NIfTI, then
the first file in path order), says in a warning which copy was skipped, and
refuses (:class:`~spectrack.errors.InconsistentInputError`, exit 5) when the
copies do not agree.

What "agree" means
------------------
The copies are put on one convention first: the second copy's voxels are
re-indexed onto the first copy's grid (any axis order and direction, since
DICOM and NIfTI store the same voxels in different orders; see
:func:`same_voxels_on`). Then

* the grids hold the same voxels: every voxel centre of one copy is a voxel
  centre of the other within :data:`GRID_TOL_VOXEL` of a voxel;
* every voxel agrees within ``VALUE_REL_TOL * max(|a|, |b|) +
  PEAK_REL_TOL * peak (+ 0.5 when values are counts or HU)``: the relative
  term covers float32 against float64, the peak term covers integer storage
  with a rescale slope (a 12-bit image holds the peak in 4095 steps, half a
  step is 1.2e-4 of the peak), the half count/HU covers a float image
  against the integers a DICOM writer rounded it to;
* the totals agree within :data:`TOTAL_REL_TOL` (0.1 %, the accuracy
  spectrack promises on %ID);
* metadata that changes %ID (units, decay correction, duration, injected
  activity, injection time, half-life) agree wherever both copies read them
  from their headers (values a reader assumed are not compared). A copy in
  ``cps`` is compared with one in ``counts`` after multiplying by the
  duration.

Values within these tolerances give the same %ID within 0.1 %; anything
else is two different images claiming to be one scan, and the user must say
which one is right (by removing the other).

CTs are not quantified, and one CT acquisition is often reconstructed twice
(two kernels or slice thicknesses, same start). So a CT is a copy of another
when it starts within :data:`CT_COPY_WINDOW_S` of it (converters may take
the time of another slice) and agrees with it as above; it is then skipped
with a warning, so it neither pairs with a time point nor shows up as an
unpaired CT. CTs that differ are all kept, without an error.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from ..errors import InconsistentInputError
from .model import Series

__all__ = ["drop_duplicate_scans", "same_voxels_on", "SAME_START_S", "SAME_DURATION_S", "CT_COPY_WINDOW_S",
           "GRID_TOL_VOXEL", "VALUE_REL_TOL", "PEAK_REL_TOL", "TOTAL_REL_TOL"]

#: Two acquisitions starting within this many seconds start "at the same time".
SAME_START_S = 1.0
#: Two CTs this close in time (seconds) holding the same voxels and values are one CT.
CT_COPY_WINDOW_S = 300.0
#: Two durations within this many seconds are "the same duration".
SAME_DURATION_S = 1.0
#: Largest distance (in voxels) between matching voxel centres of two copies.
GRID_TOL_VOXEL = 0.01
#: Per-voxel relative tolerance (of the larger of the two values).
VALUE_REL_TOL = 1e-3
#: Per-voxel absolute tolerance as a fraction of the copy's largest |value|.
PEAK_REL_TOL = 5e-4
#: Tolerance on the totals of the two copies (relative).
TOTAL_REL_TOL = 1e-3
#: Units stored as integers by DICOM writers: half a unit of rounding is allowed per voxel.
_INTEGER_UNITS = ("counts", "HU")

#: Metadata compared between copies: key -> (relative tolerance, absolute tolerance) or None for equality.
_COMPARED_META = {
    "decay_correction": None,
    "duration_s": (0.0, SAME_DURATION_S),
    "injected_activity_mbq": (1e-3, 0.0),
    "injection_time": (0.0, 1.0),
    "half_life_h": (1e-3, 0.0),
}


def _is_nifti(s: Series) -> bool:
    return bool(s.files) and str(s.files[0]).lower().endswith((".nii", ".nii.gz"))


def _format(s: Series) -> str:
    return "NIfTI" if _is_nifti(s) else "DICOM"


def _name(s: Series, root: Path | None) -> str:
    """The series as the user knows it: format, description and first file (relative to ``root``)."""
    if not s.files:
        return f"{_format(s)} {s.describe()}"
    p = Path(s.files[0])
    if root is not None:
        try:
            p = p.resolve().relative_to(Path(root).resolve())
        except (ValueError, OSError):
            pass
    desc = s.get("series_description")
    if _is_nifti(s):
        return f"NIfTI {p}"
    more = f", {len(s.files)} files" if len(s.files) > 1 else ""
    return f"DICOM '{desc}' ({p}{more})" if desc else f"DICOM {p}" + (f" ({len(s.files)} files)" if more else "")


def _was_read(s: Series, key: str) -> bool:
    """The value of ``key`` came from a header, not from a default or an assumption."""
    src = (s.source(key) or "").lower()
    return s.get(key) is not None and not src.startswith("default") and "assumed" not in src


def _same_start(a: Series, b: Series) -> bool:
    ta, tb = a.acquisition_start, b.acquisition_start
    return ta is not None and tb is not None and abs((ta - tb).total_seconds()) <= SAME_START_S


def _same_subject(a: Series, b: Series) -> bool:
    pa, pb = a.get("patient_id"), b.get("patient_id")
    return pa is None or pb is None or str(pa) == str(pb)


def same_voxels_on(image, other):
    """``other``'s voxel values on ``image``'s grid, when the two grids hold the same voxels.

    The grids may order and direct their axes differently (DICOM rows and
    columns against a NIfTI's RAS storage, a reversed slice order); the
    values are re-indexed, not interpolated.

    Parameters
    ----------
    image, other : spectrack.geometry.Image

    Returns
    -------
    numpy.ndarray or None
        A view of ``other.array`` indexed like ``image.array`` (``[k, j, i]``),
        or ``None`` when some voxel centre of one grid is farther than
        :data:`GRID_TOL_VOXEL` voxels from every voxel centre of the other.

    Examples
    --------
    >>> from spectrack.geometry import Image
    >>> a = Image(np.arange(24.0).reshape(2, 3, 4), spacing_mm=(1, 2, 3))
    >>> b = Image(a.array[::-1].transpose(2, 1, 0), origin_mm=(0, 0, 3), spacing_mm=(3, 2, 1),
    ...           direction=[[0, 0, 1], [0, 1, 0], [-1, 0, 0]])
    >>> bool(np.array_equal(same_voxels_on(a, b), a.array))
    True
    """
    t = np.linalg.inv(other.affine) @ image.affine  # image (i, j, k) -> other (i, j, k)
    perm = np.rint(t[:3, :3])
    if not (np.all(np.abs(perm).sum(axis=0) == 1) and np.all(np.abs(perm).sum(axis=1) == 1)):
        return None
    shape = np.array(image.shape_ijk)
    corners = np.array([[i, j, k] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)],
                       dtype=float)
    mapped = corners @ t[:3, :3].T + t[:3, 3]
    if np.max(np.abs(mapped - np.rint(mapped))) > GRID_TOL_VOXEL:
        return None
    mapped = np.rint(mapped).astype(int)
    other_shape = np.array(other.shape_ijk)
    if np.any(mapped.min(axis=0) != 0) or np.any(mapped.max(axis=0) != other_shape - 1):
        return None
    src_axis = [int(np.flatnonzero(perm[:, a])[0]) for a in range(3)]  # other's axis that image's axis a runs along
    view = other.array.transpose(2, 1, 0).transpose(src_axis)  # [i, j, k] of image
    if tuple(view.shape) != tuple(shape):
        return None
    for a in range(3):
        if perm[src_axis[a], a] < 0:
            view = np.flip(view, axis=a)
    return view.transpose(2, 1, 0)


def _value_scale(keep: Series, other: Series) -> tuple[float, str | None]:
    """Factor turning ``other``'s values into ``keep``'s units, or a reason they cannot be compared."""
    ua, ub = keep.get("units"), other.get("units")
    if ua == ub or not (_was_read(keep, "units") and _was_read(other, "units")):
        return 1.0, None
    dur = keep.get("duration_s") or other.get("duration_s")
    if {ua, ub} == {"counts", "cps"} and dur:
        return (float(dur) if ub == "cps" else 1.0 / float(dur)), None
    return 1.0, f"one is in {ua}, the other in {ub}"


def _meta_disagreement(keep: Series, other: Series) -> str | None:
    for key, tol in _COMPARED_META.items():
        if not (_was_read(keep, key) and _was_read(other, key)):
            continue
        va, vb = keep.get(key), other.get(key)
        if tol is None:
            same = str(va).upper() == str(vb).upper()
        else:
            if isinstance(va, dt.datetime):
                diff = abs((va - vb).total_seconds())
                scale = 0.0
            else:
                diff, scale = abs(float(va) - float(vb)), max(abs(float(va)), abs(float(vb)))
            same = diff <= tol[0] * scale + tol[1]
        if not same:
            def show(v):
                return v.isoformat(sep=" ") if isinstance(v, dt.datetime) else f"{v:g}" \
                    if isinstance(v, float) else str(v)

            return (f"their {key} differs ({show(va)} from {keep.source(key)} against {show(vb)} from "
                    f"{other.source(key)})")
    return None


def _value_disagreement(keep: Series, other: Series) -> str | None:
    """Why the voxel values of two copies of one scan disagree, or ``None`` (see the module docstring)."""
    scale, why = _value_scale(keep, other)
    if why:
        return why
    b = same_voxels_on(keep.image, other.image)
    if b is None:
        ia, ib = keep.image, other.image
        return (f"they are on different voxel grids ({'x'.join(map(str, ia.shape_ijk))} voxels of "
                f"{'x'.join(f'{v:.4g}' for v in ia.spacing_mm)} mm at {np.round(ia.origin_mm, 2).tolist()} against "
                f"{'x'.join(map(str, ib.shape_ijk))} of {'x'.join(f'{v:.4g}' for v in ib.spacing_mm)} mm at "
                f"{np.round(ib.origin_mm, 2).tolist()}, LPS)")
    a_arr = keep.image.array
    peak = 0.0
    total_a = total_b = 0.0
    worst, worst_at = 0.0, None
    allow_units = 0.5 if keep.get("units") in _INTEGER_UNITS else 0.0
    for k in range(a_arr.shape[0]):  # slab by slab: a CT pair need not fit in memory twice as float64
        peak = max(peak, float(np.max(np.abs(a_arr[k]))) if a_arr[k].size else 0.0,
                   float(np.max(np.abs(b[k]))) * abs(scale) if b[k].size else 0.0)
    for k in range(a_arr.shape[0]):
        sa = np.asarray(a_arr[k], dtype=np.float64)
        sb = np.asarray(b[k], dtype=np.float64) * scale
        total_a += float(sa.sum())
        total_b += float(sb.sum())
        excess = np.abs(sa - sb) - (VALUE_REL_TOL * np.maximum(np.abs(sa), np.abs(sb)) + PEAK_REL_TOL * peak
                                    + allow_units)
        m = float(excess.max()) if excess.size else 0.0
        if m > worst:
            worst = m
            j, i = np.unravel_index(int(np.argmax(excess)), excess.shape)
            worst_at = (int(i), int(j), k, float(sa[j, i]), float(sb[j, i]))
    if worst_at is not None:
        i, j, k, va, vb = worst_at
        return (f"voxel values differ ({va:.6g} against {vb:.6g} {keep.get('units') or ''} at voxel i={i} j={j} "
                f"k={k} of the {_format(keep)} copy, peak {peak:.6g}; allowed {VALUE_REL_TOL:g} of the value + "
                f"{PEAK_REL_TOL:g} of the peak{' + 0.5' if allow_units else ''})")
    denom = max(abs(total_a), abs(total_b))
    if denom > 0 and abs(total_a - total_b) > TOTAL_REL_TOL * denom:
        return (f"their totals differ by {100 * abs(total_a - total_b) / denom:.3g} % (allowed "
                f"{100 * TOTAL_REL_TOL:g} %)")
    return None


def _preference(s: Series) -> tuple:
    return (1 if _is_nifti(s) else 0, str(s.files[0]) if s.files else "")


def _copies(series: list[Series]) -> list[list[Series]]:
    """Group series that are copies of one scan: same modality, subject and start (and duration)."""
    groups: list[list[Series]] = []
    for s in sorted(series, key=_preference):
        for g in groups:
            first = g[0]
            if s.modality == first.modality and _same_subject(s, first) and _same_start(s, first):
                g.append(s)
                break
        else:
            groups.append([s])
    return groups


def _when(s: Series) -> str:
    return s.acquisition_start.isoformat(sep=" ", timespec="seconds")


def drop_duplicate_scans(series: list[Series], warnings: list[str], *, root=None) -> list[Series]:
    """Keep one copy of every scan that is in the input twice (see the module docstring).

    Parameters
    ----------
    series : list of Series
        Everything loaded (emission volumes and CTs).
    warnings : list of str
        Receives one warning per skipped copy.
    root : path-like, optional
        Folder the file names in messages are made relative to.

    Returns
    -------
    list of Series
        ``series`` without the skipped copies, in the original order.

    Raises
    ------
    InconsistentInputError
        Two copies of one emission scan disagree (values, grid, units, decay
        state, duration, injection), or two emission volumes start together
        but last differently long.
    """
    root = Path(root) if root is not None else None
    if root is not None and root.is_file():
        root = root.parent
    skipped: dict[int, tuple] = {}
    emissions = [s for s in series if s.acquisition_start is not None and s.modality in ("NM", "PT")]
    for group in _copies(emissions):
        keep = group[0]
        for other in group[1:]:
            what = f"{keep.modality} scan"
            both = f"{_name(keep, root)} and {_name(other, root)}"
            da, db = keep.get("duration_s"), other.get("duration_s")
            if da and db and abs(float(da) - float(db)) > SAME_DURATION_S:
                raise InconsistentInputError(
                    f"two {keep.modality} volumes start at {_when(keep)} but last {float(da):g} s and "
                    f"{float(db):g} s ({both}): they are not copies of one scan and cannot be two time points; "
                    "remove the one that should not be quantified")
            why = _meta_disagreement(keep, other) or _value_disagreement(keep, other)
            if why:
                raise InconsistentInputError(
                    f"the {what} starting {_when(keep)} is in the input twice ({both}) and the copies disagree: "
                    f"{why}; remove the wrong copy (or put each format in its own folder)")
            skipped[id(other)] = (keep.acquisition_start, False, _name(other, root),
                                  f"the same {what} (start {_when(keep)}) with the same voxel values as "
                                  f"{_name(keep, root)}; each scan is quantified once")
    # CTs: a copy is a CT of the subject within CT_COPY_WINDOW_S holding the same voxels and values. CTs that
    # differ stay (two reconstructions of one CT acquisition are common, and the CT is not quantified).
    kept_cts: list[Series] = []
    for c in sorted((s for s in series if s.acquisition_start is not None and s.modality == "CT"), key=_preference):
        twin = next((k for k in kept_cts if _same_subject(k, c)
                     and abs((k.acquisition_start - c.acquisition_start).total_seconds()) <= CT_COPY_WINDOW_S
                     and _value_disagreement(k, c) is None), None)
        if twin is None:
            kept_cts.append(c)
            continue
        skipped[id(c)] = (twin.acquisition_start, True, _name(c, root),
                          f"the same CT (start {_when(twin)}) with the same voxel values as {_name(twin, root)}")
    for _, _, name, why in sorted(skipped.values()):
        warnings.append(f"skipped {name}: {why}")
    return [s for s in series if id(s) not in skipped]
