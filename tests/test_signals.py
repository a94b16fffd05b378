"""Real signals to real `nad backfill` processes: a prompt stop, a consistent store, no leftovers.

Each test starts `nad backfill` on the tiny days (with its temporary Prefect server and local Dask
cluster), waits until ingest tasks run, signals it, and then looks at every process that `nad`
had started, found through /proc by parent links, not through the mark that `flows.runtime` sets.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tasks.ingest.store import JOURNAL_DIR, STAGING_DIR, claim_store, part_dir, read_report, stored_parts

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
NAD = Path(sys.executable).parent / "nad"
PROMPT_S = 20  # "within a few seconds" (3 s of grace, 2 s to end leftovers), with room for a busy machine
PROC = Path("/proc")
# A shell starts a background job with SIGINT ignored, and `nad`, like any program, keeps it so;
# a test suite run as one (`make test &`) would pass that on. Ctrl-C reaches a foreground job.
WITH_SIGINT = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])",
]


def process_state(pid: int) -> str | None:
    """The state letter of a process (None: gone)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2]


def running(pids: set[int]) -> set[int]:
    return {pid for pid in pids if process_state(pid) not in (None, "Z")}


def descendants(root: int) -> set[int]:
    """Every process below `root` in the process tree, now."""
    children: dict[int, list[int]] = {}
    for entry in PROC.glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        children.setdefault(int(stat[stat.rindex(")") + 2 :].split()[1]), []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def command_line(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def wait_until_gone(pids: set[int], seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    while running(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return running(pids)


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One Prefect home for the module, so that only the first temporary server migrates its database."""
    return tmp_path_factory.mktemp("prefect-home")


class Backfill:
    """A real `nad backfill` of the tiny days, in a session of its own as a shell job would be."""

    def __init__(self, source: Path, store: Path, prefect_home: Path, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "NAD_"))}
        env |= {
            "PYTHONPATH": str(REPO),
            "PREFECT_HOME": str(prefect_home),
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        self.log = log
        self.process = subprocess.Popen(
            [*WITH_SIGINT, str(NAD), "backfill", str(source), "--store", str(store)],
            env=env,
            cwd=log.parent,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_for_ingest(self, seconds: float = 240, mark: str = "ingest-") -> set[int]:
        """Until ingest tasks run (or the log shows `mark`); returns the processes `nad` has
        started by then."""
        deadline = time.monotonic() + seconds
        while mark not in self.log.read_text():
            assert self.process.poll() is None, f"nad ended early:\n{self.log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no ingest task started"
            time.sleep(0.1)
        started = descendants(self.process.pid)
        assert any("prefect.server" in command_line(pid) for pid in started), "no temporary server"
        return started

    def exit_code_within(self, seconds: float) -> int | None:
        try:
            return self.process.wait(seconds)
        except subprocess.TimeoutExpired:
            return None

    def kill_all(self, pids: set[int]) -> None:
        for pid in running(pids | {self.process.pid}):
            os.kill(pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def backfill(tiny_dir: Path, tiny_days, tmp_path: Path, prefect_home: Path):
    runs: list[Backfill] = []

    def start() -> Backfill:
        runs.append(Backfill(tiny_dir, tmp_path / "store", prefect_home, tmp_path / "nad.log"))
        return runs[-1]

    yield start
    for run in runs:  # whatever a failed test left
        run.kill_all(descendants(run.process.pid))


def assert_store_whole(store: Path) -> None:
    """Each stored day is one whole version: its report matches its rows; the next writer leaves
    no staging or journal."""
    claim_store(store, "zyell")
    for part in stored_parts(store):
        rows = len(pd.read_parquet(part_dir(store, part)))
        assert rows == read_report(store, part).rows_kept, part
    for leftover in (STAGING_DIR, JOURNAL_DIR):  # absent when stopped before the first write
        assert not list((store / leftover).glob("*")), leftover


@pytest.mark.parametrize(
    ("how", "signum", "mark"),
    [
        ("SIGINT to the process group (Ctrl-C)", signal.SIGINT, "ingest-"),
        # while the Dask workers start: each would print its own KeyboardInterrupt traceback
        ("SIGINT to the process group (Ctrl-C)", signal.SIGINT, "backfill of"),
        ("SIGTERM to nad", signal.SIGTERM, "ingest-"),
    ],
    ids=["ctrl-c", "ctrl-c-as-workers-start", "sigterm"],
)
def test_an_interrupted_backfill_stops_within_seconds(backfill, tmp_path: Path, how, signum, mark) -> None:
    run = backfill()
    started = run.wait_for_ingest(mark=mark)
    began = time.monotonic()
    if how.startswith("SIGINT"):
        os.killpg(run.process.pid, signum)
    else:
        os.kill(run.process.pid, signum)
    code = run.exit_code_within(PROMPT_S)
    left = wait_until_gone(started, 5)
    run.kill_all(started)
    assert code in (128 + signum, -signum), f"exit {code} after {time.monotonic() - began:.1f} s"
    assert not left, [command_line(pid)[:100] for pid in left]
    printed = run.log.read_text()
    assert "error: interrupted by" in printed
    # nothing after that line: no worker, Dask or Prefect tracebacks (they go to NAD_QUIET_LOG)
    assert printed.rstrip().endswith("send it again to stop now)"), printed[-3000:]
    assert_store_whole(tmp_path / "store")


def test_a_killed_nad_leaves_no_server_behind(backfill, tmp_path: Path) -> None:
    run = backfill()
    started = run.wait_for_ingest()
    os.kill(run.process.pid, signal.SIGKILL)
    run.process.wait()
    left = wait_until_gone(started, PROMPT_S)
    run.kill_all(started)
    assert not left, [command_line(pid)[:100] for pid in left]
    assert_store_whole(tmp_path / "store")


def test_the_next_nad_ends_what_a_killed_run_left(backfill, tmp_path: Path) -> None:
    """Even when the watchdog died with `nad` (a SIGKILL to both), the next `nad` cleans up."""
    run = backfill()
    started = run.wait_for_ingest()
    watchdogs = {pid for pid in started if "flows/runtime.py" in command_line(pid)}
    assert watchdogs, ["nad should have started a watchdog", *(command_line(pid)[:150] for pid in started)]
    for pid in (*watchdogs, run.process.pid):
        os.kill(pid, signal.SIGKILL)
    run.process.wait()
    time.sleep(2)
    assert running(started - watchdogs), "the killed run's server and workers are still up"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([str(NAD), "--help"], env=env, capture_output=True, check=True, timeout=60)
    left = wait_until_gone(started, PROMPT_S)
    run.kill_all(started)
    assert not left, [command_line(pid)[:100] for pid in left]
