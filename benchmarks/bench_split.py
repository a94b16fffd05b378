"""Which split grouping makes the held-out figure predict the test days? (demo set, a forest)

For each grouping (the paper's row split, and whole clock blocks of 5, 10, 30 and 60 minutes of
one day), the demo training days are split 64/16/20 with the pipeline's own assignment functions
(`tasks/training/split.py`); a RandomForest (100 balanced trees) is fitted on the train rows and scored on
the held-out test rows and on the four test days (another period). The grouping whose held-out
macro F2 is nearest the test days' predicts them best. A leave-one-day-out run (train on two
training days, test on the third) shows how much of the gap is the days' own difference.

    .venv/bin/python benchmarks/bench_split.py [--data DIR] [--features paper|context] [--seeds 42,43,44]
"""

import argparse
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

from benchmarks.bench_context import days_of
from schemas.firewall import CLASS_NAMES, LABEL_COLUMN
from schemas.training import SplitConfig
from tasks.metrics import evaluate_labels
from tasks.training.split import (
    CLOCK,
    ROW,
    Assignment,
    StorePart,
    assign_groups,
    class_thresholds,
    group_ids,
    row_keys,
)

GROUPINGS = (
    ("row", None),
    ("clock 1 min", 1),
    ("clock 2 min", 2),
    ("clock 5 min", 5),
    ("clock 10 min", 10),
    ("clock 60 min", 60),
)


def day_rows(days) -> pd.DataFrame:
    """Label code, partition number, line and time of every training row, day after day."""
    frames = []
    for frame, _ in days:
        partition = StorePart(f"day={frame['time'].iloc[0]:%Y-%m-%d}", "", "zyell").number
        frames.append(
            pd.DataFrame(
                {
                    "label": pd.Categorical(frame[LABEL_COLUMN], categories=CLASS_NAMES).codes,
                    "partition": np.uint32(partition),
                    "line": np.arange(len(frame), dtype=np.int64) + 2,
                    "time": frame["time"].to_numpy(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def assign(rows: pd.DataFrame, minutes: int | None, seed: int) -> np.ndarray:
    """0/1/2 for every row, as `split_store` assigns them."""
    cfg = SplitConfig(seed=seed, group=ROW if minutes is None else CLOCK, group_minutes=minutes or 10)
    labels, partitions = rows["label"].to_numpy(), rows["partition"].to_numpy()
    if minutes is None:
        keys = row_keys(seed, partitions, rows["line"].to_numpy())
        return Assignment(ROW, seed, thresholds=class_thresholds(labels, keys, cfg)).splits(
            labels, partitions, rows["line"].to_numpy(), None
        )
    ids = group_ids(partitions, rows["line"].to_numpy(), rows["time"].to_numpy(), minutes)
    table = pd.crosstab(ids, labels).reindex(columns=range(len(CLASS_NAMES)), fill_value=0)
    groups = assign_groups(table.index.to_numpy(dtype=np.uint64), table.to_numpy(), cfg)
    return Assignment(CLOCK, seed, minutes, groups=dict(zip(table.index, groups, strict=True))).of_groups(ids)


def forest(x: pd.DataFrame, y: np.ndarray, seed: int) -> RandomForestClassifier:
    model = RandomForestClassifier(n_estimators=100, class_weight="balanced", n_jobs=2, random_state=seed)
    return model.fit(x, y)


def figures(model, x: pd.DataFrame, truth: np.ndarray) -> tuple[float, float, float]:
    e = evaluate_labels(truth, model.predict(x))
    return e.fbeta, e.criterion, e.far


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/demo"))
    parser.add_argument("--features", default="context", choices=("paper", "context"))
    parser.add_argument("--seeds", default="42,43,44")
    args = parser.parse_args()
    train_days, test_days = days_of(args.data, "train"), days_of(args.data, "test")
    x = pd.concat([f[args.features] for _, f in train_days], ignore_index=True)
    y = np.concatenate([frame[LABEL_COLUMN].to_numpy(dtype=object) for frame, _ in train_days])
    x_days = pd.concat([f[args.features] for _, f in test_days], ignore_index=True)
    y_days = np.concatenate([frame[LABEL_COLUMN].to_numpy(dtype=object) for frame, _ in test_days])
    rows = day_rows(train_days)
    print(
        f"demo {args.data}, features {args.features}: train days {len(x):,} rows, test days {len(x_days):,}"
    )
    columns = ("held-out macro F2", "test days macro F2", "gap", "held-out criterion", "test days criterion")
    print("\n| grouping | " + " | ".join(columns) + " | test days FAR |\n|---|" + "---:|" * 6)
    for name, minutes in GROUPINGS:
        found = []
        for seed in (int(s) for s in args.seeds.split(",")):
            splits = assign(rows, minutes, seed)
            train, test = splits == 0, splits == 2
            model = forest(x[train], y[train], seed)
            found.append((*figures(model, x[test], y[test]), *figures(model, x_days, y_days)))
        held, days = statistics.median(f[0] for f in found), statistics.median(f[3] for f in found)
        crit = (statistics.median(f[1] for f in found), statistics.median(f[4] for f in found))
        far = statistics.median(f[5] for f in found)
        cells = f"{held:.4f} | {days:.4f} | {held - days:+.4f} | {crit[0]:.4f} | {crit[1]:.4f}"
        print(f"| {name} | {cells} | {far:.4%} |")
    print("\nleave one training day out (train on two, test on the third; seed 42):\n")
    print("| held-out day | macro F2 | criterion | FAR |\n|---|---:|---:|---:|")
    for index, (frame, _) in enumerate(train_days):
        held_out = np.concatenate([np.full(len(f), i == index) for i, (f, _) in enumerate(train_days)])
        model = forest(x[~held_out], y[~held_out], 42)
        fbeta, criterion, far = figures(model, x[held_out], y[held_out])
        print(f"| {frame['time'].iloc[0]:%Y-%m-%d} | {fbeta:.4f} | {criterion:.4f} | {far:.4%} |")


if __name__ == "__main__":
    main()
