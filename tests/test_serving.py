"""The trained model under real servers on 127.0.0.1: `nad serve` (the recommended setup) and
stock `mlflow models serve` of the same registered version, set up as `tasks.registry.serving` says:
several workers, the ingest row contract on every request, a row limit, a burst of requests,
503 past the queue limit, and the predictions of `nad score`."""

import json
import math
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from schemas.firewall import CLASS_NAMES, UNLABELLED_COLUMNS
from tasks.registry.mlflow_setup import MODEL_NAME
from tasks.registry.serving import MAX_REQUEST_ROWS, serve_command, serve_env
from tests.helpers import free_port, wait_for_http

pytestmark = pytest.mark.slow

WORKERS = 2
BURST = 100
QUEUE_LIMIT = 2  # per worker, small so that a burst of large requests meets it
NAD = str(Path(sys.executable).parent / "nad")


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


def start_nad_serve(model: str, env: dict, folder: Path, *options: str):
    """`nad serve` of `model` on a free port; returns the process and its /invocations URL."""
    port = free_port()
    command = [NAD, "serve", "--model", model, "--port", str(port), "--workers", str(WORKERS), *options]
    with (folder / "nad-serve.log").open("w") as out:
        process = subprocess.Popen(command, env=env, cwd=folder, stdout=out, stderr=subprocess.STDOUT)
    wait_for_http(f"http://127.0.0.1:{port}/ping", process, seconds=300)
    return process, f"http://127.0.0.1:{port}/invocations"


@pytest.fixture(scope="module")
def nad_server(trained, tmp_path_factory: pytest.TempPathFactory):
    """The same registered version under `nad serve`, WORKERS workers, QUEUE_LIMIT each."""
    store = {**os.environ, "MLFLOW_TRACKING_URI": trained.tracking.tracking_uri}
    model = f"models:/{MODEL_NAME}/{trained.tracking.version}"
    folder = tmp_path_factory.mktemp("nad-serve")
    process, url = start_nad_serve(model, store, folder, "--queue-limit", str(QUEUE_LIMIT))
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)


@pytest.fixture(params=["nad", "mlflow"])
def any_server(request: pytest.FixtureRequest) -> str:
    """Each setup in turn: `nad serve`, then stock `mlflow models serve`."""
    return request.getfixturevalue("nad_server" if request.param == "nad" else "server")


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
    any_server: str, rows: pd.DataFrame, column: str, value, row: int | None, expected: str
) -> None:
    status, answer = post(any_server, body_of(with_value(rows, column, value, row)))
    assert status == 400 and "predictions" not in answer
    assert answer["error_code"] == "INVALID_PARAMETER_VALUE"
    assert expected in answer["message"]
    bad = len(rows) if row is None else 1
    assert f"{bad} of {len(rows)} rows break the row contract" in answer["message"]
    assert answer["message"].startswith(expected) and len(answer["message"].encode()) <= 300


def test_a_string_in_a_number_column_is_refused_cause_first(nad_server: str, rows: pd.DataFrame) -> None:
    """(Stock MLflow refuses a string in a number column itself, by its signature.)"""
    status, answer = post(nad_server, body_of(with_value(rows, "out (bytes)", "many")))
    assert status == 400 and "predictions" not in answer
    assert answer["message"].startswith("row 3: out (bytes) = 'many': missing or not a number (1 of 20 rows")


def test_a_missing_column_is_refused_cause_first_in_few_words(any_server: str, rows: pd.DataFrame) -> None:
    status, answer = post(any_server, body_of(rows.drop(columns=["duration"])))
    assert status == 400 and "predictions" not in answer
    assert answer["message"].startswith("every row: missing column(s) ['duration']")
    assert len(answer["message"].encode()) <= 300, answer["message"]


def test_an_oversized_request_is_refused(any_server: str, rows: pd.DataFrame) -> None:
    many = pd.concat([rows] * (MAX_REQUEST_ROWS // len(rows) + 1), ignore_index=True)
    status, answer = post(any_server, body_of(many))
    assert status == 400 and "predictions" not in answer
    assert f"{len(many):,} rows in one request; at most {MAX_REQUEST_ROWS:,}" in answer["message"]


def test_a_burst_of_concurrent_requests_is_answered_in_full(server: str, rows: pd.DataFrame) -> None:
    body = body_of(rows)
    with ThreadPoolExecutor(BURST) as pool:
        answers = list(pool.map(lambda _: post(server, body), range(BURST)))
    assert [status for status, _ in answers] == [200] * BURST
    assert all(len(answer["predictions"]) == len(rows) for _, answer in answers)


def test_past_the_queue_limit_requests_are_answered_503_at_once(nad_server: str, rows: pd.DataFrame) -> None:
    body = body_of(pd.concat([rows] * 200, ignore_index=True))  # 4,000 rows: each takes a while

    def timed(_: int) -> tuple[int, dict, float]:
        start = time.perf_counter()
        status, answer = post(nad_server, body)
        return status, answer, time.perf_counter() - start

    with ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(timed, range(40)))
    statuses = [status for status, *_ in answers]
    assert set(statuses) == {200, 503} and statuses.count(200) >= WORKERS * QUEUE_LIMIT
    busy = [answer for status, answer, _ in answers if status == 503]
    assert all("requests queued" in answer["message"] for answer in busy)
    fastest_refusal = min(seconds for status, _, seconds in answers if status == 503)
    assert fastest_refusal < max(seconds for status, _, seconds in answers if status == 200)


def scored_by_nad_score(model_dir: Path, rows: pd.DataFrame, folder: Path) -> list[str]:
    """`nad score`'s classes for these rows, written as a day file (what the score flow runs per file)."""
    from tasks.model.fusion import load_predictor
    from tasks.scoring.score import score_file

    day = folder / "0124_firewall.csv"
    rows.to_csv(day, index=False)
    score_file(day, load_predictor(model_dir), folder / "scores")
    return pd.read_parquet(folder / "scores" / "0124_firewall.predictions.parquet")["pred_label"].tolist()


def test_nad_serve_predicts_what_nad_score_does(
    nad_server: str, server: str, trained, tiny_dir: Path, tmp_path: Path
) -> None:
    day = pd.read_csv(tiny_dir / "0124_firewall.csv")[list(UNLABELLED_COLUMNS)]
    expected = scored_by_nad_score(Path(trained.predictors["fusion"]), day, tmp_path)
    assert len(set(expected)) > 1  # attacks among them, not only Normal
    for url in (nad_server, server):
        status, answer = post(url, body_of(day.astype({"duration": "float64"})))
        labels = [p["pred_label"] if isinstance(p, dict) else p for p in answer["predictions"]]
        assert status == 200 and labels == expected, url


def test_a_context_model_served_predicts_what_nad_score_does(
    context_trained, tiny_dir: Path, tmp_path: Path
) -> None:
    folder = Path(context_trained.predictors["fusion"])
    day = pd.read_csv(tiny_dir / "0124_firewall.csv")[list(UNLABELLED_COLUMNS)]
    expected = scored_by_nad_score(folder, day, tmp_path)
    process, url = start_nad_serve(str(folder), dict(os.environ), tmp_path)
    try:
        status, answer = post(url, body_of(day))
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert status == 200 and answer["predictions"] == expected
