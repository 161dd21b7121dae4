"""Helpers shared by the benchmarks: timing, machine description, peak memory.

Not a test module; imported by the ``bench_*.py`` scripts.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

__all__ = ["timed", "interleaved", "machine", "peak_rss_mb", "emit"]


def timed(fn, *, repeat: int = 5, warmup: int = 1) -> dict:
    """Run ``fn`` ``warmup`` + ``repeat`` times; median and min wall time in seconds, and the last result."""
    out = None
    for _ in range(warmup):
        out = fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(ts), "min_s": min(ts), "result": out}


def interleaved(fns: dict, *, repeat: int = 5, warmup: int = 1) -> dict:
    """Time several callables round-robin (so a busy machine slows them alike).

    Returns ``{name: {"median_s", "min_s"}}``.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    ts: dict = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            ts[k].append(time.perf_counter() - t0)
    return {k: {"median_s": statistics.median(v), "min_s": min(v)} for k, v in ts.items()}


def machine() -> str:
    """CPU model, cores, memory, Python and library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    except (ValueError, OSError):
        mem = float("nan")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    import numpy

    libs = [f"numpy {numpy.__version__}"]
    for mod, name in (("scipy", "scipy"), ("skimage", "scikit-image"), ("SimpleITK", "SimpleITK"),
                      ("pydicom", "pydicom")):
        try:
            m = __import__(mod)
            v = m.Version.VersionString() if mod == "SimpleITK" else m.__version__
            libs.append(f"{name} {v}")
        except ImportError:
            pass
    return (f"{cpu}, {cores} cores available, {mem:.0f} GB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, " + ", ".join(libs))


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MB), from ``getrusage``."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / 1024.0**2


def emit(rows: list[dict], json_out: str | None) -> None:
    """Print rows as a table and, when asked, write them as JSON (for ``run_all.py``)."""
    for r in rows:
        ratio = r.get("ratio")
        rs = "" if ratio is None else f"{ratio:.3f}x"
        ok = r.get("ok")
        flag = "" if ok is None else ("  PASS" if ok else "  FAIL")
        print(f"  {r['figure']:<58} {r['ours']:>14} vs {r.get('peer_name', ''):<34} {r.get('peer', ''):>12}  "
              f"{rs:>8}  (target {r.get('target', '-')}){flag}")
    if json_out:
        Path(json_out).write_text(json.dumps(rows, indent=1))
