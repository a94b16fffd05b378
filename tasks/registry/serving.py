"""The served setups of a registered fused model: `nad serve` (fast, recommended: one
single-worker process per core on one port, adaptive batching, see `tasks/registry/serve_app.py` and
docs/serving.md) and stock `mlflow models serve` of the same model version, sized to hold load.

Below, the stock setup:

MLflow 3.17 runs its scoring server under uvicorn and offers `--workers` (processes, each with
the model loaded) and `--timeout` (HTTP 504 past it), but no request size limit. So:
- workers: one per core, each TensorFlow pool sized to its share of the cores (no oversubscription);
- a row limit per request, in the model itself (`tasks/registry/pyfunc_model.py`, HTTP 400 past it);
- uvicorn reads `UVICORN_*` environment variables for options MLflow does not pass; with
  `UVICORN_LIMIT_CONCURRENCY` a worker answers 503 at once beyond that many requests in flight,
  instead of queueing them. A byte limit on bodies needs a proxy in front (nginx's
  `client_max_body_size`), since uvicorn reads a whole body before the model sees it.
"""

import os
import subprocess
import sys
from pathlib import Path

from schemas.runtime import MAX_REQUEST_ROWS_ENV

MAX_REQUEST_ROWS = 10_000  # rows of one request; more is refused with 400
READY = "ready"  # what each `nad serve` worker prints once it listens
REQUEST_TIMEOUT_S = 60
CONCURRENCY_PER_WORKER = 256  # requests in flight per worker; beyond, 503 at once
# TensorFlow's start-up lines are silenced by importing it quietly (tasks/model/quiet_start.py).
QUIET_TENSORFLOW = {"TF_CPP_MIN_LOG_LEVEL": "2"}


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
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        **QUIET_TENSORFLOW,
        "TF_NUM_INTRAOP_THREADS": threads,
        "TF_NUM_INTEROP_THREADS": "1",
        "UVICORN_LIMIT_CONCURRENCY": str(CONCURRENCY_PER_WORKER),
        MAX_REQUEST_ROWS_ENV: str(max_rows),
    }


def quiet_tensorflow(environ=os.environ) -> None:
    """Call in an entry point before TensorFlow is imported: no start-up lines (a user's own
    setting wins)."""
    for name, value in QUIET_TENSORFLOW.items():
        environ.setdefault(name, value)


def worker_env(base: dict | None = None) -> dict[str, str]:
    """A `nad serve` worker's environment: one core each, so every math library runs one thread."""
    one = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    base = dict(os.environ if base is None else base)
    return base | QUIET_TENSORFLOW | one | {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}


def start_workers(
    predictor_dir: Path, host: str, port: int, workers: int, max_rows: int, queue_limit: int
) -> list[subprocess.Popen]:
    """`workers` processes of `tasks/registry/serve_app.py` on host:port, returned once each listens."""

    command = [
        sys.executable,
        "-m",
        "tasks.registry.serve_app",
        str(predictor_dir),
        host,
        str(port),
        str(max_rows),
    ]
    started = []
    for _ in range(workers):
        started.append(
            subprocess.Popen(
                [*command, str(queue_limit)],
                env=worker_env(),
                stdout=subprocess.PIPE,
                text=True,
                cwd=Path(__file__).resolve().parents[2],
            )
        )
    for process in started:
        if process.stdout.readline().strip() != READY:
            stop_workers(started)
            raise RuntimeError(f"a worker did not start (exit {process.wait()}); its error is above")
    return started


def stop_workers(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        process.wait(timeout=30)
