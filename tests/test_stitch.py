"""Multi-bed stitching against a known activity distribution."""

import datetime as dt

import numpy as np
import pytest

from spectrack.align.stitch import bed_correction_factors, stitch_beds
from spectrack.errors import InconsistentInputError, MissingMetadataError
from spectrack.geometry import Image

T_HALF_H = 6.0067
LAM_PER_H = np.log(2) / T_HALF_H
T_REF = dt.datetime(2024, 3, 5, 10, 0, 0)


def _truth(shape=(70, 20, 24)):
    """Structured activity (Bq/mL) at the reference time on an LPS grid."""
    k, j, i = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    a = 100.0 + 50.0 * np.sin(k / 5.0) + 3.0 * j + 2.0 * i
    a[20:30, 5:12, 6:14] += 800.0  # a hot organ across the first overlap
    a[44:52, 8:15, 10:18] += 300.0  # and one across the second
    direction = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, -1.0]])  # slices run feet-wards
    return Image(a, origin_mm=(-30.0, -25.0, 200.0), spacing_mm=(2.5, 2.5, 4.0), direction=direction,
                 units="Bq/mL")


def _beds(truth, ranges, starts, durations_s=None):
    """Cut the truth into beds and simulate what each bed measures."""
    beds = []
    for n, ((k0, k1), t) in enumerate(zip(ranges, starts)):
        dt_h = (t - T_REF).total_seconds() / 3600
        val = truth.array[k0:k1] * np.exp(-LAM_PER_H * dt_h)
        if durations_s is not None:  # mean over the acquisition
            x = LAM_PER_H * durations_s[n] / 3600
            val = val * (1 - np.exp(-x)) / x
        origin = truth.index_to_world_mm([0, 0, k0])
        beds.append(Image(val, origin, truth.spacing_mm, truth.direction, units="Bq/mL"))
    return beds


STARTS3 = [T_REF + dt.timedelta(minutes=m) for m in (0, 17, 41)]
RANGES3 = [(0, 28), (22, 50), (43, 70)]


@pytest.mark.parametrize("overlap", ["average", "best_counts", "nearest_centre"])
def test_three_beds_equal_truth(overlap):
    truth = _truth()
    durations = [900.0, 900.0, 1200.0]
    beds = _beds(truth, RANGES3, STARTS3, durations)
    out = stitch_beds(beds, STARTS3, half_life_h=T_HALF_H, reference_time=T_REF,
                      overlap=overlap, durations_s=durations)
    assert out.same_grid(truth)
    np.testing.assert_allclose(out.array, truth.array, rtol=1e-6)
    assert out.meta["stitch"]["uncovered_voxels"] == 0
    assert out.meta["stitch"]["resampled_beds"] == []


def test_two_beds_uniform_without_durations():
    truth = _truth((40, 8, 9)).with_array(np.full((40, 8, 9), 250.0))
    starts = [T_REF + dt.timedelta(hours=1), T_REF + dt.timedelta(hours=1, minutes=20)]
    beds = _beds(truth, [(0, 25), (15, 40)], starts)
    # beds given in any order
    out = stitch_beds(beds[::-1], starts[::-1], half_life_h=T_HALF_H, reference_time=T_REF)
    assert out.same_grid(truth)
    np.testing.assert_allclose(out.array, 250.0, rtol=1e-6)


def test_best_counts_takes_the_better_bed():
    """Bed edges see the overlap with low sensitivity: only the bed with more
    counts there gives the truth; averaging would not."""
    truth = _truth()
    beds = _beds(truth, RANGES3, STARTS3)
    # the edge slices of beds 0 and 2 inside their overlaps lose 70 % of their counts
    beds[0].array[22:28] *= 0.3
    beds[2].array[0:7] *= 0.3
    out = stitch_beds(beds, STARTS3, half_life_h=T_HALF_H, reference_time=T_REF, overlap="best_counts")
    np.testing.assert_allclose(out.array, truth.array, rtol=1e-6)
    avg = stitch_beds(beds, STARTS3, half_life_h=T_HALF_H, reference_time=T_REF, overlap="average")
    assert np.max(np.abs(avg.array / truth.array - 1)) > 0.2


def test_gap_between_beds_is_zero_and_reported():
    truth = _truth((30, 4, 5))
    beds = _beds(truth, [(0, 10), (14, 30)], STARTS3[:2])
    out = stitch_beds(beds, STARTS3[:2], half_life_h=T_HALF_H, reference_time=T_REF)
    assert out.same_grid(truth)
    assert out.meta["stitch"]["uncovered_voxels"] == 4 * 4 * 5
    assert np.all(out.array[10:14] == 0)
    np.testing.assert_allclose(out.array[:10], truth.array[:10], rtol=1e-6)


def test_off_lattice_bed_is_resampled():
    truth = _truth((30, 6, 6)).with_array(np.full((30, 6, 6), 40.0))
    beds = _beds(truth, [(0, 18), (12, 30)], STARTS3[:2])
    beds[1] = Image(beds[1].array, beds[1].origin_mm + [0.0, 0.0, -1.0], beds[1].spacing_mm,
                    beds[1].direction, units="Bq/mL")  # 1 mm off the lattice along z
    out = stitch_beds(beds, STARTS3[:2], half_life_h=T_HALF_H, reference_time=T_REF)
    assert out.meta["stitch"]["resampled_beds"] == [1]
    inner = out.array[2:-2, 1:-1, 1:-1]  # uniform activity survives linear resampling
    np.testing.assert_allclose(inner, 40.0, rtol=1e-5)


def test_correction_factors():
    f = bed_correction_factors([T_REF, T_REF + dt.timedelta(hours=T_HALF_H)], half_life_h=T_HALF_H,
                               reference_time=T_REF, durations_s=[900.0, 900.0])
    np.testing.assert_allclose(f, [1.0145, 2 * 1.0145], atol=1e-4)  # REFERENCE.md: 1.0145 for 15 min


def test_errors():
    truth = _truth((20, 4, 4))
    beds = _beds(truth, [(0, 12), (8, 20)], STARTS3[:2])
    with pytest.raises(InconsistentInputError, match="overlap mode"):
        stitch_beds(beds, STARTS3[:2], half_life_h=T_HALF_H, reference_time=T_REF, overlap="max")
    with pytest.raises(InconsistentInputError, match="one per bed"):
        stitch_beds(beds, STARTS3[:1], half_life_h=T_HALF_H, reference_time=T_REF)
    with pytest.raises(MissingMetadataError, match="acquisition start of bed 1"):
        stitch_beds(beds, [T_REF, None], half_life_h=T_HALF_H, reference_time=T_REF)
    rotated = Image(beds[1].array, beds[1].origin_mm, beds[1].spacing_mm, np.eye(3), units="Bq/mL")
    with pytest.raises(InconsistentInputError, match="oriented differently"):
        stitch_beds([beds[0], rotated], STARTS3[:2], half_life_h=T_HALF_H, reference_time=T_REF)
    with pytest.raises(InconsistentInputError, match="no beds"):
        stitch_beds([], [], half_life_h=T_HALF_H, reference_time=T_REF)
