"""The leak-free split: whole clock groups of rows move between splits together."""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from schemas.datasets import NSL_KDD, ZYELL
from schemas.firewall import CLASS_NAMES
from schemas.training import SplitConfig, TrainConfig
from tasks.training.split import (
    CLOCK,
    ROW,
    SPLIT_MANIFEST,
    SPLITS,
    SplitError,
    assign_groups,
    assigned_splits,
    check_group_splits,
    group_goals,
    split_grouping,
    split_store,
)

CLOCK_SPLIT = SplitConfig(group="clock", group_minutes=10)


def random_groups(seed: int = 0, groups: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Groups of mostly Normal rows; each attack class in some of them."""
    rng = np.random.default_rng(seed)
    counts = np.zeros((groups, len(CLASS_NAMES)), dtype=np.int64)
    counts[:, 0] = rng.integers(50, 500, groups)
    for code, share in zip(range(1, 5), (0.05, 0.3, 0.03, 0.1), strict=True):
        holding = rng.random(groups) < share
        counts[holding, code] = rng.integers(1, 80, int(holding.sum()))
    ids = rng.choice(2**40, groups, replace=False).astype(np.uint64)
    return ids, counts


def test_groups_reach_every_split_within_one_group_of_each_share() -> None:
    ids, counts = random_groups()
    splits = assign_groups(ids, counts, SplitConfig())
    check_group_splits(counts, splits, 10)
    for code in range(len(CLASS_NAMES)):
        got = np.bincount(splits, weights=counts[:, code], minlength=3)
        goals = group_goals(int(counts[:, code].sum()), SplitConfig())
        assert (np.abs(got - goals) <= counts[:, code].max()).all(), CLASS_NAMES[code]


def test_group_assignment_is_reproducible_under_a_seed() -> None:
    ids, counts = random_groups()
    first = assign_groups(ids, counts, SplitConfig(seed=3))
    assert np.array_equal(first, assign_groups(ids, counts, SplitConfig(seed=3)))
    assert not np.array_equal(first, assign_groups(ids, counts, SplitConfig(seed=4)))
    shuffled = np.random.default_rng(1).permutation(len(ids))  # the order groups arrive in is irrelevant
    assert np.array_equal(
        assign_groups(ids[shuffled], counts[shuffled], SplitConfig(seed=3)), first[shuffled]
    )


def test_a_class_in_too_few_groups_is_a_clear_error() -> None:
    ids, counts = random_groups()
    counts[:, 3] = 0
    counts[:2, 3] = 5  # Nmap in two groups only: one split must go without
    with pytest.raises(SplitError, match=r"class 'Probing-Nmap' has 10 rows in 2 clock groups of 10 min"):
        check_group_splits(counts, assign_groups(ids, counts, SplitConfig()), 10)


def test_grouping_follows_the_dataset() -> None:
    assert split_grouping(SplitConfig(group="auto"), ZYELL) == CLOCK
    assert split_grouping(SplitConfig(group="auto"), NSL_KDD) == ROW
    assert split_grouping(TrainConfig.from_preset("paper").split, ZYELL) == ROW
    with pytest.raises(SplitError, match="nsl-kdd has none"):
        split_grouping(CLOCK_SPLIT, NSL_KDD)


def read_all(split) -> pd.DataFrame:
    frames = [
        pd.read_parquet(f).assign(split=index) for index, s in enumerate(SPLITS) for f in split.files(s)
    ]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def clock_split(tiny_store: Path, tmp_path_factory, dask_cluster_client):
    return split_store(tiny_store, None, CLOCK_SPLIT, tmp_path_factory.mktemp("clock"), dask_cluster_client)


def test_no_group_spans_two_splits_and_every_class_is_in_every_split(clock_split) -> None:
    rows = read_all(clock_split)
    assert rows.groupby("group")["split"].nunique().max() == 1
    assert rows.groupby("group").size().max() > 1  # groups, not rows
    for split in SPLITS:
        assert min(clock_split.counts[split].values()) >= 1, split
    assert len(rows) == sum(sum(c.values()) for c in clock_split.counts.values())


def test_clock_split_is_reproducible(
    clock_split, tiny_store: Path, tmp_path: Path, dask_cluster_client
) -> None:
    again = split_store(tiny_store, None, CLOCK_SPLIT, tmp_path, dask_cluster_client)
    assert again.key == clock_split.key and again.counts == clock_split.counts
    pd.testing.assert_frame_equal(read_all(again), read_all(clock_split))


@pytest.mark.parametrize("fixture", ["clock_split", "tiny_split"])
def test_the_manifest_tells_the_split_of_every_row(fixture: str, request) -> None:
    split = request.getfixturevalue(fixture)
    manifest = json.loads((Path(split.folder) / SPLIT_MANIFEST).read_text())
    rows = read_all(split)
    assert np.array_equal(assigned_splits(manifest, rows), rows["split"].to_numpy())
    elsewhere = rows.assign(partition=np.uint32(12345))
    assert (assigned_splits(manifest, elsewhere) == -1).all()


def test_two_runs_on_one_out_folder_build_the_split_once(
    tiny_store: Path, tmp_path: Path, dask_cluster_client
):
    with ThreadPoolExecutor(2) as pool:
        runs = [
            pool.submit(split_store, tiny_store, None, CLOCK_SPLIT, tmp_path, dask_cluster_client)
            for _ in "ab"
        ]
        results = [run.result() for run in runs]
    assert sorted(r.reused for r in results) == [False, True]
    assert results[0].key == results[1].key and results[0].counts == results[1].counts
