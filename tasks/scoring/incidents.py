"""Incidents: the short list a security team reads instead of millions of per-row labels.

The flagged rows (predicted class not Normal) of one source and one class, in time order, form
one incident as long as each follows the previous one within `gap` seconds; a longer silence,
another source or another class starts another incident. True attack episodes are the same
grouping of the truly attacking rows (true class not Normal). An incident detects an episode
when they share a row; an incident that shares no row with any episode is false.

Input: a `STEM.predictions.parquet` of `nad score` (its columns `time, src, dst, dpt, line,
pred_label, attack_probability`, and `label` when the labels were known). Only flagged rows and
truly attacking rows are read, so memory follows the attacks, not the file.
"""

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as arrow
import pyarrow.parquet as pq
from prefect import task

from schemas.datasets import ZYELL
from schemas.firewall import CLASS_NAMES, NORMAL
from tasks.errors import message_about
from tasks.files import atomic_path
from tasks.ingest.parse import LINE_COLUMN
from tasks.scoring.predictions import PREDICTED, PREDICTIONS_SUFFIX, PROBABILITY

DEFAULT_GAP_SECONDS = 60
INCIDENTS_SUFFIX = ".incidents.parquet"
INCIDENT_COLUMNS = (
    "src",
    "class",
    "start",
    "end",
    "rows",
    "destinations",
    "ports",
    "max_probability",
    "mean_probability",
)


class IncidentError(ValueError):
    """A predictions folder or file that incidents cannot be read from."""


def episode_numbers(rows: pd.DataFrame, label: str, gap_seconds: float) -> np.ndarray:
    """For rows of one class column `label`: the number of each row's run of one source and one
    class whose successive rows lie at most `gap_seconds` apart, numbered in (src, class, time) order."""
    order = np.lexsort((rows["time"].to_numpy(), rows[label].to_numpy(), rows["src"].to_numpy()))
    src, kind = rows["src"].to_numpy()[order], rows[label].to_numpy()[order]
    seconds = rows["time"].to_numpy(dtype="datetime64[s]").astype(np.int64)[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = (src[1:] != src[:-1]) | (kind[1:] != kind[:-1]) | (np.diff(seconds) > gap_seconds)
    numbers = np.empty(len(order), dtype=np.int64)
    numbers[order] = np.cumsum(starts) - 1
    return numbers


def find_incidents(flagged: pd.DataFrame, gap_seconds: float = DEFAULT_GAP_SECONDS) -> pd.DataFrame:
    """The incidents of flagged rows (`time, src, dst, dpt, pred_label, attack_probability`),
    in the order of their source, class and start."""
    if flagged.empty:
        return empty_incidents()
    grouped = flagged.assign(_incident=episode_numbers(flagged, PREDICTED, gap_seconds)).groupby("_incident")
    incidents = grouped.agg(
        src=("src", "first"),
        **{"class": (PREDICTED, "first")},
        start=("time", "min"),
        end=("time", "max"),
        rows=("time", "size"),
        destinations=("dst", "nunique"),
        ports=("dpt", "nunique"),
        max_probability=(PROBABILITY, "max"),
        mean_probability=(PROBABILITY, "mean"),
    )
    return incidents.reset_index(drop=True).astype(incident_types())


def incident_types() -> dict[str, str]:
    return {
        "src": "str",
        "class": "str",
        "start": "datetime64[s]",
        "end": "datetime64[s]",
        "rows": "int64",
        "destinations": "int64",
        "ports": "int64",
        "max_probability": "float64",
        "mean_probability": "float64",
    }


def empty_incidents() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=kind) for name, kind in incident_types().items()})


@dataclass(frozen=True)
class IncidentDetection:
    """Incident-level figures against the truth."""

    episodes: int
    detected: int  # episodes that some incident shares a row with
    detected_same_class: int  # ... an incident of the episode's class
    incidents: int
    false_incidents: int  # incidents that share no row with any episode

    @property
    def detection_rate(self) -> float:
        return self.detected / self.episodes if self.episodes else 0.0

    @property
    def false_share(self) -> float:
        return self.false_incidents / self.incidents if self.incidents else 0.0

    def to_dict(self) -> dict:
        return asdict(self) | {"detection_rate": self.detection_rate, "false_share": self.false_share}

    @classmethod
    def from_dict(cls, figures: dict) -> "IncidentDetection":
        """The inverse of `to_dict` (the rates are derived again)."""
        return cls(**{name: figures[name] for name in cls.__dataclass_fields__})


def detect_episodes(
    flagged: pd.DataFrame, attacks: pd.DataFrame, truth: str, gap_seconds: float = DEFAULT_GAP_SECONDS
) -> IncidentDetection:
    """Incident-level detection: `flagged` as for `find_incidents`, `attacks` the truly attacking
    rows (`time, src, line` and their true class in column `truth`); rows match by `line`."""
    incidents = pd.DataFrame(
        {
            LINE_COLUMN: flagged[LINE_COLUMN].to_numpy(),
            "incident": episode_numbers(flagged, PREDICTED, gap_seconds),
            "predicted": flagged[PREDICTED].to_numpy(),
        }
    )
    episodes = pd.DataFrame(
        {
            LINE_COLUMN: attacks[LINE_COLUMN].to_numpy(),
            "episode": episode_numbers(attacks, truth, gap_seconds),
            "truth": attacks[truth].to_numpy(),
        }
    )
    shared = incidents.merge(episodes, on=LINE_COLUMN)
    return IncidentDetection(
        episodes=episodes["episode"].nunique(),
        detected=shared["episode"].nunique(),
        detected_same_class=shared.loc[shared["predicted"] == shared["truth"], "episode"].nunique(),
        incidents=incidents["incident"].nunique(),
        false_incidents=incidents["incident"].nunique() - shared["incident"].nunique(),
    )


# ---------------------------------------------------------------- files


FLAGGED_COLUMNS = ("time", "src", "dst", "dpt", LINE_COLUMN, PREDICTED, PROBABILITY)
TRUTH = "truth"


def prediction_columns(path: Path) -> list[str]:
    try:
        names = pq.read_schema(path).names
    except (OSError, arrow.ArrowInvalid) as error:
        raise IncidentError(f"{path}: not a predictions file of nad score ({error})") from error
    missing = [name for name in FLAGGED_COLUMNS if name not in names]
    if missing:
        raise IncidentError(f"{path}: no column(s) {missing}; incidents need ZYELL predictions of nad score")
    return names


def read_flagged(path: Path) -> pd.DataFrame:
    """The flagged rows of a predictions file."""
    prediction_columns(path)
    table = pq.read_table(path, columns=list(FLAGGED_COLUMNS), filters=[(PREDICTED, "!=", NORMAL)])
    return table.to_pandas()


def read_attacks(path: Path, truth_dir: Path | None, rows_read: int | None = None) -> pd.DataFrame | None:
    """The truly attacking rows (`time, src, line, truth`) of a predictions file: by the truth file
    of the same name in `truth_dir`, else by its label column; None when neither is known."""
    names, label = prediction_columns(path), ZYELL.label_column
    columns = ["time", "src", LINE_COLUMN]
    if truth_dir is not None:
        from tasks.scoring.predictions import checked_truth

        codes = checked_truth(path, truth_dir, ZYELL, rows_read)
        lines = pq.read_table(path, columns=[LINE_COLUMN])[LINE_COLUMN].to_numpy()
        attack = codes[lines - ZYELL.first_data_line] > CLASS_NAMES.index(NORMAL)
        rows = pq.read_table(path, columns=columns, filters=[(LINE_COLUMN, "in", lines[attack])]).to_pandas()
        true_codes = codes[rows[LINE_COLUMN].to_numpy() - ZYELL.first_data_line]
        return rows.assign(**{TRUTH: np.asarray(CLASS_NAMES, dtype=object)[true_codes]})
    if label in names and has_values(path, label):
        known = [(label, "!=", NORMAL), (label, "in", list(CLASS_NAMES))]
        rows = pq.read_table(path, columns=[*columns, label], filters=known).to_pandas()
        return rows.rename(columns={label: TRUTH})
    return None


def has_values(path: Path, column: str) -> bool:
    """Whether a column of a Parquet file holds any value (`nad score` leaves labels null when
    they are not known)."""
    return pq.read_table(path, columns=[column])[column].null_count < pq.read_metadata(path).num_rows


@dataclass(frozen=True)
class FileIncidents:
    """The incidents of one predictions file, where they were written, and, with the truth,
    their detection figures."""

    predictions: Path
    path: Path
    incidents: pd.DataFrame
    detection: IncidentDetection | None


@dataclass(frozen=True)
class FileFailure:
    """A predictions file whose incidents could not be made, and why, in one line."""

    predictions: Path
    error: str


def incidents_path(predictions: Path) -> Path:
    return predictions.with_name(predictions.name.removesuffix(PREDICTIONS_SUFFIX) + INCIDENTS_SUFFIX)


def write_incidents(
    predictions: Path,
    gap_seconds: float = DEFAULT_GAP_SECONDS,
    truth_dir: Path | None = None,
    rows_read: int | None = None,
) -> FileIncidents:
    """Find the incidents of a predictions file and write them beside it as `STEM.incidents.parquet`.
    `rows_read`: the scored file's data lines, when its summary is not written yet."""
    flagged = read_flagged(predictions)
    incidents = find_incidents(flagged, gap_seconds)
    attacks = read_attacks(predictions, truth_dir, rows_read)
    detection = None if attacks is None else detect_episodes(flagged, attacks, TRUTH, gap_seconds)
    target = incidents_path(predictions)
    with atomic_path(target) as tmp:
        incidents.to_parquet(tmp, index=False)
    return FileIncidents(predictions, target, incidents, detection)


def read_incidents(path: Path) -> pd.DataFrame:
    """A `STEM.incidents.parquet`, with its columns' types (Parquet keeps no whole-second times)."""
    return pd.read_parquet(path).astype(incident_types())


def folder_incidents(
    folder: Path, gap_seconds: float = DEFAULT_GAP_SECONDS, truth_dir: Path | None = None
) -> list[FileIncidents | FileFailure]:
    """`write_incidents` for every predictions file of a folder; a file that fails is told as a
    FileFailure and the others go on, as `nad score` does per file."""
    if not folder.is_dir():
        raise IncidentError(f"{folder}: no such folder")
    files = sorted(folder.glob(f"*{PREDICTIONS_SUFFIX}"))
    if not files:
        raise IncidentError(f"{folder}: no *{PREDICTIONS_SUFFIX} (write them with nad score)")
    return [file_incidents(path, gap_seconds, truth_dir) for path in files]


def file_incidents(path: Path, gap_seconds: float, truth_dir: Path | None) -> FileIncidents | FileFailure:
    try:
        return write_incidents(path, gap_seconds, truth_dir)
    except (OSError, ValueError) as error:
        return FileFailure(path, message_about(path, error))


def format_incidents(incidents: pd.DataFrame, top: int) -> str:
    """The `top` incidents by rows, as a plain-text table."""
    shown = incidents.sort_values(["rows", "start"], ascending=[False, True], kind="stable").head(top)
    text = {
        "src": shown["src"],
        "class": shown["class"],
        "start": shown["start"].dt.strftime("%H:%M:%S"),
        "end": shown["end"].dt.strftime("%H:%M:%S"),
        **{name: shown[name].map("{:,}".format) for name in ("rows", "destinations", "ports")},
        **{name: shown[name].map("{:.3f}".format) for name in ("max_probability", "mean_probability")},
    }
    columns = [[name, *map(str, values)] for name, values in text.items()]
    widths = [max(map(len, column)) for column in columns]
    aligned = [
        [cell.ljust(width) if number < 2 else cell.rjust(width) for cell in column]
        for number, (column, width) in enumerate(zip(columns, widths, strict=True))
    ]
    return "\n".join("  ".join(line).rstrip() for line in zip(*aligned, strict=True))


def detection_line(detection: IncidentDetection) -> str:
    return (
        f"episodes {detection.episodes:,}: detected {detection.detected:,} ({detection.detection_rate:.1%}), "
        f"with the right class {detection.detected_same_class:,}; incidents {detection.incidents:,}: "
        f"false {detection.false_incidents:,} ({detection.false_share:.1%})"
    )


@task(name="incidents", task_run_name="incidents-{predictions.name}")
def incidents_task(
    predictions: Path, gap_seconds: float = DEFAULT_GAP_SECONDS, truth_dir: Path | None = None
) -> FileIncidents:
    """Prefect task: `write_incidents`."""
    return write_incidents(predictions, gap_seconds, truth_dir)
