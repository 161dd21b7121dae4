"""Per-region statistics of one or many frames over fixed labels.

The labels are sorted once (:class:`RegionIndex`); each frame then costs one
gather and a few ``reduceat`` passes, so a time series of frames on one grid
is summarised without re-scanning the labels.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RegionIndex", "region_stats"]


class RegionIndex:
    """Precomputed voxel ordering of a label array.

    Parameters
    ----------
    labels : numpy.ndarray of int
        Label array (0 = background, ignored).

    Examples
    --------
    >>> lab = np.array([[0, 1], [2, 1]])
    >>> ri = RegionIndex(lab)
    >>> ri.labels.tolist(), ri.counts.tolist()
    ([1, 2], [2, 1])
    >>> s = ri.stats(np.array([[5.0, 1.0], [4.0, 3.0]]))
    >>> s["sum"].tolist(), s["max"].tolist()
    ([4.0, 4.0], [3.0, 4.0])
    """

    def __init__(self, labels: np.ndarray):
        flat = np.ascontiguousarray(labels).ravel()
        fg = np.flatnonzero(flat)
        lab_fg = flat[fg]
        order = np.argsort(lab_fg, kind="stable")
        self.voxels = fg[order]
        sorted_lab = lab_fg[order]
        if sorted_lab.size:
            starts = np.flatnonzero(np.r_[True, sorted_lab[1:] != sorted_lab[:-1]])
        else:
            starts = np.array([], dtype=np.intp)
        self.labels = sorted_lab[starts].astype(np.int64)
        self.starts = starts
        self.counts = np.diff(np.r_[starts, sorted_lab.size]).astype(np.int64)
        self.shape = labels.shape

    def stats(self, frame: np.ndarray) -> dict[str, np.ndarray]:
        """Sum, mean and max of ``frame`` in each label (float64 sums)."""
        if frame.shape != self.shape:
            raise ValueError(f"frame shape {frame.shape} differs from labels {self.shape}")
        if self.labels.size == 0:
            e = np.zeros(0)
            return {"sum": e, "mean": e, "max": e}
        vals = np.ascontiguousarray(frame).ravel()[self.voxels]
        sums = np.add.reduceat(vals, self.starts, dtype=np.float64)
        maxs = np.maximum.reduceat(vals, self.starts).astype(np.float64)
        return {"sum": sums, "mean": sums / self.counts, "max": maxs}


def region_stats(frame: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """One-shot per-region statistics (see :class:`RegionIndex`).

    Returns a dict of 1-D arrays: ``label``, ``n_voxels``, ``sum``, ``mean``,
    ``max``.
    """
    ri = RegionIndex(labels)
    out = ri.stats(frame)
    out["label"] = ri.labels
    out["n_voxels"] = ri.counts
    return out
