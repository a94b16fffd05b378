"""Ingestion of dirty firewall days: a corpus of malformed files, each with its documented outcome."""

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from distributed import Client
from typer.testing import CliRunner

from flows.cli import app
from schemas.firewall import COLUMNS
from simulator.generate import DaySummary
from tasks.ingest.files import ingest_file, select_files
from tasks.ingest.scan import IngestError
from tasks.ingest.store import QUARANTINE_DIR, REPORT_NAME, part_dir, quarantine_dir, read_report

DAY = "2020-12-10"
PART = f"day={DAY}"
NAME = "1210_firewall.csv"
BASE_ROWS = 40
UTF8_BOM = b"\xef\xbb\xbf"


@pytest.fixture(scope="module")
def base_lines(tiny_dir: Path, tiny_days: list[DaySummary]) -> list[bytes]:
    """The header and the first BASE_ROWS rows of a generated labelled day."""
    return (tiny_dir / NAME).read_bytes().split(b"\n")[: BASE_ROWS + 1]


def set_field(line: bytes, index: int, value: bytes) -> bytes:
    fields = line.split(b",")
    fields[index] = value
    return b",".join(fields)


def joined(lines: list[bytes]) -> bytes:
    return b"\n".join(lines) + b"\n"


@dataclass(frozen=True)
class Case:
    """A malformed file and what ingest must do with it."""

    make: Callable[[list[bytes]], bytes]
    error: str | None = None  # a file-level error containing this text
    rule: str | None = None  # else: quarantine rows with this rule
    lines: tuple[int, ...] = ()  # ... on these file lines
    read: int = BASE_ROWS
    rules: tuple[str, ...] = ()  # one rule per line in `lines`, where they differ

    def expected_rules(self) -> tuple[str, ...]:
        return self.rules or (self.rule,) * len(self.lines)


def edit(line_no: int, change: Callable[[bytes], bytes]) -> Callable[[list[bytes]], bytes]:
    """A file with line `line_no` (1-based, header = 1) changed."""

    def make(lines: list[bytes]) -> bytes:
        copy = list(lines)
        copy[line_no - 1] = change(copy[line_no - 1])
        return joined(copy)

    return make


def with_value(line_no: int, column: str, value: bytes) -> Callable[[list[bytes]], bytes]:
    """A file with one field of line `line_no` replaced."""
    return edit(line_no, lambda row: set_field(row, COLUMNS.index(column), value))


CASES = {
    "wrong field count": Case(edit(5, lambda row: row + b",surplus"), rule="field_count", lines=(5,)),
    "bad IP": Case(with_value(6, "src", b"10.0.300.1"), rule="src: not a dotted IPv4", lines=(6,)),
    "negative byte count": Case(
        with_value(7, "out (bytes)", b"-12"), rule="out (bytes): negative", lines=(7,)
    ),
    "bad timestamp": Case(
        with_value(8, "time", b"2020/12/10 01:02:03"),
        rule="time: does not parse",
        lines=(8,),
    ),
    "unknown label": Case(with_value(9, "label", b"Probing-Bogus"), rule="label: not one of", lines=(9,)),
    "port 70000": Case(with_value(10, "dpt", b"70000"), rule="dpt: outside 0..65535", lines=(10,)),
    "non-UTF-8 line": Case(
        edit(11, lambda row: row.replace(b"Normal", b"Norm\xff\xfeal")), rule="encoding", lines=(11,)
    ),
    "empty file": Case(lambda lines: b"", error="the file is empty"),
    "header-only file": Case(lambda lines: lines[0] + b"\n", error="header but no rows"),
    "missing column": Case(
        lambda lines: joined([lines[0].replace(b",cnt_src,", b",")]), error="missing column(s) ['cnt_src']"
    ),
    "extra column": Case(
        lambda lines: joined([lines[0] + b",note", *[row + b",x" for row in lines[1:]]]),
        error="unexpected column(s) ['note']",
    ),
    "duplicated header line in the middle": Case(
        lambda lines: joined([*lines[:20], lines[0], *lines[20:]]),
        rule="repeated_header",
        lines=(21,),
        read=BASE_ROWS + 1,
    ),
    "truncated last line": Case(
        lambda lines: joined(lines)[:-30], rule="field_count", lines=(BASE_ROWS + 1,)
    ),
    "CRLF line endings (accepted)": Case(lambda lines: b"\r\n".join(lines) + b"\r\n"),
    "gzip-compressed file (read directly)": Case(lambda lines: gzip.compress(joined(lines))),
    "gzip-compressed file with a bad row": Case(
        lambda lines: gzip.compress(with_value(10, "dpt", b"70000")(lines)),
        rule="dpt: outside 0..65535",
        lines=(10,),
    ),
    "gzip file cut short": Case(
        lambda lines: gzip.compress(joined(lines))[:-40], error="not a readable gzip file"
    ),
    "gzip-compressed binary": Case(lambda lines: gzip.compress(b"\x00\x01\x02" * 100), error="binary"),
    "UTF-8 BOM before the header (stripped)": Case(lambda lines: UTF8_BOM + joined(lines)),
    "UTF-8 BOM and CRLF in a gzip file": Case(
        lambda lines: gzip.compress(UTF8_BOM + b"\r\n".join(lines) + b"\r\n")
    ),
    "blank line in the middle": Case(
        lambda lines: joined([*lines[:12], b"", *lines[12:]]),
        rule="blank_line",
        lines=(13,),
        read=BASE_ROWS + 1,
    ),
    "number that does not parse": Case(
        with_value(14, "spt", b"12a"), rule="spt: missing or not a number", lines=(14,)
    ),
    "row from another day": Case(
        with_value(15, "time", b"2020-12-11 00:00:00"),
        rule="time: not on the file's day",
        lines=(15,),
    ),
    "protocol 300": Case(with_value(16, "proto", b"300"), rule="proto: outside 0..255", lines=(16,)),
    "columns out of order": Case(
        lambda lines: joined([lines[0].replace(b"src,dst", b"dst,src")]), error="out of order"
    ),
    "binary file": Case(lambda lines: b"\x00\x01\x02" * 100, error="binary"),
    "no trailing newline (accepted)": Case(lambda lines: joined(lines)[:-1]),
    "several bad rows at once": Case(
        lambda lines: joined(
            [
                *lines[:3],
                set_field(lines[3], 4, b"99999"),
                set_field(set_field(lines[4], 1, b"x"), 6, b"-1"),
                *lines[5:],
            ]
        ),
        rules=("dpt: outside 0..65535", "src: not a dotted IPv4"),
        lines=(4, 5),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_input(
    name: str, base_lines: list[bytes], tmp_path: Path, dask_cluster_client: Client
) -> None:
    case = CASES[name]
    source = tmp_path / NAME
    source.write_bytes(case.make(base_lines))
    store = tmp_path / "store"
    if case.error:
        with pytest.raises(IngestError, match=None) as raised:
            ingest_file(source, store, dask_cluster_client, partition=DAY)
        assert str(source) in str(raised.value) and case.error in str(raised.value)
        assert not part_dir(store, PART).exists() and not quarantine_dir(store, PART).exists()
        return
    report = ingest_file(source, store, dask_cluster_client, partition=DAY)
    assert report.rows_read == case.read
    assert report.rows_read == report.rows_kept + report.rows_quarantined and report.rows_out_of_scope == 0
    quarantine = pd.read_parquet(quarantine_dir(store, PART)).sort_values("line")
    assert list(quarantine["line"]) == list(case.lines)
    assert (quarantine["file"] == str(source)).all()
    for rule, expected in zip(quarantine["rule"], case.expected_rules(), strict=True):
        assert rule.startswith(expected), (rule, expected)
    assert quarantine["reason"].str.len().gt(0).all() and quarantine["raw"].notna().all()
    kept = pd.read_parquet(part_dir(store, PART))
    assert len(kept) == report.rows_kept
    assert not set(kept["line"]) & set(quarantine["line"])
    assert set(kept["line"]) | set(quarantine["line"]) == set(range(2, case.read + 2))


def test_column_level_reason_names_column_and_value(
    base_lines, tmp_path: Path, dask_cluster_client: Client
) -> None:
    source = tmp_path / NAME
    source.write_bytes(CASES["several bad rows at once"].make(base_lines))
    ingest_file(source, tmp_path / "store", dask_cluster_client, partition=DAY)
    rows = pd.read_parquet(quarantine_dir(tmp_path / "store", PART)).set_index("line")
    assert rows.loc[4, "reason"] == "dpt = '99999': outside 0..65535"
    assert rows.loc[5, "columns"] == "src,out (bytes)"
    assert "src = 'x': not a dotted IPv4 address" in rows.loc[5, "reason"]
    assert "out (bytes) = '-1': negative" in rows.loc[5, "reason"]


def test_unknown_app_is_kept_and_counted(base_lines, tmp_path: Path, dask_cluster_client: Client) -> None:
    source = tmp_path / NAME
    source.write_bytes(with_value(4, "app", b"quic")(base_lines))
    report = ingest_file(source, tmp_path / "store", dask_cluster_client, partition=DAY)
    assert report.rows_quarantined == 0 and report.unknown_categories == {"app=quic": 1}
    assert "quic" in set(pd.read_parquet(part_dir(tmp_path / "store", PART))["app"])


def test_report_holds_counts_span_and_hash(
    tiny_dir: Path, tiny_days, tmp_path: Path, dask_cluster_client: Client
) -> None:
    report = ingest_file(tiny_dir / NAME, tmp_path, dask_cluster_client)
    stored = json.loads((part_dir(tmp_path, PART) / REPORT_NAME).read_text())
    summary = next(s for s in tiny_days if s.file == NAME)
    assert stored == read_report(tmp_path, PART).to_dict()
    assert stored["partition"] == DAY and stored["dataset"] == "zyell" and stored["rows_read"] == summary.rows
    assert stored["classes"] == {k: v for k, v in summary.class_counts.items() if v}
    assert stored["time_first"].startswith("2020-12-10") and stored["time_last"] >= stored["time_first"]
    assert len(stored["sha256"]) == 64 and stored["duration_s"] > 0
    assert report.summary().startswith(f"{NAME} -> day=2020-12-10: ingested; read {summary.rows:,}")


def test_unlabelled_days_are_stored_without_labels(
    tiny_dir: Path, tiny_days, tmp_path: Path, dask_cluster_client
) -> None:
    report = ingest_file(tiny_dir / "0124_firewall.csv", tmp_path, dask_cluster_client)
    stored = pd.read_parquet(part_dir(tmp_path, "day=2021-01-24"))
    assert report.rows_kept == len(stored) and stored["label"].isna().all()


@pytest.mark.parametrize("name", ["firewall.csv", "1310_firewall.csv", "day_1210.csv"])
def test_names_without_a_day_are_a_clear_error(
    name: str, base_lines, tmp_path: Path, dask_cluster_client
) -> None:
    source = tmp_path / name
    source.write_bytes(joined(base_lines))
    with pytest.raises(IngestError, match="day"):
        ingest_file(source, tmp_path / "store", dask_cluster_client)
    assert ingest_file(source, tmp_path / "store", dask_cluster_client, partition=DAY).rows_kept == BASE_ROWS


def test_select_day_files_by_range_and_across_new_year(tiny_dir: Path, tiny_days) -> None:
    def names(**bounds) -> list[str]:
        return [p.name[:4] for p in select_files(tiny_dir, **bounds)]

    assert names() == ["0123", "0124", "0125", "0126", "1203", "1210", "1216"]
    assert names(since="1204", until="1216") == ["1210", "1216"]
    assert names(since="1210", until="0124") == ["0123", "0124", "1210", "1216"]
    with pytest.raises(ValueError, match="MMDD"):
        select_files(tiny_dir, since="12-10")


def test_cli_ingest_reports_each_file_and_fails_on_bad_ones(
    tiny_dir: Path, tiny_days, tmp_path: Path
) -> None:
    empty = tmp_path / "0101_firewall.csv"
    empty.write_bytes(b"")
    result = CliRunner().invoke(
        app, ["ingest", str(tiny_dir / NAME), str(empty), "--store", str(tmp_path / "s")]
    )
    assert result.exit_code == 1
    assert "1210_firewall.csv -> day=2020-12-10: ingested" in result.output
    assert f"{empty}: the file is empty" in result.output
    assert (tmp_path / "s" / QUARANTINE_DIR / "day=2020-12-10").is_dir()
