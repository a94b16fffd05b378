"""Predictors over raw rows: the fused binary -> attack model, and the 5-class baseline.

Both take the raw columns of their dataset (their preprocessing names it) and return class
names, so evaluation and scoring treat them alike. Both save to a folder of native `.keras`
files plus JSON, and load with Keras' `safe_mode` on; nothing is unpickled.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task

from schemas.firewall import CLASS_NAMES
from tasks.preprocess import Preprocessing

PREDICTOR_FILE = "predictor.json"
PREDICT_BATCH = 65_536


def run_net(model, features: np.ndarray) -> np.ndarray:
    if len(features) == 0:
        return np.zeros((0, model.output_shape[-1]), dtype=np.float32)
    return np.asarray(model.predict(features, batch_size=PREDICT_BATCH, verbose=0))


def load_keras(path: Path):
    import keras

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
    """The paper's fusion: the attack net classifies only the rows the binary net flags."""

    kind = "fusion"

    def __init__(self, preprocessing: Preprocessing, binary, attack, threshold: float = 0.5) -> None:
        self.preprocessing, self.binary, self.attack, self.threshold = (
            preprocessing,
            binary,
            attack,
            threshold,
        )
        self.rows_to_attack_net = 0  # rows the attack net has seen, for audits and tests

    def predict_codes(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class codes and attack probabilities for scaled features."""
        attack_probability = run_net(self.binary, features)[:, 0]
        codes = np.zeros(len(features), dtype=np.int8)
        flagged = np.flatnonzero(attack_probability >= self.threshold)
        self.rows_to_attack_net += len(flagged)
        if len(flagged):
            codes[flagged] = run_net(self.attack, features[flagged]).argmax(axis=1) + 1
        return codes, attack_probability

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        self.preprocessing.save(folder)
        self.binary.save(folder / "binary.keras")
        self.attack.save(folder / "attack.keras")
        spec = {"kind": self.kind, "threshold": self.threshold, "classes": list(CLASS_NAMES)}
        (folder / PREDICTOR_FILE).write_text(json.dumps(spec, indent=2))
        return folder

    @classmethod
    def load(cls, folder: Path, spec: dict) -> "FusionModel":
        return cls(
            Preprocessing.load(folder),
            load_keras(folder / "binary.keras"),
            load_keras(folder / "attack.keras"),
            spec["threshold"],
        )


class BaselineModel(Predictor):
    """The single 5-class net, with the same interface."""

    kind = "baseline"

    def __init__(self, preprocessing: Preprocessing, net) -> None:
        self.preprocessing, self.net = preprocessing, net

    def predict_codes(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probabilities = run_net(self.net, features)
        return probabilities.argmax(axis=1).astype(np.int8), 1.0 - probabilities[:, 0]

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        self.preprocessing.save(folder)
        self.net.save(folder / "baseline.keras")
        (folder / PREDICTOR_FILE).write_text(
            json.dumps({"kind": self.kind, "classes": list(CLASS_NAMES)}, indent=2)
        )
        return folder

    @classmethod
    def load(cls, folder: Path, spec: dict) -> "BaselineModel":
        return cls(Preprocessing.load(folder), load_keras(folder / "baseline.keras"))


def load_predictor(folder: Path) -> FusionModel | BaselineModel:
    """A saved fusion or baseline predictor."""
    folder = Path(folder)
    spec = json.loads((folder / PREDICTOR_FILE).read_text())
    kinds = {FusionModel.kind: FusionModel, BaselineModel.kind: BaselineModel}
    if spec.get("kind") not in kinds:
        raise ValueError(f"{folder}: unknown predictor kind {spec.get('kind')!r}")
    return kinds[spec["kind"]].load(folder, spec)


def assemble_predictors(
    net_paths: dict[str, str], prep_dir: Path, threshold: float, out_dir: Path
) -> dict[str, str]:
    """Build the fusion and baseline predictors from the trained nets; return their folders."""
    prep = Preprocessing.load(prep_dir)
    nets = {name: load_keras(Path(path)) for name, path in net_paths.items()}
    fusion = FusionModel(prep, nets["binary"], nets["attack"], threshold).save(out_dir / "fusion")
    baseline = BaselineModel(prep, nets["baseline"]).save(out_dir / "baseline")
    return {"fusion": str(fusion), "baseline": str(baseline)}


@task(name="assemble-predictors")
def assemble_predictors_task(
    net_paths: dict[str, str], prep_dir: Path, threshold: float, out_dir: Path
) -> dict[str, str]:
    """Prefect task: save both predictors next to the nets."""
    return assemble_predictors(net_paths, prep_dir, threshold, out_dir)
