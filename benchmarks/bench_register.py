"""Registration of one 128^3 time point: spectrack's register_rigid against a
textbook SimpleITK set-up (Mattes MI, regular-step gradient descent, the same
three-level pyramid, 20 % random sampling at full resolution), on the same
phantom CTs, in the same run.

Run: ``python benchmarks/bench_register.py``. Prints seconds, the ratio to the
peer and each method's worst error (mm) at the organ centres against the
phantom's true motion. Target (issue 3): under 3 s for spectrack.
"""

from __future__ import annotations

import time

import numpy as np


def main() -> int:
    import SimpleITK as sitk

    from spectrack.align.register import register_rigid
    from spectrack.geometry import to_sitk
    from spectrack.phantom import make_phantom

    motion = [(0, 0, 0, 0, 0, 0), (25, -15, 20, 6, -4, 9)]
    ph = make_phantom("nhp", seed=2, times_h=[1.0, 4.0], motion=motion, spect_shape=(128, 128, 128))
    fixed, moving = ph.timepoints[0].ct, ph.timepoints[1].ct
    truth = np.asarray(ph.timepoints[1].reference_to_timepoint, dtype=float)
    centres = np.array([np.mean(fixed.index_to_world_mm(np.argwhere(ph.timepoints[0].labels_ct.image.array == i)
                                                        [:, ::-1]), axis=0) for i in (1, 7, 8)])

    def err(tf):
        got = np.array([tf.TransformPoint(tuple(map(float, c))) for c in centres])
        want = centres @ truth[:3, :3].T + truth[:3, 3]
        return float(np.max(np.linalg.norm(got - want, axis=1)))

    def ours():
        return register_rigid(fixed, moving).transform

    def peer():
        f = sitk.Cast(to_sitk(fixed), sitk.sitkFloat32)
        m = sitk.Cast(to_sitk(moving), sitk.sitkFloat32)
        init = sitk.CenteredTransformInitializer(f, m, sitk.Euler3DTransform(),
                                                 sitk.CenteredTransformInitializerFilter.MOMENTS)
        r = sitk.ImageRegistrationMethod()
        r.SetMetricAsMattesMutualInformation(50)
        r.SetMetricSamplingStrategy(r.RANDOM)
        r.SetMetricSamplingPercentage(0.2, 1234)
        r.SetInterpolator(sitk.sitkLinear)
        r.SetOptimizerAsRegularStepGradientDescent(2.0, 0.01, 200)
        r.SetOptimizerScalesFromPhysicalShift()
        r.SetShrinkFactorsPerLevel([4, 2, 1])
        r.SetSmoothingSigmasPerLevel([2, 1, 0])
        r.SetInitialTransform(init, inPlace=False)
        return r.Execute(f, m)

    rows = []
    for name, fn in (("spectrack register_rigid", ours), ("SimpleITK textbook set-up", peer)):
        fn()  # warm-up
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            tf = fn()
            ts.append(time.perf_counter() - t0)
        rows.append((name, float(np.median(ts)), err(tf)))
    shape = "x".join(str(n) for n in fixed.shape_ijk)
    print(f"registration of one time point, CT {shape}, moved 25/15/20 mm and rotated 6/4/9 degrees")
    print(f"| method | median s | worst error at organ centres (mm) |\n|---|---:|---:|")
    for name, t, e in rows:
        print(f"| {name} | {t:.2f} | {e:.2f} |")
    print(f"ratio spectrack / SimpleITK textbook: {rows[0][1] / rows[1][1]:.2f}x; "
          f"target < 3 s: {'pass' if rows[0][1] < 3 else 'fail'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
