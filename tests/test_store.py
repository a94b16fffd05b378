"""The store: idempotent re-ingest, replacement of a changed day, and atomicity under crashes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from distributed import Client

from schemas.datasets import ZYELL
from simulator.generate import DaySummary
from tasks.ingest.files import ingest_file
from tasks.ingest.lines import plan_blocks
from tasks.ingest.report import build_report
from tasks.ingest.scan import resolve_partition, scan_file
from tasks.ingest.store import (
    JOURNAL_DIR,
    STAGING_DIR,
    TRASH_DIR,
    claim_store,
    new_stage,
    part_dir,
    part_lock,
    quarantine_dir,
    read_report,
    recover_store,
    stored_parts,
    write_journal,
)
from tasks.ingest.write import write_partitions

DAY = "day=2020-12-03"
NAME = "1203_firewall.csv"
OTHER_NAME, OTHER_DAY = "1210_firewall.csv", "day=2020-12-10"
REPO = Path(__file__).resolve().parents[1]


def snapshot(store: Path) -> dict[str, pd.DataFrame]:
    """The day's data and quarantine as frames, for comparing two store states."""
    return {
        "data": pd.read_parquet(part_dir(store, DAY)).sort_values("line", ignore_index=True),
        "quarantine": pd.read_parquet(quarantine_dir(store, DAY)).sort_values("line", ignore_index=True),
    }


def assert_same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    for part in a:
        pd.testing.assert_frame_equal(a[part], b[part])


@pytest.fixture
def day_v1(tiny_dir: Path, tiny_days: list[DaySummary], tmp_path: Path) -> Path:
    """A day file with two bad lines, in its own folder."""
    lines = (tiny_dir / NAME).read_bytes().split(b"\n")
    lines[5] = lines[5] + b",extra"
    fields = lines[9].split(b",")
    fields[6] = b"-6"
    lines[9] = b",".join(fields)
    path = tmp_path / "v1" / NAME
    path.parent.mkdir()
    path.write_bytes(b"\n".join(lines))
    return path


@pytest.fixture
def day_v2(tiny_dir: Path, tiny_days: list[DaySummary], tmp_path: Path) -> Path:
    """The clean day: the same file name with other content."""
    path = tmp_path / "v2" / NAME
    path.parent.mkdir()
    path.write_bytes((tiny_dir / NAME).read_bytes())
    return path


def test_reingesting_the_same_file_gives_the_same_store(
    day_v1: Path, tmp_path: Path, dask_cluster_client
) -> None:
    store = tmp_path / "store"
    first = ingest_file(day_v1, store, dask_cluster_client)
    before = snapshot(store)
    second = ingest_file(day_v1, store, dask_cluster_client)
    assert_same(before, snapshot(store))
    assert first.rows_quarantined == second.rows_quarantined == 2
    assert len(before["data"]) == first.rows_kept and before["data"]["line"].is_unique
    assert second.previous_sha256 == second.sha256 == first.sha256
    assert stored_parts(store) == [DAY]
    assert not list((store / STAGING_DIR).iterdir()) and not list((store / JOURNAL_DIR).iterdir())


def test_a_changed_file_replaces_the_day(
    day_v1: Path, day_v2: Path, tmp_path: Path, dask_cluster_client
) -> None:
    store = tmp_path / "store"
    old = ingest_file(day_v1, store, dask_cluster_client)
    new = ingest_file(day_v2, store, dask_cluster_client)
    assert new.previous_sha256 == old.sha256 != new.sha256
    assert read_report(store, DAY).sha256 == new.sha256
    assert len(snapshot(store)["data"]) == new.rows_kept == new.rows_read
    assert snapshot(store)["quarantine"].empty


def test_skip_unchanged_returns_the_stored_report(day_v1: Path, tmp_path: Path, dask_cluster_client) -> None:
    store = tmp_path / "store"
    ingest_file(day_v1, store, dask_cluster_client)
    skipped = ingest_file(day_v1, store, dask_cluster_client, skip_unchanged=True)
    assert skipped.status == "skipped" and skipped.rows_quarantined == 2


def stage_new_version(path: Path, store: Path, client: Client):
    """Everything ingest does before its commit point."""
    scan = scan_file(path)
    day = resolve_partition(path, scan, ZYELL, None)
    stage = new_stage(store, ZYELL.partition_folder(day))
    stats = write_partitions(plan_blocks(scan, day, ZYELL), stage, client)
    build_report(scan, ZYELL, day, stats, read_report(store, DAY), time.perf_counter())
    return stage


def test_crash_before_the_commit_point_keeps_the_old_day(
    day_v1, day_v2, tmp_path: Path, dask_cluster_client
) -> None:
    store = tmp_path / "store"
    old = ingest_file(day_v1, store, dask_cluster_client)
    before = snapshot(store)
    stage_new_version(day_v2, store, dask_cluster_client)  # ... and the process dies here
    assert_same(before, snapshot(store))
    recover_store(store)
    assert_same(before, snapshot(store))
    assert read_report(store, DAY).sha256 == old.sha256
    assert not list((store / STAGING_DIR).iterdir())


@pytest.mark.parametrize("moved", [0, 1])
def test_crash_after_the_commit_point_rolls_forward(
    day_v1, day_v2, tmp_path: Path, dask_cluster_client, moved
) -> None:
    store = tmp_path / "store"
    ingest_file(day_v1, store, dask_cluster_client)
    expected = tmp_path / "expected"
    ingest_file(day_v2, expected, dask_cluster_client)
    stage = stage_new_version(day_v2, store, dask_cluster_client)
    (stage.data / "_report.json").write_text((part_dir(expected, DAY) / "_report.json").read_text())
    write_journal(store, DAY, stage)
    if moved:  # the process died between the renames: the live data already in the trash
        os.rename(part_dir(store, DAY), store / "gone")
    recover_store(store)
    assert_same(snapshot(expected), snapshot(store))
    assert not list((store / JOURNAL_DIR).iterdir())


def test_the_next_writer_of_any_day_drops_staging_a_crash_left(
    day_v1, day_v2, tiny_dir: Path, tmp_path: Path, dask_cluster_client
) -> None:
    store = tmp_path / "store"
    ingest_file(day_v1, store, dask_cluster_client)
    before = snapshot(store)
    stage_new_version(day_v2, store, dask_cluster_client)  # ... and the process dies here
    ingest_file(tiny_dir / OTHER_NAME, store, dask_cluster_client)  # another day's writer opens the store
    assert_same(before, snapshot(store))
    assert not list((store / STAGING_DIR).iterdir())
    assert stored_parts(store) == [DAY, OTHER_DAY]


def test_the_next_writer_of_any_day_rolls_a_committed_crash_forward(
    day_v1, day_v2, tiny_dir: Path, tmp_path: Path, dask_cluster_client
) -> None:
    store = tmp_path / "store"
    ingest_file(day_v1, store, dask_cluster_client)
    expected = tmp_path / "expected"
    ingest_file(day_v2, expected, dask_cluster_client)
    stage = stage_new_version(day_v2, store, dask_cluster_client)
    (stage.data / "_report.json").write_text((part_dir(expected, DAY) / "_report.json").read_text())
    write_journal(store, DAY, stage)
    trash = store / TRASH_DIR / stage.root.name
    trash.mkdir(parents=True)
    os.rename(part_dir(store, DAY), trash / "0")  # the process died between the renames
    ingest_file(tiny_dir / OTHER_NAME, store, dask_cluster_client)
    assert_same(snapshot(expected), snapshot(store))
    assert read_report(store, DAY).sha256 == read_report(expected, DAY).sha256
    for bookkeeping in (JOURNAL_DIR, STAGING_DIR, TRASH_DIR):
        assert not list((store / bookkeeping).iterdir()), bookkeeping


def test_opening_the_store_leaves_a_live_writers_staging_alone(tmp_path: Path) -> None:
    """A partition whose lock is held is being written: recovery neither waits for it nor touches it."""
    store = tmp_path / "store"
    claim_store(store, ZYELL.name)
    dead = new_stage(store, OTHER_DAY)  # its writer died
    with part_lock(store, DAY):
        live = new_stage(store, DAY)
        started = time.monotonic()
        claim_store(store, ZYELL.name)
        assert time.monotonic() - started < 5
        assert live.root.exists() and not dead.root.exists()


def test_a_killed_ingest_leaves_one_whole_version(day_v1: Path, tmp_path: Path, dask_cluster_client) -> None:
    """A real crash: SIGKILL an ingest process while it writes the new version."""
    store = tmp_path / "store"
    ingest_file(day_v1, store, dask_cluster_client)
    before = snapshot(store)
    big = tmp_path / "big" / NAME
    big.parent.mkdir()
    body = day_v1.read_bytes().split(b"\n", 1)[1]
    big.write_bytes(day_v1.read_bytes() + body * 300)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    address = dask_cluster_client.scheduler.address
    code = (
        "from pathlib import Path\nfrom distributed import Client\n"
        "from tasks.ingest.files import ingest_file\n"
        f"ingest_file(Path({str(big)!r}), Path({str(store)!r}), Client({address!r}), blocksize=1 << 16)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=REPO)
    deadline = time.monotonic() + 60
    while not any((store / STAGING_DIR).glob("*/data/part-*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert any((store / STAGING_DIR).glob("*")), "the kill should land while the new version is staged"
    recover_store(store)
    assert_same(before, snapshot(store))
