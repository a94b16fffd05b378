"""The datasets of a training run, as MLflow dataset inputs that read no row.

Each trained partition (a day, for ZYELL) is logged with context `training`, and each part of
the split (train, validation, test) with context `split`, so the run page's Datasets panel
names what the model learned from. Everything comes from what the store and the split already
keep: a partition's digest is made from its source file's sha256 (its `_report.json`) and the
schema version it was ingested under; a split part's from the split's content key. Row counts
are the report's kept rows and the split's counts; schemas are read from Parquet footers.
"""

import hashlib
import json
from pathlib import Path

import mlflow
import pyarrow as arrow
import pyarrow.parquet as pq
from mlflow.data.dataset_source_registry import get_dataset_source_from_json
from mlflow.data.meta_dataset import MetaDataset
from mlflow.types import ColSpec, DataType, Schema

from tasks.ingest.store import part_dir, read_report
from tasks.training.split import SPLITS, SplitResult

TRAINING, SPLIT = "training", "split"  # the dataset inputs' contexts
DIGEST_CHARS = 12  # MLflow keeps at most 36, and shows the first few


class CountedDataset(MetaDataset):
    """A MetaDataset with its row count as profile (shown with the dataset in the MLflow UI)."""

    def __init__(self, source_path: str, name: str, digest: str, rows: int, schema: Schema | None) -> None:
        source = get_dataset_source_from_json(json.dumps({"uri": source_path}), source_type="local")
        self._rows = rows
        super().__init__(source, name=name, digest=digest, schema=schema)

    @property
    def profile(self) -> dict:
        return {"num_rows": self._rows}

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "profile": json.dumps(self.profile)}


def short_digest(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:DIGEST_CHARS]


def arrow_type(kind: arrow.DataType) -> DataType:
    """The MLflow column type of a Parquet column (categories and text: string)."""
    checks = (
        (arrow.types.is_boolean, DataType.boolean),
        (arrow.types.is_integer, DataType.long),
        (arrow.types.is_float32, DataType.float),
        (arrow.types.is_floating, DataType.double),
        (arrow.types.is_timestamp, DataType.datetime),
    )
    return next((mlflow_kind for check, mlflow_kind in checks if check(kind)), DataType.string)


def footer_schema(files: list[Path]) -> Schema | None:
    """The columns of the first Parquet file, from its footer alone."""
    if not files:
        return None
    found = pq.read_schema(files[0])
    return Schema([ColSpec(arrow_type(field.type), field.name) for field in found])


def partition_dataset(store: Path, part: str) -> CountedDataset:
    """One stored partition: name the partition, source its folder, digest its source file."""
    report = read_report(store, part)
    folder = part_dir(store, part)
    digest = short_digest(report.sha256, str(report.schema_version))
    schema = footer_schema(sorted(folder.glob("part-*.parquet")))
    return CountedDataset(str(folder.resolve()), part, digest, int(report.rows_kept), schema)


def split_dataset(split: SplitResult, name: str) -> CountedDataset:
    """One part of the split (train, validation or test): its folder, rows and the split's key."""
    folder = Path(split.folder) / name
    rows = sum(split.counts[name].values())
    schema = footer_schema(split.files(name))
    return CountedDataset(
        str(folder.resolve()), f"split-{split.key}/{name}", short_digest(split.key, name), rows, schema
    )


def log_run_datasets(split: SplitResult, store: Path) -> None:
    """Log, on the active run, each trained partition (`training`) and each split part (`split`)."""
    for part in split.partitions:
        dataset = partition_dataset(store, part)
        mlflow.log_input(dataset, context=TRAINING, tags={"sha256": split.partitions[part]})
    for name in SPLITS:
        mlflow.log_input(split_dataset(split, name), context=SPLIT, tags={"split": name})
