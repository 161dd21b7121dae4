"""End to end: a human phantom study of 6 time points through load, registration, regions, quantify, report.

Run ``python benchmarks/bench_end_to_end.py [--ct 512,512,300] [--spect 128] [--keep DIR]``.

Preparation (a separate process, not timed): :func:`spectrack.phantom.make_study`
writes a ``human`` phantom (6 time points, SPECT ``--spect``^3, DICOM) with a
CT ``--ct-refine`` times finer (default 3); each time point's CT series is then resampled (linear, same
field of view) to ``--ct`` (i, j, k) voxels and written back as a CT series
with the phantom's own headers (same study, frame of reference and times).

Measurement (another process): :func:`spectrack.run_study` on the DICOM
folder with ``register=True``, automatic regions (``auto_regions="human"``
when :mod:`spectrack.regions.auto.ct` exists, else the phantom's label map),
sensitivity calibration, the default uncertainty draws and the HTML report,
writing into a temporary folder. The stages are timed with ``run_study``'s
progress callback; the peak resident memory is the process's ``ru_maxrss``
(interpreter and imports included). No absolute target: ``bench_textbook.py``
measures spectrack against a textbook script in the same run. Not a test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import emit, machine, peak_rss_mb  # noqa: E402


def prepare(folder: Path, ct_shape: tuple[int, int, int], spect: int, seed: int = 0, ct_refine: int = 3,
            times_h=None) -> dict:
    """Write the phantom study (``times_h``: the preset's by default) and replace its CTs by ``ct_shape`` ones;
    return a summary."""
    import pydicom
    import SimpleITK as sitk
    from pydicom.uid import generate_uid

    from spectrack.geometry import Image, from_sitk, to_sitk
    from spectrack.load.dicom import read_ct_series
    from spectrack.phantom import make_study

    t0 = time.perf_counter()
    truth = make_study(folder, "human", seed=seed, spect_shape=(spect,) * 3, ct_refine=ct_refine, formats=("dicom",),
                       times_h=times_h)
    dicom = folder / "dicom"
    series: dict[str, list[Path]] = {}
    for f in sorted(dicom.iterdir()):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        if ds.Modality == "CT":
            series.setdefault(str(ds.SeriesInstanceUID), []).append(f)
    n_files = 0
    for uid, files in series.items():
        ct = read_ct_series(files).image
        n_old = np.array(ct.shape_ijk, float)
        n_new = np.array(ct_shape, float)
        extent = n_old * ct.spacing_mm
        sp = extent / n_new
        origin = ct.index_to_world_mm([-0.5, -0.5, -0.5]) + ct.direction @ (sp / 2)
        ref = Image(np.zeros(tuple(int(v) for v in ct_shape[::-1]), np.int16), origin, sp, ct.direction)
        res = sitk.Resample(to_sitk(ct), to_sitk(ref), sitk.Transform(), sitk.sitkLinear, -1024.0, sitk.sitkFloat32)
        hu = np.rint(from_sitk(res).array).astype(np.int16)
        tmpl = pydicom.dcmread(files[0], stop_before_pixels=True)
        new_uid = generate_uid()
        for f in files:
            f.unlink()
        for k in range(hu.shape[0]):
            ds = tmpl.copy()
            ds.file_meta = tmpl.file_meta.copy()
            ds.SeriesInstanceUID = new_uid
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.Rows, ds.Columns = hu.shape[1], hu.shape[2]
            ds.PixelSpacing = [f"{sp[1]:.6g}", f"{sp[0]:.6g}"]
            pos = ref.index_to_world_mm([0, 0, k])
            ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
            ds.SliceLocation = f"{pos[2]:.6f}"
            ds.SliceThickness = f"{sp[2]:.6g}"
            ds.InstanceNumber = k + 1
            ds.add_new(0x7FE00010, "OW", (hu[k].astype(np.int32) + 1024).astype(np.int16).tobytes())
            ds.save_as(dicom / f"CT{uid[-8:]}{k:04d}", enforce_file_format=True)
            n_files += 1
    mb = sum(f.stat().st_size for f in dicom.iterdir()) / 1e6
    return {"seconds": time.perf_counter() - t0, "ct_series": len(series), "ct_files": n_files,
            "dicom_mb": mb, "sensitivity_cps_per_mbq": truth["sensitivity_cps_per_mbq"],
            "n_timepoints": len(truth["timepoints"])}


def measure(folder: Path, out: Path) -> dict:
    """Run the pipeline once; stage times, wall time, peak RSS."""
    t_start = time.perf_counter()
    import spectrack
    from spectrack.pipeline import run_study

    t_import = time.perf_counter() - t_start
    truth = json.loads((folder / "truth.json").read_text())
    settings = {"register": True, "calibration": "sensitivity",
                "sensitivity_cps_per_mbq": truth["sensitivity_cps_per_mbq"], "species": "human"}
    try:
        import spectrack.regions.auto.ct  # noqa: F401

        settings["auto_regions"] = "human"
        regions = "auto_regions='human'"
    except ImportError:
        settings["labels"] = str(folder / "labels.nii.gz")
        regions = "phantom labels"
    marks: list[tuple[str, float]] = []

    def progress(stage, frac):
        marks.append((stage, time.perf_counter()))

    t0 = time.perf_counter()
    res = run_study(folder / "dicom", settings, out_dir=out, progress=progress)
    wall = time.perf_counter() - t0
    stages: dict[str, float] = {}
    for (name, t), (_, t_next) in zip(marks, marks[1:] + [("end", t0 + wall)]):
        stages[name] = stages.get(name, 0.0) + (t_next - t)
    tbl = res.table
    n_regions = int((tbl["kind"] == "region").sum() // max(1, tbl["timepoint"].nunique()))
    fov = tbl[(tbl["kind"] == "fov")]["pct_id"].round(1).tolist()
    # the answer, not only the time: automatic regions' %ID against the phantom's truth
    check = {}
    reg = tbl[tbl["kind"] == "region"]
    for name in ("brain", "liver", "kidneys", "bladder", "canal_lumbar", "canal_thoracic"):
        errs = []
        for tp in truth["timepoints"]:
            t = tp["regions"][name]["pct_id"]
            got = reg[(reg["timepoint"] == tp["index"]) & (reg["region"] == name)]["pct_id"]
            if len(got) and t > 0:
                errs.append(abs(float(got.iloc[0]) / t - 1))
        check[name] = max(errs) if errs else None
    return {"wall_s": wall, "import_s": t_import, "stages_s": stages, "peak_rss_mb": peak_rss_mb(),
            "regions": regions, "n_regions": n_regions, "fov_pct_id": fov, "max_rel_error": check, "spectrack": spectrack.__version__,
            "outputs": sorted(res.outputs)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ct", default="512,512,300", help="CT voxels i,j,k")
    ap.add_argument("--spect", type=int, default=128)
    ap.add_argument("--ct-refine", type=int, default=3,
                    help="phantom CT voxels per SPECT voxel edge before resampling to --ct (3: a CT sharper than "
                         "the SPECT, as on scanners)")
    ap.add_argument("--keep", default=None, help="prepare into (or reuse) this folder instead of a temporary one")
    ap.add_argument("--json", default=None, help="write the result rows here (used by run_all.py)")
    ap.add_argument("--_prepare", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_measure", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    ct_shape = tuple(int(v) for v in a.ct.split(","))
    if a._prepare:
        print(json.dumps(prepare(Path(a._prepare), ct_shape, a.spect, ct_refine=a.ct_refine)))
        return 0
    if a._measure:
        folder = Path(a._measure)
        with tempfile.TemporaryDirectory(prefix="spectrack-bench-e2e-out-") as out:
            print(json.dumps(measure(folder, Path(out))))
        return 0

    print(machine())
    with tempfile.TemporaryDirectory(prefix="spectrack-bench-e2e-") as tmp:
        folder = Path(a.keep) if a.keep else Path(tmp) / "study"
        if not (folder / "truth.json").exists():
            r = subprocess.run([sys.executable, __file__, "--_prepare", str(folder), "--ct", a.ct,
                                "--spect", str(a.spect), "--ct-refine", str(a.ct_refine)], capture_output=True,
                               text=True)
            if r.returncode != 0:
                print(r.stdout, r.stderr, sep="\n")
                return 1
            prep = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"prepared in {prep['seconds']:.0f} s: {prep['n_timepoints']} time points, "
                  f"SPECT {a.spect}^3, {prep['ct_series']} CT series of {ct_shape[0]}x{ct_shape[1]}x{ct_shape[2]} "
                  f"({prep['ct_files']} CT files, {prep['dicom_mb']:.0f} MB of DICOM)")
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, __file__, "--_measure", str(folder)], capture_output=True, text=True)
        proc_wall = time.perf_counter() - t0
        if r.returncode != 0:
            print(r.stdout, r.stderr, sep="\n")
            return 1
        m = json.loads(r.stdout.strip().splitlines()[-1])
    wall = m["wall_s"]
    print(f"regions: {m['regions']} ({m['n_regions']} regions per time point); field of view %ID per time point "
          f"{m['fov_pct_id']}; outputs {', '.join(m['outputs'])}")
    print("largest %ID error against the phantom truth over the time points: " + ", ".join(
        f"{k} {v:.1%}" if v is not None else f"{k} (not found)" for k, v in m["max_rel_error"].items()))
    print(f"run_study wall {wall:.1f} s (process {proc_wall:.1f} s incl. interpreter start and imports "
          f"{m['import_s']:.1f} s); peak RSS {m['peak_rss_mb']:.0f} MB")
    for name, s in m["stages_s"].items():
        print(f"   {name:<9} {s:6.2f} s  {100 * s / wall:5.1f} %")
    # no absolute target (a shared machine misses any fixed time when busy): bench_textbook.py gives the ratios
    rows = [dict(figure=f"End to end, human 6 tp, SPECT {a.spect}^3, CT {a.ct.replace(',', 'x')}: wall",
                 ours=f"{wall:.1f} s", peer_name="(see bench_textbook.py for ratios)", peer=""),
            dict(figure=f"End to end, human 6 tp, SPECT {a.spect}^3, CT {a.ct.replace(',', 'x')}: peak RSS",
                 ours=f"{m['peak_rss_mb']:.0f} MB", peer_name="(see bench_textbook.py for ratios)", peer="")]
    for name, s in m["stages_s"].items():
        rows.append(dict(figure=f"End to end: stage {name}", ours=f"{s:.2f} s", peer_name="share of wall",
                         peer=f"{100 * s / wall:.0f} %"))
    emit(rows, a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
