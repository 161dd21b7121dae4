"""Monte Carlo intervals on every %ID of a quantification table (EANM terms, through the recovery correction).

:func:`add_pct_id_intervals` draws the independent terms (counting noise, per
time point) and the shared ones (calibration, injected activity, region
boundary, PSF FWHM) and gives percentile intervals, and optionally the draws
of every curve for the kinetic intervals
(:func:`spectrack.kinetics.uncertainty.derived_intervals`);
:func:`noise_factor_from_replicates` measures the counting-noise factor of a
reconstruction from replicate images. The single-value model from counts is
:mod:`spectrack.quantification.count_intervals`, the image terms
:mod:`spectrack.quantification.interval_terms`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ..geometry import Image
from .boundary import _grown, boundary_effects, boundary_factors, label_boxes
from .count_intervals import DEFAULT_CALIBRATION_CV, percentile_interval
from .interval_terms import (
    _gtm_nodes,
    _interp_nodes,
    _solve_draws,
    boundary_sd_mm,
    region_spread,
)
from .memory import check_draw_memory, pct_id_draws_bytes
from .recovery import sigma_voxels
from .recovery_table import _per_timepoint

__all__ = ["add_pct_id_intervals", "noise_factor_from_replicates"]


def _table_method(level, n_draws, seed, noise_factor, cv, inj_cv, seg_sd_mm, fwhm_sd_mm):
    parts = [f"independent per scan: counting noise of the region's sum (gamma, {noise_factor:g} x its Poisson "
             "variance)"]
    shared = []
    if cv:
        shared.append(f"calibration CV {100 * cv:.3g} %")
    if inj_cv:
        shared.append(f"injected-activity CV {100 * inj_cv:.3g} %")
    if seg_sd_mm:
        shared.append(f"region boundary position SD {seg_sd_mm:.3g} mm, one shift per interface between two regions "
                      "or a region and the unlabelled voxels (every region's content linear in the shifts, from each "
                      "interface moved by one voxel either way)")
    if fwhm_sd_mm is not None:
        shared.append(f"PSF FWHM SD {fwhm_sd_mm:.3g} mm, through the GTM of every draw")
    if shared:
        parts.append("shared by every scan: " + ", ".join(shared))
    return (f"Monte Carlo percentile interval ({100 * level:g} %, {n_draws} draws, seed {seed}; EANM terms, "
            "draws kept within 0-100 %ID): " + "; ".join(parts))


def add_pct_id_intervals(
    table,
    images,
    labels,
    *,
    counts_per_mbq=None,
    noise_factor: float = 1.0,
    calibration_cv: float = DEFAULT_CALIBRATION_CV,
    injected_cv: float = 0.0,
    segmentation_sd_mm: float | None = None,
    fwhm_mm=None,
    fwhm_sd_mm: float = 0.0,
    nonnegative: bool = True,
    n_draws: int = 2000,
    seed: int | None = 0,
    level: float = 0.95,
    return_draws: bool = False,
):
    """Add Monte Carlo intervals to every %ID (and recovery-corrected %ID) of a quantification table.

    The terms follow the EANM guidance on uncertainty analysis (Gear et al.,
    EJNMMI 2018), split into *independent* terms (a new draw per time point)
    and *shared* systematic terms (one draw per subject or region, the same
    at every time point):

    * counting noise (independent): a region's sum is drawn from a gamma
      distribution with the mean of its counts and ``noise_factor`` times
      their Poisson variance (a reconstructed image is not Poisson:
      ``noise_factor`` is the variance of a region's sum over the sum, in
      counts, from replicates; see :func:`noise_factor_from_replicates`);
    * calibration and injected activity (shared by the subject): normal CVs;
    * region boundary (shared by the time points): each interface between
      two regions, or between a region and the unlabelled voxels, shifts by
      ``delta ~ N(0, segmentation_sd_mm)``; as a fraction of the voxel size
      it changes every region's content linearly, from the nominal towards
      the result with that interface moved by one voxel
      (:func:`~spectrack.quantification.boundary.boundary_effects`); with
      recovery correction the moved label map is run through the GTM;
    * PSF FWHM (shared by the subject; recovery correction only):
      ``FWHM * (1 + z fwhm_sd_mm / FWHM)``, the transfer matrix interpolated
      between matrices computed at -3 to +3 SDs, and the GTM solved for every
      draw.

    Draws are kept in the physical range 0-100 %ID, so no interval is wider.

    Parameters
    ----------
    table : pandas.DataFrame
        The quantification table (``subject, timepoint, time_h, region,
        activity_mbq, pct_id, pct_id_uncorrected``; ``kind``, ``label``,
        ``volume_ml`` and the ``*_pvc`` columns of
        :func:`~spectrack.quantification.recovery_table.add_gtm_correction` used when
        present).
    images : Image, sequence or mapping of Image
        The emission image of each time point (a sequence follows the sorted
        ``timepoint`` values; a mapping is keyed by them), as quantified.
    labels : LabelMap, or sequence / mapping of LabelMap
        The regions (resampled onto each image with nearest neighbour).
    counts_per_mbq : float, sequence or mapping, optional
        Detected counts per MBq at each time point. None means the images hold
        counts: the region's counts are its summed voxel values.
    noise_factor : float
        Variance of a region's summed counts over their Poisson variance (1:
        Poisson).
    calibration_cv, injected_cv : float
        Relative SDs of the calibration and of the injected activity.
    segmentation_sd_mm : float, optional
        SD of a region boundary's position; default :func:`boundary_sd_mm`
        of the label map (voxel / sqrt(12)); 0 leaves the term out.
    fwhm_mm : float or array_like of 3 float, optional
        The FWHM of the recovery correction; with it, ``pct_id_pvc`` (when
        the table has it) gets intervals through the GTM.
    fwhm_sd_mm : float
        SD of that FWHM.
    nonnegative : bool
        Solve the GTM of every draw by non-negative least squares, as the
        correction does.
    n_draws, seed, level
        Monte Carlo settings.
    return_draws : bool
        Also return ``{(subject, region): {"time_h", "timepoint", "pct_id",
        "pct_id_uncorrected"[, "pct_id_pvc"]}}`` with draws of shape
        (n_draws, n_times) for
        :func:`~spectrack.kinetics.uncertainty.derived_intervals`.

    Returns
    -------
    pandas.DataFrame
        A copy of ``table`` plus ``counts``, ``pct_id_lo``, ``pct_id_hi``,
        ``pct_id_sd_independent`` (SD of the independent terms alone: the
        weights of kinetic fits), ``pct_id_uncorrected_lo``/``_hi``,
        ``pct_id_per_ml_lo``/``_hi``, ``pct_id_eroded``, ``pct_id_dilated``,
        ``interval_method``, and with recovery correction ``pct_id_pvc_lo``,
        ``pct_id_pvc_hi``, ``pct_id_pvc_sd_independent``,
        ``pct_id_uncorrected_pvc_lo``/``_hi`` and
        ``pct_id_per_ml_pvc_lo``/``_hi``. Rows whose region cannot be located
        in the labels get NaN intervals.
    """
    from ..regions.labelmap import LabelMap
    from ..regions.vocabulary import GROUPS

    if not noise_factor > 0 or not math.isfinite(noise_factor):
        raise ValueError(f"noise_factor must be a positive number, got {noise_factor}")
    if not 0 <= fwhm_sd_mm < math.inf:
        raise ValueError(f"fwhm_sd_mm must be >= 0, got {fwhm_sd_mm}")
    df = table.copy()
    if df.empty:
        return (df, {}) if return_draws else df
    nd = int(n_draws)
    tps = sorted(df["timepoint"].unique())
    # the cost before any draw: the most regions quantified at one time point bounds the labels drawn
    is_region = (df["kind"].astype(str) == "region") if "kind" in df else np.ones(len(df), bool)
    max_labels = int(df.loc[is_region, "timepoint"].value_counts().max()) if is_region.any() else 0
    check_draw_memory(pct_id_draws_bytes(nd, len(df), max_labels, pvc=fwhm_mm is not None and "pct_id_pvc" in df,
                                         return_draws=return_draws),
                      f"%ID intervals of {len(df)} table rows ({len(tps)} time points)", nd,
                      "--uncertainty-draws")
    imgs = [getattr(i, "image", i) for i in _per_timepoint(images, tps, "images")]
    labs = _per_timepoint(labels, tps, "label maps")
    cpm = None if counts_per_mbq is None else _per_timepoint(counts_per_mbq, tps, "counts_per_mbq values")
    pvc = fwhm_mm is not None and "pct_id_pvc" in df
    n = len(df)
    kind = df["kind"].astype(str).to_numpy() if "kind" in df else np.full(n, "region", dtype=object)
    reg = df["region"].astype(str).to_numpy()
    subj = df["subject"].astype(str).to_numpy() if "subject" in df else np.full(n, "", dtype=object)
    tpv = df["timepoint"].to_numpy()
    pid = df["pct_id"].to_numpy(float)
    pidu = df["pct_id_uncorrected"].to_numpy(float)
    pidp = df["pct_id_pvc"].to_numpy(float) if pvc else None
    act = df["activity_mbq"].to_numpy(float)
    lab_col = df["label"].to_numpy(float) if "label" in df else np.full(n, np.nan)

    rng = np.random.default_rng(seed)
    # shared terms: one draw per subject (calibration, injection, FWHM) or per region (boundary)
    subjects = list(dict.fromkeys(subj))
    shared = {}
    for s in subjects:
        f = np.ones(nd)
        if calibration_cv:
            f *= np.clip(1.0 + calibration_cv * rng.standard_normal(nd), 1e-3, None)
        if injected_cv:
            f *= np.clip(1.0 + injected_cv * rng.standard_normal(nd), 1e-3, None)
        shared[s] = {"scale": 1.0 / f, "z_fwhm": rng.standard_normal(nd)}
    seg_u: dict = {}

    def boundary_u(s, name, h_mm, sd_mm):
        if (s, name) not in seg_u:
            seg_u[(s, name)] = rng.standard_normal(nd)
        return seg_u[(s, name)] * (sd_mm / h_mm)

    draws = np.full((nd, n), np.nan)
    draws_p = np.full((nd, n), np.nan) if pvc else None
    counts = np.full(n, np.nan)
    sd_ind = np.full(n, np.nan)
    sd_ind_p = np.full(n, np.nan)
    f_ero_all = np.full(n, np.nan)
    f_dil_all = np.full(n, np.nan)
    seg_used = []
    for t_i, tp in enumerate(tps):
        img = imgs[t_i]
        if not isinstance(img, Image):
            raise TypeError(f"images must be spectrack Image objects, got {type(img).__name__}")
        if cpm is None and img.units.replace(" ", "").lower() in ("bq/ml", "bqml"):
            raise ValueError("the images are in Bq/mL: give counts_per_mbq (detected counts per MBq) so that "
                             "counting noise can be modelled")
        lm = labs[t_i]
        lm = lm.resampled_to(img) if isinstance(lm, LabelMap) else lm
        lab = np.asarray(lm.image.array if isinstance(lm, LabelMap) else lm)
        names = lm.names if isinstance(lm, LabelMap) else {}
        rev = {v: k for k, v in names.items()}
        sd_seg = (boundary_sd_mm(lm) if isinstance(lm, LabelMap) else 0.0) if segmentation_sd_mm is None \
            else float(segmentation_sd_mm)
        seg_used.append(sd_seg)
        h_mm = float(np.mean(img.spacing_mm))
        arr = np.asarray(img.array, dtype=np.float64)
        if lab.dtype.kind in "iu":    # the labels present and their boxes from one pass over the map
            boxes = label_boxes(lab)
            ids = np.array(list(boxes), dtype=np.int64)
        else:
            ids = np.unique(lab[lab > 0]).astype(np.int64)
            boxes = label_boxes(lab, ids)
        L = ids.size
        pos_of = {int(i): p for p, i in enumerate(ids)}
        o = np.asarray(ndimage.sum_labels(arr, lab, index=ids), float) if L else np.zeros(0)
        total = float(arr.sum())
        o_out = total - float(o.sum())
        rows = np.flatnonzero(tpv == tp)

        def label_of(p):
            if np.isfinite(lab_col[p]) and int(lab_col[p]) in pos_of:
                return pos_of[int(lab_col[p])]
            if reg[p] in rev and int(rev[reg[p]]) in pos_of:
                return pos_of[int(rev[reg[p]])]
            return None

        # counts per image unit
        if cpm is None:
            cpu = 1.0
        else:
            est = [act[p] * float(cpm[t_i]) / o[label_of(p)] for p in rows
                   if kind[p] == "region" and label_of(p) is not None and o[label_of(p)] > 0 and act[p] > 0]
            cpu = float(np.median(est)) if est else float("nan")
        c = np.clip(np.r_[o, o_out] * cpu, 0.0, None)       # counts of the labels, then outside
        with np.errstate(divide="ignore", invalid="ignore"):
            X = np.where(c > 0, rng.gamma(np.where(c > 0, c / noise_factor, 1.0), noise_factor, (nd, L + 1)), 0.0)
            X /= cpu                                          # image units
        # boundary: eroded / dilated sums of every label, each in its bounding box grown by the structuring
        # element (region_spread's own box: the same voxels, and sums, as on the whole grid)
        f_ero, f_dil = np.ones(L), np.ones(L)
        for r, lid in enumerate(ids):
            if int(lid) not in boxes:  # a non-integer label value cut to an integer: no voxel equals it
                continue
            bx = _grown(boxes[int(lid)], 1, lab.shape)
            nom, ero, dil = region_spread(arr[bx], lab[bx] == lid)
            if nom > 0:
                f_ero[r], f_dil[r] = ero / nom, dil / nom
        if pvc and L:  # the nominal recovery correction
            from scipy import optimize

            s0 = subjects[0]
            mean_fw = float(np.mean(np.atleast_1d(np.asarray(fwhm_mm, float))))
            W_nodes, n_vox = _gtm_nodes(lab, ids, img.spacing_mm, fwhm_mm, fwhm_sd_mm / mean_fw)
            W0 = W_nodes[W_nodes.shape[0] // 2]
            t0 = optimize.nnls(W0, o / n_vox)[0] if nonnegative else np.linalg.lstsq(W0, o / n_vox, rcond=None)[0]
            corr0 = t0 * n_vox
        # boundary shifts: each interface between two regions (or a region and the unlabelled voxels) moved by one
        # voxel either way, the effect on every region; one shift per interface, shared by the time points
        eff = None
        if sd_seg > 0 and L:
            eff = boundary_effects(arr, lab, ids, transfer=(W0, n_vox, t0) if pvc else None,
                                   sigma=sigma_voxels(fwhm_mm, img.spacing_mm) if pvc else None, sums=o, boxes=boxes)
            U = np.zeros((nd, len(eff.interfaces)))
            for i, (a, b) in enumerate(eff.interfaces):
                key = names.get(a, f"label_{a}") + "|" + (names.get(b, f"label_{b}") if b else "unlabelled")
                for s in subjects:  # one label map per table subject in practice
                    U[:, i] = boundary_u(s, key, h_mm, sd_seg)
        seg = boundary_factors(U, eff.sums_toward_a, eff.sums_toward_b) if eff is not None else np.ones((nd, L))
        Y = X[:, :L] * seg                                     # boundary-perturbed sums
        # recovery correction of every draw
        if pvc and L:
            seg_p = boundary_factors(U, eff.corrected_toward_a, eff.corrected_toward_b) if eff is not None \
                else np.ones((nd, L))
            T = np.empty((nd, L))
            z = shared[s0]["z_fwhm"]
            for a in range(0, nd, 256):
                b = min(a + 256, nd)
                T[a:b] = _solve_draws(_interp_nodes(W_nodes, z[a:b]), X[a:b, :L] / n_vox, nonnegative)
            CP = T * n_vox * seg_p
            # independent SD of the corrected content: linear propagation of the counting variance
            Winv = np.linalg.pinv(W0)
            var_y = noise_factor * np.clip(o, 0, None) / cpu / n_vox ** 2
        for p in rows:
            k = kind[p]
            r = label_of(p) if k == "region" else None
            members = None
            if k == "group":
                mem = GROUPS.get(reg[p], ())
                if mem and all(m in rev and int(rev[m]) in pos_of for m in mem):
                    members = [pos_of[int(rev[m])] for m in mem]
            scale = shared[subj[p]]["scale"]
            if r is not None:
                if o[r] > 0:
                    draws[:, p] = pid[p] * Y[:, r] / o[r] * scale
                    sd_ind[p] = pid[p] * math.sqrt(noise_factor / c[r]) if c[r] > 0 else 0.0
                counts[p] = c[r]
                f_ero_all[p], f_dil_all[p] = f_ero[r], f_dil[r]
            elif members is not None:
                om = o[members].sum()
                if om > 0:
                    draws[:, p] = pid[p] * Y[:, members].sum(axis=1) / om * scale
                    cm = c[members].sum()
                    sd_ind[p] = pid[p] * math.sqrt(noise_factor / cm) if cm > 0 else 0.0
                counts[p] = c[members].sum()
            elif k == "fov" and total > 0:
                draws[:, p] = pid[p] * X.sum(axis=1) / total * scale
                counts[p] = c.sum()
                sd_ind[p] = pid[p] * math.sqrt(noise_factor / c.sum()) if c.sum() > 0 else 0.0
            elif k == "outside" and o_out > 0:
                draws[:, p] = pid[p] * X[:, L] / o_out * scale
                counts[p] = c[L]
                sd_ind[p] = pid[p] * math.sqrt(noise_factor / c[L]) if c[L] > 0 else 0.0
            if not pvc or not L or not np.isfinite(pidp[p]):
                continue
            sel = [r] if r is not None else members
            if sel is None:
                continue
            c0 = corr0[sel].sum()
            if c0 > 0:
                draws_p[:, p] = pidp[p] * CP[:, sel].sum(axis=1) / c0 * scale
                wrow = (n_vox[sel][:, None] * Winv[sel]).sum(axis=0)
                sd_ind_p[p] = pidp[p] * math.sqrt(float(np.sum(wrow ** 2 * var_y))) / c0
            else:  # pinned at 0 by the solver: the draws' corrected content in %ID of the whole-voxel GTM
                per_unit = pid[p] / o[sel].sum() if o[sel].sum() > 0 else np.nan
                draws_p[:, p] = CP[:, sel].sum(axis=1) * per_unit * scale
    np.clip(draws, 0.0, 100.0, out=draws)
    ok = np.all(np.isfinite(draws), axis=0)
    lo_all, hi_all = np.full(n, np.nan), np.full(n, np.nan)
    if ok.any():
        lo_all[ok], hi_all[ok] = percentile_interval(draws[:, ok], level)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(pid > 0, pidu / pid, np.nan)
    df["counts"] = counts
    df["pct_id_lo"], df["pct_id_hi"] = lo_all, hi_all
    df["pct_id_sd_independent"] = np.where(ok, sd_ind, np.nan)
    df["pct_id_uncorrected_lo"], df["pct_id_uncorrected_hi"] = lo_all * ratio, hi_all * ratio
    vol = df["volume_ml"].to_numpy(float) if "volume_ml" in df else None
    if vol is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            df["pct_id_per_ml_lo"] = np.where(vol > 0, lo_all / vol, np.nan)
            df["pct_id_per_ml_hi"] = np.where(vol > 0, hi_all / vol, np.nan)
    df["pct_id_eroded"] = pid * f_ero_all
    df["pct_id_dilated"] = pid * f_dil_all
    if pvc:
        np.clip(draws_p, 0.0, 100.0, out=draws_p)
        okp = np.all(np.isfinite(draws_p), axis=0)
        lo_p, hi_p = np.full(n, np.nan), np.full(n, np.nan)
        if okp.any():
            lo_p[okp], hi_p[okp] = percentile_interval(draws_p[:, okp], level)
        df["pct_id_pvc_lo"], df["pct_id_pvc_hi"] = lo_p, hi_p
        df["pct_id_pvc_sd_independent"] = np.where(okp, sd_ind_p, np.nan)
        df["pct_id_uncorrected_pvc_lo"], df["pct_id_uncorrected_pvc_hi"] = lo_p * ratio, hi_p * ratio
        if vol is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                df["pct_id_per_ml_pvc_lo"] = np.where(vol > 0, lo_p / vol, np.nan)
                df["pct_id_per_ml_pvc_hi"] = np.where(vol > 0, hi_p / vol, np.nan)
    method = _table_method(level, nd, seed, noise_factor, calibration_cv, injected_cv, max(seg_used, default=0.0),
                           fwhm_sd_mm if pvc else None)
    df["interval_method"] = np.where(ok, method, "not computed: region not found in the labels")
    if not return_draws:
        return df
    out = {}
    tcol = df["time_h"].to_numpy(float)
    for key in dict.fromkeys(zip(subj, reg)):
        sel = np.flatnonzero((subj == key[0]) & (reg == key[1]) & ok)
        if sel.size == 0:
            continue
        sel = sel[np.argsort(tcol[sel], kind="stable")]
        out[key] = {"time_h": tcol[sel], "timepoint": tpv[sel], "pct_id": draws[:, sel],
                    "pct_id_uncorrected": draws[:, sel] * ratio[sel][None, :]}
        if pvc and np.all(np.isfinite(draws_p[:, sel])):
            out[key]["pct_id_pvc"] = draws_p[:, sel]
    return df, out


def noise_factor_from_replicates(images, labels, *, counts_per_unit: float = 1.0, min_counts: float = 100.0):
    """Variance of regions' summed counts over their mean, from replicate images of one object.

    Replicates are reconstructions of independent acquisitions of the same
    activity (repeated phantom scans, or list-mode data split into equal
    parts and each reconstructed). The pooled ratio is the ``noise_factor``
    of :func:`add_pct_id_intervals` for images reconstructed the same way.

    Parameters
    ----------
    images : sequence of Image or numpy.ndarray
        At least 3 replicate images on one grid.
    labels : LabelMap or numpy.ndarray
        Regions on that grid.
    counts_per_unit : float
        Counts per image unit (1 for images in counts).
    min_counts : float
        Regions with fewer mean counts are left out.

    Returns
    -------
    dict
        ``noise_factor`` (median over regions of variance / mean, in
        counts), ``per_region`` ({label: ratio}), ``n_replicates``.
    """
    arrs = [np.asarray(getattr(i, "array", i), np.float64) for i in images]
    if len(arrs) < 3:
        raise ValueError(f"at least 3 replicate images are needed, got {len(arrs)}")
    lab = np.asarray(getattr(getattr(labels, "image", labels), "array", labels))
    ids = np.unique(lab[lab > 0])
    sums = np.array([ndimage.sum_labels(a, lab, index=ids) for a in arrs]) * counts_per_unit
    mean, var = sums.mean(axis=0), sums.var(axis=0, ddof=1)
    keep = mean >= min_counts
    if not keep.any():
        raise ValueError(f"no region holds {min_counts:g} counts")
    ratios = var[keep] / mean[keep]
    return {"noise_factor": float(np.median(ratios)),
            "per_region": {int(i): float(r) for i, r in zip(ids[keep], ratios)}, "n_replicates": len(arrs)}
