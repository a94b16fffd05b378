"""The backfill flow under a real Prefect server, and ingestion on a real distributed cluster."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from distributed import Client
from prefect.client.orchestration import get_client

from flows.backfill import BackfillFailed, backfill_flow
from schemas.runtime import DASK_ADDRESS_ENV
from simulator.generate import DaySummary
from tasks.errors import InputError
from tasks.ingest.files import ingest_file
from tasks.ingest.store import part_dir, quarantine_dir, read_report, stored_parts
from tests.helpers import dask_processes

TRAIN = ["1203_firewall.csv", "1210_firewall.csv", "1216_firewall.csv"]


@pytest.fixture
def source(tiny_dir: Path, tiny_days: list[DaySummary], tmp_path: Path) -> Path:
    """Three good training days and one day whose header lacks columns."""
    folder = tmp_path / "source"
    folder.mkdir()
    for name in TRAIN:
        shutil.copy(tiny_dir / name, folder / name)
    (folder / "1217_firewall.csv").write_text("time,src,dst\n2020-12-17 00:00:00,1.2.3.4,5.6.7.8\n")
    return folder


def backfill_table() -> list[dict]:
    import asyncio
    import json

    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def read() -> list[dict]:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["backfill-summary"]))
            )
            newest = max(found, key=lambda a: a.created)
            return json.loads(newest.data) if isinstance(newest.data, str) else newest.data

    return asyncio.run(read())


def test_one_bad_day_fails_the_flow_but_not_the_others(source: Path, tmp_path: Path, prefect_harness) -> None:
    store = tmp_path / "store"
    state = backfill_flow(source, store, return_state=True)
    assert state.is_failed()
    with pytest.raises(BackfillFailed, match=r"1217_firewall.csv: failed: .*missing column"):
        state.result()
    assert stored_parts(store) == ["day=2020-12-03", "day=2020-12-10", "day=2020-12-16"]
    table = backfill_table()
    assert [row["file"] for row in table] == [*TRAIN, "1217_firewall.csv"]
    assert [row["status"] for row in table[:3]] == ["ingested"] * 3
    assert table[3]["status"].startswith("failed") and table[3]["rows"] is None
    assert all(row["rows"] == row["kept"] + row["quarantined"] + row["out_of_scope"] for row in table[:3])


def test_a_missing_folder_or_an_empty_match_fails_unless_allowed(
    source: Path, tmp_path: Path, prefect_harness
) -> None:
    store = tmp_path / "store"
    with pytest.raises(InputError, match=r"nosuchdir: no such folder$"):
        backfill_flow(tmp_path / "nosuchdir", store)
    with pytest.raises(InputError, match=r"no zyell files .* with a day from 0301 to 0302; allow an empty"):
        backfill_flow(source, store, since="0301", until="0302")
    assert backfill_flow(source, store, since="0301", until="0302", allow_empty=True) == []
    assert not store.exists()


def test_rerun_skips_unchanged_days_unless_forced(source: Path, tmp_path: Path, prefect_harness) -> None:
    (source / "1217_firewall.csv").unlink()
    store = tmp_path / "store"
    first = backfill_flow(source, store)
    assert {row.status for row in first} == {"ingested"}
    again = backfill_flow(source, store, since="1210", until="1216")
    assert [(row.file, row.status) for row in again] == [(TRAIN[1], "skipped"), (TRAIN[2], "skipped")]
    forced = backfill_flow(source, store, since="1216", force=True)
    assert [(row.file, row.status) for row in forced] == [(TRAIN[2], "ingested")]


@pytest.fixture
def real_cluster(tmp_path: Path) -> Iterator[str]:
    """A `dask scheduler` and one `dask worker`, as separate processes on 127.0.0.1."""
    with dask_processes(tmp_path) as cluster:
        yield cluster.address


def test_ingest_on_a_real_distributed_cluster(
    real_cluster: str, tiny_dir: Path, tiny_days, tmp_path: Path
) -> None:
    with Client(real_cluster) as client:
        report = ingest_file(tiny_dir / TRAIN[0], tmp_path, client)
        workers = list(client.scheduler_info()["workers"])
    assert len(workers) == 1
    part = stored_parts(tmp_path)[0]
    assert part == f"day={report.partition}"
    assert len(pd.read_parquet(part_dir(tmp_path, part))) == report.rows_kept == report.rows_read
    assert pd.read_parquet(quarantine_dir(tmp_path, part)).empty


def test_backfill_uses_the_cluster_named_in_the_environment(
    real_cluster: str, source: Path, tmp_path: Path, prefect_harness, monkeypatch
) -> None:
    (source / "1217_firewall.csv").unlink()
    monkeypatch.setenv(DASK_ADDRESS_ENV, real_cluster)
    rows = backfill_flow(source, tmp_path / "store")
    assert [row.status for row in rows] == ["ingested"] * 3
    assert read_report(tmp_path / "store", stored_parts(tmp_path / "store")[0]).rows_read == rows[0].rows
    with Client(real_cluster) as client:
        prefixes = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    # the ingest's block tasks (`parse-block` fused with `store_partition`: prefix `parse`) ran there
    assert any(prefix.startswith("parse") or "store_partition" in prefix for prefix in prefixes), prefixes
