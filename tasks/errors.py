"""Errors a user can act on, how messages quote values, and which failures a retry can cure.

A `NadError`'s message is the whole story for the user: it names the file, folder, model or key
and says what is wrong; the CLI prints it as one `error:` line. Values quoted in messages and
reports are cut to QUOTE_LIMIT characters, so a 5 MB field never floods a terminal or a report.
"""

import errno
from typing import Final

from pydantic import ValidationError

QUOTE_LIMIT: Final[int] = 200  # a value quoted in a message or a report
MESSAGE_LIMIT: Final[int] = 2000  # a whole error line
# Failures of the file system that stay the same however often they are tried again.
PERMANENT_OS_ERRORS: Final = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)

# The disk itself refuses: no retry helps until someone frees space or remounts it.
DISK_REFUSALS: Final = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
}


class NadError(Exception):
    """A problem with the input, the model or the setup that the user can fix."""


class InputError(NadError):
    """Missing or unusable input: a folder or file that is not there, or nothing matched."""


class ModelError(NadError):
    """A model that cannot be found, loaded, or used on this dataset."""


def clip(text: str, limit: int = QUOTE_LIMIT) -> str:
    """`text`, cut to `limit` characters with an ellipsis and the full length when longer."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} characters)"


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """A value as a message quotes it (its repr), cut to `limit` characters."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(str(value)):,} characters)"


def message_of(error: BaseException, limit: int = MESSAGE_LIMIT) -> str:
    """What went wrong, as one line for the user: the message of a known kind of error (naming
    the file of an I/O error, the fields of an invalid config), else the type and message."""
    if isinstance(error, ValidationError):
        text = f"invalid {error.title}: " + "; ".join(map(field_problem, error.errors()))
    elif isinstance(error, OSError) and error.filename is not None:
        text = f"{error.filename}: {error.strerror or error}"
    elif isinstance(error, NadError | ValueError):
        text = str(error)
    else:
        text = f"{type(error).__name__}: {error}"
    return clip(" ".join(text.split()), limit)


def field_problem(detail: dict) -> str:
    """One problem of a pydantic validation: `where: what` (no `where` for the whole model)."""
    where = ".".join(map(str, detail["loc"]))
    what = detail["msg"].removeprefix("Value error, ")
    return f"{where}: {what}" if where else what


def message_about(subject: object, error: BaseException) -> str:
    """`message_of(error)`, led by `subject` (a file, a model) unless the message names it already."""
    message = message_of(error)
    return message if str(subject) in message else f"{subject}: {message}"


def is_transient(error: BaseException) -> bool:
    """Whether trying again may succeed: I/O and connection failures, not bad input or bugs."""
    return (
        isinstance(error, OSError)
        and not isinstance(error, PERMANENT_OS_ERRORS)
        and error.errno not in DISK_REFUSALS
    )


def retry_if_transient(task, task_run, state) -> bool:
    """A Prefect `retry_condition_fn`: retry a failed task only when its error is transient."""
    try:
        state.result()
    except Exception as error:
        return is_transient(error)
    return False
