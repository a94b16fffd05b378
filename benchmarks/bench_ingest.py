"""Ingest the `full` training days and compare with a bare pyarrow read of the same files.

Prints wall times, their ratio (goal: at most 3x), and the peak RSS of the whole process
tree, Dask workers included (goal: at most 3 GB). Then ingests a 1 M-row and a 5.5 M-row day
to show that peak memory does not grow with the file size.

    .venv/bin/python benchmarks/bench_ingest.py [--data DIR]   # DIR: a generated `full` set
"""

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

import pyarrow.csv as pacsv

from benchmarks.measure import timed
from schemas.datasets import ZYELL
from schemas.generation import get_preset
from simulator.generate import generate_dataset
from tasks.cluster import dask_client
from tasks.ingest.files import ingest_files

TRAIN_FILES = ("1203_firewall.csv", "1210_firewall.csv", "1216_firewall.csv")
BIG_DAY = "0126_firewall.csv"


def bare_read(paths: list[Path]) -> None:
    for path in paths:
        pacsv.read_csv(path)


def ingest(paths: list[Path], store: Path, client=None) -> None:
    """With a client: on a running cluster; without: start a local one, as `nad ingest` does."""
    shutil.rmtree(store, ignore_errors=True)
    if client is None:
        with dask_client() as own:
            return ingest(paths, store, own)
    for outcome in ingest_files(paths, store, client, ZYELL):
        assert outcome.report and outcome.report.balanced, outcome


def head_lines(source: Path, target: Path, lines: int) -> Path:
    with open(source, "rb") as src, open(target, "wb") as dst:
        for _ in range(lines + 1):
            dst.write(src.readline())
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a generated `full` data set (default: generate it)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nad-ingest-bench-"))
    data = args.data
    if data is None:
        data = work / "full"
        generate_dataset(get_preset("full"), 7, data)
    paths = [data / name for name in TRAIN_FILES]
    rows = sum(p.read_bytes().count(b"\n") - 1 for p in paths)
    print(
        f"{len(paths)} training days, {rows:,} rows, {sum(p.stat().st_size for p in paths) / 2**30:.2f} GiB"
    )
    bare, cold, warm = [], [], []
    with dask_client() as client:
        for _ in range(args.repeats):
            bare.append(timed(lambda: bare_read(paths)))
            warm.append(timed(lambda: ingest(paths, work / "store", client)))
            cold.append(timed(lambda: ingest(paths, work / "store")))
    bare_s = statistics.median(b[0] for b in bare)
    print(f"bare pyarrow.csv.read_csv: median {bare_s:.1f} s  (runs {[round(b[0], 1) for b in bare]})")
    for label, runs in (("on a running local cluster", warm), ("starting its own cluster", cold)):
        seconds = statistics.median(r[0] for r in runs)
        print(
            f"nad ingest {label}: median {seconds:.1f} s (runs {[round(r[0], 1) for r in runs]}), "
            f"ratio {seconds / bare_s:.2f}x (goal <= 3x), peak RSS {max(r[1] for r in runs) / 2**20:,.0f} MiB"
        )
    (work / "small").mkdir()
    small = head_lines(data / BIG_DAY, work / "small" / BIG_DAY, 1_000_000)
    for label, path in (("1.0 M rows", small), ("5.5 M rows", data / BIG_DAY)):
        seconds, peak = timed(lambda path=path: ingest([path], work / "store-one"))
        print(f"one day of {label}: {seconds:.1f} s, peak RSS {peak / 2**20:,.0f} MiB")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
