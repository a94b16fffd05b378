"""Predictors over raw rows: the fused binary -> attack model, and the 5-class baseline.

Both take the raw columns of their dataset (their preprocessing names it) and return class
names, so evaluation and scoring treat them alike. Both save to a folder of native `.keras`
files plus JSON, and load with Keras' `safe_mode` on; nothing is unpickled.
"""

import json
import logging
import math
import weakref
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from scipy.special import expit, softmax

from schemas.firewall import CLASS_NAMES
from schemas.training import TrainConfig
from tasks.errors import QUOTE_LIMIT, ModelError, clip, message_of, quote
from tasks.model.preprocess import ARTIFACT_NAME, Preprocessing
from tasks.model.quiet_start import import_keras

PREDICTOR_FILE = "predictor.json"
PREDICT_BATCH = 65_536


def run_net(model, features: np.ndarray) -> np.ndarray:
    """A net's outputs. A chain of Dense (and Dropout) layers runs as NumPy (`run_dense`): the same
    numbers for 4 rows or 4 million, without Keras' set-up cost per call (about 1 ms for `predict_on_batch`,
    100 ms for `predict`), so scoring, evaluation and serving share one numeric path."""
    if len(features) == 0:
        return np.zeros((0, model.output_shape[-1]), dtype=np.float32)
    layers = dense_layers(model)
    if layers is not None:
        return run_dense(layers, features)
    if len(features) <= PREDICT_BATCH:
        return np.asarray(model.predict_on_batch(features))
    return np.asarray(model.predict(features, batch_size=PREDICT_BATCH, verbose=0))


ACTIVATIONS = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0, out=x),
    "sigmoid": lambda x: expit(x, out=x),
    "softmax": lambda x: softmax(x, axis=-1),
}
_DENSE_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def dense_layers(model) -> tuple | None:
    """(weights, bias, activation) of each Dense layer of a Keras net that is only a chain of
    Dense and Dropout layers (ours: tasks/training/train.py `build_net`); None for anything else."""
    if model not in _DENSE_CACHE:
        _DENSE_CACHE[model] = read_dense_layers(model)
    return _DENSE_CACHE[model]


def read_dense_layers(model) -> tuple | None:
    keras, _ = import_keras()

    if not isinstance(model, keras.Model):
        return None
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer | keras.layers.Dropout):
            continue
        config = layer.get_config() if isinstance(layer, keras.layers.Dense) else {}
        if config.get("activation") not in ACTIVATIONS:
            return None
        weights = [np.asarray(w, dtype=np.float64) for w in layer.get_weights()]
        bias = weights[1] if config.get("use_bias", True) else np.zeros(weights[0].shape[1], np.float64)
        found.append((weights[0], bias, ACTIVATIONS[config["activation"]]))
    return tuple(found) if same_as_keras(model, tuple(found)) else None


def same_as_keras(model, layers: tuple) -> bool:
    """Whether the layers, run in order, give Keras' outputs: the net is a plain chain."""
    if not layers or layers[0][0].shape[0] != model.input_shape[-1]:
        return False
    probe = np.random.default_rng(0).normal(size=(8, model.input_shape[-1])).astype(np.float32)
    return np.allclose(run_dense(layers, probe), np.asarray(model(probe, training=False)), atol=1e-5)


def run_dense(layers: tuple, features: np.ndarray) -> np.ndarray:
    """In float64, rounded to float32 at the end: BLAS sums in another order for another number
    of rows or threads, which moves float32 results in the 7th digit; in float64 the difference
    stays below float32's rounding, so a row scores the same in any block, worker or request."""
    x = np.asarray(features, dtype=np.float64)
    for weights, bias, activation in layers:
        x = activation(x @ weights + bias)
    return x.astype(np.float32)


def run_members(members: list, features: np.ndarray) -> np.ndarray:
    """The ensemble's averaged outputs (a single net is an ensemble of one)."""
    outputs = [run_net(model, features) for model in members]
    return outputs[0] if len(outputs) == 1 else np.mean(outputs, axis=0, dtype=np.float32)


def as_members(nets) -> list:
    return list(nets) if isinstance(nets, list | tuple) else [nets]


def member_files(spec: dict, name: str) -> list[str]:
    """The files of a net's members; predictors saved before ensembles have one `<name>.keras`."""
    return spec.get("nets", {}).get(name, [f"{name}.keras"])


def save_members(folder: Path, name: str, members: list) -> list[str]:
    files = [f"{name}-{index}.keras" for index in range(len(members))]
    for model, file in zip(members, files, strict=True):
        model.save(folder / file)
    return files


def load_members(folder: Path, spec: dict, name: str) -> list:
    return [load_model_file(folder / file) for file in member_files(spec, name)]


def load_model_file(path: Path):
    """A net of a saved predictor, or a ModelError naming its file and why it cannot be used."""
    if not path.is_file():
        raise ModelError(f"{path}: missing" if not path.exists() else f"{path}: not a file")
    if not zipfile.is_zipfile(path):
        raise ModelError(f"{path}: cannot be loaded: not a .keras (zip) file")
    try:
        return load_keras(path)
    except Exception as error:  # Keras raises what its format's readers raise
        raise ModelError(f"{path}: cannot be loaded: {reason_of(error)}") from error


def load_keras(path: Path):
    keras, _ = import_keras()

    # TensorFlow's retracing notes when files are scored side by side are noise to a user
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    return keras.models.load_model(path, compile=False, safe_mode=True)


class Predictor:
    """Raw rows in, class names (and the attack probability) out."""

    kind = ""
    preprocessing: Preprocessing

    def predict_codes(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def predict_with_probability(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        codes, probability = self.predict_codes(self.preprocessing.transform_raw(frame))
        return np.asarray(CLASS_NAMES, dtype=object)[codes], probability

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Class names for raw rows."""
        return self.predict_with_probability(frame)[0]


class FusionModel(Predictor):
    """The paper's fusion: the attack net classifies only the rows the binary net flags.

    Each net may be an ensemble of members trained with different seeds; their probabilities
    are averaged before the threshold and the argmax. With `envelope_margin`, a flagged row whose
    inputs lie outside the widened train range of the class the attack net gives it is Normal
    (tasks/model/envelope.py); None keeps every call.
    """

    kind = "fusion"

    def __init__(
        self,
        preprocessing: Preprocessing,
        binary,
        attack,
        threshold: float = 0.5,
        envelope_margin: float | None = None,
    ) -> None:
        self.preprocessing, self.threshold, self.envelope_margin = preprocessing, threshold, envelope_margin
        self.binary, self.attack = as_members(binary), as_members(attack)
        self.rows_to_attack_net = 0  # rows the attack net has seen, for audits and tests

    @property
    def has_envelope(self) -> bool:
        """Whether flagged rows are held to their class's train range (a margin and the ranges)."""
        return self.envelope_margin is not None and self.preprocessing.class_ranges is not None

    def attack_probability(self, features: np.ndarray) -> np.ndarray:
        return run_members(self.binary, features)[:, 0]

    def attack_classes(self, features: np.ndarray) -> np.ndarray:
        """Class codes (1..4) the attack net gives each row; 0 (Normal) for a row outside its
        class's envelope."""
        self.rows_to_attack_net += len(features)
        codes = (run_members(self.attack, features).argmax(axis=1) + 1).astype(np.int8)
        if not self.has_envelope:
            return codes
        inside = self.preprocessing.class_ranges.inside(features, codes, self.envelope_margin)
        return np.where(inside, codes, 0).astype(np.int8)

    def predict_codes(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class codes and attack probabilities for scaled features."""
        probability = self.attack_probability(features)
        codes = np.zeros(len(features), dtype=np.int8)
        flagged = np.flatnonzero(probability >= self.threshold)
        if len(flagged):
            codes[flagged] = self.attack_classes(features[flagged])
        return codes, probability

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        self.preprocessing.save(folder)
        nets = {"binary": save_members(folder, "binary", self.binary)}
        nets["attack"] = save_members(folder, "attack", self.attack)
        spec = {"kind": self.kind, "threshold": self.threshold, "classes": list(CLASS_NAMES), "nets": nets}
        spec["envelope_margin"] = self.envelope_margin
        (folder / PREDICTOR_FILE).write_text(json.dumps(spec, indent=2))
        return folder

    @classmethod
    def load(cls, folder: Path, spec: dict) -> "FusionModel":
        binary, attack = load_members(folder, spec, "binary"), load_members(folder, spec, "attack")
        preprocessing, margin = load_preprocessing(folder), spec.get("envelope_margin")
        if margin is not None and preprocessing.class_ranges is None:
            raise ModelError(
                f"{folder / PREDICTOR_FILE}: envelope_margin needs class ranges, which {ARTIFACT_NAME} lacks"
            )
        return cls(preprocessing, binary, attack, spec["threshold"], margin)


def set_threshold(folder: Path, threshold: float) -> None:
    """Write a new decision threshold into a saved fusion predictor."""
    path = Path(folder) / PREDICTOR_FILE
    spec = json.loads(path.read_text())
    path.write_text(json.dumps({**spec, "threshold": threshold}, indent=2))


class BaselineModel(Predictor):
    """The single 5-class net (or an ensemble of them), with the same interface."""

    kind = "baseline"

    def __init__(self, preprocessing: Preprocessing, net) -> None:
        self.preprocessing, self.net = preprocessing, as_members(net)

    def predict_codes(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probabilities = run_members(self.net, features)
        return probabilities.argmax(axis=1).astype(np.int8), 1.0 - probabilities[:, 0]

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        self.preprocessing.save(folder)
        nets = {"baseline": save_members(folder, "baseline", self.net)}
        spec = {"kind": self.kind, "classes": list(CLASS_NAMES), "nets": nets}
        (folder / PREDICTOR_FILE).write_text(json.dumps(spec, indent=2))
        return folder

    @classmethod
    def load(cls, folder: Path, spec: dict) -> "BaselineModel":
        return cls(load_preprocessing(folder), load_members(folder, spec, "baseline"))


def load_predictor(folder: Path) -> FusionModel | BaselineModel:
    """A saved fusion or baseline predictor, checked as it loads: `predictor.json` is valid, with
    a known kind and (fusion) a threshold in (0, 1), and every file it needs is there and loads
    (Keras with `safe_mode`). A failure is a ModelError naming the model file and why."""
    folder = Path(folder)
    spec = read_predictor_spec(folder / PREDICTOR_FILE)
    kinds = {FusionModel.kind: FusionModel, BaselineModel.kind: BaselineModel}
    return kinds[spec["kind"]].load(folder, spec)


def read_predictor_spec(path: Path) -> dict:
    """`predictor.json`, checked: JSON, a known kind, and a fusion's threshold in (0, 1)."""
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise ModelError(f"{path}: missing") from error
    except json.JSONDecodeError as error:
        raise ModelError(f"{path}: not valid JSON (line {error.lineno})") from error
    except (OSError, UnicodeDecodeError) as error:
        raise ModelError(f"{path}: cannot be read: {reason_of(error)}") from error
    if not isinstance(spec, dict) or spec.get("kind") not in (FusionModel.kind, BaselineModel.kind):
        kind = spec.get("kind") if isinstance(spec, dict) else None
        raise ModelError(f"{path}: unknown predictor kind {quote(kind)}")
    threshold, margin = spec.get("threshold"), spec.get("envelope_margin")
    if spec["kind"] == FusionModel.kind and not is_probability(threshold):
        raise ModelError(f"{path}: threshold {clip(json.dumps(threshold))} is outside (0, 1)")
    if margin is not None and not (is_number(margin) and margin >= 0):
        raise ModelError(f"{path}: envelope_margin {clip(json.dumps(margin))} is not a number >= 0 or null")
    return spec


def is_probability(value: object) -> bool:
    """A number strictly between 0 and 1 (not a bool, not NaN)."""
    return is_number(value) and 0 < value < 1


def is_number(value: object) -> bool:
    """An int or a finite float, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def load_preprocessing(folder: Path) -> Preprocessing:
    """The predictor's preprocessing, or a ModelError naming its file."""
    path = Path(folder) / ARTIFACT_NAME
    if not path.is_file():
        raise ModelError(f"{path}: missing")
    try:
        return Preprocessing.load(folder)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelError(f"{path}: cannot be loaded: {reason_of(error)}") from error


def reason_of(error: BaseException) -> str:
    """Why a model file failed, without its name again (an OSError's message names it)."""
    return error.strerror if isinstance(error, OSError) and error.strerror else message_of(error, QUOTE_LIMIT)


def assemble_predictors(
    net_paths: dict[str, list[str]], prep_dir: Path, config: TrainConfig, out_dir: Path
) -> dict[str, str]:
    """Build the fusion (with the config's threshold and envelope margin) and baseline predictors
    from the trained nets (each a list of ensemble members); return their folders."""
    prep = Preprocessing.load(prep_dir)
    nets = {name: [load_keras(Path(path)) for path in paths] for name, paths in net_paths.items()}
    fusion = FusionModel(prep, nets["binary"], nets["attack"], config.threshold, config.envelope_margin)
    baseline = BaselineModel(prep, nets["baseline"]).save(out_dir / "baseline")
    return {"fusion": str(fusion.save(out_dir / "fusion")), "baseline": str(baseline)}


@task(name="assemble-predictors")
def assemble_predictors_task(
    net_paths: dict[str, list[str]], prep_dir: Path, config: TrainConfig, out_dir: Path
) -> dict[str, str]:
    """Prefect task: save both predictors next to the nets."""
    return assemble_predictors(net_paths, prep_dir, config, out_dir)
