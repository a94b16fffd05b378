"""Voting by source: within a clock window, a source's flagged rows take one attack class.

A model may call the rows of one sweep IP sweep, Nmap and Port sweep by turns, while the rows
of one source within a short window are mostly one activity. Every flagged row (predicted class
not Normal) of a source in a window of `window_seconds`, aligned to the clock, gets the class
that wins among that source's flagged rows in that window. Rows predicted Normal never change.

Rules: `majority`, the class of most rows, ties to the larger sum of attack probability;
`probability`, the class of the larger sum of attack probability, ties to more rows. A
remaining tie goes to the class listed first in CLASS_NAMES. Voting reads the whole file's
flagged rows, so at scoring it runs after the last block.
"""

from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from schemas.datasets import DatasetSpec
from schemas.firewall import CLASS_NAMES, NORMAL
from tasks.errors import InputError

VOTE_RULES: Final[dict[str, tuple[str, str]]] = {
    "majority": ("rows", "weight"),
    "probability": ("weight", "rows"),
}
MAX_WINDOW_SECONDS: Final[int] = 86_400  # a day: a longer window is a typo, and overflows clock arithmetic


@dataclass(frozen=True)
class Vote:
    """How flagged rows vote: clock windows of `window_seconds`, and the rule."""

    window_seconds: int = 60
    rule: str = "majority"

    def __post_init__(self) -> None:
        if not 0 < self.window_seconds <= MAX_WINDOW_SECONDS:
            raise ValueError(
                f"a voting window is 1 to {MAX_WINDOW_SECONDS:,} seconds, not {self.window_seconds:,}"
            )
        if self.rule not in VOTE_RULES:
            raise ValueError(f"unknown voting rule {self.rule!r}; known: {sorted(VOTE_RULES)}")


def check_votable(spec: DatasetSpec) -> None:
    """Voting groups rows by source and time: the identifier columns a context spec declares."""
    if spec.context is None:
        raise InputError(f"{spec.name} rows name no source and time: voting by source needs them")


def voting_of(window_seconds: int, rule: str) -> Vote | None:
    """The vote of scoring options: none for a window of 0 seconds; a bad one is an input error."""
    if window_seconds == 0:
        return None
    try:
        return Vote(window_seconds, rule)
    except ValueError as error:
        raise InputError(f"voting: {error}") from error


def vote_by_source(
    times: pd.Series, sources: pd.Series, predicted: pd.Series, probability: pd.Series, vote: Vote = Vote()
) -> np.ndarray:
    """The classes after the vote, one per row, aligned with the inputs."""
    predicted = np.asarray(predicted, dtype=object)
    flagged = predicted != NORMAL
    seconds = np.asarray(times, dtype="datetime64[s]").astype(np.int64)
    ballots = pd.DataFrame(
        {
            "src": np.asarray(sources, dtype=object)[flagged],
            "window": seconds[flagged] // vote.window_seconds,
            "class": predicted[flagged],
            "weight": np.asarray(probability, dtype=np.float64)[flagged],
        }
    )
    tally = ballots.groupby(["src", "window", "class"], as_index=False).agg(
        rows=("weight", "size"), weight=("weight", "sum")
    )
    tally["order"] = tally["class"].map(CLASS_NAMES.index)
    first, second = VOTE_RULES[vote.rule]
    winners = tally.sort_values(
        ["src", "window", first, second, "order"], ascending=[True, True, False, False, True], kind="stable"
    ).drop_duplicates(["src", "window"])
    chosen = ballots.merge(
        winners[["src", "window", "class"]], on=["src", "window"], how="left", suffixes=("", "_won")
    )
    result = predicted.copy()
    result[flagged] = chosen["class_won"].to_numpy()
    return result
