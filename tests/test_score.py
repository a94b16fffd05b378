"""`nad score`, the score-days flow and `nad evaluate` on tiny days: with and without labels, with
bad rows and bad files, and the forms of `--model`."""

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from prefect.artifacts import Artifact
from typer.testing import CliRunner

from flows.cli import app
from flows.score import ScoreFailed, score_days
from schemas.datasets import ZYELL
from schemas.firewall import CLASS_NAMES, COLUMNS
from tasks.errors import InputError, ModelError
from tasks.model.fusion import load_predictor
from tasks.registry.champion import predictor_folder, resolve_predictor
from tasks.registry.mlflow_setup import MODEL_NAME, configure_mlflow
from tasks.scoring.incidents import find_incidents, read_incidents
from tasks.scoring.predictions import evaluate_prediction_folder
from tasks.scoring.score import score_file
from tasks.scoring.voting import Vote, vote_by_source

REPO = Path(__file__).resolve().parents[1]

TEST_DAY = "0124_firewall.csv"


@pytest.fixture(scope="module")
def fusion(trained):
    return load_predictor(Path(trained.predictors["fusion"]))


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
    assert summary["metrics"] == report.metrics.to_dict()  # the summary JSON keeps the metrics' keys
    assert summary["metrics"]["criterion"] == pytest.approx(report.metrics.criterion)
    per_file, overall = evaluate_prediction_folder(tmp_path, tiny_dir / "truth", ZYELL)
    assert per_file["0124_firewall.predictions.parquet"].confusion == report.metrics.confusion
    assert overall.fbeta == pytest.approx(report.metrics.fbeta)
    flagged = predictions[predictions["pred_label"] != "Normal"]
    written = find_incidents(flagged)
    incidents = read_incidents(tmp_path / "0124_firewall.incidents.parquet")
    assert len(incidents) == summary["incidents"] == report.incidents == len(written) > 0
    assert incidents["rows"].sum() == len(flagged)
    assert summary["incident_detection"]["incidents"] == report.incidents
    assert summary["incident_detection"] == report.incident_detection.to_dict()  # with the rates
    assert 0 < summary["incident_detection"]["detected"] <= summary["incident_detection"]["episodes"]


@pytest.mark.parametrize("rule", ["majority", "probability"])
def test_voting_rewrites_the_predictions_and_the_counts_and_metrics_follow(
    fusion, tiny_dir: Path, tmp_path: Path, rule: str
) -> None:
    truth, vote = tiny_dir / "truth" / TEST_DAY, Vote(3600, rule)
    plain = score_file(tiny_dir / TEST_DAY, fusion, tmp_path / "plain", truth)
    voted = score_file(tiny_dir / TEST_DAY, fusion, tmp_path / "voted", truth, vote=vote)
    before, after = pd.read_parquet(plain.predictions), pd.read_parquet(voted.predictions)
    expected = vote_by_source(before.time, before.src, before.pred_label, before.attack_probability, vote)
    assert (after["pred_label"].to_numpy() == expected).all()
    pd.testing.assert_frame_equal(after.drop(columns="pred_label"), before.drop(columns="pred_label"))
    assert voted.rows_revoted == int((expected != before["pred_label"].to_numpy()).sum()) > 0
    assert voted.predicted == after["pred_label"].value_counts().reindex(CLASS_NAMES, fill_value=0).to_dict()
    per_file, _ = evaluate_prediction_folder(tmp_path / "voted", tiny_dir / "truth", ZYELL)
    assert per_file["0124_firewall.predictions.parquet"].confusion == voted.metrics.confusion
    assert voted.metrics.confusion != plain.metrics.confusion
    assert json.loads((tmp_path / "voted" / "0124_firewall.summary.json").read_text())["vote"] == {
        "window_seconds": 3600,
        "rule": rule,
    }


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
    assert report.metrics is not None and sum(map(sum, report.metrics.confusion)) == report.rows_kept


def test_model_uri_resolves_to_the_registered_champion(
    trained, trained_mlflow, fusion, tiny_dir: Path
) -> None:
    rows = pd.read_csv(tiny_dir / TEST_DAY).head(30)
    served = resolve_predictor(f"models:/{MODEL_NAME}/{trained.tracking.version}")
    assert (served.predict(rows) == fusion.predict(rows)).all()


def score_args(trained, tiny_dir: Path, out: Path, *more: str) -> list[str]:
    """`nad score` of the test day with the trained fusion and its truth."""
    model = trained.predictors["fusion"]
    return [
        "score",
        str(tiny_dir / TEST_DAY),
        "--out",
        str(out),
        "--model",
        model,
        "--truth",
        str(tiny_dir / "truth"),
        *more,
    ]


def test_cli_score_logs_an_evaluation_run_and_evaluate_agrees(
    trained, tiny_dir: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, score_args(trained, tiny_dir, tmp_path))
    assert result.exit_code == 0, result.output
    assert "criterion" in result.output and "MLflow run" in result.output
    run_id = result.output.split("MLflow run ")[1].split(")")[0]
    run = mlflow.get_run(run_id)
    assert run.data.tags["nad.kind"] == "evaluation" and "score.fusion.criterion" in run.data.metrics
    evaluated = CliRunner().invoke(app, ["evaluate", str(tmp_path), "--truth", str(tiny_dir / "truth")])
    assert evaluated.exit_code == 0 and "all files:" in evaluated.output and " cost " in evaluated.output
    criterion = f"criterion {run.data.metrics['score.fusion.criterion']:.4f}"
    assert criterion in evaluated.output


def test_cli_score_votes_when_told_and_evaluate_agrees_with_the_voted_file(
    trained, tiny_dir: Path, tmp_path: Path
) -> None:
    vote = ["--vote-window", "3600", "--vote-rule", "probability"]
    result = CliRunner().invoke(app, score_args(trained, tiny_dir, tmp_path, *vote))
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "0124_firewall.summary.json").read_text())
    assert summary["vote"] == {"window_seconds": 3600, "rule": "probability"}
    changed = f"voted by source in 3600 s windows (probability): {summary['rows_revoted']:,} flagged rows"
    assert changed in result.output
    evaluated = CliRunner().invoke(app, ["evaluate", str(tmp_path), "--truth", str(tiny_dir / "truth")])
    assert f"criterion {summary['metrics']['criterion']:.4f}" in evaluated.output


# ---------------------------------------------------------------- one scoring path: the score-days flow


def test_the_flow_logs_an_evaluation_run_for_each_file_with_labels(
    trained, tiny_dir: Path, tmp_path: Path, prefect_harness
) -> None:
    files = [tiny_dir / TEST_DAY, tiny_dir / "0125_firewall.csv"]
    truth = tmp_path / "truth"
    truth.mkdir()
    (truth / TEST_DAY).write_bytes((tiny_dir / "truth" / TEST_DAY).read_bytes())
    outcomes = score_days(files, trained.predictors["fusion"], tmp_path / "out", truth)
    assert [Path(o.file).name for o in outcomes] == [TEST_DAY, "0125_firewall.csv"]
    labelled, unlabelled = outcomes
    run = mlflow.get_run(labelled.mlflow_run)
    assert run.data.tags["nad.kind"] == "evaluation" and run.data.params["data.dataset"] == "zyell"
    assert run.data.metrics["score.fusion.criterion"] == pytest.approx(labelled.report.metrics.criterion)
    assert unlabelled.report.metrics is None and unlabelled.mlflow_run is None
    assert labelled.report.incidents > 0
    artifact = Artifact.get("incidents-0124-firewall")
    assert artifact is not None and artifact.type == "table"
    assert len(json.loads(artifact.data)) == min(labelled.report.incidents, 20)


def test_the_flow_refuses_a_model_of_another_dataset(
    trained, tiny_dir: Path, tmp_path: Path, prefect_harness
) -> None:
    with pytest.raises(ModelError, match="was trained on zyell, not nsl-kdd"):
        score_days([tiny_dir / TEST_DAY], trained.predictors["fusion"], tmp_path, dataset="nsl-kdd")


def test_the_flow_refuses_a_vote_window_past_a_day_before_scoring(
    trained, tiny_dir: Path, tmp_path: Path, prefect_harness
) -> None:
    with pytest.raises(InputError, match="voting: a voting window is 1 to 86,400 seconds"):
        score_days([tiny_dir / TEST_DAY], trained.predictors["fusion"], tmp_path / "out", vote_seconds=2**63)
    assert not (tmp_path / "out").exists()


def test_the_flow_defaults_to_the_champion_of_the_dataset(
    tiny_dir: Path, tmp_path: Path, prefect_harness, monkeypatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty-mlflow.db'}")
    with pytest.raises(ModelError, match=r"^models:/nad-fusion-nsl-kdd@champion: .*not found"):
        score_days([tiny_dir / TEST_DAY], out=tmp_path, dataset="nsl-kdd")
    monkeypatch.undo()
    configure_mlflow()  # back to the session's store


def test_a_bad_file_fails_the_flow_after_the_others_are_scored(
    trained, tiny_dir: Path, tmp_path: Path, prefect_harness
) -> None:
    empty = tmp_path / "0126_firewall.csv"
    empty.touch()
    with pytest.raises(
        ScoreFailed, match=r"^1 of 2 files could not be scored: .*0126_firewall.csv: the file is empty"
    ):
        score_days([empty, tiny_dir / TEST_DAY], trained.predictors["fusion"], tmp_path / "out")
    assert (tmp_path / "out" / "0124_firewall.summary.json").is_file()


def test_the_score_day_deployment_takes_the_dataset_and_defaults_to_its_champion() -> None:
    deployments = {d["name"]: d for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]}
    parameters = deployments["score-day"]["parameters"]
    assert parameters["dataset"] == "zyell" and parameters.get("model") is None


# ---------------------------------------------------------------- the forms of --model


def test_model_may_be_the_train_out_folder_a_run_folder_or_a_predictor_folder(trained) -> None:
    run = Path(trained.run_dir)
    fusion = (run / "fusion").resolve()
    for given in (run.parents[1], run, run / "fusion"):
        assert predictor_folder(str(given)).resolve() == fusion


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ("{tmp}/nosuch", "no such folder, and not a model URI"),
        ("{keras}", "a file, not a model"),
        ("{tmp}", "holds no model"),
        ("models:/no-such-model@champion", "Registered Model with name=no-such-model not found"),
        (f"models:/{MODEL_NAME}/999", f"Model Version (name={MODEL_NAME}, version=999) not found"),
    ],
    ids=["missing-path", "keras-file", "empty-folder", "unknown-name", "unknown-version"],
)
def test_a_model_that_is_not_one_is_refused_naming_it(
    trained, trained_mlflow: str, tmp_path: Path, model: str, words: str
) -> None:
    """In the trained model's own store, where `nad-fusion` exists but has no version 999."""
    keras = min(Path(trained.predictors["fusion"]).glob("*.keras"))
    model = model.format(tmp=tmp_path, keras=keras)
    with pytest.raises(ModelError) as refused:
        predictor_folder(model)
    assert str(refused.value).startswith(f"{model}: {words}")
