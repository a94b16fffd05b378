"""The paper's preprocessing: 17 features, `app` as a vocabulary index, a standard scaler, clipping.

The scaler is fitted out-of-core on the train split only: each partition contributes its
count, mean and sum of squared deviations, combined with Chan's parallel formula, which gives
scikit-learn's `StandardScaler` statistics (population std). Everything scoring needs goes in
one JSON artifact; no pickles.
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from distributed import Client
from prefect import task

from schemas.firewall import APP_VOCABULARY, FEATURE_COLUMNS, SCHEMA_VERSION, UNKNOWN_APP

ARTIFACT_NAME = "preprocessing.json"
ARTIFACT_VERSION = 1


def encode_app(apps: pd.Series) -> np.ndarray:
    """Vocabulary index of each app name; names outside the vocabulary count as `others`."""
    codes = pd.Categorical(apps, categories=APP_VOCABULARY).codes
    return np.where(codes < 0, APP_VOCABULARY.index(UNKNOWN_APP), codes).astype(np.float32)


def encode_features(frame: pd.DataFrame) -> pd.DataFrame:
    """The 17 feature columns as float32, in FEATURE_COLUMNS order, identifiers dropped."""
    encoded = {
        name: frame[name].to_numpy(dtype=np.float32, na_value=np.nan)
        for name in FEATURE_COLUMNS
        if name != "app"
    }
    encoded["app"] = encode_app(frame["app"])
    return pd.DataFrame({name: encoded[name] for name in FEATURE_COLUMNS})


@dataclass(frozen=True)
class Preprocessing:
    """A fitted scaler with everything needed to apply it to raw rows."""

    features: tuple[str, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]
    vocabulary: tuple[str, ...]
    clip: float
    schema_version: str = SCHEMA_VERSION
    version: int = ARTIFACT_VERSION

    def transform(self, encoded: np.ndarray) -> np.ndarray:
        """Scale encoded features (rows x 17) and clip them to [-clip, clip]."""
        scaled = (encoded - np.asarray(self.means, dtype=np.float32)) / np.asarray(
            self.stds, dtype=np.float32
        )
        return np.clip(scaled, -self.clip, self.clip, out=scaled).astype(np.float32, copy=False)

    def transform_raw(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw firewall rows (the schema's columns) to the nets' input matrix."""
        return self.transform(encode_features(frame).to_numpy())

    def save(self, folder: Path) -> Path:
        path = Path(folder) / ARTIFACT_NAME
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def load(cls, folder: Path) -> "Preprocessing":
        data = json.loads((Path(folder) / ARTIFACT_NAME).read_text())
        if data.get("version") != ARTIFACT_VERSION:
            raise ValueError(
                f"{folder}: preprocessing artifact version {data.get('version')} is not {ARTIFACT_VERSION}"
            )
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def partition_moments(frame: pd.DataFrame) -> pd.DataFrame:
    """Count, mean and sum of squared deviations of each feature in one partition."""
    values = frame[list(FEATURE_COLUMNS)].to_numpy(dtype=np.float64)
    count = len(values)
    mean = values.mean(axis=0) if count else np.zeros(values.shape[1])
    m2 = ((values - mean) ** 2).sum(axis=0)
    return pd.DataFrame({"feature": list(FEATURE_COLUMNS), "count": count, "mean": mean, "m2": m2})


def combine_moments(parts: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Chan's parallel combination of per-partition moments: overall mean and population std."""
    count = np.zeros(len(FEATURE_COLUMNS))
    mean = np.zeros(len(FEATURE_COLUMNS))
    m2 = np.zeros(len(FEATURE_COLUMNS))
    for _, part in parts.groupby(parts.index // len(FEATURE_COLUMNS), sort=True):
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


def read_features(path: str) -> pd.DataFrame:
    return pq.read_table(path, columns=list(FEATURE_COLUMNS)).to_pandas()


def fit_preprocessing(train_files: list[str], clip: float, client: Client) -> Preprocessing:
    """Fit the scaler on the train split's files, one partition per file."""
    meta = partition_moments(pd.DataFrame({name: pd.Series(dtype="float32") for name in FEATURE_COLUMNS}))
    moments = dd.from_map(
        read_features, train_files, meta=read_features(train_files[0]).iloc[:0]
    ).map_partitions(partition_moments, meta=meta)
    parts = client.compute(moments, sync=True).reset_index(drop=True)
    mean, std = combine_moments(parts)
    return Preprocessing(
        features=tuple(FEATURE_COLUMNS),
        means=tuple(float(v) for v in mean),
        stds=tuple(float(v) for v in std),
        vocabulary=tuple(APP_VOCABULARY),
        clip=clip,
    )


@task(name="fit-preprocessing", retries=1, retry_delay_seconds=2)
def fit_preprocessing_task(train_files: list[str], clip: float, out_dir: Path, dask_address: str) -> Path:
    """Prefect task: fit on the train split and write the JSON artifact; returns its folder.

    `out_dir` is named after the split and the clip bound, so a finished fit is reused.
    """
    if (out_dir / ARTIFACT_NAME).exists():
        return out_dir
    with Client(dask_address, set_as_default=False) as client:
        fitted = fit_preprocessing(train_files, clip, client)
    out_dir.mkdir(parents=True, exist_ok=True)
    fitted.save(out_dir)
    return out_dir
