"""NSL-KDD through the same pipeline: its spec-driven contract on real lines, then ingest, train and
score from the command line on a small sample of the repository's copy of the training file."""

import gzip
import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from flows.backfill import backfill_flow
from flows.cli import app
from schemas.datasets import NSL_KDD, ZYELL
from schemas.firewall import CLASS_NAMES
from tasks.ingest.files import ingest_file
from tasks.ingest.parse import read_rows, to_frame, validate_rows
from tasks.ingest.scan import IngestError
from tasks.ingest.store import OUT_OF_SCOPE_DIR, StoreError, part_dir, quarantine_dir, read_report
from tasks.model.fusion import load_predictor
from tests.conftest import mlflow_at, new_mlflow_store

KDD_TRAIN = Path(__file__).resolve().parent / "data" / "nsl-kdd" / "KDDTrain+_20Percent.txt.gz"
KDD_TRAIN_SHA256 = "1a1559ff163a1dfa7ad1fba6b00ac6a408cc16741588831b66f043b918881e53"
PER_CLASS = {
    "normal": 150,
    "smurf": 60,
    "ipsweep": 60,
    "portsweep": 60,
    "nmap": 60,
    "neptune": 30,
    "satan": 10,
}
OUT_OF_SCOPE = 40
QUICK = {
    "preset": "paper",
    "binary": {"epochs": 3},
    "attack": {"epochs": 6},
    "baseline": {"epochs": 3},
    "batch_size": 128,
    "one_hot": True,  # NSL-KDD's categories as indicators: the option's path (default leaves it off)
    "envelope_margin": "auto",  # the dataset's known-attack envelope, as `default` has it
}


def label_of(line: str) -> str:
    return line.split(",")[-2]


@pytest.fixture(scope="session")
def kdd_lines() -> list[str]:
    return gzip.decompress(KDD_TRAIN.read_bytes()).decode().splitlines()


@pytest.fixture(scope="session")
def sample(kdd_lines: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first PER_CLASS rows of each label, in file order: five classes and two out of scope."""
    taken: dict[str, int] = {}
    kept = []
    for line in kdd_lines:
        label = label_of(line)
        if taken.get(label, 0) < PER_CLASS.get(label, 0):
            taken[label] = taken.get(label, 0) + 1
            kept.append(line)
    assert taken == PER_CLASS
    path = tmp_path_factory.mktemp("nsl") / "sample.txt"
    path.write_text("\n".join(kept) + "\n")
    return path


def with_field(line: str, column: str, value: str) -> str:
    fields = line.split(",")
    fields[NSL_KDD.columns.index(column)] = value
    return ",".join(fields)


def first_of(lines: list[str], label: str) -> str:
    return next(line for line in lines if label_of(line) == label)


# ---------------------------------------------------------------- the contract, on real lines


def test_the_repository_ships_the_training_file_unchanged() -> None:
    assert hashlib.sha256(gzip.decompress(KDD_TRAIN.read_bytes())).hexdigest() == KDD_TRAIN_SHA256
    assert KDD_TRAIN_SHA256 in (KDD_TRAIN.parent / "README.md").read_text()


def test_the_spec_reads_the_file_columns() -> None:
    assert len(NSL_KDD.columns) == 43 and len(NSL_KDD.feature_columns) == 41
    assert "difficulty" not in NSL_KDD.feature_columns and "label" not in NSL_KDD.feature_columns
    assert set(NSL_KDD.label_map.values()) == set(CLASS_NAMES)
    assert NSL_KDD.categorical_names == ("protocol_type", "service", "flag")


def test_good_lines_pass_the_schema(kdd_lines: list[str]) -> None:
    body = ("\n".join(kdd_lines[:500]) + "\n").encode()
    table, skipped = read_rows(body, NSL_KDD, labelled=True)
    assert not skipped and table.num_rows == 500
    assert validate_rows(to_frame(table), NSL_KDD, labelled=True, partition="sample") == {}


BAD_VALUES = [
    ("protocol_type", "", "protocol_type: empty"),
    ("src_bytes", "-5", "src_bytes: negative"),
    ("serror_rate", "1.5", "serror_rate: outside 0.0..1.0"),
    ("land", "2", "land: not one of"),
    ("count", "600", "count: outside 0..511"),
    ("dst_bytes", "lots", "dst_bytes: missing or not a number"),
    ("label", "hacker", "label: not a known NSL-KDD label"),
    ("difficulty", "99", "difficulty: outside 0..21"),
]


def test_bad_lines_are_quarantined_with_line_column_and_reason(
    kdd_lines: list[str], tmp_path: Path, dask_cluster_client
) -> None:
    normal = first_of(kdd_lines, "normal")
    lines = [normal] + [with_field(normal, column, value) for column, value, _ in BAD_VALUES]
    lines += [normal + ",extra", normal]
    source = tmp_path / "dirty.txt"
    source.write_text("\n".join(lines) + "\n")
    report = ingest_file(source, tmp_path / "store", dask_cluster_client, NSL_KDD)
    assert report.rows_read == len(lines) == report.rows_kept + report.rows_quarantined
    assert report.rows_kept == 2 and report.rows_out_of_scope == 0
    quarantine = pd.read_parquet(quarantine_dir(tmp_path / "store", "file=dirty")).set_index("line")
    for offset, (column, _, words) in enumerate(BAD_VALUES, start=2):  # lines are 1-based: no header
        assert quarantine.loc[offset, "rule"].startswith(words), (column, quarantine.loc[offset, "rule"])
        assert quarantine.loc[offset, "columns"] == column
    assert quarantine.loc[len(lines) - 1, "rule"] == "field_count"
    assert quarantine.loc[len(lines) - 1, "reason"] == "44 fields, expected 43"


def test_out_of_scope_labels_are_set_aside_and_counted(
    kdd_lines: list[str], tmp_path: Path, dask_cluster_client
) -> None:
    lines = [first_of(kdd_lines, label) for label in ("normal", "neptune", "smurf", "satan", "neptune")]
    lines.append(with_field(first_of(kdd_lines, "back"), "src_bytes", "-1"))  # bad and out of scope
    source = tmp_path / "mixed.txt"
    source.write_text("\n".join(lines) + "\n")
    store = tmp_path / "store"
    report = ingest_file(source, store, dask_cluster_client, NSL_KDD)
    assert (report.rows_read, report.rows_kept, report.rows_quarantined, report.rows_out_of_scope) == (
        6,
        2,
        1,
        3,
    )
    assert report.out_of_scope == {"neptune": 2, "satan": 1}
    assert report.classes == {"Normal": 1, "DDOS-smurf": 1}
    assert "out of scope 3" in report.summary()
    set_aside = pd.read_parquet(store / OUT_OF_SCOPE_DIR / "file=mixed")
    assert sorted(set_aside["line"]) == [2, 4, 5] and set(set_aside["label"]) == {"neptune", "satan"}
    assert sorted(pd.read_parquet(part_dir(store, "file=mixed"))["label"]) == ["DDOS-smurf", "Normal"]
    assert read_report(store, "file=mixed").rows_out_of_scope == 3


def test_unlabelled_files_are_told_by_their_field_count(
    kdd_lines: list[str], tmp_path: Path, dask_cluster_client
) -> None:
    features_only = [",".join(line.split(",")[:41]) for line in kdd_lines[:20]]
    source = tmp_path / "fresh.txt"
    source.write_text("\n".join(features_only) + "\n")
    report = ingest_file(source, tmp_path / "store", dask_cluster_client, NSL_KDD)
    assert report.rows_kept == 20 and not report.classes
    stored = pd.read_parquet(part_dir(tmp_path / "store", "file=fresh"))
    assert stored["label"].isna().all() and stored["difficulty"].isna().all()
    mangled = [",".join(line.split(",")[:40]) for line in kdd_lines[:5]]
    source.write_text("\n".join(mangled) + "\n")
    with pytest.raises(IngestError, match=r"none of the first 5 lines has 43 fields .* line 1 has 40"):
        ingest_file(source, tmp_path / "store", dask_cluster_client, NSL_KDD)
    source.write_text("\n".join([mangled[0], *kdd_lines[:3]]) + "\n")  # a bad first line is one bad row
    # 2 rows kept against the 20 stored: a new version that keeps under half must be told to replace
    report = ingest_file(source, tmp_path / "store", dask_cluster_client, NSL_KDD, replace_anyway=True)
    counts = (report.rows_kept, report.rows_quarantined, report.rows_out_of_scope)
    assert counts == (2, 1, 1) and report.reasons == {"field_count": 1}  # line 2 is a teardrop


def test_a_store_holds_one_dataset(sample: Path, tmp_path: Path, dask_cluster_client) -> None:
    ingest_file(sample, tmp_path, dask_cluster_client, NSL_KDD)
    with pytest.raises(StoreError, match="holds dataset 'nsl-kdd', not 'zyell'"):
        ingest_file(sample, tmp_path, dask_cluster_client, ZYELL)


def test_backfill_takes_the_dataset(sample: Path, tmp_path: Path, prefect_harness) -> None:
    rows = backfill_flow(sample.parent, tmp_path / "store", dataset="nsl-kdd")
    assert [(row.partition, row.out_of_scope) for row in rows] == [("sample", OUT_OF_SCOPE)]
    assert rows[0].rows == sum(PER_CLASS.values()) == rows[0].kept + OUT_OF_SCOPE
    with pytest.raises(ValueError, match="carry no day"):
        backfill_flow(sample.parent, tmp_path / "store", since="0101", dataset="nsl-kdd")


# ---------------------------------------------------------------- the whole pipeline, by the CLI


def run_cli(*args: str) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def nsl_trained(sample: Path, tmp_path_factory, prefect_harness) -> dict:
    """`nad ingest --dataset nsl-kdd` then `nad train --dataset nsl-kdd`, as a user would, with an
    MLflow store of its own: its version is the only one, so it is the champion."""
    work = tmp_path_factory.mktemp("nsl-run")
    config = work / "quick.json"
    config.write_text(json.dumps(QUICK))
    with mlflow_at(new_mlflow_store(work)) as uri:
        ingested = run_cli("ingest", sample, "--store", work / "store", "--dataset", "nsl-kdd")
        trained = run_cli(
            "train",
            "--store",
            work / "store",
            "--dataset",
            "nsl-kdd",
            "--config",
            config,
            "--out",
            work / "out",
        )
    summary = json.loads(next((work / "out" / "runs").glob("*/training.json")).read_text())
    return {"work": work, "ingested": ingested, "trained": trained, "summary": summary, "mlflow": uri}


@pytest.fixture
def nsl_mlflow(nsl_trained: dict) -> Iterator[str]:
    """MLflow pointed at the store of `nsl_trained`, for one test."""
    with mlflow_at(nsl_trained["mlflow"]) as uri:
        yield uri


def test_train_on_nsl_kdd_logs_the_dataset_and_registers_its_own_model(nsl_trained: dict, nsl_mlflow) -> None:
    assert f"out of scope {OUT_OF_SCOPE}" in nsl_trained["ingested"]
    summary = nsl_trained["summary"]
    counts = summary["split"]["counts"]
    assert summary["split"]["dataset"] == "nsl-kdd" and summary["config"]["preset"] == "paper"
    assert {name: sum(counts[s][name] for s in counts) for name in CLASS_NAMES} == {
        "Normal": 150,
        "DDOS-smurf": 60,
        "Probing-IP sweep": 60,
        "Probing-Nmap": 60,
        "Probing-Port sweep": 60,
    }
    assert "model nad-fusion-nsl-kdd version" in nsl_trained["trained"]
    client = MlflowClient()
    version = client.get_model_version_by_alias("nad-fusion-nsl-kdd", "champion")
    assert str(version.version) == "1" and not client.search_model_versions("name = 'nad-fusion'")
    run = client.get_run(version.run_id)
    assert run.data.params["data.dataset"] == "nsl-kdd" and run.data.tags["nad.dataset"] == "nsl-kdd"
    assert "validation.fusion.criterion" in run.data.metrics
    model = mlflow.pyfunc.load_model("models:/nad-fusion-nsl-kdd@champion")
    assert [c.name for c in model.metadata.get_input_schema().inputs] == list(NSL_KDD.feature_columns)
    prep = json.loads((Path(summary["preprocessing"]) / "preprocessing.json").read_text())
    assert prep["dataset"] == "nsl-kdd" and prep["features"] == list(NSL_KDD.feature_columns)
    ranges, width = prep["class_ranges"], len(prep["means"])
    assert [len(row) for row in ranges["low"] + ranges["high"]] == [width] * 8
    predictor = json.loads((Path(summary["predictors"]["fusion"]) / "predictor.json").read_text())
    assert (
        summary["config"]["envelope_margin"] == predictor["envelope_margin"] == NSL_KDD.envelope_margin == 3.0
    )


def test_score_nsl_kdd_files_with_and_without_labels(nsl_trained: dict, nsl_mlflow, sample: Path) -> None:
    work = nsl_trained["work"]
    out = run_cli("score", "--dataset", "nsl-kdd", sample, "--out", work / "scores")
    assert f"out of scope {OUT_OF_SCOPE}" in out and "criterion" in out
    summary = json.loads((work / "scores" / "sample.summary.json").read_text())
    assert summary["rows_read"] == summary["rows_kept"] + summary["rows_out_of_scope"]
    assert sum(map(sum, summary["metrics"]["confusion"])) == summary["rows_kept"] == 390
    set_aside = pd.read_parquet(work / "scores" / "sample.out_of_scope.parquet")
    assert set(set_aside["label"]) == {"neptune", "satan"}

    unlabelled = work / "fresh.txt"
    unlabelled.write_text(
        "".join(",".join(line.split(",")[:41]) + "\n" for line in sample.read_text().splitlines())
    )
    run_cli("score", "--dataset", "nsl-kdd", unlabelled, "--out", work / "scores")
    fresh = json.loads((work / "scores" / "fresh.summary.json").read_text())
    assert fresh["metrics"] is None and fresh["rows_kept"] == sum(PER_CLASS.values())
    predictions = pd.read_parquet(work / "scores" / "fresh.predictions.parquet")
    assert set(predictions["pred_label"]) <= set(CLASS_NAMES) and predictions["label"].isna().all()
    threshold = json.loads(
        (Path(nsl_trained["summary"]["predictors"]["fusion"]) / "predictor.json").read_text()
    )
    flagged_normal = (predictions["attack_probability"] >= threshold["threshold"]) & (
        predictions["pred_label"] == "Normal"
    )
    assert fresh["rows_outside_envelope"] == int(flagged_normal.sum())


def test_score_refuses_a_model_of_another_dataset(nsl_trained: dict, nsl_mlflow, sample: Path) -> None:
    result = CliRunner().invoke(app, ["score", str(sample), "--model", "models:/nad-fusion-nsl-kdd@champion"])
    assert result.exit_code != 0 and "trained on nsl-kdd, not zyell" in str(result.exception)


def test_pipeline_flow_backfills_trains_and_scores_nsl_kdd(
    sample: Path, tmp_path: Path, prefect_harness, fresh_mlflow: str
) -> None:
    from flows.pipeline import pipeline_flow

    source, truth = tmp_path / "incoming", tmp_path / "truth"
    source.mkdir()
    truth.mkdir()
    shutil.copy(sample, source / "sample.txt")
    lines = sample.read_text().splitlines()
    (source / "fresh.txt").write_text("".join(",".join(line.split(",")[:41]) + "\n" for line in lines))
    shutil.copy(sample, truth / "fresh.txt")  # headerless truth files hold whole labelled rows
    config = tmp_path / "quick.json"
    config.write_text(json.dumps(QUICK))
    result = pipeline_flow(
        source, tmp_path / "store", None, tmp_path / "out", config, True, truth, dataset="nsl-kdd"
    )
    assert [row.partition for row in result.backfill] == ["fresh", "sample"]
    assert result.training.split.partitions.keys() == {"file=sample"}
    assert result.training.tracking.model_name == "nad-fusion-nsl-kdd"
    fused = load_predictor(Path(result.training.predictors["fusion"]))
    assert fused.preprocessing.one_hot == NSL_KDD.one_hot_columns and fused.preprocessing.width == 124
    [scored] = result.scores
    assert Path(scored.file).name == "fresh.txt" and scored.report.rows_read == len(lines)
    assert sum(map(sum, scored.report.metrics.confusion)) == len(lines) - OUT_OF_SCOPE
