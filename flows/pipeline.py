"""The whole job as one flow: backfill, train (with evaluate and register), then optional scoring.

Each step is a subflow, so each shows on its own in the Prefect UI. A re-run resumes: days
already in the store are skipped, and an unchanged split and scaler are reused. The champion
alias only moves in the register step, the last of training, so a failed run never moves it.
"""

from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.backfill import backfill
from flows.score import score_days
from flows.train import train
from schemas.training import TrainConfig
from tasks.score import unlabelled_day_files
from tasks.store import last_labelled_days
from tasks.tracking import pipeline_report


@flow(name="pipeline")
def pipeline(
    source: Path,
    store: Path,
    last_days: int | None = None,
    out: Path = Path("artifacts"),
    config_file: Path | None = None,
    score: bool = False,
    truth: Path | None = None,
    dask_address: str | None = None,
) -> dict:
    """Backfill `source` into `store`, train on the last `last_days` labelled days, and with
    `score`, score the unlabelled day files of `source` with the new champion."""
    ingested = backfill(Path(source), Path(store), dask_address=dask_address)
    days = last_labelled_days(Path(store), last_days)
    summary = train(Path(store), days, TrainConfig.from_file(config_file), Path(out), dask_address)
    scored = []
    if score:
        files = unlabelled_day_files(Path(source))
        scored = score_days(files, "models:/nad-fusion@champion", Path(out) / "scores", truth)
    create_markdown_artifact(pipeline_report(ingested, summary, scored), key="pipeline-report")
    return {"backfill": ingested, "training": summary, "scores": scored}
