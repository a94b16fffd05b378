"""The predictions file of `nad score` and what reads it: its columns and Arrow schema, its atomic
writers, the truth files beside it (one label per data line of the scored file) and the confusion
of a predictions folder against them.

`STEM.predictions.parquet` holds the valid rows' original columns, `line`, `pred_label` and
`attack_probability`; `STEM.summary.json` beside it counts the rows read.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as arrow
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from schemas.datasets import DatasetSpec
from schemas.firewall import CLASS_NAMES
from tasks.errors import InputError, message_of
from tasks.files import atomic_path
from tasks.ingest.parse import ARROW_KINDS, LINE_COLUMN, label_codes
from tasks.metrics import Evaluation, confusion_matrix, evaluate_confusion

PREDICTIONS_SUFFIX = ".predictions.parquet"
PREDICTED, PROBABILITY = "pred_label", "attack_probability"


def read_truth(path: Path, spec: DatasetSpec) -> np.ndarray:
    """Class codes of a truth file's labels, indexed by data line number minus the first data
    line's; -1 for a label outside the five classes. A headerless truth file holds whole rows."""
    label = spec.label_column
    read = pacsv.ReadOptions() if spec.has_header else pacsv.ReadOptions(column_names=list(spec.columns))
    convert = pacsv.ConvertOptions(column_types={label: arrow.string()}, include_columns=[label])
    try:
        labels = pacsv.read_csv(path, read, convert_options=convert)[label].to_pandas()
    except KeyError as error:  # pyarrow's ArrowKeyError: the header lacks the label column
        raise InputError(
            f"{path}: no {label!r} column in its header; not a {spec.name} truth file"
        ) from error
    except arrow.ArrowInvalid as error:
        raise InputError(f"{path}: not a {spec.name} truth file ({str(error).splitlines()[0]})") from error
    return label_codes(labels, spec)


def truth_for(path: Path, truth: Path, data_lines: int, spec: DatasetSpec) -> np.ndarray:
    """The truth file's class codes, checked to hold one label per data line of `path`."""
    return counted_labels(truth, read_truth(truth, spec), data_lines, f"rows of {path}")


def counted_labels(truth: Path, codes: np.ndarray, rows: int, of_what: str) -> np.ndarray:
    """`codes`, once they hold one label per data line (`rows` of them)."""
    if len(codes) != rows:
        raise InputError(
            f"{truth}: {len(codes):,} labels for the {rows:,} {of_what}; "
            "a truth file has one label per data line"
        )
    return codes


def atomic_parquet(frames, path: Path, schema: arrow.Schema) -> None:
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for frame in frames:
            writer.write_table(arrow.Table.from_pandas(frame, schema=schema, preserve_index=False))


def atomic_frame(frames: list[pd.DataFrame], path: Path) -> None:
    with atomic_path(path) as tmp:
        pd.concat(frames, ignore_index=True).to_parquet(tmp, index=False)


def prediction_schema(spec: DatasetSpec) -> arrow.Schema:
    kinds = spec.column_kinds(labelled=True)
    fields = [arrow.field(name, ARROW_KINDS[kinds[name]]) for name in spec.columns]
    fields += [
        arrow.field(LINE_COLUMN, arrow.int64()),
        arrow.field("pred_label", arrow.string()),
        arrow.field("attack_probability", arrow.float32()),
    ]
    return arrow.schema(fields)


def truth_file(predictions: Path, truth_dir: Path) -> Path:
    """The truth file named like the scored file: same stem, any extension."""
    stem = predictions.name.removesuffix(".predictions.parquet")
    matches = sorted(p for p in truth_dir.glob(f"{stem}.*") if p.is_file())
    if not matches:
        raise FileNotFoundError(f"no truth file {stem}.* in {truth_dir}")
    return matches[0]


def rows_scored(predictions: Path) -> int:
    """The data lines of the file that `predictions` was scored from, as its summary counts them."""
    summary = predictions.with_name(predictions.name.removesuffix(PREDICTIONS_SUFFIX) + ".summary.json")
    if not summary.is_file():
        raise InputError(
            f"{summary}: missing; it tells how many labels the truth of {predictions.name} needs"
        )
    try:
        return int(json.loads(summary.read_text())["rows_read"])
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(f"{summary}: not a summary of nad score ({message_of(error)})") from error


def checked_truth(
    predictions: Path, truth_dir: Path, spec: DatasetSpec, rows_read: int | None = None
) -> np.ndarray:
    """The class codes of the truth file for `predictions`, which must hold one label per data
    line of the scored file (`rows_read`, else as its summary counts them), as for `nad score --truth`."""
    source = truth_file(predictions, truth_dir)
    rows = rows_read if rows_read is not None else rows_scored(predictions)
    return counted_labels(source, read_truth(source, spec), rows, f"rows scored into {predictions}")


def prediction_confusion(predictions: Path, truth_dir: Path, spec: DatasetSpec) -> np.ndarray:
    """Confusion of a predictions file against the truth file of the same name (`checked_truth`)."""
    table = pq.read_table(predictions, columns=[LINE_COLUMN, "pred_label"])
    truth = checked_truth(predictions, truth_dir, spec)[table[LINE_COLUMN].to_numpy() - spec.first_data_line]
    guessed = np.asarray(table["pred_label"].to_pylist(), dtype=object)[truth >= 0]
    return confusion_matrix(np.asarray(CLASS_NAMES, dtype=object)[truth[truth >= 0]], guessed)


def evaluate_prediction_folder(
    folder: Path, truth_dir: Path, spec: DatasetSpec
) -> tuple[dict[str, Evaluation], Evaluation]:
    """Metrics per predictions file, and over all of them together."""
    files = sorted(folder.glob("*.predictions.parquet"))
    if not files:
        raise FileNotFoundError(f"no *.predictions.parquet in {folder}")
    confusions = {path.name: prediction_confusion(path, truth_dir, spec) for path in files}
    per_file = {name: evaluate_confusion(matrix) for name, matrix in confusions.items()}
    return per_file, evaluate_confusion(sum(confusions.values()))
