"""The paper's preprocessing: the spec's features, each categorical column as a vocabulary index
(ZYELL: `app`), optionally `log1p` on the spec's heavy-tailed columns and the spec's one-hot
columns as one 0/1 input per code, a standard scaler, clipping.
The artifact also holds the train split's reference profile for drift checks (tasks/model/drift.py)
and each attack class's input ranges for the fused model's envelope (tasks/model/envelope.py).

The scaler is fitted out-of-core on the train split only: each partition contributes its
count, mean and sum of squared deviations, combined with Chan's parallel formula, which gives
scikit-learn's `StandardScaler` statistics (population std). Everything scoring needs goes in
one JSON artifact; no pickles.
"""

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from distributed import Client
from prefect import task

from schemas.context import ContextSpec
from schemas.datasets import ZYELL, CategoricalColumn, DatasetSpec, get_dataset
from tasks.errors import retry_if_transient
from tasks.files import write_text_atomic
from tasks.model.context import frame_context
from tasks.model.drift import ReferenceProfile, fit_reference
from tasks.model.envelope import ClassRanges, fit_class_ranges

ARTIFACT_NAME = "preprocessing.json"
# 7: class ranges; 6: reference profile; 5: one-hot columns; 4: feature sets; 3: log1p columns;
# 2: dataset specs; 1: ZYELL
ARTIFACT_VERSION = 7


def encode_category(values: pd.Series, column: CategoricalColumn) -> np.ndarray:
    """Vocabulary index of each value; values outside the vocabulary get the column's unknown code."""
    codes = pd.Categorical(values, categories=column.vocabulary).codes
    return np.where(codes < 0, column.unknown_code, codes).astype(np.float32)


def encode_features(
    frame: pd.DataFrame, features: tuple[str, ...], categorical: tuple[CategoricalColumn, ...]
) -> pd.DataFrame:
    """The feature columns as float32, in `features` order: identifiers and labels dropped,
    categorical columns as vocabulary indices."""
    by_name = {column.name: column for column in categorical}
    return pd.DataFrame(
        {
            name: encode_category(frame[name], by_name[name])
            if name in by_name
            else frame[name].to_numpy(dtype=np.float32, na_value=np.nan)
            for name in features
        }
    )


def encode_spec_features(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    return encode_features(frame, spec.feature_columns, spec.categorical)


def one_hot_blocks(
    features: tuple[str, ...], categorical: tuple[CategoricalColumn, ...], one_hot: tuple[str, ...]
) -> dict[int, int]:
    """Feature index -> number of codes, for each column given as indicators."""
    by_name = {column.name: column for column in categorical}
    return {features.index(name): len(by_name[name].code_names) for name in one_hot}


def input_names(
    features: tuple[str, ...], categorical: tuple[CategoricalColumn, ...], one_hot: tuple[str, ...]
) -> tuple[str, ...]:
    """The nets' input columns: `features`, each one-hot column replaced by `name=value` columns."""
    by_name = {column.name: column for column in categorical}
    names = []
    for feature in features:
        codes = by_name[feature].code_names if feature in one_hot else ()
        names += [f"{feature}={code}" for code in codes] if codes else [feature]
    return tuple(names)


def expand_one_hot(encoded: np.ndarray, blocks: dict[int, int]) -> np.ndarray:
    """`encoded` with each column of `blocks` replaced, where it stands, by one 0/1 column per code."""
    if not blocks:
        return encoded
    pieces = [
        encoded[:, [index]]
        if index not in blocks
        else encoded[:, [index]] == np.arange(blocks[index], dtype=encoded.dtype)
        for index in range(encoded.shape[1])
    ]
    return np.hstack(pieces).astype(np.float32, copy=False)


@dataclass(frozen=True)
class Preprocessing:
    """A fitted scaler with everything needed to apply it to raw rows."""

    dataset: str
    features: tuple[str, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]
    categorical: tuple[CategoricalColumn, ...]  # the vocabularies as fitted, kept with the model
    clip: float
    schema_version: str
    log_columns: tuple[str, ...] = ()  # log1p before the scaler; empty in artifacts before version 3
    feature_set: str = "paper"  # `context`: `features` end with the context features (version 4)
    one_hot: tuple[str, ...] = ()  # given as one 0/1 input per code; empty before version 5
    reference: ReferenceProfile | None = None  # for drift checks; None before version 6
    class_ranges: ClassRanges | None = None  # scaled inputs per attack class; None before version 7
    version: int = ARTIFACT_VERSION

    def transform(self, encoded: np.ndarray) -> np.ndarray:
        """Encoded features (rows x features) to the nets' inputs (rows x width): log1p on the
        heavy-tailed columns, one-hot columns expanded, scale, clip."""
        return self.scale(self.unscaled(encoded))

    def unscaled(self, encoded: np.ndarray) -> np.ndarray:
        """The nets' inputs before the scaler: log1p and one-hot applied (what drift is measured on)."""
        return expand_one_hot(log_columns(encoded, self.log_indices), self.one_hot_blocks)

    def scale(self, inputs: np.ndarray) -> np.ndarray:
        scaled = (inputs - np.asarray(self.means, dtype=np.float32)) / np.asarray(self.stds, dtype=np.float32)
        return np.clip(scaled, -self.clip, self.clip, out=scaled).astype(np.float32, copy=False)

    @property
    def input_names(self) -> tuple[str, ...]:
        return input_names(self.features, self.categorical, self.one_hot)

    @property
    def one_hot_blocks(self) -> dict[int, int]:
        return one_hot_blocks(self.features, self.categorical, self.one_hot)

    @property
    def width(self) -> int:
        """How many inputs the nets take: the features, with one per code of a one-hot column."""
        return len(self.means)

    @property
    def log_indices(self) -> list[int]:
        return [self.features.index(name) for name in self.log_columns]

    @property
    def context(self) -> ContextSpec | None:
        """The context features this preprocessing expects; None for feature set `paper`."""
        return self.spec.context_of(self.feature_set)

    def transform_raw(self, frame: pd.DataFrame, context: pd.DataFrame | None = None) -> np.ndarray:
        """Raw rows (the dataset's columns) to the nets' input matrix. Under feature set
        `context`, `context` holds the rows' context features (`tasks/model/context.py`); without it
        the frame counts as a whole file and they are computed from it."""
        return self.scale(self.raw_inputs(frame, context))

    def raw_inputs(self, frame: pd.DataFrame, context: pd.DataFrame | None = None) -> np.ndarray:
        """Raw rows to the nets' inputs before the scaler (see `transform_raw`)."""
        if self.context is not None:
            context = frame_context(frame, self.context) if context is None else context
            frame = pd.concat([frame, context], axis=1)
        return self.unscaled(encode_features(frame, self.features, self.categorical).to_numpy())

    @property
    def spec(self) -> DatasetSpec:
        return get_dataset(self.dataset)

    def save(self, folder: Path) -> Path:
        return write_text_atomic(Path(folder) / ARTIFACT_NAME, json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, folder: Path) -> "Preprocessing":
        data = json.loads((Path(folder) / ARTIFACT_NAME).read_text())
        if data.get("version") == 1:
            data = upgrade_version_1(data)
        if data.get("version") == 2:
            data = {**data, "log_columns": [], "version": 3}
        if data.get("version") == 3:
            data = {**data, "feature_set": "paper", "version": 4}
        if data.get("version") == 4:
            data = {**data, "one_hot": [], "version": 5}
        if data.get("version") == 5:
            data = {**data, "reference": None, "version": 6}
        if data.get("version") == 6:
            data = {**data, "class_ranges": None, "version": ARTIFACT_VERSION}
        if data.get("version") != ARTIFACT_VERSION:
            raise ValueError(
                f"{folder}: preprocessing artifact version {data.get('version')} is not {ARTIFACT_VERSION}"
            )
        data["categorical"] = [
            CategoricalColumn(c["name"], tuple(c["vocabulary"]), c["unknown"]) for c in data["categorical"]
        ]
        reference = data.pop("reference", None)
        data["reference"] = ReferenceProfile.from_dict(reference) if reference else None
        ranges = data.pop("class_ranges", None)
        data["class_ranges"] = ClassRanges.from_dict(ranges) if ranges else None
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def upgrade_version_1(data: dict) -> dict:
    """Version 1 artifacts predate dataset specs: ZYELL, with `app` as the one categorical column."""
    app = {"name": "app", "vocabulary": data.pop("vocabulary"), "unknown": ZYELL.categorical[0].unknown}
    return {**data, "dataset": ZYELL.name, "categorical": [app], "version": 2}


def log_columns(encoded: np.ndarray, indices: list[int]) -> np.ndarray:
    """A copy of `encoded` with log1p on the given columns (negative values, which the row contract
    refuses, count as 0)."""
    if not indices:
        return encoded
    out = np.array(encoded, dtype=np.float32, copy=True)
    out[:, indices] = np.log1p(np.maximum(out[:, indices], 0))
    return out


def partition_moments(frame: pd.DataFrame) -> pd.DataFrame:
    """Count, mean and sum of squared deviations of each feature (column) in one partition."""
    values = frame.to_numpy(dtype=np.float64)
    count = len(values)
    mean = values.mean(axis=0) if count else np.zeros(values.shape[1])
    m2 = ((values - mean) ** 2).sum(axis=0)
    return pd.DataFrame({"feature": list(frame.columns), "count": count, "mean": mean, "m2": m2})


def combine_moments(parts: pd.DataFrame, features: int) -> tuple[np.ndarray, np.ndarray]:
    """Chan's parallel combination of per-partition moments: overall mean and population std."""
    count = np.zeros(features)
    mean = np.zeros(features)
    m2 = np.zeros(features)
    for _, part in parts.groupby(parts.index // features, sort=True):
        n_b, mean_b, m2_b = part["count"].to_numpy(), part["mean"].to_numpy(), part["m2"].to_numpy()
        total = count + n_b
        if total[0] == 0:
            continue
        delta = mean_b - mean
        mean = mean + delta * n_b / total
        m2 = m2 + m2_b + delta**2 * count * n_b / total
        count = total
    std = np.sqrt(m2 / np.maximum(count, 1))
    return mean, np.where(std > 0, std, 1.0)  # a constant column is left unscaled, as scikit-learn does


def read_features(
    path: str,
    features: tuple[str, ...],
    logged: tuple[str, ...] = (),
    blocks: dict[int, int] | None = None,
    names: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """One split file's encoded features as the nets' inputs before scaling: log1p already on the
    `logged` columns, the `blocks` (see `one_hot_blocks`) expanded into the columns `names`."""
    frame = pq.read_table(path, columns=list(features)).to_pandas()
    indices = [features.index(name) for name in logged]
    inputs = expand_one_hot(log_columns(frame.to_numpy(dtype=np.float32), indices), blocks or {})
    return pd.DataFrame(inputs, columns=list(names or features))


def fit_preprocessing(
    train_files: list[str],
    clip: float,
    client: Client,
    spec: DatasetSpec = ZYELL,
    log_transform: bool = False,
    feature_set: str = "paper",
    one_hot: bool = False,
) -> Preprocessing:
    """Fit the scaler on the train split's files, one partition per file, after log1p on the
    spec's heavy-tailed columns when `log_transform`, and with its one-hot columns expanded when
    `one_hot` (the scaler then standardises each indicator as it does any column)."""
    features = spec.features_of(feature_set)
    logged = spec.log_columns_of(feature_set) if log_transform else ()
    expanded = spec.one_hot_columns if one_hot else ()
    names = input_names(features, spec.categorical, expanded)
    empty = pd.DataFrame({name: pd.Series(dtype="float32") for name in names})
    moments = dd.from_map(
        read_features,
        train_files,
        features=features,
        logged=logged,
        blocks=one_hot_blocks(features, spec.categorical, expanded),
        names=names,
        meta=empty,
    ).map_partitions(partition_moments, meta=partition_moments(empty))
    parts = client.compute(moments, sync=True).reset_index(drop=True)
    mean, std = combine_moments(parts, len(names))
    return Preprocessing(
        dataset=spec.name,
        features=features,
        means=tuple(float(v) for v in mean),
        stds=tuple(float(v) for v in std),
        categorical=spec.categorical,
        clip=clip,
        schema_version=spec.schema_version,
        log_columns=logged,
        feature_set=feature_set,
        one_hot=expanded,
    )


def preprocessing_folder(root: Path, split_key: str, clip: float, log_transform: bool, one_hot: bool) -> Path:
    """Named after everything the fit depends on, so a finished fit is reused and no other is."""
    suffixes = ("-log1p" if log_transform else "") + ("-onehot" if one_hot else "")
    return Path(root) / f"{split_key}-clip{clip:g}{suffixes}"


@task(name="fit-preprocessing", retries=1, retry_delay_seconds=2, retry_condition_fn=retry_if_transient)
def fit_preprocessing_task(
    train_files: list[str],
    clip: float,
    out_dir: Path,
    dask_address: str,
    dataset: str,
    log_transform: bool,
    feature_set: str = "paper",
    one_hot: bool = False,
) -> Path:
    """Prefect task: fit on the train split, with its reference profile and class ranges, and
    write the JSON artifact; returns its folder (see `preprocessing_folder`). A folder fitted
    before either gets them."""
    if (out_dir / ARTIFACT_NAME).exists():
        fitted = Preprocessing.load(out_dir)
        if fitted.reference is not None and fitted.class_ranges is not None:
            return out_dir
    else:
        with Client(dask_address, set_as_default=False) as client:
            spec = get_dataset(dataset)
            fitted = fit_preprocessing(train_files, clip, client, spec, log_transform, feature_set, one_hot)
    out_dir.mkdir(parents=True, exist_ok=True)
    with_train_profiles(fitted, train_files).save(out_dir)
    return out_dir


def with_train_profiles(fitted: Preprocessing, train_files: list[str]) -> Preprocessing:
    """`fitted` with the reference profile and the class ranges of the train split it was fitted on."""
    ranges = fit_class_ranges(train_files, fitted.features, fitted.transform)
    return replace(with_reference(fitted, train_files), class_ranges=ranges)


def with_reference(fitted: Preprocessing, train_files: list[str]) -> Preprocessing:
    """`fitted` with the reference profile of the train split it was fitted on."""
    profile = fit_reference(train_files, fitted.features, fitted.input_names, fitted.unscaled)
    return replace(fitted, reference=profile)
