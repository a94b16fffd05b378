"""The fused model as an MLflow pyfunc, defined as code ("models from code"): nothing is pickled.

MLflow loads this file, which declares the model with `set_model`; `load_context` then loads the
saved predictor folder (native .keras files and JSON, Keras safe_mode on).

A request's rows must pass the row contract that ingestion applies (the dataset spec's, from
`schemas/`), less the checks that need a file (ZYELL: a time on the file's day). If any row breaks
it, the whole request is refused with INVALID_PARAMETER_VALUE, which the scoring server answers
with HTTP 400 naming each bad row (counted from 0, as in the request), column and reason, in
ingestion's words; no row gets a label. So is a request of more than MAX_REQUEST_ROWS rows (the
environment variable NAD_MAX_REQUEST_ROWS changes it): one request cannot hold a worker for long.
"""

import os

import mlflow
import numpy as np
import pandas as pd
import pandera.pandas as pa
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel
from pandera.engines import pandas_engine

from schemas.runtime import MAX_REQUEST_ROWS_ENV
from tasks.errors import quote
from tasks.registry.serving import MAX_REQUEST_ROWS

MAX_ROWS_NAMED = 10  # bad rows named in one refusal; the rest are counted
LARGEST_INTEGER = 10**18  # as ingestion: an integer field has at most 18 digits


class RefusedRequest(MlflowException):
    """HTTP 400 (INVALID_PARAMETER_VALUE) with this message alone. MLflow 3.17's scoring server
    rewrites a model's MlflowException message as `Failed to predict data '<the frame's repr>'`
    plus the message, burying the reason under the request's rows; this message keeps its first value."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._message

    @message.setter
    def message(self, value: str) -> None:
        if not hasattr(self, "_message"):
            self._message = value


def parse_column(values: pd.Series, kind: str, time_format: str | None) -> pd.Series:
    """A request column typed as ingestion types a file's text; a value that does not parse is null."""
    if kind == "timestamp":
        times = pd.to_datetime(values.astype("str"), format=time_format, errors="coerce")
        return times.astype("datetime64[s]")
    if kind == "string":
        return values.astype("str")
    if kind == "integer" and pd.api.types.is_integer_dtype(values):  # as the signature delivers it
        return values.astype("Int64")
    numbers = pd.to_numeric(values, errors="coerce")
    if kind == "float":
        return numbers.astype("Float64")
    finite = np.isfinite(numbers.astype("float64"))
    whole = finite & (numbers.abs() < LARGEST_INTEGER) & (numbers.where(finite, 0) % 1 == 0)
    return numbers.where(whole).astype("Float64").astype("Int64")


def quoted(value) -> str:
    """A request's value as ingestion quotes a field's text: a null as ''."""
    return quote("" if pd.isna(value) else str(value))


def typed_rows(frame: pd.DataFrame, spec) -> pd.DataFrame:
    """A request's rows typed as ingestion types a file's text (the contract's columns, in order)."""
    rows = frame.reset_index(drop=True)
    columns = spec.column_kinds(labelled=False)
    return pd.DataFrame(
        {name: parse_column(rows[name], kind, spec.time_format) for name, kind in columns.items()}
    )


def missing_columns(frame: pd.DataFrame, spec) -> list[str]:
    return [name for name in spec.column_kinds(labelled=False) if name not in frame]


def contract_breaches(frame: pd.DataFrame, spec) -> dict[int, list[str]]:
    """Row position (-1: every row) -> [`column = 'value': reason`] for each breach of the spec's
    row contract, in ingestion's words."""
    missing = missing_columns(frame, spec)
    if missing:
        return {-1: [f"missing column(s) {missing}"]}
    return typed_breaches(typed_rows(frame, spec), frame.reset_index(drop=True), spec)


def typed_breaches(typed: pd.DataFrame, rows: pd.DataFrame, spec) -> dict[int, list[str]]:
    """`contract_breaches` of rows already typed (`typed_rows`); `rows` as sent, for the quotes."""
    from tasks.ingest.parse import describe_failure

    schema = spec.contract(labelled=False)
    if holds_quickly(typed, schema):
        return {}
    try:
        schema.validate(typed, lazy=True)
        return {}
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
    breaches: dict[int, list[str]] = {}
    for position, column, check in zip(cases["index"], cases["column"], cases["check"], strict=True):
        row = -1 if pd.isna(position) else int(position)
        value = "" if row < 0 else f" = {quoted(rows.at[row, column])}"
        breaches.setdefault(row, []).append(f"{column}{value}: {describe_failure(column, check, spec)}")
    return dict(sorted(breaches.items()))


def holds_quickly(typed: pd.DataFrame, schema: pa.DataFrameSchema) -> bool:
    """Whether every row passes the schema's column checks, run as plain vectorised calls of the
    same pandera checks (pandera's own validation costs ~20 ms a call, whatever the rows). False
    means "not shown here": the caller validates with pandera, which has the last word and the words
    for each failure. Schemas with frame-wide checks or unique columns always go to pandera."""
    if schema.checks or schema.unique or list(typed.columns) != list(schema.columns):
        return False

    for name, column in schema.columns.items():
        values = typed[name]
        if not column.dtype.check(pandas_engine.Engine.dtype(values.dtype)) or column.unique:
            return False
        if values.hasnans and not column.nullable:
            return False
        for check in column.checks:
            if check.element_wise or check.groupby is not None or not column_check_passes(check, values):
                return False
    return True


def column_check_passes(check: pa.Check, values: pd.Series) -> bool:
    """One pandera check on one column, through pandera's own check backend (which drops nulls
    first when the check ignores them), without the schema's validation machinery around it."""
    try:
        return bool(check.get_backend(values)(check)(values).check_passed)
    except KeyError:  # a check built before pandera registered its pandas functions (schemas/checks.py)
        return False


REFUSAL_BYTES = 300  # a refusal's message: the cause first, whole within this many bytes


def refusal_message(breaches: dict[int, list[str]], rows: int) -> str:
    """The words of a refusal: the first breaches, then how many rows break the contract, in at
    most REFUSAL_BYTES bytes (a value quoted is cut first)."""
    named = [f"{'every row' if row < 0 else f'row {row}'}: {'; '.join(why)}" for row, why in breaches.items()]
    bad = rows if -1 in breaches else len(breaches)
    tail = f" ({bad} of {rows} rows break the row contract; none labelled; rows counted from 0)"
    shown = named[0]
    for more in named[1:MAX_ROWS_NAMED]:
        if len(f"{shown} | {more}{tail}".encode()) > REFUSAL_BYTES:
            break
        shown = f"{shown} | {more}"
    room = REFUSAL_BYTES - len(tail.encode())
    if len(shown.encode()) > room:
        shown = shown.encode()[: room - 3].decode(errors="ignore") + "..."
    return shown + tail


def refusal(breaches: dict[int, list[str]], rows: int) -> RefusedRequest:
    """The answer to a request with bad rows: HTTP 400, the cause first."""
    return RefusedRequest(refusal_message(breaches, rows))


def too_many_rows(rows: int, limit: int) -> str:
    return f"{rows:,} rows in one request; at most {limit:,}: split it"


class NadFusionModel(PythonModel):
    """Raw rows (the dataset's unlabelled columns, as in the signature) in, class names out."""

    def load_context(self, context) -> None:
        from tasks.model.fusion import load_predictor

        self.predictor = load_predictor(context.artifacts["predictor"])
        self.max_rows = int(os.environ.get(MAX_REQUEST_ROWS_ENV, MAX_REQUEST_ROWS))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.Series:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if len(frame) > self.max_rows:
            raise RefusedRequest(too_many_rows(len(frame), self.max_rows))
        breaches = contract_breaches(frame, self.predictor.preprocessing.spec)
        if breaches:
            raise refusal(breaches, len(frame))
        return pd.Series(self.predictor.predict(frame), name="pred_label").astype(str)


mlflow.models.set_model(NadFusionModel())
