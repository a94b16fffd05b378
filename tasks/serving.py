"""The served setup: `mlflow models serve` of a registered fused model, sized to hold load.

MLflow 3.17 runs its scoring server under uvicorn and offers `--workers` (processes, each with
the model loaded) and `--timeout` (HTTP 504 past it), but no request size limit. So:
- workers: one per core, each TensorFlow pool sized to its share of the cores (no oversubscription);
- a row limit per request, in the model itself (`tasks/pyfunc_model.py`, HTTP 400 past it);
- uvicorn reads `UVICORN_*` environment variables for options MLflow does not pass; with
  `UVICORN_LIMIT_CONCURRENCY` a worker answers 503 at once beyond that many requests in flight,
  instead of queueing them. A byte limit on bodies needs a proxy in front (nginx's
  `client_max_body_size`), since uvicorn reads a whole body before the model sees it.
"""

import os
import sys
from pathlib import Path

MAX_REQUEST_ROWS = 10_000  # rows of one request; more is refused with 400
MAX_REQUEST_ROWS_ENV = "NAD_MAX_REQUEST_ROWS"  # read by the model when the server loads it
REQUEST_TIMEOUT_S = 60
CONCURRENCY_PER_WORKER = 256  # requests in flight per worker; beyond, 503 at once


def serve_command(model_uri: str, port: int, workers: int, host: str = "127.0.0.1") -> list[str]:
    """The `mlflow models serve` command line for `workers` worker processes."""
    mlflow_cli = str(Path(sys.executable).parent / "mlflow")
    return [mlflow_cli, "models", "serve", "-m", model_uri, "--env-manager", "local", "-h", host,
            "-p", str(port), "--workers", str(workers), "--timeout", str(REQUEST_TIMEOUT_S)]  # fmt: skip


def serve_env(workers: int, max_rows: int = MAX_REQUEST_ROWS, base: dict | None = None) -> dict[str, str]:
    """The environment for `serve_command`: this checkout importable, uvicorn on PATH (MLflow starts
    it by name), TensorFlow threads per worker, the row and concurrency limits."""
    base = dict(os.environ if base is None else base)
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    return base | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "TF_NUM_INTRAOP_THREADS": threads,
        "TF_NUM_INTEROP_THREADS": "1",
        "UVICORN_LIMIT_CONCURRENCY": str(CONCURRENCY_PER_WORKER),
        MAX_REQUEST_ROWS_ENV: str(max_rows),
    }
