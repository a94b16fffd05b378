"""MLflow tracking, the registry's champion gate, the pyfunc, and serving it over HTTP."""

import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from schemas.firewall import CLASS_NAMES, UNLABELLED_COLUMNS
from tasks.ingest.store import read_report, stored_parts
from tasks.registry.mlflow_setup import CHAMPION, MODEL_NAME
from tests.helpers import free_port, wait_for_http


@pytest.fixture(scope="module")
def raw_rows(tiny_dir: Path, tiny_days) -> pd.DataFrame:
    return pd.read_csv(tiny_dir / "0124_firewall.csv").head(40)


def test_parent_run_holds_config_data_counts_and_metrics(trained, trained_mlflow: str) -> None:
    run = MlflowClient().get_run(trained.tracking.run_id)
    params, metrics = run.data.params, run.data.metrics
    assert params["config.binary.epochs"] == "2" and params["config.learning_rate"] == "0.0001"
    assert params["data.day.2020-12-03"] == trained.split.partitions["day=2020-12-03"]
    assert params["data.dataset"] == run.data.tags["nad.dataset"] == "zyell"
    assert int(params["rows.train.Probing-Nmap"]) == trained.split.counts["train"]["Probing-Nmap"]
    assert float(params["class_weight.binary.1"]) > float(params["class_weight.binary.0"])
    assert len(params["git_commit"]) in (40, 7) or params["git_commit"] == "unknown"
    for split in ("validation", "test"):
        for model in ("fusion", "baseline"):
            for metric in ("precision", "recall", "f1", "fbeta", "far", "cost", "criterion"):
                assert f"{split}.{model}.{metric}" in metrics
    assert metrics["test.fusion.criterion"] == pytest.approx(trained.evaluations["test"]["fusion"].criterion)
    written = json.loads((Path(trained.run_dir) / "training.json").read_text())["evaluations"]
    assert written["test"]["fusion"] == trained.evaluations["test"]["fusion"].to_dict()


def test_each_net_has_a_nested_run_with_epoch_curves(trained, trained_mlflow: str) -> None:
    client = MlflowClient()
    parent = client.get_run(trained.tracking.run_id)
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(r.data.params["net"] for r in children) == ["attack", "baseline", "binary"]
    attack = next(r for r in children if r.data.params["net"] == "attack")
    losses = client.get_metric_history(attack.info.run_id, "loss")
    assert [m.step for m in losses] == [1, 2, 3]
    assert len(client.get_metric_history(attack.info.run_id, "val_loss")) == 3
    fbeta = client.get_metric_history(attack.info.run_id, "val_fbeta")
    assert [m.step for m in fbeta] == [1, 2, 3] and all(0 <= m.value <= 1 for m in fbeta)


def test_training_days_and_split_are_dataset_inputs(trained, trained_mlflow: str, tiny_store: Path) -> None:
    inputs = MlflowClient().get_run(trained.tracking.run_id).inputs.dataset_inputs
    by_context: dict[str, dict] = {}
    for item in inputs:
        context = {tag.key: tag.value for tag in item.tags}["mlflow.data.context"]
        by_context.setdefault(context, {})[item.dataset.name] = item.dataset
    assert sorted(by_context["training"]) == sorted(trained.split.partitions) == stored_parts(tiny_store)
    for part, dataset in by_context["training"].items():
        report = read_report(tiny_store, part)
        expected = hashlib.sha256(f"{report.sha256}|{report.schema_version}".encode()).hexdigest()
        assert dataset.digest == expected[:12]
        assert json.loads(dataset.profile) == {"num_rows": report.rows_kept}
        assert json.loads(dataset.source) == {"uri": str((tiny_store / part).resolve())}
        columns = {column["name"] for column in json.loads(dataset.schema)["mlflow_colspec"]}
        assert {"time", "src", "line"} <= columns
    split = by_context["split"]
    assert sorted(split) == sorted(
        f"split-{trained.split.key}/{name}" for name in ("train", "validation", "test")
    )
    train = split[f"split-{trained.split.key}/train"]
    assert json.loads(train.profile)["num_rows"] == sum(trained.split.counts["train"].values())


def test_run_description_says_what_trained_and_how_it_scored(trained, trained_mlflow: str) -> None:
    note = MlflowClient().get_run(trained.tracking.run_id).data.tags["mlflow.note.content"]
    assert all(part in note for part in trained.split.partitions)
    criterion = trained.evaluations["test"]["fusion"].criterion
    assert f"| test | criterion | {criterion:.4f} |" in note
    assert "Champion gate: promoted" in note


def test_artifacts_are_logged(trained, trained_mlflow: str) -> None:
    client = MlflowClient()
    run_id = trained.tracking.run_id
    names = {a.path for a in client.list_artifacts(run_id, "evaluation")}
    for expected in (
        "evaluation/confusion-test-fusion-counts.png",
        "evaluation/confusion-test-baseline-normalised.png",
        "evaluation/per-class-test-fusion.md",
        "evaluation/fusion-vs-baseline.md",
        "evaluation/training-curves.png",
    ):
        assert expected in names
    assert "preprocessing.json" in {a.path for a in client.list_artifacts(run_id)}
    table = Path(
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="evaluation/fusion-vs-baseline.md")
    )
    assert "| test | criterion |" in table.read_text()


def test_model_is_registered_and_first_version_is_champion(trained, trained_mlflow: str) -> None:
    """`trained` is the first registration in its own store, so the gate has no champion to
    compare with: it must promote, and the alias must name version 1."""
    client = MlflowClient()
    [version] = client.search_model_versions(f"name = '{MODEL_NAME}'")
    assert str(version.version) == trained.tracking.version == "1"
    assert version.run_id == trained.tracking.run_id
    gate = trained.tracking.gate
    assert (gate.decision, gate.champion_version, gate.champion_criterion) == ("promoted", None, None)
    assert str(client.get_model_version_by_alias(MODEL_NAME, CHAMPION).version) == "1"
    tags = client.get_run(version.run_id).data.tags
    assert (tags["gate.decision"], tags["gate.version"], tags["gate.champion_version"]) == (
        "promoted",
        "1",
        "none",
    )


def test_pyfunc_predicts_class_names_from_raw_rows(
    trained, trained_mlflow: str, raw_rows: pd.DataFrame
) -> None:
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{trained.tracking.version}")
    predictions = model.predict(raw_rows[list(UNLABELLED_COLUMNS)].astype({"duration": "float64"}))
    assert len(predictions) == len(raw_rows) and set(predictions) <= set(CLASS_NAMES)
    inputs = [c.name for c in model.metadata.get_input_schema().inputs]
    assert inputs == list(UNLABELLED_COLUMNS)


def test_served_champion_answers_invocations(
    trained, trained_mlflow: str, raw_rows: pd.DataFrame, tmp_path: Path
) -> None:
    port = free_port()
    mlflow_cli = str(Path(sys.executable).parent / "mlflow")
    # mlflow starts `uvicorn` by name, so the environment's bin folder must be on PATH.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PATH": path}
    log_path = tmp_path / "server.log"
    log = open(log_path, "w")  # noqa: SIM115
    server = subprocess.Popen(
        [mlflow_cli, "models", "serve", "-m", f"models:/{MODEL_NAME}@{CHAMPION}", "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        try:
            wait_for_http(f"http://127.0.0.1:{port}/ping", server)
        except OSError as error:
            raise AssertionError(f"no answer; the server said: {log_path.read_text()[-3000:]}") from error
        rows = raw_rows[list(UNLABELLED_COLUMNS)].astype({"duration": "float64"})
        body = json.dumps({"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            predictions = json.loads(answer.read())["predictions"]
        assert len(predictions) == len(rows)
        assert {p["pred_label"] if isinstance(p, dict) else p for p in predictions} <= set(CLASS_NAMES)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
