"""Exact, stratified, hash-based train/validation/test split of the store, out-of-core.

Every row gets a key: a 64-bit hash of (seed, partition, line). Within each class, rows are ranked
by key; the lowest-ranked `round(0.2 n)` go to test, the next `round(0.2 (n - n_test))` to
validation and the rest to train. So each split holds its share of every class to within one
row, the assignment of a row depends only on the seed, its partition, its line and the class sizes,
and re-running gives the same split. Only (class, key) pairs are gathered to find the
per-class thresholds (9 bytes a row); the rows themselves are written partition by partition.
"""

import functools
import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
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
from tasks.context import block_features, stored_rows, write_context
from tasks.errors import retry_if_transient
from tasks.ingest_parse import LINE_COLUMN, label_codes
from tasks.preprocess import encode_spec_features
from tasks.store import check_store, part_dir, read_report, stored_parts

SPLITS = ("train", "validation", "test")
ATTACK_SPLITS = ("train_attack", "validation_attack")
SPLIT_MANIFEST = "split.json"
DONE_MARKER = "_SUCCESS"
ROW_GROUP_ROWS = 65_536
SPLIT_CODE_VERSION = 2
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
    """The part files of the chosen (default: all labelled) partitions, and each one's source sha256."""
    check_store(store, spec.name)
    chosen = parts or [p for p in stored_parts(store) if read_report(store, p)["classes"]]
    files, hashes = [], {}
    for part in chosen:
        report = read_report(store, part)
        if report is None:
            raise SplitError(f"{part} is not in the store {store}")
        if not report["classes"]:
            raise SplitError(f"{part} has no labels; it can be scored but not trained on")
        hashes[part] = report["sha256"]
        files += [
            StorePart(part, str(p), spec.name) for p in sorted(part_dir(store, part).glob("part-*.parquet"))
        ]
    if not files:
        raise SplitError(f"no labelled partitions to split in {store}")
    return files, hashes


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


def write_split_part(
    part: StorePart,
    number: int,
    context: str | None,
    seed: int,
    thresholds: dict[int, tuple[int, int]],
    out_dir: Path,
) -> pd.DataFrame:
    """Encode one store part (with its context features, from `context`, when given) and write
    its rows to their splits; return counts per split and class."""
    spec = get_dataset(part.dataset)
    frame = pq.read_table(part.path).to_pandas()
    labels = label_codes(frame[spec.label_column], spec)
    splits = assign_splits(labels, row_keys(seed, part.number, frame[LINE_COLUMN].to_numpy()), thresholds)
    rows = encode_spec_features(frame, spec)
    if context is not None:
        found = context_columns(Path(context), spec.context.feature_names, frame[LINE_COLUMN].to_numpy())
        rows = pd.concat([rows, found], axis=1)
    rows["label"] = labels
    rows["partition"] = np.uint32(part.number)
    rows[LINE_COLUMN] = frame[LINE_COLUMN].to_numpy(dtype=np.int64)
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
    """A part's context features (in the folder `tasks.context.write_context` gave) as float32
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


def split_key(hashes: dict[str, str], cfg: SplitConfig, spec: DatasetSpec, feature_set: str = "paper") -> str:
    """Content address of a split: the files' hashes, the config, the schema, the features and
    the code version."""
    material = {
        "partitions": hashes,
        "config": cfg.model_dump(),
        "schema": spec.schema_version,
        "code": SPLIT_CODE_VERSION,
    }
    if feature_set != "paper":  # paper splits keep their addresses from before feature sets
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
    if (folder / DONE_MARKER).exists():
        manifest = json.loads((folder / SPLIT_MANIFEST).read_text())
        manifest.pop("thresholds")
        return SplitResult(**manifest, reused=True)
    shutil.rmtree(folder, ignore_errors=True)
    for split in (*SPLITS, *ATTACK_SPLITS):
        (folder / split).mkdir(parents=True)
    meta = pd.DataFrame({"label": pd.Series(dtype="int8"), "key": pd.Series(dtype="uint64")})
    pairs = client.compute(dd.from_map(read_keys, parts, seed=cfg.seed, meta=meta), sync=True)
    thresholds = class_thresholds(pairs["label"].to_numpy(), pairs["key"].to_numpy(), cfg)
    del pairs
    stats_meta = pd.DataFrame(
        {**{c: pd.Series(dtype="int64") for c in CLASS_NAMES}, "split": pd.Series(dtype="str")}
    )
    contexts = partition_context(parts, spec.context_of(feature_set), folder / CONTEXT_DIR, client)
    writes = dd.from_map(
        write_split_part,
        parts,
        range(len(parts)),
        contexts,
        seed=cfg.seed,
        thresholds=thresholds,
        out_dir=folder,
        meta=stats_meta,
    )
    totals = client.compute(writes, sync=True).groupby("split").sum()
    shutil.rmtree(folder / CONTEXT_DIR, ignore_errors=True)
    counts = {split: {c: int(totals.loc[split, c]) for c in CLASS_NAMES} for split in SPLITS}
    result = SplitResult(folder=str(folder), key=key, dataset=spec.name, partitions=hashes, counts=counts)
    manifest = {**asdict(result), "thresholds": {CLASS_NAMES[c]: list(t) for c, t in thresholds.items()}}
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
