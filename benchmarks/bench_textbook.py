"""spectrack against the short script a physicist would write for the same job (issue 16).

Run ``python benchmarks/bench_textbook.py [--ct 512,512,300] [--spect 128] [--repeat 3] [--keep DIR]
[--scaling]``.

The *textbook script* (:func:`textbook`, written here and not in the package) does the minimal job the
way a physicist would in about 60 lines: pydicom reads the headers of every file (no pixels) to find the NM
files, SimpleITK reads each NM file and the label map, resamples the labels nearest-neighbour onto each
SPECT, numpy ``bincount`` sums the counts per label, the counts become MBq with the camera's sensitivity and
the frame duration, are decay-corrected to the injection (with the in-frame factor) and divided by the
injected activity from the header. It writes ``region, timepoint, pct_id``.

The same study (the human phantom of ``bench_end_to_end.py``: 6 time points, SPECT ``--spect``^3, CT
``--ct`` per time point, DICOM) is then run, each job in its own process (so peak memory is that process's
own, interpreter and imports included, and wall time is what a user waits for at the prompt), round-robin
for ``--repeat`` rounds, medians reported:

* ``textbook``: the script;
* ``minimal``: ``spectrack quantify DICOM --labels L --sensitivity S --no-report --uncertainty-draws 0``;
* ``report``: the minimal job plus the HTML report;
* ``register``: the minimal job plus ``--register``;
* ``auto_regions``: ``--auto-regions human`` instead of the label map;
* ``pvc``: the minimal job plus ``--pvc`` (the preset's FWHM);
* ``full``: the default run (report, intervals, kinetics);
* ``imports_textbook``, ``imports_minimal``: a process that only imports the libraries (not spectrack itself)
  the textbook script, respectively the minimal job, had imported when it finished (recorded in the warm-up
  runs): the floor each side's libraries set before any work.

Before any timing, both sides' %ID are compared region by region (they must agree to 1e-4 relative, or the
benchmark stops). Ratios are spectrack / textbook; targets (issue 16): minimal wall <= 1.0x and peak memory
<= 1.5x, full default run wall <= 3x.

``--scaling`` adds tables of the minimal job's cost against time points (1, 2, 4, 8, 16), label count
(10, 30, 117, 500) and CT size, each point against the textbook script on the same input, so the growth
of the ratio shows, not only of the times. Not a test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import emit, machine  # noqa: E402


# ---------------------------------------------------------------- the textbook script
def textbook(dicom_dir: str, labels_path: str, sensitivity_cps_per_mbq: float, out_csv: str) -> None:
    """The minimal job as a physicist writes it: %ID per region and time point."""
    import datetime as dt

    import numpy as np
    import pydicom
    import SimpleITK as sitk

    nm_files = []
    for f in sorted(Path(dicom_dir).iterdir()):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        if ds.Modality == "NM":
            nm_files.append((f, ds))
    labels = sitk.ReadImage(labels_path)
    names = dict(line.split("\t")[:2] for line in Path(labels_path.replace(".nii.gz", ".tsv")).read_text()
                 .splitlines()[1:] if line.strip())
    names = {int(k): v for k, v in names.items()}
    rows = []
    scans = []
    for f, ds in nm_files:
        start = dt.datetime.strptime(ds.AcquisitionDate + ds.AcquisitionTime.split(".")[0], "%Y%m%d%H%M%S")
        scans.append((start, f, ds))
    scans.sort(key=lambda s: s[0])
    for tp, (start, f, ds) in enumerate(scans):
        rp = ds.RadiopharmaceuticalInformationSequence[0]
        injected_mbq = float(rp.RadionuclideTotalDose)
        half_life_h = float(rp.RadionuclideHalfLife) / 3600.0
        inj = dt.datetime.strptime(rp.RadiopharmaceuticalStartDateTime.split(".")[0], "%Y%m%d%H%M%S")
        rot = ds.RotationInformationSequence[0]
        duration_s = float(rot.ActualFrameDuration) / 1000.0 * int(rot.NumberOfFramesInRotation)
        spect = sitk.ReadImage(str(f))
        lab = sitk.Resample(labels, spect, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkInt32)
        counts = sitk.GetArrayViewFromImage(spect).astype(np.float64) * float(getattr(ds, "RescaleSlope", 1.0))
        sums = np.bincount(sitk.GetArrayViewFromImage(lab).ravel(), weights=counts.ravel())
        lam = math.log(2) / half_life_h
        t_h = (start - inj).total_seconds() / 3600.0
        d_h = duration_s / 3600.0
        in_frame = lam * d_h / (1 - math.exp(-lam * d_h))
        for lid, name in names.items():
            mbq = (sums[lid] if lid < sums.size else 0.0) / (sensitivity_cps_per_mbq * duration_s) * in_frame
            rows.append(f"{name},{tp},{mbq * math.exp(lam * t_h) / injected_mbq * 100.0:.9g}")
    Path(out_csv).write_text("region,timepoint,pct_id\n" + "\n".join(rows) + "\n")


# ---------------------------------------------------------------- jobs, each in its own process
def _child(argv: list[str]) -> int:
    """``--_child NAME PEAK_FILE ARGS...``: run one job in this process and write its peak RSS (MB)."""
    import resource

    name, peak_file, rest = argv[0], argv[1], argv[2:]
    if name == "textbook":
        textbook(rest[0], rest[1], float(rest[2]), rest[3])
        rc = 0
    elif name == "imports":
        _import_all(json.loads(Path(rest[0]).read_text()))
        rc = 0
    else:
        from spectrack.cli import main

        rc = main(rest)
    modules = os.environ.get("SPECTRACK_BENCH_MODULES")
    if modules:
        Path(modules).write_text(json.dumps(_library_modules()))
    Path(peak_file).write_text(str(_own_peak_mb(resource)))
    return int(rc or 0)


def _library_modules() -> list[str]:
    """The modules of installed libraries this process has imported (not the standard library's, not
    spectrack's, not this benchmark's), in the order their imports finished."""
    std = sys.stdlib_module_names
    return [m for m in list(sys.modules) if m.split(".")[0] not in std and not m.startswith(("spectrack", "_"))
            and m.split(".")[0] not in ("bench_textbook", "_common") and ".tests" not in m]


def _import_all(modules: list[str]) -> None:
    """Import ``modules`` (as :func:`_library_modules` listed them): the libraries' share of a job's time and
    memory, without its own work. A module that cannot be imported on its own is skipped (it was loaded by
    its package's import, which is in the list)."""
    import importlib

    for m in modules:
        try:
            importlib.import_module(m)
        except Exception:  # noqa: BLE001 - private and platform modules of a library
            pass


def _own_peak_mb(resource) -> float:
    """This process's own peak resident memory (MB): ``VmHWM``, which starts afresh at exec. ``ru_maxrss`` is
    no good here: Linux carries it over from the forking parent, so a child of a large parent reports the
    parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _jobs(study: Path, labels: Path, sens: float, out: Path) -> dict[str, list[str]]:
    dicom = str(study / "dicom")
    base = ["quantify", dicom, "--labels", str(labels), "--sensitivity", f"{sens:g}", "--calibration",
            "sensitivity", "-q", "--force"]
    return {
        "textbook": ["textbook", dicom, str(labels), f"{sens!r}", str(out / "textbook.csv")],
        "minimal": ["spectrack"] + base + ["--no-report", "--uncertainty-draws", "0", "-o", str(out / "minimal")],
        "report": ["spectrack"] + base + ["--uncertainty-draws", "0", "-o", str(out / "report")],
        "register": ["spectrack"] + base + ["--no-report", "--uncertainty-draws", "0", "--register",
                                             "-o", str(out / "register")],
        "auto_regions": ["spectrack", "quantify", dicom, "--auto-regions", "human", "--sensitivity", f"{sens:g}",
                         "--calibration", "sensitivity", "-q", "--force", "--no-report", "--uncertainty-draws",
                         "0", "-o", str(out / "auto_regions")],
        "pvc": ["spectrack"] + base + ["--no-report", "--uncertainty-draws", "0", "--pvc", "--species", "human",
                                        "-o", str(out / "pvc")],
        "full": ["spectrack"] + base + ["-o", str(out / "full")],
        # the libraries alone: what importing them costs each side before any work
        "imports_textbook": ["imports", str(out / "modules-textbook.json")],
        "imports_minimal": ["imports", str(out / "modules-minimal.json")],
    }


def _child_env(tmp: Path) -> dict:
    """The jobs' environment: as this process's, but with compiled bytecode cached as an installed package has it.

    With ``PYTHONDONTWRITEBYTECODE`` set (as on some CI machines), every job would compile spectrack's ~200
    modules from source on every run, a cost no installed copy pays (pip writes the ``.pyc`` files), while the
    textbook script's libraries come with theirs; the jobs then cache their bytecode under ``tmp`` instead
    (``PYTHONPYCACHEPREFIX``, so the source tree is left alone; removed with ``tmp``), and the warm-up runs
    compile it once.
    """
    env = dict(os.environ)
    if env.pop("PYTHONDONTWRITEBYTECODE", None):
        env.setdefault("PYTHONPYCACHEPREFIX", str(Path(tmp) / "pycache"))
    return env


def _run(job: list[str], tmp: Path, modules_file: Path | None = None) -> tuple[float, float]:
    """(wall s, peak RSS MB) of one job in a fresh interpreter; ``modules_file``: write there the library
    modules it imported (:func:`_library_modules`)."""
    peak = tmp / f"peak-{os.getpid()}-{time.monotonic_ns()}"
    name, rest = job[0], job[1:]
    env = _child_env(tmp)
    if modules_file is not None:
        env["SPECTRACK_BENCH_MODULES"] = str(modules_file)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, __file__, "--_child", name, str(peak), *rest], capture_output=True,
                       text=True, env=env)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"job {' '.join(job)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    mb = float(peak.read_text())
    peak.unlink()
    return wall, mb


def _check_same(out: Path, minimal: str = "minimal") -> int:
    """Both sides' %ID, region by region; returns how many values were compared."""
    import pandas as pd

    ours = pd.read_csv(out / minimal / "regions.csv")
    ours = ours[ours["kind"] == "region"].set_index(["region", "timepoint"])["pct_id"]
    theirs = pd.read_csv(out / "textbook.csv").set_index(["region", "timepoint"])["pct_id"]
    both = theirs.index.intersection(ours.index)
    absent = theirs.drop(index=both)  # regions no SPECT voxel centre falls in: spectrack has no row
    if len(both) != len(ours) or (absent != 0).any():
        raise SystemExit(f"regions differ: textbook {len(theirs)} values ({int((absent != 0).sum())} non-zero "
                         f"where spectrack has none), spectrack {len(ours)}")
    rel = ((ours.loc[both] - theirs.loc[both]).abs() / theirs.loc[both].abs().clip(lower=1e-9)).max()
    if not rel <= 1e-4:
        worst = ((ours.loc[both] - theirs.loc[both]).abs()).idxmax()
        raise SystemExit(f"spectrack and the textbook script disagree: largest relative difference {rel:.3g} "
                         f"at {worst} (spectrack {ours.loc[worst]:.6g}, textbook {theirs.loc[worst]:.6g})")
    return len(both)


def measure(study: Path, labels: Path, sens: float, names: list[str], repeat: int) -> dict:
    """Round-robin medians of every job: ``{name: {"wall_s", "peak_mb", "walls"}}``."""
    with tempfile.TemporaryDirectory(prefix="spectrack-bench-textbook-") as tmp:
        tmp = Path(tmp)
        jobs = _jobs(study, labels, sens, tmp)
        # warm the file cache, get the answers to compare and the libraries each side imports
        _run(jobs["textbook"], tmp, tmp / "modules-textbook.json")
        _run(jobs["minimal"], tmp, tmp / "modules-minimal.json")
        n = _check_same(tmp)
        walls: dict[str, list[float]] = {k: [] for k in names}
        peaks: dict[str, list[float]] = {k: [] for k in names}
        for _ in range(repeat):
            for k in names:
                w, m = _run(jobs[k], tmp)
                walls[k].append(w)
                peaks[k].append(m)
    return {"compared": n, **{k: {"wall_s": statistics.median(walls[k]), "peak_mb": statistics.median(peaks[k]),
                                  "walls": walls[k]} for k in names}}


# ---------------------------------------------------------------- inputs for the scaling tables
def _subset_study(src: Path, dst: Path, n_tp: int) -> Path:
    """A study folder of the first ``n_tp`` time points of ``src`` (links to its files)."""
    import pydicom

    by_tp: dict[str, list[Path]] = {}
    for f in sorted((src / "dicom").iterdir()):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        by_tp.setdefault(str(ds.AcquisitionDate) + str(ds.AcquisitionTime), []).append(f)
    keep = sorted(by_tp)[:n_tp]
    (dst / "dicom").mkdir(parents=True, exist_ok=True)
    for key in keep:
        for f in by_tp[key]:
            os.symlink(f, dst / "dicom" / f.name)
    return dst


def _split_labels(labels: Path, out: Path, n_labels: int) -> Path:
    """The label map with its regions cut into ``n_labels`` in all (slabs along k), names in a TSV."""
    import nibabel as nib
    import numpy as np

    img = nib.load(str(labels))
    lab = np.asarray(img.dataobj).astype(np.int32)
    ids = [int(v) for v in np.unique(lab) if v != 0]
    sizes = np.array([(lab == v).sum() for v in ids], float)
    if n_labels < len(ids):  # fewer labels than regions: the smallest regions share the last label
        new = np.zeros_like(lab)
        names = []
        for rank, v in enumerate(np.array(ids)[np.argsort(-sizes, kind="stable")]):
            new[lab == v] = min(rank, n_labels - 1) + 1
        names = [f"{k}\tregion_{k}" for k in range(1, n_labels + 1)]
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"labels_{n_labels}.nii.gz"
        nib.save(nib.Nifti1Image(new.astype(np.int16), img.affine, img.header), str(path))
        (out / f"labels_{n_labels}.tsv").write_text("index\tname\n" + "\n".join(names) + "\n")
        return path
    parts = np.maximum(1, np.round(sizes / sizes.sum() * n_labels)).astype(int)
    while parts.sum() > n_labels:
        parts[np.argmax(parts)] -= 1
    while parts.sum() < n_labels:
        parts[np.argmax(sizes / parts)] += 1
    new = np.zeros_like(lab)
    names, nxt = [], 1
    for v, p in zip(ids, parts):
        where = np.nonzero(lab == v)
        order = np.argsort(where[2], kind="stable")
        for chunk in np.array_split(order, p):
            new[tuple(w[chunk] for w in where)] = nxt
            names.append(f"{nxt}\tregion_{v}_{nxt}")
            nxt += 1
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"labels_{n_labels}.nii.gz"
    nib.save(nib.Nifti1Image(new.astype(np.int16), img.affine, img.header), str(path))
    (out / f"labels_{n_labels}.tsv").write_text("index\tname\n" + "\n".join(names) + "\n")
    return path


def _prepare(folder: Path, ct: str, spect: int, times_h=None) -> dict:
    """A human phantom study via bench_end_to_end.prepare (its own process), unless already there."""
    if (folder / "truth.json").exists():
        return json.loads((folder / "truth.json").read_text())
    code = ("import sys, json; sys.path.insert(0, %r); import bench_end_to_end as b; from pathlib import Path; "
            "print(json.dumps(b.prepare(Path(%r), tuple(int(v) for v in %r.split(',')), %d, times_h=json.loads(%r))))"
            % (str(HERE), str(folder), ct, spect, json.dumps(times_h)))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"preparing {folder} failed:\n{r.stderr[-3000:]}")
    return json.loads((folder / "truth.json").read_text())


def _pair(study: Path, labels: Path, sens: float, repeat: int) -> tuple[dict, dict]:
    m = measure(study, labels, sens, ["textbook", "minimal"], repeat)
    return m["textbook"], m["minimal"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ct", default="512,512,300", help="CT voxels i,j,k per time point")
    ap.add_argument("--spect", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3, help="round-robin rounds (medians)")
    ap.add_argument("--jobs", default="textbook,minimal,report,register,auto_regions,pvc,full,imports_textbook,"
                                      "imports_minimal")
    ap.add_argument("--keep", default=None, help="prepare into (or reuse) this folder")
    ap.add_argument("--scaling", action="store_true", help="also the scaling tables (slow)")
    ap.add_argument("--json", default=None, help="write the result rows here (used by run_all.py)")
    ap.add_argument("--_child", nargs=argparse.REMAINDER, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a._child is not None:
        return _child(a._child)
    print(machine())
    tmp_root = Path(tempfile.mkdtemp(prefix="spectrack-bench-textbook-study-"))
    try:
        folder = Path(a.keep) if a.keep else tmp_root / "study"
        t0 = time.perf_counter()
        truth = _prepare(folder, a.ct, a.spect)
        sens = float(truth["sensitivity_cps_per_mbq"])
        labels = folder / "labels.nii.gz"
        print(f"study: human phantom, {len(truth['timepoints'])} time points, SPECT {a.spect}^3, CT "
              f"{a.ct.replace(',', 'x')} per time point (ready in {time.perf_counter() - t0:.0f} s)")
        names = a.jobs.split(",")
        m = measure(folder, labels, sens, names, a.repeat)
        print(f"%ID agree to 1e-4 relative on {m['compared']} region values")
        tb = m["textbook"]
        rows = []
        targets = {"minimal": (1.0, 1.5), "full": (3.0, None)}
        for k in names:
            w_t, m_t = targets.get(k, (None, None))
            r_w, r_m = m[k]["wall_s"] / tb["wall_s"], m[k]["peak_mb"] / tb["peak_mb"]
            rows.append(dict(figure=f"{k}: wall", ours=f"{m[k]['wall_s']:.2f} s", peer_name="textbook script",
                             peer=f"{tb['wall_s']:.2f} s", ratio=r_w,
                             target=f"<= {w_t:g}x" if w_t else "-", ok=(r_w <= w_t) if w_t else None))
            rows.append(dict(figure=f"{k}: peak memory", ours=f"{m[k]['peak_mb']:.0f} MB",
                             peer_name="textbook script", peer=f"{tb['peak_mb']:.0f} MB", ratio=r_m,
                             target=f"<= {m_t:g}x" if m_t else "-", ok=(r_m <= m_t) if m_t else None))
        if a.scaling:
            rows += _scaling(folder, labels, sens, tmp_root, a)
        emit(rows, a.json)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return 0


def _scaling(folder: Path, labels: Path, sens: float, tmp_root: Path, a) -> list[dict]:
    rows = []

    def add(what, tb, ours, base=None):
        ratio = ours["wall_s"] / tb["wall_s"]
        rows.append(dict(figure=f"scaling {what}: wall", ours=f"{ours['wall_s']:.2f} s",
                         peer_name="textbook script", peer=f"{tb['wall_s']:.2f} s", ratio=ratio, target="-"))
        rows.append(dict(figure=f"scaling {what}: peak memory", ours=f"{ours['peak_mb']:.0f} MB",
                         peer_name="textbook script", peer=f"{tb['peak_mb']:.0f} MB",
                         ratio=ours["peak_mb"] / tb["peak_mb"], target="-"))

    # time points: 16 scans over 48 h, studies of the first 1, 2, 4, 8, 16
    times16 = [0.5 * 1.35 ** n for n in range(16)]
    sixteen = _prepare(tmp_root / "tp16", a.ct, a.spect, times_h=times16)
    for n in (1, 2, 4, 8, 16):
        sub = _subset_study(tmp_root / "tp16", tmp_root / f"tp16_first{n}", n)
        tb, ours = _pair(sub, tmp_root / "tp16" / "labels.nii.gz", float(sixteen["sensitivity_cps_per_mbq"]),
                         a.repeat)
        add(f"{n} time points", tb, ours)
    for n in (10, 30, 117, 500):
        lab = _split_labels(labels, tmp_root / "labels", n)
        tb, ours = _pair(folder, lab, sens, a.repeat)
        add(f"{n} labels", tb, ours)
    for ct in ("256,256,150", "512,512,300", "512,512,600"):
        study = tmp_root / f"ct_{ct.replace(',', 'x')}"
        tr = _prepare(study, ct, a.spect)
        tb, ours = _pair(study, study / "labels.nii.gz", float(tr["sensitivity_cps_per_mbq"]), a.repeat)
        add(f"CT {ct.replace(',', 'x')}", tb, ours)
    return rows


if __name__ == "__main__":
    sys.exit(main())
