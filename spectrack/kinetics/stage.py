"""The kinetics stage of a study run: which regions hold the injection, then every region's kinetics.

:func:`analyse_study` is what :func:`spectrack.pipeline.run_study` does after the quantification:
:func:`spectrack.kinetics.analyse_kinetics` on the %ID curves (and the recovery-corrected ones), starting the
injected regions at their back-extrapolated content (:func:`injected_regions`), with intervals from the
Monte Carlo draws of each curve.
"""

from __future__ import annotations

from ..errors import InputError

__all__ = ["analyse_study", "injected_regions"]


def analyse_study(quant, study, settings, *, reference: int) -> tuple[object | None, list[str]]:
    """Kinetics of every region of a quantified study.

    Parameters
    ----------
    quant : spectrack.quantification.stage.StudyQuantities
        The table, the dose parameters, the labels on each emission grid and the curves' Monte Carlo draws.
    study : Study
        The study (its number of time points).
    settings : Settings
        ``injected_region``, ``kinetics_draws`` and ``uncertainty_draws``.
    reference : int
        The reference time point, whose regions locate the injection.

    Returns
    -------
    kinetics : KineticsResult or None
        :func:`spectrack.kinetics.analyse_kinetics`; None with fewer than 3 time points.
    notes : list of str
        How the kinetics were computed (``study.json`` ``kinetics_method``, after the quantification's notes).
    """
    table, details, curve_draws = quant.table, quant.details, quant.curve_draws
    kin_notes: list[str] = []
    n_tp = len(study.timepoints)
    if n_tp < 3:
        kin_notes.append(f"kinetics not fitted: {n_tp} time point(s), at least 3 needed")
        return None, kin_notes
    from .analyse import analyse_kinetics

    lab0 = details.labels_per_timepoint[reference]
    inj, inj_txt = injected_regions(lab0, settings.injected_region)
    kin_notes.append("integrals start at 0 at injection for every region"
                     + (f" but {', '.join(inj)} (and groups holding them), which start at the content "
                        f"back-extrapolated from the first two scans: {inj_txt}" if inj else f": {inj_txt}"))
    # activity_mbq is pct_id times a constant: fitting pct_id alone gives every kinetic number; with
    # recovery correction the corrected curves get their own kinetics (quantity pct_id_pvc)
    quantities = ("pct_id", "pct_id_pvc") if "pct_id_pvc" in table else ("pct_id",)
    n_kd = min(settings.kinetics_draws, settings.uncertainty_draws)
    kin = analyse_kinetics(table, half_life_h=details.params.half_life_h.value, quantities=quantities,
                           injected_regions=inj, draws=curve_draws if n_kd > 0 else None, max_draws=n_kd)
    if n_kd > 0 and curve_draws is not None:
        kin_notes.append(f"intervals on AUC, TIA, MRT, TIAC and half-lives: the first {n_kd} Monte Carlo draws "
                         "of each curve (all uncertainty terms) refitted with the model chosen for the nominal "
                         "curve and reintegrated; 95 % percentile intervals (kinetics.csv lo, hi)")
    return kin, kin_notes


def injected_regions(label_map, setting: str | None = None) -> tuple[list[str], str]:
    """The regions that hold the injection at t = 0, and how they were found.

    ``setting`` (comma-separated names) wins; otherwise the ``injection_site``
    region and the region it lies in (the region, canal levels first, with
    the most voxels touching it). Without either, no region: every curve
    then starts at 0 at injection.
    """
    import numpy as np
    from scipy.ndimage import binary_dilation

    from ..regions.vocabulary import CANAL_LEVELS

    names = {int(k): str(v) for k, v in label_map.names.items()}
    if setting:
        want = [n.strip() for n in str(setting).split(",") if n.strip()]
        unknown = [n for n in want if n not in names.values()]
        if unknown:
            raise InputError(f"--injected-region {', '.join(unknown)}: no such region; the regions are "
                             f"{', '.join(sorted(names.values()))}")
        return want, "given (--injected-region)"
    site = [k for k, v in names.items() if v == "injection_site"]
    if not site:
        return [], ("no injection_site region: every region starts at 0 at injection (give --injected-region "
                    "for the region holding the injection)")
    lab = np.asarray(label_map.image.array)
    m = lab == site[0]
    if not m.any():
        return ["injection_site"], "injection_site region (it has no voxel, so its neighbour is unknown)"
    shell = binary_dilation(m, iterations=2) & ~m
    counts = {names[int(v)]: int(c) for v, c in zip(*np.unique(lab[shell], return_counts=True))
              if int(v) in names and names[int(v)] not in ("injection_site", "remainder")}
    around = sorted(counts, key=lambda n: (n not in CANAL_LEVELS, -counts[n]))
    if not around:
        return ["injection_site"], "injection_site region (no region touches it)"
    return ["injection_site", around[0]], f"injection_site and the region it lies in ({around[0]})"


