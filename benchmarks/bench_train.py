"""Training throughput: the paper's schedule on `demo`, streaming vs in-memory, and `full` epochs.

1. Stream vs in-memory: for each net, a few epochs fed by the Parquet stream
   (`tasks.training.train.make_dataset`) and the same epochs by `model.fit` on numpy arrays of the same
   rows, in this process; the goal is a stream within 25% of in-memory.
2. Side by side vs one after another: the three nets for a few epochs, both ways.
3. The full paper schedule (50/200/50 epochs) on the store, side by side: per-net wall time
   and samples/s.
4. With --full-store: one epoch of each net on that store, extrapolated to the schedule.

    .venv/bin/python benchmarks/bench_train.py --store STORE [--full-store STORE] [--skip-schedule]
"""

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from schemas.datasets import ZYELL
from schemas.training import NetConfig, TrainConfig
from tasks.cluster import dask_client
from tasks.model.preprocess import Preprocessing, fit_preprocessing
from tasks.model.tensorflow_threads import configure_tensorflow
from tasks.training.split import SplitResult, split_store
from tasks.training.train import NETS, build_net, class_weights, make_dataset, train_net


def prepare(store: Path, work: Path, config: TrainConfig) -> tuple[SplitResult, Preprocessing]:
    with dask_client() as client:
        split = split_store(store, None, config.split, work / "splits", client, ZYELL)
        return split, fit_preprocessing(split.files("train"), config.clip, client, ZYELL)


def in_memory(files: list[str], name: str, prep: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    table = pq.read_table(files, columns=[*prep.features, "label"])
    x = prep.transform(np.column_stack([table[c].to_numpy() for c in prep.features]))
    return x, NETS[name].targets(table["label"].to_numpy())


def epoch_seconds(
    name: str, split: SplitResult, prep: Preprocessing, config: TrainConfig, epochs: int
) -> dict:
    """Median seconds per epoch (the first, with tracing, left out), streamed and in memory."""
    spec = NETS[name]
    weights = class_weights(spec.class_counts(split.counts["train"]))
    files = split.files(spec.train_split)
    x, y = in_memory(files, name, prep)
    timings: dict = {"rows": len(y)}
    for mode in ("stream", "memory"):
        model = build_net(spec, config, prep.width)
        data = make_dataset(files, spec, prep, config.batch_size, 1) if mode == "stream" else None
        per_epoch = []
        for _ in range(epochs + 1):
            start = time.perf_counter()
            if data is not None:
                model.fit(data, epochs=1, class_weight=weights, verbose=0, shuffle=False)
            else:
                model.fit(x, y, batch_size=config.batch_size, epochs=1, class_weight=weights, verbose=0)
            per_epoch.append(time.perf_counter() - start)
        timings[mode] = statistics.median(per_epoch[1:])
    return timings


def few_epochs(config: TrainConfig, epochs: int) -> TrainConfig:
    return config.model_copy(update={n: NetConfig(epochs=epochs) for n in NETS})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--full-store", type=Path)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per throughput measurement")
    parser.add_argument("--skip-schedule", action="store_true")
    args = parser.parse_args()
    configure_tensorflow()
    config = TrainConfig()
    work = Path(tempfile.mkdtemp(prefix="nad-train-bench-"))
    split, prep = prepare(args.store, work, config)
    print(f"store {args.store}: train rows {sum(split.counts['train'].values()):,}", flush=True)

    print(f"\n1. seconds per epoch, streamed from Parquet vs numpy in memory (median of {args.epochs})")
    for name in NETS:
        t = epoch_seconds(name, split, prep, config, args.epochs)
        print(
            f"  {name:8s} rows {t['rows']:>9,}  stream {t['stream']:.3f} s  memory {t['memory']:.3f} s  "
            f"stream/memory {t['stream'] / t['memory']:.2f}  "
            f"({t['rows'] / t['stream']:,.0f} samples/s streamed)",
            flush=True,
        )

    print(f"\n2. the three nets for {args.epochs} epochs each: side by side vs one after another")
    short = few_epochs(config, args.epochs)
    for label, workers in (("one after another", 1), ("side by side", 3)):
        start = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda name: train_net(name, split, prep, short, work / "short"), NETS))
        print(f"  {label:18s} {time.perf_counter() - start:.1f} s", flush=True)

    if not args.skip_schedule:
        print("\n3. the paper's schedule (50/200/50 epochs), side by side")
        start = time.perf_counter()
        with ThreadPoolExecutor(3) as pool:
            trained = list(pool.map(lambda n: train_net(n, split, prep, config, work / "paper"), NETS))
        for net in trained:
            speed = f"{net.samples_per_second:,.0f} samples/s"
            print(f"  {net.name:8s} {net.epochs_run:3d} epochs  {net.seconds:7.1f} s  {speed}")
        print(f"  total wall time {time.perf_counter() - start:.1f} s", flush=True)

    if args.full_store:
        print(f"\n4. one epoch of each net on {args.full_store}, extrapolated to the schedule")
        full_split, full_prep = prepare(args.full_store, work / "full", config)
        one = few_epochs(config, 1)
        total = 0.0
        for name in NETS:
            net = train_net(name, full_split, full_prep, one, work / "full-one")
            schedule = getattr(config, name).epochs
            total += net.seconds * schedule
            print(
                f"  {name:8s} rows {net.train_rows:>10,}  1 epoch {net.seconds:6.1f} s  "
                f"x {schedule} = {net.seconds * schedule / 60:6.1f} min",
                flush=True,
            )
        print(f"  schedule, one after another: {total / 60:.1f} min")


if __name__ == "__main__":
    main()
