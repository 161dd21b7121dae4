"""Interface moves for the %ID intervals: exact against label maps changed and recomputed from scratch."""

import numpy as np
import pytest
from scipy import ndimage, optimize

from spectrack.quantification.boundary import boundary_effects, boundary_factors, moved_transfer
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


def _changes(lab, ids):
    """(interface, direction, coords, old label, new label) of every one-voxel interface move."""
    from spectrack.quantification.boundary import interface_moves

    for a, b, into_b, into_a in interface_moves(lab, ids):
        yield (a, b), 0, into_b, b, a
        yield (a, b), 1, into_a, a, b


def test_interfaces_and_the_voxels_that_change_sides(scene):
    from spectrack.quantification.boundary import interface_moves

    lab, _, ids = scene
    moves = {(a, b): (into_b, into_a) for a, b, into_b, into_a in interface_moves(lab, ids)}
    assert sorted(moves) == [(1, 2), (1, 4), (2, 4), (3, 4), (4, 0)]   # 1 and 2 touch; the body touches air
    into_b, into_a = moves[(1, 2)]
    assert (lab[into_b] == 2).all() and set(into_b[2].tolist()) == {11} and into_b[0].size == 6 * 8
    assert (lab[into_a] == 1).all() and set(into_a[2].tolist()) == {10} and into_a[0].size == 6 * 8
    # the body's outline: air voxels touching it, and its own voxels touching air
    into_b, into_a = moves[(4, 0)]
    s6 = ndimage.generate_binary_structure(3, 1)
    body = lab > 0
    assert np.array_equal(_apply(np.zeros_like(lab), into_b, 1) > 0, ndimage.binary_dilation(body, s6) & ~body)
    assert np.array_equal(_apply(np.zeros_like(lab), into_a, 1) > 0, body & ~ndimage.binary_erosion(body, s6))
    # the rod is two voxels across: moving its interface inwards takes all of it
    into_b, into_a = moves[(3, 4)]
    assert not (_apply(lab, into_a, 4) == 3).any()


def test_updated_transfer_matrix_equals_the_one_recomputed_from_scratch(scene):
    lab, _, ids = scene
    W0, _, n0 = gtm_matrix(lab, SPACING, FWHM, label_ids=ids)
    lut = np.full(lab.max() + 1, -1)
    lut[ids] = np.arange(len(ids))
    idx = lut[lab]
    for _, _, coords, old, new in _changes(lab, ids):
        W, n_new = moved_transfer(W0 * n0[:, None], n0, idx, coords, int(lut[old]), int(lut[new]), SIGMA)
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
    rows = {pair: i for i, pair in enumerate(eff.interfaces)}
    for pair, direction, coords, old, new in _changes(lab, ids):
        i = rows[pair]
        sums = (eff.sums_toward_b, eff.sums_toward_a)[direction][i]
        corr = (eff.corrected_toward_b, eff.corrected_toward_a)[direction][i]
        moved = _apply(lab, coords, new)
        o = ndimage.sum_labels(img, moved, index=ids)
        np.testing.assert_allclose(sums, np.where(o0 > 0, o / o0, 1.0), rtol=1e-12)
        present = [k for k in ids if (moved == k).any()]
        if old != 0 and old not in present:   # the rod taken by the body: mirrored from the other direction
            assert pair == (3, 4) and direction == 1
            np.testing.assert_allclose(corr, np.clip(2 - eff.corrected_toward_b[i], 0, None))
            continue
        W, _, n = gtm_matrix(moved, SPACING, FWHM, label_ids=present)
        t = optimize.nnls(W, ndimage.sum_labels(img, moved, index=present) / n)[0]
        content = np.zeros(len(ids))
        content[np.isin(ids, present)] = t * n
        np.testing.assert_allclose(corr, content / (t0 * n0), rtol=1e-8, atol=1e-12)
        # between two regions, what one gains the other loses
        if 0 not in pair:
            assert float(np.sum(o0 * (sums - 1))) == pytest.approx(0.0, abs=1e-9 * o0.sum())
    # the image is the blurred truth: the nominal GTM recovers the concentrations, a move biases them
    assert t0 == pytest.approx([50, 20, 200, 5], rel=1e-6)
    rod = rows[(3, 4)]
    assert eff.corrected_toward_b[rod, 2] > 1.2 and eff.corrected_toward_b[rod, 3] < 1.0


def test_without_blur_the_corrected_effects_are_the_sums():
    lab = np.zeros((8, 8, 8), np.int16)
    lab[1:7, 1:7, 1:7] = 2
    lab[2:5, 2:5, 2:5] = 1
    img = np.where(lab == 1, 10.0, np.where(lab == 2, 1.0, 0.0))
    ids = [1, 2]
    W0, _, n0 = gtm_matrix(lab, SPACING, 0.0, label_ids=ids)
    t0 = ndimage.sum_labels(img, lab, index=ids) / n0
    eff = boundary_effects(img, lab, ids, transfer=(W0, n0, t0), sigma=np.zeros(3))
    np.testing.assert_allclose(eff.corrected_toward_b, eff.sums_toward_b, rtol=1e-10)
    np.testing.assert_allclose(eff.corrected_toward_a, eff.sums_toward_a, rtol=1e-10)


def test_factors_are_linear_in_each_shift_and_add_over_regions():
    ero = np.array([[0.6, 1.1], [1.3, 0.7]])
    dil = np.array([[1.4, 0.9], [0.8, 1.2]])
    u = np.array([[0.5, 0.0], [0.0, -0.25], [0.5, -0.25], [-3.0, 0.0]])
    f = boundary_factors(u, ero, dil)
    np.testing.assert_allclose(f[0], [1 + 0.5 * 0.4, 1 - 0.5 * 0.1])
    np.testing.assert_allclose(f[1], [1 + 0.25 * 0.3, 1 - 0.25 * 0.3])
    np.testing.assert_allclose(f[2], f[0] + f[1] - 1)
    assert f[3, 0] == 0.0                       # never negative


def test_shifted_morphology_and_label_boxes_match_scipy():
    """The shifted-OR / AND dilation and erosion, and the boxes from find_objects, are exactly scipy's and nonzero's."""
    from spectrack.quantification.boundary import _dilate6, _erode6, label_boxes

    s6 = ndimage.generate_binary_structure(3, 1)
    rng = np.random.default_rng(7)
    for shape in [(1, 1, 5), (2, 1, 1), (3, 3, 3), (1, 4, 7), (5, 6, 7), (9, 8, 10)]:
        for p in (0.2, 0.6, 0.95, 1.0):
            m = rng.random(shape) < p
            assert np.array_equal(_dilate6(m), ndimage.binary_dilation(m, s6))
            assert np.array_equal(_erode6(m), ndimage.binary_erosion(m, s6))
        lab = rng.integers(0, 4, shape).astype(np.int16)
        for ids in ([1, 2, 3], [0, 2, 5]):            # 0 and below: by each label's nonzero
            boxes = label_boxes(lab, ids)
            for i in ids:
                where = np.nonzero(lab == i)
                if where[0].size == 0:
                    assert i not in boxes
                    continue
                assert boxes[i] == tuple(slice(int(w.min()), int(w.max()) + 1) for w in where)
        # every label present by default, also one above the voxel count (not listed by find_objects)
        every = label_boxes(lab)
        assert list(every) == np.unique(lab[lab > 0]).tolist() and every == label_boxes(lab, [1, 2, 3])
        big = label_boxes(np.where(lab == 3, 10 ** 6, lab.astype(np.int64)))
        assert big.get(10 ** 6) == every.get(3) and big.get(1) == every.get(1)
