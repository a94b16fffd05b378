"""The twelve `cnt_*` traffic counters, computed from a day's connection stream.

Definitions (documented in `simulator/TRAFFIC_MODEL.md`): for row i of a day, in stream order,
a window holds the rows j <= i of the same day that are

* time windows: ``t_i - t_j < T`` seconds, with T = 2 (plain) or T' = 60 (``_slow``);
* connection window: ``i - j < N``, the last N = 100 rows of the stream (``_conn``).

Among the rows of the window that share row i's key, each counter counts distinct values:

=================  =========  =====================
counter            key        distinct value
=================  =========  =====================
cnt_dst            src        dst
cnt_src            dst        src
cnt_serv_src       src        dpt
cnt_serv_dst       dst        dpt
=================  =========  =====================

Every count includes row i itself, so it is at least 1.
"""

from dataclasses import dataclass
from typing import Final

import numpy as np

SHORT_WINDOW_SECONDS: Final[int] = 2
SLOW_WINDOW_SECONDS: Final[int] = 60
CONNECTION_WINDOW_ROWS: Final[int] = 100


@dataclass(frozen=True)
class KeyOrder:
    """Rows grouped by key, each group in stream order."""

    order: np.ndarray  # stream index of each sorted position
    group: np.ndarray  # dense group number of each sorted position


def sort_by_key(keys: np.ndarray) -> KeyOrder:
    """Stable-sort rows by key, so each key's rows stay in stream order."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    group = np.concatenate(([0], np.cumsum(sorted_keys[1:] != sorted_keys[:-1])))
    return KeyOrder(order=order, group=group)


def window_starts(key_order: KeyOrder, coords: np.ndarray, width: int) -> np.ndarray:
    """Sorted position where each row's window starts: first same-key row with coord > own - width.

    `coords` must be non-decreasing in stream order (seconds, or the row index).
    """
    coord = coords[key_order.order].astype(np.int64)
    coord -= coord.min(initial=0)
    group_stride = int(coord.max(initial=0)) + width + 1
    # Offsetting each group by a stride makes one global search stay inside the group.
    composite = key_order.group.astype(np.int64) * group_stride + coord
    return np.searchsorted(composite, composite - width, side="right")


def previous_same_value(key_order: KeyOrder, values: np.ndarray) -> np.ndarray:
    """Sorted position of the previous row with the same key and value, or -1."""
    n = len(values)
    # Values are IPv4 addresses or ports, so they fit below 2**32 beside the group number.
    pair = (key_order.group.astype(np.int64) << 32) | values[key_order.order].astype(np.int64)
    # A stable sort keeps each pair's rows in position order.
    by_pair = np.argsort(pair, kind="stable")
    same_pair = pair[by_pair][1:] == pair[by_pair][:-1]
    previous = np.full(n, -1, dtype=np.int64)
    previous[by_pair[1:][same_pair]] = by_pair[:-1][same_pair]
    return previous


def count_distinct_in_windows(key_order: KeyOrder, starts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Distinct `values` in each row's window, returned in stream order.

    A value counts once in the window [lo_i, i] at its first occurrence j there, that is
    where its previous occurrence lies before lo_i. As window starts never decrease, the
    rows i for which j is such a first occurrence form one range, so a difference array
    and a cumulative sum count all windows in O(n log n).
    """
    n = len(values)
    positions = np.arange(n)
    previous = previous_same_value(key_order, values)
    first_row = np.maximum(positions, np.searchsorted(starts, previous, side="right"))
    last_row = np.searchsorted(starts, positions, side="right") - 1
    counted = first_row <= last_row
    delta = np.bincount(first_row[counted], minlength=n + 1) - np.bincount(
        last_row[counted] + 1, minlength=n + 1
    )
    counts = np.empty(n, dtype=np.int64)
    counts[key_order.order] = np.cumsum(delta[:n])
    return counts


def compute_counters(
    seconds: np.ndarray, src: np.ndarray, dst: np.ndarray, dpt: np.ndarray
) -> dict[str, np.ndarray]:
    """All twelve counters of one day's stream, keyed by column name."""
    windows = {
        "": (seconds, SHORT_WINDOW_SECONDS),
        "_slow": (seconds, SLOW_WINDOW_SECONDS),
        "_conn": (np.arange(len(seconds)), CONNECTION_WINDOW_ROWS),
    }
    per_key = {
        "src": (src, {"cnt_dst": dst, "cnt_serv_src": dpt}),
        "dst": (dst, {"cnt_src": src, "cnt_serv_dst": dpt}),
    }
    counters: dict[str, np.ndarray] = {}
    for keys, counted in per_key.values():
        key_order = sort_by_key(keys)
        for suffix, (coords, width) in windows.items():
            starts = window_starts(key_order, coords, width)
            for name, values in counted.items():
                counters[name + suffix] = count_distinct_in_windows(key_order, starts, values)
    return counters
