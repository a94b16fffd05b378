"""Generate the `full` preset (22.5 M rows) and print rows/s, wall time and peak RSS.

Goal on 2 cores: at most 5 minutes and at most 4 GB peak memory.

    .venv/bin/python benchmarks/bench_generate.py [--preset full] [--seed N] [--out DIR (kept)]
"""

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

from schemas.generation import get_preset
from simulator.generate import generate_dataset


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="full", choices=["tiny", "demo", "full"])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, help="keep the files here (default: a temporary folder)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="nad-bench-"))
    preset = get_preset(args.preset)
    start = time.perf_counter()
    summaries = generate_dataset(preset, args.seed, out)
    wall = time.perf_counter() - start
    rows = sum(s.rows for s in summaries)
    size = sum(p.stat().st_size for p in out.rglob("*.csv"))
    print(f"preset {preset.name}: {rows:,} rows in {len(summaries)} days, {size / 2**30:.2f} GiB of CSV")
    print(f"wall time {wall:.1f} s   rows/s {rows / wall:,.0f}   peak RSS {peak_rss_mib():,.0f} MiB")
    if args.out is None:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
