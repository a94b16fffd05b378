"""Validated, out-of-core ingestion of data files into the Parquet store, for any dataset spec.

A file is first checked as a whole (present, text, a known header or field count, some rows)
and scanned once for its sha256 and block boundaries; nothing is written if that fails. A
leading UTF-8 BOM is skipped; a gzip file (`.csv.gz`, told by its content) is decompressed
once, as a stream, into a copy in the partition's stage, and read from there. Each
block of about `blocksize` bytes is then a partition of a Dask DataFrame: its lines are
screened (UTF-8, field count, blank or repeated header lines), parsed with the types of the
spec's pandera schema and validated with it. Every row ends up in the partition's Parquet data,
in its quarantine (with file, line, columns and reason), or, when its label is valid but
outside the five classes, among its out-of-scope rows.
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import tempfile
import time as clock
import weakref
import zlib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as arrow
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from distributed import Client
from prefect import task

from schemas.datasets import DEFAULT_DATASET, ZYELL, DatasetSpec, PartitionError, get_dataset, plain_name
from tasks.errors import message_of, quote, retry_if_transient
from tasks.store import (
    REPORT_NAME,
    Stage,
    claim_store,
    commit_stage,
    journal_path,
    new_stage,
    part_lock,
    read_report,
    recover_part,
)

DEFAULT_BLOCKSIZE = 32 * 2**20
LINE_COLUMN = "line"
QUARANTINE_COLUMNS = ("file", "line", "rule", "columns", "reason", "raw")
OUT_OF_SCOPE_RULE = "out_of_scope"
GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
SAMPLE_LINES = 1000
HEAD_BYTES = 2**20  # the header and the SAMPLE_LINES first rows, in either format


class IngestError(ValueError):
    """A problem with a whole file: nothing of it is written."""


def store_columns(spec: DatasetSpec) -> tuple[str, ...]:
    return (*spec.columns, LINE_COLUMN)


# ---------------------------------------------------------------- the file as a whole


@dataclass(frozen=True)
class FileHead:
    """What the start of a file tells: labelled or not, its header and its first rows."""

    labelled: bool
    header: bytes  # empty for a format without a header
    data_start: int  # offset of the first row in the text: after a UTF-8 BOM and the header
    sample: tuple[str, ...]  # the first rows, for specs that read the partition from them


@dataclass(frozen=True)
class FileScan:
    """One pass over a file: its identity, header and where its blocks start."""

    path: str  # the file as given, named in reports and the quarantine
    text_path: str  # where its text is read: the file itself, or the decompressed copy of a gzip file
    sha256: str  # of the text, so a day and its gzip-compressed copy are the same version
    size: int  # of the text
    labelled: bool
    header: bytes  # empty for a format without a header
    block_starts: tuple[int, ...]  # byte offsets in the text; the first is just after the header
    first_lines: tuple[int, ...]  # 1-based line number of each block's first line
    data_lines: int
    sample: tuple[str, ...]  # the first rows

    def release(self) -> None:
        """Remove the decompressed copy, if any; also done on leaving a `with` block, or when
        the scan is garbage collected."""
        if self.text_path != self.path:
            Path(self.text_path).unlink(missing_ok=True)

    def __enter__(self) -> "FileScan":
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def check_header(path: Path, header: bytes, spec: DatasetSpec) -> bool:
    """Whether the header names the labelled columns (True) or the unlabelled ones (False)."""
    try:
        names = header.decode("utf-8").rstrip("\r\n").split(",")
    except UnicodeDecodeError as error:
        raise IngestError(f"{path}: line 1: the header is not UTF-8 text") from error
    if names in (list(spec.columns), list(spec.unlabelled_columns)):
        return names == list(spec.columns)
    missing = [c for c in spec.unlabelled_columns if c not in names]
    extra = [c for c in names if c not in spec.columns]
    if missing:
        raise IngestError(f"{path}: line 1: missing column(s) {missing}")
    if extra:
        raise IngestError(f"{path}: line 1: unexpected column(s) {quote(extra)}")
    raise IngestError(f"{path}: line 1: columns out of order; expected {list(spec.columns)}")


def check_field_count(path: Path, first_lines: list[bytes], spec: DatasetSpec) -> bool:
    """For a format without a header: labelled (True) or not (False), from the most common field
    count of the first lines, so that a few bad lines at the top do not decide it."""
    wanted = (len(spec.columns), len(spec.unlabelled_columns))
    lines = [line for line in first_lines if line.strip()]
    counts = Counter(line.count(b",") + 1 for line in lines)
    found = {fields: n for fields, n in counts.items() if fields in wanted}
    if found:
        return max(found, key=found.__getitem__) == len(spec.columns)
    first = f"; line 1 has {first_lines[0].count(b',') + 1}" if first_lines[0].strip() else ""
    raise IngestError(
        f"{path}: none of the first {len(lines)} lines has {wanted[0]} fields (labelled "
        f"{spec.name}) or {wanted[1]} (unlabelled){first}"
    )


def check_path(path: Path) -> None:
    if path.is_dir():
        raise IngestError(f"{path}: is a directory, not a data file")
    if not path.exists():
        raise IngestError(f"{path}: no such file")
    if not path.is_file():
        raise IngestError(f"{path}: not a regular file")


def is_gzip(path: Path) -> bool:
    """Told by the content, not the name: a `.csv` that is really gzip is read all the same."""
    with open(path, "rb") as handle:
        return handle.read(len(GZIP_MAGIC)) == GZIP_MAGIC


def open_text(path: Path) -> BinaryIO:
    """The file's bytes, decompressed on the fly if it is gzip (several members are read as one)."""
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


@contextmanager
def gzip_errors_named(path: Path) -> Iterator[None]:
    """A damaged or truncated gzip file is a file-level error, like any unreadable file."""
    try:
        yield
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise IngestError(f"{path}: not a readable gzip file ({error})") from error


def read_head(path: Path, spec: DatasetSpec = ZYELL) -> FileHead:
    """Check the start of the file: present, text, a known header or field count."""
    check_path(path)
    with gzip_errors_named(path), open_text(path) as stream:
        chunk = stream.read(HEAD_BYTES)
    if chunk.startswith(GZIP_MAGIC) or b"\x00" in chunk[:4096]:
        raise IngestError(f"{path}: the file is binary, not CSV text")
    bom = len(UTF8_BOM) if chunk.startswith(UTF8_BOM) else 0
    if not chunk[bom:]:
        raise IngestError(f"{path}: the file is empty")
    header, labelled = _header_of(path, chunk[bom:], spec)
    start = bom + len(header)
    rows = chunk[start:].split(b"\n", SAMPLE_LINES)[:SAMPLE_LINES]
    return FileHead(labelled, header, start, tuple(r.decode("utf-8", errors="replace") for r in rows if r))


def _header_of(path: Path, text: bytes, spec: DatasetSpec) -> tuple[bytes, bool]:
    """The header line (empty for a format without one) and whether the file is labelled."""
    if not spec.has_header:
        return b"", check_field_count(path, text.split(b"\n", SAMPLE_LINES)[:SAMPLE_LINES], spec)
    end = text.find(b"\n")
    first_line = text if end < 0 else text[: end + 1]
    labelled = check_header(path, first_line, spec)
    if end < 0:
        raise IngestError(f"{path}: the file has a header but no rows")
    return first_line, labelled


def text_copy(path: Path, workdir: Path | None) -> Path:
    """A new, empty file in `workdir` (default: the temporary folder) for a gzip file's text."""
    handle, name = tempfile.mkstemp(prefix=".gunzip-", suffix=f"-{plain_name(path)}", dir=workdir)
    os.close(handle)
    return Path(name)


def scan_file(
    path: Path, spec: DatasetSpec = ZYELL, blocksize: int = DEFAULT_BLOCKSIZE, workdir: Path | None = None
) -> FileScan:
    """Check the file as a whole and find block boundaries at line ends, in one pass.

    A gzip stream cannot be read from an offset, so its blocks could not be read on their
    own. A gzip file is therefore decompressed once, as a stream of `blocksize` chunks (memory
    stays bounded), into a copy in `workdir` while it is scanned, and its blocks are read from
    that copy, by any Dask worker that sees `workdir`. Ingest puts the copy in the partition's
    stage, so a crash leaves it where recovery cleans up; the scan removes it on `release()`,
    at the end of a `with` block, or when it is garbage collected.
    """
    head = read_head(path, spec)
    text_path = text_copy(path, workdir) if is_gzip(path) else path
    try:
        scan = _scan(path, text_path, head, spec, blocksize)
    except BaseException:
        if text_path != path:
            text_path.unlink(missing_ok=True)
        raise
    if text_path != path:
        weakref.finalize(scan, text_path.unlink, missing_ok=True)
    return scan


def _scan(path: Path, text_path: Path, head: FileHead, spec: DatasetSpec, blocksize: int) -> FileScan:
    """The pass itself; a gzip file's text is written to `text_path` on the way."""
    digest, newlines, offset, last_byte = hashlib.sha256(), 0, 0, b""
    starts, lines = [head.data_start], [spec.first_data_line]
    with gzip_errors_named(path), ExitStack() as files:
        stream = files.enter_context(open_text(path))
        sink = files.enter_context(open(text_path, "wb")) if text_path != path else None
        while chunk := stream.read(blocksize):
            first_newline = chunk.find(b"\n")
            if offset and first_newline >= 0 and offset + first_newline + 1 > starts[-1]:
                starts.append(offset + first_newline + 1)
                lines.append(newlines + 2)
            if sink:
                sink.write(chunk)
            digest.update(chunk)
            newlines += chunk.count(b"\n")
            offset += len(chunk)
            last_byte = chunk[-1:]
    data_lines = newlines - (spec.first_data_line - 1) + (last_byte != b"\n")
    if data_lines <= 0:
        raise IngestError(f"{path}: the file has a header but no rows")
    keep = [i for i, start in enumerate(starts) if start < offset]
    return FileScan(
        path=str(path),
        text_path=str(text_path),
        sha256=digest.hexdigest(),
        size=offset,
        labelled=head.labelled,
        header=head.header,
        block_starts=tuple(starts[i] for i in keep),
        first_lines=tuple(lines[i] for i in keep),
        data_lines=data_lines,
        sample=head.sample,
    )


def resolve_partition(path: Path, scan: FileScan | FileHead, spec: DatasetSpec, explicit: str | None) -> str:
    """The partition a file fills: given by hand, or as the spec reads it from the file's name
    (without `.gz`) and first rows."""
    try:
        if explicit is not None:
            return spec.normalise_partition(explicit)
        return spec.partition_of(path, scan.sample)
    except PartitionError as error:
        raise IngestError(f"{path}: {error}") from error


# ---------------------------------------------------------------- one block


@dataclass(frozen=True)
class Block:
    """A byte range of whole lines of one file: one partition."""

    path: str  # the file as given
    text_path: str  # where the bytes are read (a gzip file's decompressed copy)
    start: int
    end: int
    first_line: int
    labelled: bool
    header: bytes
    partition: str
    dataset: str = DEFAULT_DATASET  # a name, so that blocks pickle small and plain

    @property
    def spec(self) -> DatasetSpec:
        return get_dataset(self.dataset)


def plan_blocks(scan: FileScan, partition: str, spec: DatasetSpec) -> list[Block]:
    ends = (*scan.block_starts[1:], scan.size)
    return [
        Block(scan.path, scan.text_path, start, end, first, scan.labelled, scan.header, partition, spec.name)
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
    for index in np.flatnonzero(screen.ends - screen.starts == len(header)) if header else ():
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


ARROW_KINDS = {
    "timestamp": arrow.timestamp("s"),
    "string": arrow.string(),
    "float": arrow.float64(),
    "integer": arrow.int64(),
}
PANDAS_KINDS = {"timestamp": "datetime64[s]", "string": "str", "float": "Float64", "integer": "Int64"}


def arrow_types(spec: DatasetSpec, labelled: bool) -> dict[str, arrow.DataType]:
    return {name: ARROW_KINDS[kind] for name, kind in spec.column_kinds(labelled).items()}


def read_rows(body: bytes, spec: DatasetSpec, labelled: bool) -> tuple[arrow.Table, dict[int, int]]:
    """Parse with explicit types, skipping rows with the wrong field count.

    Returns the table and {row number in `body` (1-based): field count} of the skipped rows.
    A block with a value of the wrong type is parsed again as text, with such values as null.
    """
    types = arrow_types(spec, labelled)
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
        parsers = [spec.time_format] if spec.time_format else None
        convert = pacsv.ConvertOptions(column_types=types, timestamp_parsers=parsers)
        return pacsv.read_csv(io.BytesIO(body), read, parse, convert), skipped
    except arrow.ArrowInvalid:
        skipped.clear()
        text = pacsv.ConvertOptions(column_types=dict.fromkeys(types, arrow.string()))
        table = pacsv.read_csv(io.BytesIO(body), read, parse, text)
        return arrow.table(
            {name: cast_or_null(table[name], types[name], spec.time_format) for name in types}
        ), skipped


NUMBER_PATTERNS = {
    arrow.int64(): r"^-?\d{1,18}$",
    arrow.float64(): r"^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$",
}


def cast_or_null(
    values: arrow.ChunkedArray, target: arrow.DataType, time_format: str | None
) -> arrow.ChunkedArray:
    """Text to `target`, with null where the text does not parse."""
    if target == arrow.string():
        return values
    if target == arrow.timestamp("s"):
        return pc.strptime(values, format=time_format, unit="s", error_is_null=True)
    parses = pc.match_substring_regex(values, NUMBER_PATTERNS[target])
    return pc.cast(pc.if_else(parses, values, arrow.scalar(None, arrow.string())), target)


def to_frame(table: arrow.Table) -> pd.DataFrame:
    nullable = {arrow.int64(): pd.Int64Dtype(), arrow.float64(): pd.Float64Dtype()}
    return table.to_pandas(types_mapper=nullable.get)


CHECK_WORDS = (
    ("str_matches", "not a dotted IPv4 address"),
    ("in_range", "outside {}"),
    ("greater_than_or_equal_to", "negative"),
    ("isin", "not one of {}"),
    ("str_length", "empty"),
)


def describe_failure(column: str, check: str, spec: DatasetSpec) -> str:
    """Plain words for a pandera check failure (checks with `error=` words pass through)."""
    if check == "not_nullable":
        if column == spec.time_column:
            return f"does not parse as {spec.time_format}"
        return "missing or not a number"
    for prefix, words in CHECK_WORDS:
        if check.startswith(prefix):
            return words.format(check[len(prefix) :].strip("()").replace(", ", ".."))
    return check


def partition_schema(spec: DatasetSpec, labelled: bool, partition: str) -> pa.DataFrameSchema:
    """The spec's row contract plus its checks that depend on the partition (ZYELL: the day)."""
    schema = spec.contract(labelled)
    for column, checks in spec.partition_checks(partition).items():
        schema = schema.update_column(column, checks=[*schema.columns[column].checks, *checks])
    return schema


def validate_rows(
    frame: pd.DataFrame, spec: DatasetSpec, labelled: bool, partition: str
) -> dict[int, list[tuple[str, str]]]:
    """Row position -> [(column, what is wrong)] for every row that fails the schema."""
    schema = partition_schema(spec, labelled, partition)
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
        failures.setdefault(int(position), []).append((column, describe_failure(column, check, spec)))
    return dict(sorted(failures.items()))


def parse_block(block: Block) -> pd.DataFrame:
    """Every line of the block as a row: typed columns, its line number and, if set aside, why.

    Labels are mapped to the five class names; a valid row with an out-of-scope label keeps
    its raw label and gets the rule OUT_OF_SCOPE_RULE.
    """
    spec = block.spec
    with open(block.text_path, "rb") as handle:
        handle.seek(block.start)
        raw = handle.read(block.end - block.start)
    screen = screen_lines(raw, block)
    kept = screen.kept()
    table, bad_field_counts = read_rows(kept_bytes(raw, screen), spec, block.labelled)
    expected = table.num_columns
    for number, count in bad_field_counts.items():
        screen.rejected[int(kept[number - 1])] = ("field_count", f"{count} fields, expected {expected}")
    if bad_field_counts:
        kept = screen.kept()
    frame = to_frame(table)
    failed = validate_rows(frame, spec, block.labelled, block.partition)
    types = output_dtypes(spec)
    missing = [c for c in spec.label_columns if c not in frame] + list(SET_ASIDE_COLUMNS)
    for column in missing:
        frame[column] = pd.Series(None, index=frame.index, dtype=types[column])
    frame.insert(len(spec.columns), LINE_COLUMN, block.first_line + kept)
    if block.labelled:
        mark_out_of_scope(frame, spec, failed)
    for position, failures in failed.items():
        text = _line_text(raw, screen, kept[position])
        values = text.split(",")
        rules = [f"{column}: {words}" for column, words in failures]
        reasons = [f"{c} = {quote(values[spec.columns.index(c)])}: {words}" for c, words in failures]
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


def mark_out_of_scope(frame: pd.DataFrame, spec: DatasetSpec, failed: dict[int, list]) -> None:
    """Map in-scope labels to class names; give valid out-of-scope rows their rule."""
    labels = frame[spec.label_column]
    if spec.out_of_scope_labels:
        outside = labels.isin(spec.out_of_scope_labels).to_numpy(copy=True)
        outside[list(failed)] = False
        frame.loc[outside, "_rule"] = OUT_OF_SCOPE_RULE
        frame.loc[outside, "_columns"] = spec.label_column
        frame.loc[outside, "_reason"] = "label " + labels[outside].map(repr) + " is outside the five classes"
    frame[spec.label_column] = canonical_labels(labels, spec)


def canonical_labels(labels: pd.Series, spec: DatasetSpec) -> pd.Series:
    """Raw labels as class names; labels the map does not know stay as they are."""
    if spec.labels_are_class_names:
        return labels
    mapped = labels.map(spec.label_map)
    return mapped.where(mapped.notna(), labels).astype("str")


def _line_text(raw: bytes, screen: LineScreen, index: int) -> str:
    return raw[screen.starts[index] : screen.ends[index]].decode("utf-8", errors="backslashreplace")


SET_ASIDE_COLUMNS = ("_rule", "_columns", "_reason", "_raw")


def output_columns(spec: DatasetSpec) -> tuple[str, ...]:
    return (*store_columns(spec), *SET_ASIDE_COLUMNS)


def output_dtypes(spec: DatasetSpec) -> dict[str, str]:
    types = {name: PANDAS_KINDS[kind] for name, kind in spec.column_kinds(labelled=True).items()}
    return types | {LINE_COLUMN: "int64"} | dict.fromkeys(SET_ASIDE_COLUMNS, "str")


def empty_output(spec: DatasetSpec) -> pd.DataFrame:
    types = output_dtypes(spec)
    return pd.DataFrame({c: pd.Series(dtype=types[c]) for c in output_columns(spec)})


def split_set_aside(rows: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Masks of the quarantined rows and of the out-of-scope rows."""
    out_of_scope = rows["_rule"] == OUT_OF_SCOPE_RULE
    return rows["_rule"].notna() & ~out_of_scope, out_of_scope.fillna(False).astype(bool)


def quarantine_frame(rows: pd.DataFrame, source: str) -> pd.DataFrame:
    """Rejected rows in the quarantine's columns."""
    quarantined = rows[["_rule", "_columns", "_reason", "_raw", LINE_COLUMN]]
    quarantined.columns = ["rule", "columns", "reason", "raw", LINE_COLUMN]
    return quarantined.assign(file=source)[list(QUARANTINE_COLUMNS)]


# ---------------------------------------------------------------- a whole file


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


SUMMARY_META = pd.DataFrame(
    {"kind": pd.Series(dtype="str"), "key": pd.Series(dtype="str"), "count": pd.Series(dtype="int64")}
)


def store_partition(
    rows: pd.DataFrame, stage: Stage, source: str, dataset: str, partition_info: dict | None = None
) -> pd.DataFrame:
    """Write one block's kept, rejected and out-of-scope rows to the stage; return its counts
    (kind, key, count). Runs in the same task as the block's parse, so rows never travel."""
    spec = get_dataset(dataset)
    number = partition_info["number"] if partition_info else 0
    rejected, outside = split_set_aside(rows)
    valid = rows.loc[~rejected & ~outside, list(store_columns(spec))]
    quarantined = quarantine_frame(rows.loc[rejected], source)
    set_aside = rows.loc[outside, list(store_columns(spec))]
    name = f"part-{number:05d}.parquet"
    valid.to_parquet(stage.data / name, index=False)
    quarantined.to_parquet(stage.quarantine / name, index=False)
    set_aside.to_parquet(stage.out_of_scope / name, index=False)
    parts = [
        ("kept", pd.Series({"": len(valid)})),
        ("quarantined", pd.Series({"": len(quarantined)})),
        ("out_of_scope", pd.Series({"": len(set_aside)})),
        ("reason", quarantined["rule"].value_counts()),
        ("class", valid[spec.label_column].value_counts()),
        ("out_of_scope_label", set_aside[spec.label_column].value_counts()),
    ]
    for column in spec.categorical:
        unknown = valid[column.name][~valid[column.name].isin(column.vocabulary)]
        parts.append(("unknown", unknown.value_counts().rename(lambda v, c=column.name: f"{c}={v}")))
    if spec.time_column and len(valid):
        times = valid[spec.time_column]
        parts.append(("time", pd.Series({stamp(times.min(), spec): 0, stamp(times.max(), spec): 0})))
    summary = [(kind, str(key), int(count)) for kind, counts in parts for key, count in counts.items()]
    return pd.DataFrame(summary, columns=list(SUMMARY_META.columns)).astype(SUMMARY_META.dtypes)


def write_partitions(blocks: list[Block], stage: Stage, client: Client) -> dict:
    """Parse, validate and write every block on the cluster; return the counts for the report."""
    spec = blocks[0].spec
    rows = dd.from_map(
        parse_block, blocks, meta=empty_output(spec), enforce_metadata=False, label="parse-block"
    )
    summaries = rows.map_partitions(
        store_partition, stage, blocks[0].path, spec.name, meta=SUMMARY_META, align_dataframes=False
    )
    summary = client.compute(summaries, sync=True)
    totals = summary.groupby(["kind", "key"])["count"].sum()
    times = sorted(summary.loc[summary["kind"] == "time", "key"])

    def of(kind: str) -> dict[str, int]:
        return {key: int(n) for (k, key), n in totals.items() if k == kind}

    return {
        "rows_kept": of("kept").get("", 0),
        "rows_quarantined": of("quarantined").get("", 0),
        "rows_out_of_scope": of("out_of_scope").get("", 0),
        "reasons": of("reason"),
        "classes": of("class"),
        "out_of_scope": of("out_of_scope_label"),
        "unknown_categories": of("unknown"),
        "time_first": times[0] if times else None,
        "time_last": times[-1] if times else None,
    }


def stamp(value, spec: DatasetSpec) -> str | None:
    return None if pd.isna(value) else pd.Timestamp(value).strftime(spec.time_format)


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


def ingest_file(
    path: Path,
    store: Path,
    client: Client,
    spec: DatasetSpec = ZYELL,
    partition: str | None = None,
    blocksize: int = DEFAULT_BLOCKSIZE,
    skip_unchanged: bool = False,
) -> IngestReport:
    """Ingest one file into `store` as one partition, replacing that partition atomically.

    With `skip_unchanged`, a partition whose stored version came from a file with the same
    sha256 is left alone and its stored report is returned with status "skipped".
    """
    started = clock.perf_counter()
    claim_store(store, spec.name)
    key = resolve_partition(path, read_head(path, spec), spec, partition)
    part = spec.partition_folder(key)
    with part_lock(store, part):
        recover_part(store, part)
        previous = read_report(store, part)
        with staged_version(store, part) as stage, scan_file(path, spec, blocksize, stage.root) as scan:
            if skip_unchanged and (skipped := unchanged_report(previous, scan, path)):
                return skipped
            stats = write_partitions(plan_blocks(scan, key, spec), stage, client)
            report = build_report(scan, spec, key, stats, previous, started)
            (stage.data / REPORT_NAME).write_text(json.dumps(asdict(report), indent=2))
            commit_stage(store, part, stage)
    return report


@contextmanager
def staged_version(store: Path, part: str) -> Iterator[Stage]:
    """A stage for a new version of `part`, with the partition's lock held. Once committed,
    the journal owns it; a failed or skipped ingest removes it, with any decompressed copy."""
    stage = new_stage(store, part)
    try:
        yield stage
    finally:
        if not journal_path(store, part).exists():
            shutil.rmtree(stage.root, ignore_errors=True)


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
) -> Iterator[IngestOutcome]:
    """Ingest several files on one cluster, a few at a time so that one file's scan overlaps
    another's parsing. Outcomes come back in the order of `paths`; a bad file stops only itself."""

    def one(path: Path) -> IngestOutcome:
        try:
            report = ingest_file(path, store, client, spec, partition, blocksize)
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
    Files whose name tells no day are always included.
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

    files = [path for path in spec.data_files(source) if wanted(path)]
    check_one_file_per_name(files)
    return files


def check_one_file_per_name(files: list[Path]) -> None:
    """`1203_firewall.csv` next to `1203_firewall.csv.gz` would fill one partition twice."""
    by_name: dict[str, list[str]] = {}
    for path in files:
        by_name.setdefault(plain_name(path), []).append(path.name)
    twins = [" and ".join(names) for names in by_name.values() if len(names) > 1]
    if twins:
        raise ValueError(f"{'; '.join(twins)}: the same file, plain and compressed; keep one of each")


def backfill_row(path: Path, result: IngestReport | BaseException) -> dict:
    """One line of a backfill table: partition, rows, kept, quarantined, out of scope, status."""
    if isinstance(result, BaseException):
        counts = dict.fromkeys(("partition", "rows", "kept", "quarantined", "out_of_scope"))
        return {"file": path.name, **counts, "status": f"failed: {message_of(result)}"}
    return {
        "file": path.name,
        "partition": result.partition,
        "rows": result.rows_read,
        "kept": result.rows_kept,
        "quarantined": result.rows_quarantined,
        "out_of_scope": result.rows_out_of_scope,
        "status": result.status,
    }


@task(
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=retry_if_transient,  # I/O that may pass, not bad data, a missing file or access
    task_run_name="ingest-{path.name}",
)
def ingest_partition(
    path: Path, store: Path, dask_address: str, dataset: str = DEFAULT_DATASET, force: bool = False
) -> IngestReport:
    """Prefect task: ingest one file on the given Dask cluster, skipping unchanged partitions."""
    with Client(dask_address, set_as_default=False) as client:
        return ingest_file(path, store, client, get_dataset(dataset), skip_unchanged=not force)
