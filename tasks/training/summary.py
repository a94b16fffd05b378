"""Typed results that travel between the training flow, its subflows, tracking and the CLI."""

import json
from dataclasses import asdict, dataclass, field

from schemas.training import TrainConfig
from tasks.metrics import Evaluation
from tasks.training.split import SplitResult
from tasks.training.threshold import ThresholdChoice


@dataclass(frozen=True)
class TrainedNet:
    """A trained net (one ensemble member) on disk, with its schedule, history and timings."""

    name: str
    path: str
    epochs_run: int
    seconds: float
    train_rows: int
    class_weights: dict[int, float]
    member: int = 0
    batch_size: int = 0
    max_epochs: int = 0
    best_epoch: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.name}-{self.member}"

    @property
    def samples_per_second(self) -> float:
        return self.train_rows * self.epochs_run / self.seconds


FIRST_VERSION, SAME_ROWS, NOT_COMPARED = "first version", "same rows", "not compared"  # gate rules


@dataclass(frozen=True)
class GateFigures:
    """One model's figures on the gate rows."""

    criterion: float
    fbeta: float
    far: float


@dataclass(frozen=True)
class GateRows:
    """How the challenger's test rows divide at the gate: `rows` both models are scored on, and
    those left out because the champion trained or validated on them, or their source changed."""

    test_rows: int
    rows: int
    champion_trained_rows: int
    champion_validated_rows: int
    changed_rows: int


@dataclass(frozen=True)
class GateDecision:
    """The champion gate's verdict on a new model version, by one of three rules: the first
    version is promoted; on the same rows, the champion is kept only when significantly better
    (`bound`, the lower confidence bound of criterion(champion) - criterion(challenger), above
    zero); when the champion cannot score the gate rows, nothing is compared and the challenger is
    promoted. `reason` says which, and why, in one line."""

    decision: str  # promoted | kept
    version: str
    champion_version: str | None
    rule: str  # FIRST_VERSION | SAME_ROWS | NOT_COMPARED
    reason: str
    rows: GateRows | None = None
    challenger: GateFigures | None = None
    champion: GateFigures | None = None
    bound: float | None = None
    confidence: float | None = None
    changed: tuple[str, ...] = ()  # partitions left out: their source changed since the champion

    @property
    def promoted(self) -> bool:
        return self.decision == "promoted"

    @property
    def new_criterion(self) -> float | None:
        return None if self.challenger is None else self.challenger.criterion

    @property
    def champion_criterion(self) -> float | None:
        return None if self.champion is None else self.champion.criterion

    def tags(self) -> dict[str, str]:
        """The `gate.*` tags of the run."""
        tags = {
            "gate.decision": self.decision,
            "gate.version": self.version,
            "gate.champion_version": self.champion_version or "none",
            "gate.rule": self.rule,
            "gate.reason": self.reason,
        }
        if self.changed:
            tags["gate.changed_partitions"] = ",".join(self.changed)
        return tags

    def metrics(self) -> dict[str, float]:
        """The `gate.*` metrics of the run: row counts, both models' figures and the bound."""
        out: dict[str, float] = {}
        if self.rows is not None:
            out |= {f"gate.{key}": value for key, value in asdict(self.rows).items()}
        for model, figures in (("challenger", self.challenger), ("champion", self.champion)):
            if figures is not None:
                out |= {f"gate.{model}.{key}": value for key, value in asdict(figures).items()}
        if self.bound is not None:
            out["gate.bound"] = self.bound
        return out

    def describe(self) -> str:
        """One line: the decision, the rule and, when compared, both figures on the gate rows."""
        line = f"{self.decision} by the rule '{self.rule}': {self.reason}"
        if self.challenger is not None and self.champion is not None:
            line += (
                f"; criterion {self.challenger.criterion:.4f} against champion version "
                f"{self.champion_version}'s {self.champion.criterion:.4f}, lower bound of the "
                f"champion's lead {self.bound:+.4f}"
            )
        return line


@dataclass(frozen=True)
class Registration:
    """Where the training run went in MLflow."""

    run_id: str
    version: str
    model_name: str
    tracking_uri: str
    gate: GateDecision


@dataclass(frozen=True)
class TrainingSummary:
    """What one training flow made: nets, predictors, threshold, evaluations and, once registered,
    its MLflow run and model version."""

    run_dir: str
    config: TrainConfig
    split: SplitResult
    preprocessing: str
    predictors: dict[str, str]
    nets: tuple[TrainedNet, ...]
    threshold: ThresholdChoice | None
    evaluations: dict[str, dict[str, Evaluation]]  # split -> predictor -> figures
    tracking: Registration | None = None

    @property
    def dataset(self) -> str:
        return self.split.dataset

    def nets_named(self, name: str) -> list[TrainedNet]:
        return [net for net in self.nets if net.name == name]

    def to_json(self) -> str:
        """The summary as JSON (the run folder's `training.json`), the config resolved in full."""
        return json.dumps({**asdict(self), "config": self.config.model_dump(mode="json")}, indent=2)
