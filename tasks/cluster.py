"""Dask cluster access: an existing cluster by address, or a local one started on demand."""

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from distributed import Client, LocalCluster

from schemas.runtime import DASK_ADDRESS_ENV


def resolve_dask_address(address: str | None) -> str | None:
    """The explicit address, else NAD_DASK_ADDRESS, else None (a local cluster)."""
    return address or os.environ.get(DASK_ADDRESS_ENV) or None


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
        LocalCluster(
            n_workers=workers, threads_per_worker=1, dashboard_address=":0", silence_logs=logging.WARNING
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield client
