"""The paper's schedule on real data: NSL-KDD (5-class subset), fusion and baseline against a RandomForest.

Ingests the shared `KDDTrain+_20Percent.txt` into a fresh store, runs the real `train` flow with
the paper's defaults (Adam 1e-4, batch 4096, epochs 50/200/50, class weights), and prints the
fused model's and the baseline net's figures on the split's held-out test rows. A scikit-learn
RandomForest is trained on the same train rows (the same encoded features, unscaled, which a
forest does not need) and scored on the same test rows with the same metrics.

    python benchmarks/bench_nsl_kdd.py [--file PATH] [--work DIR] [--trees 200]

MLflow and Prefect state go under --work unless MLFLOW_TRACKING_URI / PREFECT_HOME are set.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FILE = REPO.parent / "shared" / "datasets" / "nsl-kdd" / "KDDTrain+_20Percent.txt"
COLUMNS = ("precision", "recall", "f1", "fbeta", "far", "cost", "criterion")


def read_split(files: list[str], features: tuple[str, ...]):
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(files, columns=[*features, "label"])
    return np.column_stack([table[c].to_numpy() for c in features]), table["label"].to_numpy()


def random_forest(split, features: tuple[str, ...], trees: int, balanced: bool) -> tuple[dict, float]:
    """Fit on the split's train rows, evaluate on its test rows; figures and fit seconds."""
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    from schemas.firewall import CLASS_NAMES
    from tasks.metrics import confusion_matrix, evaluate_confusion

    x_train, y_train = read_split(split.files("train"), features)
    x_test, y_test = read_split(split.files("test"), features)
    forest = RandomForestClassifier(
        n_estimators=trees, n_jobs=-1, random_state=0, class_weight="balanced" if balanced else None
    )
    started = time.perf_counter()
    forest.fit(x_train, y_train)
    seconds = time.perf_counter() - started
    names = [CLASS_NAMES[i] for i in forest.predict(x_test)]
    confusion = confusion_matrix(np.asarray([CLASS_NAMES[i] for i in y_test]), np.asarray(names))
    return evaluate_confusion(confusion).to_dict(), seconds


def row(name: str, figures: dict) -> str:
    return f"| {name} | " + " | ".join(f"{figures[c]:.4f}" for c in COLUMNS) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--trees", type=int, default=200)
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

    config = TrainConfig()
    started = time.perf_counter()
    summary = train(work / "store", None, config, work / "out", None, NSL_KDD.name)
    train_seconds = time.perf_counter() - started
    split = SplitResult(**summary["split_result"])
    print(f"\nsplit rows: { {s: sum(c.values()) for s, c in split.counts.items()} }")
    print(f"test rows per class: {split.counts['test']}")
    nets = ", ".join(f"{n} {v['epochs_run']} epochs {v['seconds']:.1f} s" for n, v in summary["nets"].items())
    print(f"train flow (paper schedule): {train_seconds:.1f} s wall; {nets}")

    test = summary["evaluations"]["test"]
    lines = ["| model | " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    models = {"fusion (binary -> attack)": test["fusion"], "baseline 5-class net": test["baseline"]}
    for balanced in (False, True):
        figures, seconds = random_forest(split, NSL_KDD.feature_columns, args.trees, balanced)
        name = f"RandomForest {args.trees} trees" + (", balanced" if balanced else "")
        models[name] = figures
        print(f"{name}: fit {seconds:.1f} s")
    lines += [row(name, figures) for name, figures in models.items()]
    print(f"\nNSL-KDD held-out test split ({sum(split.counts['test'].values()):,} rows):\n")
    print("\n".join(lines))
    print("\nper-class F-beta (beta=2) on the test split:")
    for name, figures in models.items():
        print(f"  {name}: " + ", ".join(f"{c} {m['fbeta']:.3f}" for c, m in figures["per_class"].items()))
    print(f"\nwork folder: {work}")


if __name__ == "__main__":
    main()
