"""Regenerate ``sample_data/nhp_study`` (the committed sample study).

Run from the repository root::

    python sample_data/make_sample.py

The output is deterministic: the same spectrack version writes byte-identical
files. The folder is emptied first so no stale file survives.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from spectrack.phantom.sample import SAMPLE_ARGS, write_sample  # noqa: E402


def main() -> int:
    out = HERE / "nhp_study"
    if out.exists():
        shutil.rmtree(out)
    truth = write_sample(out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({size / 1e6:.2f} MB, {len(truth['timepoints'])} time points, "
          f"arguments {SAMPLE_ARGS})")
    for tp in truth["timepoints"]:
        r = tp["regions"]
        print(f"  tp{tp['index']} {tp['acquisition_start']}  t={tp['time_h']:5.2f} h  "
              f"brain {r['brain']['pct_id']:6.2f} %ID  canal_cervical {r['canal_cervical']['pct_id']:6.2f}  "
              f"liver {r['liver']['pct_id']:6.2f}  excreted {tp['excreted_pct_id']:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
