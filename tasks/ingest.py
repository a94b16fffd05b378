"""Validated, out-of-core ingestion of firewall-day CSVs into the Parquet store.

A file is first checked as a whole (present, text, a known header, some rows) and scanned
once for its sha256 and block boundaries; nothing is written if that fails. Each block of
about `blocksize` bytes is then a partition of a Dask DataFrame: its lines are screened
(UTF-8, field count, blank or repeated header lines), parsed with explicit Arrow types and
validated against `schemas.firewall.raw_day_schema` with pandera. Every row ends up either
in the day's Parquet data or in its quarantine with file, line, columns and reason.
"""

import hashlib
import io
import json
import re
import time as clock
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as arrow
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from distributed import Client
from prefect import task

from schemas.firewall import (
    APP_VOCABULARY,
    COLUMNS,
    FLOAT_COLUMNS,
    INTEGER_COLUMNS,
    LABEL_COLUMN,
    SCHEMA_VERSION,
    STRING_COLUMNS,
    TIME_FORMAT,
    UNLABELLED_COLUMNS,
    raw_day_schema,
)
from tasks.store import (
    REPORT_NAME,
    Stage,
    commit_stage,
    day_lock,
    new_stage,
    read_report,
    recover_day,
)

DEFAULT_BLOCKSIZE = 32 * 2**20
LINE_COLUMN = "line"
STORE_COLUMNS = (*COLUMNS, LINE_COLUMN)
QUARANTINE_COLUMNS = ("file", "line", "rule", "columns", "reason", "raw")
FILE_NAME = re.compile(r"^(?:(?P<year>\d{4}))?(?P<month>\d{2})(?P<day>\d{2})_firewall\.csv$")
GZIP_MAGIC = b"\x1f\x8b"


class IngestError(ValueError):
    """A problem with a whole file: nothing of it is written."""


# ---------------------------------------------------------------- the file as a whole


@dataclass(frozen=True)
class FileScan:
    """One pass over a file: its identity, header and where its blocks start."""

    path: str
    sha256: str
    size: int
    labelled: bool
    header: bytes
    block_starts: tuple[int, ...]  # byte offsets; the first is just after the header
    first_lines: tuple[int, ...]  # 1-based line number of each block's first line
    data_lines: int


def check_header(path: Path, header: bytes) -> bool:
    """Whether the header names the labelled columns (True) or the unlabelled ones (False)."""
    try:
        names = header.decode("utf-8").rstrip("\r\n").split(",")
    except UnicodeDecodeError as error:
        raise IngestError(f"{path}: line 1: the header is not UTF-8 text") from error
    if names in (list(COLUMNS), list(UNLABELLED_COLUMNS)):
        return names == list(COLUMNS)
    missing = [c for c in UNLABELLED_COLUMNS if c not in names]
    extra = [c for c in names if c not in COLUMNS]
    if missing:
        raise IngestError(f"{path}: line 1: missing column(s) {missing}")
    if extra:
        raise IngestError(f"{path}: line 1: unexpected column(s) {extra}")
    raise IngestError(f"{path}: line 1: columns out of order; expected {list(COLUMNS)}")


def scan_file(path: Path, blocksize: int = DEFAULT_BLOCKSIZE) -> FileScan:
    """Check the file as a whole and find block boundaries at line ends, in one pass."""
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    digest, newlines, offset = hashlib.sha256(), 0, 0
    starts, lines, header, last_byte = [], [], b"", b""
    with open(path, "rb") as handle:
        while chunk := handle.read(blocksize):
            if offset == 0:
                header = _check_first_chunk(path, chunk)
                starts.append(len(header))
                lines.append(2)
            else:
                first_newline = chunk.find(b"\n")
                if first_newline >= 0 and offset + first_newline + 1 > starts[-1]:
                    starts.append(offset + first_newline + 1)
                    lines.append(newlines + 2)
            digest.update(chunk)
            newlines += chunk.count(b"\n")
            offset += len(chunk)
            last_byte = chunk[-1:]
    if offset == 0:
        raise IngestError(f"{path}: the file is empty")
    labelled = check_header(path, header)
    data_lines = newlines - 1 + (last_byte != b"\n")
    if data_lines <= 0:
        raise IngestError(f"{path}: the file has a header but no rows")
    keep = [i for i, start in enumerate(starts) if start < offset]
    return FileScan(
        path=str(path),
        sha256=digest.hexdigest(),
        size=offset,
        labelled=labelled,
        header=header,
        block_starts=tuple(starts[i] for i in keep),
        first_lines=tuple(lines[i] for i in keep),
        data_lines=data_lines,
    )


def _check_first_chunk(path: Path, chunk: bytes) -> bytes:
    if chunk.startswith(GZIP_MAGIC):
        raise IngestError(f"{path}: the file is gzip-compressed, not CSV text; decompress it first")
    if b"\x00" in chunk[:4096]:
        raise IngestError(f"{path}: the file is binary, not CSV text")
    end = chunk.find(b"\n")
    if end < 0:
        check_header(path, chunk)
        raise IngestError(f"{path}: the file has a header but no rows")
    return chunk[: end + 1]


def resolve_day(path: Path, scan: FileScan, explicit: date | None) -> date:
    """The day a file holds: given explicitly, or MMDD from its name with the year of its rows."""
    if explicit is not None:
        return explicit
    match = FILE_NAME.match(path.name)
    if not match:
        raise IngestError(
            f"{path}: cannot tell the day from the name; name it MMDD_firewall.csv or pass --day YYYY-MM-DD"
        )
    month, day = int(match["month"]), int(match["day"])
    year = int(match["year"]) if match["year"] else _year_of_first_rows(path, scan)
    try:
        return date(year, month, day)
    except ValueError as error:
        raise IngestError(f"{path}: {match.group(0)} is not a calendar day ({error})") from error


def _year_of_first_rows(path: Path, scan: FileScan, sample_lines: int = 1000) -> int:
    with open(path, "rb") as handle:
        handle.seek(scan.block_starts[0])
        for _ in range(sample_lines):
            line = handle.readline()
            if not line:
                break
            try:
                return datetime.strptime(line[:19].decode("ascii"), TIME_FORMAT).year
            except (UnicodeDecodeError, ValueError):
                continue
    raise IngestError(f"{path}: no row in the first {sample_lines} has a readable time to take the year from")


# ---------------------------------------------------------------- one block


@dataclass(frozen=True)
class Block:
    """A byte range of whole lines of one file: one partition."""

    path: str
    start: int
    end: int
    first_line: int
    labelled: bool
    header: bytes
    day: date


def plan_blocks(scan: FileScan, day: date) -> list[Block]:
    ends = (*scan.block_starts[1:], scan.size)
    return [
        Block(scan.path, start, end, first, scan.labelled, scan.header, day)
        for start, end, first in zip(scan.block_starts, ends, scan.first_lines, strict=True)
    ]


@dataclass
class LineScreen:
    """The lines of a block, and those rejected before or while parsing."""

    starts: np.ndarray
    ends: np.ndarray  # exclusive, without the line break
    rejected: dict[int, tuple[str, str]] = field(default_factory=dict)  # index -> (rule, reason)

    def kept(self) -> np.ndarray:
        """Indices of the lines not rejected, in order."""
        keep = np.ones(len(self.starts), dtype=bool)
        keep[list(self.rejected)] = False
        return np.flatnonzero(keep)


def split_lines(raw: bytes) -> LineScreen:
    buffer = np.frombuffer(raw, dtype=np.uint8)
    newlines = np.flatnonzero(buffer == ord("\n"))
    ends = newlines if raw.endswith(b"\n") else np.append(newlines, len(raw))
    starts = np.concatenate(([0], newlines + 1))[: len(ends)]
    carriage = (ends > starts) & (buffer[np.maximum(ends - 1, 0)] == ord("\r"))
    return LineScreen(starts=starts, ends=ends - carriage)


def screen_lines(raw: bytes, block: Block) -> LineScreen:
    """Reject lines that cannot be parsed as rows: not UTF-8, blank, or a repeated header.

    Lines with the wrong number of fields are caught by the CSV parser (`read_rows`).
    """
    screen = split_lines(raw)
    if not raw.isascii():
        high = np.flatnonzero(np.frombuffer(raw, dtype=np.uint8) >= 0x80)
        suspects = np.searchsorted(high, screen.ends) > np.searchsorted(high, screen.starts)
        for index in np.flatnonzero(suspects):
            try:
                raw[screen.starts[index] : screen.ends[index]].decode("utf-8")
            except UnicodeDecodeError as error:
                reason = f"bytes are not UTF-8 ({error.reason} at byte {error.start})"
                screen.rejected[int(index)] = ("encoding", reason)
    for index in np.flatnonzero(screen.ends == screen.starts):
        screen.rejected[int(index)] = ("blank_line", "blank line")
    header = block.header.rstrip(b"\r\n")
    for index in np.flatnonzero(screen.ends - screen.starts == len(header)):
        if raw[screen.starts[index] : screen.ends[index]] == header:
            screen.rejected[int(index)] = ("repeated_header", "a repeated header line")
    return screen


def kept_bytes(raw: bytes, screen: LineScreen) -> bytes:
    """The block without the lines rejected so far."""
    if not screen.rejected:
        return raw
    keep = np.ones(len(raw), dtype=bool)
    for index in screen.rejected:
        keep[screen.starts[index] : screen.ends[index] + 1] = False
    return np.frombuffer(raw, dtype=np.uint8)[keep].tobytes()


def arrow_types(labelled: bool) -> dict[str, arrow.DataType]:
    names = COLUMNS if labelled else UNLABELLED_COLUMNS
    types = {"time": arrow.timestamp("s")}
    types |= {c: arrow.string() for c in STRING_COLUMNS}
    types |= {c: arrow.float64() for c in FLOAT_COLUMNS}
    types |= {c: arrow.int64() for c in INTEGER_COLUMNS}
    return {name: types[name] for name in names}


def read_rows(body: bytes, labelled: bool) -> tuple[arrow.Table, dict[int, int]]:
    """Parse with explicit types, skipping rows with the wrong field count.

    Returns the table and {row number in `body` (1-based): field count} of the skipped rows.
    A block with a value of the wrong type is parsed again as text, with such values as null.
    """
    types = arrow_types(labelled)
    skipped: dict[int, int] = {}

    def skip(row: pacsv.InvalidRow) -> str:
        skipped[row.number] = row.actual_columns
        return "skip"

    # Single-threaded, so the parser knows every row's number.
    read = pacsv.ReadOptions(
        column_names=list(types), use_threads=False, block_size=max(1 << 20, len(body) + 1)
    )
    parse = pacsv.ParseOptions(quote_char=False, invalid_row_handler=skip)
    try:
        convert = pacsv.ConvertOptions(column_types=types, timestamp_parsers=[TIME_FORMAT])
        return pacsv.read_csv(io.BytesIO(body), read, parse, convert), skipped
    except arrow.ArrowInvalid:
        skipped.clear()
        text = pacsv.ConvertOptions(column_types=dict.fromkeys(types, arrow.string()))
        table = pacsv.read_csv(io.BytesIO(body), read, parse, text)
        return arrow.table({name: cast_or_null(table[name], types[name]) for name in types}), skipped


NUMBER_PATTERNS = {
    arrow.int64(): r"^-?\d{1,18}$",
    arrow.float64(): r"^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$",
}


def cast_or_null(values: arrow.ChunkedArray, target: arrow.DataType) -> arrow.ChunkedArray:
    """Text to `target`, with null where the text does not parse."""
    if target == arrow.string():
        return values
    if target == arrow.timestamp("s"):
        return pc.strptime(values, format=TIME_FORMAT, unit="s", error_is_null=True)
    parses = pc.match_substring_regex(values, NUMBER_PATTERNS[target])
    return pc.cast(pc.if_else(parses, values, arrow.scalar(None, arrow.string())), target)


def to_frame(table: arrow.Table) -> pd.DataFrame:
    nullable = {arrow.int64(): pd.Int64Dtype(), arrow.float64(): pd.Float64Dtype()}
    return table.to_pandas(types_mapper=nullable.get)


CHECK_WORDS = (
    ("str_matches", "not a dotted IPv4 address"),
    ("in_range", "outside {}"),
    ("greater_than_or_equal_to", "negative"),
    ("isin", "not one of the five class names"),
    ("str_length", "empty"),
)


def describe_failure(column: str, check: str) -> str:
    if check == "not_nullable":
        return f"does not parse as {TIME_FORMAT}" if column == "time" else "missing or not a number"
    if column == "time" and check.startswith("in_range"):
        return "not on the file's day"
    for prefix, words in CHECK_WORDS:
        if check.startswith(prefix):
            return words.format(check[len(prefix) :].strip("()").replace(", ", ".."))
    return check


def validate_rows(frame: pd.DataFrame, labelled: bool, day: date) -> dict[int, list[tuple[str, str]]]:
    """Row position -> [(column, what is wrong)] for every row that fails the schema."""
    start = pd.Timestamp(day)
    on_the_day = pa.Check.in_range(start, start + timedelta(days=1) - timedelta(seconds=1))
    schema = raw_day_schema(labelled).update_column("time", checks=[on_the_day])
    try:
        schema.validate(frame, lazy=True)
        return {}
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
    if cases["index"].isna().any():
        raise RuntimeError(
            f"schema failed on whole columns: {cases[cases['index'].isna()].to_dict('records')}"
        )
    failures: dict[int, list[tuple[str, str]]] = {}
    for position, column, check in zip(cases["index"], cases["column"], cases["check"], strict=True):
        failures.setdefault(int(position), []).append((column, describe_failure(column, check)))
    return dict(sorted(failures.items()))


def parse_block(block: Block) -> pd.DataFrame:
    """Every line of the block as a row: typed columns, its line number and, if rejected, why."""
    with open(block.path, "rb") as handle:
        handle.seek(block.start)
        raw = handle.read(block.end - block.start)
    screen = screen_lines(raw, block)
    kept = screen.kept()
    table, bad_field_counts = read_rows(kept_bytes(raw, screen), block.labelled)
    expected = len(arrow_types(block.labelled))
    for number, count in bad_field_counts.items():
        screen.rejected[int(kept[number - 1])] = ("field_count", f"{count} fields, expected {expected}")
    if bad_field_counts:
        kept = screen.kept()
    frame = to_frame(table)
    failed = validate_rows(frame, block.labelled, block.day)
    if not block.labelled:
        frame[LABEL_COLUMN] = pd.Series(None, index=frame.index, dtype="str")
    frame[LINE_COLUMN] = block.first_line + kept
    for column in ("_rule", "_columns", "_reason", "_raw"):
        frame[column] = pd.Series(None, index=frame.index, dtype="str")
    for position, failures in failed.items():
        text = _line_text(raw, screen, kept[position])
        values = text.split(",")
        rules = [f"{column}: {words}" for column, words in failures]
        reasons = [f"{column} = {values[COLUMNS.index(column)]!r}: {words}" for column, words in failures]
        frame.loc[position, ["_rule", "_columns", "_reason", "_raw"]] = [
            rules[0],
            ",".join(dict.fromkeys(column for column, _ in failures)),
            "; ".join(reasons),
            text,
        ]
    if not screen.rejected:
        return frame
    rejected = pd.DataFrame(
        {
            LINE_COLUMN: [block.first_line + i for i in screen.rejected],
            "_rule": [rule for rule, _ in screen.rejected.values()],
            "_columns": "",
            "_reason": [reason for _, reason in screen.rejected.values()],
            "_raw": [_line_text(raw, screen, i) for i in screen.rejected],
        }
    )
    rows = pd.concat([frame, rejected.reindex(columns=frame.columns).astype(frame.dtypes)], ignore_index=True)
    return rows.sort_values(LINE_COLUMN, ignore_index=True)


def _line_text(raw: bytes, screen: LineScreen, index: int) -> str:
    return raw[screen.starts[index] : screen.ends[index]].decode("utf-8", errors="backslashreplace")


def output_columns() -> tuple[str, ...]:
    return (*STORE_COLUMNS, "_rule", "_columns", "_reason", "_raw")


def output_dtypes() -> dict[str, str]:
    types = {"time": "datetime64[s]", LINE_COLUMN: "int64"}
    types |= {c: "str" for c in (*STRING_COLUMNS, "_rule", "_columns", "_reason", "_raw")}
    types |= {c: "Float64" for c in FLOAT_COLUMNS}
    types |= {c: "Int64" for c in INTEGER_COLUMNS}
    return types


def empty_output() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=output_dtypes()[c]) for c in output_columns()})


# ---------------------------------------------------------------- a whole file


@dataclass(frozen=True)
class IngestReport:
    """What an ingest did; also written as the day's `_report.json`."""

    file: str
    day: str
    status: str  # ingested or skipped
    sha256: str
    previous_sha256: str | None
    rows_read: int
    rows_kept: int
    rows_quarantined: int
    reasons: dict[str, int]
    classes: dict[str, int]
    unknown_apps: dict[str, int]
    time_first: str | None
    time_last: str | None
    duration_s: float
    schema_version: str = SCHEMA_VERSION

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.rows_kept + self.rows_quarantined

    def summary(self) -> str:
        top = ", ".join(f"{rule} x{n}" for rule, n in sorted(self.reasons.items(), key=lambda kv: -kv[1])[:3])
        return (
            f"{Path(self.file).name} -> day={self.day}: {self.status}; read {self.rows_read:,} = "
            f"kept {self.rows_kept:,} + quarantined {self.rows_quarantined:,}"
            + (f" ({top})" if top else "")
            + (f"; unknown apps {self.unknown_apps}" if self.unknown_apps else "")
            + f" in {self.duration_s:.1f} s"
        )


SUMMARY_META = pd.DataFrame(
    {"kind": pd.Series(dtype="str"), "key": pd.Series(dtype="str"), "count": pd.Series(dtype="int64")}
)


def store_partition(
    rows: pd.DataFrame, stage: Stage, source: str, partition_info: dict | None = None
) -> pd.DataFrame:
    """Write one block's valid and rejected rows to the stage; return its counts (kind, key, count).

    Runs in the same task as the block's parse, so the rows never travel between workers.
    """
    number = partition_info["number"] if partition_info else 0
    rejected = rows["_rule"].notna()
    valid = rows.loc[~rejected, list(STORE_COLUMNS)]
    quarantined = rows.loc[rejected, ["_rule", "_columns", "_reason", "_raw", LINE_COLUMN]]
    quarantined.columns = ["rule", "columns", "reason", "raw", LINE_COLUMN]
    quarantined.insert(0, "file", source)
    name = f"part-{number:05d}.parquet"
    valid.to_parquet(stage.data / name, index=False)
    quarantined[list(QUARANTINE_COLUMNS)].to_parquet(stage.quarantine / name, index=False)
    unknown = valid["app"][~valid["app"].isin(APP_VOCABULARY)]
    parts = [
        ("kept", pd.Series({"": len(valid)})),
        ("quarantined", pd.Series({"": len(quarantined)})),
        ("reason", quarantined["rule"].value_counts()),
        ("class", valid[LABEL_COLUMN].value_counts()),
        ("unknown_app", unknown.value_counts()),
    ]
    if len(valid):
        parts.append(("time", pd.Series({_stamp(valid["time"].min()): 0, _stamp(valid["time"].max()): 0})))
    summary = [(kind, str(key), int(count)) for kind, counts in parts for key, count in counts.items()]
    return pd.DataFrame(summary, columns=list(SUMMARY_META.columns)).astype(SUMMARY_META.dtypes)


def write_partitions(blocks: list[Block], stage: Stage, client: Client) -> dict:
    """Parse, validate and write every block on the cluster; return the counts for the report."""
    rows = dd.from_map(parse_block, blocks, meta=empty_output(), enforce_metadata=False, label="parse-block")
    summaries = rows.map_partitions(
        store_partition, stage, blocks[0].path, meta=SUMMARY_META, align_dataframes=False
    )
    summary = client.compute(summaries, sync=True)
    totals = summary.groupby(["kind", "key"])["count"].sum()
    times = sorted(summary.loc[summary["kind"] == "time", "key"])

    def of(kind: str) -> dict[str, int]:
        return {key: int(n) for (k, key), n in totals.items() if k == kind}

    return {
        "kept": of("kept").get("", 0),
        "quarantined": of("quarantined").get("", 0),
        "reasons": of("reason"),
        "classes": of("class"),
        "unknown_apps": of("unknown_app"),
        "time_first": times[0] if times else None,
        "time_last": times[-1] if times else None,
    }


def _stamp(value) -> str | None:
    return None if pd.isna(value) else pd.Timestamp(value).strftime(TIME_FORMAT)


def build_report(
    scan: FileScan, day: date, stats: dict, previous: dict | None, started: float
) -> IngestReport:
    report = IngestReport(
        file=scan.path,
        day=day.isoformat(),
        status="ingested",
        sha256=scan.sha256,
        previous_sha256=previous["sha256"] if previous else None,
        rows_read=scan.data_lines,
        rows_kept=int(stats["kept"]),
        rows_quarantined=int(stats["quarantined"]),
        reasons=stats["reasons"],
        classes=stats["classes"],
        unknown_apps=stats["unknown_apps"],
        time_first=stats["time_first"],
        time_last=stats["time_last"],
        duration_s=round(clock.perf_counter() - started, 3),
    )
    if not report.balanced:
        raise RuntimeError(f"{scan.path}: rows read {report.rows_read} != kept + quarantined in {report}")
    return report


def ingest_file(
    path: Path,
    store: Path,
    client: Client,
    day: date | None = None,
    blocksize: int = DEFAULT_BLOCKSIZE,
    skip_unchanged: bool = False,
) -> IngestReport:
    """Ingest one day file into `store`, replacing that day atomically.

    With `skip_unchanged`, a day whose stored version came from a file with the same sha256
    is left alone and its stored report is returned with status "skipped".
    """
    started = clock.perf_counter()
    scan = scan_file(path, blocksize)
    the_day = resolve_day(path, scan, day)
    store.mkdir(parents=True, exist_ok=True)
    with day_lock(store, the_day):
        recover_day(store, the_day)
        previous = read_report(store, the_day)
        if skip_unchanged and previous and previous["sha256"] == scan.sha256:
            return IngestReport(**{**previous, "file": str(path), "status": "skipped"})
        stage = new_stage(store, the_day)
        stats = write_partitions(plan_blocks(scan, the_day), stage, client)
        report = build_report(scan, the_day, stats, previous, started)
        (stage.data / REPORT_NAME).write_text(json.dumps(asdict(report), indent=2))
        commit_stage(store, the_day, stage)
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
    day: date | None = None,
    blocksize: int = DEFAULT_BLOCKSIZE,
    concurrency: int = 2,
) -> Iterator[IngestOutcome]:
    """Ingest several files on one cluster, a few at a time so that one file's scan overlaps
    another's parsing. Outcomes come back in the order of `paths`; a bad file stops only itself."""

    def one(path: Path) -> IngestOutcome:
        try:
            return IngestOutcome(path, report=ingest_file(path, store, client, day=day, blocksize=blocksize))
        except IngestError as error:
            return IngestOutcome(path, error=str(error))

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        yield from pool.map(one, paths)


def day_of_name(path: Path) -> tuple[int, int] | None:
    match = FILE_NAME.match(path.name)
    return (int(match["month"]), int(match["day"])) if match else None


def select_day_files(source: Path, since: str | None = None, until: str | None = None) -> list[Path]:
    """The `*_firewall.csv` files of `source` whose MMDD lies in [since, until].

    A range whose start is after its end wraps over the new year: --since 1201 --until 0131.
    """
    for text in (since, until):
        if text is not None and (len(text) != 4 or not text.isdigit()):
            raise ValueError(f"{text!r} is not MMDD")
    low, high = [(int(b[:2]), int(b[2:])) if b else None for b in (since, until)]

    def wanted(key: tuple[int, int]) -> bool:
        if low and high and low > high:
            return key >= low or key <= high
        return (low is None or key >= low) and (high is None or key <= high)

    files = sorted(p for p in source.glob("*_firewall.csv") if p.is_file())
    return [p for p in files if (key := day_of_name(p)) is None or wanted(key)]


def backfill_row(path: Path, result: IngestReport | BaseException) -> dict:
    """One line of a backfill table: day, rows, kept, quarantined, status."""
    if isinstance(result, BaseException):
        failed = {"day": None, "rows": None, "kept": None, "quarantined": None, "status": f"failed: {result}"}
        return {"file": path.name, **failed}
    return {
        "file": path.name,
        "day": result.day,
        "rows": result.rows_read,
        "kept": result.rows_kept,
        "quarantined": result.rows_quarantined,
        "status": result.status,
    }


def is_io_failure(task, task_run, state) -> bool:
    """Retry a failed ingest only when the failure was I/O, not bad data."""
    try:
        state.result()
    except OSError:
        return True
    except Exception:
        return False
    return False


@task(retries=2, retry_delay_seconds=2, retry_condition_fn=is_io_failure, task_run_name="ingest-{path.name}")
def ingest_day(path: Path, store: Path, dask_address: str, force: bool = False) -> IngestReport:
    """Prefect task: ingest one day file on the given Dask cluster, skipping unchanged days."""
    with Client(dask_address, set_as_default=False) as client:
        return ingest_file(path, store, client, skip_unchanged=not force)
