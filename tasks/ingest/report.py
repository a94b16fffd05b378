"""What an ingest did: the report of one file (also the partition's `_report.json`), and its
line in a backfill table."""

import time as clock
from dataclasses import dataclass
from pathlib import Path

from schemas.datasets import DatasetSpec, get_dataset
from tasks.errors import message_of
from tasks.ingest.scan import FileScan


@dataclass(frozen=True)
class IngestReport:
    """What an ingest did; also written as the partition's `_report.json`."""

    file: str
    dataset: str
    partition: str
    status: str  # ingested or skipped
    sha256: str
    previous_sha256: str | None
    rows_read: int
    rows_kept: int
    rows_quarantined: int
    rows_out_of_scope: int
    reasons: dict[str, int]
    classes: dict[str, int]
    out_of_scope: dict[str, int]  # raw label -> rows set aside
    unknown_categories: dict[str, int]  # "column=value" -> rows
    time_first: str | None
    time_last: str | None
    duration_s: float
    schema_version: str

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.rows_kept + self.rows_quarantined + self.rows_out_of_scope

    def summary(self) -> str:
        top = ", ".join(f"{rule} x{n}" for rule, n in sorted(self.reasons.items(), key=lambda kv: -kv[1])[:3])
        return (
            f"{Path(self.file).name} -> {get_dataset(self.dataset).partition_folder(self.partition)}: "
            f"{self.status}; read {self.rows_read:,} = "
            f"kept {self.rows_kept:,} + quarantined {self.rows_quarantined:,}"
            + (f" ({top})" if top else "")
            + f" + out of scope {self.rows_out_of_scope:,}"
            + (f"; unknown categories {self.unknown_categories}" if self.unknown_categories else "")
            + f" in {self.duration_s:.1f} s"
        )


def build_report(
    scan: FileScan, spec: DatasetSpec, partition: str, stats: dict, previous: dict | None, started: float
) -> IngestReport:
    report = IngestReport(
        file=scan.path,
        dataset=spec.name,
        partition=partition,
        status="ingested",
        sha256=scan.sha256,
        previous_sha256=previous["sha256"] if previous else None,
        rows_read=scan.data_lines,
        duration_s=round(clock.perf_counter() - started, 3),
        schema_version=spec.schema_version,
        **stats,
    )
    if not report.balanced:
        raise RuntimeError(
            f"{scan.path}: rows read {report.rows_read} != kept + quarantined + out of scope in {report}"
        )
    return report


def unchanged_report(previous: dict | None, scan: FileScan, path: Path) -> IngestReport | None:
    """The stored report as "skipped" when it came from the same file, in this report format."""
    fields = set(IngestReport.__dataclass_fields__)
    if previous is None or previous["sha256"] != scan.sha256 or set(previous) != fields:
        return None
    return IngestReport(**{**previous, "file": str(path), "status": "skipped"})


@dataclass(frozen=True)
class BackfillRow:
    """One line of a backfill table: a file, its partition and row counts (None when the file
    failed), and its status (ingested, skipped, or `failed: WHY`)."""

    file: str
    partition: str | None
    rows: int | None
    kept: int | None
    quarantined: int | None
    out_of_scope: int | None
    status: str

    @property
    def failed(self) -> bool:
        return self.status.startswith("failed")


def backfill_row(path: Path, result: IngestReport | BaseException) -> BackfillRow:
    """The backfill table's line for one file: its report's counts, or why it failed."""
    if isinstance(result, BaseException):
        return BackfillRow(path.name, None, None, None, None, None, f"failed: {message_of(result)}")
    return BackfillRow(
        file=path.name,
        partition=result.partition,
        rows=result.rows_read,
        kept=result.rows_kept,
        quarantined=result.rows_quarantined,
        out_of_scope=result.rows_out_of_scope,
        status=result.status,
    )
