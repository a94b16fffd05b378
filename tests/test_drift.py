"""Drift against the training period: the reference profile, PSI, the per-file reports of the
score-days flow, `nad drift`, and the demo verdict: the shifted day is flagged, the test days
are not."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from prefect.artifacts import Artifact
from typer.testing import CliRunner

from flows.cli import app
from flows.score import score_days
from schemas.generation import get_preset
from simulator.generate import write_shifted_day
from tasks.errors import ModelError
from tasks.model.drift import InputCounter, bin_counts, cut_points, psi, read_report
from tasks.model.preprocess import ARTIFACT_NAME, Preprocessing, fit_preprocessing, with_reference
from tasks.monitoring.drift_days import reference_of
from tests.conftest import TINY_SEED

REPO = Path(__file__).resolve().parents[1]
NAD = Path(sys.executable).parent / "nad"
TEST_DAYS = ("0123_firewall.csv", "0124_firewall.csv", "0125_firewall.csv", "0126_firewall.csv")
SHIFTED = "0127_firewall.csv"


def test_psi_is_zero_for_the_same_histogram_and_grows_with_the_shift() -> None:
    reference = [100, 200, 300, 400]
    assert psi(reference, [10, 20, 30, 40]) == pytest.approx(0.0)
    assert 0 < psi(reference, [130, 200, 300, 370]) < psi(reference, [400, 300, 200, 100])


def test_bins_are_right_closed_so_discrete_values_keep_their_own() -> None:
    sample = np.array([[0.0], [0.0], [0.0], [1.0], [1.0], [2.0], [2.0], [2.0], [2.0], [2.0]])
    cuts = cut_points(sample)
    assert cuts[0].tolist() == [0.0, 1.0, 2.0]
    (counts,) = bin_counts(np.array([[0.0], [1.0], [1.0], [2.0], [7.0]], dtype=np.float32), cuts)
    assert counts.tolist() == [1, 2, 1, 1]  # 7, above the training maximum, in the last bin


@pytest.fixture(scope="module")
def tiny_reference(tiny_split, dask_cluster_client, monkeypatch_module) -> Preprocessing:
    monkeypatch_module.setattr("tasks.model.drift.BATCH_ROWS", 300)  # many batches per file
    fitted = fit_preprocessing(tiny_split.files("train"), 50.0, dask_cluster_client)
    return with_reference(fitted, tiny_split.files("train"))


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_the_reference_counts_every_train_row_in_batches_as_one_pass_over_all(
    tiny_reference: Preprocessing, tiny_split
) -> None:
    profile = tiny_reference.reference
    train = pd.concat([pd.read_parquet(path) for path in tiny_split.files("train")], ignore_index=True)
    inputs = tiny_reference.unscaled(train[list(tiny_reference.features)].to_numpy(dtype=np.float32))
    oracle = bin_counts(inputs, [np.asarray(cut) for cut in profile.cuts])
    assert [list(row) for row in profile.counts] == [row.tolist() for row in oracle]
    assert profile.rows == len(train) == sum(tiny_split.counts["train"].values())
    assert list(profile.classes) == list(tiny_split.counts["train"].values())
    assert profile.inputs == tiny_reference.input_names


def test_the_reference_travels_in_the_json_artifact_and_old_artifacts_load_without_it(
    tiny_reference: Preprocessing, tmp_path: Path
) -> None:
    path = tiny_reference.save(tmp_path)
    assert Preprocessing.load(tmp_path) == tiny_reference
    old = json.loads(path.read_text())
    del old["reference"]
    path.write_text(json.dumps({**old, "version": 5}))
    loaded = Preprocessing.load(tmp_path)
    assert loaded.reference is None and loaded.means == tiny_reference.means
    with pytest.raises(ModelError, match="drift cannot be checked"):
        reference_of(loaded, "old-model")


def test_the_train_split_has_no_drift_against_itself(tiny_reference: Preprocessing, tiny_split) -> None:
    counter = InputCounter(tiny_reference.reference)
    for path in tiny_split.files("train"):
        frame = pd.read_parquet(path)
        counter.add(tiny_reference.unscaled(frame[list(tiny_reference.features)].to_numpy(dtype=np.float32)))
    assert all(
        psi(r, c) == pytest.approx(0.0) for r, c in zip(counter.profile.counts, counter.counts, strict=True)
    )


def error_of(*args: object) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [str(NAD), *map(str, args)], capture_output=True, text=True, timeout=300, cwd=REPO, env=env
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    return line


def test_nad_drift_with_nothing_to_check_fails_loudly(tmp_path: Path) -> None:
    assert "one of the two" in error_of("drift")
    assert error_of("drift", tmp_path, "--out", tmp_path / "o") == (
        f"error: {tmp_path}: no *.drift.json drift reports; nothing to check"
    )
    assert (
        error_of("drift", tmp_path / "nope.csv") == f"error: {tmp_path / 'nope.csv'}: no such file or folder"
    )


# ---------------------------------------------------------------- the demo, on the tiny days


@pytest.fixture(scope="module")
def scored_days(trained, tiny_dir: Path, tmp_path_factory, prefect_harness) -> Path:
    """The tiny test days and one shifted day, scored by the score-days flow with their truth."""
    data = tmp_path_factory.mktemp("drift-days")
    for name in TEST_DAYS:
        shutil.copy(tiny_dir / name, data / name)
    shutil.copytree(tiny_dir / "truth", data / "truth")
    write_shifted_day(get_preset("tiny"), TINY_SEED, data)
    out = data / "scores"
    files = [data / name for name in (*TEST_DAYS, SHIFTED)]
    outcomes = score_days(files, trained.predictors["fusion"], out, data / "truth")
    (out / "runs.json").write_text(json.dumps({Path(o.file).name: o.mlflow_run for o in outcomes}))
    return out


def test_the_shifted_day_is_flagged_and_none_of_the_test_days(scored_days: Path) -> None:
    reports = {
        name: read_report(scored_days / name.replace(".csv", ".drift.json")) for name in (*TEST_DAYS, SHIFTED)
    }
    assert [name for name, report in reports.items() if report.drifted] == [SHIFTED]
    shifted = reports[SHIFTED]
    assert shifted.flagged and set(shifted.flagged) <= set(shifted.psi) and shifted.top[0] in shifted.flagged
    assert sum(shifted.predicted_mix.values()) == pytest.approx(1.0)
    assert shifted.class_mix_psi > max(reports[name].class_mix_psi for name in TEST_DAYS)


def test_the_flow_shows_the_heatmap_in_mlflow_and_the_table_in_prefect(scored_days: Path) -> None:
    assert (scored_days / "drift-heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = json.loads(Artifact.get("drift").data)
    assert [(row["day"], row["drift"]) for row in table][-1] == (SHIFTED, "DRIFT")
    run = json.loads((scored_days / "runs.json").read_text())[SHIFTED]
    logged = {a.path for a in mlflow.MlflowClient().list_artifacts(run, "drift")}
    assert logged == {"drift/drift-heatmap.png", "drift/0127_firewall.drift.json"}


def test_nad_drift_reads_the_reports_and_checks_any_day_or_stored_day_alike(
    scored_days: Path, trained, tiny_store: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    folder = runner.invoke(app, ["drift", str(scored_days), "--out", str(tmp_path / "a")])
    assert folder.exit_code == 0, folder.output
    assert f"{SHIFTED}: DRIFT" in folder.output and (tmp_path / "a" / "drift-heatmap.png").is_file()
    model = trained.predictors["fusion"]
    day = runner.invoke(
        app, ["drift", str(scored_days.parent / SHIFTED), "--model", model, "--out", str(tmp_path)]
    )
    assert day.exit_code == 0, day.output
    assert (
        read_report(tmp_path / "0127_firewall.drift.json").psi
        == read_report(scored_days / "0127_firewall.drift.json").psi
    )
    stored = runner.invoke(
        app, ["drift", "--store", str(tiny_store), "--model", model, "--out", str(tmp_path / "s")]
    )
    assert stored.exit_code == 0, stored.output
    assert stored.output.count(": ok:") == 3 and "DRIFT" not in stored.output


def test_nad_drift_says_it_cannot_check_a_model_from_before_reference_profiles(
    trained, tiny_dir: Path, tmp_path: Path
) -> None:
    old = shutil.copytree(trained.predictors["fusion"], tmp_path / "old")
    data = json.loads((old / ARTIFACT_NAME).read_text())
    del data["reference"]
    (old / ARTIFACT_NAME).write_text(json.dumps({**data, "version": 5}))
    line = error_of("drift", tiny_dir / TEST_DAYS[0], "--model", old, "--out", tmp_path / "o")
    assert line.startswith(f"error: {old}: its preprocessing.json holds no reference profile")
