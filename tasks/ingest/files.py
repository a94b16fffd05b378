"""Validated, out-of-core ingestion of data files into the Parquet store, for any dataset spec.

A file is first checked as a whole and scanned once (`tasks.ingest.scan`); nothing is written if
that fails. Each block of about `blocksize` bytes is then a partition of a Dask DataFrame: its
lines are screened (`tasks.ingest.lines`), parsed with the types of the spec's pandera schema
and validated with it (`tasks.ingest.parse`), and written to the stage of a new version of the
partition (`tasks.ingest.write`), which is committed atomically. Every row ends up in the
partition's Parquet data, in its quarantine (with file, line, columns and reason), or, when its
label is valid but outside the five classes, among its out-of-scope rows; the report
(`tasks.ingest.report`) counts them.
"""

import json
import time as clock
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from distributed import Client
from prefect import task

from schemas.datasets import COMPRESSED_SUFFIX, DEFAULT_DATASET, ZYELL, DatasetSpec, get_dataset, plain_name
from tasks.errors import DISK_REFUSALS, quote, retry_if_transient
from tasks.ingest.lines import plan_blocks
from tasks.ingest.report import IngestReport, build_report, unchanged_report
from tasks.ingest.scan import DEFAULT_BLOCKSIZE, IngestError, read_head, resolve_partition, scan_file
from tasks.ingest.store import (
    REPORT_NAME,
    VersionRefused,
    check_new_version,
    claim_store,
    commit_stage,
    part_lock,
    read_report,
    recover_part,
)
from tasks.ingest.write import staged_version, write_partitions
from tasks.progress import Progress


@contextmanager
def disk_refusals_named(path: Path, store: Path, part: str) -> Iterator[None]:
    """A full, over-quota or read-only store becomes an IngestError that names the file and the
    store: the raw OSError (pyarrow's, from a worker) names neither."""
    try:
        yield
    except OSError as error:
        if error.errno not in DISK_REFUSALS:
            raise
        raise IngestError(
            f"{path.name}: cannot write to the store {store}: {DISK_REFUSALS[error.errno]}; "
            f"{part} of the store is as it was"
        ) from error


def ingest_file(
    path: Path,
    store: Path,
    client: Client,
    spec: DatasetSpec = ZYELL,
    partition: str | None = None,
    blocksize: int = DEFAULT_BLOCKSIZE,
    skip_unchanged: bool = False,
    replace_anyway: bool = False,
    allow_empty: bool = False,
) -> IngestReport:
    """Ingest one file into `store` as one partition, replacing that partition atomically.

    With `skip_unchanged`, a partition whose stored version came from a file with the same
    sha256 is left alone and its stored report is returned with status "skipped". A version
    that keeps no row, or far fewer than the stored one, is refused (`check_new_version`)
    unless `replace_anyway` (or, for a first version, `allow_empty`).
    """
    started = clock.perf_counter()
    claim_store(store, spec.name)
    key = resolve_partition(path, read_head(path, spec), spec, partition)
    part = spec.partition_folder(key)
    with disk_refusals_named(path, store, part), part_lock(store, part):
        recover_part(store, part)
        previous = read_report(store, part)
        with staged_version(store, part) as stage, scan_file(path, spec, blocksize, stage.root) as scan:
            if skip_unchanged and (skipped := unchanged_report(previous, scan, path)):
                return skipped
            progress = Progress(f"ingest {path.name}", scan.data_lines)
            stats = write_partitions(plan_blocks(scan, key, spec), stage, client, progress)
            progress.finish()
            report = build_report(scan, spec, key, stats, previous, started)
            stored_kept = previous.rows_kept if previous else None
            try:
                check_new_version(
                    part, report.rows_kept, report.rows_quarantined, stored_kept, replace_anyway, allow_empty
                )
            except VersionRefused as refused:
                raise IngestError(f"{path}: {refused}") from refused
            (stage.data / REPORT_NAME).write_text(json.dumps(report.to_dict(), indent=2))
            commit_stage(store, part, stage)
    return report


@dataclass(frozen=True)
class IngestOutcome:
    """One file's result: a report, or the error that kept the whole file out."""

    path: Path
    report: IngestReport | None = None
    error: str | None = None


def ingest_files(
    paths: list[Path],
    store: Path,
    client: Client,
    spec: DatasetSpec = ZYELL,
    partition: str | None = None,
    blocksize: int = DEFAULT_BLOCKSIZE,
    concurrency: int = 2,
    replace_anyway: bool = False,
    allow_empty: bool = False,
) -> Iterator[IngestOutcome]:
    """Ingest several files on one cluster, a few at a time so that one file's scan overlaps
    another's parsing. Outcomes come back in the order of `paths`; a bad file stops only itself."""

    def one(path: Path) -> IngestOutcome:
        try:
            report = ingest_file(
                path, store, client, spec, partition, blocksize, False, replace_anyway, allow_empty
            )
            return IngestOutcome(path, report=report)
        except IngestError as error:
            return IngestOutcome(path, error=str(error))

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        yield from pool.map(one, paths)


def select_files(
    source: Path, spec: DatasetSpec = ZYELL, since: str | None = None, until: str | None = None
) -> list[Path]:
    """The data files of `source` (the spec's glob, plain or `.gz`) whose MMDD lies in [since, until].

    A range whose start is after its end wraps over the new year: --since 1201 --until 0131.
    Files whose name tells no day are always included, and so are entries named like data
    files that cannot be read (`unreadable_entries`).
    """
    if (since or until) and spec.day_of_name is None:
        raise ValueError(f"{spec.name} file names carry no day; --since and --until do not apply")
    for text in (since, until):
        if text is not None and (len(text) != 4 or not text.isdigit()):
            raise ValueError(f"{quote(text)} is not MMDD")
    low, high = [(int(b[:2]), int(b[2:])) if b else None for b in (since, until)]

    def wanted(path: Path) -> bool:
        key = spec.day_of_name(path) if spec.day_of_name else None
        if key is None:
            return True
        if low and high and low > high:
            return key >= low or key <= high
        return (low is None or key >= low) and (high is None or key <= high)

    files = [
        path for path in sorted({*spec.data_files(source), *unreadable_entries(source, spec)}) if wanted(path)
    ]
    check_one_file_per_name(files)
    return files


def unreadable_entries(source: Path, spec: DatasetSpec) -> list[Path]:
    """Entries of `source` named like data files that are not regular files: a directory, a
    symlink loop, a dangling link. They are selected all the same, so that their ingest fails
    and names them, and never pass for a quiet day."""
    named = {*source.glob(spec.file_glob), *source.glob(spec.file_glob + COMPRESSED_SUFFIX)}
    return sorted(named - set(spec.data_files(source)))


def check_one_file_per_name(files: list[Path]) -> None:
    """`1203_firewall.csv` next to `1203_firewall.csv.gz` would fill one partition twice."""
    by_name: dict[str, list[str]] = {}
    for path in files:
        by_name.setdefault(plain_name(path), []).append(path.name)
    twins = [" and ".join(names) for names in by_name.values() if len(names) > 1]
    if twins:
        raise ValueError(f"{'; '.join(twins)}: the same file, plain and compressed; keep one of each")


@task(
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=retry_if_transient,  # I/O that may pass, not bad data, a missing file or access
    task_run_name="ingest-{path.name}",
)
def ingest_partition(
    path: Path,
    store: Path,
    dask_address: str,
    dataset: str = DEFAULT_DATASET,
    force: bool = False,
    replace_anyway: bool = False,
    allow_empty: bool = False,
) -> IngestReport:
    """Prefect task: ingest one file on the given Dask cluster, skipping unchanged partitions."""
    with Client(dask_address, set_as_default=False) as client:
        return ingest_file(
            path,
            store,
            client,
            get_dataset(dataset),
            skip_unchanged=not force,
            replace_anyway=replace_anyway,
            allow_empty=allow_empty,
        )
