"""Backfill flow: ingest every day file of a folder into the store, one task per day."""

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from tasks.cluster import dask_client
from tasks.ingest import backfill_row, ingest_day, select_day_files


class BackfillFailed(RuntimeError):
    """Some days could not be ingested; the others landed."""


@flow(name="backfill")
def backfill(
    source: Path,
    store: Path,
    since: str | None = None,
    until: str | None = None,
    force: bool = False,
    dask_address: str | None = None,
) -> list[dict]:
    """Ingest the day files of `source` (MMDD in [since, until]) concurrently.

    Days whose stored version came from the same file (sha256) are skipped unless `force`.
    One bad day fails only its own task; the flow then ends Failed, naming it.
    """
    logger = get_run_logger()
    paths = select_day_files(Path(source), since, until)
    logger.info("backfill of %d day files from %s into %s", len(paths), source, store)
    with dask_client(dask_address) as client:
        address = client.scheduler.address
        futures = [ingest_day.submit(path, Path(store), address, force) for path in paths]
        results = [future.result(raise_on_failure=False) for future in futures]
    rows = [backfill_row(path, result) for path, result in zip(paths, results, strict=True)]
    create_table_artifact(rows, key="backfill-summary", description=f"Backfill of {source} into {store}")
    failed = [row for row in rows if row["status"].startswith("failed")]
    if failed:
        raise BackfillFailed("; ".join(f"{row['file']}: {row['status']}" for row in failed))
    return rows
