"""The trained model under a real `mlflow models serve` on 127.0.0.1, set up as `tasks.serving` says:
several workers, the ingest row contract on every request, a row limit, a burst of requests."""

import json
import math
import os
import subprocess
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from schemas.firewall import CLASS_NAMES, UNLABELLED_COLUMNS
from tasks.serving import MAX_REQUEST_ROWS, serve_command, serve_env
from tasks.tracking import MODEL_NAME
from tests.helpers import free_port, wait_for_http

pytestmark = pytest.mark.slow

WORKERS = 2
BURST = 100


@pytest.fixture(scope="module")
def rows(tiny_dir: Path, tiny_days) -> pd.DataFrame:
    """20 good unlabelled rows of a test day."""
    frame = pd.read_csv(tiny_dir / "0124_firewall.csv").head(20)
    return frame[list(UNLABELLED_COLUMNS)].astype({"duration": "float64"})


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory: pytest.TempPathFactory):
    """The session's trained model served by WORKERS workers; yields its /invocations URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    store = {**os.environ, "MLFLOW_TRACKING_URI": trained.tracking.tracking_uri}
    with log.open("w") as out:
        process = subprocess.Popen(
            serve_command(f"models:/{MODEL_NAME}/{trained.tracking.version}", port, WORKERS),
            env=serve_env(WORKERS, base=store),
            cwd=log.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", process, seconds=300)
        yield f"http://127.0.0.1:{port}/invocations"
    finally:
        process.terminate()
        process.wait(timeout=60)


def body_of(frame: pd.DataFrame) -> bytes:
    split = {"columns": list(frame.columns), "data": frame.astype(object).values.tolist()}
    return json.dumps({"dataframe_split": split}).encode()  # None and NaN go as JSON null and NaN


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def with_value(rows: pd.DataFrame, column: str, value, row: int | None = 3) -> pd.DataFrame:
    changed = rows.astype(object)
    changed.loc[changed.index if row is None else [row], column] = value
    return changed


def test_good_rows_get_class_names(server: str, rows: pd.DataFrame) -> None:
    status, answer = post(server, body_of(rows))
    assert status == 200
    labels = [p["pred_label"] if isinstance(p, dict) else p for p in answer["predictions"]]
    assert len(labels) == len(rows) and set(labels) <= set(CLASS_NAMES)


@pytest.mark.parametrize(
    ("column", "value", "row", "expected"),
    [
        ("duration", None, None, "row 0: duration = '': missing or not a number"),
        ("duration", math.nan, 3, "row 3: duration = '': missing or not a number"),
        ("out (bytes)", -5, 3, "row 3: out (bytes) = '-5': negative"),
        ("in (bytes)", -1, 3, "row 3: in (bytes) = '-1': negative"),
        ("duration", 1e308, 3, "row 3: duration = '1e+308': not finite or above the maximum"),
    ],
    ids=["duration-null", "duration-nan", "negative-out-bytes", "negative-in-bytes", "duration-1e308"],
)
def test_rows_that_break_the_contract_are_refused_by_row_column_and_reason(
    server: str, rows: pd.DataFrame, column: str, value, row: int | None, expected: str
) -> None:
    status, answer = post(server, body_of(with_value(rows, column, value, row)))
    assert status == 400 and "predictions" not in answer
    assert answer["error_code"] == "INVALID_PARAMETER_VALUE"
    assert expected in answer["message"]
    bad = len(rows) if row is None else 1
    assert f"{bad} of {len(rows)} rows break the row contract" in answer["message"]


def test_an_oversized_request_is_refused(server: str, rows: pd.DataFrame) -> None:
    many = pd.concat([rows] * (MAX_REQUEST_ROWS // len(rows) + 1), ignore_index=True)
    status, answer = post(server, body_of(many))
    assert status == 400 and "predictions" not in answer
    assert f"{len(many):,} rows in one request; at most {MAX_REQUEST_ROWS:,}" in answer["message"]


def test_a_burst_of_concurrent_requests_is_answered_in_full(server: str, rows: pd.DataFrame) -> None:
    body = body_of(rows)
    with ThreadPoolExecutor(BURST) as pool:
        answers = list(pool.map(lambda _: post(server, body), range(BURST)))
    assert [status for status, _ in answers] == [200] * BURST
    assert all(len(answer["predictions"]) == len(rows) for _, answer in answers)
