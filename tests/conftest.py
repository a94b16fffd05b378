"""Shared fixtures: small generated data sets, made once per session."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client
from prefect.testing.utilities import prefect_test_harness

from schemas.generation import get_preset
from simulator.generate import DaySummary, generate_dataset
from tasks.cluster import dask_client

TINY_SEED = 11
# A test that needs one of these is slow: trained nets, a Prefect server (the harness or a real
# one), a separate Dask cluster. `make test-fast` (pytest -m "not slow") leaves them out; tests
# that are slow for another reason (they train a net themselves) carry the mark by hand.
SLOW_FIXTURES = frozenset({"trained", "tiny_nets", "prefect_harness", "prefect_server", "real_cluster"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a slow fixture, directly or through another fixture, as slow."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="session")
def tiny_days(tiny_dir: Path) -> list[DaySummary]:
    """The `tiny` preset written once for the whole session."""
    return generate_dataset(get_preset("tiny"), TINY_SEED, tiny_dir)


@pytest.fixture(scope="session")
def dask_cluster_client() -> Iterator[Client]:
    """A real local Dask cluster (two worker processes) shared by the session."""
    with dask_client() as client:
        yield client


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """Real Prefect flows against a temporary local server, started once."""
    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="session", autouse=True)
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow store (SQLite plus artifacts) in a temporary folder, for the whole session."""
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    yield uri
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous


@pytest.fixture(scope="session")
def trained(tiny_dir: Path, tiny_days, tmp_path_factory, dask_cluster_client, prefect_harness) -> dict:
    """One real `train` flow on the tiny training days: nets, predictors, MLflow run, registry."""
    from flows.train import train
    from schemas.training import NetConfig, TrainConfig
    from tasks.ingest import ingest_files

    quick = TrainConfig(
        binary=NetConfig(epochs=2), attack=NetConfig(epochs=3), baseline=NetConfig(epochs=2), batch_size=256
    )
    store = tmp_path_factory.mktemp("trained-store")
    days = [tiny_dir / f"{mmdd}_firewall.csv" for mmdd in ("1203", "1210", "1216")]
    assert all(outcome.report for outcome in ingest_files(days, store, dask_cluster_client))
    return train(store, None, quick, tmp_path_factory.mktemp("artifacts"))
