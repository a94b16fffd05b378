"""The paper's schedule on real data: NSL-KDD (5-class subset), fusion and baseline against a RandomForest.

Ingests the shared `KDDTrain+_20Percent.txt` into a fresh store, runs the real `train` flow with
the paper's defaults (Adam 1e-4, batch 4096, epochs 50/200/50, class weights), and prints the
fused model's and the baseline net's figures on the split's held-out test rows. A scikit-learn
RandomForest is trained on the same train rows (the same encoded features, unscaled, which a
forest does not need) and scored on the same test rows with the same metrics.

    python benchmarks/bench_nsl_kdd.py [--file PATH] [--work DIR] [--trees 200] [--seeds 42,43,44]

MLflow and Prefect state go under --work unless MLFLOW_TRACKING_URI / PREFECT_HOME are set.
"""

import argparse
import os
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


def random_forest(split, features: tuple[str, ...], trees: int, balanced: bool, seed: int) -> dict:
    """Fit on the split's train rows and evaluate on its test rows, with the pipeline's metrics."""
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    from schemas.firewall import CLASS_NAMES
    from tasks.metrics import confusion_matrix, evaluate_confusion

    x_train, y_train = read_split(split.files("train"), features)
    x_test, y_test = read_split(split.files("test"), features)
    forest = RandomForestClassifier(
        n_estimators=trees, n_jobs=-1, random_state=seed, class_weight="balanced" if balanced else None
    )
    forest.fit(x_train, y_train)
    names = np.asarray(CLASS_NAMES, dtype=object)
    return evaluate_confusion(confusion_matrix(names[y_test], names[forest.predict(x_test)])).to_dict()


def median_row(name: str, runs: list[dict]) -> str:
    cells = [f"{statistics.median(r[c] for r in runs):.4f}" for c in COLUMNS]
    spread = [r["criterion"] for r in runs]
    return f"| {name} | " + " | ".join(cells) + f" | {min(spread):.4f}–{max(spread):.4f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--trees", type=int, default=200)
    parser.add_argument("--seeds", default="42,43,44", help="Training seeds; medians over them are printed.")
    parser.add_argument(
        "--config", type=Path, default=None, help="A TrainConfig JSON (default: the paper's)."
    )
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-nsl-"))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    sys.path.insert(0, str(REPO))

    from flows.train import train
    from schemas.datasets import NSL_KDD
    from schemas.training import TrainConfig
    from tasks.cluster import dask_client
    from tasks.ingest import ingest_file
    from tasks.split import SplitResult

    with dask_client() as client:
        report = ingest_file(args.file, work / "store", client, NSL_KDD)
    print(report.summary())
    print(f"out of scope: {report.out_of_scope}")

    base = TrainConfig.from_file(args.config)
    runs: dict[str, list[dict]] = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        config = base.model_copy(update={"seed": seed})
        started = time.perf_counter()
        summary = train(work / "store", None, config, work / "out", None, NSL_KDD.name)
        nets = ", ".join(
            f"{n} {v['epochs_run']} epochs {v['seconds']:.1f} s" for n, v in summary["nets"].items()
        )
        print(f"seed {seed}: train flow {time.perf_counter() - started:.1f} s wall; {nets}")
        split = SplitResult(**summary["split_result"])
        test = summary["evaluations"]["test"]
        runs.setdefault("fusion (binary -> attack)", []).append(test["fusion"])
        runs.setdefault("baseline 5-class net", []).append(test["baseline"])
        for balanced in (False, True):
            name = f"RandomForest {args.trees} trees" + (", balanced" if balanced else "")
            figures = random_forest(split, NSL_KDD.feature_columns, args.trees, balanced, seed)
            runs.setdefault(name, []).append(figures)

    print(f"\nsplit rows per class: {split.counts}")
    test_rows = sum(split.counts["test"].values())
    print(f"\nNSL-KDD held-out test split ({test_rows:,} rows), median of seeds {args.seeds}:\n")
    print("| model | " + " | ".join(COLUMNS) + " | criterion range |")
    print("|---|" + "---:|" * (len(COLUMNS) + 1))
    for name, figures in runs.items():
        print(median_row(name, figures))
    print("\nper-class F-beta (beta=2) on the test split, median:")
    for name, figures in runs.items():
        classes = figures[0]["per_class"]
        medians = {c: statistics.median(f["per_class"][c]["fbeta"] for f in figures) for c in classes}
        print(f"  {name}: " + ", ".join(f"{c} {v:.3f}" for c, v in medians.items()))
    print(f"\nwork folder: {work}")


if __name__ == "__main__":
    main()
