"""Serving under load: `nad serve` against stock `mlflow models serve` of the same model, in one run.

For each setup (`nad:N` is `nad serve --workers N`, `mlflow:N` is `mlflow models serve -w N` as
`tasks.registry.serving` sets it up), the server starts on 127.0.0.1; once it answers and every worker
is warm, printed are: the median of 20 single 20-row requests one after another, each on a new
connection, then on one kept-alive connection; a burst of
`--requests` requests (default 200, `--rows` rows each) released at once, one thread each (p50,
p99, max, requests/s, errors); the median of 3 requests of 4,000 rows; the peak RSS of the
largest worker process. The load average is printed beside each row: the machine is shared.

    .venv/bin/python benchmarks/bench_serve.py [--model URI] [--setups nad:2,mlflow:2] [--requests 200]

Without --model, a tiny model is trained first (the tiny preset, 2 epochs per net) in a temporary
folder with its own MLflow store and Prefect home, which takes a few minutes. With --model (e.g.
`models:/nad-fusion@champion`), the model is read from MLFLOW_TRACKING_URI and reused.
"""

import argparse
import http.client
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
from tasks.registry.serving import quiet_tensorflow, serve_command, serve_env

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


def request_body(day: Path, rows: int, repeat: bool = False) -> bytes:
    """`rows` rows of the day as a `dataframe_split` body (the day's rows again and again if `repeat`)."""
    frame = pd.read_csv(day)[list(UNLABELLED_COLUMNS)]
    frame = (pd.concat([frame] * (rows // len(frame) + 1)) if repeat else frame).head(rows)
    frame = frame.astype({"duration": "float64"})
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


def kept_alive_ms(port: int, body: bytes, count: int = 20) -> float:
    """The median of `count` requests one after another on one kept-alive connection, as a client
    that scores traffic as it arrives would send them."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    connection.connect()
    # as urllib3 (requests) and curl do: http.client sends a body over 2,920 bytes apart from its
    # headers, and Nagle would hold it for the server's delayed ACK, 40 ms a request
    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times = []
    try:
        for _ in range(count):
            start = time.perf_counter()
            connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
            connection.getresponse().read()
            times.append(time.perf_counter() - start)
    finally:
        connection.close()
    return statistics.median(times) * 1000


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


def server_command(setup: str, model: str, port: int) -> tuple[list[str], dict[str, str]]:
    kind, workers = setup.split(":")
    if kind == "nad":
        command = [NAD, "serve", "--model", model, "--port", str(port), "--workers", workers]
        return command, dict(os.environ)
    return serve_command(model, port, int(workers)), serve_env(int(workers))


def peak_rss_mib(pgid: int, launcher: int) -> float:
    """The largest peak RSS (VmHWM) of the group's processes other than the launcher."""
    peaks = [0.0]
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            group = (entry / "stat").read_text().rsplit(")", 1)[1].split()[2]
            status = (entry / "status").read_text()
        except (OSError, IndexError):
            continue
        if group == str(pgid) and entry.name != str(launcher):
            peaks += [int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM")]
    return max(peaks)


def measure(setup: str, model: str, body: bytes, large: bytes, count: int) -> dict:
    port = free_port()
    command, env = server_command(setup, model, port)
    out = subprocess.PIPE if setup.startswith("nad:") else subprocess.DEVNULL  # nad's "serving" line
    process = subprocess.Popen(
        command, env=env, stdout=out, stderr=subprocess.DEVNULL, start_new_session=True, text=True
    )
    url = f"http://127.0.0.1:{port}/invocations"
    workers = int(setup.split(":")[1])
    try:
        if setup.startswith("nad:"):
            process.stdout.readline()  # "serving ...": every worker listens
        wait_for_ping(port, process)
        for _ in range(3):
            burst(url, body, 4 * workers)  # every worker loads its graph
        single = statistics.median(end - start for _, start, end in (post(url, body) for _ in range(20)))
        kept_alive = kept_alive_ms(port, body)
        results = burst(url, body, count)
        large_s = statistics.median(end - start for _, start, end in (post(url, large) for _ in range(3)))
        rss = peak_rss_mib(process.pid, process.pid)
    finally:
        stop_group(process)
    latencies = sorted(end - start for _, start, end in results)
    wall = max(end for *_, end in results) - min(start for _, start, _ in results)
    return {
        "setup": setup,
        "single_ms": single * 1000,
        "kept_alive_ms": kept_alive,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[max(0, round(0.99 * len(latencies)) - 1)] * 1000,
        "max_ms": latencies[-1] * 1000,
        "per_s": len(results) / wall,
        "errors": sum(status != 200 for status, *_ in results),
        "large_ms": large_s * 1000,
        "rss_mib": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model URI (default: train a tiny one first)")
    cores = os.cpu_count() or 1
    parser.add_argument(
        "--setups", default=f"nad:{cores},mlflow:{cores}", help="nad:N and mlflow:N, by commas"
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rows", type=int, default=20, help="rows per request")
    args = parser.parse_args()
    quiet_tensorflow()
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
    day = folder / "data" / "0124_firewall.csv"
    body, large = request_body(day, args.rows), request_body(day, 4000, repeat=True)
    print(f"{args.requests} concurrent requests of {args.rows} rows ({len(body):,} bytes) to {model}")
    print("| setup | single p50, new connection | single p50, kept alive | burst p50 | burst p99 | burst max "
          "| throughput | errors | 4,000 rows | peak RSS per worker | load average |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for setup in args.setups.split(","):
        r = measure(setup, model, body, large, args.requests)
        print(
            f"| {r['setup']} | {r['single_ms']:.1f} ms | {r['kept_alive_ms']:.1f} ms "
            f"| {r['p50_ms']:.0f} ms | {r['p99_ms']:.0f} ms "
            f"| {r['max_ms']:.0f} ms | {r['per_s']:.0f} req/s | {r['errors']} | {r['large_ms']:.0f} ms "
            f"| {r['rss_mib']:.0f} MiB | {' '.join(f'{v:.2f}' for v in os.getloadavg())} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
