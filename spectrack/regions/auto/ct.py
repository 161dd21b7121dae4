"""Automatic regions from CT (and SPECT) for the rat, NHP and human presets.

:func:`segment_ct` labels one CT with the names of
:mod:`spectrack.regions.vocabulary`; :func:`segment_study` does it on the
reference time point of a study (its CT grid, or its SPECT grid when there is
no CT). The steps, all in millimetres from the image geometry (LPS, head =
+z), so voxel size, slice direction and small rotations do not matter:

1. **body** outline: above -500 HU, holes filled slice by slice, largest
   component -> ``remainder`` for what nothing else claims;
2. **spinal canal**: the fluid space enclosed by vertebral bone (plus the rim
   voxels less than half bone, which the CT's blur mixes with it), traced slice
   by slice into a smooth centreline from the sacrum to the skull base
   (:func:`spectrack.regions.auto.canal.find_canal`); split into
   ``canal_sacral`` / ``canal_lumbar`` / ``canal_thoracic`` /
   ``canal_cervical`` at user-set arc lengths (``canal_boundaries_mm``), else
   at the L/S1, T/L1 and C7/T1 discs of the vertebrae counted on the CT
   (:func:`spectrack.regions.auto.vertebrae.find_vertebrae`), else at the preset's
   fractions of canal length, with a warning saying why the vertebrae could
   not be counted (``labels.warnings``: study.json, the report and the CLI);
3. **brain**: the space enclosed by bone, the foramen magnum plugged by the
   canal; **skull**: bone around it; **vertebrae**: other bone near the canal;
   **csf_intracranial**: CSF-density space inside it at the foramen magnum
   (cisterna magna, basal cisterns) or deep in the brain (ventricles)
   (:func:`~spectrack.regions.auto.organs.intracranial_csf`), taken out of
   ``brain`` (which is then parenchyma); when the CT shows none, ``brain``
   keeps the intracranial CSF and the metadata says so
   (``auto_regions["csf_intracranial"]`` and a note);
4. **organs** by CT density window and a position prior relative to the canal
   (:data:`~spectrack.regions.auto.organs.PRIORS`): liver, kidneys (one per
   side), bladder (fluid in the pelvis), stomach, thyroid, salivary glands;
5. **injection site** (when SPECT is given): the hot spot just outside the
   lumbar canal.

Lymph nodes (soft-tissue density) are not segmented: they stay in
``remainder``. A CT finer than the preset's working spacing (a fifth of its
canal radius) is block-averaged to it first, and the labels stay on that grid.

The label map's ``image.meta["auto_regions"]`` records the centreline, the
level boundaries and how they were set (``canal_levels``), the vertebrae
counted (``vertebrae``: per-vertebra arc-length intervals C1..sacrum, disc
centres, confidence and notes, when found), what was found, notes and
``warnings``; the neuraxis profile (:mod:`spectrack.regions.neuraxis`) reuses
the centreline.

Examples
--------
>>> from spectrack.phantom import make_phantom
>>> ph = make_phantom("rat", seed=3, times_h=[1.0], units="bqml", spect_shape=(30, 25, 88))
>>> lab = segment_ct(ph.timepoints[0].ct, preset="rat")
>>> sorted(lab.names.values())[:3]
['bladder', 'brain', 'canal_cervical']
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ...errors import InputError
from ...geometry import Image
from ..labelmap import LabelMap
from ..vocabulary import CANAL_LEVELS, INDEX
from .canal import View, close_mm, dilate_mm, fill_holes, find_canal, split_levels
from .organs import (CSF_INTRACRANIAL_HU, HU_WINDOWS, PRIORS, BodyFrame, body_mask, brain_and_skull,
                     find_injection_site, intracranial_csf, pick_components)

__all__ = ["segment_ct", "segment_study", "PRESETS", "PRIORS", "HU_WINDOWS"]

#: Presets with priors.
PRESETS = tuple(PRIORS)

# a later entry wins where two overlap
_PAINT_ORDER = ("remainder", "salivary_glands", "thyroid", "stomach", "liver", "kidneys", "bladder", "vertebrae",
                "skull", "injection_site") + CANAL_LEVELS + ("brain", "csf_intracranial")


def _in(a, name, windows):
    lo, hi = windows[name]
    return (a >= lo) & (a < hi)


def _noise_hu(hu: np.ndarray, body: np.ndarray) -> float:
    """Robust CT noise (HU): MAD of neighbour differences inside the body, edges excluded."""
    inside = body[:, :, 1:] & body[:, :, :-1]
    d = np.diff(hu, axis=2)[inside]
    d = d[np.abs(d) < 100.0]
    if d.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))


def _boundaries(canal_boundaries_mm, length_mm: float, fractions) -> tuple[list[float], str]:
    if canal_boundaries_mm is None:
        return [f * length_mm for f in fractions], "fractions of canal length " + \
            "/".join(f"{f:.3f}" for f in fractions)
    if isinstance(canal_boundaries_mm, dict):
        try:
            b = [float(canal_boundaries_mm[k]) for k in ("sacral_lumbar", "lumbar_thoracic", "thoracic_cervical")]
        except KeyError:
            raise InputError("canal_boundaries_mm as a mapping needs the keys sacral_lumbar, lumbar_thoracic and "
                             "thoracic_cervical (mm along the centreline from its sacral end)") from None
    else:
        b = [float(v) for v in canal_boundaries_mm]
    if len(b) != 3 or not all(np.isfinite(b)) or not (0 <= b[0] < b[1] < b[2]):
        raise InputError(f"canal_boundaries_mm must be 3 increasing distances (mm) from the sacral end of the "
                         f"canal centreline (sacral/lumbar, lumbar/thoracic, thoracic/cervical), got {b}")
    return b, "given (mm along the centreline from its sacral end)"


def _vertebral_boundaries(ct: Image, cl, preset: str, canal_radius_mm: float, bone_hu: float, warnings: list):
    """Level boundaries at the vertebrae counted on CT, or ``(None, None, None)`` and a warning why not.

    Returns ``(boundaries_mm, how, vertebrae_json)``.
    """
    from .vertebrae import find_vertebrae

    vert, reason = find_vertebrae(ct, cl, preset=preset, canal_radius_mm=canal_radius_mm or None, bone_hu=bone_hu)
    if vert is None:
        warnings.append(f"canal levels cut at the {preset} preset's fractions of canal length (assumed), not at "
                        f"vertebrae: the vertebrae could not be counted on the CT ({reason})")
        return None, None, None
    how = f"canal levels cut at vertebral boundaries ({', '.join(vert.boundary_names[::-1])}) found on CT"
    return vert.boundaries_mm, how, vert.to_json()


def _working_grid(ct: Image, max_voxels: int) -> Image | None:
    """A coarser grid over the same field of view with at most ``max_voxels`` voxels, or None if not needed."""
    n = np.asarray(ct.shape_ijk, float)
    if n.prod() <= max_voxels:
        return None
    f = (n.prod() / max_voxels) ** (1.0 / 3.0)
    m = np.maximum(np.floor(n / f), 1).astype(int)
    sp = ct.spacing_mm * n / m
    # same outer corners: voxel centres shifted by half the new voxel inward
    origin = ct.index_to_world_mm(-0.5 + 0.5 * sp / ct.spacing_mm)
    return Image(np.zeros(m[::-1], np.float32), origin, sp, ct.direction, units="HU")


def segment_ct(ct: Image, *, preset: str, spect: Image | None = None, canal_boundaries_mm=None,
               hu_windows: dict | None = None, working_spacing_mm: float | None = None,
               max_voxels: int = 24_000_000) -> LabelMap:
    """Label a CT with the regions of the vocabulary.

    Parameters
    ----------
    ct : Image
        CT in Hounsfield units (any grid, any slice direction).
    preset : {'rat', 'nhp', 'human'}
        Species priors (:data:`PRIORS`).
    spect : Image, optional
        SPECT in the same frame of reference (any grid; resampled onto the
        CT): gives the injection site.
    canal_boundaries_mm : sequence of 3 float or dict, optional
        Arc lengths (mm from the sacral end of the canal centreline) of the
        sacral/lumbar, lumbar/thoracic and thoracic/cervical boundaries
        (a dict uses the keys ``sacral_lumbar``, ``lumbar_thoracic``,
        ``thoracic_cervical``). Default: the vertebral boundaries (L/S1,
        T/L1, C7/T1) where the vertebrae can be counted on the CT, else the
        preset's fractions of canal length with a warning.
    hu_windows : dict, optional
        Replace entries of :data:`HU_WINDOWS` (and ``"csf_intracranial"``,
        default :data:`~spectrack.regions.auto.organs.CSF_INTRACRANIAL_HU`).
    working_spacing_mm : float, optional
        A CT finer than this is first block-averaged to voxels of about this
        size (:func:`spectrack.align.shrink.shrink_to_spacing`; integer
        blocks, same field of view) and segmented there. Default: a fifth of
        the preset's canal radius (rat 0.35 mm, NHP 0.7 mm, human 1.6 mm),
        which keeps the canal 10 voxels across and is finer than any SPECT
        the labels are used on (on the 512x512x300 human benchmark CT, a
        quarter gave a canal Dice of 0.80 against 0.84 at full size, a fifth
        0.84 in half the time). ``0`` segments at the CT's own resolution.
    max_voxels : int
        A working grid still above this is resampled (linear) onto a coarser
        grid over the same field of view (memory and time).

    Returns
    -------
    LabelMap
        On the grid the CT was segmented on: ``ct``'s own, or the working
        grid over the same field of view (recorded in the notes), since
        labels are resampled onto each SPECT anyway. ``source`` is
        "automatic (<preset>)"; details in ``labels.image.meta["auto_regions"]``;
        ``labels.warnings`` says what was assumed rather than read from the
        CT (canal levels at the preset's fractions of length).
    """
    if preset not in PRIORS:
        raise InputError(f"unknown preset {preset!r} for automatic regions: choose one of {', '.join(PRIORS)}")
    from ...align.shrink import shrink_to_spacing

    if working_spacing_mm is None:
        working_spacing_mm = PRIORS[preset]["canal_radius_mm"] / 5.0
    notes = []
    work = ct
    if working_spacing_mm and working_spacing_mm > 0:
        work = shrink_to_spacing(ct, float(working_spacing_mm))
        if work is not ct:
            notes.append(f"CT block-averaged by {'x'.join(str(v) for v in work.meta['shrink_factors'])} to "
                         f"{'x'.join(f'{v:.3g}' for v in work.spacing_mm)} mm voxels (working spacing "
                         f"{working_spacing_mm:.3g} mm)")
    grid = _working_grid(work, max_voxels)
    if grid is not None:
        from ...align.resample import resample_image

        work = resample_image(work, grid, order=1, default_value=-1000.0)
        notes.append(f"segmented on a {'x'.join(str(v) for v in grid.shape_ijk)} grid of "
                     f"{'x'.join(f'{v:.3g}' for v in grid.spacing_mm)} mm (CT above {max_voxels} voxels)")
    lab = _segment(work, preset=preset, spect=spect, canal_boundaries_mm=canal_boundaries_mm, hu_windows=hu_windows)
    lab.image.meta["auto_regions"]["notes"].extend(notes)
    return lab


def _segment(ct: Image, *, preset: str, spect: Image | None, canal_boundaries_mm, hu_windows) -> LabelMap:
    """:func:`segment_ct` on the grid given."""
    pri = PRIORS[preset]
    win = dict(HU_WINDOWS, **(hu_windows or {}))
    view = View(ct)
    sp = view.spacing
    px = float(max(sp))
    hu = view.to_view(np.asarray(ct.array, np.float32))
    notes: list[str] = []
    warnings: list[str] = []
    found: dict = {}
    masks: dict[str, np.ndarray] = {}

    body = body_mask(hu, threshold_hu=win["body"][0])
    if not body.any():
        raise InputError("the CT holds no body (nothing above -500 HU): check that it is a CT in HU")
    masks["remainder"] = body
    bone = _in(hu, "bone", win) & body

    # ---- canal and centreline
    canal_r = pri["canal_radius_mm"] * 1.25
    res = find_canal(ct, view.from_view(body), canal_radius_mm=canal_r, bone_hu=win["bone"][0],
                     csf_hu=win["csf"], min_length_mm=0.3 * pri["canal_length_mm"])
    notes += res.notes
    canal_v = view.to_view(res.mask)
    cl = res.centreline
    meta: dict = {"preset": preset, "method": "spectrack.regions.auto.ct.segment_ct", "notes": notes,
                  "found": found, "hu_windows": {k: list(v) for k, v in win.items()}}
    if cl is not None:
        length = cl.length_mm
        scale = float(np.clip(length / pri["canal_length_mm"], 0.5, 2.0))
        b = None
        if canal_boundaries_mm is None:  # vertebrae first; the preset's fractions (with a warning) if not counted
            b, how, spine = _vertebral_boundaries(ct, cl, preset, res.radius_mm, win["bone"][0], warnings)
            if spine is not None:
                meta["vertebrae"] = spine
        if b is None:
            b, how = _boundaries(canal_boundaries_mm, length, pri["level_fractions"])
        for lvl, m in split_levels(res.mask, ct, cl, b).items():
            masks[lvl] = view.to_view(m)
        meta.update({"centreline": cl.to_json(), "canal_length_mm": length, "scale": scale,
                     "canal_boundaries_mm": b, "canal_levels": how,
                     "canal_level_ranges_mm": dict(zip(("canal_sacral", "canal_lumbar", "canal_thoracic",
                                                        "canal_cervical"),
                                                       zip([0.0] + b, b + [length])))})
        frame = BodyFrame(cl)
    else:
        scale, frame = 1.0, None
        notes.append("no spinal canal: no canal levels, vertebrae or position-based organs")

    # ---- brain and skull (in the cranial part when the canal is known)
    sl = slice(None)
    head = None
    if cl is not None:
        ks = np.nonzero(canal_v.any(axis=(1, 2)))[0]
        margin = int(np.ceil(0.12 * cl.length_mm / sp[0]))
        kk = np.arange(hu.shape[0])
        if view.up > 0:
            sl = slice(max(int(ks[-1]) - margin, 0), None)
            head = kk[sl] > ks[-1]
        else:
            sl = slice(0, int(ks[0]) + margin + 1)
            head = kk[sl] < ks[0]
        head = np.broadcast_to(head[:, None, None], bone[sl].shape)
    brain = np.zeros(hu.shape, bool)
    skull = np.zeros(hu.shape, bool)
    b_, s_, note = brain_and_skull(bone[sl], canal_v[sl], sp, seal_mm=1.5 * canal_r * scale + px,
                                   min_brain_ml=0.25 * pri["brain_ml"] * scale ** 3,
                                   skull_mm=pri["skull_mm"] * scale, head=head)
    brain[sl], skull[sl] = b_, s_
    if note:
        notes.append(note)
    masks["brain"], masks["skull"] = brain, skull
    found["brain_ml"] = float(brain.sum() * np.prod(sp) / 1000.0)
    if brain.any():  # intracranial CSF apart from brain tissue where the CT shows it
        csf_ic, ic_info = intracranial_csf(hu, brain, canal_v, sp,
                                           window_hu=win.get("csf_intracranial", CSF_INTRACRANIAL_HU),
                                           noise_hu=_noise_hu(hu, body),
                                           foramen_reach_mm=max(2.01 * px, pri["canal_radius_mm"] * scale))
        if ic_info["separated"]:
            masks["csf_intracranial"] = csf_ic
            masks["brain"] = brain & ~csf_ic
            ic_info["brain_parenchyma_ml"] = float(masks["brain"].sum() * np.prod(sp) / 1000.0)
        else:
            notes.append("brain includes intracranial CSF: none separable on CT")
        meta["csf_intracranial"] = ic_info
    if cl is not None:
        masks["vertebrae"] = bone & ~skull & dilate_mm(canal_v, pri["vertebra_reach_mm"] * scale, sp)

    # ---- organs: density window + position prior
    if frame is not None:
        noise = _noise_hu(hu, body)
        found["ct_noise_hu"] = noise
        # on a noisy CT: median (edge-preserving) for large organs, a light Gaussian
        # for small ones (a 3x3x3 median erases structures a few voxels across)
        med = smooth = hu
        if noise > 3.0:
            bb = ndi.find_objects(body.astype(np.int8))[0]
            med = np.full(hu.shape, -1000.0, np.float32)
            med[bb] = ndi.median_filter(hu[bb], size=3)
            smooth = ndi.gaussian_filter(hu, 0.7)
        excl = dilate_mm(bone, 1.01 * px, sp) | canal_v | brain | ~body
        vox_ml = float(np.prod(sp)) / 1000.0
        min_ml = 1.5 * vox_ml
        organ_defs = {"liver": ("liver", med, 1), "kidneys": ("kidneys", smooth, 1), "bladder": ("fluid", med, 1),
                      "stomach": ("stomach", med, 1), "thyroid": ("thyroid", hu, 1),
                      "salivary_glands": ("salivary_glands", smooth, 2)}
        for name, (window, values, count) in organ_defs.items():
            m, info = pick_components(_in(values, window, win) & ~excl, view, frame, pri["organs"][name], scale,
                                      min_ml=min_ml, max_count=count)
            if m.any():
                if values is med and med is not hu:  # the median trims corners: regrow one voxel
                    lo, hi = win[window]
                    regrow = hu if min(hi, 1e4) - lo >= 4.0 * noise else smooth
                    m |= dilate_mm(m, 1.01 * px, sp) & _in(regrow, window, win) & ~excl
                m = fill_holes(close_mm(m, 1.01 * px, sp) & body & ~excl)
                masks[name] = m
            found[name] = info
            if not info:
                notes.append(f"{name}: no CT component fits the {preset} prior")

    # ---- injection site from SPECT
    if spect is not None and cl is not None:
        from ...align.resample import resample_image

        sp_img = spect if spect.same_grid(ct) else resample_image(spect, ct, order=0)
        spv = view.to_view(np.asarray(sp_img.array, np.float32))
        b = meta["canal_boundaries_mm"]
        s_rng = (b[0] - 0.25 * (b[1] - b[0]), b[1])
        spect_px = float(np.max(spect.spacing_mm))
        site, info = find_injection_site(spv, canal_v, view, cl, s_rng,
                                         search_mm=2.5 * pri["canal_radius_mm"] * scale + 2 * spect_px,
                                         canal_radius_mm=pri["canal_radius_mm"] * scale)
        found["injection_site"] = info
        if site.any():
            masks["injection_site"] = site & body
            for lvl in CANAL_LEVELS:
                if lvl in masks:
                    masks[lvl] &= ~site
        else:
            notes.append(info["note"])

    out = np.zeros(hu.shape, np.int16)
    for name in _PAINT_ORDER:
        if name in masks:
            out[masks[name] & body] = INDEX[name]
    names = {INDEX[n]: n for n in _PAINT_ORDER if n in masks and np.any(out == INDEX[n])}
    img = ct.with_array(view.from_view(out), units="label")
    img.meta = {"auto_regions": meta}
    meta["warnings"] = warnings
    return LabelMap(img, names, source=f"automatic ({preset})", warnings=list(warnings))


def segment_study(study, *, preset: str, reference: int = 0, canal_boundaries_mm=None) -> LabelMap:
    """Automatic regions of a study's reference time point.

    Parameters
    ----------
    study : Study
        A loaded study.
    preset : {'rat', 'nhp', 'human'}
        Species priors.
    reference : int
        Time point whose CT (and SPECT, for the injection site) is segmented.
    canal_boundaries_mm : optional
        See :func:`segment_ct`.

    Returns
    -------
    LabelMap
        On the reference CT grid; on the SPECT grid when the time point has
        no CT (then only the body outline, the canal traced on the SPECT and
        the injection site are labelled).
    """
    n = len(study.timepoints)
    if not 0 <= reference < n:
        raise InputError(f"reference time point {reference} is out of range (0..{n - 1})")
    tp = study.timepoints[reference]
    spect = tp.emission.image
    if tp.ct is not None:
        return segment_ct(tp.ct.image, preset=preset, spect=spect, canal_boundaries_mm=canal_boundaries_mm)
    from .spect import segment_spect

    return segment_spect(spect, preset=preset, canal_boundaries_mm=canal_boundaries_mm)
