"""MLflow setup: where the store is, the experiment, the champion alias, the owner tags.

The one reader of `MLFLOW_TRACKING_URI` (through `schemas.runtime`); the default store is SQLite
`mlflow.db` plus an `mlartifacts/` folder in the working directory. Nothing here touches MLflow at
import time.
"""

import os
import socket
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from schemas.runtime import MLFLOW_TRACKING_URI_ENV
from tasks.metrics import HEADLINE

EXPERIMENT = "nad-fusion"
MODEL_NAME = "nad-fusion"
CHAMPION = "champion"


def tracking_uri() -> str:
    return os.environ.get(MLFLOW_TRACKING_URI_ENV) or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def artifact_location(uri: str) -> str | None:
    """Artifacts of a SQLite store go in `mlartifacts/` beside the database file."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()


def configure_mlflow() -> str:
    """Point MLflow at the store and make sure the experiment exists; return its id. Runs that a
    killed `nad` left RUNNING end as KILLED here, so any command that opens the store mends it."""
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        mlflow.create_experiment(EXPERIMENT, artifact_location=artifact_location(uri))
    experiment_id = mlflow.set_experiment(EXPERIMENT).experiment_id
    end_dead_runs(experiment_id)
    return experiment_id


def owner_tags() -> dict[str, str]:
    """Which process runs an MLflow run: set on every run `nad` starts."""
    return {"nad.host": socket.gethostname(), "nad.pid": str(os.getpid())}


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def end_dead_runs(experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs whose `nad` process, on this host, is gone; return their ids.
    A run of another host, or of no known process, is left as it is."""
    client = MlflowClient()
    ended = []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'"):
        tags = run.data.tags
        pid = int(tags.get("nad.pid", "0") or 0)
        if pid and tags.get("nad.host") == socket.gethostname() and not process_alive(pid):
            client.set_terminated(run.info.run_id, status="KILLED")
            ended.append(run.info.run_id)
    return ended


def log_evaluation_run(name: str, params: dict[str, str], metrics: dict[str, float]) -> str:
    """An evaluation run (scoring a day against known labels); returns its id."""
    configure_mlflow()
    with mlflow.start_run(run_name=name, tags=owner_tags()) as run:
        mlflow.set_tag("nad.kind", "evaluation")
        mlflow.log_params(params)
        mlflow.log_metrics({k: v for k, v in metrics.items() if k.split(".")[-1] in HEADLINE})
        return run.info.run_id
