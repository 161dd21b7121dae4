"""The transforms of a registration: their results (:class:`RigidResult`, one per pair; :class:`TimepointTransforms`,
one per time point), labels carried through them onto a moving grid (:func:`propagate_labels`), and ITK
``.tfm`` files (:func:`save_transform`, :func:`load_transform`).

A transform maps *fixed-space* points to *moving-space* points (the ITK
convention, see :mod:`spectrack.align.register`). Re-exported by
:mod:`spectrack.align.register`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InconsistentInputError, InputError
from ..geometry import Image
from ..regions.labelmap import LabelMap

__all__ = ["RigidResult", "TimepointTransforms", "propagate_labels", "save_transform", "load_transform"]


@dataclass
class RigidResult:
    """Outcome of one rigid registration.

    Attributes
    ----------
    transform : SimpleITK.Euler3DTransform
        Maps fixed-space LPS points (mm) to moving-space points.
    metric_value : float
        Final value of the optimised metric (Mattes MI is negative: lower is better).
    iterations : int
        Optimizer iterations summed over all pyramid levels.
    quality_ncc : float
        Normalised cross-correlation between the fixed image and the moving
        image resampled through ``transform``, inside the fixed mask (or the
        overlap); 1 is a perfect match.
    elapsed_s : float
        Wall time of the registration (seconds).
    stop_condition : str
        The optimizer's stop condition at the finest level.
    metric : str
        Metric name used.
    warnings : list of str
        Things the caller should know (e.g. frames of reference that differ).
    """

    transform: object
    metric_value: float = float("nan")
    iterations: int = 0
    quality_ncc: float = float("nan")
    elapsed_s: float = 0.0
    stop_condition: str = ""
    metric: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def translation_mm(self) -> np.ndarray:
        """Translation part of the transform (mm)."""
        return np.asarray(self.transform.GetTranslation(), dtype=float)

    @property
    def rotation_deg(self) -> np.ndarray:
        """Euler angles (x, y, z) of the transform in degrees."""
        return np.degrees([self.transform.GetAngleX(), self.transform.GetAngleY(),
                           self.transform.GetAngleZ()])

    def map_points_mm(self, points_mm) -> np.ndarray:
        """Map fixed-space LPS points ``(..., 3)`` (mm) into moving space."""
        return _apply_transform(self.transform, points_mm)


class TimepointTransforms(list):
    """One transform per time point (a list), plus the full results and warnings.

    Item ``t`` maps reference-space points to time point ``t``'s points
    (identity for the reference itself).

    Attributes
    ----------
    results : list of RigidResult
        Per time point; the reference has an identity result.
    warnings : list of str
        Frame-of-reference problems and fallbacks, one line each.
    reference_index : int
        Index of the reference time point.
    working_spacing_mm : float or None
        Voxel size the CTs were block-averaged to before registration
        (``None``: registered as they are).
    """

    def __init__(self, results, warnings, reference_index, working_spacing_mm=None):
        super().__init__(r.transform for r in results)
        self.results = list(results)
        self.warnings = list(warnings)
        self.reference_index = reference_index
        self.working_spacing_mm = working_spacing_mm


# ----------------------------------------------------------------- helpers
def _apply_transform(transform, points_mm) -> np.ndarray:
    pts = np.asarray(points_mm, dtype=float)
    flat = pts.reshape(-1, 3)
    out = np.array([transform.TransformPoint(tuple(float(v) for v in p)) for p in flat])
    return out.reshape(pts.shape)


def _as_transform(transform):
    return transform.transform if isinstance(transform, RigidResult) else transform


# ------------------------------------------------------------- labels, I/O
def propagate_labels(labels: LabelMap, transform, target: Image) -> LabelMap:
    """Carry labels drawn in the fixed (reference) space onto a moving grid.

    Parameters
    ----------
    labels : LabelMap
        Labels in the fixed space of the registration (any grid).
    transform : SimpleITK.Transform or RigidResult
        Maps fixed-space points to moving-space points, as returned by
        :func:`register_rigid` (fixed = the labels' time point) and
        :func:`register_timepoints`; it is inverted for the resampling.
    target : Image
        The moving time point's image: its grid is the output grid.

    Returns
    -------
    LabelMap
        Nearest-neighbour labels on ``target``'s grid, same names.
    """
    tf = _as_transform(transform)
    try:
        inverse = tf.GetInverse()
    except RuntimeError:
        raise InconsistentInputError("the transform cannot be inverted: give a rigid or affine transform") from None
    out = labels.resampled_to(target, inverse, method="nearest")
    out.source = f"{labels.source} propagated" if labels.source else "propagated"
    return out


def save_transform(transform, path) -> Path:
    """Write a transform (or a :class:`RigidResult`'s) as an ITK ``.tfm`` file."""
    import SimpleITK as sitk

    from ..io_utils import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        sitk.WriteTransform(_as_transform(transform), str(tmp))
    return path


def load_transform(path):
    """Read an ITK transform file (``.tfm``/``.txt``/``.h5``) written by :func:`save_transform`.

    Returns
    -------
    SimpleITK.Transform
        Downcast to its concrete class (e.g. ``Euler3DTransform``).
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.exists():
        raise InputError(f"transform file {path} does not exist: check the path")
    try:
        tf = sitk.ReadTransform(str(path))
    except RuntimeError:
        raise InputError(f"cannot read {path} as an ITK transform file: write it with save_transform") from None
    try:
        return tf.Downcast()
    except (AttributeError, RuntimeError):
        return tf
