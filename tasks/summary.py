"""Typed results that travel between the training flow, its subflows, tracking and the CLI."""

import json
from dataclasses import asdict, dataclass, field

from schemas.training import TrainConfig
from tasks.split import SplitResult
from tasks.threshold import ThresholdChoice


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


@dataclass(frozen=True)
class GateDecision:
    """The champion gate's verdict on a new model version."""

    decision: str  # promoted | kept
    version: str
    new_criterion: float
    champion_criterion: float | None
    champion_version: str | None

    @property
    def promoted(self) -> bool:
        return self.decision == "promoted"

    def tags(self) -> dict[str, str]:
        """The `gate.*` tags of the run."""
        none = "none"
        return {
            "gate.decision": self.decision,
            "gate.version": self.version,
            "gate.new_criterion": str(self.new_criterion),
            "gate.champion_criterion": none
            if self.champion_criterion is None
            else str(self.champion_criterion),
            "gate.champion_version": self.champion_version or none,
        }


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
    evaluations: dict[str, dict[str, dict]]
    tracking: Registration | None = None

    @property
    def dataset(self) -> str:
        return self.split.dataset

    def nets_named(self, name: str) -> list[TrainedNet]:
        return [net for net in self.nets if net.name == name]

    def to_json(self) -> str:
        """The summary as JSON (the run folder's `training.json`), the config resolved in full."""
        return json.dumps({**asdict(self), "config": self.config.model_dump(mode="json")}, indent=2)
