"""Per-region statistics of a time series: spectrack against scikit-image and SimpleITK.

Run ``python benchmarks/bench_stats.py [--size 256] [--labels 30] [--frames 6]``.

Data: ``--frames`` float32 frames of ``--size``^3 (gamma-distributed values)
and one fixed label map of ``--labels`` regions, in three layouts:

* ``organs``: a Voronoi partition of the body (an ellipsoid, about 40 % of
  the volume) into ``--labels`` regions, the rest background: the typical
  case;
* ``full``: the same partition over the whole volume (no background);
* ``small``: ``--labels`` small spheres (about 2 % of the volume).

For every frame each tool computes, per label, the voxel count, sum (or
mean) and maximum:

* spectrack: :class:`spectrack.quantification.stats.RegionIndex` built once
  from the labels (its one-off cost is printed), then ``stats(frame)`` per
  frame;
* scikit-image ``measure.regionprops_table(labels, frame, properties=("label",
  "area", "intensity_mean", "intensity_max"))``;
* SimpleITK ``LabelStatisticsImageFilter`` with ``UseHistogramsOff()``
  (images converted to SimpleITK outside the timing, results read back as
  arrays inside it);
* scipy ``ndimage.sum_labels`` + ``mean`` + ``maximum`` (one frame only with
  ``--scipy``: seconds per frame);
* the memory floor: one pass over the frame and the labels
  (``np.add.reduce(frame)`` and ``np.maximum.reduce(labels)``).

Results are checked against each other (sums to 1e-5 relative, maxima
exact) before anything is timed. Timings interleave the tools, repeat
``--repeat`` times and report the median time per frame. Not a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, machine  # noqa: E402


def voronoi_labels(size: int, n_labels: int, *, body: bool, seed: int = 0) -> np.ndarray:
    """Voronoi partition of ``n_labels`` random seeds (computed at half resolution, upsampled)."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    h = max(size // 2, 4)
    seeds = np.zeros((h, h, h), np.int32)
    lo, hi = h // 5, h - h // 5
    pts = rng.integers(lo, hi, size=(n_labels * 4, 3))
    pts = np.unique(pts, axis=0)[:n_labels]
    seeds[tuple(pts.T)] = np.arange(1, len(pts) + 1)
    idx = ndi.distance_transform_edt(seeds == 0, return_distances=False, return_indices=True)
    part = seeds[tuple(idx)]
    # jitter the boundaries at full resolution so runs are not artificially long
    full = np.repeat(np.repeat(np.repeat(part, 2, 0), 2, 1), 2, 2)[:size, :size, :size]
    if full.shape != (size,) * 3:
        full = np.pad(full, [(0, size - s) for s in full.shape], mode="edge")
    shift = rng.integers(0, 2, size=(size, size, 1))
    full = np.where(shift == 1, np.roll(full, 1, axis=2), full)
    if body:
        z, y, x = np.ogrid[:size, :size, :size]
        c = (size - 1) / 2
        ell = ((x - c) / (0.47 * size)) ** 2 + ((y - c) / (0.36 * size)) ** 2 + ((z - c) / (0.49 * size)) ** 2 <= 1
        full = np.where(ell, full, 0)
    return full.astype(np.int16)


def sphere_labels(size: int, n_labels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lab = np.zeros((size,) * 3, np.int16)
    r = max(2, int(size * 0.055))
    z, y, x = np.ogrid[-r:r + 1, -r:r + 1, -r:r + 1]
    ball = x * x + y * y + z * z <= r * r
    for k in range(1, n_labels + 1):
        c = rng.integers(r, size - r - 1, size=3)
        sl = tuple(slice(ci - r, ci + r + 1) for ci in c)
        lab[sl][ball] = k
    return lab


def _check(ours: dict, ri, sk: dict, sx: dict) -> None:
    assert np.array_equal(ri.labels, sk["label"]) and np.array_equal(ri.labels, sx["label"])
    assert np.array_equal(ri.counts, sk["area"]) and np.array_equal(ri.counts, sx["count"])
    assert np.allclose(ours["mean"], sk["intensity_mean"], rtol=1e-5)
    assert np.allclose(ours["sum"], sx["sum"], rtol=1e-5)
    assert np.array_equal(ours["max"], sk["intensity_max"].astype(np.float64))
    assert np.array_equal(ours["max"], sx["max"])


def run(size: int, n_labels: int, n_frames: int, repeat: int, layouts: list[str], with_scipy: bool) -> list[dict]:
    import SimpleITK as sitk
    from skimage.measure import regionprops_table

    from spectrack.quantification.stats import RegionIndex

    rng = np.random.default_rng(1)
    frames = [rng.gamma(2.0, 100.0, size=(size,) * 3).astype(np.float32) for _ in range(n_frames)]
    sitk_frames = [sitk.GetImageFromArray(f) for f in frames]
    rows = []
    for layout in layouts:
        t0 = time.perf_counter()
        if layout == "organs":
            lab = voronoi_labels(size, n_labels, body=True)
        elif layout == "full":
            lab = voronoi_labels(size, n_labels, body=False)
        else:
            lab = sphere_labels(size, n_labels)
        sitk_lab = sitk.GetImageFromArray(lab)
        t_make = time.perf_counter() - t0
        cover = float(np.count_nonzero(lab)) / lab.size
        n_present = int(np.unique(lab[lab > 0]).size)

        t0 = time.perf_counter()
        ri = RegionIndex(lab)
        t_index = time.perf_counter() - t0

        def ours(f):
            return ri.stats(f)

        def skimage_(f):
            return regionprops_table(lab, intensity_image=f,
                                     properties=("label", "area", "intensity_mean", "intensity_max"))

        lsf = sitk.LabelStatisticsImageFilter()
        lsf.UseHistogramsOff()

        def sitk_(k):
            lsf.Execute(sitk_frames[k], sitk_lab)
            labs = sorted(x for x in lsf.GetLabels() if x != 0)
            return {"label": np.array(labs), "count": np.array([lsf.GetCount(x) for x in labs]),
                    "sum": np.array([lsf.GetSum(x) for x in labs]),
                    "max": np.array([lsf.GetMaximum(x) for x in labs])}

        lab_flat = lab.reshape(-1)

        def floor(f):
            return np.add.reduce(f.reshape(-1)), np.maximum.reduce(lab_flat)

        # correctness on every frame
        for k, f in enumerate(frames):
            _check(ours(f), ri, skimage_(f), sitk_(k))

        tools = {"spectrack": lambda k: ours(frames[k]), "skimage": lambda k: skimage_(frames[k]),
                 "SimpleITK": sitk_, "floor": lambda k: floor(frames[k])}
        times = {name: [] for name in tools}
        for name, fn in tools.items():  # warm-up
            fn(0)
        for _ in range(repeat):
            for name, fn in tools.items():
                t0 = time.perf_counter()
                for k in range(n_frames):
                    fn(k)
                times[name].append((time.perf_counter() - t0) / n_frames)
        med = {k: statistics.median(v) for k, v in times.items()}
        if with_scipy and layout == "organs":
            from scipy import ndimage as ndi

            idx = ri.labels
            t0 = time.perf_counter()
            ndi.sum_labels(frames[0], lab, idx), ndi.mean(frames[0], lab, idx), ndi.maximum(frames[0], lab, idx)
            med["scipy"] = time.perf_counter() - t0
        print(f"[{layout}] {size}^3 float32, {n_present} labels covering {100 * cover:.0f} % "
              f"(mode {ri.mode}), {n_frames} frames; label map made in {t_make:.1f} s; "
              f"RegionIndex built once in {1e3 * t_index:.0f} ms")
        print("   per frame (median of %d): " % repeat
              + ", ".join(f"{k} {1e3 * v:.1f} ms" for k, v in med.items()))

        def ms(v):
            return f"{1e3 * v:.1f} ms"

        base = f"Region stats {size}^3, {n_present} labels, {layout} ({100 * cover:.0f} %)"
        for peer, name in (("skimage", "skimage regionprops_table"),
                           ("SimpleITK", "SimpleITK LabelStatistics (no hist.)")):
            r = med["spectrack"] / med[peer]
            rows.append(dict(figure=f"{base}, per frame", ours=ms(med["spectrack"]), peer_name=name,
                             peer=ms(med[peer]), ratio=r, target="<= 0.3x", ok=r <= 0.3))
        r = med["spectrack"] / med["floor"]
        rows.append(dict(figure=f"{base}, vs memory floor", ours=ms(med["spectrack"]),
                         peer_name="one pass over frame + labels", peer=ms(med["floor"]), ratio=r,
                         target="<= 10x", ok=r <= 10))
        if "scipy" in med:
            r = med["spectrack"] / med["scipy"]
            rows.append(dict(figure=f"{base}, per frame", ours=ms(med["spectrack"]),
                             peer_name="scipy sum_labels+mean+maximum", peer=ms(med["scipy"]), ratio=r,
                             target="-"))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--labels", type=int, default=30)
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--layouts", default="organs,full,small")
    ap.add_argument("--scipy", action="store_true", help="also time scipy.ndimage (slow: seconds per frame)")
    ap.add_argument("--json", default=None, help="write the result rows here (used by run_all.py)")
    a = ap.parse_args(argv)
    print(machine())
    emit(run(a.size, a.labels, a.frames, a.repeat, a.layouts.split(","), a.scipy), a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
