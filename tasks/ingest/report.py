"""What an ingest did: the report of one file (also the partition's `_report.json`), and its
line in a backfill table."""

import copy
import time as clock
from dataclasses import asdict, dataclass, field, fields, replace
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
    # written by another version of the report (keys missing, renamed or extra): read with the
    # defaults below, and never reused as the report of an unchanged file; not written
    older_format: bool = field(default=False, compare=False, repr=False)

    @classmethod
    def from_dict(cls, stored: object) -> "IngestReport":
        """A report as read back from `_report.json`, also one written before datasets (`day`,
        `unknown_apps`, no out-of-scope rows): a key it lacks takes its OLDER_DEFAULTS value.
        Raises ValueError for what is not a report."""
        if not isinstance(stored, dict):
            raise ValueError(f"a JSON {type(stored).__name__}, not an object")
        names = {f.name for f in fields(cls) if f.name != "older_format"}
        known = {**copy.deepcopy(OLDER_DEFAULTS), **renamed_older_keys(stored)}
        missing = sorted(names - set(known))
        if missing:
            raise ValueError(f"not an ingest report: no {', '.join(map(repr, missing))}")
        values = {name: known[name] for name in names}
        return cls(**values, older_format=set(stored) != names)

    def to_dict(self) -> dict:
        """The report as `_report.json` holds it."""
        return {name: value for name, value in asdict(self).items() if name != "older_format"}

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


# What a report from an older version lacks reads as this: a store from before datasets holds
# ZYELL (`check_store`), and that ingest set no row aside as out of scope
OLDER_DEFAULTS = {
    "dataset": "zyell",
    "rows_out_of_scope": 0,
    "out_of_scope": {},
    "unknown_categories": {},
    "classes": {},  # no labels, as `last_labelled_parts` read a report without them
}


def renamed_older_keys(stored: dict) -> dict:
    """`stored` with the keys of reports from before datasets under their present names."""
    renamed = dict(stored)
    if "day" in renamed and "partition" not in renamed:
        renamed["partition"] = renamed.pop("day")
    if "unknown_apps" in renamed and "unknown_categories" not in renamed:
        renamed["unknown_categories"] = {f"app={app}": n for app, n in renamed.pop("unknown_apps").items()}
    return renamed


def build_report(
    scan: FileScan,
    spec: DatasetSpec,
    partition: str,
    stats: dict,
    previous: IngestReport | None,
    started: float,
) -> IngestReport:
    report = IngestReport(
        file=scan.path,
        dataset=spec.name,
        partition=partition,
        status="ingested",
        sha256=scan.sha256,
        previous_sha256=previous.sha256 if previous else None,
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


def unchanged_report(previous: IngestReport | None, scan: FileScan, path: Path) -> IngestReport | None:
    """The stored report as "skipped" when it came from the same file, in this report format."""
    if previous is None or previous.sha256 != scan.sha256 or previous.older_format:
        return None
    return replace(previous, file=str(path), status="skipped")


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
