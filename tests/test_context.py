"""Context features: the definition (a plain-loop oracle), block sizes, store and file alike."""

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from distributed import Client

from schemas.context import KEYS, ROW_FEATURES, VALUES, ZYELL_CONTEXT, ContextSpec, WindowCount, windows
from schemas.datasets import ZYELL
from simulator.generate import DaySummary
from tasks.ingest.files import ingest_file
from tasks.ingest.lines import plan_blocks
from tasks.ingest.parse import LINE_COLUMN
from tasks.ingest.scan import resolve_partition, scan_file
from tasks.ingest.store import part_dir
from tasks.model.context import (
    build_tables,
    context_features,
    frame_context,
    stored_rows,
    valid_block_rows,
)

EVERY_KIND = ContextSpec(
    rows=ROW_FEATURES, windows=windows(tuple((k, v) for k in KEYS for v in VALUES), (60, 3600))
)
DAY_FILE = "0126_firewall.csv"
DIRTY_ROWS = 900


def naive_context(frame: pd.DataFrame, spec: ContextSpec) -> dict[str, list[int]]:
    """Every feature by its definition: for each row, a look at every row of the frame."""
    rows = frame.to_dict("records")
    for row in rows:
        row["src24"], row["dst24"] = row["src"].rsplit(".", 1)[0], row["dst"].rsplit(".", 1)[0]
        row["src_dst"], row["src_dst24"] = (row["src"], row["dst"]), (row["src"], row["dst24"])
    result: dict[str, list[int]] = {
        "dst_broadcast": [int(row["dst"].rsplit(".", 1)[1] in ("0", "255")) for row in rows],
        "dst_in_src_24": [int(row["src24"] == row["dst24"]) for row in rows],
        "zero_ports": [int(row["spt"] == 0 and row["dpt"] == 0) for row in rows],
    }
    for window in spec.windows:
        bucket = [pd.Timestamp(row["time"]).floor(f"{window.seconds}s") for row in rows]
        key, value = window.key, window.value
        result[window.name] = [
            len({b[value] for j, b in enumerate(rows) if b[key] == a[key] and bucket[j] == bucket[i]})
            for i, a in enumerate(rows)
        ]
    return result


def random_rows(seed: int, n: int = 160) -> pd.DataFrame:
    """Few hosts, ports and seconds around an hour boundary, network and broadcast addresses."""
    rng = np.random.default_rng(seed)
    hosts = [f"10.0.{net}.{host}" for net in (1, 2) for host in (0, 1, 2, 3, 255)] + ["8.8.8.8"]
    start = pd.Timestamp("2021-01-23 10:58:30")
    offsets = np.sort(rng.choice([*range(0, 240), 3700, 3701, 7300], size=n))
    return pd.DataFrame(
        {
            "time": (start + pd.to_timedelta(offsets, unit="s")).astype("datetime64[s]"),
            "src": rng.choice(hosts, n),
            "dst": rng.choice(hosts, n),
            "spt": rng.choice([0, 1024, 40000], n),
            "dpt": rng.choice([0, 22, 80, 443], n),
        }
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_every_feature_kind_matches_a_plain_loop(seed: int) -> None:
    frame = random_rows(seed)
    expected = naive_context(frame, EVERY_KIND)
    actual = frame_context(frame, EVERY_KIND)
    assert list(actual.columns) == list(EVERY_KIND.feature_names)
    for name in EVERY_KIND.feature_names:
        assert actual[name].tolist() == expected[name], name


def test_buckets_are_clock_minutes_and_count_rows_before_and_after() -> None:
    spec = ContextSpec(
        rows=ROW_FEATURES, windows=(WindowCount("src", "dst", 60), WindowCount("dst", "src", 60))
    )
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime(
                ["2021-01-23 12:00:05", "2021-01-23 12:00:30", "2021-01-23 12:00:59", "2021-01-23 12:01:00"]
            ),
            "src": ["10.0.1.7", "10.0.1.7", "10.0.1.7", "10.0.1.7"],
            "dst": ["10.0.1.255", "10.0.2.1", "10.0.2.1", "10.0.2.2"],
            "spt": [0, 40000, 0, 40001],
            "dpt": [0, 80, 443, 0],
        }
    )
    features = frame_context(frame, spec)
    assert features["dst_broadcast"].tolist() == [1, 0, 0, 0]
    assert features["dst_in_src_24"].tolist() == [1, 0, 0, 0]
    assert features["zero_ports"].tolist() == [1, 0, 0, 0]
    # 12:00:59 and 12:01:00 are one second apart but in two clock minutes.
    assert features["dst_per_src_60s"].tolist() == [2, 2, 2, 1]
    assert features["src_per_dst_60s"].tolist() == [1, 1, 1, 1]


def file_features(path: Path, folder: Path, blocksize: int, client: Client | None) -> pd.DataFrame:
    """The scoring path: both passes over a file's blocks, features keyed by line."""
    scan = scan_file(path, ZYELL, blocksize)
    blocks = plan_blocks(scan, resolve_partition(path, scan, ZYELL, None), ZYELL)
    tables = build_tables(blocks, valid_block_rows, ZYELL_CONTEXT, folder, client)
    parts = []
    for number, block in enumerate(blocks):
        rows = valid_block_rows(block)
        parts.append(context_features(rows, tables, number).set_index(rows[LINE_COLUMN]))
    return pd.concat(parts).sort_index()


@pytest.fixture(scope="module")
def dirty_day(tiny_dir: Path, tiny_days: list[DaySummary], tmp_path_factory) -> Path:
    """Rows of a generated day, shuffled out of time order, with a quarantined row in the middle."""
    lines = (tiny_dir / DAY_FILE).read_bytes().splitlines()[: DIRTY_ROWS + 1]
    rows = [lines[i] for i in np.random.default_rng(3).permutation(np.arange(1, len(lines)))]
    bad = rows[0].split(b",")
    bad[1] = b"999.1.1.1"
    rows.insert(len(rows) // 2, b",".join(bad))
    path = tmp_path_factory.mktemp("dirty") / DAY_FILE
    path.write_bytes(b"\n".join([lines[0], *rows]) + b"\n")
    return path


def whole_file_features(path: Path) -> pd.DataFrame:
    """Both passes over all the file's valid rows at once: the oracle of the block tests."""
    scan = scan_file(path, ZYELL, 1 << 30)
    (block,) = plan_blocks(scan, resolve_partition(path, scan, ZYELL, None), ZYELL)
    rows = valid_block_rows(block)
    return frame_context(rows, ZYELL_CONTEXT).set_index(rows[LINE_COLUMN]).sort_index()


@pytest.mark.parametrize(("blocksize", "on_dask"), [(2000, False), (20_000, True), (1 << 30, False)])
def test_the_block_size_never_changes_a_value(
    dirty_day: Path, blocksize: int, on_dask: bool, tmp_path: Path, dask_cluster_client: Client
) -> None:
    expected = whole_file_features(dirty_day)
    assert len(expected) == DIRTY_ROWS
    actual = file_features(
        dirty_day, tmp_path / "tables", blocksize, dask_cluster_client if on_dask else None
    )
    pd.testing.assert_frame_equal(actual, expected)
    if blocksize <= 2000:
        assert len(scan_file(dirty_day, ZYELL, blocksize).block_starts) > 40


def test_store_parts_and_file_blocks_give_the_same_features(
    tiny_dir: Path, tiny_days: list[DaySummary], tmp_path: Path, dask_cluster_client: Client
) -> None:
    """Training reads the store, scoring the file: the same rows get the same values."""
    path = tiny_dir / DAY_FILE
    report = ingest_file(path, tmp_path / "store", dask_cluster_client, ZYELL, blocksize=20_000)
    parts = sorted(part_dir(tmp_path / "store", f"day={report.partition}").glob("part-*.parquet"))
    assert len(parts) > 5
    read = functools.partial(stored_rows, spec=ZYELL_CONTEXT)
    tables = build_tables(parts, read, ZYELL_CONTEXT, tmp_path / "tables", dask_cluster_client)
    stored = pd.concat(
        [
            context_features(read(part), tables, number).set_index(read(part)[LINE_COLUMN])
            for number, part in enumerate(parts)
        ]
    ).sort_index()
    pd.testing.assert_frame_equal(stored, file_features(path, tmp_path / "file-tables", 50_000, None))


def test_rows_that_pass_1_did_not_count_are_refused(tmp_path: Path) -> None:
    counted = random_rows(0)
    built = build_tables([counted], lambda rows: rows, ZYELL_CONTEXT, tmp_path / "tables")
    assert len(context_features(counted, built, 0)) == len(counted)
    for other, number in (
        (counted.assign(time=counted.time + pd.Timedelta(days=1)), 0),
        (counted.iloc[1:], 0),
        (counted, 1),
    ):
        with pytest.raises(ValueError, match="count tables come from other rows"):
            context_features(other, built, number)
    with pytest.raises(ValueError, match="not empty"):
        build_tables([counted], lambda rows: rows, ZYELL_CONTEXT, tmp_path / "tables")


def test_a_window_must_divide_the_hour_and_name_known_columns() -> None:
    with pytest.raises(ValueError, match="must divide 3600"):
        WindowCount("src", "dst", 7)
    with pytest.raises(ValueError, match="per key of"):
        WindowCount("proto", "dst", 60)
    with pytest.raises(ValueError, match="unknown row features"):
        ContextSpec(rows=("dst_multicast",), windows=())
