"""The raw firewall-day contract: every rule, each with a passing frame and a failing example."""

from pathlib import Path

import pandas as pd
import pandera.pandas as pa
import pytest

from schemas.datasets import ZYELL
from schemas.firewall import COLUMNS, COUNTER_COLUMNS, UNLABELLED_COLUMNS, raw_day_schema
from simulator.generate import DaySummary
from tasks.ingest.parse import read_rows, to_frame, validate_rows


@pytest.fixture(scope="module")
def good_frame(tiny_dir: Path, tiny_days: list[DaySummary]) -> pd.DataFrame:
    body = (tiny_dir / "1210_firewall.csv").read_bytes().split(b"\n", 1)[1]
    table, skipped = read_rows(body, ZYELL, labelled=True)
    assert not skipped
    return to_frame(table).head(50)


def failing_checks(frame: pd.DataFrame, labelled: bool = True) -> set[tuple[str, str]]:
    try:
        raw_day_schema(labelled).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        return set(zip(errors.failure_cases["column"], errors.failure_cases["check"], strict=True))
    return set()


def test_generated_rows_pass(good_frame: pd.DataFrame) -> None:
    assert failing_checks(good_frame) == set()
    assert failing_checks(good_frame.drop(columns="label"), labelled=False) == set()


BROKEN = [
    ("time", pd.NaT, "not_nullable"),
    ("src", "10.0.0.256", "str_matches"),
    ("src", "10.0.0", "str_matches"),
    ("dst", "a.b.c.d", "str_matches"),
    ("spt", 70_000, "in_range"),
    ("dpt", -1, "in_range"),
    ("spt", pd.NA, "not_nullable"),
    ("duration", -0.5, "greater_than_or_equal_to"),
    ("out (bytes)", -5, "greater_than_or_equal_to"),
    ("in (bytes)", -1, "greater_than_or_equal_to"),
    ("proto", 256, "in_range"),
    ("app", "", "str_length"),
    ("label", "Hacker", "not one of the five class names"),
    ("label", None, "not_nullable"),
    *[(name, -1, "greater_than_or_equal_to") for name in COUNTER_COLUMNS],
]


@pytest.mark.parametrize(("column", "value", "check"), BROKEN, ids=[f"{c}={v!r}" for c, v, _ in BROKEN])
def test_each_rule_rejects_its_bad_value(good_frame: pd.DataFrame, column: str, value, check: str) -> None:
    frame = good_frame.copy()
    frame.loc[3, column] = value
    failures = failing_checks(frame)
    assert any(c == column and k.startswith(check) for c, k in failures), failures


def test_unknown_app_is_not_a_schema_failure(good_frame: pd.DataFrame) -> None:
    frame = good_frame.copy()
    frame.loc[0, "app"] = "brand-new-app"
    assert failing_checks(frame) == set()


def test_columns_must_be_exactly_the_contract(good_frame: pd.DataFrame) -> None:
    assert list(good_frame.columns) == list(COLUMNS)
    with pytest.raises(pa.errors.SchemaErrors):
        raw_day_schema(True).validate(good_frame.drop(columns="cnt_src"), lazy=True)
    with pytest.raises(pa.errors.SchemaErrors):
        raw_day_schema(True).validate(good_frame.assign(extra=1), lazy=True)
    with pytest.raises(pa.errors.SchemaErrors):
        raw_day_schema(False).validate(good_frame[list(reversed(UNLABELLED_COLUMNS))], lazy=True)


def test_rows_off_the_files_day_are_reported(good_frame: pd.DataFrame) -> None:
    frame = good_frame.copy()
    frame.loc[2, "time"] = pd.Timestamp("2020-12-11 00:00:00")
    failures = validate_rows(frame, ZYELL, labelled=True, partition="2020-12-10")
    assert list(failures) == [2]
    assert failures[2] == [("time", "not on the file's day")]
