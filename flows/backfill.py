"""Backfill flow: ingest every data file of a folder into the store, one task per file."""

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from schemas.datasets import DEFAULT_DATASET, get_dataset
from tasks.cluster import dask_client
from tasks.ingest import backfill_row, ingest_partition, select_files
from tasks.store import claim_store


class BackfillFailed(RuntimeError):
    """Some files could not be ingested; the others landed."""


@flow(name="backfill")
def backfill(
    source: Path,
    store: Path,
    since: str | None = None,
    until: str | None = None,
    force: bool = False,
    dask_address: str | None = None,
    dataset: str = DEFAULT_DATASET,
) -> list[dict]:
    """Ingest the data files of `source` (for ZYELL: MMDD in [since, until]) concurrently.

    Partitions whose stored version came from the same file (sha256) are skipped unless
    `force`. One bad file fails only its own task; the flow then ends Failed, naming it.
    """
    logger = get_run_logger()
    spec = get_dataset(dataset)
    paths = select_files(Path(source), spec, since, until)
    logger.info("backfill of %d %s files from %s into %s", len(paths), dataset, source, store)
    claim_store(Path(store), dataset)
    with dask_client(dask_address) as client:
        address = client.scheduler.address
        futures = [ingest_partition.submit(path, Path(store), address, dataset, force) for path in paths]
        results = [future.result(raise_on_failure=False) for future in futures]
    rows = [backfill_row(path, result) for path, result in zip(paths, results, strict=True)]
    create_table_artifact(rows, key="backfill-summary", description=f"Backfill of {source} into {store}")
    failed = [row for row in rows if row["status"].startswith("failed")]
    if failed:
        raise BackfillFailed("; ".join(f"{row['file']}: {row['status']}" for row in failed))
    return rows
