"""Known-attack envelopes: the range of each net input over the train rows of each attack class.

The fused model keeps the attack net's class c for a row only if each of the row's scaled inputs
lies within c's train range, widened on each side by `margin` times that range; any other
flagged row is Normal. A net extrapolates beyond its training data, so on another period normal
traffic unlike anything it trained on draws confident attack calls (NSL-KDD's KDDTest+: 40 kB
pings, which no train row of any class comes near), where a forest's flat extrapolation does
not. An input that is constant over a class's train rows keeps that one value. The ranges are
fitted with the scaler (tasks/model/preprocess.py) and saved in its artifact; the margin is the
predictor's (tasks/model/fusion.py). docs/model.md has the measurements.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from schemas.firewall import CLASS_NAMES
from tasks.model.drift import split_batches

ATTACK_CODES = tuple(range(1, len(CLASS_NAMES)))


@dataclass(frozen=True)
class ClassRanges:
    """Per attack class (codes 1..4, in order), the lowest and highest value of each scaled input
    over its train rows; empty tuples for a class without train rows (its calls are kept)."""

    low: tuple[tuple[float, ...], ...]
    high: tuple[tuple[float, ...], ...]

    def inside(self, scaled: np.ndarray, codes: np.ndarray, margin: float) -> np.ndarray:
        """Whether each row lies within the widened range of its attack class `codes` (1..4)."""
        keep = np.ones(len(codes), dtype=bool)
        for code, low, high in zip(ATTACK_CODES, self.low, self.high, strict=True):
            rows = np.flatnonzero(codes == code)
            if not len(rows) or not low:
                continue
            low_, high_ = np.asarray(low), np.asarray(high)
            widen = (high_ - low_) * margin
            values = scaled[rows]
            keep[rows] = ((values >= low_ - widen) & (values <= high_ + widen)).all(axis=1)
        return keep

    def to_dict(self) -> dict:
        return {"low": [list(row) for row in self.low], "high": [list(row) for row in self.high]}

    @classmethod
    def from_dict(cls, data: dict) -> "ClassRanges":
        low, high = (tuple(tuple(float(v) for v in row) for row in data[key]) for key in ("low", "high"))
        if len(low) != len(ATTACK_CODES) or len(high) != len(ATTACK_CODES):
            raise ValueError(f"class ranges for {len(low)} classes, not {len(ATTACK_CODES)}")
        return cls(low, high)


def fit_class_ranges(files: list[str], features: tuple[str, ...], scaled_of: Callable) -> ClassRanges:
    """The ranges over a train split's files, batch by batch: `scaled_of` turns encoded `features`
    (rows x features) into the nets' scaled inputs; the split's `label` column gives the class."""
    low: dict[int, np.ndarray] = {}
    high: dict[int, np.ndarray] = {}
    for batch in split_batches(files, [*features, "label"]):
        labels = batch["label"].to_numpy(np.int64)
        attacks = labels > 0
        if not attacks.any():
            continue
        scaled = scaled_of(batch.loc[attacks, list(features)].to_numpy(dtype=np.float32))
        for code in np.unique(labels[attacks]):
            rows = scaled[labels[attacks] == code]
            low[code] = np.minimum(low.get(code, np.inf), rows.min(axis=0))
            high[code] = np.maximum(high.get(code, -np.inf), rows.max(axis=0))

    def bounds(found: dict[int, np.ndarray]) -> tuple[tuple[float, ...], ...]:
        return tuple(tuple(float(v) for v in found[code]) if code in found else () for code in ATTACK_CODES)

    return ClassRanges(bounds(low), bounds(high))
