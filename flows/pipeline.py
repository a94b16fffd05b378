"""The whole job as one flow: backfill, train (with evaluate and register), then optional scoring.

Each step is a subflow, so each shows on its own in the Prefect UI. A re-run resumes: days
already in the store are skipped, and an unchanged split and scaler are reused. The champion
alias only moves in the register step, the last of training, so a failed run never moves it.
"""

from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.backfill import backfill_flow
from flows.score import score_days
from flows.train import train_flow
from schemas.datasets import DEFAULT_DATASET, get_dataset
from schemas.training import TrainConfig
from tasks.ingest.report import BackfillRow
from tasks.ingest.store import last_labelled_parts
from tasks.registry.tracking import pipeline_report
from tasks.scoring.score import ScoredFile, unlabelled_files
from tasks.training.summary import TrainingSummary


@dataclass(frozen=True)
class PipelineResult:
    """What one pipeline run did: the backfill's rows, the training (None when it trained
    nothing) and the scored files."""

    backfill: list[BackfillRow]
    training: TrainingSummary | None
    scores: list[ScoredFile]


@flow(name="pipeline")
def pipeline_flow(
    source: Path,
    store: Path,
    last_days: int | None = None,
    out: Path = Path("artifacts"),
    config_file: Path | None = None,
    score: bool = False,
    truth: Path | None = None,
    dask_address: str | None = None,
    dataset: str = DEFAULT_DATASET,
    preset: str | None = None,
    allow_empty: bool = False,
    train_anyway: bool = False,
    feature_set: str | None = None,
) -> PipelineResult:
    """Backfill `source` into `store`, train on the last `last_days` labelled partitions (with
    `preset`, default `default`, the overrides of `config_file`, and `feature_set`), and with
    `score`, score the unlabelled files of `source` with the new champion.

    After a failed backfill, or one that found no file (`allow_empty`), it trains only with
    `train_anyway`, on the store as it is."""
    spec = get_dataset(dataset)
    try:
        ingested = backfill_flow(
            Path(source), Path(store), dask_address=dask_address, dataset=dataset, allow_empty=allow_empty
        )
    except Exception as error:
        if not train_anyway:
            raise
        get_run_logger().warning("backfill failed (%s); training anyway on the store as it is", error)
        ingested = getattr(error, "rows", [])
    if not ingested and not train_anyway:
        get_run_logger().warning("no new files in %s: not training (train_anyway trains anyway)", source)
        return PipelineResult(backfill=[], training=None, scores=[])
    parts = last_labelled_parts(Path(store), last_days)
    config = TrainConfig.from_file(config_file, preset, feature_set)
    summary = train_flow(Path(store), parts, config, Path(out), dask_address, dataset)
    scored = []
    if score:
        files = unlabelled_files(Path(source), spec)
        scored = score_days(files, None, Path(out) / "scores", truth, dataset)
    reports = [outcome.report for outcome in scored]
    create_markdown_artifact(pipeline_report(ingested, summary, reports), key="pipeline-report")
    return PipelineResult(backfill=ingested, training=summary, scores=scored)
