"""nad's own scoring server: one process per core, each a single-worker ASGI app on one shared port.

What comes in and goes out is MLflow's scoring protocol, so a client of `mlflow models serve`
needs no change: `POST /invocations` with `{"dataframe_split": {"columns": [...], "data": [...]}}`
(the dataset's unlabelled columns), answered `{"predictions": [class names]}`; `GET /ping`.

What always holds:
- every request's rows pass the ingest row contract (`tasks/registry/pyfunc_model.py`, from `schemas/`)
  or the request is answered 400, cause first, no row of it labelled; so is a request over the
  row cap. A bad request never costs a good one its answer, even when batched with it;
- predictions are those of `nad score` on the same rows: the same predictor folder, the same
  typed rows, the same NumPy nets (`tasks/model/fusion.py`); under feature set `context` each request
  is a whole file, as `nad score` treats a file;
- requests that arrive while a batch is being scored wait and are scored together as the next
  batch (adaptive batching: one contract check and one pass of the nets per batch);
- past QUEUE_LIMIT requests waiting or in progress, a worker answers 503 at once.

Workers share the port with SO_REUSEPORT: the kernel spreads connections over them, and each
worker is a plain single-process uvicorn on a TCP_NODELAY socket (uvicorn's multi-worker mode
binds a socket without it, and kept-alive responses wait ~40 ms for a delayed ACK, uvicorn#3149).
"""

import asyncio
import contextlib
import itertools
import json
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from schemas.firewall import CLASS_NAMES
from tasks.registry.pyfunc_model import (
    missing_columns,
    refusal_message,
    too_many_rows,
    typed_breaches,
    typed_rows,
)
from tasks.registry.serving import READY

QUEUE_LIMIT = 512  # requests waiting or in progress per worker; beyond, 503 at once
BATCH_ROWS = 20_000  # rows scored together at most; a batch holds whole requests


@dataclass(frozen=True)
class Refused:
    """A request answered 400 (or 503) with this message."""

    message: str
    status: int = 400
    error_code: str = "INVALID_PARAMETER_VALUE"


def answer(status: int, body: dict) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def refused(refusal: Refused) -> Response:
    return answer(refusal.status, {"error_code": refusal.error_code, "message": refusal.message})


@dataclass(frozen=True)
class Rows:
    """A request's rows as sent: column names and one list of values per row (a DataFrame is
    built once per batch, not per request: that costs ~0.3 ms a request)."""

    columns: tuple[str, ...]
    data: list

    def __len__(self) -> int:
        return len(self.data)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.data, columns=list(self.columns))


def parse_json(body: bytes):
    """orjson, or the standard parser for what only it accepts (NaN, as MLflow's clients send)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def request_rows(body: bytes) -> Rows | Refused:
    """The rows of an MLflow `dataframe_split` request, or why it cannot be read."""
    try:
        split = parse_json(body)["dataframe_split"]
        rows = Rows(tuple(split["columns"]), split["data"])
        if all(isinstance(row, list) and len(row) == len(rows.columns) for row in rows.data):
            return rows
        error = ValueError()
    except (KeyError, TypeError, ValueError) as caught:  # JSONDecodeError is a ValueError
        error = caught
    why = "not JSON" if isinstance(error, json.JSONDecodeError) else "not a dataframe_split"
    return Refused(
        f'the body is {why}: send {{"dataframe_split": {{"columns": [...], "data": [[...]]}}}}',
        400,
        "BAD_REQUEST",
    )


def batch_frame(requests: list[Rows]) -> pd.DataFrame:
    """One frame of every request's rows, in order; requests whose columns come in the same order
    share one DataFrame constructor."""
    if all(request.columns == requests[0].columns for request in requests):
        return pd.DataFrame(
            [row for request in requests for row in request.data], columns=list(requests[0].columns)
        )
    return pd.concat([request.frame() for request in requests], ignore_index=True)


class Scorer:
    """A predictor and the queue of requests waiting for it: one batch is scored at a time, in a
    thread of its own, while the event loop reads the next requests."""

    def __init__(self, predictor, max_rows: int, queue_limit: int = QUEUE_LIMIT) -> None:
        self.predictor, self.max_rows, self.queue_limit = predictor, max_rows, queue_limit
        self.spec = predictor.preprocessing.spec
        self.waiting: list[tuple[Rows, asyncio.Future]] = []
        self.in_progress = 0
        self.wake = asyncio.Event()
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="score")

    def check_alone(self, frame: Rows) -> Refused | None:
        """What can be refused before the request is queued: the row cap, missing columns, overload."""
        if len(frame) > self.max_rows:
            return Refused(too_many_rows(len(frame), self.max_rows))
        missing = missing_columns(pd.DataFrame(columns=list(frame.columns)), self.spec)
        if missing:
            return Refused(refusal_message({-1: [f"missing column(s) {missing}"]}, len(frame)))
        if len(self.waiting) + self.in_progress >= self.queue_limit:
            return Refused(
                f"over {self.queue_limit} requests queued: try again shortly", 503, "TEMPORARILY_UNAVAILABLE"
            )
        return None

    async def score(self, frame: Rows) -> list[str] | Refused:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((frame, future))
        self.wake.set()
        return await future

    async def run(self) -> None:
        """Score whatever has queued, batch after batch, for ever."""
        loop = asyncio.get_running_loop()
        while True:
            await self.wake.wait()
            batch, rows = [], 0
            while self.waiting and (not batch or rows + len(self.waiting[0][0]) <= BATCH_ROWS):
                batch.append(self.waiting.pop(0))
                rows += len(batch[-1][0])
            if not self.waiting:
                self.wake.clear()
            self.in_progress = len(batch)
            try:
                results = await loop.run_in_executor(
                    self.thread, score_batch, self.predictor, [f for f, _ in batch]
                )
            except Exception as error:  # the server keeps serving; the requests learn why
                results = [Refused(f"scoring failed: {error}", 500, "INTERNAL_ERROR")] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
            self.in_progress = 0


def score_batch(predictor, requests: list[Rows]) -> list[list[str] | Refused]:
    """Class names for each request's rows, or its refusal: one contract check for the batch."""
    spec = predictor.preprocessing.spec
    rows = batch_frame(requests)
    typed = typed_rows(rows, spec)
    breaches = typed_breaches(typed, rows, spec)
    if -1 in breaches:  # a failure of a whole column: find the requests it comes from, one by one
        return (
            [score_batch(predictor, [request])[0] for request in requests]
            if len(requests) > 1
            else [Refused(refusal_message(breaches, len(rows)))]
        )
    starts = np.cumsum([0, *(len(request) for request in requests)])
    results: list = [None] * len(requests)
    for index, (start, end) in enumerate(itertools.pairwise(starts)):
        own = {row - start: why for row, why in breaches.items() if start <= row < end}
        if own:
            results[index] = Refused(refusal_message(own, int(end - start)))
    good = [index for index, result in enumerate(results) if result is None]
    if not good:
        return results
    if len(good) < len(requests):
        keep = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in good] or [np.zeros(0, int)])
        typed = typed.iloc[keep].reset_index(drop=True)
    names = predict_names(predictor, typed, [len(requests[i]) for i in good])
    for index, part in zip(
        good, np.split(names, np.cumsum([len(requests[i]) for i in good])[:-1]), strict=True
    ):
        results[index] = part.tolist()
    return results


def predict_names(predictor, typed: pd.DataFrame, sizes: list[int]) -> np.ndarray:
    """Class names of typed rows made of requests of these sizes, the nets run once over all of
    them. Context features are each request's own (a request is a whole file, as for `nad score`)."""
    prep = predictor.preprocessing
    context = None
    if prep.context is not None and len(typed):
        from tasks.model.context import frame_context

        bounds = np.cumsum([0, *sizes])
        parts = [typed.iloc[start:end].reset_index(drop=True) for start, end in itertools.pairwise(bounds)]
        context = pd.concat([frame_context(part, prep.context) for part in parts], ignore_index=True)
    codes, _ = predictor.predict_codes(prep.transform_raw(typed, context))
    return np.asarray(CLASS_NAMES, dtype=object)[codes]


def build_app(scorer: Scorer) -> Starlette:
    async def invocations(request: Request) -> Response:
        frame = request_rows(await request.body())
        if isinstance(frame, Refused):
            return refused(frame)
        result = scorer.check_alone(frame) or await scorer.score(frame)
        return refused(result) if isinstance(result, Refused) else answer(200, {"predictions": result})

    async def ping(_: Request) -> Response:
        return Response("\n", media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette):
        batches = asyncio.get_running_loop().create_task(scorer.run())
        yield
        batches.cancel()

    routes = [Route("/invocations", invocations, methods=["POST"]), Route("/ping", ping, methods=["GET"])]
    return Starlette(routes=routes, lifespan=lifespan)


def shared_socket(host: str, port: int) -> socket.socket:
    """A listening socket on host:port that other workers may bind too (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and a
    # socket made with proto 0 leaves Nagle on, so a kept-alive response's body waited ~40 ms for
    # the client's delayed ACK of its headers (the root of uvicorn#3149)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def serve_worker(predictor_dir: Path, host: str, port: int, max_rows: int, queue_limit: int) -> None:
    """One worker: load the predictor, then answer on the shared port until told to stop."""
    import uvicorn

    from tasks.model.fusion import load_predictor

    scorer = Scorer(load_predictor(predictor_dir), max_rows, queue_limit)
    config = uvicorn.Config(build_app(scorer), log_level="warning", access_log=False, lifespan="on")
    sock = shared_socket(host, port)
    print(READY, flush=True)  # the launcher (tasks/registry/serving.py) waits for this line from each worker
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":  # python -m tasks.registry.serve_app PREDICTOR_DIR HOST PORT MAX_ROWS QUEUE_LIMIT
    folder, host, port, max_rows, queue_limit = sys.argv[1:6]
    serve_worker(Path(folder), host, int(port), int(max_rows), int(queue_limit))
