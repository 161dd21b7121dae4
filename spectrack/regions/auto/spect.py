"""Automatic regions without CT: what a SPECT alone can give (the body outline).

Anatomy (bone, brain, canal, organs) needs the CT; without it
:func:`segment_spect` labels only the body outline as ``remainder`` on the
SPECT grid and says so in ``labels.image.meta["auto_regions"]["notes"]``, so a
run still reports the whole-body activity. Give a CT or a label map for
regions.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ...errors import InputError
from ...geometry import Image
from ..labelmap import LabelMap
from ..vocabulary import INDEX
from .canal import View
from .organs import PRIORS

__all__ = ["segment_spect", "spect_body_mask"]


def spect_body_mask(spect: Image, *, smooth_voxels: float = 1.0) -> np.ndarray:
    """Body outline from emission values (array order of ``spect``).

    The SPECT is smoothed (Gaussian, ``smooth_voxels``); the body level is the
    median of the voxels above 0.1 % of the 99.9th percentile (most of them
    are body background), and the outline is where the smoothed image falls
    to half of it. Holes are filled slice by slice and the largest component
    kept.
    """
    view = View(spect)
    a = ndi.gaussian_filter(view.to_view(np.asarray(spect.array, np.float64)), smooth_voxels)
    top = float(np.percentile(a, 99.9))
    if not top > 0:
        return view.from_view(np.zeros(a.shape, bool))
    level = float(np.median(a[a > 1e-3 * top]))
    m = a > 0.5 * level
    st2 = np.zeros((3, 3, 3), bool)
    st2[1] = ndi.generate_binary_structure(2, 1)
    m = ndi.binary_fill_holes(m, structure=st2)
    lab, n = ndi.label(m)
    if n:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        m = lab == int(np.argmax(sizes))
    return view.from_view(m)


def segment_spect(spect: Image, *, preset: str, canal_boundaries_mm=None) -> LabelMap:
    """Label the body outline of a SPECT as ``remainder`` (no CT: no anatomy).

    Parameters
    ----------
    spect : Image
        Emission image (any units).
    preset : str
        Checked against the known presets (kept for a uniform call).
    canal_boundaries_mm
        Ignored (no canal without CT); accepted for a uniform call.
    """
    if preset not in PRIORS:
        raise InputError(f"unknown preset {preset!r} for automatic regions: choose one of {', '.join(PRIORS)}")
    body = spect_body_mask(spect)
    if not body.any():
        raise InputError("the emission image holds no activity: no body outline for automatic regions")
    out = np.where(body, INDEX["remainder"], 0).astype(np.int16)
    img = spect.with_array(out, units="label")
    img.meta = {"auto_regions": {
        "preset": preset, "method": "spectrack.regions.auto.spect.segment_spect",
        "notes": ["no CT at the reference time point: only the body outline (remainder) was labelled from the "
                  "SPECT; give a CT or a label map for brain, canal and organ regions"],
        "found": {}}}
    return LabelMap(img, {INDEX["remainder"]: "remainder"}, source=f"automatic ({preset}, SPECT only)")
