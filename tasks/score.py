"""Score data files with a saved predictor, block by block, with ingest's validation and quarantine.

The predictor knows its dataset (its preprocessing names the spec). Per input file `STEM.ext`
(e.g. `1203_firewall.csv`), the output folder gets
- `STEM.predictions.parquet`: the valid rows' original columns, `line`, `pred_label` and
  `attack_probability` (the binary net's, for the fusion);
- `STEM.quarantine.parquet`: rejected rows with file, line, columns and reason;
- `STEM.out_of_scope.parquet`: valid rows of a labelled file whose label is outside the five
  classes, set aside unscored;
- `STEM.summary.json`: rows read = kept + quarantined + out of scope, counts per predicted
  class and, when labels are known (a label column, or a truth file), every metric.
"""

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as arrow
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from prefect import task

from schemas.datasets import DatasetSpec, plain_name
from schemas.firewall import CLASS_NAMES
from tasks.fusion import load_predictor
from tasks.ingest import (
    ARROW_KINDS,
    LINE_COLUMN,
    canonical_labels,
    parse_block,
    plan_blocks,
    quarantine_frame,
    read_head,
    resolve_partition,
    scan_file,
    split_set_aside,
    store_columns,
)
from tasks.metrics import confusion_matrix, evaluate_confusion


def resolve_predictor(model: str):
    """A predictor folder, or an MLflow model URI such as models:/nad-fusion@champion."""
    if Path(model).is_dir():
        return load_predictor(Path(model))
    import mlflow

    from tasks.tracking import configure_mlflow

    configure_mlflow()
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model))
    flavor = mlflow.models.Model.load(local / "MLmodel").flavors["python_function"]
    return load_predictor(local / flavor["artifacts"]["predictor"]["path"])


def read_truth(path: Path, spec: DatasetSpec) -> np.ndarray:
    """Class codes of a truth file's labels, indexed by data line number minus the first data
    line's; -1 for a label outside the five classes. A headerless truth file holds whole rows."""
    label = spec.label_column
    read = pacsv.ReadOptions() if spec.has_header else pacsv.ReadOptions(column_names=list(spec.columns))
    convert = pacsv.ConvertOptions(column_types={label: arrow.string()}, include_columns=[label])
    labels = pacsv.read_csv(path, read, convert_options=convert)[label].to_pandas()
    return label_codes(labels, spec)


def label_codes(labels: pd.Series, spec: DatasetSpec) -> np.ndarray:
    """Class codes of raw or mapped labels; -1 where the label is outside the five classes."""
    return pd.Categorical(canonical_labels(labels, spec), categories=CLASS_NAMES).codes


@dataclass(frozen=True)
class ScoreReport:
    """What scoring one file did."""

    file: str
    predictions: str
    model: str
    rows_read: int
    rows_kept: int
    rows_quarantined: int
    rows_out_of_scope: int
    predicted: dict[str, int]
    metrics: dict | None
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds else 0.0


def _atomic_parquet(frames, path: Path, schema: arrow.Schema) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        for frame in frames:
            writer.write_table(arrow.Table.from_pandas(frame, schema=schema, preserve_index=False))
    os.replace(tmp, path)


def _atomic_frame(frames: list[pd.DataFrame], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    pd.concat(frames, ignore_index=True).to_parquet(tmp, index=False)
    os.replace(tmp, path)


def score_file(
    path: Path, predictor, out_dir: Path, truth: Path | None = None, model: str = ""
) -> ScoreReport:
    """Validate and score one file, one block at a time; the next block parses meanwhile.

    Rows whose truth label is outside the five classes are predicted but left out of the metrics.
    """
    started = time.perf_counter()
    spec = predictor.preprocessing.spec
    scan = scan_file(path, spec)
    blocks = plan_blocks(scan, resolve_partition(path, scan, spec, None), spec)
    truth_codes = read_truth(truth, spec) if truth else None
    size = len(CLASS_NAMES)
    confusion = np.zeros((size, size), dtype=np.int64)
    counts = {"kept": 0, "quarantined": 0, "out_of_scope": 0}
    predicted = np.zeros(size, dtype=np.int64)
    rejected_parts: list[pd.DataFrame] = []
    outside_parts: list[pd.DataFrame] = []
    labelled = scan.labelled or truth_codes is not None

    def predictions():
        with ThreadPoolExecutor(1) as prefetch:
            pending = prefetch.submit(parse_block, blocks[0])
            for index in range(len(blocks)):
                rows = pending.result()
                if index + 1 < len(blocks):
                    pending = prefetch.submit(parse_block, blocks[index + 1])
                rejected, outside = split_set_aside(rows)
                rejected_parts.append(quarantine_frame(rows.loc[rejected], str(path)))
                outside_parts.append(rows.loc[outside, list(store_columns(spec))])
                valid = rows.loc[~rejected & ~outside].reset_index(drop=True)
                codes, probability = predictor.predict_codes(predictor.preprocessing.transform_raw(valid))
                counts["kept"] += len(valid)
                counts["quarantined"] += int(rejected.sum())
                counts["out_of_scope"] += int(outside.sum())
                predicted[:] += np.bincount(codes, minlength=size)
                out = valid[list(store_columns(spec))].copy()
                if labelled:
                    labels = (
                        truth_codes[valid[LINE_COLUMN].to_numpy() - spec.first_data_line]
                        if truth_codes is not None
                        else label_codes(valid[spec.label_column], spec)
                    )
                    known = labels >= 0
                    pairs = labels[known].astype(np.int64) * size + codes[known]
                    confusion[:] += np.bincount(pairs, minlength=size * size).reshape(size, size)
                if truth_codes is not None:
                    names = np.asarray([*CLASS_NAMES, None], dtype=object)
                    out[spec.label_column] = names[labels]
                out["pred_label"] = np.asarray(CLASS_NAMES, dtype=object)[codes]
                out["attack_probability"] = probability.astype(np.float32)
                yield out

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(plain_name(path)).stem
    target = out_dir / f"{stem}.predictions.parquet"
    _atomic_parquet(predictions(), target, prediction_schema(spec))
    _atomic_frame(rejected_parts, out_dir / f"{stem}.quarantine.parquet")
    _atomic_frame(outside_parts, out_dir / f"{stem}.out_of_scope.parquet")
    report = ScoreReport(
        file=str(path),
        predictions=str(target),
        model=model,
        rows_read=scan.data_lines,
        rows_kept=counts["kept"],
        rows_quarantined=counts["quarantined"],
        rows_out_of_scope=counts["out_of_scope"],
        predicted={name: int(n) for name, n in zip(CLASS_NAMES, predicted, strict=True)},
        metrics=evaluate_confusion(confusion).to_dict() if labelled else None,
        seconds=round(time.perf_counter() - started, 3),
    )
    if report.rows_read != report.rows_kept + report.rows_quarantined + report.rows_out_of_scope:
        raise RuntimeError(
            f"{path}: rows read {report.rows_read} != kept + quarantined + out of scope in {report}"
        )
    (out_dir / f"{stem}.summary.json").write_text(json.dumps(asdict(report), indent=2))
    return report


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


def prediction_confusion(predictions: Path, truth_dir: Path, spec: DatasetSpec) -> np.ndarray:
    """Confusion of a predictions file against the truth file of the same name."""
    table = pq.read_table(predictions, columns=[LINE_COLUMN, "pred_label"])
    truth = read_truth(truth_file(predictions, truth_dir), spec)
    truth = truth[table[LINE_COLUMN].to_numpy() - spec.first_data_line]
    guessed = np.asarray(table["pred_label"].to_pylist(), dtype=object)[truth >= 0]
    return confusion_matrix(np.asarray(CLASS_NAMES, dtype=object)[truth[truth >= 0]], guessed)


def evaluate_prediction_folder(
    folder: Path, truth_dir: Path, spec: DatasetSpec
) -> tuple[dict[str, dict], dict]:
    """Metrics per predictions file, and over all of them together."""
    files = sorted(folder.glob("*.predictions.parquet"))
    if not files:
        raise FileNotFoundError(f"no *.predictions.parquet in {folder}")
    confusions = {path.name: prediction_confusion(path, truth_dir, spec) for path in files}
    per_file = {name: evaluate_confusion(matrix).to_dict() for name, matrix in confusions.items()}
    return per_file, evaluate_confusion(sum(confusions.values())).to_dict()


@task(name="score-file", retries=1, retry_delay_seconds=2, task_run_name="score-{path.name}")
def score_file_task(path: Path, model: str, out_dir: Path, truth: Path | None = None) -> dict:
    """Prefect task: score one day file with the model (folder or MLflow URI)."""
    report = score_file(
        path, resolve_predictor(model), out_dir, truth if truth and truth.exists() else None, model
    )
    return asdict(report)


def unlabelled_files(source: Path, spec: DatasetSpec) -> list[Path]:
    """The data files of `source` without labels: the ones to score."""
    return [path for path in spec.data_files(source) if not read_head(path, spec).labelled]
