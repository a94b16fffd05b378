"""Traffic-context features (see schemas/context.py): one computation for training, evaluation,
scoring and the pyfunc, whatever the block size.

A window feature of a row depends on every row of its clock bucket, wherever the file's blocks
are cut, and every bucket lies inside one clock hour. So `all_features` computes the features
of any set of rows that holds whole hours, and the out-of-core path shuffles rows by hour:

1. map (`write_block_ids`): each block's identifiers, as numbers, to one Arrow file per hour;
2. reduce (`count_hour`): each hour's rows of every block at once, through `all_features`, to
   one Arrow file per block and hour;
3. lookup (`context_features`): a block's rows take their features from its files, checked to
   be the same rows.

`build_tables` runs 1 and 2, on a Dask cluster or in this process. Memory follows a block and
an hour of traffic, never the file. For one frame in memory (the pyfunc, tests, benchmarks),
`frame_context` calls `all_features` on it directly: the same values.
"""

import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as arrow
from distributed import Client
from pyarrow import compute, feather

from schemas.context import PARTITION_SECONDS, ContextSpec
from tasks.ingest.lines import Block
from tasks.ingest.parse import LINE_COLUMN, parse_block, split_set_aside


@dataclass(frozen=True)
class Identifiers:
    """The identifier columns as numbers: IPv4 addresses as 32-bit integers (in uint64, to shift)."""

    seconds: np.ndarray  # int64, since the epoch
    src: np.ndarray
    dst: np.ndarray
    spt: np.ndarray  # int64
    dpt: np.ndarray  # int64


def ipv4_numbers(addresses: pd.Series) -> np.ndarray:
    """Dotted IPv4 addresses (validated by ingest) as integers; each distinct address is parsed
    once, in Arrow."""
    array = arrow.array(addresses, type=arrow.string())
    if isinstance(array, arrow.ChunkedArray):  # a pandas column backed by Arrow
        array = array.combine_chunks()
    encoded = compute.dictionary_encode(array)
    octets = compute.cast(
        compute.list_flatten(compute.split_pattern(encoded.dictionary, ".")), arrow.uint64()
    )
    shifts = np.array([24, 16, 8, 0], dtype=np.uint64)
    numbers = np.bitwise_or.reduce(octets.to_numpy().reshape(-1, 4) << shifts, axis=1)
    return numbers[encoded.indices.to_numpy()]


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
    "dst": lambda ids: ids.dst,
    "dpt": lambda ids: ids.dpt.astype(np.uint64),
}
# A /24 is its address shifted: its distinct pairs come from the address's, not from every row.
COARSER_VALUE: dict[str, tuple[str, int]] = {"src24": ("src", 8), "dst24": ("dst", 8)}


@dataclass(frozen=True)
class Cells:
    """The (key, bucket) cells of some rows at one width, as dense codes."""

    width: int
    of_row: np.ndarray  # each row's cell
    keys: np.ndarray  # each cell's key code
    buckets: np.ndarray  # each cell's bucket (windows since the epoch)
    base: "Cells | None" = None  # the finer cells these were merged from
    of_base: np.ndarray | None = None  # each base cell's cell here


def dense_cells(keys: np.ndarray, buckets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense codes of (key, bucket) pairs: (each pair's code, each code's key, its bucket). A
    key that packs with the bucket in 63 bits is hashed once, with it; a wider one is coded first."""
    first = buckets.min(initial=0)
    places = int(buckets.max(initial=0) - first) + 1
    if len(keys) and int(keys.max()) >= np.iinfo(np.int64).max // places:
        keys = pd.factorize(keys)[0]
    codes, distinct = pd.factorize(keys.astype(np.int64) * places + (buckets - first))
    return codes.astype(np.int64), distinct // places, first + distinct % places


def key_cells(keys: np.ndarray, seconds: np.ndarray, widths: list[int]) -> dict[int, Cells]:
    """The cells of one key at each width. A width that a finer one divides merges the finer
    cells (a few per key) instead of hashing every row again."""
    levels: dict[int, Cells] = {}
    for width in sorted(widths):
        base = next((c for w, c in reversed(levels.items()) if width % w == 0), None)
        if base is None:
            levels[width] = Cells(width, *dense_cells(keys, seconds // width))
        else:
            of_base, cell_keys, buckets = dense_cells(base.keys, base.buckets // (width // base.width))
            levels[width] = Cells(width, of_base[base.of_row], cell_keys, buckets, base, of_base)
    return levels


VALUE_BITS = 32  # every value (an IPv4 address, a /24, a port) fits; a cell code takes the rest
VALUE_MASK = (1 << VALUE_BITS) - 1


class DistinctPairs:
    """The distinct (cell, value) pairs of some rows, packed as `cell << 32 | value`, for every
    cells and value asked; each is derived from the cheapest pairs known (a coarser value from
    its address's pairs, coarser cells from their base cells' pairs), every row hashed only for
    the finest."""

    def __init__(self, ids: Identifiers) -> None:
        self.ids, self.found = ids, {}

    def __call__(self, cells: Cells, value: str) -> np.ndarray:
        key = (id(cells), value)
        if key not in self.found:
            self.found[key] = self.derive(cells, value)
        return self.found[key]

    def derive(self, cells: Cells, value: str) -> np.ndarray:
        if value in COARSER_VALUE:
            name, shift = COARSER_VALUE[value]
            below = self(cells, name)
            return pd.unique((below & ~VALUE_MASK) | ((below & VALUE_MASK) >> shift))
        if cells.base is not None:
            below = self(cells.base, value)
            return pd.unique((cells.of_base[below >> VALUE_BITS] << VALUE_BITS) | (below & VALUE_MASK))
        return pd.unique((cells.of_row << VALUE_BITS) | self.row_values(value))

    def row_values(self, name: str) -> np.ndarray:
        values = VALUE_OF[name](self.ids).astype(np.int64)
        if len(values) and values.max() >> VALUE_BITS:
            raise OverflowError(f"context value {name} above {VALUE_BITS} bits")
        return values


def window_counts(ids: Identifiers, spec: ContextSpec) -> dict[str, np.ndarray]:
    """Every window feature of rows that hold whole buckets: distinct values per (key, bucket)."""
    counts = {}
    for key in dict.fromkeys(w.key for w in spec.windows):
        mine = [w for w in spec.windows if w.key == key]
        levels = key_cells(KEY_OF[key](ids), ids.seconds, list({w.seconds for w in mine}))
        pairs = DistinctPairs(ids)
        for window in mine:
            cells = levels[window.seconds]
            per_cell = np.bincount(pairs(cells, window.value) >> VALUE_BITS, minlength=len(cells.keys))
            counts[window.name] = per_cell[cells.of_row].astype(np.int32)
    return counts


def all_features(ids: Identifiers, spec: ContextSpec) -> dict[str, np.ndarray]:
    """Every context feature of rows that hold whole buckets, as int32 arrays."""
    values = {name: ROW_FEATURE_OF[name](ids).astype(np.int32) for name in spec.rows}
    return values | window_counts(ids, spec)


def features_frame(values: dict[str, np.ndarray], spec: ContextSpec, index: pd.Index) -> pd.DataFrame:
    return pd.DataFrame({name: values[name] for name in spec.feature_names}, index=index)


def frame_context(rows: pd.DataFrame, spec: ContextSpec) -> pd.DataFrame:
    """The context features of one frame in memory: the frame is the whole file."""
    if rows.empty:
        return features_frame({n: np.zeros(0, np.int32) for n in spec.feature_names}, spec, rows.index)
    return features_frame(all_features(identifiers(rows, spec), spec), spec, rows.index)


# ---------------------------------------------------------------- out-of-core: map, reduce, lookup

IDS_DIR, FEATURES_DIR = "ids", "features"
BLOCK, ROW, SECONDS = "block", "row", "seconds"
IPV4_TYPE = np.uint32  # an address fits in 32 bits; half the bytes of the shuffle


def valid_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The parsed rows that ingest keeps (and scoring scores): neither quarantined nor out of scope."""
    rejected, outside = split_set_aside(rows)
    return rows.loc[~rejected & ~outside].reset_index(drop=True)


def valid_block_rows(block: Block) -> pd.DataFrame:
    return valid_rows(parse_block(block))


def stored_rows(path: Path, spec: ContextSpec) -> pd.DataFrame:
    """The identifier columns and line numbers of one Parquet part of the store."""
    return pd.read_parquet(path, columns=[*spec.columns, LINE_COLUMN])


def write_arrow(frame: pd.DataFrame, path: Path) -> None:
    feather.write_feather(frame, path, compression="lz4")


def read_arrows(paths: Iterable[Path]) -> pd.DataFrame:
    return pd.concat([feather.read_feather(path) for path in paths], ignore_index=True)


def id_frame(rows: pd.DataFrame, spec: ContextSpec, number: int) -> pd.DataFrame:
    """A block's identifiers as numbers, with the block's number and each row's position (and
    line, when the rows have one): what the hour's reduce needs, and what the lookup checks."""
    ids = identifiers(rows, spec)
    frame = pd.DataFrame(
        {
            BLOCK: np.full(len(rows), number, dtype=np.int32),
            ROW: np.arange(len(rows), dtype=np.int32),
            SECONDS: ids.seconds,
            "src": ids.src.astype(IPV4_TYPE),
            "dst": ids.dst.astype(IPV4_TYPE),
            "spt": ids.spt.astype(np.int32),
            "dpt": ids.dpt.astype(np.int32),
        }
    )
    if LINE_COLUMN in rows:
        frame[LINE_COLUMN] = rows[LINE_COLUMN].to_numpy(dtype=np.int64)
    return frame


def write_block_ids(source, read: Callable, spec: ContextSpec, folder: Path, number: int) -> list[int]:
    """Map: one block's identifiers, one file per clock hour; returns the hours."""
    frame = id_frame(read(source), spec, number)
    hours = frame[SECONDS].to_numpy() // PARTITION_SECONDS
    distinct = np.unique(hours)
    for hour in distinct:
        target = folder / IDS_DIR / f"hour={hour}"
        target.mkdir(parents=True, exist_ok=True)
        write_arrow(frame[hours == hour].reset_index(drop=True), target / f"block-{number:05d}.arrow")
    return [int(hour) for hour in distinct]


def frame_ids(frame: pd.DataFrame) -> Identifiers:
    return Identifiers(
        seconds=frame[SECONDS].to_numpy(),
        src=frame["src"].to_numpy().astype(np.uint64),
        dst=frame["dst"].to_numpy().astype(np.uint64),
        spt=frame["spt"].to_numpy().astype(np.int64),
        dpt=frame["dpt"].to_numpy().astype(np.int64),
    )


def count_hour(folder: Path, hour: int, spec: ContextSpec) -> int:
    """Reduce: one clock hour's rows of every block, through `all_features`, to one file per
    block; returns the hour's rows."""
    source = folder / IDS_DIR / f"hour={hour}"
    frame = read_arrows(sorted(source.glob("*.arrow")))
    kept = [BLOCK, ROW, SECONDS, *([LINE_COLUMN] if LINE_COLUMN in frame else [])]
    result = pd.concat([frame[kept], pd.DataFrame(all_features(frame_ids(frame), spec))], axis=1)
    for number, rows in result.groupby(BLOCK, sort=False):
        target = block_dir(folder, number)
        target.mkdir(parents=True, exist_ok=True)
        write_arrow(rows.drop(columns=BLOCK).reset_index(drop=True), target / f"hour={hour}.arrow")
    shutil.rmtree(source)
    return len(frame)


def block_dir(folder: Path, number: int) -> Path:
    return folder / FEATURES_DIR / f"block={number}"


def block_features(directory: Path) -> pd.DataFrame:
    """A block's rows' features (from its `block_dir`), in row order, with their seconds (and
    lines)."""
    files = sorted(directory.glob("*.arrow"))
    if not files:
        raise ValueError(f"{directory}: no features; the count tables come from other rows")
    return read_arrows(files).sort_values(ROW, kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class ContextTables:
    """The features that `build_tables` wrote, block by block."""

    folder: Path
    spec: ContextSpec


def build_tables(
    sources: Iterable, read: Callable, spec: ContextSpec, folder: Path, client: Client | None = None
) -> ContextTables:
    """Map and reduce over every block of one file or partition (`read(source)` gives block
    number i's rows): each block's features in `folder`, which must be empty or new and seen by
    every worker. Without a client, the blocks are read one after another in this process."""
    sources = list(sources)
    if folder.exists() and any(folder.iterdir()):
        raise ValueError(f"{folder}: not empty; count tables need a folder of their own")
    folder.mkdir(parents=True, exist_ok=True)
    numbers = list(range(len(sources)))
    n = len(sources)
    if client is None:
        hours = [write_block_ids(s, read, spec, folder, i) for s, i in zip(sources, numbers, strict=True)]
        for hour in sorted({hour for block in hours for hour in block}):
            count_hour(folder, hour, spec)
    else:
        written = client.map(
            write_block_ids, sources, [read] * n, [spec] * n, [folder] * n, numbers, pure=False
        )
        distinct = sorted({hour for block in client.gather(written) for hour in block})
        m = len(distinct)
        client.gather(client.map(count_hour, [folder] * m, distinct, [spec] * m, pure=False))
    return ContextTables(folder, spec)


def context_features(rows: pd.DataFrame, tables: ContextTables, number: int) -> pd.DataFrame:
    """Block `number`'s features, as int32 columns in `feature_names` order on the rows' index;
    `rows` must be the rows that `build_tables` read for that block."""
    spec = tables.spec
    if rows.empty:
        return frame_context(rows, spec)
    found = block_features(block_dir(tables.folder, number))
    if len(found) != len(rows) or not np.array_equal(
        found[SECONDS].to_numpy(), epoch_seconds(rows[spec.time])
    ):
        raise ValueError(
            f"block {number}: not the rows that pass 1 read; the count tables come from other rows"
        )
    return features_frame({name: found[name].to_numpy() for name in spec.feature_names}, spec, rows.index)


def write_context(
    sources: list, read: Callable, spec: ContextSpec, folder: Path, client: Client
) -> list[Path]:
    """Map and reduce on the cluster for a store partition's parts (or a file's blocks): the
    folder of each block's features (see `block_features`)."""
    build_tables(sources, read, spec, folder, client)
    return [block_dir(folder, number) for number in range(len(sources))]
