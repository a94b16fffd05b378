"""Real data: NSL-KDD (5-class subset). Training presets and variants, fusion and baseline each,
against a RandomForest (balanced), on rows of another period and on the held-out split.

Ingests the repository's `KDDTrain+_20Percent.txt.gz` into a fresh store and runs the real `train`
flow once per variant (a preset, with or without fields set on it) and training seed. Every run's
fused and baseline predictors then score the repository's `KDDTest+_A.txt.gz` (half of NSL-KDD's
`KDDTest+`, another period than the training file) with `tasks.scoring.score.score_file`, as `nad score`
does: its in-scope rows are the "other period" rows. Nothing trains or stops early on them.

The forest is trained once per seed (and tree count) on the split's train rows, with the encoded
features the nets start from (unscaled, which a forest does not need), and evaluated with the same
metrics on the split's test rows and on the other-period rows that the nets were scored on: the
rows of the fused predictor's predictions file, encoded by the split's own function
(`tasks.model.preprocess.encode_spec_features`).

Prints first the other-period table (medians over the seeds of criterion, false-alarm rate, cost
and macro F2, the criterion range, and each seed's criterion and FAR), then the held-out split
table, so that "default beats paper on every seed" can be read off for both.

    python benchmarks/bench_nsl_kdd.py [--file PATH] [--other-file PATH] [--work DIR] [--trees 200]
        [--seeds 42,43,44] [--out-json PATH]
        [--variants paper,default,default+sqrt,default+ensemble3,default-log,default-threshold]

A variant may also be a preset with fields set on it, `PRESET+FIELD=JSON[+FIELD=JSON...]`, for
example `default+max_steps=15000+hidden_units=[512,256,128]+binary={"epochs":50}`. `--out-json`
writes every per-seed figure (rewritten after each run, so a stopped benchmark keeps what it did).

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
OTHER_FILE = REPO / "tests" / "data" / "nsl-kdd" / "KDDTest+_A.txt.gz"
COLUMNS = ("precision", "recall", "f1", "fbeta", "far", "cost", "criterion")
OTHER_COLUMNS = ("criterion", "far", "cost", "fbeta")
OTHER_HEADINGS = ("criterion", "FAR", "cost", "macro F2")


def read_split(files: list[str], features: tuple[str, ...]):
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(files, columns=[*features, "label"])
    return np.column_stack([table[c].to_numpy() for c in features]), table["label"].to_numpy()


def scored_rows(predictions: Path):
    """The encoded features and class codes of the rows in a `score_file` predictions file: the
    valid in-scope rows of the scored file, encoded as the split encodes the store's rows."""
    import pyarrow.parquet as pq

    from schemas.datasets import NSL_KDD
    from tasks.ingest.parse import label_codes
    from tasks.model.preprocess import encode_spec_features

    frame = pq.read_table(predictions, columns=list(NSL_KDD.columns)).to_pandas()
    labels = label_codes(frame[NSL_KDD.label_column], NSL_KDD)
    if (labels < 0).any():
        raise RuntimeError(f"{predictions}: {int((labels < 0).sum())} rows without one of the five classes")
    return encode_spec_features(frame, NSL_KDD).to_numpy(), labels


def random_forest(split, other, features: tuple[str, ...], trees: int, seed: int) -> dict[str, dict]:
    """A balanced forest fitted on the split's train rows, evaluated on its test rows ("held_out")
    and on `other` (encoded features, class codes: "other")."""
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    from schemas.firewall import CLASS_NAMES
    from tasks.metrics import confusion_matrix, evaluate_confusion

    x_train, y_train = read_split(split.files("train"), features)
    x_test, y_test = read_split(split.files("test"), features)
    forest = RandomForestClassifier(n_estimators=trees, n_jobs=-1, random_state=seed, class_weight="balanced")
    forest.fit(x_train, y_train)
    names = np.asarray(CLASS_NAMES, dtype=object)

    def evaluate(x, y) -> dict:
        return evaluate_confusion(confusion_matrix(names[y], names[forest.predict(x)])).to_dict()

    return {"held_out": evaluate(x_test, y_test), "other": evaluate(*other)}


def score_other(folder: str, file: Path, out_dir: Path):
    """Score `file` with the saved predictor in `folder`, as `nad score` does."""
    from tasks.model.fusion import load_predictor
    from tasks.scoring.score import score_file

    report = score_file(file, load_predictor(Path(folder)), out_dir, model=folder)
    if report.rows_quarantined:
        raise RuntimeError(f"{file}: {report.rows_quarantined} rows quarantined while scoring; see {out_dir}")
    return report


VARIANTS = {
    "paper": ("paper", {}),
    "default": ("default", {}),
    "default+sqrt": ("default", {"class_weights": "sqrt"}),
    "default+ensemble3": ("default", {"ensemble": 3}),
    "default-log": ("default", {"log_transform": False}),
    "default-threshold": ("default", {"tune_threshold": False}),
}


def split_outside_brackets(text: str, separator: str) -> list[str]:
    """`text` cut at each `separator` that is not inside [...] or {...}."""
    parts, depth, current = [], 0, []
    for char in text:
        depth += char in "[{"
        depth -= char in "]}"
        if char == separator and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    return [*parts, "".join(current)]


def variant_config(variant: str) -> tuple[str, dict]:
    """A named variant, or a preset with `+FIELD=JSON` overrides (a `+` inside a JSON value, as
    in `1e+3`, does not start a field: a field is a name followed by `=`)."""
    if variant in VARIANTS:
        return VARIANTS[variant]
    preset, *fields = re.split(r"\+(?=[A-Za-z_][A-Za-z0-9_]*=)", variant)
    overrides = {}
    for field in fields:
        key, value = field.split("=", 1)
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError as error:
            raise SystemExit(f"variant {variant!r}: {key}={value} is not JSON ({error})") from error
    return preset, overrides


def median(figures: list[dict], part: str, column: str) -> str:
    value = statistics.median(f[part][column] for f in figures)
    return f"{value:.0f}" if column == "cost" else f"{value:.4f}"


def held_out_row(name: str, runs: list[dict]) -> str:
    cells = [median(runs, "held_out", c) for c in COLUMNS]
    spread = [r["held_out"]["criterion"] for r in runs]
    seconds = statistics.median(r["seconds"] for r in runs)
    return f"| {name} | " + " | ".join(cells) + f" | {min(spread):.4f}–{max(spread):.4f} | {seconds:.0f} |"


def other_row(name: str, runs: list[dict]) -> str:
    cells = [median(runs, "other", c) for c in OTHER_COLUMNS]
    spread = [r["other"]["criterion"] for r in runs]
    per_seed = ", ".join(f"{r['other']['criterion']:.4f}" for r in runs)
    far_per_seed = ", ".join(f"{r['other']['far']:.4f}" for r in runs)
    return (
        f"| {name} | "
        + " | ".join(cells)
        + f" | {min(spread):.4f}–{max(spread):.4f} | {per_seed} | {far_per_seed} |"
    )


def per_class_lines(runs: dict[str, list[dict]], part: str) -> list[str]:
    lines = []
    for name, figures in runs.items():
        classes = figures[0][part]["per_class"]
        medians = {c: statistics.median(f[part]["per_class"][c]["fbeta"] for f in figures) for c in classes}
        lines.append(f"  {name}: " + ", ".join(f"{c} {v:.3f}" for c, v in medians.items()))
    return lines


def write_json(path: Path | None, document: dict) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, indent=1))
    os.replace(tmp, path)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:80]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE, help="The training file (ingested).")
    parser.add_argument(
        "--other-file", type=Path, default=OTHER_FILE, help="Rows of another period, scored only."
    )
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--trees", default="200", help="Forest sizes, comma-separated: one forest each.")
    parser.add_argument("--seeds", default="42,43,44", help="Training seeds; medians over them are printed.")
    parser.add_argument(
        "--variants",
        default="paper,default",
        help=f"Among: {', '.join(VARIANTS)}; or PRESET+FIELD=JSON...",
    )
    parser.add_argument("--out-json", type=Path, default=None, help="Write every per-seed figure here.")
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
    from tasks.ingest.files import ingest_file

    seeds = [int(s) for s in args.seeds.split(",")]
    trees = [int(t) for t in args.trees.split(",")]
    variants = split_outside_brackets(args.variants, ",")  # not the commas inside [...] or {...}
    for variant in variants:  # refuse a bad variant before an hour of training, not after
        preset, overrides = variant_config(variant)
        TrainConfig.from_preset(preset, overrides)

    with dask_client() as client:
        report = ingest_file(args.file, work / "store", client, NSL_KDD)
    print(report.summary())
    print(f"out of scope: {report.out_of_scope}")

    document = {
        "file": str(args.file),
        "other_file": str(args.other_file),
        "seeds": seeds,
        "variants": variants,
        "trees": trees,
        "runs": [],
    }
    runs: dict[str, list[dict]] = {}

    def record(name: str, variant: str, seed: int, figures: dict) -> None:
        runs.setdefault(name, []).append(figures)
        document["runs"].append({"model": name, "variant": variant, "seed": seed, **figures})
        write_json(args.out_json, document)

    other_rows = None
    for seed in seeds:
        for variant in variants:
            preset, overrides = variant_config(variant)
            config = TrainConfig.from_preset(preset, {**overrides, "seed": seed})
            started = time.perf_counter()
            summary = train_flow(work / "store", None, config, work / "out", None, NSL_KDD.name)
            wall = time.perf_counter() - started
            nets = ", ".join(
                f"{n.label} {n.epochs_run} ep (best {n.best_epoch}) b{n.batch_size}" for n in summary.nets
            )
            threshold = summary.threshold.threshold if summary.threshold else config.threshold
            test = summary.evaluations["test"]
            scores = work / "other-period" / f"{slug(variant)}-seed{seed}"
            other = {
                kind: score_other(summary.predictors[kind], args.other_file, scores / kind)
                for kind in ("fusion", "baseline")
            }
            if other_rows is None:
                other_rows = (other["fusion"].rows_kept, scored_rows(Path(other["fusion"].predictions)))
                document["other_rows"] = {
                    "read": other["fusion"].rows_read,
                    "scored": other["fusion"].rows_kept,
                    "out_of_scope": other["fusion"].rows_out_of_scope,
                    "per_class": other["fusion"].metrics.per_class,
                }
            if {r.rows_kept for r in other.values()} != {other_rows[0]}:
                raise RuntimeError(f"{variant} seed {seed}: other-period rows differ from the first run's")
            print(
                f"seed {seed} {variant}: train flow {wall:.1f} s wall; threshold {threshold:.2f}; {nets}; "
                f"fusion criterion held-out {test['fusion'].criterion:.4f}, "
                f"other period {other['fusion'].metrics.criterion:.4f} "
                f"(FAR {other['fusion'].metrics.far:.4f})",
                flush=True,
            )
            run = {"seconds": wall, "threshold": threshold, "nets": nets}
            for kind in ("fusion", "baseline"):
                figures = {**run, "held_out": test[kind].to_dict(), "other": other[kind].metrics.to_dict()}
                record(f"{variant}: {kind}", variant, seed, figures)
        for count in trees:
            forest = random_forest(summary.split, other_rows[1], NSL_KDD.feature_columns, count, seed)
            name = f"RandomForest {count} trees, balanced"
            record(name, "forest", seed, {**forest, "seconds": 0.0})
            print(f"seed {seed} {name}: other period {forest['other']['criterion']:.4f}", flush=True)

    split = summary.split
    document["split_counts"] = split.counts
    write_json(args.out_json, document)
    print(f"\nsplit rows per class: {split.counts}")
    label = args.other_file.name.removesuffix(".gz").removesuffix(".txt")
    scored = document["other_rows"]
    print(
        f"\nother period: {label} ({scored['scored']:,} rows; {scored['read']:,} read, "
        f"{scored['out_of_scope']:,} out of scope), median of seeds {args.seeds}:\n"
    )
    print(
        "| model | " + " | ".join(OTHER_HEADINGS) + " | criterion range | criterion per seed | FAR per seed |"
    )
    print("|---|" + "---:|" * (len(OTHER_HEADINGS) + 1) + "---|---|")
    for name, figures in runs.items():
        print(other_row(name, figures))
    print(f"\nper-class F-beta (beta=2) on {label}, median:")
    print("\n".join(per_class_lines(runs, "other")))

    test_rows = sum(split.counts["test"].values())
    print(f"\nNSL-KDD held-out test split ({test_rows:,} rows), median of seeds {args.seeds}:\n")
    print("| model | " + " | ".join(COLUMNS) + " | criterion range | train flow s |")
    print("|---|" + "---:|" * (len(COLUMNS) + 2))
    for name, figures in runs.items():
        print(held_out_row(name, figures))
    print("\nfusion criterion per seed (" + ", ".join(str(s) for s in seeds) + "):")
    for name, figures in runs.items():
        print(f"  {name}: " + ", ".join(f"{f['held_out']['criterion']:.4f}" for f in figures))
    print("\nper-class F-beta (beta=2) on the test split, median:")
    print("\n".join(per_class_lines(runs, "held_out")))
    print(f"\nwork folder: {work}")


if __name__ == "__main__":
    main()
