"""Small helpers for tests that start real servers on 127.0.0.1."""

import socket
import subprocess
import time
import urllib.request

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
