"""`nad ingest` checks its files before it starts a Dask cluster: a missing file is one
`error:` line and a non-zero exit, without waiting seconds for workers."""

from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tasks.cluster
from flows.cli import app


def test_ingest_of_a_missing_file_is_an_error_before_any_cluster_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    started = []

    @contextmanager
    def recorded_cluster(address: str | None = None):
        started.append(address)
        yield None

    monkeypatch.setattr(tasks.cluster, "dask_client", recorded_cluster)
    missing = tmp_path / "1203_firewall.csv"
    result = CliRunner().invoke(app, ["ingest", str(missing), "--store", str(tmp_path / "store")])
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [f"error: {missing}: no such file"]
    assert started == []
    assert not (tmp_path / "store").exists()
