"""The fused model's known-attack envelope (tasks/model/envelope.py): a flagged row outside the
widened train range of the class the attack net gives it is Normal."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from schemas.datasets import NSL_KDD, ZYELL
from schemas.training import TrainConfig
from tasks.errors import ModelError
from tasks.model.envelope import ClassRanges, fit_class_ranges
from tasks.model.fusion import PREDICTOR_FILE, FusionModel, load_predictor
from tasks.model.preprocess import ARTIFACT_NAME, Preprocessing, fit_preprocessing, with_train_profiles
from tasks.scoring.blocks import BlockPrediction
from tasks.scoring.score import Tally, envelope_threshold
from tasks.training.train import NETS, build_net

# two inputs; class 1 spans [0, 1] x [0, 0] (the second input constant), classes 2-4 [-1, 1] x [-1, 1]
RANGES = ClassRanges(low=((0.0, 0.0), *[(-1.0, -1.0)] * 3), high=((1.0, 0.0), *[(1.0, 1.0)] * 3))


class FixedNet:
    """A net that gives every row the same outputs (enough for the fused model's decisions)."""

    def __init__(self, outputs: list[float]) -> None:
        self.outputs = np.asarray(outputs, dtype=np.float32)
        self.output_shape = (None, len(outputs))

    def predict_on_batch(self, features: np.ndarray) -> np.ndarray:
        return np.tile(self.outputs, (len(features), 1))


def two_input_prep(ranges: ClassRanges | None) -> Preprocessing:
    return Preprocessing("zyell", ("a", "b"), (0.0, 0.0), (1.0, 1.0), (), 50.0, "x", class_ranges=ranges)


def fused(margin: float | None, ranges: ClassRanges | None = RANGES, attack_class: int = 1) -> FusionModel:
    attack = FixedNet([1.0 if code == attack_class else 0.0 for code in range(1, 5)])
    return FusionModel(two_input_prep(ranges), FixedNet([0.9]), attack, 0.5, margin)


ROWS = np.array([[0.5, 0.0], [1.0, 0.0], [1.5, 0.0], [2.0, 0.0], [-1.5, 0.0], [0.5, 0.01]], dtype=np.float32)


@pytest.mark.parametrize(
    ("margin", "expected"),
    [
        (None, [1, 1, 1, 1, 1, 1]),  # off: every call kept
        (0.0, [1, 1, 0, 0, 0, 0]),  # the train range itself
        (1.0, [1, 1, 1, 1, 0, 0]),  # widened by one range each side: [-1, 2]; the constant input stays 0
        (2.0, [1, 1, 1, 1, 1, 0]),
    ],
)
def test_a_flagged_row_outside_its_class_range_is_normal(margin, expected) -> None:
    codes, probability = fused(margin).predict_codes(ROWS)
    assert codes.tolist() == expected
    np.testing.assert_allclose(probability, 0.9)


def test_each_row_is_held_to_the_range_of_its_own_class() -> None:
    assert fused(0.0, attack_class=3).predict_codes(ROWS)[0].tolist() == [3, 3, 0, 0, 0, 3]


def test_a_class_without_train_rows_and_a_model_without_ranges_keep_every_call() -> None:
    no_class_1 = ClassRanges(low=((), *RANGES.low[1:]), high=((), *RANGES.high[1:]))
    assert fused(0.0, no_class_1).predict_codes(ROWS)[0].tolist() == [1] * 6
    assert fused(0.0, None).predict_codes(ROWS)[0].tolist() == [1] * 6


def test_rows_the_binary_net_passes_stay_normal_whatever_the_envelope() -> None:
    model = FusionModel(two_input_prep(RANGES), FixedNet([0.1]), FixedNet([1, 0, 0, 0]), 0.5, 100.0)
    assert model.predict_codes(ROWS)[0].tolist() == [0] * 6


def test_class_ranges_round_trip_and_refuse_another_class_count() -> None:
    assert ClassRanges.from_dict(json.loads(json.dumps(RANGES.to_dict()))) == RANGES
    with pytest.raises(ValueError, match="for 2 classes, not 4"):
        ClassRanges.from_dict({"low": [[0.0], [0.0]], "high": [[1.0], [1.0]]})


@pytest.fixture(scope="module")
def profiled(tiny_split, dask_cluster_client) -> Preprocessing:
    fitted = fit_preprocessing(
        tiny_split.files("train"), 50.0, dask_cluster_client, ZYELL, log_transform=True
    )
    return with_train_profiles(fitted, tiny_split.files("train"))


def test_the_ranges_are_each_attack_class_s_scaled_train_rows(profiled: Preprocessing, tiny_split) -> None:
    train = pd.concat([pd.read_parquet(path) for path in tiny_split.files("train")], ignore_index=True)
    scaled = profiled.transform(train[list(profiled.features)].to_numpy(dtype=np.float32))
    for code in range(1, 5):
        rows = scaled[train["label"].to_numpy() == code]
        assert len(rows), f"the tiny split has no train rows of class {code}"
        np.testing.assert_array_equal(profiled.class_ranges.low[code - 1], rows.min(axis=0))
        np.testing.assert_array_equal(profiled.class_ranges.high[code - 1], rows.max(axis=0))
    again = fit_class_ranges(tiny_split.files("train"), profiled.features, profiled.transform)
    assert again == profiled.class_ranges


def test_the_ranges_and_the_margin_survive_saving(profiled: Preprocessing, tmp_path: Path) -> None:
    config = TrainConfig.from_preset("paper", {"hidden_units": [4]})
    nets = {name: build_net(spec, config, profiled.width) for name, spec in NETS.items()}
    model = FusionModel(profiled, nets["binary"], nets["attack"], 0.5, 2.5)
    loaded = load_predictor(model.save(tmp_path / "fusion"))
    assert loaded.envelope_margin == 2.5 and loaded.preprocessing.class_ranges == profiled.class_ranges


def test_a_preprocessing_artifact_from_before_class_ranges_loads_without_them(
    profiled: Preprocessing, tmp_path: Path
) -> None:
    profiled.save(tmp_path)
    data = json.loads((tmp_path / ARTIFACT_NAME).read_text())
    del data["class_ranges"]
    (tmp_path / ARTIFACT_NAME).write_text(json.dumps({**data, "version": 6}))
    assert Preprocessing.load(tmp_path) == replace(profiled, class_ranges=None)


def test_a_margin_without_class_ranges_is_named(profiled: Preprocessing, tmp_path: Path) -> None:
    config = TrainConfig.from_preset("paper", {"hidden_units": [4]})
    nets = {name: build_net(spec, config, profiled.width) for name, spec in NETS.items()}
    older = replace(profiled, class_ranges=None)
    folder = FusionModel(older, nets["binary"], nets["attack"], 0.5, 3.0).save(tmp_path / "fusion")
    with pytest.raises(
        ModelError, match=r"envelope_margin needs class ranges, which preprocessing\.json lacks"
    ):
        load_predictor(folder)


@pytest.mark.parametrize("margin", [-1, "wide", True, float("inf")])
def test_a_predictor_with_a_bad_margin_is_named(margin, profiled: Preprocessing, tmp_path: Path) -> None:
    config = TrainConfig.from_preset("paper", {"hidden_units": [4]})
    nets = {name: build_net(spec, config, profiled.width) for name, spec in NETS.items()}
    folder = FusionModel(profiled, nets["binary"], nets["attack"]).save(tmp_path / "fusion")
    spec = json.loads((folder / PREDICTOR_FILE).read_text())
    (folder / PREDICTOR_FILE).write_text(json.dumps({**spec, "envelope_margin": margin}))
    with pytest.raises(ModelError, match=f"{PREDICTOR_FILE}: envelope_margin .* is not a number >= 0"):
        load_predictor(folder)


def test_default_takes_the_dataset_s_margin_and_paper_has_none() -> None:
    default = TrainConfig.from_preset("default")
    assert default.for_dataset(NSL_KDD).envelope_margin == NSL_KDD.envelope_margin == 3.0
    assert default.for_dataset(ZYELL).envelope_margin == ZYELL.envelope_margin
    assert TrainConfig.from_preset("paper").for_dataset(NSL_KDD).envelope_margin is None
    assert (
        TrainConfig.from_preset("default", {"envelope_margin": 1}).for_dataset(NSL_KDD).envelope_margin == 1.0
    )


@pytest.mark.parametrize("margin", [-0.5, "wide", float("inf")])
def test_a_config_with_a_bad_margin_is_refused(margin) -> None:
    with pytest.raises(ValidationError, match="envelope_margin"):
        TrainConfig.from_preset("default", {"envelope_margin": margin})


def test_scoring_counts_the_flagged_rows_the_envelope_made_normal() -> None:
    out = pd.DataFrame({"attack_probability": np.array([0.9, 0.9, 0.1, 0.5], dtype=np.float32)})
    block = BlockPrediction(4, out, pd.DataFrame(), pd.DataFrame(), np.array([0, 2, 0, 0], dtype=np.int8))
    tally = Tally(None, envelope_threshold(fused(3.0)))
    tally.add(block, None)
    tally.add(block, None)
    assert tally.envelope_threshold == 0.5 and tally.outside_envelope == 4
    assert envelope_threshold(fused(None)) is None
