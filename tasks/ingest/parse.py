"""Parsing and validating one block: every line becomes a row with typed columns, its line
number and, if it is set aside, the rule and reason in plain words.

Lines are parsed with the types of the spec's pandera schema (a value of the wrong type becomes
null), then validated with the schema, plus its checks that depend on the partition. A row that
fails goes to the quarantine (file, line, rule, columns, reason, raw text); a valid row whose
label is outside the five classes is set aside as out of scope.
"""

import io

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as arrow
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from schemas.datasets import DatasetSpec
from schemas.firewall import CLASS_NAMES
from tasks.errors import quote
from tasks.ingest.lines import Block, LineScreen, kept_bytes, line_text, read_block, screen_lines

LINE_COLUMN = "line"
QUARANTINE_COLUMNS = ("file", "line", "rule", "columns", "reason", "raw")
OUT_OF_SCOPE_RULE = "out_of_scope"


def store_columns(spec: DatasetSpec) -> tuple[str, ...]:
    return (*spec.columns, LINE_COLUMN)


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
    raw = read_block(block)
    screen = screen_lines(raw, block)
    frame, kept = parse_lines(raw, screen, spec, block.labelled)
    failed = validate_rows(frame, spec, block.labelled, block.partition)
    add_set_aside_columns(frame, spec)
    frame.insert(len(spec.columns), LINE_COLUMN, block.first_line + kept)
    if block.labelled:
        mark_out_of_scope(frame, spec, failed)
    for position, failures in failed.items():
        mark_failures(frame, position, failures, line_text(raw, screen, kept[position]), spec)
    if not screen.rejected:
        return frame
    return with_rejected_lines(frame, raw, screen, block.first_line)


def parse_lines(
    raw: bytes, screen: LineScreen, spec: DatasetSpec, labelled: bool
) -> tuple[pd.DataFrame, np.ndarray]:
    """The typed rows of the lines not rejected so far, and their indices in the block. Lines
    with the wrong number of fields are rejected here, as the CSV parser finds them."""
    kept = screen.kept()
    table, bad_field_counts = read_rows(kept_bytes(raw, screen), spec, labelled)
    expected = table.num_columns
    for number, count in bad_field_counts.items():
        screen.rejected[int(kept[number - 1])] = ("field_count", f"{count} fields, expected {expected}")
    if bad_field_counts:
        kept = screen.kept()
    return to_frame(table), kept


def add_set_aside_columns(frame: pd.DataFrame, spec: DatasetSpec) -> None:
    """Empty label columns (an unlabelled file) and set-aside columns, in the output's types."""
    types = output_dtypes(spec)
    missing = [c for c in spec.label_columns if c not in frame] + list(SET_ASIDE_COLUMNS)
    for column in missing:
        frame[column] = pd.Series(None, index=frame.index, dtype=types[column])


def mark_failures(
    frame: pd.DataFrame, position: int, failures: list[tuple[str, str]], text: str, spec: DatasetSpec
) -> None:
    """Give the row at `position` its rule (the first failure), columns, reasons and raw text."""
    values = text.split(",")
    rules = [f"{column}: {words}" for column, words in failures]
    reasons = [f"{c} = {quote(values[spec.columns.index(c)])}: {words}" for c, words in failures]
    frame.loc[position, ["_rule", "_columns", "_reason", "_raw"]] = [
        rules[0],
        ",".join(dict.fromkeys(column for column, _ in failures)),
        "; ".join(reasons),
        text,
    ]


def with_rejected_lines(frame: pd.DataFrame, raw: bytes, screen: LineScreen, first_line: int) -> pd.DataFrame:
    """The parsed rows and the lines rejected before parsing, in line order."""
    rejected = pd.DataFrame(
        {
            LINE_COLUMN: [first_line + i for i in screen.rejected],
            "_rule": [rule for rule, _ in screen.rejected.values()],
            "_columns": "",
            "_reason": [reason for _, reason in screen.rejected.values()],
            "_raw": [line_text(raw, screen, i) for i in screen.rejected],
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


def label_codes(labels: pd.Series, spec: DatasetSpec) -> np.ndarray:
    """Class codes (int8) of raw or mapped labels; -1 where the label is outside the five classes."""
    return pd.Categorical(canonical_labels(labels, spec), categories=CLASS_NAMES).codes.astype(np.int8)


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
