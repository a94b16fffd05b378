"""Voting by source, on hand-made rows."""

import pandas as pd
import pytest

from schemas.firewall import NORMAL
from tasks.scoring.voting import Vote, vote_by_source

A, B = "10.0.0.5", "172.16.3.9"
IP, PORT, NMAP, DDOS = "Probing-IP sweep", "Probing-Port sweep", "Probing-Nmap", "DDOS-smurf"
# time, src, predicted, attack probability
ROWS = [
    ("10:00:01", A, IP, 0.2),
    ("10:00:20", A, PORT, 0.9),
    ("10:00:40", A, IP, 0.3),
    ("10:00:50", A, NORMAL, 0.1),  # Normal rows keep their class
    ("10:01:00", A, PORT, 0.8),  # the next clock minute votes on its own
    ("10:00:05", B, NMAP, 0.5),
    ("10:00:06", B, DDOS, 0.7),
]


def voted(vote: Vote) -> list[str]:
    time, src, predicted, probability = zip(*ROWS, strict=True)
    times = pd.to_datetime([f"2021-01-23 {t}" for t in time])
    return vote_by_source(
        pd.Series(times), pd.Series(src), pd.Series(predicted), pd.Series(probability), vote
    ).tolist()


def test_majority_within_a_clock_minute_ties_to_the_larger_probability() -> None:
    assert voted(Vote(60, "majority")) == [IP, IP, IP, NORMAL, PORT, DDOS, DDOS]


def test_probability_rule_follows_the_summed_attack_probability() -> None:
    assert voted(Vote(60, "probability")) == [PORT, PORT, PORT, NORMAL, PORT, DDOS, DDOS]


def test_a_longer_window_joins_the_next_minute() -> None:
    assert voted(Vote(3600, "majority")) == [PORT, PORT, PORT, NORMAL, PORT, DDOS, DDOS]


def test_a_vote_is_checked() -> None:
    with pytest.raises(ValueError, match="unknown voting rule"):
        Vote(60, "loudest")
    with pytest.raises(ValueError, match="1 to 86,400 seconds, not 0"):
        Vote(0)
    with pytest.raises(ValueError, match="not 9,223,372,036,854,775,808"):
        Vote(2**63)
    assert Vote(86_400).window_seconds == 86_400
