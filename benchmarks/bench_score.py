"""Scoring speed: the four `full` test days end to end, fused model against the baseline net.

1. Model cost on the same rows: rows/s of the fused model's and the baseline's predict on the
   first 2 M rows of the biggest day, already scaled (goal: fusion at most 1.3x the baseline).
2. End to end: `score_file` on every test day (validation, prediction, Parquet writes), per
   model: wall time, rows/s and peak RSS (goals: 13.3 M rows in at most 3 minutes, 3 GB).

    .venv/bin/python benchmarks/bench_score.py --data DIR --run RUN_DIR
    (DIR: a generated `full` set; RUN_DIR: a `nad train` run folder with fusion/ and baseline/)
"""

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.measure import PeakTreeRss
from tasks.model.fusion import load_predictor
from tasks.scoring.score import score_file

TEST_DAYS = ("0123_firewall.csv", "0124_firewall.csv", "0125_firewall.csv", "0126_firewall.csv")


def predict_rate(predictor, features, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.predict_codes(features)
        times.append(time.perf_counter() - start)
    return len(features) / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=2_000_000)
    args = parser.parse_args()
    models = {name: load_predictor(args.run / name) for name in ("fusion", "baseline")}
    sample = pd.read_csv(args.data / TEST_DAYS[-1], nrows=args.rows)
    features = models["fusion"].preprocessing.transform_raw(sample)
    rates = {name: predict_rate(model, features) for name, model in models.items()}
    flagged = (models["fusion"].predict_codes(features)[0] > 0).mean()
    print(f"1. predict on the same {len(features):,} rows ({flagged:.1%} flagged by the binary net):")
    for name, rate in rates.items():
        print(f"  {name:8s} {rate:,.0f} rows/s")
    print(f"  fusion cost / baseline cost: {rates['baseline'] / rates['fusion']:.2f}x   (goal <= 1.3x)")
    print("\n2. end to end on the test days:")
    for name, model in models.items():
        out = Path(tempfile.mkdtemp(prefix=f"nad-score-{name}-"))
        with PeakTreeRss() as rss:
            start = time.perf_counter()
            rows = sum(
                score_file(args.data / d, model, out, args.data / "truth" / d).rows_read for d in TEST_DAYS
            )
            seconds = time.perf_counter() - start
        print(
            f"  {name:8s} {rows:,} rows in {seconds:.1f} s = {rows / seconds:,.0f} rows/s, "
            f"peak RSS {rss.peak / 2**20:,.0f} MiB   (goals: <= 180 s, <= 3 GB)"
        )
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
