"""Shared fixtures: small generated data sets, made once per session."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import pytest
from distributed import Client
from prefect.testing.utilities import prefect_test_harness

from schemas.generation import get_preset
from simulator.generate import DaySummary, generate_dataset
from tasks.cluster import dask_client
from tests.helpers import TRAIN_FILES

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
    # a busy 2-core machine can take minutes to start it
    with prefect_test_harness(server_startup_timeout=300):
        yield


@contextmanager
def mlflow_at(uri: str) -> Iterator[str]:
    """MLflow pointed at `uri` (our code reads MLFLOW_TRACKING_URI, a bare MlflowClient() the
    current URI), then back where it was."""
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    try:
        yield uri
    finally:
        mlflow.set_tracking_uri(previous)
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous


def new_mlflow_store(folder: Path) -> str:
    """The URI of a new, empty MLflow store (SQLite, artifacts beside it) in `folder`."""
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture(scope="session", autouse=True)
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow store for the whole session, for runs whose registry no test reads. A test
    whose outcome depends on which version is champion uses a store of its own: `fresh_mlflow`,
    or `trained_mlflow` for the session's trained model."""
    with mlflow_at(new_mlflow_store(tmp_path_factory.mktemp("mlflow"))) as uri:
        yield uri


@pytest.fixture
def fresh_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty MLflow store of this test's own: no model is registered, none is champion."""
    with mlflow_at(new_mlflow_store(tmp_path_factory.mktemp("own-mlflow"))) as uri:
        yield uri


@pytest.fixture(scope="session")
def tiny_store(tiny_dir: Path, tiny_days, tmp_path_factory, dask_cluster_client) -> Path:
    """The tiny training days, ingested once; tests copy it before they change it."""
    from tasks.ingest.files import ingest_files

    store = tmp_path_factory.mktemp("store")
    outcomes = list(ingest_files([tiny_dir / name for name in TRAIN_FILES], store, dask_cluster_client))
    assert all(outcome.report for outcome in outcomes)
    return store


@pytest.fixture(scope="session")
def tiny_split(tiny_store: Path, tmp_path_factory, dask_cluster_client):
    """The paper's split of `tiny_store`."""
    from schemas.training import SplitConfig
    from tasks.training.split import split_store

    return split_store(
        tiny_store, None, SplitConfig(), tmp_path_factory.mktemp("splits"), dask_cluster_client
    )


@pytest.fixture(scope="session")
def trained(tiny_store: Path, tmp_path_factory, prefect_harness):
    """One real `train` flow on the tiny training days: nets, predictors, MLflow run, registry.

    It registers version 1 in an MLflow store of its own (`trained.tracking.tracking_uri`); tests
    that read that run or its champion use `trained_mlflow`."""
    from flows.train import train_flow
    from schemas.training import NetConfig, TrainConfig

    quick = TrainConfig(
        binary=NetConfig(epochs=2), attack=NetConfig(epochs=3), baseline=NetConfig(epochs=2), batch_size=256
    )
    with mlflow_at(new_mlflow_store(tmp_path_factory.mktemp("trained-mlflow"))):
        return train_flow(tiny_store, None, quick, tmp_path_factory.mktemp("artifacts"))


@pytest.fixture
def trained_mlflow(trained) -> Iterator[str]:
    """MLflow pointed at the store that holds the session's trained model, for one test."""
    with mlflow_at(trained.tracking.tracking_uri) as uri:
        yield uri


@pytest.fixture(scope="session")
def context_trained(tiny_store: Path, tmp_path_factory, prefect_harness):
    """A second, cheaper `train` flow under feature set `context` (1 epoch per net), in an MLflow
    store of its own: for the served model's parity with `nad score` on context features."""
    from flows.train import train_flow
    from schemas.training import NetConfig, TrainConfig

    quick = TrainConfig(
        binary=NetConfig(epochs=1), attack=NetConfig(epochs=1), baseline=NetConfig(epochs=1),
        batch_size=256, feature_set="context",
    )  # fmt: skip
    with mlflow_at(new_mlflow_store(tmp_path_factory.mktemp("context-mlflow"))):
        return train_flow(tiny_store, None, quick, tmp_path_factory.mktemp("context-artifacts"))
