"""Region boundary moves for the %ID intervals: exact against label maps changed and recomputed from scratch."""

import numpy as np
import pytest
from scipy import ndimage, optimize

from spectrack.quantification.boundary import boundary_effects, boundary_factors, boundary_moves, moved_transfer
from spectrack.quantification.recovery import gtm_matrix

SPACING = (2.0, 2.0, 2.0)
FWHM = 5.0
SIGMA = np.full(3, FWHM / (2 * np.sqrt(2 * np.log(2))) / 2.0)   # voxels


@pytest.fixture(scope="module")
def scene():
    """Three touching regions in a labelled body, with unlabelled air around: an image blurred from them."""
    lab = np.zeros((18, 20, 22), np.int16)
    lab[2:16, 2:18, 2:20] = 4                   # body (the remainder)
    lab[4:10, 4:12, 4:11] = 1                   # touches region 2
    lab[4:10, 4:12, 11:17] = 2
    lab[11:14, 8:10, 5:18] = 3                  # a thin rod, two voxels across
    conc = {1: 50.0, 2: 20.0, 3: 200.0, 4: 5.0}
    act = np.zeros(lab.shape)
    for k, c in conc.items():
        act[lab == k] = c
    img = ndimage.gaussian_filter(act, SIGMA, mode="constant")
    return lab, img, [1, 2, 3, 4]


def _apply(lab, coords, new):
    out = lab.copy()
    out[coords] = new
    return out


def test_moves_grow_into_the_ring_and_shrink_to_the_neighbour(scene):
    lab, _, _ = scene
    coords, old, new = boundary_moves(lab, 1, grow=True)
    grown = _apply(lab, coords, new)
    assert np.array_equal(grown == 1, ndimage.binary_dilation(lab == 1, ndimage.generate_binary_structure(3, 1)))
    assert set(old.tolist()) == {2, 4}          # taken from the neighbour and from the body
    coords, old, new = boundary_moves(lab, 1, grow=False)
    shrunk = _apply(lab, coords, new)
    assert np.array_equal(shrunk == 1, ndimage.binary_erosion(lab == 1, ndimage.generate_binary_structure(3, 1)))
    assert set(new.tolist()) <= {2, 4}
    # the face touching region 2 goes to region 2 (its only other neighbour), the face on the body to the body;
    # on the face's rim, where the body is a neighbour too, the one with more votes wins (a tie: the lower label)
    face = (coords[2] == 10) & np.isin(coords[1], range(5, 11)) & np.isin(coords[0], range(5, 9))
    corner = (coords[2] == 10) & np.isin(coords[1], (4, 11)) & np.isin(coords[0], (4, 9))
    rim = (coords[2] == 10) & ~face & ~corner
    assert (new[face] == 2).all() and (new[rim] == 2).all() and (new[corner] == 4).all()
    assert (new[coords[2] == 4] == 4).all()
    # a rod two voxels across: every voxel is on its edge, an erosion removes it
    coords, old, new = boundary_moves(lab, 3, grow=False)
    assert not (_apply(lab, coords, new) == 3).any()


def test_updated_transfer_matrix_equals_the_one_recomputed_from_scratch(scene):
    lab, _, ids = scene
    W0, _, n0 = gtm_matrix(lab, SPACING, FWHM, label_ids=ids)
    lut = np.full(lab.max() + 1, -1)
    lut[ids] = np.arange(len(ids))
    idx = lut[lab]
    for lid in ids:
        for grow in (False, True):
            coords, old, new = boundary_moves(lab, lid, grow=grow)
            po, pn = lut[old], lut[new]
            W, n_new = moved_transfer(W0 * n0[:, None], n0, idx, coords, po, pn, SIGMA)
            moved = _apply(lab, coords, new)
            present = [i for i in ids if (moved == i).any()]
            W_ref, _, n_ref = gtm_matrix(moved, SPACING, FWHM, label_ids=present)
            keep = np.isin(ids, present)
            assert np.array_equal(n_new[keep], n_ref) and (n_new[~keep] == 0).all()
            np.testing.assert_allclose(W[np.ix_(keep, keep)], W_ref, rtol=1e-10, atol=1e-12)


def test_effects_are_the_moved_label_maps_sums_and_gtm(scene):
    lab, img, ids = scene
    W0, _, n0 = gtm_matrix(lab, SPACING, FWHM, label_ids=ids)
    o0 = ndimage.sum_labels(img, lab, index=ids)
    t0 = optimize.nnls(W0, o0 / n0)[0]
    eff = boundary_effects(img, lab, ids, transfer=(W0, n0, t0), sigma=SIGMA)
    for r, lid in enumerate(ids):
        for grow, sums, corr in ((False, eff.sums_eroded, eff.corrected_eroded),
                                 (True, eff.sums_dilated, eff.corrected_dilated)):
            moved = _apply(lab, *boundary_moves(lab, lid, grow=grow)[::2])
            o = ndimage.sum_labels(img, moved, index=ids)
            np.testing.assert_allclose(sums[r], np.where(o0 > 0, o / o0, 1.0), rtol=1e-12)
            present = [i for i in ids if (moved == i).any()]
            if lid not in present:       # the rod eroded away: mirrored from its dilation
                assert lid == 3 and not grow
                np.testing.assert_allclose(corr[r], np.clip(2 - eff.corrected_dilated[r], 0, None))
                continue
            W, _, n = gtm_matrix(moved, SPACING, FWHM, label_ids=present)
            t = optimize.nnls(W, ndimage.sum_labels(img, moved, index=present) / n)[0]
            content = np.zeros(len(ids))
            content[np.isin(ids, present)] = t * n
            np.testing.assert_allclose(corr[r], content / (t0 * n0), rtol=1e-8, atol=1e-12)
    # what a region gains its neighbours lose: a dilation of region 1 moves counts out of 2 and 4 only
    gained = o0[0] * (eff.sums_dilated[0, 0] - 1)
    lost = -(o0 * (eff.sums_dilated[0] - 1))[1:].sum()
    assert gained == pytest.approx(lost, rel=1e-12) and eff.sums_dilated[0, 2] == 1.0
    # the image is the blurred truth: the nominal GTM recovers the concentrations, the moves bias them
    assert t0 == pytest.approx([50, 20, 200, 5], rel=1e-6)
    assert eff.corrected_dilated[2, 2] > 1.2 and eff.corrected_dilated[2, 3] < 1.0


def test_without_blur_the_corrected_effects_are_the_sums():
    lab = np.zeros((8, 8, 8), np.int16)
    lab[1:7, 1:7, 1:7] = 2
    lab[2:5, 2:5, 2:5] = 1
    img = np.where(lab == 1, 10.0, np.where(lab == 2, 1.0, 0.0))
    ids = [1, 2]
    W0, _, n0 = gtm_matrix(lab, SPACING, 0.0, label_ids=ids)
    t0 = ndimage.sum_labels(img, lab, index=ids) / n0
    eff = boundary_effects(img, lab, ids, transfer=(W0, n0, t0), sigma=np.zeros(3))
    np.testing.assert_allclose(eff.corrected_dilated, eff.sums_dilated, rtol=1e-10)
    np.testing.assert_allclose(eff.corrected_eroded, eff.sums_eroded, rtol=1e-10)


def test_factors_are_linear_in_each_shift_and_add_over_regions():
    ero = np.array([[0.6, 1.1], [1.3, 0.7]])
    dil = np.array([[1.4, 0.9], [0.8, 1.2]])
    u = np.array([[0.5, 0.0], [0.0, -0.25], [0.5, -0.25], [-3.0, 0.0]])
    f = boundary_factors(u, ero, dil)
    np.testing.assert_allclose(f[0], [1 + 0.5 * 0.4, 1 - 0.5 * 0.1])
    np.testing.assert_allclose(f[1], [1 + 0.25 * 0.3, 1 - 0.25 * 0.3])
    np.testing.assert_allclose(f[2], f[0] + f[1] - 1)
    assert f[3, 0] == 0.0                       # never negative
