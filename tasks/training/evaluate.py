"""Evaluate predictors on the split's validation and test rows."""

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from prefect import task

from tasks.metrics import Evaluation, confusion_of_codes, evaluate_confusion
from tasks.model.fusion import load_predictor
from tasks.training.split import SplitResult

EVALUATED_SPLITS = ("validation", "test")


def read_encoded(path: str, features: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The encoded (unscaled) features and the label codes of one split file."""
    table = pq.read_table(path, columns=[*features, "label"])
    encoded = np.column_stack([table[c].to_numpy() for c in features]) if table.num_rows else None
    return encoded, table["label"].to_numpy().astype(np.int64)


def predict_split_file(predictor, path: str) -> tuple[np.ndarray, np.ndarray]:
    """True and predicted class codes of every row of one encoded split file."""
    encoded, truth = read_encoded(path, predictor.preprocessing.features)
    if not len(truth):
        return truth, truth
    predicted, _ = predictor.predict_codes(predictor.preprocessing.transform(encoded))
    return truth, predicted.astype(np.int64)


def evaluate_files(predictor, files: list[str]) -> Evaluation:
    """Confusion over encoded split files, one file at a time."""
    confusion = confusion_of_codes([], [])
    for path in files:
        confusion += confusion_of_codes(*predict_split_file(predictor, path))
    return evaluate_confusion(confusion)


@task(name="evaluate")
def evaluate_predictors_task(
    predictors: dict[str, str], split: SplitResult
) -> dict[str, dict[str, Evaluation]]:
    """split -> predictor -> all figures, for fusion and baseline on validation and test."""
    loaded = {name: load_predictor(Path(folder)) for name, folder in predictors.items()}
    return {
        part: {name: evaluate_files(model, split.files(part)) for name, model in loaded.items()}
        for part in EVALUATED_SPLITS
    }
