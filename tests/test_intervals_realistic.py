"""%ID intervals on the realistic mode: coverage where the method does not agree with itself.

The exact phantom's coverage tests (tests/test_uncertainty.py) blur with the
Gaussian the GTM inverts and add the gamma/Poisson noise the draws assume.
Here every replicate is made as a camera makes it and analysed as a user
would, so that the intervals are checked against causes they do not model:

* anatomy unlike the presets (a torso with a liver, a kidney, a thin
  posterior rod standing for the spinal canal and a cap standing for the
  brain), drawn on a grid twice as fine as the SPECT's, shifted by up to
  half a voxel and scaled by 5 % at random in each replicate;
* projection with attenuation and a depth-dependent collimator response
  whose width varies by 10 % (SD) between replicates, Poisson noise on the
  projections, OSEM (:mod:`spectrack.phantom.acquisition`);
* a calibration error of 2.7 % (SD) per replicate;
* region boundaries moved by N(0, 1 mm) per region and replicate before the
  labels are voxelised on the SPECT grid (a segmentation's error).

The user's side of the analysis only knows what a physicist measures: the
noise factor from 20 replicate reconstructions of the nominal object, the
FWHM from a point source in water, and the stated SDs (FWHM 10 %, the
pipeline's default for a measured resolution; boundary 1 mm and the voxel's own; calibration
2.7 %). Truth is each compartment's content, exact by construction.

The boundary term is what this test found wanting. Moving one region's mask
while its neighbours kept theirs gave 72-89 % coverage (the tissue around the
regions, which loses what they gain, had an interval 10 times too narrow);
moving each region's whole boundary with its own shift moved an interface
between two regions twice. :mod:`spectrack.quantification.boundary` shifts
each interface once, moving its voxels between the two sides. The analysis
states the boundary SD of the labels it is given: the segmentation's 1 mm
and the SPECT voxel's own (voxel / sqrt(12), the pipeline's default), in
quadrature. Stating the segmentation's 1 mm alone gave 88-94 % (voxelising a
shifted anatomy is an error too: labels voxelised from the true anatomy and
analysed with a boundary SD of 0 held the brain's truth 88 % of the time).
"""

import math

import numpy as np
import pandas as pd
from scipy import ndimage

from spectrack.geometry import Image
from spectrack.quantification.intervals import add_pct_id_intervals, noise_factor_from_replicates
from spectrack.quantification.recovery_table import add_gtm_correction
from spectrack.quantification.resolution import measure_fwhm
from spectrack.phantom.acquisition import (
    MU_WATER_PER_MM,
    Camera,
    _bin,
    _pad_square,
    osem,
    point_source_image,
    project,
)
from spectrack.regions.labelmap import LabelMap

FINE, VOXEL_MM = 2, 4.2
SHAPE_KJI = (16, 28, 28)
PCT_ID = {1: 10.0, 2: 30.0, 3: 25.0, 4: 5.0, 5: 30.0}     # the truth, %ID per compartment
NAMES = {1: "brain", 2: "canal", 3: "liver", 4: "kidney", 5: "remainder"}
COUNTS_PER_PCT_ID = 2e4                                    # expected unattenuated counts per %ID
CAMERA = Camera(n_views=48, subsets=6, iterations=4)
N_REPLICATES = 200
FWHM_REL_SD, BOUNDARY_SD_MM, CALIBRATION_CV = 0.10, 1.0, 0.027
#: what the analysis states: the segmentation's 1 mm and the SPECT voxel's own (voxel / sqrt(12)), in quadrature
STATED_BOUNDARY_SD_MM = math.hypot(BOUNDARY_SD_MM, VOXEL_MM / math.sqrt(12.0))


def _compartments(x, y, z, grow_mm):
    """Compartment index of each point; ``grow_mm[k]`` moves compartment k's surface outwards."""
    g = grow_mm
    comp = np.zeros(x.shape, np.int16)
    comp[(x / (50 + g[5])) ** 2 + (y / (40 + g[5])) ** 2 <= 1] = 5
    comp[((x + 12) / (22 + g[3])) ** 2 + ((y + 5) / (18 + g[3])) ** 2 + ((z + 12) / (16 + g[3])) ** 2 <= 1] = 3
    comp[((x - 22) / (8 + g[4])) ** 2 + ((y - 8) / (6 + g[4])) ** 2 + (z / (14 + g[4])) ** 2 <= 1] = 4
    comp[(x ** 2 + (y - 26) ** 2 <= (3.5 + g[2]) ** 2) & (np.abs(z) < 30 + g[2])] = 2
    comp[(x / (24 + g[1])) ** 2 + (y / (22 + g[1])) ** 2 + ((z - 24) / (12 + g[1])) ** 2 <= 1] = 1
    return comp


def _voxelise(comp):
    """Labels on the SPECT grid: the compartment holding most of each voxel's fine points (air: 0)."""
    nk, nj, ni = SHAPE_KJI
    f = FINE
    blocks = comp.reshape(nk, f, nj, f, ni, f).transpose(0, 2, 4, 1, 3, 5).reshape(nk, nj, ni, -1)
    votes = np.stack([(blocks == k).sum(-1) for k in range(6)])
    lab = votes[1:].argmax(axis=0).astype(np.int16) + 1
    lab[votes[0] > votes[1:].max(axis=0)] = 0
    return lab


def _object(rng=None):
    """(activity and mu on the fine grid, true labels, segmented labels) of one replicate."""
    shift = np.zeros(3) if rng is None else rng.uniform(-VOXEL_MM / 2, VOXEL_MM / 2, 3)
    scale = 1.0 if rng is None else 1.0 + 0.05 * rng.standard_normal()
    fine = tuple(n * FINE for n in SHAPE_KJI)
    z, y, x = np.meshgrid(*[((np.arange(n) - (n - 1) / 2) * VOXEL_MM / FINE - s) / scale
                            for n, s in zip(fine, shift[::-1])], indexing="ij")
    comp = _compartments(x, y, z, dict.fromkeys(PCT_ID, 0.0))
    act = np.zeros(fine)
    for k, pct in PCT_ID.items():
        act[comp == k] = pct * COUNTS_PER_PCT_ID / np.count_nonzero(comp == k)
    mu = np.where(comp > 0, MU_WATER_PER_MM, 0.0)
    grown = comp if rng is None else _compartments(
        x, y, z, {k: BOUNDARY_SD_MM * rng.standard_normal() / scale for k in PCT_ID})
    return act, mu, _voxelise(comp), _voxelise(grown)


class _Camera:
    """The realistic acquisition of one object, with the collimator response scaled by ``blur_scale``."""

    def __init__(self):
        nk, nj, ni = SHAPE_KJI
        self.radius_mm = 0.5 * math.hypot(ni * VOXEL_MM, nj * VOXEL_MM) + 10.0
        self.angles = np.arange(CAMERA.n_views) * 360.0 / CAMERA.n_views
        _, pads = _pad_square(np.zeros((1, nj, ni)))
        self.pads_fine = tuple((a * FINE, b * FINE) for a, b in pads)

    def image(self, act, mu, rng, blur_scale=1.0):
        cam = Camera(**dict(CAMERA.to_json(), fwhm_face_mm=CAMERA.fwhm_face_mm * blur_scale,
                            fwhm_slope=CAMERA.fwhm_slope * blur_scale))
        a_p = _pad_square(act.astype(np.float32), self.pads_fine)[0]
        m_p = _pad_square(mu.astype(np.float32), self.pads_fine)[0]
        expected = _bin(project(a_p, m_p, (VOXEL_MM / FINE,) * 3, cam, self.angles, radius_mm=self.radius_mm,
                                blur=True, _padded=True), FINE)
        nk, nj, ni = SHAPE_KJI
        mu_c = mu.reshape(nk, FINE, nj, FINE, ni, FINE).mean(axis=(1, 3, 5))
        measured = rng.poisson(np.clip(expected, 0, None)).astype(float)
        return osem(measured, mu_c, (VOXEL_MM,) * 3, CAMERA, self.angles, radius_mm=self.radius_mm)


def _grid_image(arr, units="counts"):
    nk, nj, ni = SHAPE_KJI
    origin = -VOXEL_MM * (np.array([ni, nj, nk]) - 1) / 2
    return Image(np.asarray(arr), origin_mm=origin, spacing_mm=(VOXEL_MM,) * 3, units=units)


def _intervals(arr, lab, calibration, *, fwhm_mm, noise_factor, boundary_sd_mm, seed):
    """The table a quantification gives for one image and label map, with GTM and intervals."""
    ids = sorted(NAMES)
    sums = ndimage.sum_labels(arr, lab, index=ids)
    pct = [s * calibration / COUNTS_PER_PCT_ID for s in sums]
    rows = [dict(subject="s", timepoint=0, time_h=1.0, region=NAMES[i], label=i, kind="region",
                 volume_ml=np.count_nonzero(lab == i) * VOXEL_MM ** 3 / 1000, activity_mbq=p, pct_id=p,
                 pct_id_uncorrected=p) for i, p in zip(ids, pct)]
    img = _grid_image(arr.astype(np.float32))
    lm = LabelMap(_grid_image(lab, "label"), NAMES)
    table = add_gtm_correction(pd.DataFrame(rows), [img], [lm], fwhm_mm)
    return add_pct_id_intervals(table, [img], [lm], fwhm_mm=fwhm_mm, fwhm_sd_mm=FWHM_REL_SD * fwhm_mm,
                                segmentation_sd_mm=boundary_sd_mm, calibration_cv=CALIBRATION_CV,
                                noise_factor=noise_factor, n_draws=400, seed=seed)


def test_pvc_intervals_cover_the_truth_on_camera_images_with_segmentation_error():
    """200 replicates: the 95 % intervals on the corrected %ID hold the truth 90-99 % of the time in every
    region (all hold >= 5 %ID), and stay within 0-100 %ID."""
    rng = np.random.default_rng(2027)
    camera = _Camera()
    # the physicist's measurements: replicate scans of the nominal object, a point source in water
    act, mu, lab_nominal, _ = _object()
    noise = noise_factor_from_replicates([camera.image(act, mu, rng) for _ in range(20)], lab_nominal)
    point = point_source_image((VOXEL_MM,) * 3, CAMERA, radius_mm=camera.radius_mm, water_radius_mm=50.0, seed=7)
    fwhm = float(np.mean(measure_fwhm(point)["fwhm_mm"]))
    assert 5.0 < fwhm < 9.0 and noise["noise_factor"] > 2.0   # OSEM is far from Poisson in a region's sum

    hits = {n: [] for n in NAMES.values()}
    lost = 0
    for rep in range(N_REPLICATES):
        act, mu, _, lab = _object(rng)
        arr = camera.image(act, mu, rng, blur_scale=1.0 + FWHM_REL_SD * rng.standard_normal())
        calibration = 1.0 + CALIBRATION_CV * rng.standard_normal()
        out = _intervals(arr, lab, calibration, fwhm_mm=fwhm, noise_factor=noise["noise_factor"],
                         boundary_sd_mm=STATED_BOUNDARY_SD_MM, seed=rep)
        for r in out.itertuples():
            if not (lab == r.label).any():   # the segmentation lost the region: no value, no interval
                assert math.isnan(r.pct_id_pvc_lo) and "not found" in r.interval_method
                lost += 1
                continue
            assert 0 <= r.pct_id_pvc_lo <= r.pct_id_pvc <= r.pct_id_pvc_hi <= 100, (rep, r)
            hits[r.region].append(r.pct_id_pvc_lo <= PCT_ID[r.label] <= r.pct_id_pvc_hi)
    cover = {n: round(float(np.mean(h)), 3) for n, h in hits.items()}
    print("coverage", cover, "regions lost by the segmentation", lost)
    # only the thin rod can vanish (its radius, 3.5 mm, shrunk by more than about 1.5 mm): rarely
    assert lost <= 0.05 * N_REPLICATES
    assert all(0.90 <= c <= 0.99 for c in cover.values()), cover
