"""Dask cluster access: an existing cluster by address, or a local one started on demand."""

import logging
import multiprocessing
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from distributed import Client, LocalCluster

from schemas.runtime import DASK_ADDRESS_ENV, QUIET_LOG_ENV


def resolve_dask_address(address: str | None) -> str | None:
    """The explicit address, else NAD_DASK_ADDRESS, else None (a local cluster)."""
    return address or os.environ.get(DASK_ADDRESS_ENV) or None


@contextmanager
def workers_deaf_to_ctrl_c() -> Iterator[None]:
    """Worker processes spawned inside start with SIGINT ignored, so a Ctrl-C to the terminal's
    process group reaches only `nad`, which ends its workers itself, instead of interrupting each
    worker mid-import into a screen of tracebacks. An ignored signal stays ignored across exec, so
    a two-line shell launcher ignores it and then runs this Python; with NAD_QUIET_LOG set, the
    workers' stderr (their logged tracebacks too) goes to that file instead of the terminal."""
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="nad-worker-") as folder:
        launcher = Path(folder) / "python"
        log = os.environ.get(QUIET_LOG_ENV)
        errors = f" 2>>'{log}'" if log else ""
        launcher.write_text(f"#!/bin/sh\ntrap '' INT\nexec '{sys.executable}' \"$@\"{errors}\n")
        launcher.chmod(0o755)
        spawn.set_executable(str(launcher))
        try:
            yield
        finally:
            spawn.set_executable(sys.executable)


@contextmanager
def dask_client(address: str | None = None) -> Iterator[Client]:
    """A client of the cluster at `address`, or of a local cluster that lives as long as it."""
    address = resolve_dask_address(address)
    if address:
        with Client(address, set_as_default=False) as client:
            yield client
        return
    workers = max(1, os.cpu_count() or 1)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    # One thread per worker process: parsing and validation hold the GIL in places.
    with (
        workers_deaf_to_ctrl_c(),
        LocalCluster(
            n_workers=workers, threads_per_worker=1, dashboard_address=":0", silence_logs=logging.WARNING
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield client
