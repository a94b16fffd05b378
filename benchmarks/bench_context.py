"""Context features: what they cost beside ingestion, and what they bring to a RandomForest.

    .venv/bin/python benchmarks/bench_context.py cost [--data DIR] [--repeats N] [--blocksize B]
    .venv/bin/python benchmarks/bench_context.py quality [--data DIR]

`cost`: wall time and peak RSS (process tree, Dask workers included) of `ingest_files` on a
running local cluster, against the context features of the same days: from the store (map and
reduce on the cluster, as training computes them) and from the files (both passes in one
process, as `nad score` computes them, less the time of parsing each block once, which scoring
spends without context too). Goal: at most the time of ingestion, memory following the block
size. DIR defaults to a fresh `demo` set; give a `full` set for full scale, where one day of
1 M rows is also set against one of 5.5 M.

`quality`: the nets of preset `default` (fusion and baseline), trained by `nad train` with
`--feature-set paper` and `--feature-set context` on the training days and scored by `nad
score` on all four test days together, and a RandomForest (200 trees, balanced class weights)
on the same features as a peer, each without and with voting by source; then a sweep of voting
windows and rules on the context forest. `--no-nets` leaves the nets out.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

from benchmarks.measure import timed
from schemas.context import ZYELL_CONTEXT
from schemas.datasets import ZYELL
from schemas.firewall import APP_VOCABULARY, CLASS_NAMES, FEATURE_COLUMNS, LABEL_COLUMN, NORMAL
from schemas.generation import get_preset
from simulator.generate import TRUTH_DIR, generate_dataset
from tasks.cluster import dask_client
from tasks.ingest.files import ingest_files
from tasks.ingest.lines import plan_blocks
from tasks.ingest.parse import parse_block
from tasks.ingest.scan import DEFAULT_BLOCKSIZE, resolve_partition, scan_file
from tasks.metrics import evaluate_labels
from tasks.model.context import context_features, frame_context, stored_rows, valid_rows, write_context
from tasks.scoring.blocks import context_pass
from tasks.scoring.voting import VOTE_RULES, Vote, vote_by_source

BIG_DAY = "0126_firewall.csv"

# ---------------------------------------------------------------- cost


def ingest(paths: list[Path], store: Path, client, blocksize: int) -> None:
    shutil.rmtree(store, ignore_errors=True)
    for outcome in ingest_files(paths, store, client, ZYELL, blocksize=blocksize):
        assert outcome.report and outcome.report.balanced, outcome


def store_context(store: Path, work: Path, client) -> None:
    """Training's path: both passes on the cluster over each day's parts, two days at a time."""
    shutil.rmtree(work, ignore_errors=True)
    read = partial(stored_rows, spec=ZYELL_CONTEXT)
    days = sorted(store.glob("day=*"))

    def one(day: Path) -> None:
        parts = sorted(day.glob("part-*.parquet"))
        write_context(parts, read, ZYELL_CONTEXT, work / "tables" / day.name, client)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(one, days))


def file_context(paths: list[Path], work: Path, blocksize: int) -> float:
    """Scoring's path, as `nad score` runs it, in this process: pass 1 parses each block once and
    keeps its rows, pass 2 reads them back and looks their features up. Returns the seconds
    beyond parsing every block once, which scoring does without context too."""
    shutil.rmtree(work, ignore_errors=True)
    extra = 0.0
    for path in paths:
        scan = scan_file(path, ZYELL, blocksize)
        blocks = plan_blocks(scan, resolve_partition(path, scan, ZYELL, None), ZYELL)
        parsing, _ = timed(lambda blocks=blocks: [parse_block(block) for block in blocks])
        started = time.perf_counter()
        tables, load = context_pass(blocks, ZYELL_CONTEXT, work / path.stem)
        for number in range(len(blocks)):
            context_features(valid_rows(load(number)), tables, number)
        extra += time.perf_counter() - started - parsing
    return extra


def head_lines(source: Path, target: Path, lines: int) -> Path:
    with open(source, "rb") as src, open(target, "wb") as dst:
        for _ in range(lines + 1):
            dst.write(src.readline())
    return target


def cost(data: Path, work: Path, repeats: int, blocksize: int) -> None:
    paths = sorted(data.glob("*_firewall.csv"))
    rows = sum(p.read_bytes().count(b"\n") - 1 for p in paths)
    size = sum(p.stat().st_size for p in paths) / 2**20
    print(f"{len(paths)} days, {rows:,} rows, {size:,.0f} MiB, blocks of {blocksize / 2**20:g} MiB")
    runs: dict[str, list[tuple[float, int]]] = {"ingest": [], "store": [], "file": []}
    with dask_client() as client:
        for _ in range(repeats):
            runs["ingest"].append(timed(lambda: ingest(paths, work / "store", client, blocksize)))
            runs["store"].append(timed(lambda: store_context(work / "store", work / "context", client)))
            extra = [0.0]

            def from_files(extra=extra) -> None:
                extra[0] = file_context(paths, work / "file", blocksize)

            peak = timed(from_files)[1]
            runs["file"].append((extra[0], peak))
        print_cost(runs, rows)
        if (data / BIG_DAY).stat().st_size > 8 * blocksize:
            big_day_memory(data, work, client, blocksize)


def print_cost(runs: dict[str, list[tuple[float, int]]], rows: int) -> None:
    labels = {
        "ingest": "`ingest_files` (reference)",
        "store": "context from the store, both passes on the cluster",
        "file": "context from the files, as nad score: both passes in process, beyond parsing",
    }
    reference = statistics.median(s for s, _ in runs["ingest"])
    print("\n| what | seconds (median) | rows/s | ratio to ingest | peak RSS |\n|---|---:|---:|---:|---:|")
    for key, label in labels.items():
        seconds = statistics.median(s for s, _ in runs[key])
        peak = max(p for _, p in runs[key]) / 2**20
        ratio = seconds / reference
        print(f"| {label} | {seconds:.1f} | {rows / seconds:,.0f} | {ratio:.2f} | {peak:,.0f} MiB |")
    print(f"\nruns: { {k: [round(s, 1) for s, _ in v] for k, v in runs.items()} }")


def big_day_memory(data: Path, work: Path, client, blocksize: int) -> None:
    """Peak memory of the context of a day of 1 M rows against one of 5.5 M: it follows the block."""
    (work / "small").mkdir(exist_ok=True)
    small = head_lines(data / BIG_DAY, work / "small" / BIG_DAY, 1_000_000)
    for label, path in (("1.0 M rows", small), ("5.5 M rows", data / BIG_DAY)):
        ingest([path], work / "store-one", client, blocksize)
        seconds, peak = timed(lambda: store_context(work / "store-one", work / "context-one", client))
        print(f"one day of {label}: context from the store {seconds:.1f} s, peak RSS {peak / 2**20:,.0f} MiB")


# ---------------------------------------------------------------- quality


def load_day(path: Path, truth: Path | None) -> pd.DataFrame:
    frame = pd.read_csv(path)
    frame["time"] = pd.to_datetime(frame["time"])
    if truth is not None:
        frame[LABEL_COLUMN] = pd.read_csv(truth)[LABEL_COLUMN]
    return frame


def feature_sets(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    paper = frame[list(FEATURE_COLUMNS)].copy()
    paper["app"] = pd.Categorical(frame["app"], categories=APP_VOCABULARY).codes
    return {"paper": paper, "context": pd.concat([paper, frame_context(frame, ZYELL_CONTEXT)], axis=1)}


def days_of(data: Path, split: str) -> list[tuple[pd.DataFrame, dict[str, pd.DataFrame]]]:
    days = []
    for plan in get_preset("demo").days:
        if plan.split == split:
            truth = data / TRUTH_DIR / plan.file_name if split == "test" else None
            frame = load_day(data / plan.file_name, truth)
            days.append((frame, feature_sets(frame)))
    return days


def forest(train, name: str) -> RandomForestClassifier:
    model = RandomForestClassifier(n_estimators=200, class_weight="balanced", n_jobs=2, random_state=0)
    x = pd.concat([features[name] for _, features in train], ignore_index=True)
    return model.fit(x, pd.concat([frame[LABEL_COLUMN] for frame, _ in train], ignore_index=True))


def predictions(model, test, name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per test day: predicted classes and attack probability (1 - P(Normal))."""
    normal = list(model.classes_).index(NORMAL)
    out = []
    for _, features in test:
        probabilities = model.predict_proba(features[name])
        out.append((model.classes_[probabilities.argmax(axis=1)], 1 - probabilities[:, normal]))
    return out


def voted(test, predicted, vote: Vote | None) -> np.ndarray:
    days = [
        labels if vote is None else vote_by_source(frame["time"], frame["src"], labels, probability, vote)
        for (frame, _), (labels, probability) in zip(test, predicted, strict=True)
    ]
    return np.concatenate(days)


def table_line(name: str, truth: np.ndarray, predicted: np.ndarray) -> str:
    e = evaluate_labels(truth, predicted)
    per_class = " | ".join(f"{e.per_class[c]['fbeta']:.3f}" for c in CLASS_NAMES)
    return f"| {name} | {e.criterion:.4f} | {e.fbeta:.4f} | {e.far:.4f} | {per_class} |"


def nad(*args: object, env: dict[str, str]) -> None:
    command = [str(Path(sys.executable).parent / "nad"), *map(str, args)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")


def net_predictions(data: Path, work: Path) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """`nad train --preset default --feature-set F` on the training days, then `nad score` of the
    test days with each predictor: per test day, predicted classes and attack probability."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}", "PREFECT_HOME": str(work)}
    store, tests = work / "store", [data / p.file_name for p in get_preset("demo").days if p.split == "test"]
    nad("backfill", data, "--store", store, env=env)
    found = {}
    for feature_set in ("paper", "context"):
        out = work / feature_set
        started = time.perf_counter()
        nad(
            "train",
            "--store",
            store,
            "--out",
            out,
            "--preset",
            "default",
            "--feature-set",
            feature_set,
            env=env,
        )
        print(f"nad train --feature-set {feature_set}: {time.perf_counter() - started:.0f} s", flush=True)
        for kind in ("fusion", "baseline"):
            nad("score", *tests, "--out", out / kind, "--model", out / "runs" / "latest" / kind, env=env)
            found[f"{kind} {feature_set}"] = [scored_day(out / kind, path) for path in tests]
    return found


def scored_day(folder: Path, path: Path) -> tuple[np.ndarray, np.ndarray]:
    table = pd.read_parquet(folder / f"{path.stem}.predictions.parquet").sort_values("line")
    if not np.array_equal(table["line"].to_numpy(), np.arange(len(table)) + 2):
        raise RuntimeError(f"{path}: some rows were not scored")
    return table["pred_label"].to_numpy(dtype=object), table["attack_probability"].to_numpy()


def quality(data: Path, work: Path, with_nets: bool) -> None:
    train, test = days_of(data, "train"), days_of(data, "test")
    truth = np.concatenate([frame[LABEL_COLUMN].to_numpy(dtype=object) for frame, _ in test])
    print(f"train {sum(len(f) for f, _ in train):,} rows, test {len(truth):,} rows (all four test days)\n")
    header = "| features | criterion | macro F2 | FAR | " + " | ".join(f"F2 {c}" for c in CLASS_NAMES) + " |"
    print(header + "\n|---|" + "---:|" * (3 + len(CLASS_NAMES)))
    scored = {f"RF {name}": predictions(forest(train, name), test, name) for name in ("paper", "context")}
    if with_nets:
        scored |= net_predictions(data, work)
    for name, predicted in scored.items():
        print(table_line(name, truth, voted(test, predicted, None)))
        print(table_line(f"{name} + voting (60 s, majority)", truth, voted(test, predicted, Vote())))
    print("\nvoting on the context forest's predictions:\n")
    print(header + "\n|---|" + "---:|" * (3 + len(CLASS_NAMES)))
    for seconds in (10, 60, 600, 3600):
        for rule in VOTE_RULES:
            line = table_line(
                f"{seconds} s, {rule}", truth, voted(test, scored["RF context"], Vote(seconds, rule))
            )
            print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["cost", "quality"])
    parser.add_argument("--data", type=Path, help="a generated data set (default: a fresh demo set, seed 7)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--blocksize", type=int, default=DEFAULT_BLOCKSIZE)
    parser.add_argument("--no-nets", dest="nets", action="store_false", help="quality: the forests only")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nad-context-bench-"))
    try:
        data = args.data
        if data is None:
            data = work / "demo"
            generate_dataset(get_preset("demo"), 7, data)
        if args.part == "cost":
            cost(data, work, args.repeats, args.blocksize)
        else:
            quality(data, work, args.nets)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
