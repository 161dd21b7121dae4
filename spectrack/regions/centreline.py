"""A curve in LPS millimetres along a tube-shaped structure (the spinal canal), caudal to cranial.

Shared by the canal finder (:mod:`spectrack.regions.auto.canal`) and the
neuraxis profile (:mod:`spectrack.regions.neuraxis`), so that neither imports
the other to reach it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Centreline"]


@dataclass(eq=False)
class Centreline:
    """A polyline in LPS mm from the caudal (sacral) end to the cranial end.

    Parameters
    ----------
    points_mm : array_like (n, 3)
        Ordered points, caudal first.

    Examples
    --------
    >>> c = Centreline([[0, 0, 0], [0, 0, 10], [0, 0, 30]])
    >>> c.length_mm
    30.0
    >>> c.point_at([15.0]).tolist()
    [[0.0, 0.0, 15.0]]
    >>> s, d = c.project([[3.0, 0.0, 20.0]])
    >>> round(float(s[0]), 1), round(float(d[0]), 1)
    (20.0, 3.0)
    """

    points_mm: np.ndarray

    def __post_init__(self):
        p = np.asarray(self.points_mm, float).reshape(-1, 3)
        if len(p) < 2:
            raise ValueError("a centreline needs at least two points")
        keep = np.concatenate([[True], np.linalg.norm(np.diff(p, axis=0), axis=1) > 1e-9])
        self.points_mm = p[keep]
        seg = np.linalg.norm(np.diff(self.points_mm, axis=0), axis=1)
        self.arclength_mm = np.concatenate([[0.0], np.cumsum(seg)])
        self._tree = None
        self._dense = None

    @property
    def length_mm(self) -> float:
        return float(self.arclength_mm[-1])

    def point_at(self, s_mm) -> np.ndarray:
        """LPS points (n, 3) at arc lengths ``s_mm`` (clamped to the ends)."""
        s = np.atleast_1d(np.asarray(s_mm, float))
        return np.stack([np.interp(s, self.arclength_mm, self.points_mm[:, a]) for a in range(3)], axis=1)

    def tangent_at(self, s_mm) -> np.ndarray:
        """Unit tangents (n, 3) at arc lengths ``s_mm``."""
        s = np.atleast_1d(np.asarray(s_mm, float))
        h = max(self.length_mm * 1e-3, 1e-3)
        t = self.point_at(np.clip(s + h, 0, self.length_mm)) - self.point_at(np.clip(s - h, 0, self.length_mm))
        return t / np.linalg.norm(t, axis=1, keepdims=True)

    def resampled(self, step_mm: float) -> "Centreline":
        """The same curve with points every ``step_mm`` (both ends kept)."""
        n = max(2, int(np.ceil(self.length_mm / float(step_mm))) + 1)
        return Centreline(self.point_at(np.linspace(0.0, self.length_mm, n)))

    def project(self, xyz_mm) -> tuple[np.ndarray, np.ndarray]:
        """Arc length of the nearest centreline point, and the distance to it, of points ``(n, 3)``.

        Uses the curve sampled every 0.1 mm (or finer for short curves).
        """
        from scipy.spatial import cKDTree

        if self._tree is None:
            step = min(0.1, self.length_mm / 100.0)
            n = max(2, int(np.ceil(self.length_mm / step)) + 1)
            s = np.linspace(0.0, self.length_mm, n)
            self._dense = s
            self._tree = cKDTree(self.point_at(s))
        xyz = np.atleast_2d(np.asarray(xyz_mm, float))
        d, i = self._tree.query(xyz)
        return self._dense[i], d

    def transformed(self, matrix) -> "Centreline":
        """The centreline moved by a 4x4 world -> world matrix."""
        m = np.asarray(matrix, float)
        return Centreline(self.points_mm @ m[:3, :3].T + m[:3, 3])

    def to_json(self) -> dict:
        return {"points_mm_lps": np.round(self.points_mm, 4).tolist(), "length_mm": self.length_mm}

    @classmethod
    def from_json(cls, data) -> "Centreline":
        return cls(np.asarray(data["points_mm_lps"] if isinstance(data, dict) else data, float))
