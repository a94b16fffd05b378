"""The champion gate: both models scored on the same rows, which neither trained or validated on.

The slow tests train real models (tiny nets, a few epochs) with the real train flow, Prefect and
MLflow: a champion on two of the tiny training days, a challenger on all three.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient

from schemas.firewall import CLASS_NAMES, NORMAL
from schemas.training import NetConfig, SplitConfig, TrainConfig
from tasks.metrics import confusion_of_codes, evaluate_confusion
from tasks.model.fusion import load_predictor
from tasks.registry.gate import (
    CHANGED,
    HELD_OUT,
    UNSEEN,
    champion_roles,
    changed_partitions,
    compared,
    count_rows,
    is_gate_row,
    partition_number,
    unscorable_reason,
)
from tasks.registry.mlflow_setup import CHAMPION, configure_mlflow
from tasks.registry.tracking import champion_gate, champion_manifest
from tasks.training.evaluate import predict_split_file
from tasks.training.split import ROW, Assignment, SplitResult, class_thresholds, row_keys
from tasks.training.summary import FIRST_VERSION, NOT_COMPARED, SAME_ROWS, GateRows

X = ["day=2020-12-03", "day=2020-12-10"]  # the champion's days
X_AND_Y = [*X, "day=2020-12-16"]  # the challenger's
GOOD = TrainConfig(
    hidden_units=(32, 16),
    learning_rate=3e-3,
    batch_size=64,
    binary=NetConfig(epochs=6),
    attack=NetConfig(epochs=12),
    baseline=NetConfig(epochs=1),
)
CRIPPLED = TrainConfig(
    hidden_units=(2,),
    learning_rate=1e-7,
    batch_size=512,
    binary=NetConfig(epochs=1),
    attack=NetConfig(epochs=1),
    baseline=NetConfig(epochs=1),
)
NORMAL_CODE = CLASS_NAMES.index(NORMAL)

# ---------------------------------------------------------------- the pure parts


def row_manifest(partitions: dict[str, str], frame: pd.DataFrame, seed: int = 42) -> dict:
    """The manifest of a row split of `frame`'s rows (as `split_store` writes it)."""
    keys = row_keys(seed, frame["partition"].to_numpy(), frame["line"].to_numpy())
    thresholds = class_thresholds(frame["label"].to_numpy(), keys, SplitConfig(seed=seed))
    assignment = Assignment(ROW, seed, thresholds=thresholds)
    return {"dataset": "zyell", "partitions": partitions, "assignment": assignment.to_json()}


def rows_of(partition: str, count: int) -> pd.DataFrame:
    """`count` rows of one partition, every class present: label, partition, line, group."""
    number = partition_number(partition)
    labels = np.arange(count) % len(CLASS_NAMES)
    lines = np.arange(2, count + 2)
    groups = (np.uint64(number) << np.uint64(32)) | lines.astype(np.uint64)
    return pd.DataFrame({"label": labels, "partition": np.uint32(number), "line": lines, "group": groups})


def test_gate_rows_are_the_champions_test_rows_and_rows_of_days_it_never_saw() -> None:
    held, changed, unseen = "day=2020-12-03", "day=2020-12-10", "day=2020-12-16"
    champion_rows = pd.concat([rows_of(held, 500), rows_of(changed, 500)], ignore_index=True)
    manifest = row_manifest({held: "a", changed: "b"}, champion_rows)
    assert changed_partitions(manifest["partitions"], {held: "a", changed: "B", unseen: "c"}) == (changed,)

    frame = pd.concat([champion_rows, rows_of(unseen, 300)], ignore_index=True)
    roles = champion_roles(manifest, frame, (changed,))
    assert (roles[frame["partition"] == partition_number(changed)] == CHANGED).all()
    assert (roles[frame["partition"] == partition_number(unseen)] == UNSEEN).all()
    on_held = roles[frame["partition"] == partition_number(held)]
    assert set(np.unique(on_held)) == {0, 1, 2}  # train, validation, test of the champion's split
    counts = count_rows(roles)
    assert counts == GateRows(
        test_rows=1300,
        rows=int((on_held == HELD_OUT).sum()) + 300,
        champion_trained_rows=int((on_held == 0).sum()),
        champion_validated_rows=int((on_held == 1).sum()),
        changed_rows=500,
    )
    assert is_gate_row(roles).sum() == counts.rows


def test_the_champion_stays_only_when_significantly_better_on_the_same_rows() -> None:
    rng = np.random.default_rng(3)
    truth = rng.choice(len(CLASS_NAMES), size=2000, p=[0.8, 0.08, 0.06, 0.03, 0.03])
    all_normal = np.full_like(truth, NORMAL_CODE)
    noisy = np.where(rng.random(len(truth)) < 0.9, truth, NORMAL_CODE)
    rows = GateRows(len(truth), len(truth), 0, 0, 0)

    kept = compared("2", "1", truth, noisy, all_normal, rows)
    assert (kept.decision, kept.rule, kept.champion_version) == ("kept", SAME_ROWS, "1")
    assert kept.bound > 0 and kept.champion.criterion > kept.challenger.criterion
    assert kept.challenger.far == 0 and kept.rows.rows == 2000

    better = compared("2", "1", truth, all_normal, noisy, rows)
    assert better.promoted and better.bound < 0

    same = compared("2", "1", truth, noisy, noisy, rows, changed=("day=2020-12-10",))
    assert same.promoted and same.bound == 0 and "day=2020-12-10" in same.reason
    assert same.tags()["gate.changed_partitions"] == "day=2020-12-10"
    assert {"gate.rows", "gate.bound", "gate.champion.fbeta", "gate.challenger.far"} <= set(same.metrics())


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"no manifest": True}, "no split manifest"),
        ({"champion dataset": "nsl-kdd"}, "nsl-kdd model"),
        ({"missing": ("cnt_src_60s",)}, "lack: cnt_src_60s"),
        ({"champion clock": 10, "challenger clock": 5}, "10-min clock blocks"),
        ({"champion clock": 10}, "carry row groups"),
        ({}, None),
        ({"champion clock": 10, "challenger clock": 10}, None),
    ],
)
def test_the_gate_says_why_the_champion_cannot_score_the_rows(change: dict, said: str | None) -> None:
    def assignment(minutes: int | None) -> dict:
        grouping = ROW if minutes is None else "clock"
        return {"grouping": grouping, "seed": 42, "minutes": minutes, "thresholds": {}, "groups": []}

    champion = {"dataset": "zyell", "partitions": {}, "assignment": assignment(change.get("champion clock"))}
    challenger = {
        "dataset": "zyell",
        "partitions": {},
        "assignment": assignment(change.get("challenger clock")),
    }
    features = ("duration", *change.get("missing", ()))
    reason = unscorable_reason(
        None if change.get("no manifest") else champion,
        challenger,
        change.get("champion dataset", "zyell"),
        features,
        {"duration", "label", "partition", "line", "group"},
    )
    assert reason is None if said is None else said in reason


def test_a_champion_that_cannot_be_loaded_is_not_compared_and_the_rule_promotes(
    tmp_path: Path, fresh_mlflow: str
) -> None:
    """A version without a nad model (or its manifest): the gate says so, compares no figures,
    and promotes the challenger by its rule."""
    import mlflow

    client = MlflowClient()
    name = "gate-test"
    client.create_registered_model(name)
    split = SplitResult(folder=str(tmp_path), key="k", dataset="zyell", partitions={}, counts={})
    (tmp_path / "split.json").write_text(json.dumps({"dataset": "zyell", "partitions": {}}))

    def register() -> tuple[str, str]:
        configure_mlflow()
        with mlflow.start_run() as run:
            pass
        version = client.create_model_version(name, str(tmp_path), run_id=run.info.run_id).version
        return run.info.run_id, version

    first = register()
    decision = champion_gate(*first, split, str(tmp_path), model_name=name)
    assert (decision.decision, decision.rule, decision.champion_version) == ("promoted", FIRST_VERSION, None)
    second = register()
    decision = champion_gate(*second, split, str(tmp_path), model_name=name)
    assert (decision.decision, decision.rule, decision.champion_version) == ("promoted", NOT_COMPARED, "1")
    assert "cannot be loaded" in decision.reason and "rule promotes" in decision.reason
    assert decision.champion is None and decision.challenger is None and decision.bound is None
    assert client.get_model_version_by_alias(name, CHAMPION).version == second[1]
    run = client.get_run(second[0])
    assert run.data.tags["gate.rule"] == NOT_COMPARED and "gate.champion.criterion" not in run.data.metrics
    gate_json = json.loads(
        Path(mlflow.artifacts.download_artifacts(run_id=second[0], artifact_path="gate.json")).read_text()
    )
    assert gate_json["rule"] == NOT_COMPARED and gate_json["champion"] is None


# ---------------------------------------------------------------- real splits of the tiny days


@pytest.mark.parametrize("group", ["row", "clock"])
def test_the_champions_manifest_tells_the_rows_it_held_out(
    group: str, tiny_store: Path, tmp_path: Path, dask_cluster_client
) -> None:
    """Two real splits of the same days under other seeds: the gate rows that the champion's
    manifest gives are exactly the challenger's test rows that are not in the champion's train
    or validation files, clock groups included."""
    from tasks.training.split import split_store

    def split(seed: int, test_fraction: float) -> SplitResult:
        config = SplitConfig(seed=seed, test_fraction=test_fraction, group=group, group_minutes=10)
        return split_store(tiny_store, None, config, tmp_path / "splits", dask_cluster_client)

    champion, challenger = split(7, 0.2), split(2, 0.3)  # clock: 4 of their test groups are shared
    manifest = json.loads((Path(champion.folder) / "split.json").read_text())
    ours = json.loads((Path(challenger.folder) / "split.json").read_text())
    assert unscorable_reason(manifest, ours, "zyell", ("duration",), {"duration"}) is None
    frame = pd.concat([pq.read_table(f).to_pandas() for f in challenger.files("test")], ignore_index=True)
    roles = champion_roles(manifest, frame, changed_partitions(manifest["partitions"], challenger.partitions))
    seen = row_ids(champion.files("train")) | row_ids(champion.files("validation"))
    chosen = frame[is_gate_row(roles)]
    assert set(pairs_of(chosen)) == row_ids(challenger.files("test")) - seen
    assert 0 < len(chosen) < len(frame) and count_rows(roles).changed_rows == 0


# ---------------------------------------------------------------- real models, real MLflow


def pairs(table) -> list[tuple[int, int]]:
    """(partition, line) of each row: a row's identity across splits."""
    return list(zip(table["partition"].to_pylist(), table["line"].to_pylist(), strict=True))


def pairs_of(frame: pd.DataFrame) -> list[tuple[int, int]]:
    return list(zip(frame["partition"].tolist(), frame["line"].tolist(), strict=True))


def row_ids(files: list[str]) -> set[tuple[int, int]]:
    return {pair for path in files for pair in pairs(pq.read_table(path, columns=["partition", "line"]))}


def criterion_on(fusion_dir: str, files: list[str], keep: set[tuple[int, int]]) -> float:
    """The criterion of a fused predictor on the rows of `files` that `keep` names."""
    predictor = load_predictor(Path(fusion_dir))
    truth, predicted = [], []
    for path in files:
        mask = np.array([pair in keep for pair in pairs(pq.read_table(path, columns=["partition", "line"]))])
        file_truth, file_predicted = predict_split_file(predictor, path)
        truth.append(file_truth[mask])
        predicted.append(file_predicted[mask])
    return evaluate_confusion(confusion_of_codes(np.concatenate(truth), np.concatenate(predicted))).criterion


@pytest.fixture(scope="module")
def gate_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One artifacts folder for the module: the splits and preprocessing of days X and X + Y are
    content-addressed, so the second pair of runs reuses them."""
    return tmp_path_factory.mktemp("gate-artifacts")


def gate_on_same_rows(
    champion_config: TrainConfig, challenger_config: TrainConfig, store: Path, out: Path, dask_address: str
):
    """Champion on days X, then challenger on X + Y, through the real train flow; both summaries."""
    from flows.train import train_flow

    champion = train_flow(store, X, champion_config, out, dask_address)
    assert champion.tracking.gate.rule == FIRST_VERSION and champion.tracking.gate.promoted
    challenger = train_flow(store, X_AND_Y, challenger_config, out, dask_address)
    return champion, challenger


def check_same_rows(champion, challenger) -> None:
    """The gate rows are the challenger's test rows less the champion's train and validation rows;
    neither model trained or validated on one; both figures are of those rows."""
    gate = challenger.tracking.gate
    test_files = challenger.split.files("test")
    seen_by_champion = row_ids(champion.split.files("train")) | row_ids(champion.split.files("validation"))
    seen_by_challenger = row_ids(challenger.split.files("train")) | row_ids(
        challenger.split.files("validation")
    )
    expected = row_ids(test_files) - seen_by_champion
    assert gate.rule == SAME_ROWS and gate.changed == ()
    assert gate.rows.rows == len(expected) > 0
    assert gate.rows.test_rows == len(row_ids(test_files))
    assert gate.rows.champion_trained_rows + gate.rows.champion_validated_rows == len(
        row_ids(test_files) & seen_by_champion
    )
    # the champion's split.json, as logged on its run, names the same rows
    manifest = champion_manifest(champion.tracking.run_id)
    frame = pd.concat(
        [pq.read_table(f, columns=["label", "partition", "line", "group"]).to_pandas() for f in test_files]
    )
    chosen = frame[is_gate_row(champion_roles(manifest, frame, ()))]
    gate_ids = set(pairs_of(chosen))
    assert len(gate_ids) == len(chosen)
    assert gate_ids == expected
    assert not gate_ids & seen_by_champion and not gate_ids & seen_by_challenger
    assert gate.champion.criterion == pytest.approx(
        criterion_on(champion.predictors["fusion"], test_files, expected)
    )
    assert gate.challenger.criterion == pytest.approx(
        criterion_on(challenger.predictors["fusion"], test_files, expected)
    )
    run = MlflowClient().get_run(challenger.tracking.run_id)
    assert run.data.metrics["gate.rows"] == len(expected)
    assert run.data.metrics["gate.champion.criterion"] == pytest.approx(gate.champion.criterion)
    assert run.data.metrics["gate.challenger.fbeta"] == pytest.approx(gate.challenger.fbeta)
    assert run.data.metrics["gate.bound"] == pytest.approx(gate.bound)
    assert (run.data.tags["gate.rule"], run.data.tags["gate.champion_version"]) == (SAME_ROWS, "1")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("champion_config", "challenger_config", "decision", "champion_after"),
    [(GOOD, CRIPPLED, "kept", "1"), (CRIPPLED, GOOD, "promoted", "2")],
    ids=[
        "a crippled challenger leaves the champion in place",
        "a good challenger replaces a crippled champion",
    ],
)
def test_the_gate_keeps_the_better_model_on_the_same_rows(
    champion_config: TrainConfig,
    challenger_config: TrainConfig,
    decision: str,
    champion_after: str,
    tiny_store: Path,
    gate_out: Path,
    dask_cluster_client,
    prefect_harness,
    fresh_mlflow: str,
) -> None:
    address = dask_cluster_client.scheduler.address
    champion, challenger = gate_on_same_rows(
        champion_config, challenger_config, tiny_store, gate_out, address
    )
    gate = challenger.tracking.gate
    assert gate.decision == decision and (gate.bound > 0) == (decision == "kept"), gate.describe()
    assert (gate.challenger.criterion > gate.champion.criterion) == (decision == "promoted")
    assert str(MlflowClient().get_model_version_by_alias("nad-fusion", CHAMPION).version) == champion_after
    assert MlflowClient().get_run(challenger.tracking.run_id).data.tags["gate.decision"] == decision
    check_same_rows(champion, challenger)
