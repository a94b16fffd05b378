"""Serving under load: a burst of concurrent requests against `mlflow models serve`, 1 worker against N.

For each worker count, the served setup of `tasks.serving` starts on 127.0.0.1; after /ping
answers and every worker is warm, single requests are timed one after another (median), then
`--requests` requests (default 200, `--rows` rows each) are released at once, one thread each,
over loopback only. Printed: p50, p99 and max latency of the burst, its throughput, and errors.

    .venv/bin/python benchmarks/bench_serve.py [--model URI] [--workers 1,2] [--requests 200]

Without --model, a tiny model is trained first (the tiny preset, 2 epochs per net) in a temporary
folder with its own MLflow store and Prefect home, which takes a few minutes. With --model, the
model is read from MLFLOW_TRACKING_URI.
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from schemas.firewall import UNLABELLED_COLUMNS
from tasks.serving import serve_command, serve_env

NAD = str(Path(sys.executable).parent / "nad")
QUICK = {"preset": "paper", "binary": {"epochs": 2}, "attack": {"epochs": 2}, "baseline": {"epochs": 2}}


def make_tiny_model(folder: Path, env: dict[str, str]) -> str:
    """Generate, backfill and train the tiny preset with the CLI; return the champion's URI."""
    (folder / "quick.json").write_text(json.dumps({**QUICK, "batch_size": 256}))
    for command in (
        ["backfill", str(folder / "data"), "--store", str(folder / "store")],
        ["train", "--store", str(folder / "store"), "--config", str(folder / "quick.json"),
         "--out", str(folder / "artifacts")],
    ):  # fmt: skip
        subprocess.run([NAD, *command], env=env, check=True, stdout=subprocess.DEVNULL)
    return "models:/nad-fusion@champion"


def request_body(day: Path, rows: int) -> bytes:
    frame = pd.read_csv(day).head(rows)[list(UNLABELLED_COLUMNS)].astype({"duration": "float64"})
    split = {"columns": list(frame.columns), "data": frame.astype(object).values.tolist()}
    return json.dumps({"dataframe_split": split}).encode()


def post(url: str, body: bytes) -> tuple[int, float, float]:
    """Status, start and end time (perf_counter) of one request."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            answer.read()
            status = answer.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError:
        status = 0  # refused or timed out
    return status, start, time.perf_counter()


def burst(url: str, body: bytes, count: int) -> list[tuple[int, float, float]]:
    """`count` requests released at once, one thread each."""
    gate = threading.Barrier(count)

    def one(_: int) -> tuple[int, float, float]:
        gate.wait()
        return post(url, body)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def wait_for_ping(port: int, process: subprocess.Popen, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server on port {port} did not come up") from None
            time.sleep(0.5)


def free_port() -> int:
    """A port nothing listens on, so that a server still shutting down never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def group_running(pgid: int) -> bool:
    """Whether a process of group `pgid` is still running (zombies aside)."""
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            state, _, group = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if group == str(pgid) and state != "Z":
            return True
    return False


def stop_group(process: subprocess.Popen, seconds: float = 60) -> None:
    """SIGTERM to the server's process group (mlflow and its uvicorn workers); wait until it is gone,
    so that the next measurement has the cores to itself."""
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=seconds)
    deadline = time.monotonic() + seconds
    while group_running(process.pid) and time.monotonic() < deadline:
        time.sleep(0.5)


def measure(model: str, workers: int, body: bytes, count: int) -> dict:
    port = free_port()
    process = subprocess.Popen(
        serve_command(model, port, workers),
        env=serve_env(workers),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/invocations"
    try:
        wait_for_ping(port, process)
        for _ in range(3):
            burst(url, body, 4 * workers)  # every worker loads its graph
        single = statistics.median(end - start for _, start, end in (post(url, body) for _ in range(20)))
        results = burst(url, body, count)
    finally:
        stop_group(process)
    latencies = sorted(end - start for _, start, end in results)
    wall = max(end for *_, end in results) - min(start for _, start, _ in results)
    return {
        "workers": workers,
        "single_ms": single * 1000,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[max(0, round(0.99 * len(latencies)) - 1)] * 1000,
        "max_ms": latencies[-1] * 1000,
        "per_s": len(results) / wall,
        "errors": sum(status != 200 for status, *_ in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model URI (default: train a tiny one first)")
    parser.add_argument("--workers", default=f"1,{os.cpu_count() or 1}")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rows", type=int, default=20, help="rows per request")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="nad-bench-serve-"))
    subprocess.run([NAD, "generate", "--out", str(folder / "data"), "--preset", "tiny"], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    model = args.model
    if model is None:
        os.environ |= {
            "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
            "PREFECT_HOME": str(folder / "prefect"),
        }
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
        model = make_tiny_model(folder, dict(os.environ))
    body = request_body(folder / "data" / "0124_firewall.csv", args.rows)
    print(f"{args.requests} concurrent requests of {args.rows} rows ({len(body):,} bytes) to {model}")
    print("| workers | single request | burst p50 | burst p99 | burst max | throughput | errors |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for workers in (int(w) for w in args.workers.split(",")):
        r = measure(model, workers, body, args.requests)
        print(
            f"| {r['workers']} | {r['single_ms']:.0f} ms | {r['p50_ms']:.0f} ms | {r['p99_ms']:.0f} ms "
            f"| {r['max_ms']:.0f} ms | {r['per_s']:.1f} req/s | {r['errors']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
