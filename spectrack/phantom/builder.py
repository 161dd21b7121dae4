"""The phantom builder: the checked settings of one phantom study, its anatomy per pose, the images, labels and
truth of each time point (exact or through a simulated camera), and the study's part of ``truth.json``."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np

from ..geometry import Image
from ..physics import decay_constant_per_h, in_frame_factor
from ..regions.labelmap import LabelMap
from ..regions.vocabulary import CANAL_LEVELS, GROUPS, INDEX
from .anatomy import (canal_arclength_mm, canal_centreline, ct_from_materials, make_geometry, motion_matrix,
                      pose_matrix, rasterize, region_names)
from .kinetics_model import simulate_pct_id
from .model import TC99M_HALF_LIFE_H, TRUTH_BASIS, UINT16_MAX, PhantomTimePoint
from .options import _args_digest, _grid, _parse_datetime, _parse_motion, _per_timepoint, rotation_frames
from .presets import PRESETS, Preset


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


def _flip_k(img: Image, array=None) -> Image:
    """The same voxels with the slice axis reversed (negative slice step)."""
    arr = img.array if array is None else array
    n = arr.shape[0]
    origin = img.index_to_world_mm([0, 0, n - 1])
    d = img.direction.copy()
    d[:, 2] *= -1
    d += 0.0  # no negative zeros in JSON
    return Image(np.ascontiguousarray(arr[::-1]), origin, img.spacing_mm, d, units=img.units, meta=dict(img.meta))


class _Builder:
    """One phantom study's checked settings, and the maker of its time points and truth (the arguments are
    those of :func:`spectrack.phantom.make_phantom`)."""

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
