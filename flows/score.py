"""Scoring flow: score data files with a registered or saved model, one task per file.

`nad score` and the `score-day` deployment both run this flow, so both refuse a model of
another dataset, default to the dataset's champion and log an MLflow evaluation run for each
file whose labels are known. One bad file fails only its own task; the flow then ends Failed,
naming it, after the other files were scored. The scored days' drift reports are then shown
together (tasks/monitoring/drift_publish.py): a heatmap beside the predictions, a Prefect table, MLflow.
"""

from pathlib import Path

from prefect import flow, get_run_logger

from schemas.datasets import DEFAULT_DATASET, get_dataset
from tasks.errors import InputError, NadError
from tasks.monitoring.drift_publish import publish_drift_task
from tasks.registry.champion import champion_uri
from tasks.scoring.score import ScoredFile, resolve_model_task, score_file_task, scored_file, truth_of
from tasks.scoring.score_cluster import load_model_on_cluster_task
from tasks.scoring.voting import voting_of


class ScoreFailed(NadError):
    """Some files could not be scored; the others were. `outcomes` holds every file's."""

    def __init__(self, outcomes: list[ScoredFile]) -> None:
        super().__init__(outcomes)
        self.outcomes = outcomes

    def __str__(self) -> str:
        failed = [outcome.error for outcome in self.outcomes if outcome.error]
        return f"{len(failed)} of {len(self.outcomes)} files could not be scored: " + "; ".join(failed)

    def __repr__(self) -> str:  # as Prefect logs it: the message, not every outcome
        return f"{type(self).__name__}({str(self)!r})"


@flow(name="score-days")
def score_days(
    files: list[Path],
    model: str | None = None,
    out: Path = Path("scores"),
    truth: Path | None = None,
    dataset: str = DEFAULT_DATASET,
    vote_seconds: int = 0,
    vote_rule: str = "majority",
    dask_address: str | None = None,
) -> list[ScoredFile]:
    """Validate and score each file with `model` (default: the dataset's champion); with labels
    (a label column, or a file of the same name in `truth`), also the metrics, logged to MLflow.
    With `vote_seconds`, flagged rows vote by source in clock windows of that many seconds.
    With `dask_address`, the blocks of every file are scored on that cluster's workers, which
    must reach the files and the model folder (tasks/scoring/score_cluster.py); else in this process."""
    if not files:
        raise InputError("no files to score")
    vote = voting_of(vote_seconds, vote_rule)
    model = model or champion_uri(get_dataset(dataset))
    predictor = resolve_model_task(model, dataset)
    cluster = load_model_on_cluster_task(dask_address, predictor) if dask_address else None
    get_run_logger().info("scoring %d %s files with %s (%s)", len(files), dataset, model, predictor)
    paths = [Path(f) for f in files]
    futures = [
        score_file_task.submit(path, predictor, Path(out), truth_of(path, truth), model, vote, cluster)
        for path in paths
    ]
    outcomes = [
        scored_file(path, future.result(raise_on_failure=False))
        for path, future in zip(paths, futures, strict=True)
    ]
    drifted = [outcome for outcome in outcomes if outcome.report and outcome.report.drift]
    if drifted:  # models from before drift checks have no reference profile: no reports
        reports = [Path(outcome.report.drift) for outcome in drifted]
        publish_drift_task(reports, [outcome.mlflow_run for outcome in drifted], Path(out))
    if any(outcome.error for outcome in outcomes):
        raise ScoreFailed(outcomes)
    return outcomes
