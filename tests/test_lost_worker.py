"""A Dask worker killed with SIGKILL in the middle of an ingest (issue 20): the ingest completes
with every row stored exactly once, on a real `dask scheduler` and two `dask worker` processes."""

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from distributed import Client

from tasks.ingest.files import ingest_file
from tasks.ingest.store import part_dir, read_report, stored_parts
from tests.helpers import dask_processes

pytestmark = pytest.mark.slow

DAY = "0126_firewall.csv"  # the largest tiny day
BLOCK_BYTES = 8_000  # dozens of blocks, so the kill lands while most are still to do


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[str, dict[str, int]]]:
    """A scheduler and two workers without nannies (a killed worker stays dead), each its own
    process on 127.0.0.1; yields the address and each worker's pid by address."""
    with dask_processes(tmp_path, workers=2, nanny=False) as cluster:
        with Client(cluster.address, timeout=60) as client:
            pids = client.run(os.getpid)
        yield cluster.address, pids


def kill_a_busy_worker(
    client: Client, pids: dict[str, int], killed: list[int], stop: threading.Event
) -> None:
    """SIGKILL the first worker seen processing a block task."""
    while not stop.is_set():
        busy = [
            worker for worker, keys in client.processing().items() if any("parse" in str(k) for k in keys)
        ]
        if busy:
            os.kill(pids[busy[0]], signal.SIGKILL)
            killed.append(pids[busy[0]])
            return
        time.sleep(0.005)


def test_a_worker_killed_mid_ingest_leaves_every_row_stored_once(
    two_workers: tuple[str, dict[str, int]], tiny_dir: Path, tiny_days, tmp_path: Path
) -> None:
    address, pids = two_workers
    killed: list[int] = []
    stop = threading.Event()
    with Client(address) as client:
        killer = threading.Thread(target=kill_a_busy_worker, args=(client, pids, killed, stop))
        killer.start()
        try:
            report = ingest_file(tiny_dir / DAY, tmp_path / "store", client, blocksize=BLOCK_BYTES)
        finally:
            stop.set()
            killer.join()
        survivors = list(client.scheduler_info()["workers"])
    assert killed and len(survivors) == 1, "no worker was killed mid-ingest"

    store = tmp_path / "store"
    part = stored_parts(store)[0]
    stored = pd.read_parquet(part_dir(store, part))
    source = pd.read_csv(tiny_dir / DAY)
    assert report.rows_read == len(source) == report.rows_kept == read_report(store, part).rows_kept
    assert len(stored) == len(source)
    key = ["time", "src", "dst", "spt", "dpt"]
    stored_keys = stored[key].astype(str).value_counts().sort_index()
    source_keys = (
        source.assign(time=pd.to_datetime(source["time"]))[key].astype(str).value_counts().sort_index()
    )
    assert stored_keys.equals(source_keys)  # each source row once: none lost, none twice
