"""Build phantom studies in memory (:func:`make_phantom`) and on disk (:func:`make_study`)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..geometry import Image
from ..physics import decay_constant_per_h, in_frame_factor
from ..regions.labels import LabelMap
from ..regions.vocabulary import CANAL_LEVELS, GROUPS, INDEX
from .anatomy import (canal_arclength_mm, canal_centreline, ct_from_materials, make_geometry, motion_matrix,
                      pose_matrix, rasterize, region_names)
from .kinetics_model import simulate_pct_id
from .presets import PRESETS, Preset

__all__ = ["Phantom", "PhantomTimePoint", "make_phantom", "make_study", "DEFAULT_INJECTION", "TRUTH_BASIS"]

#: Injection time of every phantom unless given: late evening, so that the
#: 2 h scan crosses midnight and the 24 h scan is on the next day.
DEFAULT_INJECTION = dt.datetime(2026, 3, 14, 21, 40, 0)
TC99M_HALF_LIFE_H = 6.0067
UINT16_MAX = 65535

TRUTH_BASIS = (
    "Region values are computed from the stored integers of the ideal image (unblurred, noise-free) times "
    "the known calibration (mbq_per_stored_unit): exact for the written image when psf_fwhm_mm == 0 and "
    "noise is false. The integer total of each region is round(model total) spread over its voxels "
    "(values differ by at most 1 stored unit), so the model values differ from the truth by at most half a "
    "stored unit per region. With a PSF or noise, the written image differs from the ideal one and the truth "
    "is the physical (ideal) one; image_pct_id gives what the written image holds inside each region."
)


@dataclass
class PhantomTimePoint:
    """One scan of a phantom study, in memory.

    Attributes
    ----------
    index : int
    time_h : float
        Scan start minus injection (h).
    acquisition_start : datetime.datetime
    duration_s : float
        Acquisition wall time.
    spect : Image
        Values in ``units`` (counts, or Bq/mL averaged over the acquisition),
        float32, exactly ``spect_stored * value_scale``.
    spect_stored : numpy.ndarray
        The uint16 values written to DICOM (same array order as ``spect``).
    value_scale : float
        Stored -> value factor (1 for counts, the rescale slope for Bq/mL).
    ct : Image
        Hounsfield units (int16) on the CT grid.
    labels_spect, labels_ct : LabelMap
        Truth labels on this scan's SPECT and CT grids (moved anatomy).
    pose : numpy.ndarray
        4x4 body -> world matrix of this scan.
    reference_to_timepoint : numpy.ndarray
        4x4 LPS world -> world motion from the reference scan (time point 0).
    spect_ideal : Image
        The ideal (unblurred, noise-free) image in ``units``; the same as
        ``spect`` without PSF and noise.
    truth : dict
        This time point's entry of ``truth.json``.
    """

    index: int
    time_h: float
    acquisition_start: dt.datetime
    duration_s: float
    spect: Image
    spect_stored: np.ndarray
    value_scale: float
    ct: Image
    labels_spect: LabelMap
    labels_ct: LabelMap
    pose: np.ndarray
    reference_to_timepoint: np.ndarray
    spect_ideal: Image
    truth: dict = field(default_factory=dict)


@dataclass
class Phantom:
    """A whole phantom study in memory (see :func:`make_phantom`)."""

    preset: str
    geometry: dict
    timepoints: list
    truth: dict
    reference_labels: LabelMap
    settings: dict


# ---------------------------------------------------------------- helpers
def _parse_datetime(v) -> dt.datetime:
    if v is None:
        return DEFAULT_INJECTION
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            raise ValueError("injection_datetime must be timezone-naive (local scanner time)")
        return v
    return dt.datetime.fromisoformat(str(v))


def _per_timepoint(value, default, n, what):
    if value is None:
        vals = list(default)
        vals = vals[:n] + [vals[-1]] * max(0, n - len(vals))
        return [float(v) for v in vals]
    if np.ndim(value) == 0:
        return [float(value)] * n
    vals = [float(v) for v in value]
    if len(vals) != n:
        raise ValueError(f"{what} has {len(vals)} values for {n} time points")
    return vals


def rotation_frames(duration_s: float) -> tuple[int, int]:
    """``(NumberOfFramesInRotation, ActualFrameDuration ms)`` whose product is the duration exactly."""
    total_ms = duration_s * 1000.0
    if abs(total_ms - round(total_ms)) > 1e-6 or total_ms <= 0:
        raise ValueError(f"frame_duration_s must be a positive whole number of milliseconds, got {duration_s}")
    total_ms = int(round(total_ms))
    for n in (60, 64, 120, 128, 40, 50, 32, 30, 20, 16, 10, 8, 5, 4, 2, 1):
        if total_ms % n == 0:
            return n, total_ms // n
    raise AssertionError("unreachable")  # n = 1 always divides


def _parse_motion(motion, n, seed, pre: Preset):
    """Per-time-point ``(tx, ty, tz, rx, ry, rz)`` or None."""
    if motion is None or motion is False:
        return [None] * n
    if isinstance(motion, str) or motion is True:
        if motion is not True and motion != "random":
            raise ValueError(f"motion must be None, 'random', a list or a dict, got {motion!r}")
        rng = np.random.default_rng([int(seed), 0x6D6F74])
        out = [None]
        for _ in range(1, n):
            t = rng.uniform(-1, 1, 3) * 2.0 * max(pre.spacing_mm)
            r = rng.uniform(-1, 1, 3) * 3.0
            out.append(tuple(float(v) for v in np.round(np.concatenate([t, r]), 3)))
        return out
    if isinstance(motion, dict):
        out = [None] * n
        for k, v in motion.items():
            out[int(k)] = None if v is None else tuple(float(a) for a in v)
        return out
    out = [None if v is None else tuple(float(a) for a in v) for v in motion]
    if len(out) != n:
        raise ValueError(f"motion has {len(out)} entries for {n} time points")
    for v in out:
        if v is not None and len(v) != 6:
            raise ValueError("each motion entry is (tx, ty, tz, rx, ry, rz) in mm and degrees")
    return out


def _nice(x: float) -> float:
    """``x`` rounded to 6 significant digits (exact as a DICOM DS string)."""
    return float(f"{x:.6g}")


def _spread(total: float, n: int, rng) -> np.ndarray:
    """``n`` non-negative integers summing to ``round(total)``, differing by at most 1."""
    tot = int(round(total))
    base, extra = divmod(tot, n)
    out = np.full(n, base, dtype=np.int64)
    if extra:
        out[rng.permutation(n)[:extra]] += 1
    return out


def _grid(pre: Preset, spect_shape, ct_refine: int):
    n = np.asarray(spect_shape if spect_shape is not None else pre.spect_shape, dtype=int).reshape(3)
    if np.any(n < 4):
        raise ValueError(f"spect_shape must be at least 4 voxels per axis, got {tuple(n)}")
    if ct_refine < 1 or ct_refine % 2 == 0:
        raise ValueError(f"ct_refine must be an odd integer >= 1 (1 or 3), got {ct_refine}")
    sp = np.array([round(f / k, 6) for f, k in zip(pre.fov_mm, n)])
    origin = np.round(np.asarray(pre.fov_centre_mm) - sp * (n - 1) / 2.0, 4)
    spect = Image(np.zeros(n[::-1], np.float32), origin, sp, np.eye(3), units="")
    r = int(ct_refine)
    csp = sp / r
    corigin = origin - csp * (r - 1) / 2.0
    ct = Image(np.zeros(n[::-1] * r, np.int16), corigin, csp, np.eye(3), units="HU")
    return spect, ct


def _flip_k(img: Image, array=None) -> Image:
    """The same voxels with the slice axis reversed (negative slice step)."""
    arr = img.array if array is None else array
    n = arr.shape[0]
    origin = img.index_to_world_mm([0, 0, n - 1])
    d = img.direction.copy()
    d[:, 2] *= -1
    d += 0.0  # no negative zeros in JSON
    return Image(np.ascontiguousarray(arr[::-1]), origin, img.spacing_mm, d, units=img.units, meta=dict(img.meta))


def _args_digest(args: dict) -> str:
    return hashlib.sha256(json.dumps(args, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ------------------------------------------------------------------ builder
class _Builder:
    def __init__(self, preset="nhp", *, seed=0, times_h=None, units="counts", psf_fwhm_mm=0.0, noise=False,
                 motion=None, negative_slice_step=False, spect_shape=None, ct_refine=1, subject_id=None,
                 injection_datetime=None, injected_mbq=None, sensitivity_cps_per_mbq=None, frame_duration_s=None,
                 jitter=1.0, geometry=None, tracer_front_mm=None, half_life_h=TC99M_HALF_LIFE_H,
                 acquisition="exact", camera=None, vertebrae="continuous", intracranial_csf=False):
        if isinstance(preset, Preset):
            pre = preset
        else:
            if preset not in PRESETS:
                raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
            pre = PRESETS[preset]
        u = str(units).lower().replace("/", "").replace(" ", "")
        if u not in ("counts", "bqml"):
            raise ValueError(f"units must be 'counts' or 'bqml', got {units!r}")
        self.pre = pre
        self.seed = int(seed)
        self.units = u
        self.times_h = [float(t) for t in (pre.times_h if times_h is None else times_h)]
        if not self.times_h or any(t <= 0 for t in self.times_h):
            raise ValueError("times_h must be a non-empty list of positive hours after injection")
        if any(b <= a for a, b in zip(self.times_h, self.times_h[1:])):
            raise ValueError("times_h must increase")
        n = len(self.times_h)
        self.durations_s = _per_timepoint(frame_duration_s, pre.frame_duration_s, n, "frame_duration_s")
        self.frames = [rotation_frames(d) for d in self.durations_s]
        self.injection = _parse_datetime(injection_datetime)
        self.injected_mbq = float(pre.injected_mbq if injected_mbq is None else injected_mbq)
        self.sensitivity = float(pre.sensitivity_cps_per_mbq if sensitivity_cps_per_mbq is None
                                 else sensitivity_cps_per_mbq)
        if not (self.injected_mbq > 0 and self.sensitivity > 0):
            raise ValueError("injected_mbq and sensitivity_cps_per_mbq must be positive")
        self.half_life_h = float(half_life_h)
        self.lam = decay_constant_per_h(self.half_life_h)
        self.psf = float(psf_fwhm_mm or 0.0)
        if self.psf < 0:
            raise ValueError("psf_fwhm_mm must be >= 0")
        self.noise = bool(noise)
        if acquisition not in ("exact", "realistic"):
            raise ValueError(f"acquisition must be 'exact' or 'realistic', got {acquisition!r}")
        self.acquisition = acquisition
        self.camera = None
        if acquisition == "realistic":
            from .acquisition import Camera

            self.camera = camera if isinstance(camera, Camera) else Camera(**(camera or {}))
            if tracer_front_mm is not None:
                raise ValueError("tracer_front_mm is not available with acquisition='realistic'")
            if self.psf > 0:
                raise ValueError("psf_fwhm_mm is for the exact mode: the realistic mode's resolution comes from "
                                 "its camera (collimator response and reconstruction)")
        self.negative = bool(negative_slice_step)
        self.ct_refine = int(ct_refine)
        self.spect_grid, self.ct_grid = _grid(pre, spect_shape, self.ct_refine)
        self.subject_id = subject_id or f"phantom-{pre.name}-{self.seed:03d}"
        self.motion = _parse_motion(motion, n, self.seed, pre)
        self.front = None if tracer_front_mm is None else _per_timepoint(tracer_front_mm, [0.0], n,
                                                                         "tracer_front_mm")
        self.geometry = make_geometry(pre, seed=self.seed, jitter=jitter, spect_spacing_mm=self.spect_grid.spacing_mm,
                                      overrides=geometry, vertebrae=vertebrae,
                                      intracranial_csf=bool(intracranial_csf))
        self.intracranial_csf = bool(intracranial_csf)
        if self.intracranial_csf and pre.kinetics_intracranial_csf is None:
            raise ValueError(f"preset {pre.name!r} has no intracranial CSF kinetics (kinetics_intracranial_csf)")
        self.kinetics = pre.kinetics_intracranial_csf if self.intracranial_csf else pre.kinetics
        #: regions this phantom draws (csf_intracranial only when asked for)
        self.names = region_names(self.intracranial_csf)
        self.groups = {g: m for g, m in GROUPS.items() if all(x in self.names.values() for x in m)}
        self.model = simulate_pct_id(self.kinetics, self.times_h)
        self.args = {
            "preset": pre.name, "seed": self.seed, "times_h": self.times_h, "units": self.units,
            "psf_fwhm_mm": self.psf, "noise": self.noise, "motion": self.motion,
            "negative_slice_step": self.negative, "spect_shape": list(self.spect_grid.shape_ijk),
            "ct_refine": self.ct_refine, "subject_id": self.subject_id,
            "injection_datetime": self.injection.isoformat(), "injected_mbq": self.injected_mbq,
            "sensitivity_cps_per_mbq": self.sensitivity, "frame_duration_s": self.durations_s,
            "jitter": float(jitter), "geometry_overrides": geometry, "tracer_front_mm": self.front,
            "half_life_h": self.half_life_h,
            "acquisition": self.acquisition,
            "camera": None if self.camera is None else self.camera.to_json(),
        }
        if vertebrae != "continuous":  # only when asked: the default arguments (and digest, UIDs) stay as they were
            self.args["vertebrae"] = vertebrae
        if self.intracranial_csf:  # likewise
            self.args["intracranial_csf"] = True
        self.digest = _args_digest(self.args)
        self._cache: dict = {}

    # ------------------------------------------------------------ anatomy
    def _anatomy(self, motion):
        key = None if motion is None else tuple(motion)
        if key in self._cache:
            return self._cache[key]
        pose = pose_matrix(self.geometry, motion)
        lab_ct, mat_ct = rasterize(self.ct_grid, self.geometry, pose)
        r, c = self.ct_refine, (self.ct_refine - 1) // 2
        lab_sp = np.ascontiguousarray(lab_ct[c::r, c::r, c::r])
        self._cache = {key: (pose, lab_ct, mat_ct, lab_sp)}  # keep one pose only (memory)
        return self._cache[key]

    def _front_mask(self, lab_sp, pose, front_mm):
        """Canal voxels between the injection level and ``front_mm`` rostral of it, and the front's info."""
        canal = np.isin(lab_sp, [INDEX[c] for c in CANAL_LEVELS])
        kk, jj, ii = np.nonzero(canal)
        inv = np.linalg.inv(pose)
        world = self.spect_grid.index_to_world_mm(np.stack([ii, jj, kk], axis=1))
        zb = world @ inv[:3, :3].T[:, 2] + inv[2, 3]
        s = canal_arclength_mm(self.geometry, zb)
        z_inj = self.geometry["injection_site"]["centre_mm"][2]
        s_inj = float(canal_arclength_mm(self.geometry, [z_inj])[0])
        active = (s >= s_inj) & (s <= s_inj + front_mm)
        mask = np.zeros(lab_sp.shape, bool)
        mask[kk[active], jj[active], ii[active]] = True
        # front point on the centreline (body frame -> world)
        st = np.asarray(self.geometry["canal"]["stations_mm"])
        zz = np.linspace(st[0, 0], st[-1, 0], 4001)
        ss = canal_arclength_mm(self.geometry, zz)
        zf = float(np.interp(s_inj + front_mm, ss, zz))
        xf, yf = canal_centreline(self.geometry, [zf])
        pf = pose[:3, :3] @ np.array([xf[0], yf[0], zf]) + pose[:3, 3]
        xi, yi = canal_centreline(self.geometry, [z_inj])
        pi = pose[:3, :3] @ np.array([xi[0], yi[0], z_inj]) + pose[:3, 3]
        info = {"distance_mm": float(front_mm), "injection_level_arclength_mm": s_inj,
                "canal_length_mm": float(ss[-1]),
                "front_beyond_canal": bool(s_inj + front_mm > ss[-1]),
                "injection_level_lps_mm": pi.tolist(), "front_point_lps_mm": pf.tolist(),
                "active_voxels": int(mask.sum())}
        return mask, info

    # ------------------------------------------------------------ one scan
    def timepoint(self, n: int) -> PhantomTimePoint:
        t_nominal = self.times_h[n]
        start = self.injection + dt.timedelta(seconds=round(t_nominal * 3600.0))
        t_h = (start - self.injection).total_seconds() / 3600.0
        d_s = self.durations_s[n]
        ff = float(in_frame_factor(d_s / 3600.0, self.half_life_h))
        decay = math.exp(-self.lam * t_h)
        a_inj = self.injected_mbq
        motion = self.motion[n]
        pose, lab_ct, mat_ct, lab_sp = self._anatomy(motion)
        vox_ml = self.spect_grid.voxel_volume_ml

        # model %ID (decay-corrected) of each region at the scan start
        model_pct = {name: float(self.model[name][n]) for name in self.names.values()}
        excreted = float(self.model["excreted"][n])
        counts_per_label = np.bincount(lab_sp.ravel(), minlength=max(self.names) + 1)
        notes = []
        for idx, name in self.names.items():
            if counts_per_label[idx] == 0 and model_pct[name] != 0.0 and name != "remainder":
                notes.append(f"{name} has no voxel on the SPECT grid: its {model_pct[name]:.4g} %ID is put in "
                             "remainder")
                model_pct["remainder"] += model_pct[name]
                model_pct[name] = 0.0

        # classes of uniform activity: (name, mask, pct)
        classes = []
        front_info = None
        if self.front is not None:
            fmask, front_info = self._front_mask(lab_sp, pose, self.front[n])
            neur = sum(model_pct[c] for c in CANAL_LEVELS + ("brain",))
            if fmask.any():
                classes.append(("neuraxis_front", fmask, neur))
            else:
                notes.append("tracer front covers no canal voxel: its activity is put in remainder")
                model_pct["remainder"] += neur
            for c in CANAL_LEVELS + ("brain",):
                model_pct[c] = 0.0
        for idx, name in self.names.items():
            if self.front is not None and name in CANAL_LEVELS + ("brain",):
                continue
            if counts_per_label[idx]:
                classes.append((name, lab_sp == idx, model_pct[name]))

        # expected values (float) in stored units of the ideal image
        sd = self.sensitivity * d_s
        expected_counts = np.zeros(lab_sp.shape)
        for _, mask, pct in classes:
            a_start = pct / 100.0 * a_inj * decay
            expected_counts[mask] = a_start / mask.sum() * sd / ff
        # the written image (float), before quantisation
        written = expected_counts
        acq_info = None
        if self.acquisition == "realistic":
            written, acq_info = self._realistic(n, pose, classes, counts_per_label, a_inj * decay * sd / ff)
        if self.psf > 0:
            from scipy.ndimage import gaussian_filter

            sigma_vox = self.psf / (2.0 * math.sqrt(2.0 * math.log(2.0))) / self.spect_grid.spacing_mm[::-1]
            written = gaussian_filter(written, sigma=sigma_vox, mode="constant", truncate=4.0)
        if self.noise:
            rng_noise = np.random.default_rng([self.seed, 0x6E6F, n])
            written = rng_noise.poisson(np.clip(written, 0, None)).astype(np.float64)
        # Bq/mL averaged over the acquisition = counts / (S D) / V
        bqml_per_count = 1e6 / sd / vox_ml
        if self.units == "counts":
            scale = 1.0
            mbq_per_unit = ff / sd
        else:
            peak = max(float(expected_counts.max()), float(written.max())) * bqml_per_count
            scale = _nice(peak / 60000.0) if peak > 0 else 1.0
            mbq_per_unit = scale * vox_ml * 1e-6 * ff
        unit_per_count = 1.0 if self.units == "counts" else bqml_per_count / scale
        rng_q = np.random.default_rng([self.seed, 0x71, n])
        ideal = np.zeros(lab_sp.shape, np.int64)
        for name, mask, pct in classes:
            total = expected_counts[mask].sum() * unit_per_count
            ideal[mask] = _spread(total, int(mask.sum()), rng_q)
        if self.psf > 0 or self.noise or acq_info is not None:
            stored = np.rint(written * unit_per_count).astype(np.int64)
        else:
            stored = ideal
        if stored.max(initial=0) > UINT16_MAX or ideal.max(initial=0) > UINT16_MAX:
            raise ValueError(
                f"time point {n}: {int(max(stored.max(), ideal.max()))} counts in a voxel do not fit in uint16; "
                "lower injected_mbq, sensitivity_cps_per_mbq or frame_duration_s, or use units='bqml'")
        stored16 = stored.astype(np.uint16)

        # the pct assigned to each region before quantisation (model, after the front option)
        assigned = {name: 0.0 for name in self.names.values()}
        for _, mask, pct in classes:
            cnt = np.bincount(lab_sp[mask], minlength=max(self.names) + 1)
            for idx in np.nonzero(cnt)[0]:
                if idx:
                    assigned[self.names[int(idx)]] += pct * cnt[idx] / mask.sum()

        # truth per region from the ideal stored values
        regions = {}
        for idx, name in self.names.items():
            m = lab_sp == idx
            nvox = int(m.sum())
            units_sum = int(ideal[m].sum())
            a_start = units_sum * mbq_per_unit
            a_dc = a_start / decay
            vol = nvox * vox_ml
            img_sum = float(stored[m].sum()) * mbq_per_unit
            if acq_info is not None:  # the compartment's activity drawn on the fine grid is the truth
                a_start = assigned[name] / 100.0 * a_inj * decay
                a_dc = a_start / decay
            regions[name] = {
                "index": idx, "n_voxels": nvox, "volume_ml": vol,
                "stored_sum": units_sum,
                "activity_mbq": a_start,
                "activity_mbq_decay_corrected": a_dc,
                "pct_id": 100.0 * a_dc / a_inj,
                "pct_id_uncorrected": 100.0 * a_start / a_inj,
                "pct_id_per_ml": (100.0 * a_dc / a_inj / vol) if vol > 0 else None,
                "concentration_bq_per_ml": (a_start * 1e6 / vol) if vol > 0 else None,
                "model_pct_id": assigned[name],
                "model_activity_mbq": assigned[name] / 100.0 * a_inj * decay,
                "image_pct_id": 100.0 * img_sum / decay / a_inj,
            }
        groups = {}
        for g, members in self.groups.items():
            groups[g] = {k: float(sum(regions[m][k] for m in members))
                         for k in ("volume_ml", "activity_mbq", "activity_mbq_decay_corrected", "pct_id",
                                   "pct_id_uncorrected", "image_pct_id")}
        in_body = sum(r["pct_id"] for r in regions.values())

        # images (canonical grid, then the slice step the files use)
        spect_c = self.spect_grid.with_array((stored16.astype(np.float64) * scale).astype(np.float32),
                                             units="counts" if self.units == "counts" else "Bq/mL")
        ideal_c = self.spect_grid.with_array((ideal.astype(np.float64) * scale).astype(np.float32),
                                             units=spect_c.units)
        lab_sp_img = self.spect_grid.with_array(lab_sp, units="label")
        if self.negative:
            spect_img, ideal_img, lab_sp_img = _flip_k(spect_c), _flip_k(ideal_c), _flip_k(lab_sp_img)
            stored_out = np.ascontiguousarray(stored16[::-1])
        else:
            spect_img, ideal_img, stored_out = spect_c, ideal_c, stored16
        hu = ct_from_materials(mat_ct)
        if self.noise:
            hu = hu + np.random.default_rng([self.seed, 0x4354, n]).normal(0.0, 10.0, hu.shape)
        ct_img = self.ct_grid.with_array(np.clip(np.rint(hu), -1024, 3071).astype(np.int16), units="HU")
        names = dict(self.names)
        lab_ct_map = LabelMap(self.ct_grid.with_array(lab_ct, units="label"), dict(names), source="phantom")
        lab_sp_map = LabelMap(lab_sp_img, dict(names), source="phantom")
        ref_to_tp = np.eye(4) if motion is None else motion_matrix(motion, self.geometry["fov_centre_mm"])

        nrot, ms = self.frames[n]
        truth = {
            "index": n,
            "acquisition_start": start.isoformat(),
            "acquisition_end": (start + dt.timedelta(seconds=d_s)).isoformat(),
            "time_h": t_h,
            "time_h_nominal": t_nominal,
            "duration_s": d_s,
            "frames_in_rotation": nrot,
            "actual_frame_duration_ms": ms,
            "in_frame_factor": ff,
            "decay_factor_to_injection": 1.0 / decay,
            "units": spect_c.units,
            "value_scale": scale,
            "mbq_per_stored_unit": mbq_per_unit,
            "motion": None if motion is None else {"tx_mm": motion[0], "ty_mm": motion[1], "tz_mm": motion[2],
                                                    "rx_deg": motion[3], "ry_deg": motion[4], "rz_deg": motion[5]},
            "reference_to_timepoint_lps": ref_to_tp.tolist(),
            "pose_body_to_lps": pose.tolist(),
            "excreted_pct_id": excreted,
            "in_body_pct_id": in_body,
            "total_pct_id": in_body + excreted,
            "fov_activity_mbq": (float(ideal.sum()) * mbq_per_unit if acq_info is None
                                 else sum(assigned.values()) / 100.0 * a_inj * decay),
            "regions": regions,
            "groups": groups,
            "model": {k: float(v[n]) for k, v in self.model.items()},
            "tracer_front": front_info,
            "notes": notes,
            "acquisition": acq_info,
        }
        return PhantomTimePoint(
            index=n, time_h=t_h, acquisition_start=start, duration_s=d_s, spect=spect_img,
            spect_stored=stored_out, value_scale=scale, ct=ct_img, labels_spect=lab_sp_map,
            labels_ct=lab_ct_map, pose=pose, reference_to_timepoint=ref_to_tp, spect_ideal=ideal_img,
            truth=truth)

    # ------------------------------------------------------------ realistic acquisition
    def _realistic(self, n, pose, classes, counts_per_label, counts_per_id):
        """Reconstructed counts on the SPECT grid of a camera acquisition (see :mod:`.acquisition`)."""
        from .acquisition import acquire, mu_from_hu

        f = int(self.camera.fine)
        sp = self.spect_grid
        fsp = sp.spacing_mm / f
        fine = Image(np.zeros(np.asarray(sp.array.shape) * f, np.uint8), sp.origin_mm - fsp * (f - 1) / 2.0, fsp,
                     sp.direction)
        lab_f, mat_f = rasterize(fine, self.geometry, pose)
        act = np.zeros(lab_f.shape)
        # each class's activity over its own voxels of the fine grid; regions too small for the SPECT grid
        # were put in the remainder, their fine voxels with it
        moved = [idx for idx, name in self.names.items() if counts_per_label[idx] == 0 and name != "remainder"]
        for name, _mask, pct in classes:
            idx = INDEX[name]
            m = (lab_f == idx) if name != "remainder" else np.isin(lab_f, [idx] + moved)
            if not m.any():  # a region whose SPECT voxels hold no fine voxel centre: the SPECT voxels themselves
                m = np.kron(_mask, np.ones((f, f, f), bool)).astype(bool)
            act[m] += pct / 100.0 * counts_per_id / m.sum()
        mu = mu_from_hu(ct_from_materials(mat_f))
        image, info = acquire(act, mu, fsp, self.camera, seed=[self.seed, 0x5245, n])
        info["counts_expected_unattenuated"] = float(act.sum())
        return image, info

    # ------------------------------------------------------------ study truth
    def study_truth(self) -> dict:
        from .._version import __version__

        g_sp = self.spect_grid if not self.negative else _flip_k(self.spect_grid)
        return {
            "format": "spectrack-phantom-truth",
            "format_version": 1,
            "generator": {"package": "spectrack", "version": __version__,
                          "function": "spectrack.phantom.make_study", "arguments": self.args,
                          "arguments_digest": self.digest},
            "preset": self.pre.name,
            "species": self.pre.species,
            "seed": self.seed,
            "subject_id": self.subject_id,
            "radionuclide": "Tc-99m",
            "half_life_h": self.half_life_h,
            "half_life_source": "DDEP 6.0067 h (spectrack.physics)",
            "decay_constant_per_h": self.lam,
            "injected_mbq": self.injected_mbq,
            "injection_datetime": self.injection.isoformat(),
            "sensitivity_cps_per_mbq": self.sensitivity,
            "units": "counts" if self.units == "counts" else "Bq/mL",
            "value_definition": (
                "counts = A_start_voxel_MBq * S_cps_per_MBq * D_s / in_frame_factor(D)"
                if self.units == "counts" else
                "Bq/mL averaged over the acquisition = A_start_Bq / voxel_ml / in_frame_factor(D)"),
            "decay_correction": "NONE",
            "pct_id": "decay-corrected to the injection time unless named _uncorrected",
            "truth_basis": TRUTH_BASIS,
            "psf_fwhm_mm": self.psf,
            "noise": self.noise,
            "acquisition": self.acquisition,
            "negative_slice_step": self.negative,
            "ct_refine": self.ct_refine,
            "region_names": {str(k): v for k, v in self.names.items()},
            "groups": {k: list(v) for k, v in self.groups.items()},
            "spect_grid": _grid_json(g_sp),
            "ct_grid": _grid_json(self.ct_grid),
            "geometry": self.geometry,
            "kinetics": {
                "compartments": list(self.model),
                "rates_per_h": [[a, b, k] for (a, b), k in self.kinetics.rates_per_h.items()],
                "initial_fraction": self.kinetics.initial,
                "bladder_voids_h": list(self.kinetics.voids_h),
                "void_fraction": self.kinetics.void_fraction,
                "note": "illustrative rates tuned to the qualitative findings of REFERENCE.md section 1",
            },
            "timepoints": [],
        }


def _grid_json(img: Image) -> dict:
    return {"shape_ijk": list(img.shape_ijk), "origin_mm": img.origin_mm.tolist(),
            "spacing_mm": img.spacing_mm.tolist(), "direction": img.direction.tolist()}


# --------------------------------------------------------------- public API
def make_phantom(preset: str = "nhp", *, seed: int = 0, times_h=None, units: str = "counts",
                 psf_fwhm_mm: float = 0.0, noise: bool = False, motion=None, negative_slice_step: bool = False,
                 spect_shape=None, ct_refine: int = 1, subject_id: str | None = None, injection_datetime=None,
                 injected_mbq: float | None = None, sensitivity_cps_per_mbq: float | None = None,
                 frame_duration_s=None, jitter: float = 1.0, geometry: dict | None = None,
                 tracer_front_mm=None, half_life_h: float = TC99M_HALF_LIFE_H, acquisition: str = "exact",
                 camera=None, vertebrae: str = "continuous", intracranial_csf: bool = False) -> Phantom:
    """Build a phantom study in memory (no files).

    Parameters
    ----------
    preset : {'rat', 'nhp', 'human'}
        Species (see :data:`spectrack.phantom.PRESETS`).
    seed : int
        Drives the anatomy jitter, random motion, quantisation spreading,
        noise and (in :func:`make_study`) UIDs and file names.
    times_h : sequence of float, optional
        Scan start times after injection (h); the preset's by default
        (0.5, 1, 2, 4, 6, 24). Starts are rounded to whole seconds.
    units : {'counts', 'bqml'}
        Image values: integer counts (``A * S * D / in_frame_factor``), or Bq/mL
        averaged over the acquisition.
    psf_fwhm_mm : float
        Gaussian blur (FWHM, mm) of the written SPECT; 0 = none.
    noise : bool
        Poisson noise on the counts (and 10 HU Gaussian noise on the CT), from
        ``numpy.random.default_rng([seed, 0x6E6F, time_point])``.
    motion : None, 'random', sequence or dict
        Rigid motion of the subject per time point, ``(tx, ty, tz, rx, ry, rz)``
        in mm and degrees about the field-of-view centre (rotation
        ``Rz @ Ry @ Rx``), relative to time point 0. ``'random'`` draws up to 2
        voxels and 3 degrees from ``seed``.
    negative_slice_step : bool
        Store the SPECT with frames running toward the feet (negative
        ``SpacingBetweenSlices``; a negated third direction column).
    spect_shape : sequence of 3 int, optional
        SPECT voxels along x, y, z (i, j, k; the reverse of ``array.shape``);
        the field of view stays the preset's, so this sets the voxel size.
    ct_refine : int
        Odd factor (1 or 3) by which the CT grid refines the SPECT grid; every
        SPECT voxel centre is a CT voxel centre.
    subject_id : str, optional
        PatientID; ``phantom-<preset>-<seed>`` by default.
    injection_datetime : datetime or ISO str, optional
        Default 2026-03-14 21:40:00 (scans cross midnight).
    injected_mbq, sensitivity_cps_per_mbq : float, optional
        Injected activity and system sensitivity; preset defaults.
    frame_duration_s : float or sequence, optional
        Acquisition wall time per scan; preset default (900 s for the first
        two, 1800 s after).
    jitter : float
        Scale of the seed-driven anatomy jitter (0 = nominal anatomy).
    geometry : dict, optional
        Keys of the geometry dict to override (see
        :func:`spectrack.phantom.anatomy.make_geometry`).
    tracer_front_mm : float or sequence, optional
        Known tracer front: the brain and canal activity of the model is put
        uniformly in the canal from the injection level up to this arc length
        (mm) rostral of it, and nothing in the canal or brain beyond.
    half_life_h : float
        Tc-99m half-life used for decay (6.0067 h, DDEP).
    acquisition : {'exact', 'realistic'}
        ``'exact'``: the ideal image (optionally a Gaussian blur and Poisson
        noise per voxel): exact answers for the loaders and the arithmetic.
        ``'realistic'``: the activity drawn on a finer grid, projected with
        attenuation and a depth-dependent collimator response, Poisson noise
        on the projections, OSEM on the SPECT grid
        (:mod:`spectrack.phantom.acquisition`); the truth is the
        compartments' activity. For testing methods without an inverse crime.
    camera : Camera or dict, optional
        Settings of the realistic mode (:class:`spectrack.phantom.acquisition.Camera`).
    vertebrae : {'continuous', 'discrete'}
        ``'continuous'`` (default): one continuous bony arch and vertebral
        body. ``'discrete'``: separate vertebrae with the species' formula,
        intervertebral discs of soft tissue and arches open at each disc, the
        level boundaries on the L/S1, T/L1 and C7/T1 discs
        (:func:`spectrack.phantom.anatomy.discrete_spine`); the true vertebra
        and disc positions (body z and arc length) are in
        ``geometry["vertebrae"]`` (also in ``truth["geometry"]``). Both modes
        of acquisition draw it.
    intracranial_csf : bool
        Default False: ``brain`` holds the intracranial CSF (one compartment,
        brain HU). True: two lateral ventricles and a cisterna magna at the
        cranial end of the canal are drawn with CSF HU as region
        ``csf_intracranial`` (:func:`spectrack.phantom.anatomy.intracranial_csf_spaces`,
        ellipsoids in ``geometry["intracranial_csf"]``), with their own
        kinetic compartment fed by rostral CSF flow from the cervical canal and
        draining to the brain, blood and lymph nodes
        (``Preset.kinetics_intracranial_csf``); truth per time point as for
        every region, and the ``csf_space`` group. No random draw is used, so
        the rest of the phantom is the one without it.

    Returns
    -------
    Phantom
    """
    b = _Builder(preset, seed=seed, times_h=times_h, units=units, psf_fwhm_mm=psf_fwhm_mm, noise=noise,
                 motion=motion, negative_slice_step=negative_slice_step, spect_shape=spect_shape,
                 ct_refine=ct_refine, subject_id=subject_id, injection_datetime=injection_datetime,
                 injected_mbq=injected_mbq, sensitivity_cps_per_mbq=sensitivity_cps_per_mbq,
                 frame_duration_s=frame_duration_s, jitter=jitter, geometry=geometry,
                 tracer_front_mm=tracer_front_mm, half_life_h=half_life_h, acquisition=acquisition, camera=camera,
                 vertebrae=vertebrae, intracranial_csf=intracranial_csf)
    truth = b.study_truth()
    tps = []
    for n in range(len(b.times_h)):
        tp = b.timepoint(n)
        truth["timepoints"].append(tp.truth)
        tps.append(tp)
    return Phantom(b.pre.name, b.geometry, tps, truth, tps[0].labels_ct, dict(b.args))


#: Top-level entries :func:`make_study` writes (``spectrack phantom`` refuses to replace them unless it wrote them).
PHANTOM_OUTPUTS = ("dicom", "nifti", "labels.nii.gz", "labels.tsv", "truth", "truth.json", "spectrack.toml",
                   "removed.csv")


def make_study(out_dir, preset: str = "nhp", *, seed: int = 0, times_h=None, units: str = "counts",
               formats=("dicom", "nifti"), psf_fwhm_mm: float = 0.0, noise: bool = False, motion=None,
               negative_slice_step: bool = False, spect_shape=None, ct_refine: int = 1,
               subject_id: str | None = None, injection_datetime=None, injected_mbq: float | None = None,
               sensitivity_cps_per_mbq: float | None = None, frame_duration_s=None, jitter: float = 1.0,
               geometry: dict | None = None, tracer_front_mm=None,
               half_life_h: float = TC99M_HALF_LIFE_H, acquisition: str = "exact", camera=None,
               study_file: bool = False, vertebrae: str = "continuous", intracranial_csf: bool = False) -> dict:
    """Write a phantom study (DICOM and/or NIfTI, labels, truth) and return its truth.

    Parameters are those of :func:`make_phantom`, plus

    out_dir : path-like
        Folder to write (created; files of an earlier run are overwritten).
    formats : sequence of {'dicom', 'nifti'}
        What to write.
    study_file : bool
        Also write ``spectrack.toml`` (see :func:`study_file_text`), so that
        ``spectrack quantify OUT`` needs no option.

    Notes
    -----
    Files written:

    ``dicom/``
        One flat folder, random hex file names: per time point a CT series
        (one file per slice) and one NM multi-frame reconstructed SPECT.
    ``nifti/``
        ``tp{N}_spect.nii.gz`` + ``.json`` (PET-BIDS keys), ``tp{N}_ct.nii.gz``
        + ``.json``, ``scans.tsv``, ``labels.nii.gz`` + ``labels.tsv``.
    ``labels.nii.gz`` + ``labels.tsv``
        Time point 0 labels on its CT grid.
    ``truth/tp{N}_labels.nii.gz`` + ``.tsv``
        Each time point's labels on its own SPECT grid (moved anatomy).
    ``truth.json``
        Everything exact (see :data:`TRUTH_BASIS`).
    ``spectrack.toml``
        With ``study_file``: the images to read and what they do not say
        (labels, calibration and sensitivity, species, PSF).

    Returns
    -------
    dict
        The content of ``truth.json``.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     truth = make_study(d, "rat", times_h=[1.0], spect_shape=(24, 20, 66), formats=("nifti",))
    >>> round(truth["timepoints"][0]["total_pct_id"], 3)
    100.0
    """
    from ..io_utils import atomic_write_text
    from ..regions.labels import write_label_map
    from .dicom_writer import DicomNames, write_ct_series, write_nm_spect
    from .nifti_writer import write_nifti_timepoint, write_scans_tsv

    formats = tuple(formats)
    for f in formats:
        if f not in ("dicom", "nifti"):
            raise ValueError(f"unknown format {f!r}; use 'dicom' and/or 'nifti'")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    b = _Builder(preset, seed=seed, times_h=times_h, units=units, psf_fwhm_mm=psf_fwhm_mm, noise=noise,
                 motion=motion, negative_slice_step=negative_slice_step, spect_shape=spect_shape,
                 ct_refine=ct_refine, subject_id=subject_id, injection_datetime=injection_datetime,
                 injected_mbq=injected_mbq, sensitivity_cps_per_mbq=sensitivity_cps_per_mbq,
                 frame_duration_s=frame_duration_s, jitter=jitter, geometry=geometry,
                 tracer_front_mm=tracer_front_mm, half_life_h=half_life_h, acquisition=acquisition, camera=camera,
                 vertebrae=vertebrae, intracranial_csf=intracranial_csf)
    truth = b.study_truth()
    names = DicomNames(b) if "dicom" in formats else None
    scans = []
    files: dict = {"labels": "labels.nii.gz", "labels_names": "labels.tsv"}
    for n in range(len(b.times_h)):
        tp = b.timepoint(n)
        tfiles = {}
        if "dicom" in formats:
            tfiles["dicom_ct"] = write_ct_series(out / "dicom", tp, b, names)
            tfiles["dicom_spect"] = write_nm_spect(out / "dicom", tp, b, names)
        if "nifti" in formats:
            tfiles.update(write_nifti_timepoint(out / "nifti", tp, b))
            scans.append((f"tp{n}_spect.nii.gz", tp.acquisition_start))
            scans.append((f"tp{n}_ct.nii.gz", tp.acquisition_start + dt.timedelta(seconds=tp.duration_s + 60)))
        tl = out / "truth" / f"tp{n}_labels.nii.gz"
        write_label_map(tp.labels_spect, tl)
        tfiles["truth_labels_spect"] = f"truth/tp{n}_labels.nii.gz"
        if b.psf > 0 or b.noise:
            from .nifti_writer import write_image

            write_image(out / "truth" / f"tp{n}_spect_ideal.nii.gz", tp.spect_ideal, np.float32)
            tfiles["truth_spect_ideal"] = f"truth/tp{n}_spect_ideal.nii.gz"
        tp.truth["files"] = tfiles
        truth["timepoints"].append(tp.truth)
        if n == 0:
            write_label_map(tp.labels_ct, out / "labels.nii.gz")
            if "nifti" in formats:
                write_label_map(tp.labels_ct, out / "nifti" / "labels.nii.gz")
        del tp
    if "nifti" in formats:
        write_scans_tsv(out / "nifti" / "scans.tsv", scans)
        files["nifti"] = "nifti/"
    if "dicom" in formats:
        files["dicom"] = "dicom/"
        files["dicom_files"] = names.count
    voids = _collected_urine(b, truth)
    if voids:
        atomic_write_text(out / "removed.csv", voids)
        files["removed"] = "removed.csv"
    if study_file:
        atomic_write_text(out / "spectrack.toml", study_file_text(b, formats, removed=bool(voids)))
        files["study_file"] = "spectrack.toml"
    truth["files"] = files
    atomic_write_text(out / "truth.json", json.dumps(truth, indent=1, allow_nan=False) + "\n")
    return truth


def _collected_urine(b: "_Builder", truth: dict) -> str:
    """``removed.csv`` of a phantom: the urine of each bladder void up to the last scan, as if collected.

    Activities are physical (MBq when collected and measured, ``measured_h`` = ``time_h``), so the file reads
    like a metabolic cage's record; empty when no void precedes the last scan.
    """
    from .kinetics_model import voided_pct_id

    last = max(b.times_h) if len(b.times_h) else 0.0
    lam = math.log(2) / float(truth["half_life_h"])
    rows = [(t, p) for t, p in voided_pct_id(b.kinetics) if t <= last]
    if not rows:
        return ""
    lines = ["kind,time_h,activity_mbq,measured_h,note"]
    for t, p in rows:
        a = p / 100.0 * float(truth["injected_mbq"]) * math.exp(-lam * t)
        lines.append(f"urine,{t!r},{a!r},{t!r},bladder void (phantom truth: {p:.6g} %ID decay-corrected)")
    return "\n".join(lines) + "\n"


def study_file_text(b: "_Builder", formats, *, removed: bool = False) -> str:
    """The ``spectrack.toml`` of a phantom study: what its images do not say.

    Its keys are settings-file keys (``spectrack quantify --help``) plus
    ``images``: the DICOM export when written (``nifti/`` holds the same scans),
    else ``nifti``.
    """
    images = "dicom" if "dicom" in formats else "nifti"
    other = " (nifti/ holds the same scans as NIfTI)" if images == "dicom" and "nifti" in formats else ""
    lines = [
        "# spectrack study file: what the images of this study do not say. spectrack quantify, batch and",
        "# run_study read it when given this folder; options on the command line override it.",
        "# Keys are those of a settings file (spectrack quantify --help).",
        f'images = "{images}"' + f"  # the images to read{other}",
        'labels = "labels.nii.gz"  # region names in labels.tsv',
    ]
    if b.units == "counts":
        lines += ['calibration = "sensitivity"',
                  f"sensitivity = {b.sensitivity!r}  # cps/MBq: the system volume sensitivity of the counts"]
    else:
        lines += ['calibration = "image"  # the images hold Bq/mL']
    lines.append(f'species = "{b.pre.name}"')
    if b.psf > 0:
        lines.append(f"psf_fwhm_mm = {b.psf!r}  # reconstructed resolution, for --pvc")
    if removed:
        lines.append('removed = "removed.csv"  # urine collected at each bladder void: closes the mass balance')
    if any(m is not None for m in b.motion):
        lines.append("register = true  # the subject moves between scans; the labels are on time point 0")
    return "\n".join(lines) + "\n"
