"""Exact, stratified, hash-based train/validation/test split of the store, out-of-core.

Row split (`group: row`, the paper's): every row gets a key, a 64-bit hash of (seed, partition,
line). Within each class, rows are ranked by key; the lowest-ranked `round(0.2 n)` go to test,
the next `round(0.2 (n - n_test))` to validation and the rest to train. So each split holds its
share of every class to within one row. Only (class, key) pairs are gathered to find the
per-class thresholds (9 bytes a row).

Group split (`group: clock`): the rows of one clock block of one partition move together, so
the near-identical rows of one sweep or flood never sit on both sides (a row split leaks them,
and flatters the held-out figures, early stopping and the threshold). Only the rows per
(group, class) are gathered. Groups are taken in the order of a hash of (seed, group), the rarest
class first: each group holding the class goes to the split furthest below its share of that
class, so each class ends within one group of its share, unless groups already placed for a
rarer class carried more of it. Every class must reach every split, or the split fails naming it.

Either way the assignment depends only on the seed, the rows and the config, re-running gives
the same split, the rows are written partition by partition, and every split file carries each
row's seed-free `group` id, so that the manifest (`split.json`) tells for any stored row which
split it was in (`assigned_splits`).
"""

import fcntl
import functools
import hashlib
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from distributed import Client
from prefect import task

from schemas.context import ContextSpec
from schemas.datasets import ZYELL, DatasetSpec, get_dataset
from schemas.firewall import CLASS_NAMES, NORMAL
from schemas.training import SplitConfig
from tasks.errors import retry_if_transient
from tasks.ingest.parse import LINE_COLUMN, label_codes
from tasks.ingest.report import IngestReport
from tasks.ingest.store import check_store, part_dir, read_report, stored_parts
from tasks.model.context import block_features, stored_rows, write_context
from tasks.model.preprocess import encode_spec_features

SPLITS = ("train", "validation", "test")
ATTACK_SPLITS = ("train_attack", "validation_attack")
SPLIT_MANIFEST = "split.json"
DONE_MARKER = "_SUCCESS"
ROW_GROUP_ROWS = 65_536
SPLIT_CODE_VERSION = 3
ROW, CLOCK = "row", "clock"
GROUP_COLUMN = "group"
CONTEXT_DIR = "_context"  # working files of the context features, removed once the split is written


class SplitError(ValueError):
    """The chosen partitions cannot be split as asked."""


@dataclass(frozen=True)
class StorePart:
    """One Parquet file of one stored partition (a day, for ZYELL)."""

    partition: str  # the store folder, e.g. day=2020-12-03
    path: str
    dataset: str

    @property
    def number(self) -> int:
        """A stable 32-bit number of the partition, mixed into its rows' split keys."""
        return int.from_bytes(hashlib.sha256(self.partition.encode()).digest()[:4], "big")


def select_store_parts(
    store: Path, parts: list[str] | None, spec: DatasetSpec
) -> tuple[list[StorePart], dict[str, str]]:
    """The part files of the chosen (default: all labelled) partitions, and each one's source sha256.

    A partition that keeps no row (every row quarantined) fails the split, named, whether it was
    asked for or would be chosen by default: its file may have been a labelled day."""
    check_store(store, spec.name)
    chosen = parts or [p for p in stored_parts(store) if holds_labels_or_nothing(read_report(store, p))]
    files, hashes = [], {}
    for part in chosen:
        report = read_report(store, part)
        if report is None:
            raise SplitError(f"{part} is not in the store {store}")
        if not report.rows_kept:
            raise SplitError(
                f"{part} holds no usable row ({report.rows_read:,} read, {report.rows_quarantined:,} "
                "quarantined); re-ingest a good file, or name the days to train on (--partitions)"
            )
        if not report.classes:
            raise SplitError(f"{part} has no labels; it can be scored but not trained on")
        hashes[part] = report.sha256
        files += [
            StorePart(part, str(p), spec.name) for p in sorted(part_dir(store, part).glob("part-*.parquet"))
        ]
    if not files:
        raise SplitError(f"no labelled partitions to split in {store}")
    return files, hashes


def holds_labels_or_nothing(report: IngestReport) -> bool:
    """A partition the default selection takes: labelled, or keeping no row at all."""
    return bool(report.classes) or not report.rows_kept


def row_keys(seed: int, partition: int, lines: np.ndarray) -> np.ndarray:
    """A 64-bit hash (splitmix64 finaliser) of (seed, partition number, line) for every row."""
    with np.errstate(over="ignore"):
        x = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(partition) * np.uint64(
            0xBF58476D1CE4E5B9
        )
        z = lines.astype(np.uint64) + x
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def split_grouping(cfg: SplitConfig, spec: DatasetSpec) -> str:
    """`row` or `clock`: `auto` resolved for the dataset; `clock` needs a time column."""
    group = cfg.for_dataset(spec).group
    if group == CLOCK and not spec.time_column:
        raise SplitError(f"split group 'clock' needs a time column, and {spec.name} has none; use 'row'")
    return group


def group_ids(partition, lines: np.ndarray, times: np.ndarray | None, minutes: int | None) -> np.ndarray:
    """A seed-free 64-bit id of each row's group: (partition, line), or (partition, clock block)."""
    high = np.asarray(partition, dtype=np.uint64) << np.uint64(32)
    if minutes is None:
        return high | lines.astype(np.uint64)
    seconds = times.astype("datetime64[s]").astype(np.int64)
    return high | (seconds // (60 * minutes)).astype(np.uint64)


def read_keys(part: StorePart, seed: int) -> pd.DataFrame:
    spec = get_dataset(part.dataset)
    label = spec.label_column
    table = pq.read_table(part.path, columns=[label, LINE_COLUMN]).to_pandas()
    return pd.DataFrame(
        {
            "label": label_codes(table[label], spec),
            "key": row_keys(seed, part.number, table[LINE_COLUMN].to_numpy()),
        }
    )


def read_group_counts(part: StorePart, minutes: int) -> pd.DataFrame:
    """Rows per (clock group, class) of one store part."""
    spec = get_dataset(part.dataset)
    table = pq.read_table(part.path, columns=[spec.label_column, LINE_COLUMN, spec.time_column]).to_pandas()
    groups = group_ids(
        part.number, table[LINE_COLUMN].to_numpy(), table[spec.time_column].to_numpy(), minutes
    )
    frame = pd.DataFrame({"group": groups, "label": label_codes(table[spec.label_column], spec)})
    return frame.value_counts().rename("rows").reset_index()


def split_sizes(count: int, cfg: SplitConfig) -> tuple[int, int, int]:
    """(train, validation, test) rows of a class of `count` rows."""
    test = round(cfg.test_fraction * count)
    validation = round(cfg.validation_fraction * (count - test))
    return count - test - validation, validation, test


def class_thresholds(labels: np.ndarray, keys: np.ndarray, cfg: SplitConfig) -> dict[int, tuple[int, int]]:
    """Per class code: the largest test key and the largest validation key."""
    thresholds = {}
    for code, name in enumerate(CLASS_NAMES):
        class_keys = keys[labels == code]
        sizes = split_sizes(len(class_keys), cfg)
        if min(sizes) < 1:
            raise SplitError(
                f"class {name!r} has {len(class_keys)} rows, too few for a row in each of train, "
                f"validation and test (it would get {sizes})"
            )
        _, validation, test = sizes
        ordered = np.partition(class_keys, [test - 1, test + validation - 1])
        thresholds[code] = (int(ordered[test - 1]), int(ordered[test + validation - 1]))
    return thresholds


def assign_splits(labels: np.ndarray, keys: np.ndarray, thresholds: dict[int, tuple[int, int]]) -> np.ndarray:
    """0 train, 1 validation, 2 test, for every row."""
    test_max = np.array([thresholds[c][0] for c in range(len(CLASS_NAMES))], dtype=np.uint64)[labels]
    validation_max = np.array([thresholds[c][1] for c in range(len(CLASS_NAMES))], dtype=np.uint64)[labels]
    return np.where(keys <= test_max, 2, np.where(keys <= validation_max, 1, 0)).astype(np.int8)


def group_goals(count: int, cfg: SplitConfig) -> np.ndarray:
    """(train, validation, test) rows a class should get, at least one each."""
    return np.maximum(np.array(split_sizes(count, cfg)), 1)


def assign_groups(ids: np.ndarray, counts: np.ndarray, cfg: SplitConfig) -> np.ndarray:
    """0 train, 1 validation, 2 test for each group, given its rows per class (groups x classes).

    Rarest class first; its groups in the order of the seed's hash, each to a split that holds
    none of the class yet (train, then test, then validation), else to the split furthest below
    its share. A class of three episodes trains on one, chosen by the seed, and holds out two."""
    order = np.argsort(row_keys(cfg.seed, 0, ids), kind="stable")
    splits = np.full(len(ids), -1, dtype=np.int8)
    totals = counts.sum(axis=0)
    for code in np.argsort(totals, kind="stable"):
        goals = group_goals(int(totals[code]), cfg)
        have = np.bincount(splits[splits >= 0], weights=counts[splits >= 0, code], minlength=3)
        for index in order[(splits[order] < 0) & (counts[order, code] > 0)]:
            chosen = next_split(goals, have)
            splits[index] = chosen
            have[chosen] += counts[index, code]
    return splits


def next_split(goals: np.ndarray, have: np.ndarray) -> int:
    """The split the next group of a class goes to."""
    for split in (0, 2, 1):
        if have[split] == 0:
            return split
    return 2 - int(np.argmax((goals - have)[::-1]))  # ties: test, then validation


def check_group_splits(counts: np.ndarray, splits: np.ndarray, minutes: int) -> None:
    """Every class in every split, or a SplitError that names the class and why."""
    for code, name in enumerate(CLASS_NAMES):
        holding = counts[:, code] > 0
        missing = [SPLITS[s] for s in range(3) if not counts[holding & (splits == s), code].sum()]
        if not holding.any():
            raise SplitError(f"class {name!r} has 0 rows, too few for a row in each of {', '.join(SPLITS)}")
        if missing:
            raise SplitError(
                f"class {name!r} has {int(counts[:, code].sum())} rows in {int(holding.sum())} clock "
                f"groups of {minutes} min, and whole groups leave {' and '.join(missing)} without it: "
                "every split needs one; use a smaller group_minutes, more days, or group 'row'"
            )


@dataclass(frozen=True)
class Assignment:
    """Which split a row goes to: per-class key thresholds (row split) or one split per group."""

    grouping: str
    seed: int
    minutes: int | None = None
    thresholds: dict[int, tuple[int, int]] = field(default_factory=dict)
    groups: dict[int, int] = field(default_factory=dict)  # group id -> split

    def splits(
        self, labels: np.ndarray, partition, lines: np.ndarray, times: np.ndarray | None
    ) -> np.ndarray:
        if self.grouping == ROW:
            return assign_splits(labels, row_keys(self.seed, partition, lines), self.thresholds)
        return self.of_groups(group_ids(partition, lines, times, self.minutes))

    def of_groups(self, ids: np.ndarray) -> np.ndarray:
        """The split of each group id; -1 for a group the split did not hold."""
        if not self.groups:
            return np.full(len(ids), -1, dtype=np.int8)
        known = np.array(sorted(self.groups), dtype=np.uint64)
        values = np.array([self.groups[int(g)] for g in known], dtype=np.int8)
        at = np.minimum(np.searchsorted(known, ids), len(known) - 1)
        return np.where(known[at] == ids, values[at], -1).astype(np.int8)

    def to_json(self) -> dict:
        thresholds = {CLASS_NAMES[c]: [str(t) for t in pair] for c, pair in self.thresholds.items()}
        return {
            "grouping": self.grouping,
            "seed": self.seed,
            "minutes": self.minutes,
            "thresholds": thresholds,
            "groups": [[str(g), s] for g, s in sorted(self.groups.items())],
        }

    @classmethod
    def from_json(cls, data: dict) -> "Assignment":
        thresholds = {CLASS_NAMES.index(n): (int(a), int(b)) for n, (a, b) in data["thresholds"].items()}
        groups = {int(g): int(s) for g, s in data["groups"]}
        return cls(data["grouping"], int(data["seed"]), data["minutes"], thresholds, groups)


def assigned_splits(manifest: dict, frame: pd.DataFrame) -> np.ndarray:
    """0 train, 1 validation, 2 test under the split whose `split.json` is `manifest`, for rows of
    encoded split files (columns label, partition, line, group); -1 for rows of partitions it did
    not hold. For the champion gate: which rows a model trained or chose on."""
    assignment = Assignment.from_json(manifest["assignment"])
    numbers = [StorePart(name, "", manifest["dataset"]).number for name in manifest["partitions"]]
    held = frame["partition"].isin(numbers).to_numpy()
    if assignment.grouping == ROW:
        labels, lines = frame["label"].to_numpy().astype(np.int64), frame[LINE_COLUMN].to_numpy()
        splits = assignment.splits(labels, frame["partition"].to_numpy(), lines, None)
    else:  # split files hold no time: their group ids say which block a row was in
        splits = assignment.of_groups(frame[GROUP_COLUMN].to_numpy().astype(np.uint64))
    return np.where(held, splits, -1).astype(np.int8)


def write_split_part(
    part: StorePart, number: int, context: str | None, assignment: Assignment, out_dir: Path
) -> pd.DataFrame:
    """Encode one store part (with its context features, from `context`, when given) and write
    its rows to their splits; return counts per split and class."""
    spec = get_dataset(part.dataset)
    frame = pq.read_table(part.path).to_pandas()
    labels = label_codes(frame[spec.label_column], spec)
    lines = frame[LINE_COLUMN].to_numpy()
    times = frame[spec.time_column].to_numpy() if spec.time_column else None
    splits = assignment.splits(labels, part.number, lines, times)
    rows = encode_spec_features(frame, spec)
    if context is not None:
        found = context_columns(Path(context), spec.context.feature_names, frame[LINE_COLUMN].to_numpy())
        rows = pd.concat([rows, found], axis=1)
    rows["label"] = labels
    rows["partition"] = np.uint32(part.number)
    rows[LINE_COLUMN] = frame[LINE_COLUMN].to_numpy(dtype=np.int64)
    rows[GROUP_COLUMN] = group_ids(part.number, lines, times, assignment.minutes)
    attack = labels != CLASS_NAMES.index(NORMAL)
    name = f"part-{number:05d}.parquet"
    for index, split in enumerate(SPLITS):
        mask = splits == index
        rows[mask].to_parquet(out_dir / split / name, index=False, row_group_size=ROW_GROUP_ROWS)
        if index < len(ATTACK_SPLITS):
            rows[mask & attack].to_parquet(
                out_dir / ATTACK_SPLITS[index] / name, index=False, row_group_size=ROW_GROUP_ROWS
            )
    counts = pd.crosstab(splits, labels).reindex(
        index=range(3), columns=range(len(CLASS_NAMES)), fill_value=0
    )
    return pd.DataFrame(counts.to_numpy(), columns=list(CLASS_NAMES)).assign(split=list(SPLITS))


def context_columns(path: Path, names: tuple[str, ...], lines: np.ndarray) -> pd.DataFrame:
    """A part's context features (in the folder `tasks.model.context.write_context` gave) as float32
    columns, checked to be of the same rows in the same order."""
    features = block_features(path)
    if not np.array_equal(features[LINE_COLUMN].to_numpy(), lines):
        raise ValueError(f"{path}: the context features are not of the rows of their store part")
    return features[list(names)].astype(np.float32)


def partition_context(
    parts: list[StorePart], context: ContextSpec | None, root: Path, client: Client
) -> list:
    """Each part's context features file (None for feature set `paper`): both passes run over
    a whole partition (a day), so a window feature sees every row of its bucket."""
    files: list[str | None] = [None] * len(parts)
    if context is None:
        return files
    by_partition: dict[str, list[int]] = {}
    for index, part in enumerate(parts):
        by_partition.setdefault(part.partition, []).append(index)
    read = functools.partial(stored_rows, spec=context)
    for number, indices in enumerate(by_partition.values()):
        sources = [parts[index].path for index in indices]
        written = write_context(sources, read, context, root / f"tables-{number}", client)
        for index, path in zip(indices, written, strict=True):
            files[index] = str(path)
    return files


@dataclass(frozen=True)
class SplitResult:
    """Where the splits are, and what they hold."""

    folder: str
    key: str
    dataset: str
    partitions: dict[str, str]  # partition folder -> sha256 of its source file
    counts: dict[str, dict[str, int]]  # split -> class -> rows
    reused: bool = False

    def files(self, split: str) -> list[str]:
        return sorted(str(p) for p in (Path(self.folder) / split).glob("part-*.parquet"))


def plan_assignment(
    parts: list[StorePart], cfg: SplitConfig, spec: DatasetSpec, client: Client
) -> Assignment:
    """The assignment of rows to splits: class thresholds of row keys, or one split per clock group."""
    if split_grouping(cfg, spec) == ROW:
        meta = pd.DataFrame({"label": pd.Series(dtype="int8"), "key": pd.Series(dtype="uint64")})
        pairs = client.compute(dd.from_map(read_keys, parts, seed=cfg.seed, meta=meta), sync=True)
        thresholds = class_thresholds(pairs["label"].to_numpy(), pairs["key"].to_numpy(), cfg)
        return Assignment(ROW, cfg.seed, thresholds=thresholds)
    meta = pd.DataFrame(
        {
            "group": pd.Series(dtype="uint64"),
            "label": pd.Series(dtype="int8"),
            "rows": pd.Series(dtype="int64"),
        }
    )
    found = client.compute(
        dd.from_map(read_group_counts, parts, minutes=cfg.group_minutes, meta=meta), sync=True
    )
    table = found.pivot_table(index="group", columns="label", values="rows", aggfunc="sum", fill_value=0)
    table = table.reindex(columns=range(len(CLASS_NAMES)), fill_value=0)
    ids, counts = table.index.to_numpy(dtype=np.uint64), table.to_numpy(dtype=np.int64)
    splits = assign_groups(ids, counts, cfg)
    check_group_splits(counts, splits, cfg.group_minutes)
    groups = {int(g): int(s) for g, s in zip(ids, splits, strict=True)}
    return Assignment(CLOCK, cfg.seed, cfg.group_minutes, groups=groups)


def split_key(hashes: dict[str, str], cfg: SplitConfig, spec: DatasetSpec, feature_set: str = "paper") -> str:
    """Content address of a split: the files' hashes, the config, the schema, the features and
    the code version."""
    material = {
        "partitions": hashes,
        "config": cfg.model_dump(),
        "schema": spec.schema_version,
        "code": SPLIT_CODE_VERSION,
    }
    if feature_set != "paper":  # the paper features add nothing, as before feature sets existed
        material["features"] = list(spec.features_of(feature_set))
    material = json.dumps(material, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def split_store(
    store: Path,
    partitions: list[str] | None,
    cfg: SplitConfig,
    out_root: Path,
    client: Client,
    spec: DatasetSpec = ZYELL,
    feature_set: str = "paper",
) -> SplitResult:
    """Split the chosen partitions into train/validation/test folders under `out_root`, or reuse them.

    A finished split of the same partitions (same sha256s), config and feature set is reused as it is.
    """
    parts, hashes = select_store_parts(store, partitions, spec)
    key = split_key(hashes, cfg, spec, feature_set)
    folder = out_root / f"split-{key}"
    with split_lock(folder):  # a second run on the same --out waits, then reuses
        if (folder / DONE_MARKER).exists():
            manifest = json.loads((folder / SPLIT_MANIFEST).read_text())
            manifest.pop("assignment")
            return SplitResult(**manifest, reused=True)
        return build_split(parts, hashes, key, cfg, spec, feature_set, folder, client)


@contextmanager
def split_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on building `folder`, held until the block ends (or the process dies)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def build_split(
    parts: list[StorePart],
    hashes: dict[str, str],
    key: str,
    cfg: SplitConfig,
    spec: DatasetSpec,
    feature_set: str,
    folder: Path,
    client: Client,
) -> SplitResult:
    """Write the split folder from scratch, its manifest and its done marker last."""
    shutil.rmtree(folder, ignore_errors=True)
    for split in (*SPLITS, *ATTACK_SPLITS):
        (folder / split).mkdir(parents=True)
    assignment = plan_assignment(parts, cfg, spec, client)
    stats_meta = pd.DataFrame(
        {**{c: pd.Series(dtype="int64") for c in CLASS_NAMES}, "split": pd.Series(dtype="str")}
    )
    contexts = partition_context(parts, spec.context_of(feature_set), folder / CONTEXT_DIR, client)
    writes = dd.from_map(
        write_split_part,
        parts,
        range(len(parts)),
        contexts,
        assignment=assignment,
        out_dir=folder,
        meta=stats_meta,
    )
    totals = client.compute(writes, sync=True).groupby("split").sum()
    shutil.rmtree(folder / CONTEXT_DIR, ignore_errors=True)
    counts = {split: {c: int(totals.loc[split, c]) for c in CLASS_NAMES} for split in SPLITS}
    result = SplitResult(folder=str(folder), key=key, dataset=spec.name, partitions=hashes, counts=counts)
    manifest = {**asdict(result), "assignment": assignment.to_json()}
    manifest.pop("reused")
    (folder / SPLIT_MANIFEST).write_text(json.dumps(manifest, indent=2))
    (folder / DONE_MARKER).touch()
    return result


@task(name="split", retries=1, retry_delay_seconds=2, retry_condition_fn=retry_if_transient)
def split_store_task(
    store: Path,
    partitions: list[str] | None,
    cfg: SplitConfig,
    out_root: Path,
    dask_address: str,
    dataset: str,
    feature_set: str = "paper",
) -> SplitResult:
    """Prefect task: the split, reused when the partitions, the config and the features are unchanged."""
    with Client(dask_address, set_as_default=False) as client:
        return split_store(store, partitions, cfg, out_root, client, get_dataset(dataset), feature_set)
