"""Deterministic digital phantom of intrathecal [99mTc]-ASO SPECT/CT studies.

:func:`make_study` writes a study (DICOM export, NIfTI + sidecars, labels and
an exact ``truth.json``); :func:`make_phantom` returns the same images in
memory; :func:`rasterize` draws the phantom's anatomy on any grid.
"""

from .anatomy import HU, MATERIALS, make_geometry, pose_matrix, rasterize
from .core import DEFAULT_INJECTION, TRUTH_BASIS, Phantom, PhantomTimePoint, make_phantom, make_study
from .kinetics_model import COMPARTMENTS, KineticsModel, simulate_pct_id
from .presets import PRESETS, Preset

__all__ = [
    "make_study",
    "make_phantom",
    "Phantom",
    "PhantomTimePoint",
    "PRESETS",
    "Preset",
    "make_geometry",
    "pose_matrix",
    "rasterize",
    "HU",
    "MATERIALS",
    "KineticsModel",
    "COMPARTMENTS",
    "simulate_pct_id",
    "DEFAULT_INJECTION",
    "TRUTH_BASIS",
]
