"""Per-region statistics of one or many frames over fixed labels.

The labels are analysed once (:class:`RegionIndex`): the voxels of each
label, in memory order, form *runs* (stretches of one label along the fastest
array axis). Each frame then costs at most one gather and two ``reduceat``
passes over the labelled voxels (sum and maximum of every run), and a few
small passes over the runs to combine them per label. A time series of frames
on one grid is summarised without re-scanning the labels.

Two layouts are chosen from the labels, whichever reads less memory:

* **dense** (labelled voxels fill at least half of the span from the first to
  the last labelled voxel): the frame is reduced in place over that span,
  background runs included and then dropped; no gather, no copy.
* **sparse**: the labelled voxels are gathered in memory order (one
  ``take`` with ascending indices) and their runs reduced.

Sums of float32 frames are accumulated in float32 within a run (pairwise
summation, at most one array row long) and in float64 across runs; other
dtypes are summed in float64 throughout. ``benchmarks/bench_stats.py``
compares this with scikit-image and SimpleITK.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RegionIndex", "region_stats"]

#: Labelled fraction of the span above which frames are reduced in place.
DENSE_FRACTION = 0.5


def _run_starts(values: np.ndarray) -> np.ndarray:
    """Start index of every run of equal values in a 1-D array (non-empty)."""
    change = np.flatnonzero(values[1:] != values[:-1])
    out = np.empty(change.size + 1, dtype=np.intp)
    out[0] = 0
    np.add(change, 1, out=out[1:])
    return out


class RegionIndex:
    """Precomputed run structure of a label array, for fast per-frame statistics.

    Parameters
    ----------
    labels : numpy.ndarray of int
        Label array (0 = background, ignored).

    Attributes
    ----------
    labels : numpy.ndarray of int64
        The labels present, ascending.
    counts : numpy.ndarray of int64
        Voxels of each label.
    shape : tuple of int
        Shape frames must have.
    mode : str
        ``"dense"`` or ``"sparse"`` (see the module docstring).

    Examples
    --------
    >>> lab = np.array([[0, 1], [2, 1]])
    >>> ri = RegionIndex(lab)
    >>> ri.labels.tolist(), ri.counts.tolist()
    ([1, 2], [2, 1])
    >>> s = ri.stats(np.array([[5.0, 1.0], [4.0, 3.0]]))
    >>> s["sum"].tolist(), s["mean"].tolist(), s["max"].tolist()
    ([4.0, 4.0], [2.0, 4.0], [3.0, 4.0])
    """

    def __init__(self, labels: np.ndarray):
        labels = np.asarray(labels)
        self.shape = labels.shape
        flat = np.ascontiguousarray(labels).reshape(-1)
        self._size = flat.size
        nz = np.flatnonzero(flat) if flat.size else np.zeros(0, dtype=np.intp)
        if nz.size == 0:
            self.labels = np.zeros(0, dtype=np.int64)
            self.counts = np.zeros(0, dtype=np.int64)
            self.mode = "dense"
            self._lo = self._hi = 0
            self._gather = self._keep = None
            self._runs = self._run_order = self._label_starts = np.zeros(0, dtype=np.intp)
            return
        lo, hi = int(nz[0]), int(nz[-1]) + 1
        self._lo, self._hi = lo, hi
        if nz.size >= DENSE_FRACTION * (hi - lo):
            self.mode = "dense"
            span = flat[lo:hi]
            runs = _run_starts(span)
            run_lab = span[runs]
            keep = np.flatnonzero(run_lab != 0)
            run_len = np.diff(np.append(runs, hi - lo))[keep]
            run_lab = run_lab[keep]
            self._gather = None
            self._keep = None if keep.size == runs.size else keep
            del nz
        else:
            self.mode = "sparse"
            fg_lab = flat[nz]
            runs = _run_starts(fg_lab)
            run_lab = fg_lab[runs]
            run_len = np.diff(np.append(runs, nz.size))
            self._gather = nz
            self._keep = None
        self._runs = runs
        uniq, inv = np.unique(run_lab, return_inverse=True)
        order = np.argsort(inv, kind="stable")
        inv_sorted = inv[order]
        self._run_order = order
        self._label_starts = np.flatnonzero(np.r_[True, inv_sorted[1:] != inv_sorted[:-1]])
        self.labels = uniq.astype(np.int64)
        self.counts = np.add.reduceat(run_len[order], self._label_starts).astype(np.int64)

    # the old layout (label-sorted voxel indices), computed on demand
    def _voxel_labels(self) -> tuple[np.ndarray, np.ndarray]:
        """(flat index, label) of every voxel the frames are reduced over, in memory order."""
        n_runs = self._runs.size
        ends = np.append(self._runs[1:], (self._hi - self._lo) if self._gather is None else self._gather.size)
        kept_label = np.empty(self._run_order.size, dtype=np.int64)
        kept_label[self._run_order] = np.repeat(self.labels, np.diff(np.append(self._label_starts,
                                                                              self._run_order.size)))
        run_label = np.zeros(n_runs, dtype=np.int64)
        run_label[slice(None) if self._keep is None else self._keep] = kept_label
        lab = np.repeat(run_label, ends - self._runs)
        idx = np.arange(self._lo, self._hi) if self._gather is None else self._gather
        return idx, lab

    @property
    def voxels(self) -> np.ndarray:
        """Flat indices of the labelled voxels grouped by label (ascending within a label)."""
        if self.labels.size == 0:
            return np.zeros(0, dtype=np.intp)
        idx, lab = self._voxel_labels()
        sel = np.flatnonzero(lab)
        return idx[sel][np.argsort(lab[sel], kind="stable")]

    @property
    def starts(self) -> np.ndarray:
        """Offsets of each label's first voxel in :attr:`voxels`."""
        return np.r_[0, np.cumsum(self.counts)[:-1]].astype(np.intp) if self.counts.size else \
            np.zeros(0, dtype=np.intp)

    def stats(self, frame: np.ndarray) -> dict[str, np.ndarray]:
        """Sum, mean and max of ``frame`` in each label (float64 results).

        Parameters
        ----------
        frame : numpy.ndarray
            Values on the grid of the labels (same shape). float32 is the
            fast path; other dtypes are accepted.

        Returns
        -------
        dict
            ``sum``, ``mean``, ``max``: 1-D float64 arrays in the order of
            :attr:`labels`. A NaN voxel makes its region's sum, mean and max
            NaN.
        """
        frame = np.asarray(frame)
        if frame.shape != self.shape:
            raise ValueError(f"frame shape {frame.shape} differs from labels {self.shape}")
        if self.labels.size == 0:
            e = np.zeros(0)
            return {"sum": e, "mean": e, "max": e}
        flat = np.ascontiguousarray(frame).reshape(-1)
        if self._gather is None:
            vals = flat[self._lo:self._hi]
        else:
            vals = flat.take(self._gather)
        if vals.dtype == np.float32:
            with np.errstate(over="ignore"):
                run_sum = np.add.reduceat(vals, self._runs)
            if not np.all(np.isfinite(run_sum)):  # float32 overflows near 3.4e38: sum those runs in float64
                run_sum = np.add.reduceat(vals, self._runs, dtype=np.float64)
        else:
            run_sum = np.add.reduceat(vals, self._runs, dtype=np.float64)
        run_max = np.maximum.reduceat(vals, self._runs)
        if self._keep is not None:
            run_sum, run_max = run_sum[self._keep], run_max[self._keep]
        order, starts = self._run_order, self._label_starts
        sums = np.add.reduceat(run_sum[order].astype(np.float64, copy=False), starts)
        maxs = np.maximum.reduceat(run_max[order], starts).astype(np.float64)
        return {"sum": sums, "mean": sums / self.counts, "max": maxs}


def region_stats(frame: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """One-shot per-region statistics (see :class:`RegionIndex`).

    Returns a dict of 1-D arrays: ``label``, ``n_voxels``, ``sum``, ``mean``,
    ``max``.

    Examples
    --------
    >>> out = region_stats(np.arange(6.0).reshape(2, 3), np.array([[1, 1, 0], [0, 2, 2]]))
    >>> out["label"].tolist(), out["n_voxels"].tolist(), out["sum"].tolist()
    ([1, 2], [2, 2], [1.0, 9.0])
    """
    ri = RegionIndex(labels)
    out = ri.stats(frame)
    out["label"] = ri.labels
    out["n_voxels"] = ri.counts
    return out
