"""The champion gate: challenger and champion scored on the same rows, which neither trained or
validated on.

The gate rows are the challenger's test split less every row that the champion trained or
validated on. Which split a row was in when the champion was trained is recomputed from the
champion's split manifest (`split.json`, logged on its run) by `assigned_splits`; rows of a
partition the champion's split did not hold are kept. Rows of a partition whose source changed
since (another sha256) are left out: their line numbers may name rows the champion saw. The
challenger never trains or validates on its test split, so neither model has seen a gate row.

The decision is the threshold's paired bootstrap (`bootstrap_gain_bound`) over the gate rows:
the challenger is promoted unless it is significantly worse, that is unless the lower
confidence bound of criterion(champion) - criterion(challenger) is above zero. When the champion
cannot score the gate rows (no manifest on its run, another dataset, input columns the rows
lack, a split whose groups cannot be recomputed, no row left), nothing is compared and the stated
rule promotes the challenger. The first version is always promoted.
"""

from typing import Final

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from tasks.ingest.parse import LINE_COLUMN
from tasks.metrics import confusion_of_codes, evaluate_confusion
from tasks.model.fusion import Predictor
from tasks.training.split import CLOCK, GROUP_COLUMN, StorePart, assigned_splits
from tasks.training.summary import FIRST_VERSION, NOT_COMPARED, SAME_ROWS, GateDecision, GateFigures, GateRows
from tasks.training.threshold import bootstrap_gain_bound

CONFIDENCE: Final = 0.95
RESAMPLES: Final = 1000
ROW_COLUMNS: Final = ("label", "partition", LINE_COLUMN, GROUP_COLUMN)
TRAINED, VALIDATED, HELD_OUT, UNSEEN, CHANGED = 0, 1, 2, -1, 3  # a row under the champion's split


def changed_partitions(champion: dict[str, str], challenger: dict[str, str]) -> tuple[str, ...]:
    """Partitions in both splits whose source sha256 differs: the day was replaced since."""
    return tuple(sorted(p for p in champion.keys() & challenger.keys() if champion[p] != challenger[p]))


def partition_number(name: str) -> int:
    """The 32-bit number that split files carry in their `partition` column."""
    return StorePart(name, "", "").number


def champion_roles(manifest: dict, frame: pd.DataFrame, changed: tuple[str, ...]) -> np.ndarray:
    """Per row of encoded split files: TRAINED, VALIDATED or HELD_OUT under the champion's split,
    UNSEEN for a partition it did not hold, CHANGED for a partition whose source changed."""
    roles = assigned_splits(manifest, frame).astype(np.int8)
    numbers = [partition_number(name) for name in changed]
    return np.where(frame["partition"].isin(numbers).to_numpy(), CHANGED, roles).astype(np.int8)


def is_gate_row(roles: np.ndarray) -> np.ndarray:
    return np.isin(roles, (HELD_OUT, UNSEEN))


def count_rows(roles: np.ndarray) -> GateRows:
    """How the challenger's test rows divide: gate rows and what left the others out."""
    return GateRows(
        test_rows=len(roles),
        rows=int(is_gate_row(roles).sum()),
        champion_trained_rows=int((roles == TRAINED).sum()),
        champion_validated_rows=int((roles == VALIDATED).sum()),
        changed_rows=int((roles == CHANGED).sum()),
    )


def unscorable_reason(
    champion_manifest: dict | None,
    challenger_manifest: dict,
    champion_dataset: str,
    champion_features: tuple[str, ...],
    columns: set[str],
) -> str | None:
    """Why the champion cannot be scored on the challenger's test rows; None when it can."""
    dataset = challenger_manifest["dataset"]
    if champion_manifest is None:
        return "the champion's run has no split manifest, so the rows it trained on are unknown"
    if champion_dataset != dataset or champion_manifest["dataset"] != dataset:
        return f"the champion is a {champion_dataset} model and the gate rows are {dataset} rows"
    theirs, ours = champion_manifest["assignment"], challenger_manifest["assignment"]
    if theirs["grouping"] == CLOCK and (ours["grouping"], ours["minutes"]) != (CLOCK, theirs["minutes"]):
        held = f"{ours['minutes']}-min clock" if ours["grouping"] == CLOCK else f"{ours['grouping']}"
        return (
            f"the champion's split moved {theirs['minutes']}-min clock blocks and the gate rows carry "
            f"{held} groups, so the rows it trained on cannot be told"
        )
    missing = [name for name in champion_features if name not in columns]
    if missing:
        return f"the champion needs input columns the gate rows lack: {', '.join(missing[:5])}" + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
    return None


def predict_codes(predictor: Predictor, frame: pd.DataFrame) -> np.ndarray:
    """Class codes of encoded split rows (the predictor's input columns, unscaled)."""
    if frame.empty:
        return np.zeros(0, dtype=np.int64)
    encoded = frame[list(predictor.preprocessing.features)].to_numpy()
    codes, _ = predictor.predict_codes(predictor.preprocessing.transform(encoded))
    return np.asarray(codes, dtype=np.int64)


def score_gate_rows(
    files: list[str],
    manifest: dict,
    changed: tuple[str, ...],
    champion: Predictor,
    challenger: Predictor,
) -> tuple[GateRows, np.ndarray, np.ndarray, np.ndarray]:
    """The gate rows of the challenger's test split files, one file at a time: their counts, and
    the true, champion's and challenger's class codes of each gate row."""
    columns = list(dict.fromkeys([*champion.preprocessing.features, *challenger.preprocessing.features]))
    roles, truth, theirs, ours = [], [], [], []
    for path in files:
        frame = pq.read_table(path, columns=[*columns, *ROW_COLUMNS]).to_pandas()
        role = champion_roles(manifest, frame, changed)
        rows = frame[is_gate_row(role)]
        roles.append(role)
        truth.append(rows["label"].to_numpy().astype(np.int64))
        theirs.append(predict_codes(champion, rows))
        ours.append(predict_codes(challenger, rows))
    joined = (np.concatenate(part) if part else np.zeros(0, dtype=np.int64) for part in (truth, theirs, ours))
    return (count_rows(np.concatenate(roles) if roles else np.zeros(0, np.int8)), *joined)


def figures(truth: np.ndarray, predicted: np.ndarray) -> GateFigures:
    evaluation = evaluate_confusion(confusion_of_codes(truth, predicted))
    return GateFigures(evaluation.criterion, evaluation.fbeta, evaluation.far)


def first_version(version: str) -> GateDecision:
    return GateDecision("promoted", version, None, FIRST_VERSION, "no champion yet: the first version")


def not_compared(
    version: str, champion_version: str, reason: str, rows: GateRows | None = None
) -> GateDecision:
    """The champion cannot score the gate rows: no figures, and the rule promotes the challenger."""
    return GateDecision(
        "promoted", version, champion_version, NOT_COMPARED, f"{reason}; the rule promotes the challenger",
        rows=rows,
    )  # fmt: skip


def left_out(rows: GateRows, changed: tuple[str, ...]) -> str:
    """Which of the challenger's test rows the gate left out, and why."""
    text = (
        f"of {rows.test_rows} test rows, {rows.champion_trained_rows} were left out as the champion "
        f"trained on them, {rows.champion_validated_rows} as it validated on them"
    )
    if changed:
        text += f", {rows.changed_rows} as their source ({', '.join(changed)}) changed since it trained"
    return text


def compared(
    version: str,
    champion_version: str,
    truth: np.ndarray,
    champion: np.ndarray,
    challenger: np.ndarray,
    rows: GateRows,
    changed: tuple[str, ...] = (),
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> GateDecision:
    """Keep the champion only when it is significantly better on the gate rows: the lower bound
    of criterion(champion) - criterion(challenger) above zero."""
    bound = bootstrap_gain_bound(truth, challenger, champion, resamples, confidence, seed)
    keep = bound > 0
    verdict = "significantly better" if keep else "not significantly better"
    reason = f"the champion is {verdict} on {rows.rows} gate rows ({left_out(rows, changed)})"
    return GateDecision(
        "kept" if keep else "promoted", version, champion_version, SAME_ROWS, reason,
        rows=rows, challenger=figures(truth, challenger), champion=figures(truth, champion),
        bound=bound, confidence=confidence, changed=changed,
    )  # fmt: skip
