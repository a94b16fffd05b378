"""`nad score` and `nad evaluate` on tiny days: with and without labels, with bad rows."""

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from schemas.datasets import ZYELL
from schemas.firewall import CLASS_NAMES, COLUMNS
from tasks.fusion import load_predictor
from tasks.score import evaluate_prediction_folder, resolve_predictor, score_file
from tasks.tracking import MODEL_NAME

TEST_DAY = "0124_firewall.csv"


@pytest.fixture(scope="module")
def fusion(trained: dict):
    return load_predictor(Path(trained["predictors"]["fusion"]))


def test_unlabelled_day_with_truth_gets_predictions_and_metrics(
    fusion, tiny_dir: Path, tmp_path: Path
) -> None:
    report = score_file(tiny_dir / TEST_DAY, fusion, tmp_path, tiny_dir / "truth" / TEST_DAY)
    predictions = pd.read_parquet(report.predictions)
    assert list(predictions.columns) == [*COLUMNS, "line", "pred_label", "attack_probability"]
    assert len(predictions) == report.rows_kept == report.rows_read and report.rows_quarantined == 0
    assert set(predictions["pred_label"]) <= set(CLASS_NAMES)
    assert predictions["attack_probability"].between(0, 1).all()
    truth = pd.read_csv(tiny_dir / "truth" / TEST_DAY)["label"]
    assert (predictions["label"].to_numpy() == truth.to_numpy()).all()
    assert (
        report.predicted
        == predictions["pred_label"].value_counts().reindex(CLASS_NAMES, fill_value=0).to_dict()
    )
    summary = json.loads((tmp_path / "0124_firewall.summary.json").read_text())
    assert summary["metrics"]["criterion"] == pytest.approx(report.metrics["criterion"])
    per_file, overall = evaluate_prediction_folder(tmp_path, tiny_dir / "truth", ZYELL)
    assert per_file["0124_firewall.predictions.parquet"]["confusion"] == report.metrics["confusion"]
    assert overall["fbeta"] == pytest.approx(report.metrics["fbeta"])


def test_unlabelled_day_without_truth_has_no_metrics(fusion, tiny_dir: Path, tmp_path: Path) -> None:
    report = score_file(tiny_dir / TEST_DAY, fusion, tmp_path)
    assert report.metrics is None and sum(report.predicted.values()) == report.rows_kept


def test_labelled_day_with_bad_rows_is_quarantined_and_scored(fusion, tiny_dir: Path, tmp_path: Path) -> None:
    lines = (tiny_dir / "1216_firewall.csv").read_bytes().split(b"\n")
    lines[3] = lines[3] + b",surplus"
    fields = lines[7].split(b",")
    fields[4] = b"99999"
    lines[7] = b",".join(fields)
    source = tmp_path / "in" / "1216_firewall.csv"
    source.parent.mkdir()
    source.write_bytes(b"\n".join(lines))
    report = score_file(source, fusion, tmp_path / "out")
    assert report.rows_quarantined == 2 and report.rows_read == report.rows_kept + 2
    quarantine = pd.read_parquet(tmp_path / "out" / "1216_firewall.quarantine.parquet")
    assert sorted(quarantine["line"]) == [4, 8] and set(quarantine["file"]) == {str(source)}
    assert report.metrics is not None and sum(map(sum, report.metrics["confusion"])) == report.rows_kept


def test_model_uri_resolves_to_the_registered_champion(trained: dict, fusion, tiny_dir: Path) -> None:
    rows = pd.read_csv(tiny_dir / TEST_DAY).head(30)
    served = resolve_predictor(f"models:/{MODEL_NAME}/{trained['tracking']['version']}")
    assert (served.predict(rows) == fusion.predict(rows)).all()


def test_cli_score_logs_an_evaluation_run_and_evaluate_agrees(
    trained: dict, tiny_dir: Path, tmp_path: Path
) -> None:
    model = trained["predictors"]["fusion"]
    args = [
        "score",
        str(tiny_dir / TEST_DAY),
        "--out",
        str(tmp_path),
        "--model",
        model,
        "--truth",
        str(tiny_dir / "truth"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "criterion" in result.output and "MLflow run" in result.output
    run_id = result.output.split("MLflow run ")[1].split(")")[0]
    run = mlflow.get_run(run_id)
    assert run.data.tags["nad.kind"] == "evaluation" and "score.fusion.criterion" in run.data.metrics
    evaluated = CliRunner().invoke(app, ["evaluate", str(tmp_path), "--truth", str(tiny_dir / "truth")])
    assert evaluated.exit_code == 0 and "all files:" in evaluated.output
    criterion = f"criterion {run.data.metrics['score.fusion.criterion']:.4f}"
    assert criterion in evaluated.output
