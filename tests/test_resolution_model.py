"""The image-resolution model of ``image_fwhm_mm`` computed in bounding boxes (issue 16) equals the whole-grid
computation to the bit: the same blurred matrix, fit and residual, so the same FWHM."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage, optimize

from spectrack.geometry import Image
from spectrack.quantification.resolution import _RegionModel, image_fwhm_mm

_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def _whole_grid_residual(image, lab, ids, spacing_mm, fwhm_mm, fov):
    """The model as first written: every region's indicator blurred on the whole grid."""
    sigma = fwhm_mm * _TO_SIGMA / np.asarray(spacing_mm, float)[::-1]
    blurred = [ndimage.gaussian_filter((lab == i).astype(np.float64), sigma, mode="constant", truncate=3.0)
               for i in ids]
    A = np.stack([b[fov] for b in blurred], axis=1)
    t, _ = optimize.nnls(A, image[fov])
    res = image[fov] - A @ t
    return float(res @ res)


def _phantom(seed=4):
    rng = np.random.default_rng(seed)
    shape = (30, 34, 38)
    lab = np.zeros(shape, np.int32)
    lab[2:28, 3:31, 2:36] = 1                     # body, near the grid's edges
    lab[5:12, 6:15, 4:14] = 2                     # organ
    lab[14:27, 16:19, 17:20] = 3                  # thin tube
    lab[0:4, 0:5, 30:38] = 4                      # touching three faces of the grid
    lab[20:24, 25:30, 5:9] = 7                    # a gap in the label values
    act = {1: 1.0, 2: 8.0, 3: 20.0, 4: 3.0, 7: 12.0}
    img = np.zeros(shape)
    for k, v in act.items():
        img[lab == k] = v
    img = ndimage.gaussian_filter(img, (1.3, 1.1, 0.9)) + rng.normal(0, 0.05, shape)
    return img, lab


@pytest.mark.parametrize("fwhm_mm", [2.0, 5.5, 9.0, 17.0, 30.0])
def test_boxed_model_equals_whole_grid_to_the_bit(fwhm_mm):
    img, lab = _phantom()
    spacing = (2.0, 2.5, 3.0)  # i, j, k
    ids = [1, 2, 3, 4, 7]
    fov = ndimage.binary_dilation((lab > 0) | (img > 0.01 * img.max()), iterations=3)
    want = _whole_grid_residual(img, lab, ids, spacing, fwhm_mm, fov)
    got = _RegionModel(img, lab, ids, spacing, fov).residual(fwhm_mm)
    assert got == want  # exact: same taps, same order


def test_image_fwhm_finds_the_blur_it_was_given():
    """The measured FWHM is the one the phantom was blurred with (known truth), within the search tolerance."""
    shape = (40, 40, 40)
    lab = np.zeros(shape, np.int32)
    lab[4:36, 4:36, 4:36] = 1
    lab[10:20, 10:22, 12:20] = 2
    lab[24:32, 14:18, 8:30] = 3
    img = np.zeros(shape)
    for k, v in {1: 1.0, 2: 10.0, 3: 25.0}.items():
        img[lab == k] = v
    spacing = 3.0
    fwhm = 12.0
    img = ndimage.gaussian_filter(img, fwhm * _TO_SIGMA / spacing, mode="constant", truncate=3.0)
    im = Image(img, (0.0, 0.0, 0.0), (spacing,) * 3, np.eye(3))
    got = image_fwhm_mm(im, lab)["fwhm_mm"]
    assert got == pytest.approx(fwhm, abs=0.15)
