"""A fast probe of input encodings and net options on NSL-KDD's other period, outside the pipeline.

`make bench-nsl-kdd` runs the real flow (a minute or more per variant and seed); this probe trains
the two nets of the fusion with plain Keras on in-memory arrays in about 15 s a seed, so that
ideas a preset field cannot express (another input encoding, label smoothing, ...) can be ranked
on `KDDTest+_A` before one is built into `tasks/`. It mimics `default`: the repository's training
file, a stratified 64/16/20 row split, log1p on the heavy-tailed columns, categories as codes, a
standard scaler fitted on the train rows, clip 50, nets 256-128-64 with dropout 0.1, Adam 1e-3,
batch near rows/100, at least 1,500 steps, early stopping on validation loss (patience 8), full
class weights, threshold 0.5 (no threshold tuning, no baseline net). Its figures are therefore
close to, not equal to, the benchmark's.

    python benchmarks/nsl_kdd_probe.py ENCODING [OPTIONS_JSON] [SEEDS]
    python benchmarks/nsl_kdd_probe.py codes
    python benchmarks/nsl_kdd_probe.py quantile+one-hot-protocol-flag '{"label_smoothing": 0.1}' 42,43,44

ENCODING is `codes` or `+`-joined changes to it: `quantile` (each input through its train rows'
percentiles to [0, 1], then scaled: values past the train range stay at the edge),
`one-hot-protocol-flag`, `service-frequency` (the service as log1p of its train rows),
`no-service`, `train-range` (each input clipped to its train range), `piecewise-linear` (16
quantile bins per input), `clip5`. OPTIONS_JSON: `noise` (Gaussian input noise), `input_dropout`,
`l2`, `label_smoothing`, `units` (list), `binary_weights` (`full`, `sqrt`, `none`: the binary net
only), `stop_on_other_half` (the binary net stops early on half of KDDTest+_A, and `other half`
is the figure on the other half), `envelope_margin` (the known-attack envelope of
tasks/model/envelope.py, on the probe's inputs). Prints each seed's held-out and KDDTest+_A
criterion and FAR, then the medians.
"""

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from schemas import nsl_kdd  # noqa: E402
from schemas.datasets import NSL_KDD  # noqa: E402
from schemas.firewall import CLASS_NAMES  # noqa: E402
from tasks.metrics import confusion_matrix, evaluate_confusion  # noqa: E402
from tasks.model.envelope import ATTACK_CODES, ClassRanges  # noqa: E402
from tasks.model.preprocess import encode_spec_features  # noqa: E402
from tasks.model.quiet_start import import_keras  # noqa: E402

keras, _ = import_keras()

DATA = REPO / "tests" / "data" / "nsl-kdd"
FEATURES = list(nsl_kdd.FEATURE_COLUMNS)
HEAVY = [FEATURES.index(c) for c in nsl_kdd.HEAVY_TAILED_COLUMNS]
CATEGORY = {name: FEATURES.index(name) for name in nsl_kdd.CATEGORICAL}
CODES = {name: len(values) + 1 for name, values in nsl_kdd.CATEGORICAL.items()}  # + the unknown code
PERCENTILES = np.linspace(0, 1, 101)
NAMES = np.asarray(CLASS_NAMES, dtype=object)
ENCODINGS = {
    "quantile", "one-hot-protocol-flag", "service-frequency", "no-service", "train-range", "piecewise-linear",
    "clip5",
}  # fmt: skip


def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Encoded features and class codes of the in-scope rows of an NSL-KDD file."""
    frame = pd.read_csv(path, header=None, names=list(nsl_kdd.COLUMNS))
    frame = frame[frame.label.isin(nsl_kdd.LABEL_MAP)].reset_index(drop=True)
    labels = np.array([CLASS_NAMES.index(nsl_kdd.LABEL_MAP[label]) for label in frame.label])
    return encode_spec_features(frame, NSL_KDD).to_numpy().astype(np.float64), labels


class Encoding:
    """An input encoding fitted on train rows (see the module docstring for the names)."""

    def __init__(self, name: str) -> None:
        self.parts = set(name.split("+")) - {"codes"}
        if unknown := self.parts - ENCODINGS:
            known = ", ".join(sorted(ENCODINGS))
            raise SystemExit(f"error: unknown encoding {', '.join(sorted(unknown))}; known: codes, {known}")

    def fit(self, x: np.ndarray) -> "Encoding":
        service = x[:, CATEGORY["service"]].astype(int)
        self.service_rows = np.log1p(np.bincount(service, minlength=CODES["service"]))
        z = self.expanded(x)
        self.low, self.high = z.min(0), z.max(0)
        if "quantile" in self.parts:
            self.percentiles = np.quantile(z, PERCENTILES, axis=0)
            z = self.quantiles(z)
        if "piecewise-linear" in self.parts:
            self.edges = [np.unique(np.quantile(z[:, j], np.linspace(0, 1, 17))) for j in range(z.shape[1])]
            z = self.piecewise(z)
        self.means, self.stds = z.mean(0), np.where(z.std(0) == 0, 1, z.std(0))
        return self

    def expanded(self, x: np.ndarray) -> np.ndarray:
        """log1p, the service's encoding, one-hot columns: the inputs before any fitted mapping."""
        x = x.copy()
        x[:, HEAVY] = np.log1p(np.maximum(x[:, HEAVY], 0))
        if "service-frequency" in self.parts:
            x[:, CATEGORY["service"]] = self.service_rows[x[:, CATEGORY["service"]].astype(int)]
        one_hot = {"protocol_type", "flag"} if "one-hot-protocol-flag" in self.parts else set()
        columns = []
        for name, j in zip(FEATURES, range(x.shape[1]), strict=True):
            if name == "service" and "no-service" in self.parts:
                continue
            columns.append((x[:, [j]] == np.arange(CODES[name])) if name in one_hot else x[:, [j]])
        return np.hstack(columns).astype(np.float64)

    def quantiles(self, z: np.ndarray) -> np.ndarray:
        out = np.zeros_like(z)
        for j in range(z.shape[1]):
            points, first = np.unique(self.percentiles[:, j], return_index=True)
            if len(points) > 1:
                out[:, j] = np.interp(z[:, j], points, PERCENTILES[first])
        return out

    def piecewise(self, z: np.ndarray) -> np.ndarray:
        columns = []
        for j, edges in enumerate(self.edges):
            if len(edges) < 2:
                columns.append(np.zeros((len(z), 1)))
            else:
                columns.append(np.clip((z[:, [j]] - edges[:-1]) / (edges[1:] - edges[:-1]), 0, 1))
        return np.hstack(columns)

    def transform(self, x: np.ndarray) -> np.ndarray:
        z = self.expanded(x)
        if "train-range" in self.parts:
            z = np.clip(z, self.low, self.high)
        if "quantile" in self.parts:
            z = self.quantiles(z)
        if "piecewise-linear" in self.parts:
            z = self.piecewise(z)
        clip = 5.0 if "clip5" in self.parts else 50.0
        return np.clip((z - self.means) / self.stds, -clip, clip).astype(np.float32)


def class_weights(labels: np.ndarray, classes: int, kind: str) -> dict[int, float] | None:
    counts = np.bincount(labels, minlength=classes)
    full = {i: counts.sum() / (counts[i] * classes) for i in range(classes)}
    return {"full": full, "sqrt": {i: w**0.5 for i, w in full.items()}, "none": None}[kind]


def build(width: int, outputs: int, seed: int, options: dict) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((width,))
    x = keras.layers.Dropout(options["input_dropout"])(inputs) if options.get("input_dropout") else inputs
    x = keras.layers.GaussianNoise(options["noise"])(x) if options.get("noise") else x
    regulariser = keras.regularizers.l2(options["l2"]) if options.get("l2") else None
    for units in options.get("units", (256, 128, 64)):
        x = keras.layers.Dense(units, activation="relu", kernel_regularizer=regulariser)(x)
        x = keras.layers.Dropout(0.1)(x)
    outputs_layer = keras.layers.Dense(outputs, activation="sigmoid" if outputs == 1 else "softmax")(x)
    model = keras.Model(inputs, outputs_layer)
    smoothing = options.get("label_smoothing", 0.0)
    loss = (
        keras.losses.BinaryCrossentropy(label_smoothing=smoothing)
        if outputs == 1
        else keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)
    )
    model.compile(keras.optimizers.Adam(1e-3), loss=loss)
    return model


def fit(train: tuple, validation: tuple, outputs: int, seed: int, options: dict, weights: str) -> keras.Model:
    """One net on `default`'s schedule; labels one-hot for the multi-class net (label smoothing)."""
    (x, y), (xv, yv) = train, validation
    batch = int(min(max(2 ** round(np.log2(max(len(x) / 100, 1))), 32), 4096))
    steps = -(-len(x) // batch)
    floor = -(-1500 // steps)
    epochs = min(max(200 if outputs > 1 else 100, floor), max(4500 // steps, 1))
    weight = class_weights(y, max(outputs, 2), weights)
    sample_weight = None if weight is None else np.array([weight[label] for label in y])
    if outputs > 1:
        y, yv = keras.utils.to_categorical(y, outputs), keras.utils.to_categorical(yv, outputs)
    model = build(x.shape[1], outputs, seed, options)
    stop = keras.callbacks.EarlyStopping(
        "val_loss", patience=8, restore_best_weights=True, start_from_epoch=min(floor, epochs)
    )
    model.fit(x, y, sample_weight=sample_weight, batch_size=batch, epochs=epochs, validation_data=(xv, yv),
              callbacks=[stop], verbose=0)  # fmt: skip
    return model


def class_ranges(x: np.ndarray, labels: np.ndarray) -> ClassRanges:
    bounds = [(x[labels == code].min(0), x[labels == code].max(0)) for code in ATTACK_CODES]
    return ClassRanges(*(tuple(tuple(map(float, b[i])) for b in bounds) for i in (0, 1)))


def criterion_and_far(binary, attack, x: np.ndarray, y: np.ndarray, envelope: tuple | None = None) -> tuple:
    """The fused model's criterion and FAR at threshold 0.5; `envelope`: (ClassRanges, margin)."""
    flagged = binary.predict(x, batch_size=8192, verbose=0)[:, 0] >= 0.5
    attack_class = attack.predict(x, batch_size=8192, verbose=0).argmax(1) + 1
    if envelope is not None:
        attack_class = np.where(envelope[0].inside(x, attack_class, envelope[1]), attack_class, 0)
    evaluation = evaluate_confusion(confusion_matrix(NAMES[y], NAMES[np.where(flagged, attack_class, 0)]))
    return round(evaluation.criterion, 4), round(evaluation.far, 4)


def run(encoding_name: str, options: dict, seed: int, train: tuple, other: tuple) -> dict[str, tuple]:
    """Split, encode, train the binary and attack nets, and score the held-out and other rows."""
    (x_raw, labels), (other_raw, other_labels) = train, other
    rest, test = train_test_split(np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=seed)
    fit_rows, valid = train_test_split(rest, test_size=0.2, stratify=labels[rest], random_state=seed)
    encoding = Encoding(encoding_name).fit(x_raw[fit_rows])
    x, x_other = encoding.transform(x_raw), encoding.transform(other_raw)
    attack_flag = (labels > 0).astype(int)
    half, other_half = train_test_split(
        np.arange(len(other_labels)), test_size=0.5, stratify=other_labels, random_state=seed
    )
    stop_rows = (
        (x_other[half], (other_labels[half] > 0).astype(int))
        if options.get("stop_on_other_half")
        else (x[valid], attack_flag[valid])
    )
    binary_weights = options.get("binary_weights", "full")
    binary = fit((x[fit_rows], attack_flag[fit_rows]), stop_rows, 1, seed * 100 + 1, options, binary_weights)
    attacks, attacks_valid = fit_rows[labels[fit_rows] > 0], valid[labels[valid] > 0]
    attack = fit(
        (x[attacks], labels[attacks] - 1), (x[attacks_valid], labels[attacks_valid] - 1), 4, seed * 100 + 2,
        options, "full",
    )  # fmt: skip
    margin = options.get("envelope_margin")
    envelope = None if margin is None else (class_ranges(x[fit_rows], labels[fit_rows]), margin)
    return {
        "held-out": criterion_and_far(binary, attack, x[test], labels[test], envelope),
        "KDDTest+_A": criterion_and_far(binary, attack, x_other, other_labels, envelope),
        "other half": criterion_and_far(
            binary, attack, x_other[other_half], other_labels[other_half], envelope
        ),
    }


def main(argv: list[str]) -> None:
    encoding = argv[0] if argv else "codes"
    options = json.loads(argv[1]) if len(argv) > 1 else {}
    seeds = [int(s) for s in (argv[2] if len(argv) > 2 else "42,43,44").split(",")]
    train, other = load(DATA / "KDDTrain+_20Percent.txt.gz"), load(DATA / "KDDTest+_A.txt.gz")
    results = []
    for seed in seeds:
        started = time.perf_counter()
        results.append(run(encoding, options, seed, train, other))
        print(
            encoding,
            json.dumps(options),
            seed,
            results[-1],
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )
    medians = {
        where: tuple(float(np.median([r[where][i] for r in results])) for i in range(2))
        for where in results[0]
    }
    print("median (criterion, FAR):", encoding, json.dumps(options), medians)


if __name__ == "__main__":
    main(sys.argv[1:])
