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

from flows.pipeline import pipeline
from tasks.store import part_dir, stored_parts
from tasks.tracking import CHAMPION, MODEL_NAME

REPO = Path(__file__).resolve().parents[1]
QUICK = {"binary": {"epochs": 2}, "attack": {"epochs": 2}, "baseline": {"epochs": 2}, "batch_size": 256}


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
    try:
        return str(MlflowClient().get_model_version_by_alias(MODEL_NAME, CHAMPION).version)
    except Exception:
        return None


def store_rows(store: Path) -> dict[str, int]:
    return {part: len(pd.read_parquet(part_dir(store, part))) for part in stored_parts(store)}


def test_pipeline_resumes_after_a_failure_and_never_moves_the_alias_on_failure(
    source: Path, tiny_dir: Path, tmp_path: Path, prefect_harness
) -> None:
    store, out = tmp_path / "store", tmp_path / "out"
    broken, good = tmp_path / "broken.json", tmp_path / "good.json"
    broken.write_text(json.dumps({**QUICK, "batch_size": 0}))
    good.write_text(json.dumps(QUICK))
    before = champion_version()

    failed = pipeline(source, store, 3, out, broken, return_state=True)
    assert failed.is_failed()
    assert champion_version() == before
    landed = store_rows(store)
    assert len(landed) == 7  # the backfill finished before training failed

    result = pipeline(source, store, 3, out, good, score=True, truth=tiny_dir / "truth")
    assert {row["status"] for row in result["backfill"]} == {"skipped"}
    assert store_rows(store) == landed
    tracking = result["training"]["tracking"]
    assert MlflowClient().get_run(tracking["run_id"]).data.tags["gate.decision"] == tracking["gate.decision"]
    if tracking["gate.decision"] == "promoted":
        assert champion_version() == tracking["version"]
    assert [Path(r["file"]).name[:4] for r in result["scores"]] == ["0123", "0124", "0125", "0126"]
    assert all(
        r["metrics"] and r["rows_read"] == r["rows_kept"] + r["rows_quarantined"] for r in result["scores"]
    )

    again = pipeline(source, store, 3, out, good)
    assert again["training"]["split"] == result["training"]["split"]
    assert again["training"]["preprocessing"] == result["training"]["preprocessing"]
    assert again["training"]["tracking"]["version"] != tracking["version"]


def test_pipeline_publishes_a_markdown_report(source: Path, tmp_path: Path, prefect_harness) -> None:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    config = tmp_path / "quick.json"
    config.write_text(json.dumps(QUICK))
    pipeline(source, tmp_path / "store", None, tmp_path / "out", config)

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
