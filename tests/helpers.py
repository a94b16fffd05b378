"""Small helpers for tests that start real servers on 127.0.0.1."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from distributed import Client

REPO = Path(__file__).resolve().parents[1]

TRAIN_FILES = ("1203_firewall.csv", "1210_firewall.csv", "1216_firewall.csv")  # the tiny set's training days


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, seconds: float = 120) -> None:
    """Until `url` answers 200; fails if the process dies or time runs out."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@dataclass(frozen=True)
class DaskProcesses:
    """A `dask scheduler` and its `dask worker` processes on 127.0.0.1."""

    address: str
    workers: list[subprocess.Popen]


@contextmanager
def dask_processes(folder: Path, workers: int = 1, nanny: bool = True) -> Iterator[DaskProcesses]:
    """A real scheduler and `workers` worker processes of one thread each, our modules importable
    there; each worker without a nanny (`nanny=False`) is the process itself, so a SIGKILL to it
    loses the worker for good. Everything is ended afterwards."""
    dask = str(Path(sys.executable).parent / "dask")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    common = {"env": env, "cwd": folder, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    command = [dask, "worker", address, "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"]
    scheduler = subprocess.Popen(
        [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], **common
    )
    started = [
        subprocess.Popen([*command, "--nanny" if nanny else "--no-nanny"], **common) for _ in range(workers)
    ]
    try:
        with Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=60)
        yield DaskProcesses(address, started)
    finally:
        for proc in (*started, scheduler):
            proc.terminate()
            proc.wait(timeout=30)
