"""An MLflow run left RUNNING by a killed `nad` ends as KILLED when the store is next opened."""

import os
import subprocess
import sys
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from tasks.registry.mlflow_setup import configure_mlflow, owner_tags

KILLED_MID_RUN = """
import os, signal, mlflow
from tasks.registry.mlflow_setup import configure_mlflow, owner_tags
configure_mlflow()
run = mlflow.start_run(run_name="killed", tags=owner_tags())
print(run.info.run_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_run_of_a_killed_process_ends_killed_and_a_live_one_stays(tmp_path: Path, monkeypatch) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", KILLED_MID_RUN], capture_output=True, text=True, env=env)
    assert done.returncode == -9, done.stderr[-2000:]
    killed = done.stdout.split()[0]
    client = MlflowClient(uri)
    assert client.get_run(killed).info.status == "RUNNING"
    configure_mlflow()
    live = mlflow.start_run(run_name="live", tags=owner_tags()).info.run_id
    try:
        configure_mlflow()  # any nad command that opens the store
        assert client.get_run(killed).info.status == "KILLED"
        assert client.get_run(live).info.status == "RUNNING"
    finally:
        mlflow.end_run()
