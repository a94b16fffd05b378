"""Traffic-context features (see schemas/context.py): one computation for training, evaluation,
scoring and the pyfunc, whatever the block size.

A window feature of a row depends on every row of its clock bucket, wherever the file's blocks
are cut, so it is computed in two passes:

1. `window_tuples`: each block's distinct (window, key, bucket, value) tuples; `cell_counts`
   reduces the tuples of all blocks to exact counts per (window, key, bucket).
2. `context_features`: each block's rows look up the counts of their (key, bucket).

`build_tables` runs pass 1 out-of-core on a Dask cluster: each block writes its tuples to one
Parquet file per clock hour, then each hour is reduced on its own to one count file. Pass 2
(`context_features` with `CountTables`) reads the count files of the hours a block touches. Memory follows
a block and an hour of traffic, never the file. For one frame in memory (the pyfunc, tests,
benchmarks), `frame_context` runs both passes without Dask or files. Both give the same values.
"""

import functools
import shutil
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from distributed import Client

from schemas.context import PARTITION_SECONDS, ContextSpec
from tasks.ingest_lines import Block
from tasks.ingest_parse import LINE_COLUMN, parse_block, split_set_aside

TUPLE_COLUMNS = ("window", "key", "bucket", "value")
TUPLES_DIR, COUNTS_DIR = "tuples", "counts"
HOURS_CACHED = 4  # blocks of a time-ordered file touch one or two hours; keep a few


@dataclass(frozen=True)
class Identifiers:
    """The identifier columns as numbers: IPv4 addresses as 32-bit integers (in uint64, to shift)."""

    seconds: np.ndarray  # int64, since the epoch
    src: np.ndarray
    dst: np.ndarray
    spt: np.ndarray  # int64
    dpt: np.ndarray  # int64


def ipv4_numbers(addresses: pd.Series) -> np.ndarray:
    """Dotted IPv4 addresses as integers; each distinct address is parsed once."""
    codes, distinct = pd.factorize(addresses)
    octets = np.array([address.split(".") for address in distinct], dtype=np.uint64).reshape(-1, 4)
    shifts = np.array([24, 16, 8, 0], dtype=np.uint64)
    return np.bitwise_or.reduce(octets << shifts, axis=1)[codes]


def epoch_seconds(times: pd.Series) -> np.ndarray:
    return pd.to_datetime(times).to_numpy(dtype="datetime64[s]").astype(np.int64)


def identifiers(rows: pd.DataFrame, spec: ContextSpec) -> Identifiers:
    return Identifiers(
        seconds=epoch_seconds(rows[spec.time]),
        src=ipv4_numbers(rows[spec.src]),
        dst=ipv4_numbers(rows[spec.dst]),
        spt=rows[spec.spt].to_numpy(dtype=np.int64),
        dpt=rows[spec.dpt].to_numpy(dtype=np.int64),
    )


_8, _24, _32 = np.uint64(8), np.uint64(24), np.uint64(32)

ROW_FEATURE_OF: dict[str, Callable[[Identifiers], np.ndarray]] = {
    "dst_broadcast": lambda ids: np.isin(ids.dst & np.uint64(255), np.array([0, 255], dtype=np.uint64)),
    "dst_in_src_24": lambda ids: (ids.src >> _8) == (ids.dst >> _8),
    "zero_ports": lambda ids: (ids.spt == 0) & (ids.dpt == 0),
}
KEY_OF: dict[str, Callable[[Identifiers], np.ndarray]] = {
    "src": lambda ids: ids.src,
    "dst": lambda ids: ids.dst,
    "src_dst": lambda ids: (ids.src << _32) | ids.dst,
    "src_dst24": lambda ids: (ids.src << _24) | (ids.dst >> _8),
}
VALUE_OF: dict[str, Callable[[Identifiers], np.ndarray]] = {
    "src": lambda ids: ids.src,
    "src24": lambda ids: ids.src >> _8,
    "dst": lambda ids: ids.dst,
    "dst24": lambda ids: ids.dst >> _8,
    "dpt": lambda ids: ids.dpt.astype(np.uint64),
}


def buckets_per_hour(seconds: int) -> int:
    return PARTITION_SECONDS // seconds


@dataclass(frozen=True)
class Group:
    """The windows that share a key and a width, and so their cells (key, bucket)."""

    key: str
    seconds: int
    windows: tuple[int, ...]  # indices into the spec's windows


def window_groups(spec: ContextSpec) -> list[Group]:
    found: dict[tuple[str, int], list[int]] = {}
    for index, window in enumerate(spec.windows):
        found.setdefault((window.key, window.seconds), []).append(index)
    return [Group(key, seconds, tuple(indices)) for (key, seconds), indices in found.items()]


def packed_distinct(cells: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (cell, value) pairs of non-negative integer cells and any values, as
    (cells, value positions in `values`)."""
    value_codes, distinct_values = pd.factorize(values)
    width = max(len(distinct_values), 1)
    if cells.max(initial=0) >= np.iinfo(np.int64).max // width:
        raise OverflowError("too many cells and values to pack in 64 bits")
    packed = pd.unique(cells * width + value_codes)
    return packed // width, distinct_values[packed % width]


# ---------------------------------------------------------------- pass 1: tuples and counts


def window_tuples(rows: pd.DataFrame, spec: ContextSpec) -> pd.DataFrame:
    """The distinct (window, key, bucket, value) tuples of some rows; `window` indexes
    `spec.windows`, `bucket` counts windows since the epoch."""
    ids = identifiers(rows, spec)
    parts = [empty_tuples()]
    for group in window_groups(spec):
        key_codes, keys = pd.factorize(KEY_OF[group.key](ids))
        buckets = ids.seconds // group.seconds
        first = buckets.min(initial=0)
        places = int(buckets.max(initial=0) - first) + 1
        cells = key_codes.astype(np.int64) * places + (buckets - first)
        for index in group.windows:
            distinct, values = packed_distinct(cells, VALUE_OF[spec.windows[index].value](ids))
            part = {
                "window": np.full(len(distinct), index, dtype=np.int16),
                "key": keys[distinct // places],
                "bucket": first + distinct % places,
                "value": values,
            }
            parts.append(pd.DataFrame(part))
    return pd.concat(parts, ignore_index=True)


def empty_tuples() -> pd.DataFrame:
    types = {"window": np.int16, "key": np.uint64, "bucket": np.int64, "value": np.uint64}
    return pd.DataFrame({name: np.zeros(0, dtype=kind) for name, kind in types.items()})


def tuple_hours(tuples: pd.DataFrame, spec: ContextSpec) -> np.ndarray:
    """The clock hour (since the epoch) of each tuple's bucket."""
    per_hour = np.array([buckets_per_hour(w.seconds) for w in spec.windows], dtype=np.int64)
    return tuples["bucket"].to_numpy() // per_hour[tuples["window"].to_numpy()]


def cell_counts(tuples: pd.DataFrame, spec: ContextSpec) -> pd.DataFrame:
    """Exact distinct values per cell, from the tuples of every block that has rows in the
    cells: one row per (group, key, bucket), one count column per window (0 outside its group)."""
    window_of = tuples["window"].to_numpy()
    parts = [empty_counts(spec)]
    for number, group in enumerate(window_groups(spec)):
        mine = np.isin(window_of, group.windows)
        key_codes, keys = pd.factorize(tuples["key"].to_numpy()[mine])
        buckets = tuples["bucket"].to_numpy()[mine]
        first = buckets.min(initial=0)
        places = int(buckets.max(initial=0) - first) + 1
        cells = key_codes.astype(np.int64) * places + (buckets - first)
        cell_codes, present = pd.factorize(cells)
        part = {"group": np.full(len(present), number, dtype=np.int16)}
        part |= {"key": keys[present // places], "bucket": first + present % places}
        counts = dict.fromkeys((w.name for w in spec.windows), np.zeros(len(present), dtype=np.int32))
        for index in group.windows:
            window = window_of[mine] == index
            distinct, _ = packed_distinct(cell_codes[window], tuples["value"].to_numpy()[mine][window])
            counts[spec.windows[index].name] = np.bincount(distinct, minlength=len(present)).astype(np.int32)
        parts.append(pd.DataFrame(part | counts))
    return pd.concat(parts, ignore_index=True)


def empty_counts(spec: ContextSpec) -> pd.DataFrame:
    types = {"group": np.int16, "key": np.uint64, "bucket": np.int64} | {
        w.name: np.int32 for w in spec.windows
    }
    return pd.DataFrame({name: np.zeros(0, dtype=kind) for name, kind in types.items()})


# ---------------------------------------------------------------- pass 2: lookups


class CountTables:
    """Pass 1's counts, read by clock hour: `load(hour)` gives that hour's `cell_counts`; the
    last few hours read are kept."""

    def __init__(self, load: Callable[[int], pd.DataFrame], spec: ContextSpec) -> None:
        self.load, self.spec = load, spec
        self._hours: OrderedDict[int, pd.DataFrame] = OrderedDict()

    @classmethod
    def in_memory(cls, tuples: pd.DataFrame, spec: ContextSpec) -> "CountTables":
        counts = cell_counts(tuples, spec)
        per_hour = np.array([buckets_per_hour(g.seconds) for g in window_groups(spec)], dtype=np.int64)
        hours = counts["bucket"].to_numpy() // per_hour[counts["group"].to_numpy()]
        by_hour = {int(hour): part for hour, part in counts.groupby(hours, sort=False)}
        return cls(lambda hour: by_hour.get(hour, counts.iloc[:0]), spec)

    def hours(self, hours: np.ndarray) -> pd.DataFrame:
        """The counts of some hours."""
        for hour in hours:
            if hour not in self._hours:
                self._hours[hour] = self.load(int(hour))
            self._hours.move_to_end(hour)
        tables = [self._hours[hour] for hour in hours]
        while len(self._hours) > max(HOURS_CACHED, len(hours)):
            self._hours.popitem(last=False)
        return tables[0] if len(tables) == 1 else pd.concat(tables, ignore_index=True)

    def window_values(self, ids: Identifiers) -> dict[str, np.ndarray]:
        """Every window feature of some rows."""
        table = self.hours(np.unique(ids.seconds // PARTITION_SECONDS))
        group_of = table["group"].to_numpy()
        values = {}
        for number, group in enumerate(window_groups(self.spec)):
            mine = table[group_of == number]
            found = cell_positions(mine, KEY_OF[group.key](ids), ids.seconds // group.seconds)
            for index in group.windows:
                name = self.spec.windows[index].name
                values[name] = np.where(found >= 0, mine[name].to_numpy()[found.clip(min=0)], -1)
        missing = [name for name, counts in values.items() if (counts < 0).any()]
        if missing:
            raise ValueError(f"rows without counts for {missing}: the count tables come from other rows")
        return values


def cell_positions(table: pd.DataFrame, keys: np.ndarray, buckets: np.ndarray) -> np.ndarray:
    """The position in `table` of each (key, bucket); -1 where it has none."""
    key_codes, distinct = pd.factorize(keys)
    first = buckets.min(initial=0)
    places = int(buckets.max(initial=0) - first) + 1
    table_codes = pd.Index(distinct).get_indexer(table["key"].to_numpy())
    table_places = table["bucket"].to_numpy() - first
    known = np.flatnonzero((table_codes >= 0) & (table_places >= 0) & (table_places < places))
    if not len(known):
        return np.full(len(keys), -1)
    cells = pd.Index(table_codes[known].astype(np.int64) * places + table_places[known])
    found = cells.get_indexer(key_codes.astype(np.int64) * places + (buckets - first))
    return np.where(found >= 0, known[found.clip(min=0)], -1)


def context_features(rows: pd.DataFrame, tables: CountTables) -> pd.DataFrame:
    """Pass 2: the context features of some rows (any block of the rows pass 1 counted), as int32
    columns in `feature_names` order, on the rows' index."""
    if rows.empty:
        return pd.DataFrame(
            {name: np.zeros(0, np.int32) for name in tables.spec.feature_names}, index=rows.index
        )
    ids = identifiers(rows, tables.spec)
    values = {name: ROW_FEATURE_OF[name](ids) for name in tables.spec.rows}
    values |= tables.window_values(ids)
    return pd.DataFrame(
        {name: values[name].astype(np.int32) for name in tables.spec.feature_names}, index=rows.index
    )


def frame_context(rows: pd.DataFrame, spec: ContextSpec) -> pd.DataFrame:
    """Both passes over one frame in memory: the frame is the whole file."""
    return context_features(rows, CountTables.in_memory(window_tuples(rows, spec), spec))


# ---------------------------------------------------------------- pass 1 out-of-core


def valid_block_rows(block: Block) -> pd.DataFrame:
    """A file block's rows that ingest keeps (and scoring scores): neither quarantined nor out of scope."""
    rows = parse_block(block)
    rejected, outside = split_set_aside(rows)
    return rows.loc[~rejected & ~outside].reset_index(drop=True)


def stored_rows(path: Path, spec: ContextSpec) -> pd.DataFrame:
    """The identifier columns and line numbers of one Parquet part of the store."""
    return pd.read_parquet(path, columns=[*spec.columns, LINE_COLUMN])


def write_block_tuples(source, read: Callable, spec: ContextSpec, folder: Path, number: int) -> list[int]:
    """Pass 1, map: one block's tuples, one Parquet file per clock hour; returns the hours."""
    tuples = window_tuples(read(source), spec)
    hours = tuple_hours(tuples, spec)
    for hour in np.unique(hours):
        target = folder / TUPLES_DIR / f"hour={hour}"
        target.mkdir(parents=True, exist_ok=True)
        tuples[hours == hour].to_parquet(target / f"block-{number:05d}.parquet", index=False)
    return [int(hour) for hour in np.unique(hours)]


def count_hour(folder: Path, hour: int, spec: ContextSpec) -> int:
    """Pass 1, reduce: one clock hour's tuples of every block to its count file; returns its rows."""
    source = folder / TUPLES_DIR / f"hour={hour}"
    tuples = pd.concat(
        [pd.read_parquet(path) for path in sorted(source.glob("*.parquet"))], ignore_index=True
    )
    counts = cell_counts(tuples, spec)
    counts.to_parquet(count_file(folder, hour), index=False)
    shutil.rmtree(source)
    return len(counts)


def count_file(folder: Path, hour: int) -> Path:
    return folder / COUNTS_DIR / f"hour={hour}.parquet"


def read_hour(folder: Path, hour: int) -> pd.DataFrame:
    path = count_file(folder, hour)
    if not path.exists():
        raise ValueError(f"{folder}: no counts of hour {hour}: the count tables come from other rows")
    return pd.read_parquet(path)


def build_tables(
    sources: Iterable, read: Callable, spec: ContextSpec, folder: Path, client: Client | None = None
) -> CountTables:
    """Pass 1 over every block of one file or partition (`read(source)` gives a block's rows):
    exact count tables in `folder`, which must be empty or new and seen by every worker.
    Without a client, the blocks are read one after another in this process."""
    sources = list(sources)
    if folder.exists() and any(folder.iterdir()):
        raise ValueError(f"{folder}: not empty; count tables need a folder of their own")
    (folder / COUNTS_DIR).mkdir(parents=True)
    numbers = range(len(sources))
    if client is None:
        hours = [write_block_tuples(s, read, spec, folder, n) for s, n in zip(sources, numbers, strict=True)]
        distinct = sorted({hour for block in hours for hour in block})
        for hour in distinct:
            count_hour(folder, hour, spec)
    else:
        n = len(sources)
        written = client.map(
            write_block_tuples, sources, [read] * n, [spec] * n, [folder] * n, numbers, pure=False
        )
        distinct = sorted({hour for block in client.gather(written) for hour in block})
        client.gather(
            client.map(count_hour, [folder] * len(distinct), distinct, [spec] * len(distinct), pure=False)
        )
    return tables_in(folder, spec)


def tables_in(folder: Path, spec: ContextSpec) -> CountTables:
    """The count tables that `build_tables` wrote to `folder`."""
    return CountTables(functools.partial(read_hour, folder), spec)


def write_block_features(source, read: Callable, spec: ContextSpec, folder: Path, target: Path) -> int:
    """Pass 2 of one block, on a worker: its rows' `line` and features, written to `target`."""
    rows = read(source)
    features = context_features(rows, tables_in(folder, spec))
    features.insert(0, LINE_COLUMN, rows[LINE_COLUMN].to_numpy())
    features.to_parquet(target, index=False)
    return len(features)


def write_context(
    sources: list, read: Callable, spec: ContextSpec, folder: Path, out_dir: Path, client: Client
) -> list[Path]:
    """Both passes on the cluster, for a store partition's parts (or a file's blocks): each
    block's features as `out_dir/part-NNNNN.parquet`, keyed by `line`; count tables in `folder`."""
    build_tables(sources, read, spec, folder, client)
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = [out_dir / f"part-{number:05d}.parquet" for number in range(len(sources))]
    n = len(sources)
    client.gather(
        client.map(write_block_features, sources, [read] * n, [spec] * n, [folder] * n, targets, pure=False)
    )
    return targets
