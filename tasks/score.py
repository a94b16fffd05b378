"""Score firewall days with a saved predictor, block by block, with ingest's validation and quarantine.

Per input `MMDD_firewall.csv`, the output folder gets
- `MMDD_firewall.predictions.parquet`: the valid rows' original columns, `line`, `pred_label`
  and `attack_probability` (the binary net's, for the fusion);
- `MMDD_firewall.quarantine.parquet`: rejected rows with file, line, columns and reason;
- `MMDD_firewall.summary.json`: rows read = kept + quarantined, counts per predicted class and,
  when labels are known (a label column, or a truth file), every metric.
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

from schemas.firewall import CLASS_NAMES, COLUMNS, LABEL_COLUMN
from tasks.fusion import load_predictor
from tasks.ingest import LINE_COLUMN, QUARANTINE_COLUMNS, parse_block, plan_blocks, resolve_day, scan_file
from tasks.metrics import confusion_matrix, evaluate_confusion

PREDICTION_COLUMNS = (*COLUMNS, LINE_COLUMN, "pred_label", "attack_probability")


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


def read_truth(path: Path) -> np.ndarray:
    """Label codes of a truth file, indexed by data line number minus 2 (line 1 is the header)."""
    table = pacsv.read_csv(
        path, convert_options=pacsv.ConvertOptions(column_types={LABEL_COLUMN: arrow.string()})
    )
    return pd.Categorical(table[LABEL_COLUMN].to_pandas(), categories=CLASS_NAMES).codes


@dataclass(frozen=True)
class ScoreReport:
    """What scoring one file did."""

    file: str
    predictions: str
    model: str
    rows_read: int
    rows_kept: int
    rows_quarantined: int
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


def score_file(
    path: Path, predictor, out_dir: Path, truth: Path | None = None, model: str = ""
) -> ScoreReport:
    """Validate and score one day file, one block at a time; the next block parses meanwhile."""
    started = time.perf_counter()
    scan = scan_file(path)
    blocks = plan_blocks(scan, resolve_day(path, scan, None))
    truth_codes = read_truth(truth) if truth else None
    size = len(CLASS_NAMES)
    confusion = np.zeros((size, size), dtype=np.int64)
    counts = {"kept": 0, "quarantined": 0}
    predicted = np.zeros(size, dtype=np.int64)
    rejected_parts: list[pd.DataFrame] = []
    labelled = scan.labelled or truth_codes is not None

    def predictions():
        with ThreadPoolExecutor(1) as prefetch:
            pending = prefetch.submit(parse_block, blocks[0])
            for index in range(len(blocks)):
                rows = pending.result()
                if index + 1 < len(blocks):
                    pending = prefetch.submit(parse_block, blocks[index + 1])
                rejected = rows["_rule"].notna()
                rejected_parts.append(rows.loc[rejected])
                valid = rows.loc[~rejected].reset_index(drop=True)
                codes, probability = predictor.predict_codes(predictor.preprocessing.transform_raw(valid))
                counts["kept"] += len(valid)
                counts["quarantined"] += int(rejected.sum())
                predicted[:] += np.bincount(codes, minlength=size)
                if labelled:
                    labels = (
                        truth_codes[valid[LINE_COLUMN].to_numpy() - 2]
                        if truth_codes is not None
                        else pd.Categorical(valid[LABEL_COLUMN], categories=CLASS_NAMES).codes
                    )
                    confusion[:] += np.bincount(labels * size + codes, minlength=size * size).reshape(
                        size, size
                    )
                out = valid[[*COLUMNS, LINE_COLUMN]].copy()
                if truth_codes is not None:
                    out[LABEL_COLUMN] = np.asarray(CLASS_NAMES, dtype=object)[labels]
                out["pred_label"] = np.asarray(CLASS_NAMES, dtype=object)[codes]
                out["attack_probability"] = probability.astype(np.float32)
                yield out

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = path.name.removesuffix(".csv")
    target = out_dir / f"{stem}.predictions.parquet"
    _atomic_parquet(predictions(), target, prediction_schema())
    quarantine = pd.concat(rejected_parts, ignore_index=True)
    quarantine = quarantine.rename(
        columns={"_rule": "rule", "_columns": "columns", "_reason": "reason", "_raw": "raw"}
    )
    quarantine.assign(file=str(path))[list(QUARANTINE_COLUMNS)].to_parquet(
        out_dir / f"{stem}.quarantine.parquet"
    )
    report = ScoreReport(
        file=str(path),
        predictions=str(target),
        model=model,
        rows_read=scan.data_lines,
        rows_kept=counts["kept"],
        rows_quarantined=counts["quarantined"],
        predicted={name: int(n) for name, n in zip(CLASS_NAMES, predicted, strict=True)},
        metrics=evaluate_confusion(confusion).to_dict() if labelled else None,
        seconds=round(time.perf_counter() - started, 3),
    )
    if report.rows_read != report.rows_kept + report.rows_quarantined:
        raise RuntimeError(f"{path}: rows read {report.rows_read} != kept + quarantined in {report}")
    (out_dir / f"{stem}.summary.json").write_text(json.dumps(asdict(report), indent=2))
    return report


def prediction_schema() -> arrow.Schema:
    fields = [arrow.field("time", arrow.timestamp("s"))]
    for name in COLUMNS[1:]:
        kind = arrow.string() if name in ("src", "dst", "app", LABEL_COLUMN) else arrow.int64()
        fields.append(arrow.field(name, arrow.float64() if name == "duration" else kind))
    fields += [
        arrow.field(LINE_COLUMN, arrow.int64()),
        arrow.field("pred_label", arrow.string()),
        arrow.field("attack_probability", arrow.float32()),
    ]
    return arrow.schema(fields)


def prediction_confusion(predictions: Path, truth_dir: Path) -> np.ndarray:
    """Confusion of a predictions file against the truth file of the same day."""
    name = predictions.name.removesuffix(".predictions.parquet") + ".csv"
    table = pq.read_table(predictions, columns=[LINE_COLUMN, "pred_label"])
    truth = read_truth(truth_dir / name)[table[LINE_COLUMN].to_numpy() - 2]
    guessed = np.asarray(table["pred_label"].to_pylist(), dtype=object)
    return confusion_matrix(np.asarray(CLASS_NAMES, dtype=object)[truth], guessed)


def evaluate_prediction_folder(folder: Path, truth_dir: Path) -> tuple[dict[str, dict], dict]:
    """Metrics per predictions file, and over all of them together."""
    files = sorted(folder.glob("*.predictions.parquet"))
    if not files:
        raise FileNotFoundError(f"no *.predictions.parquet in {folder}")
    confusions = {path.name: prediction_confusion(path, truth_dir) for path in files}
    per_file = {name: evaluate_confusion(matrix).to_dict() for name, matrix in confusions.items()}
    return per_file, evaluate_confusion(sum(confusions.values())).to_dict()


@task(name="score-file", retries=1, retry_delay_seconds=2, task_run_name="score-{path.name}")
def score_file_task(path: Path, model: str, out_dir: Path, truth: Path | None = None) -> dict:
    """Prefect task: score one day file with the model (folder or MLflow URI)."""
    report = score_file(
        path, resolve_predictor(model), out_dir, truth if truth and truth.exists() else None, model
    )
    return asdict(report)


def unlabelled_day_files(source: Path) -> list[Path]:
    """The day files of `source` without a label column: the days to score."""
    return [path for path in sorted(source.glob("*_firewall.csv")) if not scan_file(path).labelled]
