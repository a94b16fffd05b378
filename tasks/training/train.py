"""The three nets of the paper: one dense builder, streamed training data, class weights.

- binary: Normal (0) or attack (1), sigmoid output, binary cross-entropy;
- attack: the four attack classes, trained on attack rows only, softmax, categorical
  cross-entropy (integer targets);
- baseline: all five classes, softmax, categorical cross-entropy.

Training data streams from the split's Parquet files, a few row groups at a time, in an order
shuffled anew every epoch; the whole training set is never in memory.
"""

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from prefect import task
from prefect.exceptions import MissingContextError

from schemas.firewall import ATTACK_NAMES, CLASS_NAMES
from schemas.training import BatchRange, TrainConfig
from tasks.metrics import class_scores, confusion_of_codes
from tasks.model.preprocess import Preprocessing
from tasks.model.quiet_start import import_keras
from tasks.progress import Progress
from tasks.training.split import SplitResult
from tasks.training.summary import TrainedNet

keras, tf = import_keras()

ROW_GROUPS_PER_SHUFFLE = 4


@dataclass(frozen=True)
class NetSpec:
    """What distinguishes one of the three nets."""

    name: str
    classes: tuple[str, ...]  # class names of the outputs (binary: Normal, attack)
    train_split: str
    validation_split: str
    seed_offset: int

    @property
    def outputs(self) -> int:
        return 1 if len(self.classes) == 2 else len(self.classes)

    def targets(self, labels: np.ndarray) -> np.ndarray:
        """The net's targets for label codes (CLASS_NAMES indices)."""
        if self.name == "binary":
            return (labels != 0).astype(np.float32)
        if self.name == "attack":
            return (labels - 1).astype(np.int32)
        return labels.astype(np.int32)

    def class_counts(self, split_counts: dict[str, int]) -> list[int]:
        """Rows per output class in one split, from its per-class counts."""
        if self.name == "binary":
            normal = split_counts["Normal"]
            return [normal, sum(split_counts.values()) - normal]
        return [split_counts[name] for name in self.classes]


NETS: dict[str, NetSpec] = {
    "binary": NetSpec("binary", ("Normal", "attack"), "train", "validation", 1),
    "attack": NetSpec("attack", ATTACK_NAMES, "train_attack", "validation_attack", 2),
    "baseline": NetSpec("baseline", CLASS_NAMES, "train", "validation", 3),
}


def class_weights(counts: list[int], kind: str = "full") -> dict[int, float]:
    """`full`, the paper's weights: w_i = total / (count_i x n_classes); `sqrt`: their square root,
    which still favours rare classes but lets Normal's sheer size keep false alarms down."""
    total = sum(counts)
    full = {i: total / (count * len(counts)) for i, count in enumerate(counts)}
    return full if kind == "full" else {i: weight**0.5 for i, weight in full.items()}


@dataclass(frozen=True)
class Schedule:
    """How one net trains on its rows: batch size, the most epochs, and the first epoch at which
    early stopping may stop it (so that the floor on gradient steps holds)."""

    batch_size: int
    epochs: int
    steps_per_epoch: int
    first_stop_epoch: int


def auto_batch_size(rows: int, batch_range: BatchRange) -> int:
    """The power of two nearest to rows / steps_per_epoch, within the range."""
    wanted = max(rows / batch_range.steps_per_epoch, 1.0)
    return int(min(max(2 ** round(math.log2(wanted)), batch_range.smallest), batch_range.largest))


def plan_schedule(rows: int, config: TrainConfig, max_epochs: int) -> Schedule:
    """Epochs between the floor (`min_steps`) and the ceiling (`max_steps`) on gradient steps."""
    batch = auto_batch_size(rows, config.batch_range) if config.batch_size == "auto" else config.batch_size
    steps = max(-(-rows // batch), 1)
    floor_epochs = -(-config.min_steps // steps)
    epochs = max(max_epochs, floor_epochs)
    if config.max_steps is not None:
        epochs = min(epochs, max(config.max_steps // steps, 1))
    return Schedule(batch, epochs, steps, min(floor_epochs, epochs))


def schedule_note(name: str, asked: int, schedule: Schedule, config: TrainConfig) -> str | None:
    """One line when the floor or the ceiling on gradient steps changed the epochs asked for."""
    if schedule.epochs == asked:
        return None
    raised = schedule.epochs > asked
    bound = f"floor of {config.min_steps:,}" if raised else f"ceiling of {config.max_steps:,}"
    return (
        f"{name}: {schedule.epochs} epochs instead of the {asked} asked for: the preset's {bound} gradient "
        f"steps ({schedule.steps_per_epoch:,} steps an epoch at batch {schedule.batch_size})"
    )


def net_seed(spec: NetSpec, config: TrainConfig, member: int) -> int:
    """Member 0 keeps the seeds of a single net; each ensemble member gets its own."""
    return config.seed * 100 + spec.seed_offset + 1000 * member


def build_net(spec: NetSpec, config: TrainConfig, features: int, member: int = 0) -> keras.Model:
    """The dense net shared by all three: features -> hidden layers (ReLU, dropout) -> outputs."""
    seed = net_seed(spec, config, member)
    inputs = keras.Input(shape=(features,), name="features")
    x = inputs
    for index, units in enumerate(config.hidden_units):
        x = keras.layers.Dense(
            units, activation="relu", kernel_initializer=keras.initializers.GlorotUniform(seed=seed + index)
        )(x)
        if config.dropout:
            x = keras.layers.Dropout(config.dropout, seed=seed + 50 + index)(x)
    binary = spec.outputs == 1
    init = keras.initializers.GlorotUniform(seed=seed + 99)
    outputs = keras.layers.Dense(
        spec.outputs, activation="sigmoid" if binary else "softmax", kernel_initializer=init
    )(x)
    model = keras.Model(inputs, outputs, name=f"{spec.name}_{member}" if member else spec.name)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss="binary_crossentropy" if binary else "sparse_categorical_crossentropy",
    )
    return model


def iterate_batches(
    files: list[str], spec: NetSpec, prep: Preprocessing, batch_size: int, rng: np.random.Generator | None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Scaled (features, targets) batches from Parquet row groups.

    With `rng`, files and row groups come in a random order and rows are shuffled within
    windows of ROW_GROUPS_PER_SHUFFLE row groups; without it, in stored order.
    """
    groups = [(path, g) for path in files for g in range(pq.ParquetFile(path).num_row_groups)]
    if rng is not None:
        groups = [groups[i] for i in rng.permutation(len(groups))]
    columns = [*prep.features, "label"]
    carry_x, carry_y = np.empty((0, prep.width), np.float32), np.empty(0, np.float32)
    for start in range(0, len(groups), ROW_GROUPS_PER_SHUFFLE):
        window = [
            pq.ParquetFile(p).read_row_group(g, columns=columns)
            for p, g in groups[start : start + ROW_GROUPS_PER_SHUFFLE]
        ]
        x = np.concatenate(
            [np.column_stack([t[c].to_numpy() for c in prep.features]) for t in window if t.num_rows]
        )
        y = np.concatenate([spec.targets(t["label"].to_numpy()) for t in window if t.num_rows])
        if rng is not None:
            order = rng.permutation(len(y))
            x, y = x[order], y[order]
        x, y = np.concatenate([carry_x, prep.transform(x)]), np.concatenate([carry_y.astype(y.dtype), y])
        full = len(y) - len(y) % batch_size
        for lo in range(0, full, batch_size):
            yield x[lo : lo + batch_size], y[lo : lo + batch_size]
        carry_x, carry_y = x[full:], y[full:]
    if len(carry_y):
        yield carry_x, carry_y


def make_dataset(
    files: list[str], spec: NetSpec, prep: Preprocessing, batch_size: int, seed: int | None
) -> tf.data.Dataset:
    """A tf.data pipeline over `iterate_batches`; each epoch draws a new order from `seed`."""
    epochs = iter(range(1_000_000))
    target = tf.float32 if spec.outputs == 1 else tf.int32

    def generate() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = None if seed is None else np.random.default_rng([seed, next(epochs)])
        yield from iterate_batches(files, spec, prep, batch_size, rng)

    signature = (tf.TensorSpec((None, prep.width), tf.float32), tf.TensorSpec((None,), target))
    batches = -(-sum(pq.ParquetFile(path).metadata.num_rows for path in files) // batch_size)
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    return dataset.apply(tf.data.experimental.assert_cardinality(batches)).prefetch(2)


def progress_logger() -> logging.Logger | logging.LoggerAdapter:
    from prefect import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("nad.train")


class EpochLog(keras.callbacks.Callback):
    """One log line per epoch, so long trainings are never silent."""

    def __init__(self, name: str, epochs: int) -> None:
        super().__init__()
        self.name, self.epochs, self.logger = name, epochs, progress_logger()
        self.started = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        metrics = " ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())
        self.logger.info(
            "%s epoch %d/%d: %s (%.1f s)",
            self.name,
            epoch + 1,
            self.epochs,
            metrics,
            time.perf_counter() - self.started,
        )


class RowProgress(keras.callbacks.Callback):
    """Training rows done, rate and time left (to the last epoch; early stopping may end sooner),
    on a terminal and in the run's progress artifact (`tasks.progress`), after each epoch.

    No batch hook: one makes Keras hand every batch's logs to Python, which slows training; with
    one, six nets fitting in threads at once failed once in a TensorFlow race (`is_ref`), which
    no run without it has shown."""

    def __init__(self, name: str, rows: int, schedule: Schedule) -> None:
        super().__init__()
        self.name, self.rows, self.schedule = name, rows, schedule
        self.progress = Progress(f"train {name}", rows * schedule.epochs)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.progress.label = f"train {self.name} epoch {epoch + 1}/{self.schedule.epochs}"
        self.progress.update((epoch + 1) * self.rows)

    def on_train_end(self, logs: dict | None = None) -> None:
        self.progress.finish()


class ValidationFbeta(keras.callbacks.Callback):
    """Macro F-beta (beta=2) over the net's own classes on the validation rows, every epoch."""

    def __init__(self, validation: tf.data.Dataset, spec: NetSpec) -> None:
        super().__init__()
        self.validation, self.spec, self.values = validation, spec, []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        size = len(self.spec.classes)
        confusion = np.zeros((size, size), dtype=np.int64)
        for x, y in self.validation:
            scores = np.asarray(self.model(x, training=False))
            guess = (
                (scores[:, 0] >= 0.5).astype(np.int64) if self.spec.outputs == 1 else scores.argmax(axis=1)
            )
            truth = y.numpy().astype(np.int64)
            confusion += confusion_of_codes(truth, guess, size)
        self.values.append(float(class_scores(confusion)["fbeta"].mean()))
        if logs is not None:
            logs["val_fbeta"] = self.values[-1]


def stopping_callbacks(config: TrainConfig, schedule: Schedule) -> list[keras.callbacks.Callback]:
    """Early stopping on validation loss, best weights restored, never before the step floor."""
    if not config.early_stopping:
        return []
    return [
        keras.callbacks.EarlyStopping(
            "val_loss",
            patience=config.patience,
            restore_best_weights=True,
            start_from_epoch=schedule.first_stop_epoch,
        )
    ]


def best_epoch(history: dict[str, list[float]], early_stopping: bool) -> int:
    """The 1-based epoch whose weights were kept: the lowest validation loss, or the last."""
    losses = history.get("val_loss", [])
    if not early_stopping or not losses:
        return len(history.get("loss", []))
    return int(np.argmin(losses)) + 1


def net_file(name: str, member: int) -> str:
    return f"{name}-{member}.keras"


def train_net(
    name: str, split: SplitResult, prep: Preprocessing, config: TrainConfig, out_dir: Path, member: int = 0
) -> TrainedNet:
    """Train one of the three nets (one ensemble member) and save it as `out_dir/<name>-<member>.keras`."""
    spec = NETS[name]
    counts = spec.class_counts(split.counts["train"])
    schedule = plan_schedule(sum(counts), config, getattr(config, name).epochs)
    if note := schedule_note(name, getattr(config, name).epochs, schedule, config):
        progress_logger().info(note)
    weights = class_weights(counts, config.class_weights)
    model = build_net(spec, config, prep.width, member)
    seed = net_seed(spec, config, member)
    train = make_dataset(split.files(spec.train_split), spec, prep, schedule.batch_size, seed)
    validation = make_dataset(split.files(spec.validation_split), spec, prep, schedule.batch_size, None)
    fbeta = ValidationFbeta(validation, spec)
    label = f"{name}-{member}" if config.ensemble > 1 else name
    progress = RowProgress(label, sum(counts), schedule)
    callbacks = [fbeta, EpochLog(label, schedule.epochs), progress, *stopping_callbacks(config, schedule)]
    started = time.perf_counter()
    history = model.fit(
        train,
        validation_data=validation,
        epochs=schedule.epochs,
        class_weight=weights,
        callbacks=callbacks,
        shuffle=False,
        verbose=0,
    )
    seconds = time.perf_counter() - started
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / net_file(name, member)
    model.save(path)
    curves = {
        **{k: [float(v) for v in values] for k, values in history.history.items()},
        "val_fbeta": fbeta.values,
    }
    return TrainedNet(
        name=name,
        path=str(path),
        epochs_run=len(history.history["loss"]),
        seconds=round(seconds, 3),
        train_rows=sum(counts),
        class_weights=weights,
        member=member,
        batch_size=schedule.batch_size,
        max_epochs=schedule.epochs,
        best_epoch=best_epoch(curves, config.early_stopping),
        history=curves,
    )


@task(name="train-net", task_run_name="train-{name}-{member}")
def train_net_task(
    name: str, split: SplitResult, prep_dir: Path, config: TrainConfig, out_dir: Path, member: int = 0
) -> TrainedNet:
    """Prefect task: one net (one ensemble member); all run side by side on one shared TensorFlow pool."""
    return train_net(name, split, Preprocessing.load(prep_dir), config, out_dir, member)
