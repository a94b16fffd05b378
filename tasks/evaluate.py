"""Evaluate predictors on the split's validation and test rows."""

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from prefect import task

from schemas.firewall import CLASS_NAMES
from tasks.fusion import load_predictor
from tasks.metrics import Evaluation, evaluate_confusion
from tasks.split import SplitResult

EVALUATED_SPLITS = ("validation", "test")


def evaluate_files(predictor, files: list[str]) -> Evaluation:
    """Confusion over encoded split files, one file at a time."""
    size = len(CLASS_NAMES)
    confusion = np.zeros((size, size), dtype=np.int64)
    for path in files:
        features = predictor.preprocessing.features
        table = pq.read_table(path, columns=[*features, "label"])
        if table.num_rows == 0:
            continue
        encoded = np.column_stack([table[c].to_numpy() for c in features])
        predicted, _ = predictor.predict_codes(predictor.preprocessing.transform(encoded))
        truth = table["label"].to_numpy().astype(np.int64)
        confusion += np.bincount(truth * size + predicted, minlength=size * size).reshape(size, size)
    return evaluate_confusion(confusion)


@task(name="evaluate")
def evaluate_predictors_task(predictors: dict[str, str], split: SplitResult) -> dict[str, dict[str, dict]]:
    """split -> predictor -> all figures, for fusion and baseline on validation and test."""
    loaded = {name: load_predictor(Path(folder)) for name, folder in predictors.items()}
    return {
        part: {name: evaluate_files(model, split.files(part)).to_dict() for name, model in loaded.items()}
        for part in EVALUATED_SPLITS
    }
