"""The windowed distinct counters against a plain-loop recomputation."""

import numpy as np
import pytest

from schemas.firewall import COUNTER_COLUMNS
from simulator.counters import (
    CONNECTION_WINDOW_ROWS,
    SHORT_WINDOW_SECONDS,
    SLOW_WINDOW_SECONDS,
    compute_counters,
)

KEYED = {
    "cnt_dst": ("src", "dst"),
    "cnt_src": ("dst", "src"),
    "cnt_serv_src": ("src", "dpt"),
    "cnt_serv_dst": ("dst", "dpt"),
}


def naive_counters(seconds, src, dst, dpt) -> dict[str, list[int]]:
    """Every counter by its definition: look back over the stream, row by row."""
    columns = {"src": src, "dst": dst, "dpt": dpt}
    result = {name: [] for name in COUNTER_COLUMNS}
    for i in range(len(seconds)):
        windows = {
            "": lambda j, i=i: seconds[i] - seconds[j] < SHORT_WINDOW_SECONDS,
            "_slow": lambda j, i=i: seconds[i] - seconds[j] < SLOW_WINDOW_SECONDS,
            "_conn": lambda j, i=i: i - j < CONNECTION_WINDOW_ROWS,
        }
        for base, (key, value) in KEYED.items():
            for suffix, inside in windows.items():
                seen = {
                    columns[value][j]
                    for j in range(i + 1)
                    if columns[key][j] == columns[key][i] and inside(j)
                }
                result[base + suffix].append(len(seen))
    return result


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_counters_match_naive_loop_on_random_streams(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 700
    seconds = np.sort(rng.integers(0, 150, n))
    src, dst, dpt = rng.integers(0, 8, n), rng.integers(0, 12, n), rng.integers(0, 6, n)
    expected = naive_counters(seconds, src, dst, dpt)
    actual = compute_counters(seconds, src, dst, dpt)
    for name in COUNTER_COLUMNS:
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)


def test_counters_count_row_itself_and_handle_ties() -> None:
    seconds = np.array([5, 5, 5, 6])
    src = np.array([1, 1, 1, 1])
    dst = np.array([10, 11, 10, 12])
    dpt = np.array([80, 80, 443, 22])
    counters = compute_counters(seconds, src, dst, dpt)
    assert counters["cnt_dst"].tolist() == [1, 2, 2, 3]
    assert counters["cnt_serv_src"].tolist() == [1, 1, 2, 3]
    assert counters["cnt_src"].tolist() == [1, 1, 1, 1]


def test_short_window_forgets_rows_two_seconds_old() -> None:
    seconds = np.array([0, 1, 2, 3])
    src = np.zeros(4, dtype=int)
    dst = np.arange(4)
    counters = compute_counters(seconds, src, dst, dst)
    assert counters["cnt_dst"].tolist() == [1, 2, 2, 2]
    assert counters["cnt_dst_slow"].tolist() == [1, 2, 3, 4]


def test_counters_of_empty_and_single_row_streams() -> None:
    empty = np.array([], dtype=np.int64)
    assert all(len(v) == 0 for v in compute_counters(empty, empty, empty, empty).values())
    one = np.array([3])
    assert all(v.tolist() == [1] for v in compute_counters(one, one, one, one).values())
