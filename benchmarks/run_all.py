"""Run every benchmark of spectrack against its peers and print one table of ratios.

Run ``python benchmarks/run_all.py`` (about 5 minutes on 2 cores; add
``--quick`` for smaller data). Each benchmark runs in its own process (so its
peak memory is its own) and writes its rows as JSON; this script prints them
as the Markdown table kept in ``benchmarks/README.md``. Ratios are ours /
peer measured in the same run, so a busy machine slows both sides alike.
``bench_batch.py`` (throughput of ``spectrack batch``) is separate.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import machine  # noqa: E402

BENCHES = {
    "stats": ("bench_stats.py", [], ["--size", "128", "--frames", "3", "--repeat", "3"]),
    "dicom": ("bench_dicom.py", [], ["--slices", "100", "--size", "256", "--repeat", "3"]),
    "end_to_end": ("bench_end_to_end.py", [], ["--ct", "256,256,150", "--spect", "64"]),
    "textbook": ("bench_textbook.py", [], ["--ct", "256,256,150", "--spect", "64", "--repeat", "1",
                                          "--jobs", "textbook,minimal,full"]),
}


def table(rows: list[dict]) -> str:
    out = ["| figure | spectrack | peer | peer time | ratio | target | |",
           "|---|---:|---|---:|---:|---|---|"]
    for r in rows:
        ratio = r.get("ratio")
        ok = r.get("ok")
        out.append(f"| {r['figure']} | {r['ours']} | {r.get('peer_name', '')} | {r.get('peer', '')} | "
                   f"{'' if ratio is None else f'{ratio:.2f}x'} | {r.get('target', '')} | "
                   f"{'' if ok is None else ('pass' if ok else '**fail**')} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller data (a smoke run, not the reported figures)")
    ap.add_argument("--only", default=",".join(BENCHES), help="comma-separated subset: " + ", ".join(BENCHES))
    a = ap.parse_args(argv)
    print(machine())
    rows: list[dict] = []
    failed = []
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="spectrack-bench-") as tmp:
        for name in a.only.split(","):
            script, full, quick = BENCHES[name]
            js = Path(tmp) / f"{name}.json"
            cmd = [sys.executable, str(HERE / script), "--json", str(js)] + (quick if a.quick else full)
            print(f"\n== {name}: {' '.join(Path(c).name if c.endswith('.py') else c for c in cmd[1:])}", flush=True)
            t0 = time.perf_counter()
            r = subprocess.run(cmd, text=True)
            print(f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
            if r.returncode != 0 or not js.exists():
                failed.append(name)
                continue
            rows += json.loads(js.read_text())
    print(f"\nAll benchmarks in {time.perf_counter() - t_all:.0f} s. Ratio = spectrack / peer (lower is better).\n")
    print(table(rows))
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
