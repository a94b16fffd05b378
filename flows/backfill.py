"""Backfill flow: ingest every data file of a folder into the store, one task per file.

A source folder that is not there is an error, and so is a backfill that matches no file,
unless `allow_empty` says that a quiet day is expected: a nightly job must not succeed on
nothing without saying so.
"""

from dataclasses import asdict
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from schemas.datasets import DEFAULT_DATASET, DatasetSpec, get_dataset
from tasks.cluster import dask_client
from tasks.errors import InputError, NadError
from tasks.ingest.files import ingest_partition, select_files
from tasks.ingest.report import BackfillRow, backfill_row
from tasks.ingest.store import claim_store


class BackfillFailed(NadError):
    """Some files could not be ingested; the others landed. `rows` holds every file's row."""

    def __init__(self, rows: list[BackfillRow]) -> None:
        super().__init__(rows)
        self.rows = rows

    def __str__(self) -> str:
        return "; ".join(f"{row.file}: {row.status}" for row in self.rows if row.failed)

    def __repr__(self) -> str:  # as Prefect logs it: the message, not every row
        return f"{type(self).__name__}({str(self)!r})"


def files_to_ingest(
    source: Path, spec: DatasetSpec, since: str | None, until: str | None, allow_empty: bool
) -> list[Path]:
    """The files of `source` to ingest; an error if the folder is missing, or if none match and
    an empty match is not allowed."""
    if not source.is_dir():
        raise InputError(f"{source}: {'not a folder' if source.exists() else 'no such folder'}")
    paths = select_files(source, spec, since, until)
    if not paths and not allow_empty:
        window = " ".join(part for part in (since and f"from {since}", until and f"to {until}") if part)
        days = f" with a day {window}" if window else ""
        raise InputError(
            f"no {spec.name} files ({spec.file_glob}) in {source}{days}; "
            "allow an empty match with --allow-empty (flow parameter allow_empty)"
        )
    return paths


@flow(name="backfill")
def backfill_flow(
    source: Path,
    store: Path,
    since: str | None = None,
    until: str | None = None,
    force: bool = False,
    dask_address: str | None = None,
    dataset: str = DEFAULT_DATASET,
    allow_empty: bool = False,
    replace_anyway: bool = False,
) -> list[BackfillRow]:
    """Ingest the data files of `source` (for ZYELL: MMDD in [since, until]) concurrently.

    Partitions whose stored version came from the same file (sha256) are skipped unless
    `force`. One bad file fails only its own task; the flow then ends Failed, naming it. A new
    version that keeps no row, or under half the stored rows, fails its file unless
    `replace_anyway`; `allow_empty` also lets a first version keep no row.
    """
    logger = get_run_logger()
    spec = get_dataset(dataset)
    paths = files_to_ingest(Path(source), spec, since, until, allow_empty)
    logger.info("backfill of %d %s files from %s into %s", len(paths), dataset, source, store)
    if not paths:
        return []
    claim_store(Path(store), dataset)
    with dask_client(dask_address) as client:
        address = client.scheduler.address
        futures = [
            ingest_partition.submit(path, Path(store), address, dataset, force, replace_anyway, allow_empty)
            for path in paths
        ]
        results = [future.result(raise_on_failure=False) for future in futures]
    rows = [backfill_row(path, result) for path, result in zip(paths, results, strict=True)]
    create_table_artifact(
        [asdict(row) for row in rows],
        key="backfill-summary",
        description=f"Backfill of {source} into {store}",
    )
    if any(row.failed for row in rows):
        raise BackfillFailed(rows)
    return rows
