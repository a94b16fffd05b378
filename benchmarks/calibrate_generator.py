"""Calibrate the generator's difficulty with a RandomForest on the `demo` preset.

Trains on the demo training days and scores the demo test days against their truth files,
once with the paper's 17 features and once with IP-derived context added. The traffic model
is calibrated when the 17-feature macro F-beta (beta=2) lies in [0.50, 0.85] and context adds
at least 0.05.

    .venv/bin/python benchmarks/calibrate_generator.py [--data DIR] [--seed N]
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import fbeta_score

from schemas.firewall import APP_VOCABULARY, CLASS_NAMES, FEATURE_COLUMNS, LABEL_COLUMN
from schemas.generation import get_preset
from simulator.generate import TRUTH_DIR, generate_dataset


def load_days(data: Path, split: str) -> pd.DataFrame:
    frames = []
    for plan in get_preset("demo").days:
        if plan.split != split:
            continue
        frame = pd.read_csv(data / plan.file_name)
        if split == "test":
            frame[LABEL_COLUMN] = pd.read_csv(data / TRUTH_DIR / plan.file_name)[LABEL_COLUMN]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def paper_features(frame: pd.DataFrame) -> pd.DataFrame:
    features = frame[list(FEATURE_COLUMNS)].copy()
    features["app"] = pd.Categorical(frame["app"], categories=APP_VOCABULARY).codes
    return features


def context_features(frame: pd.DataFrame) -> pd.DataFrame:
    """What challenge teams added: broadcast targets and per-source sweeps within a minute or hour."""
    octets = frame["dst"].str.split(".", expand=True).astype(int)
    dst24 = frame["dst"].str.rsplit(".", n=1).str[0]
    stamp = pd.to_datetime(frame["time"])
    minute, hour = stamp.dt.floor("min"), stamp.dt.floor("h")
    context = paper_features(frame)
    context["dst_broadcast"] = (octets[3] == 255).astype(int)
    src24 = frame["src"].str.rsplit(".", n=1).str[0]
    keyed = pd.DataFrame(
        {"src": frame["src"], "dst": frame["dst"], "dst24": dst24, "src24": src24, "dpt": frame["dpt"]}
    )
    for name, window in (("min", minute), ("hour", hour)):
        keyed["w"] = window
        context[f"hosts_in_24_{name}"] = keyed.groupby(["src", "dst24", "w"])["dst"].transform("nunique")
        context[f"ports_on_dst_{name}"] = keyed.groupby(["src", "dst", "w"])["dpt"].transform("nunique")
        context[f"srcs_to_dst_{name}"] = keyed.groupby(["dst", "w"])["src"].transform("nunique")
        context[f"src24s_to_dst_{name}"] = keyed.groupby(["dst", "w"])["src24"].transform("nunique")
    return context


def macro_fbeta(truth: pd.Series, predicted: np.ndarray) -> float:
    return float(
        fbeta_score(truth, predicted, beta=2, average="macro", labels=list(CLASS_NAMES), zero_division=0)
    )


def score(train: pd.DataFrame, test: pd.DataFrame, features) -> tuple[float, dict[str, float]]:
    model = RandomForestClassifier(n_estimators=100, n_jobs=2, random_state=0)
    model.fit(features(train), train[LABEL_COLUMN])
    predicted = model.predict(features(test))
    per_class = fbeta_score(
        test[LABEL_COLUMN], predicted, beta=2, average=None, labels=list(CLASS_NAMES), zero_division=0
    ).round(3)
    return macro_fbeta(test[LABEL_COLUMN], predicted), dict(zip(CLASS_NAMES, per_class.tolist(), strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="an existing demo data set (default: generate one)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp)
        if args.data is None:
            generate_dataset(get_preset("demo"), args.seed, data)
        train, test = load_days(data, "train"), load_days(data, "test")
        plain, plain_per_class = score(train, test, paper_features)
        rich, rich_per_class = score(train, test, context_features)
    print(f"train rows {len(train):,}  test rows {len(test):,}  seed {args.seed}")
    print(f"17 features        macro F2 {plain:.3f}  per class {plain_per_class}")
    print(f"+ context features macro F2 {rich:.3f}  per class {rich_per_class}")
    print(f"gain {rich - plain:+.3f}  calibrated: {0.50 <= plain <= 0.85 and rich - plain >= 0.05}")


if __name__ == "__main__":
    main()
