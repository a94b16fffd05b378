"""Shared fixtures: small generated data sets, made once per session."""

from pathlib import Path

import pytest

from schemas.generation import get_preset
from tasks.generate import DaySummary, generate_dataset

TINY_SEED = 11


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="session")
def tiny_days(tiny_dir: Path) -> list[DaySummary]:
    """The `tiny` preset written once for the whole session."""
    return generate_dataset(get_preset("tiny"), TINY_SEED, tiny_dir)
