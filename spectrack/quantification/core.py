"""Percent injected dose per region and time point: the quantification core."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError, LabelError
from ..load.model import Study
from ..physics import decay_factor
from ..regions.formats.nifti import read_label_map
from ..regions.labelmap import LabelMap
from ..regions.vocabulary import GROUPS
from .calibration import Calibration, calibrate_study
from .parameters import DoseParameters, resolve_parameters
from .stats import RegionIndex

__all__ = ["quantify", "QuantResult", "TABLE_COLUMNS"]

#: Columns of the region table, in order, with their meaning.
TABLE_COLUMNS = {
    "subject": "subject identifier",
    "timepoint": "time point index (0 = first scan)",
    "acquisition_start": "scan start date-time",
    "time_h": "scan start minus injection, hours",
    "duration_s": "acquisition duration, seconds",
    "region": "region name",
    "label": "label index (0 = total field of view or a group)",
    "kind": "region, group (sum of regions), fov (whole field of view) or outside (field of view minus regions)",
    "n_voxels": "voxels of the region on the emission grid",
    "volume_ml": "region volume, mL",
    "activity_mbq": "activity at scan start (physical), MBq",
    "activity_mbq_decay_corrected": "activity decay-corrected to injection, MBq",
    "pct_id": "percent injected dose, decay-corrected to injection",
    "pct_id_uncorrected": "percent injected dose at scan start, not decay-corrected",
    "pct_id_per_ml": "pct_id per mL of region",
    "mean_bq_per_ml": "mean concentration at scan start, Bq/mL",
    "max_bq_per_ml": "maximum voxel concentration at scan start, Bq/mL",
    "mean_bq_per_ml_decay_corrected": "mean concentration decay-corrected to injection, Bq/mL",
}


@dataclass
class QuantResult:
    """What :func:`quantify` computed, beyond the table."""

    params: DoseParameters
    calibrations: list[Calibration]
    labels_per_timepoint: list[LabelMap]
    warnings: list[str] = field(default_factory=list)


def quantify(
    study: Study,
    labels: LabelMap | list[LabelMap] | str,
    *,
    calibration: str = "auto",
    sensitivity_cps_per_mbq: float | None = None,
    fov_timepoint: int = 0,
    injected_mbq: float | None = None,
    injection_time: dt.datetime | None = None,
    injected_measured_at: dt.datetime | None = None,
    residual_mbq: float | None = None,
    residual_time: dt.datetime | None = None,
    half_life_h: float | None = None,
    radionuclide: str | None = None,
    duration_s: float | None = None,
    transforms: list | None = None,
    groups: bool = True,
    label_resampling: str = "linear",
    return_details: bool = False,
):
    """Percent injected dose per region and time point.

    Parameters
    ----------
    study : Study
        From :func:`spectrack.load_study`.
    labels : LabelMap, list of LabelMap, or path
        Regions on any grid (typically the reference CT); resampled with
        nearest neighbour onto each emission volume. A list gives one label
        map per time point (e.g. propagated by registration).
    calibration : {"auto", "image", "sensitivity", "fov"}
        See :mod:`spectrack.quantification.calibration`.
    sensitivity_cps_per_mbq : float, optional
        System volume sensitivity for count images (``--sensitivity``).
    fov_timepoint : int
        Time point used by ``fov`` normalisation.
    injected_mbq, injection_time, injected_measured_at, residual_mbq, residual_time, half_life_h, radionuclide
        Override the headers (see :func:`~spectrack.quantification.parameters.resolve_parameters`).
    duration_s : float, optional
        Acquisition duration overriding the headers.
    transforms : list, optional
        Per time point SimpleITK transforms mapping that time point's space to
        the labels' space (from registration); ``None`` entries mean identity.
    label_resampling : {"linear", "nearest", "gaussian", "vote"}
        How labels are carried through a transform (see
        :func:`spectrack.align.resample.resample_labels`; ``"vote"`` is the
        former name of ``"linear"``); without a transform labels are always
        resampled by nearest neighbour.
    groups : bool
        Also report region groups (``spinal_canal``, ``cns``) when all their
        members are present.
    return_details : bool
        Also return a :class:`QuantResult`.

    Returns
    -------
    pandas.DataFrame
        One row per time point and region (columns in :data:`TABLE_COLUMNS`);
        ``df.attrs["metadata"]`` holds the parameters used and their sources.
    """
    from ..settings import settings_from_mapping

    if not isinstance(study, Study):
        raise InputError(f"quantify() needs a Study (from spectrack.load_study), not {type(study).__name__}")
    for name, value in (("calibration", calibration), ("radionuclide", radionuclide),
                        ("label_resampling", label_resampling)):
        if isinstance(value, str) and not value.strip():
            raise InputError(f"quantify(): {name} is empty: give a value or leave it out (None)")
    checked = settings_from_mapping({  # the checks of the command line, with the same messages
        "calibration": calibration, "sensitivity_cps_per_mbq": sensitivity_cps_per_mbq, "fov_timepoint": fov_timepoint,
        "injected_mbq": injected_mbq, "residual_mbq": residual_mbq, "half_life_h": half_life_h,
        "radionuclide": radionuclide, "duration_s": duration_s, "label_resampling": label_resampling,
    }, where="quantify()")
    # the validated values (a number given as text, '150', is used as the number the check read)
    calibration, label_resampling = checked.calibration, checked.label_resampling
    sensitivity_cps_per_mbq, fov_timepoint = checked.sensitivity_cps_per_mbq, checked.fov_timepoint
    injected_mbq, residual_mbq = checked.injected_mbq, checked.residual_mbq
    half_life_h, radionuclide, duration_s = checked.half_life_h, checked.radionuclide, checked.duration_s
    for name, value in (("injection_time", injection_time), ("injected_measured_at", injected_measured_at),
                        ("residual_time", residual_time)):
        if value is not None and not isinstance(value, dt.datetime):
            raise InputError(f"quantify(): {name} must be a datetime.datetime, not {type(value).__name__}")
        if value is not None and value.tzinfo is not None:
            raise InputError(f"quantify(): {name} is time-zone-aware ({value.isoformat()}): give the naive local "
                             "time of the scanner's clock, as the images' headers state their times "
                             "(e.g. value.astimezone(scanner_zone).replace(tzinfo=None))")
    labels = _checked_labels(labels, len(study.timepoints))
    transforms = _checked_transforms(transforms, len(study.timepoints))
    params = resolve_parameters(
        study, injected_mbq=injected_mbq, injection_time=injection_time,
        injected_measured_at=injected_measured_at, residual_mbq=residual_mbq, residual_time=residual_time,
        half_life_h=half_life_h, radionuclide=radionuclide)
    warnings: list[str] = list(study.warnings)
    for lm in labels if isinstance(labels, list) else [labels]:  # what the region reader assumed or dropped
        warnings += [w for w in lm.warnings if w not in warnings]
    for tp in study.timepoints:
        dt_h = params.hours_after_injection(tp.acquisition_start)
        if dt_h < 0:
            from ..errors import InconsistentInputError

            raise InconsistentInputError(
                f"time point {tp.index} starts {abs(dt_h):.2f} h before the injection "
                f"({tp.acquisition_start:%Y-%m-%d %H:%M:%S} < {params.injection_time.value:%Y-%m-%d %H:%M:%S}); "
                f"check the injection time ({params.injection_time.source}) or give --injection-time")
        n_half = dt_h / float(params.half_life_h.value)
        if n_half > MAX_HALF_LIVES:
            from ..errors import InconsistentInputError

            raise InconsistentInputError(
                f"time point {tp.index} starts {dt_h:.4g} h after the injection, {n_half:.4g} half-lives of "
                f"{params.half_life_h.value:.4g} h ({params.half_life_h.source}): its decay-corrected activity would "
                f"not be finite (more than {MAX_HALF_LIVES} half-lives); check the injection time "
                f"({params.injection_time.source}), the half-life and the scan times")
    cals = calibrate_study(study, params, method=calibration, sensitivity_cps_per_mbq=sensitivity_cps_per_mbq,
                           fov_timepoint=fov_timepoint, duration_s=duration_s)
    for c in cals:  # decay states assumed rather than read
        warnings += [w for w in c.warnings if w not in warnings]
    a_inj = params.injected_mbq.value
    hl = params.half_life_h.value
    rows = []
    per_tp_labels = []
    quantified: set[int] = set()
    resampled: dict[int, list] = {}  # id(label map) -> [(emission grid, labels on it)]
    present_in: dict[int, dict] = {}  # id(label map) -> which indices it holds (looked up when needed)
    for n, (tp, cal) in enumerate(zip(study.timepoints, cals)):
        img = tp.emission.image
        lm = labels[n] if isinstance(labels, list) else labels
        tr = transforms[n] if transforms is not None else None
        lab = None
        if tr is None:  # time points sharing one emission grid share one resampled label map
            for grid, done in resampled.get(id(lm), ()):
                if _identical_grid(grid, img):
                    lab = done
                    break
        if lab is None:
            lab = lm.resampled_to(img, tr, method=label_resampling)
            if tr is None:
                resampled.setdefault(id(lm), []).append((img, lab))
        per_tp_labels.append(lab)
        ri = RegionIndex(lab.image.array)
        if ri.labels.size == 0 and not any(m.any() for m in lab.overlaps.values()):
            raise LabelError(f"the label map ({lm.source or 'given'}) does not overlap the emission volume of "
                             f"time point {tp.index}: check that labels and images are of the same subject and "
                             "space (or register them)")
        act = img.array.astype(np.float32, copy=False)
        st = ri.stats(act)
        k = cal.mbq_per_voxel_per_unit
        vox_ml = img.voxel_volume_ml
        t_h = params.hours_after_injection(tp.acquisition_start)
        dfac = float(decay_factor(t_h, hl))
        fov_sum = float(np.sum(act, dtype=np.float64))
        common = dict(subject=study.subject, timepoint=tp.index,
                      acquisition_start=tp.acquisition_start.isoformat(sep=" "),
                      time_h=t_h, duration_s=None if cal.duration_s is None else cal.duration_s.value)

        def row(region, label, kind, n_vox, s, mx):
            a = s * k
            vol = n_vox * vox_ml
            return dict(common, region=region, label=label, kind=kind, n_voxels=int(n_vox), volume_ml=vol,
                        activity_mbq=a, activity_mbq_decay_corrected=a * dfac,
                        pct_id=100.0 * a * dfac / a_inj, pct_id_uncorrected=100.0 * a / a_inj,
                        pct_id_per_ml=(100.0 * a * dfac / a_inj / vol) if vol > 0 else np.nan,
                        mean_bq_per_ml=(a * 1e6 / vol) if vol > 0 else np.nan,
                        max_bq_per_ml=mx * k * 1e6 / vox_ml,
                        mean_bq_per_ml_decay_corrected=(a * dfac * 1e6 / vol) if vol > 0 else np.nan)

        by_name = {}  # exclusive parts: groups add them up so a shared voxel counts once
        for lab_idx, cnt, s, mx in zip(ri.labels, ri.counts, st["sum"], st["max"]):
            by_name[lab.names.get(int(lab_idx), f"label_{lab_idx}")] = (cnt, s, mx)
        own = {}  # regions quantified over their own full mask (they overlap others)
        for lab_idx, m in lab.overlaps.items():
            vals = act[m]
            if vals.size:
                own[lab_idx] = (vals.size, float(np.sum(vals, dtype=np.float64)), float(vals.max()))
        for lab_idx in sorted(set(int(v) for v in ri.labels) | set(own)):
            name = lab.names.get(lab_idx, f"label_{lab_idx}")
            cnt, s, mx = own[lab_idx] if lab_idx in own else by_name[name]
            rows.append(row(name, lab_idx, "region", cnt, s, mx))
        # regions of the label map without a voxel on this grid (outside the field of view, or thinner than its
        # voxels: nearest-neighbour resampling keeps a region only where it holds an emission voxel's centre)
        on_grid = set(int(v) for v in ri.labels) | set(own)
        quantified |= on_grid
        spacing = "x".join(f"{v:.3g}" for v in img.spacing_mm)
        for idx, name in sorted(lm.names.items()):
            if idx not in on_grid and _is_present(lm, idx, present_in):
                warnings.append(f"time point {tp.index}: region {name} has no voxel on the {spacing} mm emission "
                                "grid (outside the field of view, or smaller than its voxels): not quantified")
        if groups:
            for gname, members in GROUPS.items():
                if all(m in by_name for m in members):
                    cnt = sum(by_name[m][0] for m in members)
                    s = sum(by_name[m][1] for m in members)
                    mx = max(by_name[m][2] for m in members)
                    rows.append(row(gname, 0, "group", cnt, s, mx))
        n_all = int(np.prod(act.shape))
        rows.append(row("field_of_view", 0, "fov", n_all, fov_sum, float(act.max())))
        in_regions = float(st["sum"].sum())
        n_out = n_all - int(ri.counts.sum())
        out_mask_max = float(np.max(np.where(lab.image.array == 0, act, -np.inf))) if n_out else 0.0
        rows.append(row("outside_regions", 0, "outside", n_out, fov_sum - in_regions, out_mask_max))
    for lm in labels if isinstance(labels, list) else [labels]:  # named, but no voxels in the label map itself
        said = set(lm.meta.get("regions_without_voxels", []))
        for idx, name in sorted(lm.names.items()):  # looked up only when a named region was not quantified
            if idx in quantified or name in said:
                continue
            if not _is_present(lm, idx, present_in):
                said.add(name)
                msg = (f"region {name} is named in the label map ({Path(lm.source).name or 'given'}) but has no "
                       "voxels at any time point: it is not in the table")
                if msg not in warnings:
                    warnings.append(msg)
    import pandas as pd  # here, not above: its libraries load after the label maps' resampling buffers are freed

    df = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    warnings += [w for w in _check_plausible(df, study, params) if w not in warnings]
    df.attrs["metadata"] = {
        "dose": params.to_json(),
        "calibration": [c.to_json() for c in cals],
        "warnings": warnings,
    }
    if return_details:
        return df, QuantResult(params, cals, per_tp_labels, warnings)
    return df


#: regions of one label map looked up one by one (a comparison pass each) before all are counted at once
_FEW_LOOKUPS = 4


def _is_present(lm: LabelMap, idx: int, cache: dict) -> bool:
    """``idx in lm.present()``, answered once per label map and index: for the first few indices asked by a
    comparison over the map (a CT-sized map: one fast pass each), then by counting all of them once."""
    mine = cache.setdefault(id(lm), {"asked": {}, "all": None})
    if mine["all"] is not None:
        return idx in mine["all"]
    if idx not in mine["asked"]:
        if len(mine["asked"]) >= _FEW_LOOKUPS:
            mine["all"] = set(lm.present())
            return idx in mine["all"]
        m = lm.overlaps.get(idx)
        mine["asked"][idx] = bool((idx != 0 and np.any(lm.image.array == idx)) or (m is not None and m.any()))
    return mine["asked"][idx]


def _identical_grid(a, b) -> bool:
    """The same grid to the bit (shape, origin, spacing, direction): resampling onto either gives the same labels."""
    return (tuple(a.shape_ijk) == tuple(b.shape_ijk) and np.array_equal(a.origin_mm, b.origin_mm)
            and np.array_equal(a.spacing_mm, b.spacing_mm) and np.array_equal(a.direction, b.direction))


def _checked_labels(labels, n_timepoints: int):
    """A LabelMap, or a list of one per time point; paths are read. Anything else is an InputError."""
    def one(lm, what):
        if isinstance(lm, (str, bytes)) or hasattr(lm, "__fspath__"):
            return read_label_map(lm)
        if not isinstance(lm, LabelMap):
            raise InputError(f"quantify(): {what} must be a label map (a LabelMap from read_label_map, or a path "
                             f"to one), not {type(lm).__name__}")
        return lm

    if isinstance(labels, (list, tuple)):
        if len(labels) != n_timepoints:
            raise InputError(f"quantify(): {len(labels)} label maps given for {n_timepoints} time points: give one "
                             "label map, or one per time point")
        return [one(lm, f"labels[{i}]") for i, lm in enumerate(labels)]
    return one(labels, "labels")


def _checked_transforms(transforms, n_timepoints: int):
    """None, or a list of one SimpleITK Transform (or None) per time point."""
    if transforms is None:
        return None
    import SimpleITK as sitk

    if not isinstance(transforms, (list, tuple)):
        raise InputError(f"quantify(): transforms must be a list of one SimpleITK Transform (or None) per time "
                         f"point, not {type(transforms).__name__}")
    if len(transforms) != n_timepoints:
        raise InputError(f"quantify(): {len(transforms)} transforms given for {n_timepoints} time points: give "
                         "one per time point (None for identity)")
    for i, t in enumerate(transforms):
        if t is not None and not isinstance(t, sitk.Transform):
            raise InputError(f"quantify(): transforms[{i}] must be a SimpleITK Transform or None, not "
                             f"{type(t).__name__}")
    return list(transforms)


#: Decay correction over more half-lives than this (2**1000 ~ 1e301) is not finite in float64: refused.
MAX_HALF_LIVES = 1000

#: A field of view below -FOV_SLACK or above 100 + FOV_SLACK %ID is a warning (beyond counting noise
#: and calibration error, it means a wrong dose, calibration, decay or time).
FOV_SLACK_PCT = 10.0


def _check_plausible(df, study, params) -> list[str]:
    """Refuse non-finite results; warnings for numbers no real scan gives.

    Raises
    ------
    InconsistentInputError
        When a %ID or activity is not finite (an overflowing decay correction:
        a half-life far too short for the scan times, an injection long before
        the scan), naming the likely cause.
    """
    from ..errors import InconsistentInputError

    warn: list[str] = []
    hl = float(params.half_life_h.value)
    for col in ("pct_id", "pct_id_uncorrected", "activity_mbq", "activity_mbq_decay_corrected"):
        bad = df[~np.isfinite(df[col].to_numpy(dtype=float))]
        if len(bad):
            r = bad.iloc[0]
            n_hl = float(r["time_h"]) / hl if hl > 0 else float("inf")
            raise InconsistentInputError(
                f"time point {int(r['timepoint'])}, region {r['region']}: {col} is {r[col]} (not finite): decay "
                f"correction over {float(r['time_h']):.4g} h is {n_hl:.3g} half-lives of {hl:.4g} h "
                f"({params.half_life_h.source}; injection {params.injection_time.value:%Y-%m-%d %H:%M} from "
                f"{params.injection_time.source}); check the half-life, the injection time and the scan times")
    for tpi, g in df.groupby("timepoint"):
        fov = g.loc[g["kind"] == "fov", "pct_id"]
        if not len(fov):
            continue
        v = float(fov.iloc[0])
        if v < -FOV_SLACK_PCT or v > 100 + FOV_SLACK_PCT:
            warn.append(f"time point {tpi}: the field of view holds {v:.4g} %ID (decay-corrected), outside "
                        f"[{-FOV_SLACK_PCT:g}, {100 + FOV_SLACK_PCT:g}]: check the injected activity, the calibration "
                        "(sensitivity, units), the half-life and the injection time")
    for tp in study.timepoints:
        a = tp.emission.image.array
        mx = float(np.max(a)) if a.size else 0.0
        if mx <= 0:
            warn.append(f"time point {tp.index}: the emission image holds no positive value (max {mx:g}): every "
                        "%ID is zero or negative; check the image and its rescale slope")
        elif float(np.sum(a, dtype=np.float64)) < 0:
            warn.append(f"time point {tp.index}: the emission image sums to a negative value: check the image "
                        "and its rescale intercept")
    return warn
