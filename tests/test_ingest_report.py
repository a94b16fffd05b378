"""A partition's `_report.json` read back as an `IngestReport`: today's reports, reports written
before datasets, and damaged ones (one error naming the file)."""

import json
from pathlib import Path

import pytest

from tasks.ingest.report import IngestReport, unchanged_report
from tasks.ingest.scan import FileScan
from tasks.ingest.store import REPORT_NAME, ReportError, part_dir, read_report

PART = "day=2020-12-03"
SHA = "ab" * 32
CURRENT = {
    "file": "1203_firewall.csv",
    "dataset": "zyell",
    "partition": "2020-12-03",
    "status": "ingested",
    "sha256": SHA,
    "previous_sha256": None,
    "rows_read": 10,
    "rows_kept": 7,
    "rows_quarantined": 2,
    "rows_out_of_scope": 1,
    "reasons": {"src": 2},
    "classes": {"Normal": 7},
    "out_of_scope": {"Other": 1},
    "unknown_categories": {"app=quic": 1},
    "time_first": "2020-12-03 00:00:00",
    "time_last": "2020-12-03 23:59:59",
    "duration_s": 0.5,
    "schema_version": "1",
}
# the first report format, from before datasets: a day, unknown apps, no out-of-scope rows
ADDED_WITH_DATASETS = ("dataset", "partition", "rows_out_of_scope", "out_of_scope", "unknown_categories")
BEFORE_DATASETS = {key: value for key, value in CURRENT.items() if key not in ADDED_WITH_DATASETS} | {
    "day": "2020-12-03",
    "unknown_apps": {"quic": 1},
    "rows_read": 9,
}


def stored(store: Path, text: str) -> Path:
    path = part_dir(store, PART) / REPORT_NAME
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


def same_file_scan() -> FileScan:
    return FileScan("1203_firewall.csv", "1203_firewall.csv", SHA, 0, True, b"", (), (), 10, ())


def test_a_report_reads_back_as_written(tmp_path: Path) -> None:
    stored(tmp_path, json.dumps(CURRENT))
    report = read_report(tmp_path, PART)
    assert isinstance(report, IngestReport) and report.to_dict() == CURRENT and not report.older_format
    assert read_report(tmp_path, "day=2020-12-04") is None
    skipped = unchanged_report(report, same_file_scan(), Path("again/1203_firewall.csv"))
    assert skipped is not None and skipped.status == "skipped" and skipped.file == "again/1203_firewall.csv"


def test_a_report_from_before_datasets_reads_with_defaults_and_is_never_reused(tmp_path: Path) -> None:
    stored(tmp_path, json.dumps(BEFORE_DATASETS))
    report = read_report(tmp_path, PART)
    assert (report.dataset, report.partition, report.rows_out_of_scope) == ("zyell", "2020-12-03", 0)
    assert report.out_of_scope == {} and report.unknown_categories == {"app=quic": 1}
    assert report.older_format and report.balanced
    assert unchanged_report(report, same_file_scan(), Path("1203_firewall.csv")) is None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{not json", "Expecting property name"),
        ("", "Expecting value"),
        ("[1, 2]", "a JSON list, not an object"),
        (json.dumps({k: v for k, v in CURRENT.items() if k != "sha256"}), "no 'sha256'"),
    ],
    ids=["not-json", "empty", "not-an-object", "no-sha256"],
)
def test_a_damaged_report_is_one_error_naming_its_file(tmp_path: Path, text: str, why: str) -> None:
    path = stored(tmp_path, text)
    with pytest.raises(ReportError) as caught:
        read_report(tmp_path, PART)
    message = str(caught.value)
    assert message.startswith(f"{path}: not a readable ingest report") and why in message
    assert "\n" not in message
