"""Checks that every dataset's row contract shares."""

from typing import Final

import pandera.backends.pandas.builtin_checks  # noqa: F401
import pandera.pandas as pa

# The import above registers the pandas functions of pandera's builtin checks before any schema
# builds its checks, so that one check can also run alone (tasks/registry/pyfunc_model.py `holds_quickly`).

# For free-text fields whose unknown values are kept (ZYELL's app, NSL-KDD's service): no real
# name comes near it, so a longer field is a bad row, and a runaway value (a 5 MB `app`) goes to
# quarantine instead of into the store and its reports.
MAX_TEXT_LENGTH: Final[int] = 128


def bounded_text(*checks: pa.Check) -> list[pa.Check]:
    """A text field's checks: `checks`, then at most MAX_TEXT_LENGTH characters."""
    too_long = f"longer than {MAX_TEXT_LENGTH} characters"
    return [*checks, pa.Check.str_length(max_value=MAX_TEXT_LENGTH, error=too_long)]
