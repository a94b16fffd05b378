"""Score data files with a saved predictor, block by block, with ingest's validation and quarantine.

The predictor knows its dataset (its preprocessing names the spec). Per input file `STEM.ext`
(e.g. `1203_firewall.csv`), the output folder gets
- `STEM.predictions.parquet`: the valid rows' original columns, `line`, `pred_label` and
  `attack_probability` (the binary net's, for the fusion);
- `STEM.quarantine.parquet`: rejected rows with file, line, columns and reason;
- `STEM.out_of_scope.parquet`: valid rows of a labelled file whose label is outside the five
  classes, set aside unscored;
- `STEM.drift.json`: the day's drift against the model's training period (tasks/model/drift.py),
  when the model has a reference profile;
- `STEM.summary.json`: rows read = kept + quarantined + out of scope, counts per predicted
  class and, when labels are known (a label column, or a truth file), every metric.

A model is named by a folder (a predictor, a run, or the `--out` folder of `nad train`) or an
MLflow URI, and resolved once per scoring run to a local predictor folder (`predictor_folder`).
"""

import functools
import json
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from prefect import task
from prefect.artifacts import create_table_artifact

from schemas.datasets import DatasetSpec, get_dataset, plain_name
from schemas.firewall import CLASS_NAMES, NORMAL
from tasks.errors import InputError, ModelError, message_about, message_of, retry_if_transient
from tasks.ingest.lines import plan_blocks
from tasks.ingest.parse import (
    LINE_COLUMN,
    label_codes,
)
from tasks.ingest.scan import DEFAULT_BLOCKSIZE, read_head, resolve_partition, scan_file
from tasks.metrics import Evaluation, confusion_of_codes, evaluate_confusion
from tasks.model.drift import REPORT_SUFFIX as DRIFT_SUFFIX
from tasks.model.drift import InputCounter, drift_report
from tasks.model.drift import write_report as write_drift_report
from tasks.model.fusion import FusionModel, load_predictor
from tasks.progress import Progress
from tasks.registry.champion import check_model_dataset, predictor_folder
from tasks.registry.mlflow_setup import log_evaluation_run
from tasks.scoring.blocks import (
    BlockPrediction,
    BlockScorer,
    ClusterModel,
    context_pass,
    local_scorer,
    parse_numbered_block,
)
from tasks.scoring.incidents import IncidentDetection, incidents_path, read_incidents, write_incidents
from tasks.scoring.predictions import (
    PREDICTED,
    PREDICTIONS_SUFFIX,
    PROBABILITY,
    atomic_frame,
    atomic_parquet,
    prediction_schema,
    truth_for,
)
from tasks.scoring.voting import Vote, check_votable, vote_by_source


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
    metrics: Evaluation | None  # None: no labels known
    seconds: float
    incidents: int | None = None  # None: the dataset has no source and time to group rows by
    incident_detection: IncidentDetection | None = None  # with labels: episodes detected, incidents false
    vote: Vote | None = None  # voting by source: its window and rule; None: no vote
    rows_revoted: int | None = None  # flagged rows whose class the vote changed
    rows_outside_envelope: int | None = None  # flagged rows the known-attack envelope made Normal; None: off
    drift: str | None = None  # the drift report (tasks/model/drift.py); None: the model has no reference

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        """The report as its summary JSON holds it: the metrics' and the incident figures' keys
        (with the detection rates), which other tools read."""
        detection = self.incident_detection
        return asdict(self) | {"incident_detection": detection.to_dict() if detection else None}


@dataclass
class Tally:
    """What a file's scored blocks add up to, block by block: rows kept, quarantined and out of
    scope, rows per predicted class, the confusion against the known labels, the rejected and
    set-aside rows, the inputs' rows per drift bin (None: a model from before drift), and, for a
    fused model with a known-attack envelope (`envelope_threshold`: its binary threshold), the
    flagged rows the envelope made Normal."""

    drift: InputCounter | None = None
    envelope_threshold: float | None = None
    outside_envelope: int = 0
    kept: int = 0
    quarantined: int = 0
    out_of_scope: int = 0
    predicted: np.ndarray = field(default_factory=lambda: np.zeros(len(CLASS_NAMES), dtype=np.int64))
    confusion: np.ndarray = field(default_factory=lambda: confusion_of_codes([], []))
    rejected: list[pd.DataFrame] = field(default_factory=list)
    outside: list[pd.DataFrame] = field(default_factory=list)

    def add(self, block: BlockPrediction, labels: np.ndarray | None) -> None:
        """Count one scored block, with its rows' true class codes when they are known."""
        self.rejected.append(block.rejected)
        self.outside.append(block.outside)
        if self.drift is not None:
            self.drift.add_counts(block.input_bins, len(block.out))
        self.kept += len(block.out)
        self.quarantined += len(block.rejected)
        self.out_of_scope += len(block.outside)
        self.predicted += np.bincount(block.codes, minlength=len(CLASS_NAMES))
        if self.envelope_threshold is not None:
            flagged = block.out[PROBABILITY].to_numpy() >= self.envelope_threshold
            self.outside_envelope += int((flagged & (block.codes == 0)).sum())
        if labels is not None:
            self.confusion += confusion_of_codes(labels, block.codes)

    def revote(self, changes: pd.DataFrame) -> int:
        """Move the rows a vote changed from their old class to their new one; how many moved."""
        old, new, actual = (changes[name].to_numpy() for name in ("old", "new", "truth"))
        self.predicted += np.bincount(new, minlength=len(CLASS_NAMES))
        self.predicted -= np.bincount(old, minlength=len(CLASS_NAMES))
        self.confusion += confusion_of_codes(actual, new) - confusion_of_codes(actual, old)
        return len(changes)

    def by_class(self) -> dict[str, int]:
        return {name: int(n) for name, n in zip(CLASS_NAMES, self.predicted, strict=True)}

    def where_rows_went(self) -> str:
        """Where the rows of a file that kept none went: `1,633 quarantined[, 2 out of scope]`."""
        outside = f", {self.out_of_scope:,} out of scope" if self.out_of_scope else ""
        return f"{self.quarantined:,} quarantined{outside}"


@dataclass(frozen=True)
class Labelling:
    """Where the true classes of a file's rows come from: a truth file's class codes (by data
    line), the file's own label column, or nowhere (`labelled` False)."""

    spec: DatasetSpec
    labelled: bool
    truth_codes: np.ndarray | None = None

    def of(self, out: pd.DataFrame) -> np.ndarray | None:
        """The class codes of a block's kept rows (-1: outside the five classes); None: unknown."""
        if self.truth_codes is not None:
            return self.truth_codes[out[LINE_COLUMN].to_numpy() - self.spec.first_data_line]
        return label_codes(out[self.spec.label_column], self.spec) if self.labelled else None


def scored_blocks(
    path: Path, blocks: list, predictor, scorer: BlockScorer | None, tables_dir: Path
) -> Iterator[BlockPrediction]:
    """A file's blocks, scored in order by `scorer` (default: in this process, `local_scorer`);
    under a context feature set, pass 1 over every block first (`context_pass`)."""
    context = predictor.preprocessing.context
    tables, load = context_pass(blocks, context, tables_dir) if context else (None, None)
    load = load or functools.partial(parse_numbered_block, blocks)
    yield from (scorer or local_scorer(predictor))(str(path), len(blocks), load, tables)


def tallied_frames(
    blocks: Iterator[BlockPrediction], tally: Tally, labelling: Labelling, progress: Progress, path: Path
) -> Iterator[pd.DataFrame]:
    """Each block's predictions, in order, counted in `tally` before they are handed on; with a
    truth file, its labels fill the label column. A file that kept no row fails at the end,
    before its predictions file replaces anything."""
    for block in blocks:
        labels = labelling.of(block.out)
        tally.add(block, labels)
        progress.advance(block.rows)
        if labelling.truth_codes is not None:
            block.out[labelling.spec.label_column] = LABEL_NAMES[labels]
        yield block.out
    if not tally.kept:
        raise InputError(f"{path}: no row kept ({tally.where_rows_went()}); nothing scored")


def score_file(
    path: Path,
    predictor,
    out_dir: Path,
    truth: Path | None = None,
    model: str = "",
    vote: Vote | None = None,
    scorer: BlockScorer | None = None,
    blocksize: int = DEFAULT_BLOCKSIZE,
) -> ScoreReport:
    """Validate and score one file, one block at a time, with `scorer` (default: in this process,
    `local_scorer`). With `vote`, the flagged rows then vote by source (tasks/scoring/voting.py),
    and the file, the counts and the metrics hold the voted classes.

    Rows whose truth label is outside the five classes are predicted but left out of the metrics.
    """
    started = time.perf_counter()
    spec = predictor.preprocessing.spec
    if vote is not None:
        check_votable(spec)
    scan = scan_file(path, spec, blocksize)
    blocks = plan_blocks(scan, resolve_partition(path, scan, spec, None), spec)
    truth_codes = truth_for(path, truth, scan.data_lines, spec) if truth else None
    labelling = Labelling(spec, scan.labelled or truth_codes is not None, truth_codes)
    reference = predictor.preprocessing.reference
    tally = Tally(InputCounter(reference) if reference is not None else None, envelope_threshold(predictor))
    stem = Path(plain_name(path)).stem
    out_dir.mkdir(parents=True, exist_ok=True)
    target, tables_dir = out_dir / f"{stem}{PREDICTIONS_SUFFIX}", out_dir / f".{stem}.context"
    progress = Progress(f"score {path.name}", scan.data_lines)
    scored = scored_blocks(path, blocks, predictor, scorer, tables_dir)
    try:
        atomic_parquet(
            tallied_frames(scored, tally, labelling, progress, path), target, prediction_schema(spec)
        )
    finally:
        shutil.rmtree(tables_dir, ignore_errors=True)
    progress.finish()
    revoted = tally.revote(vote_in_place(target, vote, spec)) if vote is not None else None
    atomic_frame(tally.rejected, out_dir / f"{stem}.quarantine.parquet")
    atomic_frame(tally.outside, out_dir / f"{stem}.out_of_scope.parquet")
    report = file_report(path, target, model, tally, labelling, scan.data_lines, truth)
    report = replace(report, vote=vote, rows_revoted=revoted)
    report = replace(report, seconds=round(time.perf_counter() - started, 3))
    if report.rows_read != report.rows_kept + report.rows_quarantined + report.rows_out_of_scope:
        raise RuntimeError(
            f"{path}: rows read {report.rows_read} != kept + quarantined + out of scope in {report}"
        )
    (out_dir / f"{stem}.summary.json").write_text(json.dumps(report.to_dict(), indent=2))
    return report


LABEL_NAMES = np.asarray([*CLASS_NAMES, None], dtype=object)  # class code -> name; -1: None


def envelope_threshold(predictor) -> float | None:
    """The binary threshold of a fused model with a known-attack envelope; None for any other."""
    return predictor.threshold if isinstance(predictor, FusionModel) and predictor.has_envelope else None


def file_report(
    path: Path,
    target: Path,
    model: str,
    tally: Tally,
    labelling: Labelling,
    rows_read: int,
    truth: Path | None,
) -> ScoreReport:
    """A scored file's report, once its predictions are written: its incidents (grouped by the
    identifier columns a context spec declares) and its drift report are written here too."""
    spec = labelling.spec
    truth_dir = truth.parent if truth else None
    found = write_incidents(target, truth_dir=truth_dir, rows_read=rows_read) if spec.context else None
    drift_path = None
    if tally.drift is not None:
        drifted = drift_report(str(path), model, tally.drift, tally.by_class())
        drift_path = str(
            write_drift_report(drifted, target.with_name(f"{Path(plain_name(path)).stem}{DRIFT_SUFFIX}"))
        )
    return ScoreReport(
        file=str(path),
        predictions=str(target),
        model=model,
        rows_read=rows_read,
        rows_kept=tally.kept,
        rows_quarantined=tally.quarantined,
        rows_out_of_scope=tally.out_of_scope,
        predicted=tally.by_class(),
        metrics=evaluate_confusion(tally.confusion) if labelling.labelled else None,
        seconds=0.0,
        incidents=None if found is None else len(found.incidents),
        incident_detection=found.detection if found else None,
        drift=drift_path,
        rows_outside_envelope=tally.outside_envelope if tally.envelope_threshold is not None else None,
    )


def vote_in_place(predictions: Path, vote: Vote, spec: DatasetSpec) -> pd.DataFrame:
    """Voting by source over a predictions file of `score_file`, rewritten atomically: the rows
    whose class changed, as class codes `old`, `new` and `truth` (-1: not known)."""
    columns = ["time", "src", LINE_COLUMN, PREDICTED, PROBABILITY]
    flagged = pq.read_table(predictions, columns=columns, filters=[(PREDICTED, "!=", NORMAL)]).to_pandas()
    voted = vote_by_source(flagged["time"], flagged["src"], flagged[PREDICTED], flagged[PROBABILITY], vote)
    moved = voted != flagged[PREDICTED].to_numpy(dtype=object)
    new_class = pd.Series(voted[moved], index=flagged.loc[moved, LINE_COLUMN].to_numpy())
    changes = [pd.DataFrame({"old": [], "new": [], "truth": []}, dtype=np.int64)]
    if new_class.empty:
        return changes[0]
    source = pq.ParquetFile(predictions)

    def frames():
        for group in range(source.num_row_groups):
            frame = source.read_row_group(group).to_pandas()
            hit = frame[LINE_COLUMN].isin(new_class.index).to_numpy()
            if hit.any():
                old, new = frame.loc[hit, PREDICTED], new_class.loc[frame.loc[hit, LINE_COLUMN]].to_numpy()
                truth = frame.loc[hit, spec.label_column] if spec.label_column in frame else None
                changes.append(
                    pd.DataFrame(
                        {
                            "old": label_codes(old, spec),
                            "new": label_codes(pd.Series(new), spec),
                            "truth": -1 if truth is None else label_codes(truth, spec),
                        },
                        dtype=np.int64,
                    )
                )
                frame.loc[hit, PREDICTED] = new
            yield frame

    atomic_parquet(frames(), predictions, source.schema_arrow)
    return pd.concat(changes, ignore_index=True)


@dataclass(frozen=True)
class ScoredFile:
    """One file of a scoring run: its report and, when its labels were known, the MLflow run of
    its metrics; or, when it could not be scored, why."""

    file: str
    report: ScoreReport | None = None
    mlflow_run: str | None = None
    error: str | None = None


def log_score_run(report: ScoreReport, kind: str, spec: DatasetSpec) -> str:
    """An MLflow evaluation run with a scored file's metrics; returns its id."""
    figures = {f"score.{kind}.{name}": value for name, value in report.metrics.headline().items()}
    params = {"file": report.file, "model": report.model, "data.dataset": spec.name}
    return log_evaluation_run(f"score-{Path(plain_name(Path(report.file))).stem}", params, figures)


def truth_of(path: Path, truth_dir: Path | None) -> Path | None:
    """The truth file named like `path` in `truth_dir`, if there is one."""
    candidate = Path(truth_dir) / plain_name(Path(path)) if truth_dir else None
    return candidate if candidate and candidate.is_file() else None


def scored_file(path: Path, result: ScoredFile | BaseException) -> ScoredFile:
    """A file's outcome from its task's result: the task's ScoredFile, or its error as one line."""
    if isinstance(result, ScoredFile):
        return result
    if isinstance(result, ModelError):  # the model's fault, not the file's: it names the model file
        return ScoredFile(str(path), error=message_of(result))
    return ScoredFile(str(path), error=message_about(path, result))


@task(name="resolve-model", retries=1, retry_delay_seconds=2, retry_condition_fn=retry_if_transient)
def resolve_model_task(model: str, dataset: str) -> Path:
    """Prefect task: the local predictor folder of `model`, checked to fit `dataset`."""
    folder = predictor_folder(model)
    check_model_dataset(folder, get_dataset(dataset), model)
    load_predictor(folder)  # every file it needs loads: a damaged model fails here, not per file
    return folder


@task(
    name="score-file",
    retries=1,
    retry_delay_seconds=2,
    retry_condition_fn=retry_if_transient,
    task_run_name="score-{path.name}",
)
def score_file_task(
    path: Path,
    predictor: Path,
    out_dir: Path,
    truth: Path | None = None,
    model: str = "",
    vote: Vote | None = None,
    cluster: ClusterModel | None = None,
) -> ScoredFile:
    """Prefect task: validate and score one file with a predictor folder, its blocks spread over
    `cluster` when given; with known labels, log the metrics as an MLflow evaluation run."""
    loaded = load_predictor(predictor)
    report = score_file_on(cluster, path, loaded, out_dir, truth, model or str(predictor), vote)
    run = log_score_run(report, loaded.kind, loaded.preprocessing.spec) if report.metrics else None
    if report.incidents:
        publish_top_incidents(Path(report.predictions))
    return ScoredFile(str(path), report, run)


def score_file_on(cluster: ClusterModel | None, path: Path, predictor, *args) -> ScoreReport:
    """`score_file` in this process, or with its blocks on `cluster`."""
    if cluster is None:
        return score_file(path, predictor, *args)
    from distributed import Client

    from tasks.scoring.score_cluster import cluster_scorer  # only a cluster run needs distributed

    with Client(cluster.address, set_as_default=False) as client:
        return score_file(path, predictor, *args, scorer=cluster_scorer(client, cluster.plugin))


def publish_top_incidents(predictions: Path, top: int = 20) -> None:
    """A Prefect table artifact of a scored file's largest incidents."""
    incidents = read_incidents(incidents_path(predictions)).sort_values("rows", ascending=False).head(top)
    rows = incidents.astype({"start": str, "end": str}).to_dict("records")
    stem = predictions.name.removesuffix(PREDICTIONS_SUFFIX)
    key = re.sub(r"[^a-z0-9-]+", "-", f"incidents-{stem}".lower())
    create_table_artifact(rows, key=key, description=f"the {len(rows)} largest incidents of {stem}, by rows")


def unlabelled_files(source: Path, spec: DatasetSpec) -> list[Path]:
    """The data files of `source` without labels: the ones to score."""
    return [path for path in spec.data_files(source) if not read_head(path, spec).labelled]
