"""Split, preprocessing, the three nets, the fused model and the training flow, on tiny data."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler

from schemas.datasets import ZYELL
from schemas.firewall import CLASS_NAMES, COLUMNS, FEATURE_COLUMNS
from schemas.training import NetConfig, SplitConfig, TrainConfig
from tasks.ingest.files import ingest_files
from tasks.model.fusion import BaselineModel, FusionModel, load_keras, load_predictor
from tasks.model.preprocess import Preprocessing, encode_spec_features, fit_preprocessing
from tasks.training.split import (
    SplitError,
    assign_splits,
    class_thresholds,
    split_sizes,
    split_store,
)
from tasks.training.train import NETS, build_net, class_weights, train_net
from tests.helpers import TRAIN_FILES

QUICK = TrainConfig(
    binary=NetConfig(epochs=2),
    attack=NetConfig(epochs=2),
    baseline=NetConfig(epochs=2),
    batch_size=256,
    dropout=0.0,
)


@pytest.fixture(scope="module")
def tiny_prep(tiny_split, dask_cluster_client) -> Preprocessing:
    return fit_preprocessing(tiny_split.files("train"), 50.0, dask_cluster_client)


def read_split(split, name: str) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(f) for f in split.files(name)], ignore_index=True)


# ---------------------------------------------------------------- split


@pytest.mark.parametrize("count", [3, 7, 10, 99, 829, 2345, 8_920_477])
def test_split_sizes_are_within_one_row_of_their_share(count: int) -> None:
    train, validation, test = split_sizes(count, SplitConfig())
    assert train + validation + test == count
    assert (
        abs(test - 0.2 * count) <= 1
        and abs(validation - 0.16 * count) <= 1
        and abs(train - 0.64 * count) <= 1
    )


def test_assignment_is_exact_per_class_on_random_keys() -> None:
    rng = np.random.default_rng(0)
    labels = rng.choice(5, 10_000, p=[0.9, 0.02, 0.05, 0.01, 0.02]).astype(np.int8)
    keys = rng.integers(0, 2**63, 10_000).astype(np.uint64)
    splits = assign_splits(labels, keys, class_thresholds(labels, keys, SplitConfig()))
    for code in range(5):
        counts = np.bincount(splits[labels == code], minlength=3)
        assert tuple(counts) == split_sizes(int((labels == code).sum()), SplitConfig())


def test_a_class_too_small_for_three_splits_is_a_clear_error() -> None:
    labels = np.array([0] * 50 + [1, 2, 4] * 5 + [3, 3], dtype=np.int8)
    keys = np.arange(len(labels), dtype=np.uint64)
    with pytest.raises(SplitError, match=r"class 'Probing-Nmap' has 2 rows"):
        class_thresholds(labels, keys, SplitConfig())


def test_store_split_is_exact_complete_and_disjoint(tiny_split, tiny_days) -> None:
    totals = {
        name: sum(s.class_counts[name] for s in tiny_days if s.file in TRAIN_FILES) for name in CLASS_NAMES
    }
    for code, name in enumerate(CLASS_NAMES):
        expected = split_sizes(totals[name], SplitConfig())
        got = tuple(tiny_split.counts[s][name] for s in ("train", "validation", "test"))
        assert got == expected and min(got) >= 1, name
        for index, split in enumerate(("train", "validation", "test")):
            assert (read_split(tiny_split, split)["label"] == code).sum() == expected[index]
    ids = [
        set(zip(read_split(tiny_split, s)["partition"], read_split(tiny_split, s)["line"], strict=True))
        for s in ("train", "validation", "test")
    ]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert sum(map(len, ids)) == sum(totals.values())
    attack = read_split(tiny_split, "train_attack")
    assert (attack["label"] > 0).all() and len(attack) == sum(
        tiny_split.counts["train"].values()
    ) - tiny_split.counts["train"]["Normal"]


def test_split_is_stable_for_a_seed_and_reused(tiny_store, tiny_split, tmp_path, dask_cluster_client) -> None:
    again = split_store(tiny_store, None, SplitConfig(), tmp_path, dask_cluster_client)
    assert not again.reused and again.key == tiny_split.key
    pd.testing.assert_frame_equal(read_split(again, "test"), read_split(tiny_split, "test"))
    assert split_store(tiny_store, None, SplitConfig(), tmp_path, dask_cluster_client).reused
    other = split_store(tiny_store, None, SplitConfig(seed=7), tmp_path, dask_cluster_client)
    assert other.key != again.key
    assert set(read_split(other, "test")["line"]) != set(read_split(again, "test")["line"])


def test_unknown_or_unlabelled_days_are_refused(
    tiny_dir: Path, tiny_store, tiny_split, tmp_path, dask_cluster_client
) -> None:
    with pytest.raises(SplitError, match="not in the store"):
        split_store(tiny_store, ["day=2020-12-04"], SplitConfig(), tmp_path, dask_cluster_client)
    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    assert next(ingest_files([tiny_dir / "0124_firewall.csv"], store, dask_cluster_client)).report
    asked = [*tiny_split.partitions, "day=2021-01-24"]
    with pytest.raises(SplitError, match="day=2021-01-24 has no labels; it can be scored but not trained on"):
        split_store(store, asked, SplitConfig(), tmp_path / "splits", dask_cluster_client)
    by_default = split_store(store, None, SplitConfig(), tmp_path / "splits", dask_cluster_client)
    assert by_default.partitions == tiny_split.partitions and by_default.counts == tiny_split.counts


# ---------------------------------------------------------------- preprocessing


def test_scaler_matches_scikit_learn_on_several_partitions(tmp_path: Path, dask_cluster_client) -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        rng.lognormal(3, 2, (500, len(FEATURE_COLUMNS))).astype(np.float32), columns=list(FEATURE_COLUMNS)
    )
    frame["cnt_src"] = np.float32(1.0)  # a constant column
    files = []
    for index, lo in enumerate((0, 100, 130, 400)):
        files.append(str(tmp_path / f"part-{index}.parquet"))
        frame.iloc[lo : (0, 100, 130, 400, 500)[index + 1]].to_parquet(files[-1])
    fitted = fit_preprocessing(files, 50.0, dask_cluster_client)
    reference = StandardScaler().fit(frame.to_numpy(dtype=np.float64))
    np.testing.assert_allclose(fitted.means, reference.mean_, rtol=1e-9)
    np.testing.assert_allclose(fitted.stds, reference.scale_, rtol=1e-9)
    assert fitted.stds[FEATURE_COLUMNS.index("cnt_src")] == 1.0
    scaled = fitted.transform(frame.to_numpy())
    assert np.isfinite(scaled).all() and scaled.max() <= 50 and scaled.min() >= -50
    unclipped = reference.transform(frame.to_numpy(dtype=np.float64))
    inside = np.abs(unclipped) < 50
    np.testing.assert_allclose(scaled[inside], unclipped[inside], rtol=1e-4, atol=1e-4)
    assert (scaled[~inside] == 50 * np.sign(unclipped[~inside])).all()


def test_scaler_sees_only_the_train_split(tiny_split, tiny_prep: Preprocessing) -> None:
    train = read_split(tiny_split, "train")[list(FEATURE_COLUMNS)].to_numpy(dtype=np.float64)
    everything = pd.concat([read_split(tiny_split, s) for s in ("train", "validation", "test")])
    np.testing.assert_allclose(tiny_prep.means, StandardScaler().fit(train).mean_, rtol=1e-9)
    all_means = StandardScaler().fit(everything[list(FEATURE_COLUMNS)].to_numpy(dtype=np.float64)).mean_
    assert not np.allclose(tiny_prep.means, all_means)


def test_preprocessing_artifact_is_plain_json_and_round_trips(
    tiny_prep: Preprocessing, tmp_path: Path
) -> None:
    path = tiny_prep.save(tmp_path)
    assert path.read_text().lstrip().startswith("{")
    assert Preprocessing.load(tmp_path) == tiny_prep
    assert tiny_prep.features == FEATURE_COLUMNS and tiny_prep.categorical[0].vocabulary[0] == "others"
    assert tiny_prep.dataset == "zyell"


def test_artifacts_from_before_dataset_specs_still_load(tiny_prep: Preprocessing, tmp_path: Path) -> None:
    data = json.loads(tiny_prep.save(tmp_path).read_text())
    old = {k: v for k, v in data.items() if k not in ("dataset", "categorical")}
    old |= {"vocabulary": data["categorical"][0]["vocabulary"], "version": 1}
    (tmp_path / "preprocessing.json").write_text(json.dumps(old))
    assert Preprocessing.load(tmp_path) == tiny_prep


def test_unknown_apps_encode_as_others(tiny_dir: Path, tiny_days) -> None:
    frame = pd.read_csv(tiny_dir / TRAIN_FILES[0]).head(3)
    frame.loc[0, "app"] = "never-seen"
    encoded = encode_spec_features(frame, ZYELL)
    assert list(encoded.columns) == list(FEATURE_COLUMNS) and encoded.loc[0, "app"] == 0.0


# ---------------------------------------------------------------- nets


def test_class_weights_follow_the_formula() -> None:
    counts = [900, 60, 30, 10]
    weights = class_weights(counts)
    total = sum(counts)
    assert weights == {i: total / (c * 4) for i, c in enumerate(counts)}
    assert sum(w * c for w, c in zip(weights.values(), counts, strict=True)) == pytest.approx(total)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(NETS))
def test_each_net_builds_and_lowers_its_loss(name: str, tiny_split, tiny_prep, tmp_path: Path) -> None:
    model = build_net(NETS[name], QUICK, len(tiny_prep.features))
    assert model.input_shape == (None, 17) and model.output_shape == (None, NETS[name].outputs)
    trained = train_net(name, tiny_split, tiny_prep, QUICK, tmp_path)
    assert trained.epochs_run == 2 and Path(trained.path).exists()
    assert trained.history["loss"][1] < trained.history["loss"][0]
    assert trained.history["val_loss"][1] < trained.history["val_loss"][0] * 1.05


@pytest.mark.slow
def test_training_is_reproducible_for_a_seed(tiny_split, tiny_prep, tmp_path: Path) -> None:
    first = train_net("binary", tiny_split, tiny_prep, QUICK, tmp_path / "a")
    second = train_net("binary", tiny_split, tiny_prep, QUICK, tmp_path / "b")
    np.testing.assert_allclose(first.history["loss"], second.history["loss"], rtol=1e-4)


# ---------------------------------------------------------------- fused model


class CountingNet:
    """Wraps a Keras net and records how many rows each predict call receives."""

    def __init__(self, net) -> None:
        self.net, self.calls = net, []

    def predict(self, x, **kwargs):
        self.calls.append(len(x))
        return self.net.predict(x, **kwargs)

    def predict_on_batch(self, x):
        self.calls.append(len(x))
        return self.net.predict_on_batch(x)

    @property
    def output_shape(self):
        return self.net.output_shape


@pytest.fixture(scope="module")
def tiny_nets(tiny_split, tiny_prep, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("nets")
    return {
        name: load_keras(Path(train_net(name, tiny_split, tiny_prep, QUICK, folder).path)) for name in NETS
    }


@pytest.fixture(scope="module")
def raw_rows(tiny_dir: Path, tiny_days) -> pd.DataFrame:
    return pd.read_csv(tiny_dir / "0124_firewall.csv")


@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.55, 1.01])
def test_attack_net_sees_only_flagged_rows(threshold, tiny_prep, tiny_nets, raw_rows) -> None:
    attack = CountingNet(tiny_nets["attack"])
    model = FusionModel(tiny_prep, tiny_nets["binary"], attack, threshold)
    names, probability = model.predict_with_probability(raw_rows)
    flagged = int((probability >= threshold).sum())
    assert sum(attack.calls) == flagged == model.rows_to_attack_net
    assert ((names != "Normal") == (probability >= threshold)).all()
    assert set(names) <= set(CLASS_NAMES)


def test_predictors_round_trip_with_identical_predictions(
    tiny_prep, tiny_nets, raw_rows, tmp_path: Path
) -> None:
    fusion = FusionModel(tiny_prep, tiny_nets["binary"], tiny_nets["attack"], 0.5)
    baseline = BaselineModel(tiny_prep, tiny_nets["baseline"])
    for model in (fusion, baseline):
        loaded = load_predictor(model.save(tmp_path / model.kind))
        assert type(loaded) is type(model)
        expected, expected_p = model.predict_with_probability(raw_rows)
        got, got_p = loaded.predict_with_probability(raw_rows)
        assert (got == expected).all()
        np.testing.assert_array_equal(got_p, expected_p)


def test_predict_takes_raw_schema_rows(tiny_prep, tiny_nets, raw_rows) -> None:
    model = FusionModel(tiny_prep, tiny_nets["binary"], tiny_nets["attack"])
    assert list(raw_rows.columns) == list(COLUMNS[:-1])
    assert len(model.predict(raw_rows)) == len(raw_rows)


# ---------------------------------------------------------------- the flow


def test_train_flow_end_to_end(tiny_store: Path, tmp_path: Path, prefect_harness, raw_rows) -> None:
    from flows.train import train_flow

    summary = train_flow(tiny_store, None, QUICK, tmp_path)
    assert {net.name for net in summary.nets} == set(NETS)
    assert all(net.epochs_run == 2 for net in summary.nets)
    for kind in ("fusion", "baseline"):
        predictor = load_predictor(Path(summary.predictors[kind]))
        assert set(predictor.predict(raw_rows.head(50))) <= set(CLASS_NAMES)
    assert (Path(summary.run_dir) / "training.json").exists()
    again = train_flow(tiny_store, None, QUICK, tmp_path)
    assert again.split.folder == summary.split.folder and again.preprocessing == summary.preprocessing
    assert again.run_dir != summary.run_dir
