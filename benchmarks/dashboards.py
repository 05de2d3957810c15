"""First render time of every dashboard page on the demo data set (target ≤ 2 s per page).

    python benchmarks/dashboards.py [--data-dir DIR] [--households 6] [--days 10] [--repeat 3]

Builds the demo data with ``hems demo --no-serve`` into DIR (default: a temporary directory;
an existing DIR with matching demo data is reused), then, in one process (as a running
Streamlit server is one process):

1. a warm-up pass renders every page once — this pays the process's one-off imports (with
   PYTHONDONTWRITEBYTECODE=1 every module is compiled from source) and is reported separately;
2. for each page, ``--repeat`` times: clear ``st.cache_data`` and render the page with
   ``AppTest`` — the *first render* an analyst sees when opening the page on fresh data.

Prints one line per page and, last, one machine-readable JSON line (``"benchmark": "dashboards"``)
with the median and max seconds per page and whether every page met the target.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_S = 2.0


def build_demo(data_dir: Path, households: int, days: int) -> None:
    """``hems demo --no-serve`` into ``data_dir`` (a no-op when that demo is already built there)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hems.cli",
            "demo",
            "--no-serve",
            "--households",
            str(households),
            "--days",
            str(days),
        ],
        cwd=ROOT,
        env={**os.environ, "HEMS_PROFILE": "local", "HEMS_DATA_DIR": str(data_dir), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if proc.returncode != 0:
        sys.exit(f"demo build failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--households", type=int, default=6)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.repeat < 1 or args.households < 1 or args.days < 1:
        parser.error("--repeat, --households and --days must be at least 1")

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="hems-dash-bench-")) / "var"
    build_demo(data_dir, args.households, args.days)
    os.environ.update({"HEMS_PROFILE": "local", "HEMS_DATA_DIR": str(data_dir)})

    import streamlit as st

    from dashboards.apptest import PAGES, render
    from hems.settings import get_settings

    get_settings.cache_clear()
    warmup: dict[str, float] = {}
    for page in PAGES:
        at, seconds = render(page)
        if at.exception:
            sys.exit(f"{page}: {at.exception[0].message}")
        warmup[page] = round(seconds, 3)

    results: dict[str, dict[str, float]] = {}
    for page in PAGES:
        times = []
        for _ in range(args.repeat):
            st.cache_data.clear()
            at, seconds = render(page)
            if at.exception:
                sys.exit(f"{page}: {at.exception[0].message}")
            times.append(seconds)
        results[page] = {"median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3)}
        print(
            f"{page:<13} first render (cold data cache) median {results[page]['median_s']:.3f} s, "
            f"max {results[page]['max_s']:.3f} s; warm-up pass {warmup[page]:.3f} s"
        )

    worst = max(r["max_s"] for r in results.values())
    print(
        json.dumps(
            {
                "benchmark": "dashboards",
                "households": args.households,
                "days": args.days,
                "repeat": args.repeat,
                "target_s": TARGET_S,
                "pages": results,
                "warmup_s": warmup,
                "worst_s": worst,
                "meets_target": worst <= TARGET_S,
            }
        )
    )


if __name__ == "__main__":
    main()
