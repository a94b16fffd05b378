"""Drift of a day against the period the model trained on: per model input, the population
stability index (PSI) of its histogram against the train split's; and the predicted class mix
against the training class mix.

The reference profile is fitted with the preprocessing, on the train split only, out-of-core:
pass 1 keeps a seeded random sample of at most SAMPLE_ROWS rows, whose quantiles give each
input's cut points; pass 2 counts every row of the split into those bins, one Parquet batch at
a time. The counts are exact, the cut points approximate. Inputs are the nets' inputs before
scaling (log1p and one-hot applied): quantile bins are the same under the scaler, and the cut
points read in the columns' own units. Bins are right-closed, `(-inf, c1], (c1, c2], ...,
(ck, inf)`, so a discrete value that is a cut point keeps a bin of its own, and a value above
the training maximum lands in the last bin, empty in the reference.
"""

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from schemas.firewall import CLASS_NAMES
from tasks.files import write_text_atomic

BINS = 10  # deciles, as PSI is usually computed
SAMPLE_ROWS = 100_000  # pass 1 keeps about this many rows of the train split for the cut points
BATCH_ROWS = 65_536
FLOOR = 1e-4  # an empty bin's share, so that the log stays finite
PSI_THRESHOLD = 0.25  # an input above it is flagged (the usual "major shift" of PSI)
# A day drifts when more than this share of its inputs is flagged: normal test days flag at most
# 18% (tiny) and 6% (demo), the shifted day at least 35%; this is midway (docs/drift.md).
DAY_SHARE = 0.25
TOP_INPUTS = 5
REPORT_SUFFIX = ".drift.json"


@dataclass(frozen=True)
class ReferenceProfile:
    """Each model input's cut points and training rows per bin, and the training rows per class."""

    inputs: tuple[str, ...]
    cuts: tuple[tuple[float, ...], ...]
    counts: tuple[tuple[int, ...], ...]
    rows: int
    classes: tuple[int, ...]  # train split rows per class, in CLASS_NAMES order

    @classmethod
    def from_dict(cls, data: dict) -> "ReferenceProfile":
        return cls(
            inputs=tuple(data["inputs"]),
            cuts=tuple(tuple(float(c) for c in cut) for cut in data["cuts"]),
            counts=tuple(tuple(int(n) for n in row) for row in data["counts"]),
            rows=int(data["rows"]),
            classes=tuple(int(n) for n in data["classes"]),
        )


def bin_counts(inputs: np.ndarray, cuts: list[np.ndarray]) -> list[np.ndarray]:
    """Rows per bin of each input column (see the module's bins)."""
    columns = inputs.astype(np.float64, copy=False).T
    return [
        np.bincount(np.searchsorted(cut, column, side="left"), minlength=len(cut) + 1)
        for column, cut in zip(columns, cuts, strict=True)
    ]


def cut_points(sample: np.ndarray, bins: int = BINS) -> list[np.ndarray]:
    """Each column's distinct inner quantiles of the sample, each a value of the sample."""
    levels = np.linspace(0, 1, bins + 1)[1:-1]
    if not len(sample):
        return [np.zeros(0) for _ in range(sample.shape[1])]
    return [
        np.unique(np.quantile(sample[:, j].astype(np.float64), levels, method="inverted_cdf"))
        for j in range(sample.shape[1])
    ]


def split_batches(files: list[str], columns: list[str]) -> Iterator[pd.DataFrame]:
    """The split files' rows, BATCH_ROWS at a time: never a whole file in memory."""
    for path in files:
        yield from (b.to_pandas() for b in pq.ParquetFile(path).iter_batches(BATCH_ROWS, columns=columns))


def fit_reference(
    files: list[str], features: tuple[str, ...], names: tuple[str, ...], inputs_of: Callable, seed: int = 0
) -> ReferenceProfile:
    """The reference profile of a train split: `inputs_of` turns its encoded `features` (rows x
    features) into the unscaled model inputs `names`; the split's `label` column gives the mix."""
    columns = [*features, "label"]
    rows = sum(pq.ParquetFile(path).metadata.num_rows for path in files)
    keep = min(1.0, SAMPLE_ROWS / max(rows, 1))
    rng = np.random.default_rng(seed)
    sample = [np.empty((0, len(names)), np.float32)]
    for batch in split_batches(files, columns):
        chosen = batch[rng.random(len(batch)) < keep]
        sample.append(inputs_of(chosen[list(features)].to_numpy(dtype=np.float32)))
    cuts = tuple(tuple(float(c) for c in cut) for cut in cut_points(np.concatenate(sample)))
    counter = InputCounter(ReferenceProfile(tuple(names), cuts, (), rows, ()))
    classes = np.zeros(len(CLASS_NAMES), np.int64)
    for batch in split_batches(files, columns):
        counter.add(inputs_of(batch[list(features)].to_numpy(dtype=np.float32)))
        classes += np.bincount(batch["label"].to_numpy(np.int64), minlength=len(CLASS_NAMES))
    return ReferenceProfile(
        inputs=tuple(names),
        cuts=cuts,
        counts=tuple(tuple(int(n) for n in row) for row in counter.counts),
        rows=rows,
        classes=tuple(int(n) for n in classes),
    )


def reference_cuts(profile: ReferenceProfile) -> list[np.ndarray]:
    return [np.asarray(cut, dtype=np.float64) for cut in profile.cuts]


class InputCounter:
    """A day's rows per reference bin, one block of inputs at a time."""

    def __init__(self, profile: ReferenceProfile) -> None:
        self.profile = profile
        self.cuts = reference_cuts(profile)
        self.counts = [np.zeros(len(cut) + 1, np.int64) for cut in self.cuts]
        self.rows = 0

    def add(self, inputs: np.ndarray) -> None:
        self.add_counts(bin_counts(inputs, self.cuts), len(inputs))

    def add_counts(self, found: list[np.ndarray], rows: int) -> None:
        """Add a block's `bin_counts` (counted wherever the block was scored)."""
        for total, block in zip(self.counts, found, strict=True):
            total += block
        self.rows += rows


def shares(counts) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    return np.maximum(counts / max(counts.sum(), 1.0), FLOOR)


def psi(reference, current) -> float:
    """Population stability index of two histograms over the same bins (counts)."""
    p, q = shares(reference), shares(current)
    return float(np.sum((q - p) * np.log(q / p)))


@dataclass(frozen=True)
class DriftReport:
    """One day's drift against a model's reference profile."""

    file: str
    model: str
    rows: int
    threshold: float
    day_share: float  # the day drifts when more than this share of its inputs is flagged
    psi: dict[str, float]  # per model input, in the model's input order
    top: tuple[str, ...]  # the most drifting inputs, largest PSI first
    flagged: tuple[str, ...]  # inputs whose PSI passes the threshold
    predicted_mix: dict[str, float]  # share of the day's rows per predicted class
    training_mix: dict[str, float]  # share of the train split's rows per class
    class_mix_psi: float

    @property
    def flagged_share(self) -> float:
        return len(self.flagged) / max(len(self.psi), 1)

    @property
    def drifted(self) -> bool:
        return self.flagged_share > self.day_share

    @classmethod
    def from_dict(cls, data: dict) -> "DriftReport":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def mix(counts) -> dict[str, float]:
    counts = np.asarray(counts, dtype=np.float64)
    return {name: float(n / max(counts.sum(), 1.0)) for name, n in zip(CLASS_NAMES, counts, strict=True)}


def drift_report(
    file: str, model: str, counter: InputCounter, predicted: dict[str, int], threshold: float = PSI_THRESHOLD
) -> DriftReport:
    """The report of a day whose inputs `counter` counted and whose rows `predicted` classed."""
    profile = counter.profile
    values = {
        name: round(psi(ref, cur), 6)
        for name, ref, cur in zip(profile.inputs, profile.counts, counter.counts, strict=True)
    }
    ranked = sorted(values, key=lambda name: -values[name])
    predicted_counts = [predicted.get(name, 0) for name in CLASS_NAMES]
    return DriftReport(
        file=file,
        model=model,
        rows=counter.rows,
        threshold=threshold,
        day_share=DAY_SHARE,
        psi=values,
        top=tuple(ranked[:TOP_INPUTS]),
        flagged=tuple(name for name in ranked if values[name] > threshold),
        predicted_mix=mix(predicted_counts),
        training_mix=mix(profile.classes),
        class_mix_psi=round(psi(profile.classes, predicted_counts), 6),
    )


def write_report(report: DriftReport, path: Path) -> Path:
    return write_text_atomic(path, json.dumps(asdict(report), indent=2))


def read_report(path: Path) -> DriftReport:
    return DriftReport.from_dict(json.loads(Path(path).read_text()))
