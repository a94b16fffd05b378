"""Configuration of the split, the preprocessing and the three nets (one pydantic model, logged whole)."""

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class SplitConfig(BaseModel):
    """80/20 into train+validation and test, then 80/20 of the first part: 64/16/20."""

    model_config = ConfigDict(frozen=True)

    seed: int = 42
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    validation_fraction: float = Field(default=0.2, gt=0, lt=1)


class NetConfig(BaseModel):
    """Training schedule of one net."""

    model_config = ConfigDict(frozen=True)

    epochs: int = Field(gt=0)


class TrainConfig(BaseModel):
    """Everything `nad train` can change. The defaults follow the paper."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    split: SplitConfig = SplitConfig()
    clip: float = Field(default=50.0, gt=0)
    hidden_units: tuple[int, ...] = (256, 128, 64)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    learning_rate: float = Field(default=1e-4, gt=0)
    batch_size: int = Field(default=4096, gt=0)
    binary: NetConfig = NetConfig(epochs=50)
    attack: NetConfig = NetConfig(epochs=200)
    baseline: NetConfig = NetConfig(epochs=50)
    early_stopping: bool = False
    patience: int = Field(default=5, gt=0)
    threshold: float = Field(default=0.5, gt=0, lt=1)
    seed: int = 42
    parallel: bool = True

    @classmethod
    def from_file(cls, path: Path | None) -> "TrainConfig":
        """The config in a JSON file, or the defaults."""
        return cls() if path is None else cls.model_validate_json(Path(path).read_text())
