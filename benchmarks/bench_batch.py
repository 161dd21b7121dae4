"""Batch throughput: studies per minute with 1 and 2 Dask workers, scaling, peak memory per worker.

Run ``python benchmarks/bench_batch.py [--n 24] [--shape 64] [--timepoints 4]``.
Generates ``n`` two-region NIfTI studies (Bq/mL, exact %ID) in a temporary
folder, runs :func:`spectrack.batch.run_batch` on an embedded LocalCluster
with each worker count, checks the numbers, and prints a table. Wall time
includes starting and stopping the cluster. Peak memory per worker is the
worker process's peak RSS (``ru_maxrss``) reported by its last task.
Not a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

HL_H = 6.0067  # Tc-99m
A_INJ = 150.0
INJ = dt.datetime(2026, 3, 14, 9, 0, 0)


def make_study(folder: Path, shape: int, times_h, frac, seed: int) -> None:
    """A NIfTI study: ``len(times_h)`` SPECT volumes (Bq/mL) with sidecars, scans.tsv and labels."""
    import nibabel as nib

    from spectrack.geometry import Image, to_nifti_affine
    from spectrack.regions.formats.nifti import write_label_map
    from spectrack.regions.labelmap import LabelMap

    folder.mkdir(parents=True, exist_ok=True)
    g = Image(np.zeros((shape,) * 3, np.float32), origin_mm=(-100, -100, -100), spacing_mm=(3.0, 3.0, 3.0))
    lab = np.zeros(g.array.shape, np.int16)
    q = shape // 4
    lab[q:2 * q, q:2 * q, q:2 * q] = 1
    lab[2 * q:3 * q, 2 * q:3 * q, q:3 * q] = 2
    write_label_map(LabelMap(g.with_array(lab, units="label"), {1: "brain", 2: "liver"}), folder / "labels.nii.gz")
    lam = math.log(2) / HL_H
    dur = 900.0
    iff = lam * dur / 3600 / (1 - math.exp(-lam * dur / 3600))
    rng = np.random.default_rng(seed)
    scans = ["filename\tacq_time"]
    for n, (t, (f1, f2)) in enumerate(zip(times_h, frac)):
        arr = rng.uniform(0, 1e3, g.array.shape)  # background outside the regions
        for k, f in ((1, f1), (2, f2)):
            m = lab == k
            arr[m] = A_INJ * f * math.exp(-lam * t) / m.sum() / g.voxel_volume_ml * 1e6 / iff
        data, aff = to_nifti_affine(g.with_array(arr.astype(np.float32)))
        name = f"tp{n}_spect.nii.gz"
        nib.save(nib.Nifti1Image(data.astype(np.float32), aff), folder / name)
        side = {"Modality": "NM", "TracerRadionuclide": "99mTc", "InjectedRadioactivity": A_INJ,
                "InjectedRadioactivityUnits": "MBq", "TimeZero": INJ.strftime("%H:%M:%S"), "InjectionStart": 0,
                "ScanStart": t * 3600, "FrameTimesStart": [0], "FrameDuration": [dur],
                "ImageDecayCorrected": False, "Units": "Bq/mL"}
        (folder / f"tp{n}_spect.json").write_text(json.dumps(side))
        scans.append(f"{name}\t{(INJ + dt.timedelta(hours=t)).isoformat()}")
    (folder / "scans.tsv").write_text("\n".join(scans) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=24, help="number of studies")
    ap.add_argument("--shape", type=int, default=64, help="voxels per side of each SPECT volume")
    ap.add_argument("--timepoints", type=int, default=4)
    ap.add_argument("--workers", default="1,2", help="worker counts to compare, comma-separated")
    args = ap.parse_args()

    from spectrack.batch import run_batch

    times = [0.5, 4.0, 24.0, 48.0, 72.0, 96.0][: args.timepoints]
    with tempfile.TemporaryDirectory(prefix="spectrack-bench-") as tmp:
        root = Path(tmp) / "studies"
        t0 = time.perf_counter()
        for i in range(args.n):
            frac = [(0.3 * (1 + 0.01 * i) / (1 + k), 0.1 + 0.05 * k) for k in range(len(times))]
            make_study(root / f"s{i:03d}", args.shape, times, frac, seed=i)
        gen_s = time.perf_counter() - t0
        print(f"generated {args.n} studies ({args.timepoints} x {args.shape}^3 voxels) in {gen_s:.1f} s")
        rows = []
        for w in [int(x) for x in args.workers.split(",")]:
            out = Path(tmp) / f"out_w{w}"
            t0 = time.perf_counter()
            s = run_batch(root, out, workers=w, report=False)
            wall = time.perf_counter() - t0
            assert not s.failed, [o.reason for o in s.failed]
            assert len(s.done) == args.n
            peak = {}
            for o in s.outcomes:
                if o.worker and o.peak_rss_mb:
                    peak[o.worker] = max(peak.get(o.worker, 0.0), o.peak_rss_mb)
            rows.append({"workers": w, "wall_s": wall, "spm": args.n / wall * 60,
                         "task_s": statistics.mean(o.seconds for o in s.outcomes),
                         "peak_mb": max(peak.values()) if peak else float("nan"), "n_proc": len(peak)})
        base = rows[0]["spm"]
        print(f"\n{'workers':>7} {'wall s':>8} {'studies/min':>12} {'scaling':>8} {'task s':>8} "
              f"{'peak RSS/worker MB':>19}")
        for r in rows:
            print(f"{r['workers']:>7} {r['wall_s']:>8.1f} {r['spm']:>12.1f} {r['spm'] / base:>8.2f} "
                  f"{r['task_s']:>8.2f} {r['peak_mb']:>19.0f}")
        print("\nwall time includes cluster start/stop; scaling = studies/min relative to the first row; "
              "task s = mean seconds per study inside a worker")


if __name__ == "__main__":
    main()
