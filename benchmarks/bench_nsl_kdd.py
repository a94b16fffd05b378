"""Real data: NSL-KDD (5-class subset). The `paper` and `default` training presets, fusion and
baseline each, against a RandomForest (200 trees, balanced), on the same held-out split.

Ingests the repository's `KDDTrain+_20Percent.txt.gz` into a fresh store, runs the real `train`
flow once per preset (and per extra variant) and training seed, and prints medians and ranges
over the seeds, plus each seed's fusion criterion, so that "default beats paper on every seed"
can be read off. The forest is trained on the same train rows (the same encoded features,
unscaled, which a forest does not need) and scored on the same test rows with the same metrics.

    python benchmarks/bench_nsl_kdd.py [--file PATH] [--work DIR] [--trees 200] [--seeds 42,43,44]
        [--variants paper,default,default+sqrt,default+ensemble3,default-log,default-threshold]

A variant may also be a preset with fields set on it, `PRESET+FIELD=JSON[+FIELD=JSON...]`, for
example `default+max_steps=15000+hidden_units=[512,256,128]`.

MLflow and Prefect state go under --work unless MLFLOW_TRACKING_URI / PREFECT_HOME are set.
"""

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FILE = REPO / "tests" / "data" / "nsl-kdd" / "KDDTrain+_20Percent.txt.gz"
COLUMNS = ("precision", "recall", "f1", "fbeta", "far", "cost", "criterion")


def read_split(files: list[str], features: tuple[str, ...]):
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(files, columns=[*features, "label"])
    return np.column_stack([table[c].to_numpy() for c in features]), table["label"].to_numpy()


def random_forest(split, features: tuple[str, ...], trees: int, seed: int) -> dict:
    """A balanced forest fitted on the split's train rows, evaluated on its test rows."""
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    from schemas.firewall import CLASS_NAMES
    from tasks.metrics import confusion_matrix, evaluate_confusion

    x_train, y_train = read_split(split.files("train"), features)
    x_test, y_test = read_split(split.files("test"), features)
    forest = RandomForestClassifier(n_estimators=trees, n_jobs=-1, random_state=seed, class_weight="balanced")
    forest.fit(x_train, y_train)
    names = np.asarray(CLASS_NAMES, dtype=object)
    return evaluate_confusion(confusion_matrix(names[y_test], names[forest.predict(x_test)])).to_dict()


VARIANTS = {
    "paper": ("paper", {}),
    "default": ("default", {}),
    "default+sqrt": ("default", {"class_weights": "sqrt"}),
    "default+ensemble3": ("default", {"ensemble": 3}),
    "default-log": ("default", {"log_transform": False}),
    "default-threshold": ("default", {"tune_threshold": False}),
}


def variant_config(variant: str) -> tuple[str, dict]:
    """A named variant, or a preset with `+FIELD=JSON` overrides."""
    if variant in VARIANTS:
        return VARIANTS[variant]
    preset, *fields = variant.split("+")
    pairs = (field.split("=", 1) for field in fields)
    return preset, {key: json.loads(value) for key, value in pairs}


def median_row(name: str, runs: list[dict]) -> str:
    cells = [f"{statistics.median(r[c] for r in runs):.4f}" for c in COLUMNS]
    spread = [r["criterion"] for r in runs]
    seconds = statistics.median(r["seconds"] for r in runs)
    return f"| {name} | " + " | ".join(cells) + f" | {min(spread):.4f}–{max(spread):.4f} | {seconds:.0f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--trees", type=int, default=200)
    parser.add_argument("--seeds", default="42,43,44", help="Training seeds; medians over them are printed.")
    parser.add_argument(
        "--variants",
        default="paper,default",
        help=f"Among: {', '.join(VARIANTS)}; or PRESET+FIELD=JSON...",
    )
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-nsl-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    sys.path.insert(0, str(REPO))

    from flows.train import train_flow
    from schemas.datasets import NSL_KDD
    from schemas.training import TrainConfig
    from tasks.cluster import dask_client
    from tasks.ingest import ingest_file

    with dask_client() as client:
        report = ingest_file(args.file, work / "store", client, NSL_KDD)
    print(report.summary())
    print(f"out of scope: {report.out_of_scope}")

    seeds = [int(s) for s in args.seeds.split(",")]
    runs: dict[str, list[dict]] = {}
    for seed in seeds:
        for variant in re.split(r",(?![^\[]*\])", args.variants):  # not the commas inside [...]
            preset, overrides = variant_config(variant)
            config = TrainConfig.from_preset(preset, {**overrides, "seed": seed})
            started = time.perf_counter()
            summary = train_flow(work / "store", None, config, work / "out", None, NSL_KDD.name)
            wall = time.perf_counter() - started
            nets = ", ".join(
                f"{n.label} {n.epochs_run} ep (best {n.best_epoch}) b{n.batch_size}" for n in summary.nets
            )
            threshold = summary.threshold.threshold if summary.threshold else config.threshold
            print(f"seed {seed} {variant}: train flow {wall:.1f} s wall; threshold {threshold:.2f}; {nets}")
            test = summary.evaluations["test"]
            runs.setdefault(f"{variant}: fusion", []).append({**test["fusion"], "seconds": wall})
            runs.setdefault(f"{variant}: baseline", []).append({**test["baseline"], "seconds": wall})
        forest = random_forest(summary.split, NSL_KDD.feature_columns, args.trees, seed)
        runs.setdefault(f"RandomForest {args.trees} trees, balanced", []).append({**forest, "seconds": 0.0})

    split = summary.split
    print(f"\nsplit rows per class: {split.counts}")
    test_rows = sum(split.counts["test"].values())
    print(f"\nNSL-KDD held-out test split ({test_rows:,} rows), median of seeds {args.seeds}:\n")
    print("| model | " + " | ".join(COLUMNS) + " | criterion range | train flow s |")
    print("|---|" + "---:|" * (len(COLUMNS) + 2))
    for name, figures in runs.items():
        print(median_row(name, figures))
    print("\nfusion criterion per seed (" + ", ".join(str(s) for s in seeds) + "):")
    for name, figures in runs.items():
        print(f"  {name}: " + ", ".join(f"{f['criterion']:.4f}" for f in figures))
    print("\nper-class F-beta (beta=2) on the test split, median:")
    for name, figures in runs.items():
        classes = figures[0]["per_class"]
        medians = {c: statistics.median(f["per_class"][c]["fbeta"] for f in figures) for c in classes}
        print(f"  {name}: " + ", ".join(f"{c} {v:.3f}" for c, v in medians.items()))
    print(f"\nwork folder: {work}")


if __name__ == "__main__":
    main()
