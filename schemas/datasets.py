"""Dataset specs: everything that differs between the formats the pipeline reads.

The tasks are generic over a `DatasetSpec`; a new format needs a spec here and nothing in
`tasks/`. A spec is looked up by name (`get_dataset`), so only the name travels between
processes.
"""

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Final

import pandas as pd
import pandera.pandas as pa

from schemas import firewall, nsl_kdd
from schemas.context import AUTO_FEATURE_SET, FEATURE_SETS, ZYELL_CONTEXT, ContextSpec
from schemas.firewall import CLASS_NAMES

DEFAULT_DATASET: Final[str] = "zyell"
SAFE_PARTITION: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+.-]*$")
COMPRESSED_SUFFIX: Final[str] = ".gz"  # rotated logs: `1203_firewall.csv.gz` is read as `1203_firewall.csv`


class PartitionError(ValueError):
    """A file whose partition cannot be told, or a partition name that is not allowed."""


@dataclass(frozen=True)
class CategoricalColumn:
    """A text column encoded as its index in `vocabulary`.

    Values outside the vocabulary encode as `unknown`'s index, or, when `unknown` is None, as
    len(vocabulary): a code of their own.
    """

    name: str
    vocabulary: tuple[str, ...]
    unknown: str | None = None

    @property
    def unknown_code(self) -> int:
        return len(self.vocabulary) if self.unknown is None else self.vocabulary.index(self.unknown)

    @property
    def code_names(self) -> tuple[str, ...]:
        """One name per code: the vocabulary, then the unknown code's own when it has one."""
        return self.vocabulary + (("(unknown)",) if self.unknown is None else ())


@dataclass(frozen=True)
class DatasetSpec:
    """One input format: its columns, contract, partitions, features and labels."""

    name: str
    schema_version: str
    columns: tuple[str, ...]  # every column of a labelled file, in file order
    label_columns: tuple[str, ...]  # the trailing columns that only labelled files have
    label_column: str
    has_header: bool
    file_glob: str  # the data files of a folder (their `.gz` namesakes too: `data_files`)
    identifier_columns: tuple[str, ...]  # dropped before training
    categorical: tuple[CategoricalColumn, ...]
    label_map: Mapping[str, str]  # raw label -> canonical class name
    out_of_scope_labels: frozenset[str]  # valid labels outside the five classes: set aside
    partition_field: str  # the store's hive key: STORE/<field>=<partition>/
    raw_schema: Callable[[bool], pa.DataFrameSchema]  # labelled -> the row contract
    partition_of: Callable[[Path, Sequence[str]], str]  # file, first data lines -> partition
    normalise_partition: Callable[[str], str]  # a partition given by hand -> its canonical form
    partition_checks: Callable[[str], dict[str, list[pa.Check]]]  # extra checks, with error= words
    time_column: str | None = None
    time_format: str | None = None
    day_of_name: Callable[[Path], tuple[int, int] | None] | None = None  # (month, day), for --since
    model_name: str = "nad-fusion"
    log_columns: tuple[str, ...] = ()  # heavy-tailed non-negative features: log1p before the scaler
    one_hot_columns: tuple[str, ...] = ()  # categorical features given as one 0/1 input per code
    context: ContextSpec | None = None  # the features of feature set `context`; None: `paper` only
    # the fused model's known-attack envelope under `envelope_margin: auto` (tasks/model/envelope.py);
    # None: off. Chosen per dataset on its other period (docs/model.md).
    envelope_margin: float | None = None

    def __post_init__(self) -> None:
        if set(self.label_map.values()) != set(CLASS_NAMES):
            raise ValueError(f"{self.name}: the label map must reach all of {CLASS_NAMES}")
        if not set(self.log_columns) <= set(self.feature_columns):
            raise ValueError(f"{self.name}: log columns must be features: {self.log_columns}")
        if not set(self.one_hot_columns) <= {column.name for column in self.categorical}:
            raise ValueError(f"{self.name}: one-hot columns must be categorical: {self.one_hot_columns}")

    @property
    def unlabelled_columns(self) -> tuple[str, ...]:
        return self.columns[: len(self.columns) - len(self.label_columns)]

    @property
    def feature_columns(self) -> tuple[str, ...]:
        return tuple(c for c in self.unlabelled_columns if c not in self.identifier_columns)

    def feature_set_of(self, asked: str) -> str:
        """`asked`, with `auto` resolved: `context` where the dataset declares context features."""
        if asked == AUTO_FEATURE_SET:
            return "context" if self.context else "paper"
        if asked not in FEATURE_SETS:
            known = ", ".join((*FEATURE_SETS, AUTO_FEATURE_SET))
            raise ValueError(f"unknown feature set {asked!r}; known: {known}")
        return asked

    def context_of(self, feature_set: str) -> ContextSpec | None:
        """The context features that `feature_set` adds to the paper's (`paper`: none)."""
        if self.feature_set_of(feature_set) == "paper":
            return None
        if self.context is None:
            raise ValueError(f"{self.name} declares no context features; its feature set is 'paper'")
        return self.context

    def features_of(self, feature_set: str) -> tuple[str, ...]:
        """The model's input columns under `feature_set`, in order."""
        context = self.context_of(feature_set)
        return self.feature_columns + (context.feature_names if context else ())

    def log_columns_of(self, feature_set: str) -> tuple[str, ...]:
        """The heavy-tailed columns under `feature_set`: window counts are, like byte counts."""
        context = self.context_of(feature_set)
        return self.log_columns + (tuple(w.name for w in context.windows) if context else ())

    @property
    def categorical_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.categorical)

    @property
    def first_data_line(self) -> int:
        """The 1-based line number of a file's first row."""
        return 2 if self.has_header else 1

    @property
    def labels_are_class_names(self) -> bool:
        """Whether raw labels already are the class names (no mapping needed)."""
        return all(raw == name for raw, name in self.label_map.items())

    def contract(self, labelled: bool) -> pa.DataFrameSchema:
        """The row contract, built once per process (building it costs milliseconds per block)."""
        return _contract(self.name, labelled)

    def partition_folder(self, partition: str) -> str:
        """The store folder name of a partition, e.g. `day=2020-12-03`."""
        return f"{self.partition_field}={partition}"

    def data_files(self, folder: Path) -> list[Path]:
        """The data files of a folder, in name order: the glob's matches, plain or gzip-compressed."""
        found = {*folder.glob(self.file_glob), *folder.glob(self.file_glob + COMPRESSED_SUFFIX)}
        return sorted(path for path in found if path.is_file())

    def column_kinds(self, labelled: bool) -> dict[str, str]:
        """Column -> one of timestamp, string, float, integer: how the raw text is parsed."""
        return dict(_column_kinds(self.name, labelled))


def plain_name(path: Path) -> str:
    """A file's name without its compression suffix: the name the spec reads a partition from."""
    return path.name.removesuffix(COMPRESSED_SUFFIX)


def _stem_partition(path: Path, first_lines: Sequence[str]) -> str:
    return normalise_name(Path(plain_name(path)).stem)


def normalise_name(text: str) -> str:
    if not SAFE_PARTITION.match(text):
        raise PartitionError(f"{text!r} is not a usable partition name (letters, digits, _ + . - only)")
    return text


def _no_checks(partition: str) -> dict[str, list[pa.Check]]:
    return {}


# ---------------------------------------------------------------- ZYELL: one file per day

ZYELL_FILE_NAME: Final = re.compile(r"^(?:(?P<year>\d{4}))?(?P<month>\d{2})(?P<day>\d{2})_firewall\.csv$")


def zyell_day_of_name(path: Path) -> tuple[int, int] | None:
    match = ZYELL_FILE_NAME.match(plain_name(path))
    return (int(match["month"]), int(match["day"])) if match else None


def zyell_day(path: Path, first_lines: Sequence[str]) -> str:
    """MMDD from the name (or YYYYMMDD), with the year of the first rows with a readable time."""
    match = ZYELL_FILE_NAME.match(plain_name(path))
    if not match:
        raise PartitionError(
            "cannot tell the day from the name; name it MMDD_firewall.csv(.gz) or pass the day (YYYY-MM-DD)"
        )
    year = int(match["year"]) if match["year"] else _first_year(first_lines)
    try:
        return date(year, int(match["month"]), int(match["day"])).isoformat()
    except ValueError as error:
        raise PartitionError(f"{match.group(0)} is not a calendar day ({error})") from error


def _first_year(lines: Sequence[str]) -> int:
    for line in lines:
        try:
            return datetime.strptime(line[:19], firewall.TIME_FORMAT).year
        except ValueError:
            continue
    raise PartitionError(f"no row in the first {len(lines)} has a readable time to take the year from")


def zyell_normalise_day(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError as error:
        raise PartitionError(f"{text!r} is not a day (YYYY-MM-DD)") from error


def zyell_time_on_day(partition: str) -> dict[str, list[pa.Check]]:
    start = pd.Timestamp(date.fromisoformat(partition))
    last = start + timedelta(days=1) - timedelta(seconds=1)
    return {"time": [pa.Check.in_range(start, last, error="not on the file's day")]}


ZYELL: Final = DatasetSpec(
    name="zyell",
    schema_version=firewall.SCHEMA_VERSION,
    columns=firewall.COLUMNS,
    label_columns=(firewall.LABEL_COLUMN,),
    label_column=firewall.LABEL_COLUMN,
    has_header=True,
    file_glob="*_firewall.csv",
    identifier_columns=firewall.ID_COLUMNS,
    categorical=(CategoricalColumn("app", firewall.APP_VOCABULARY, firewall.UNKNOWN_APP),),
    label_map={name: name for name in CLASS_NAMES},
    out_of_scope_labels=frozenset(),
    partition_field="day",
    raw_schema=firewall.raw_day_schema,
    partition_of=zyell_day,
    normalise_partition=zyell_normalise_day,
    partition_checks=zyell_time_on_day,
    time_column="time",
    time_format=firewall.TIME_FORMAT,
    day_of_name=zyell_day_of_name,
    log_columns=("duration", "out (bytes)", "in (bytes)", *firewall.COUNTER_COLUMNS),
    context=ZYELL_CONTEXT,
)

# ---------------------------------------------------------------- NSL-KDD: one partition per file

NSL_KDD: Final = DatasetSpec(
    name="nsl-kdd",
    schema_version=nsl_kdd.SCHEMA_VERSION,
    columns=nsl_kdd.COLUMNS,
    label_columns=(nsl_kdd.LABEL_COLUMN, nsl_kdd.DIFFICULTY_COLUMN),
    label_column=nsl_kdd.LABEL_COLUMN,
    has_header=False,
    file_glob="*.txt",
    identifier_columns=(),
    categorical=(
        CategoricalColumn("protocol_type", nsl_kdd.PROTOCOLS),
        CategoricalColumn("service", nsl_kdd.SERVICES, nsl_kdd.UNKNOWN_SERVICE),
        CategoricalColumn("flag", nsl_kdd.FLAGS),
    ),
    label_map=nsl_kdd.LABEL_MAP,
    out_of_scope_labels=nsl_kdd.OUT_OF_SCOPE_LABELS,
    partition_field="file",
    raw_schema=nsl_kdd.raw_schema,
    partition_of=_stem_partition,
    normalise_partition=normalise_name,
    partition_checks=_no_checks,
    model_name="nad-fusion-nsl-kdd",
    log_columns=nsl_kdd.HEAVY_TAILED_COLUMNS,
    one_hot_columns=("protocol_type", "service", "flag"),  # codes of unordered names (README)
    envelope_margin=3.0,
)

DATASETS: Final[dict[str, DatasetSpec]] = {spec.name: spec for spec in (ZYELL, NSL_KDD)}


@functools.cache
def _contract(name: str, labelled: bool) -> pa.DataFrameSchema:
    return get_dataset(name).raw_schema(labelled)


@functools.cache
def _column_kinds(name: str, labelled: bool) -> tuple[tuple[str, str], ...]:
    kinds = {"datetime64": "timestamp", "Float64": "float", "Int64": "integer"}
    columns = _contract(name, labelled).columns.items()
    return tuple((column, kinds.get(str(c.dtype).split("[")[0], "string")) for column, c in columns)


def get_dataset(name: str) -> DatasetSpec:
    """The spec registered under `name`."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}") from None
