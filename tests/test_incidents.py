"""Incidents on a hand-made day whose episodes are known, field by field."""

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from schemas.datasets import ZYELL
from schemas.firewall import COUNTER_COLUMNS, NORMAL
from tasks.scoring.incidents import (
    FileFailure,
    IncidentDetection,
    IncidentError,
    find_incidents,
    folder_incidents,
    read_incidents,
    write_incidents,
)
from tasks.scoring.predictions import prediction_schema

A, B, C = "10.0.0.5", "172.16.3.9", "203.0.113.7"
IP, PORT, NMAP, DDOS = "Probing-IP sweep", "Probing-Port sweep", "Probing-Nmap", "DDOS-smurf"
# time, src, dst, dpt, predicted, attack probability, true class
DAY = [
    ("10:00:00", A, "10.0.1.1", 0, IP, 0.90, IP),
    ("10:00:10", B, "10.0.2.255", 0, DDOS, 0.97, DDOS),
    ("10:00:20", A, "10.0.9.9", 443, NORMAL, 0.10, NORMAL),  # not flagged: does not cut A's incident
    ("10:00:30", A, "10.0.1.2", 0, IP, 0.70, IP),
    ("10:00:45", A, "10.0.1.3", 80, PORT, 0.60, IP),  # another class: its own incident
    ("10:01:00", A, "10.0.1.4", 0, NORMAL, 0.40, IP),  # missed, inside A's episode
    ("10:01:30", A, "10.0.1.2", 8, IP, 0.80, IP),  # 60 s after 10:00:30: still the same incident
    ("10:02:31", A, "10.0.1.9", 0, IP, 0.55, NORMAL),  # 61 s later: a new incident, a false one
    ("11:00:00", C, "10.0.1.1", 22, NORMAL, 0.20, NMAP),  # a missed episode
    ("11:00:01", C, "10.0.1.1", 23, NORMAL, 0.30, NMAP),
]
EXPECTED = pd.DataFrame(
    {
        "src": [A, A, A, B],
        "class": [IP, IP, PORT, DDOS],
        "start": pd.to_datetime(
            ["2021-01-23 10:00:00", "2021-01-23 10:02:31", "2021-01-23 10:00:45", "2021-01-23 10:00:10"]
        ),
        "end": pd.to_datetime(
            ["2021-01-23 10:01:30", "2021-01-23 10:02:31", "2021-01-23 10:00:45", "2021-01-23 10:00:10"]
        ),
        "rows": [3, 1, 1, 1],
        "destinations": [2, 1, 1, 1],
        "ports": [2, 1, 1, 1],
        "max_probability": [0.9, 0.55, 0.6, 0.97],
        "mean_probability": [0.8, 0.55, 0.6, 0.97],
    }
).astype({"start": "datetime64[s]", "end": "datetime64[s]", "src": "str", "class": "str"})


def predictions_frame(with_labels: bool) -> pd.DataFrame:
    """The day as `nad score` writes it: every column of a labelled day, line, prediction."""
    time, src, dst, dpt, predicted, probability, truth = zip(*DAY, strict=True)
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime([f"2021-01-23 {t}" for t in time]).astype("datetime64[s]"),
            "src": src,
            "dst": dst,
            "spt": 40000,
            "dpt": dpt,
            "duration": 0.0,
            "out (bytes)": 60,
            "in (bytes)": 0,
            "proto": 6,
            "app": "others",
            **dict.fromkeys(COUNTER_COLUMNS, 1),
            "label": truth if with_labels else None,
            "line": range(2, len(DAY) + 2),
            "pred_label": predicted,
            "attack_probability": probability,
        }
    )
    return frame.astype({"attack_probability": "float32"})


def write_predictions(folder: Path, with_labels: bool, stem: str = "0123_firewall") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.predictions.parquet"
    frame = predictions_frame(with_labels)
    frame.to_parquet(path, schema=prediction_schema(ZYELL), index=False)
    return path


EXPECTED_DETECTION = IncidentDetection(
    episodes=3, detected=2, detected_same_class=2, incidents=4, false_incidents=1
)


def test_incidents_of_a_hand_made_day_match_field_by_field() -> None:
    flagged = predictions_frame(with_labels=False).query("pred_label != @NORMAL")
    incidents = find_incidents(flagged, gap_seconds=60)
    pd.testing.assert_frame_equal(incidents, EXPECTED, check_exact=False, rtol=1e-6)


def test_a_longer_gap_joins_the_late_row_to_the_incident() -> None:
    flagged = predictions_frame(with_labels=False).query("pred_label != @NORMAL")
    incidents = find_incidents(flagged, gap_seconds=61)
    assert incidents["rows"].tolist() == [4, 1, 1]
    assert incidents["end"].iloc[0] == pd.Timestamp("2021-01-23 10:02:31")


@pytest.mark.parametrize("truth_from", ["label column", "truth file"])
def test_written_incidents_and_detection_against_the_truth(tmp_path: Path, truth_from: str) -> None:
    path = write_predictions(tmp_path / "scores", with_labels=truth_from == "label column")
    truth_dir = None
    if truth_from == "truth file":
        truth_dir = tmp_path / "truth"
        truth_dir.mkdir()
        pd.DataFrame({"label": [row[-1] for row in DAY]}).to_csv(truth_dir / "0123_firewall.csv", index=False)
    result = write_incidents(path, 60, truth_dir, rows_read=len(DAY))  # no summary.json here
    assert result.path == tmp_path / "scores" / "0123_firewall.incidents.parquet"
    pd.testing.assert_frame_equal(read_incidents(result.path), EXPECTED, check_exact=False, rtol=1e-6)
    assert result.detection == EXPECTED_DETECTION
    assert result.detection.detection_rate == pytest.approx(2 / 3)
    assert result.detection.false_share == pytest.approx(1 / 4)


def test_without_labels_there_is_no_detection(tmp_path: Path) -> None:
    result = write_incidents(write_predictions(tmp_path, with_labels=False))
    assert result.detection is None
    assert len(result.incidents) == 4


def test_a_day_without_flagged_rows_has_no_incidents(tmp_path: Path) -> None:
    path = tmp_path / "0124_firewall.predictions.parquet"
    quiet = predictions_frame(with_labels=True).assign(pred_label=NORMAL)
    quiet.to_parquet(path, schema=prediction_schema(ZYELL), index=False)
    result = write_incidents(path)
    assert result.incidents.empty and list(result.incidents.columns) == list(EXPECTED.columns)
    assert result.detection == IncidentDetection(
        episodes=3, detected=0, detected_same_class=0, incidents=0, false_incidents=0
    )


def test_cli_prints_the_top_incidents_of_each_file(tmp_path: Path) -> None:
    write_predictions(tmp_path, with_labels=True)
    result = CliRunner().invoke(app, ["incidents", str(tmp_path), "--top", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("0123_firewall.predictions.parquet: 4 incidents")
    assert lines[1].split() == [
        "src",
        "class",
        "start",
        "end",
        "rows",
        "destinations",
        "ports",
        "max_probability",
        "mean_probability",
    ]
    assert lines[2].split()[:5] == [A, "Probing-IP", "sweep", "10:00:00", "10:01:30"]
    assert len([line for line in lines if line.startswith(("10.", "172."))]) == 2
    assert "episodes 3: detected 2 (66.7%)" in result.output
    assert (tmp_path / "0123_firewall.incidents.parquet").is_file()


def test_a_folder_without_predictions_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(IncidentError, match=r"no \*\.predictions\.parquet"):
        folder_incidents(tmp_path)
    (tmp_path / "x.predictions.parquet").write_text("not parquet")
    [failure] = folder_incidents(tmp_path)
    assert (
        isinstance(failure, FileFailure) and "x.predictions.parquet: not a predictions file" in failure.error
    )


def test_one_corrupt_predictions_file_fails_alone(tmp_path: Path) -> None:
    write_predictions(tmp_path, with_labels=True)
    (tmp_path / "0122_firewall.predictions.parquet").write_bytes(b"PAR1 broken")
    result = CliRunner().invoke(app, ["incidents", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert (
        "error: " in result.output
        and "0122_firewall.predictions.parquet: not a predictions file" in result.output
    )
    assert "0123_firewall.predictions.parquet: 4 incidents" in result.output
    assert (tmp_path / "0123_firewall.incidents.parquet").is_file()


def test_detection_figures_survive_the_summary_json() -> None:
    detection = IncidentDetection(
        episodes=7, detected=5, detected_same_class=4, incidents=9, false_incidents=2
    )
    assert IncidentDetection.from_dict(json.loads(json.dumps(detection.to_dict()))) == detection
