"""The end-to-end pipeline flow, resuming after a failure, and the prefect.yaml deployments."""

import importlib
import inspect
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from prefect.flows import Flow

from flows.pipeline import pipeline_flow
from tasks.ingest.store import part_dir, stored_parts
from tasks.registry.mlflow_setup import CHAMPION, MODEL_NAME

REPO = Path(__file__).resolve().parents[1]
QUICK = {
    "preset": "paper",
    "binary": {"epochs": 2},
    "attack": {"epochs": 2},
    "baseline": {"epochs": 2},
    "batch_size": 256,
}


def test_every_deployment_names_a_flow_and_its_parameters() -> None:
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert set(deployments) == {"nightly-retrain", "backfill", "score-day"}
    assert any("set_working_directory" in next(iter(step)) for step in spec["pull"])
    for name, deployment in deployments.items():
        path, function = deployment["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, function)
        assert isinstance(flow, Flow), name
        signature = inspect.signature(flow.fn).parameters
        assert set(deployment["parameters"]) <= set(signature), (
            name,
            set(deployment["parameters"]) - set(signature),
        )
        required = {p for p, v in signature.items() if v.default is inspect.Parameter.empty}
        assert required <= set(deployment["parameters"]), (name, required)
        assert deployment["work_pool"]["name"] == "nad-process"
    schedule = deployments["nightly-retrain"]["schedules"][0]
    assert schedule["cron"] == "0 2 * * *" and schedule["timezone"]
    assert {"source", "store", "last_days", "dataset"} <= set(deployments["nightly-retrain"]["parameters"])
    assert {"source", "store", "since", "until", "force", "dataset"} <= set(
        deployments["backfill"]["parameters"]
    )
    assert {"files", "model", "out"} <= set(deployments["score-day"]["parameters"])


@pytest.fixture
def source(tiny_dir: Path, tiny_days, tmp_path: Path) -> Path:
    folder = tmp_path / "incoming"
    folder.mkdir()
    for path in tiny_dir.glob("*_firewall.csv"):
        shutil.copy(path, folder / path.name)
    return folder


def champion_version() -> str | None:
    """The version the champion alias names; None while no model or no champion is registered.
    Any failure to ask fails the test."""
    models = MlflowClient().search_registered_models(f"name = '{MODEL_NAME}'")
    return str(models[0].aliases[CHAMPION]) if models and CHAMPION in models[0].aliases else None


def registered_versions() -> list[str]:
    return sorted(str(v.version) for v in MlflowClient().search_model_versions(f"name = '{MODEL_NAME}'"))


def store_rows(store: Path) -> dict[str, int]:
    return {part: len(pd.read_parquet(part_dir(store, part))) for part in stored_parts(store)}


def failing_inside_training(out: Path) -> Path:
    """Make the nets' folder unwritable: `out/runs` becomes a file. Validation, backfill, split
    and preprocessing all pass; the first net fails when it is saved, after fitting."""
    runs = out / "runs"
    if runs.exists():
        runs.rename(out / f"runs-{len(list(out.glob('runs-*')))}")
    out.mkdir(parents=True, exist_ok=True)
    runs.write_text("not a folder\n")
    return runs


def assert_failed_in_training(state, runs: Path) -> None:
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, NotADirectoryError) and str(runs) in str(error), repr(error)


def test_pipeline_resumes_after_a_failure_and_never_moves_the_alias_on_failure(
    source: Path, tiny_dir: Path, tmp_path: Path, prefect_harness, fresh_mlflow: str
) -> None:
    store, out, config = tmp_path / "store", tmp_path / "out", tmp_path / "quick.json"
    config.write_text(json.dumps(QUICK))

    runs = failing_inside_training(out)
    assert_failed_in_training(pipeline_flow(source, store, 3, out, config, return_state=True), runs)
    landed = store_rows(store)
    assert len(landed) == 7  # the backfill finished before training failed
    [split_folder] = (out / "splits").glob("split-*")  # and training got past the split
    assert registered_versions() == [] and champion_version() is None

    runs.unlink()
    result = pipeline_flow(source, store, 3, out, config, score=True, truth=tiny_dir / "truth")
    assert {row.status for row in result.backfill} == {"skipped"}
    assert store_rows(store) == landed
    training = result.training
    assert training.split.reused and Path(training.split.folder) == split_folder
    tracking = training.tracking
    assert (tracking.version, tracking.gate.decision) == ("1", "promoted") and champion_version() == "1"
    assert MlflowClient().get_run(tracking.run_id).data.tags["gate.decision"] == "promoted"
    assert [Path(scored.file).name[:4] for scored in result.scores] == ["0123", "0124", "0125", "0126"]
    reports = [scored.report for scored in result.scores]
    assert all(r.metrics and r.rows_read == r.rows_kept + r.rows_quarantined for r in reports)

    runs = failing_inside_training(out)
    assert_failed_in_training(pipeline_flow(source, store, 3, out, config, return_state=True), runs)
    assert registered_versions() == ["1"] and champion_version() == "1"


def test_pipeline_publishes_a_markdown_report(
    source: Path, tmp_path: Path, prefect_harness, fresh_mlflow: str
) -> None:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    config = tmp_path / "quick.json"
    config.write_text(json.dumps(QUICK))
    pipeline_flow(source, tmp_path / "store", None, tmp_path / "out", config)

    async def newest() -> str:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["pipeline-report"]))
            )
            return max(found, key=lambda a: a.created).data

    report = asyncio.run(newest())
    for part in (
        "## Ingested files",
        "## Fusion against baseline",
        "## Champion gate",
        "MLflow: run ",
        "| test | criterion |",
    ):
        assert part in report
    assert "1203_firewall.csv" in report
