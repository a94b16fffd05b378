"""The challenge's metrics: macro P/R/F1/F-beta over five classes, FAR, total cost and the criterion.

This is the only implementation in the project; evaluation, MLflow logging, scoring and the
benchmarks all call it.
"""

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from schemas.firewall import CLASS_NAMES, DDOS, NORMAL

# The figures every report, table and MLflow run shows, in this order
HEADLINE = ("precision", "recall", "f1", "fbeta", "far", "cost", "criterion")


def default_cost_matrix() -> np.ndarray:
    """Rows true class, columns predicted: a false DDoS alarm costs 2, a DDoS missed as Normal
    costs 2, every other error 1, a right answer 0."""
    cost = np.ones((len(CLASS_NAMES), len(CLASS_NAMES)))
    np.fill_diagonal(cost, 0)
    ddos, normal = CLASS_NAMES.index(DDOS), CLASS_NAMES.index(NORMAL)
    cost[:, ddos] = 2
    cost[ddos, ddos] = 0
    cost[ddos, normal] = 2
    return cost


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Counts, rows true class and columns predicted, in CLASS_NAMES order."""
    index = {name: i for i, name in enumerate(CLASS_NAMES)}
    unknown = set(np.unique(truth)) | set(np.unique(predicted))
    unknown -= set(CLASS_NAMES)
    if unknown:
        raise ValueError(f"not class names: {sorted(unknown)}")
    t = np.vectorize(index.__getitem__, otypes=[np.int64])(truth) if len(truth) else np.zeros(0, np.int64)
    p = (
        np.vectorize(index.__getitem__, otypes=[np.int64])(predicted)
        if len(predicted)
        else np.zeros(0, np.int64)
    )
    return confusion_of_codes(t, p)


def confusion_of_codes(truth: np.ndarray, predicted: np.ndarray, size: int = len(CLASS_NAMES)) -> np.ndarray:
    """Counts, rows true class and columns predicted, of class codes (CLASS_NAMES indices, or the
    `size` classes of one net); a truth code below 0 (a label outside the classes) is left out.
    The one confusion counter."""
    truth, predicted = np.asarray(truth, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    known = truth >= 0
    return joint_counts((truth[known], predicted[known]), size)


def joint_counts(codes: tuple[np.ndarray, ...], size: int = len(CLASS_NAMES)) -> np.ndarray:
    """How many rows have each combination of codes: an array of shape (size,) * len(codes),
    indexed by the codes in the order given (two code arrays give a confusion matrix)."""
    flat = np.zeros(len(codes[0]), dtype=np.int64)
    for column in codes:
        flat = flat * size + np.asarray(column, dtype=np.int64)
    return np.bincount(flat, minlength=size ** len(codes)).reshape((size,) * len(codes))


@dataclass(frozen=True)
class Evaluation:
    """Every figure of one predictor on one set of rows."""

    rows: int
    precision: float
    recall: float
    f1: float
    fbeta: float
    far: float
    cost: float
    criterion: float
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]

    def headline(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in HEADLINE}

    def to_dict(self) -> dict:
        return asdict(self)


def _ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    return np.divide(top, bottom, out=np.zeros_like(top, dtype=float), where=bottom > 0)


def class_scores(confusion: np.ndarray, beta: float = 2.0) -> dict[str, np.ndarray]:
    """One-vs-rest precision, recall, F1 and F-beta of every class of a confusion matrix."""
    confusion = np.asarray(confusion, dtype=np.int64)
    tp = np.diag(confusion).astype(float)
    precision, recall = _ratio(tp, confusion.sum(axis=0)), _ratio(tp, confusion.sum(axis=1))
    return {
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "fbeta": _ratio((1 + beta**2) * precision * recall, beta**2 * precision + recall),
    }


def evaluate_confusion(
    confusion: np.ndarray, beta: float = 2.0, alpha: float = 0.3, cost_matrix: np.ndarray | None = None
) -> Evaluation:
    """All metrics from a confusion matrix. A class never present and never predicted scores 0."""
    confusion = np.asarray(confusion, dtype=np.int64)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    scores = class_scores(confusion, beta)
    precision, recall, f1, fbeta = scores["precision"], scores["recall"], scores["f1"], scores["fbeta"]
    normal = CLASS_NAMES.index(NORMAL)
    far = float(_ratio(np.array([actual[normal] - confusion[normal, normal]]), np.array([actual[normal]]))[0])
    rows = int(confusion.sum())
    cost = float((confusion * (default_cost_matrix() if cost_matrix is None else cost_matrix)).sum())
    max_cost = float(np.max(default_cost_matrix() if cost_matrix is None else cost_matrix)) * rows
    macro_fbeta = float(fbeta.mean())
    if cost > 0 and max_cost > 1:
        criterion = alpha * (1 - math.log(cost) / math.log(max_cost)) + (1 - alpha) * macro_fbeta
    else:
        criterion = alpha + (1 - alpha) * macro_fbeta
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "fbeta": float(fbeta[i]),
            "support": int(actual[i]),
            "predicted": int(predicted[i]),
        }
        for i, name in enumerate(CLASS_NAMES)
    }
    return Evaluation(
        rows=rows,
        precision=float(precision.mean()),
        recall=float(recall.mean()),
        f1=float(f1.mean()),
        fbeta=macro_fbeta,
        far=far,
        cost=cost,
        criterion=float(criterion),
        per_class=per_class,
        confusion=confusion.tolist(),
    )


def evaluate_labels(
    truth, predicted, beta: float = 2.0, alpha: float = 0.3, cost_matrix: np.ndarray | None = None
) -> Evaluation:
    """All metrics of predicted class names against true class names."""
    truth, predicted = np.asarray(truth, dtype=object), np.asarray(predicted, dtype=object)
    if truth.shape != predicted.shape:
        raise ValueError(f"{len(truth)} true labels but {len(predicted)} predictions")
    return evaluate_confusion(confusion_matrix(truth, predicted), beta, alpha, cost_matrix)


def per_class_report(evaluation: Evaluation) -> str:
    """A markdown table of the per-class figures."""
    lines = [
        "| class | precision | recall | F1 | F2 | support | predicted |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in evaluation.per_class.items():
        lines.append(
            f"| {name} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['fbeta']:.4f} "
            f"| {m['support']:,} | {m['predicted']:,} |"
        )
    return "\n".join(lines)


def plot_confusion(evaluation: Evaluation, title: str, path: Path, normalised: bool = False) -> Path:
    """A confusion-matrix PNG with readable class names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(evaluation.confusion, dtype=float)
    values = _ratio(counts, counts.sum(axis=1, keepdims=True)) if normalised else counts
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    ax.imshow(values, cmap="Blues")
    ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES, rotation=30, ha="right")
    ax.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    peak = values.max() if values.size else 0
    for (i, j), value in np.ndenumerate(values):
        text = f"{value:.3f}" if normalised else f"{int(value):,}"
        ax.text(
            j, i, text, ha="center", va="center", color="white" if value > peak / 2 else "black", fontsize=8
        )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
