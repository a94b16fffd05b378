"""The binary net's decision threshold, chosen on the validation split.

For a threshold t, a row is Normal when its attack probability is below t and otherwise gets the
attack net's class. Every t of a grid is scored with the challenge criterion on the validation
rows. The best t replaces 0.5 only when its gain is real: a paired bootstrap of the validation
rows (resampling their joint (truth, prediction at 0.5, prediction at t) counts) must put the
gain's lower confidence bound above zero. So a flat curve, or a perfect validation split, keeps
0.5 instead of an extreme value picked by noise.
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

import numpy as np
from prefect import task

from schemas.firewall import CLASS_NAMES
from tasks.metrics import confusion_of_codes, evaluate_confusion, joint_counts
from tasks.model.fusion import FusionModel, load_predictor, set_threshold
from tasks.training.evaluate import read_encoded

GRID: Final[tuple[float, ...]] = tuple(round(0.05 + 0.01 * i, 2) for i in range(91))  # 0.05 .. 0.95
DEFAULT_THRESHOLD: Final = 0.5
SIZE: Final = len(CLASS_NAMES)
CURVE_FILE: Final = "threshold.json"


@dataclass(frozen=True)
class FusionOutputs:
    """What the fused model needs to decide at any threshold, for a set of rows."""

    truth: np.ndarray  # class codes
    probability: np.ndarray  # the binary net's attack probability
    attack_class: np.ndarray  # the attack net's class code (1..4); 0 where no threshold can flag


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen threshold, the curve behind it and the evidence for leaving 0.5."""

    threshold: float
    best: float
    criterion_at_default: float
    criterion_at_best: float
    gain_lower_bound: float
    confidence: float
    thresholds: tuple[float, ...]
    criteria: tuple[float, ...]

    @property
    def moved(self) -> bool:
        return self.threshold != DEFAULT_THRESHOLD


def fused_codes(outputs: FusionOutputs, threshold: float) -> np.ndarray:
    return np.where(outputs.probability >= threshold, outputs.attack_class, 0).astype(np.int64)


def criterion_at(outputs: FusionOutputs, threshold: float) -> float:
    return evaluate_confusion(confusion_of_codes(outputs.truth, fused_codes(outputs, threshold))).criterion


def criterion_curve(outputs: FusionOutputs, grid: tuple[float, ...]) -> np.ndarray:
    return np.array([criterion_at(outputs, t) for t in grid])


def best_threshold(grid: tuple[float, ...], criteria: np.ndarray, default: float) -> float:
    """The threshold of the highest criterion; among ties, the one nearest the default."""
    top = np.flatnonzero(criteria >= criteria.max() - 1e-12)
    return float(min((grid[i] for i in top), key=lambda t: (abs(t - default), t)))


def bootstrap_gain_bound(
    truth: np.ndarray, before: np.ndarray, after: np.ndarray, resamples: int, confidence: float, seed: int
) -> float:
    """Lower confidence bound of criterion(after) - criterion(before), by a paired bootstrap of rows."""
    cells = joint_counts((truth, before, after)).ravel()
    draws = np.random.default_rng(seed).multinomial(cells.sum(), cells / cells.sum(), size=resamples)
    joint = draws.reshape(resamples, SIZE, SIZE, SIZE)  # truth, before, after
    gains = [
        evaluate_confusion(cube.sum(axis=1)).criterion - evaluate_confusion(cube.sum(axis=2)).criterion
        for cube in joint
    ]
    return float(np.quantile(gains, 1 - confidence))


def choose_threshold(
    outputs: FusionOutputs,
    grid: tuple[float, ...] = GRID,
    default: float = DEFAULT_THRESHOLD,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> ThresholdChoice:
    """The best threshold of the grid if its gain over `default` is significant, else `default`."""
    criteria = criterion_curve(outputs, grid)
    best = best_threshold(grid, criteria, default)
    at_default = criterion_at(outputs, default)
    bound = 0.0
    if best != default:
        before, after = fused_codes(outputs, default), fused_codes(outputs, best)
        bound = bootstrap_gain_bound(outputs.truth, before, after, resamples, confidence, seed)
    return ThresholdChoice(
        threshold=best if bound > 0 else default,
        best=best,
        criterion_at_default=float(at_default),
        criterion_at_best=float(criteria.max()),
        gain_lower_bound=bound,
        confidence=confidence,
        thresholds=tuple(grid),
        criteria=tuple(float(c) for c in criteria),
    )


def fusion_outputs(predictor: FusionModel, files: list[str], lowest: float = GRID[0]) -> FusionOutputs:
    """Attack probabilities of all rows of encoded split files, and the attack net's class of the
    rows that some threshold of the grid flags."""
    parts = []
    for path in files:
        features, truth = read_encoded(path, predictor.preprocessing.features)
        if not len(truth):
            continue
        scaled = predictor.preprocessing.transform(features)
        probability = predictor.attack_probability(scaled)
        attack_class = np.zeros(len(truth), dtype=np.int64)
        flaggable = np.flatnonzero(probability >= lowest)
        if len(flaggable):
            attack_class[flaggable] = predictor.attack_classes(scaled[flaggable])
        parts.append((truth.astype(np.int64), probability, attack_class))
    truth, probability, attack_class = (np.concatenate(column) for column in zip(*parts, strict=True))
    return FusionOutputs(truth, probability, attack_class)


def plot_threshold_curve(choice: ThresholdChoice, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(choice.thresholds, choice.criteria, label="validation criterion")
    ax.axvline(DEFAULT_THRESHOLD, color="grey", linestyle=":", label="0.5")
    ax.axvline(choice.threshold, color="red", linestyle="--", label=f"chosen {choice.threshold:.2f}")
    ax.set_xlabel("binary threshold")
    ax.set_ylabel("criterion")
    ax.set_title(f"best {choice.best:.2f}; gain lower bound {choice.gain_lower_bound:+.4f}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


@task(name="tune-threshold")
def tune_threshold_task(fusion_dir: str, validation_files: list[str], out_dir: Path) -> ThresholdChoice:
    """Prefect task: choose the threshold on validation, write it into the fused predictor, and
    save the curve (JSON and PNG) in `out_dir`."""
    predictor = load_predictor(Path(fusion_dir))
    choice = choose_threshold(fusion_outputs(predictor, validation_files))
    set_threshold(Path(fusion_dir), choice.threshold)
    (Path(out_dir) / CURVE_FILE).write_text(json.dumps(asdict(choice), indent=2))
    plot_threshold_curve(choice, Path(out_dir) / "threshold-curve.png")
    return choice
