"""Scoring throughput: one process against a Dask cluster of two single-thread workers.

The same files, the same model and the same blocks are scored with `score_file` in this process
(TensorFlow on every core, the next block parsed meanwhile), then with the blocks on the
cluster (`nad score --dask-address`), the files one after another in both cases. Each side is
timed `--repeats` times (after a warm-up run of each, which also loads the model on the
workers); the medians' ratio is printed. The predictions are checked to be equal.

    .venv/bin/python benchmarks/bench_score_cluster.py --data DIR --model PREDICTOR [--dask-address ADDR]
    (DIR: a generated set, e.g. `nad generate --preset demo`, whose test days are scored;
     PREDICTOR: a predictor folder; without an address, a LocalCluster of 2 worker processes)

At small scale: `--days 1 --blocksize-kib 256` scores one test day in 256 KiB blocks.
"""

import argparse
import shutil
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import pandas as pd
from distributed import Client, LocalCluster

from tasks.model.fusion import load_predictor
from tasks.scoring.score import score_file
from tasks.scoring.score_cluster import cluster_scorer, load_model_on_cluster

TEST_DAYS = ("0123_firewall.csv", "0124_firewall.csv", "0125_firewall.csv", "0126_firewall.csv")


def timed_run(files: list[Path], predictor, blocksize: int, scorer=None) -> tuple[float, int, Path]:
    """Seconds and rows to score `files` into a new folder (returned; the caller removes it)."""
    out = Path(tempfile.mkdtemp(prefix="nad-bench-score-"))
    start = time.perf_counter()
    rows = sum(score_file(f, predictor, out, scorer=scorer, blocksize=blocksize).rows_read for f in files)
    return time.perf_counter() - start, rows, out


def median_rate(files, predictor, blocksize, repeats: int, scorer=None) -> tuple[float, int, Path]:
    """Median rows/s over `repeats` runs after a warm-up; the last run's folder."""
    shutil.rmtree(timed_run(files, predictor, blocksize, scorer)[2])
    seconds, out = [], None
    for _ in range(repeats):
        if out is not None:
            shutil.rmtree(out)
        took, rows, out = timed_run(files, predictor, blocksize, scorer)
        seconds.append(took)
    return rows / statistics.median(seconds), rows, out


def same_predictions(left: Path, right: Path) -> bool:
    names = sorted(p.name for p in left.glob("*.predictions.parquet"))
    return all(pd.read_parquet(left / n).equals(pd.read_parquet(right / n)) for n in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--dask-address", default=None)
    parser.add_argument("--days", type=int, default=len(TEST_DAYS))
    parser.add_argument("--blocksize-kib", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    files = [args.data / day for day in TEST_DAYS[: args.days]]
    blocksize = args.blocksize_kib * 1024
    predictor = load_predictor(args.model)
    local_rate, rows, local_out = median_rate(files, predictor, blocksize, args.repeats)
    with ExitStack() as stack:
        if args.dask_address:
            client = stack.enter_context(Client(args.dask_address))
        else:
            cluster = stack.enter_context(
                LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0")
            )
            client = stack.enter_context(Client(cluster))
        workers = len(client.scheduler_info()["workers"])
        scorer = cluster_scorer(client, load_model_on_cluster(client, args.model))
        cluster_rate, _, cluster_out = median_rate(files, predictor, blocksize, args.repeats, scorer)
    equal = same_predictions(local_out, cluster_out)
    for folder in (local_out, cluster_out):
        shutil.rmtree(folder)
    print(
        f"{len(files)} days, {rows:,} rows, blocks of {args.blocksize_kib:,} KiB, median of {args.repeats}:"
    )
    print(f"  1 process:           {local_rate:10,.0f} rows/s")
    print(f"  {workers} Dask workers:     {cluster_rate:10,.0f} rows/s")
    print(f"  cluster / 1 process: {cluster_rate / local_rate:.2f}x   (predictions equal: {equal})")


if __name__ == "__main__":
    main()
