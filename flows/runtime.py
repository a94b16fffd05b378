"""Clean stops for `nad`: SIGINT or SIGTERM ends any command within seconds, and nothing that `nad`
started (Prefect's temporary server, a local Dask cluster) outlives it, not even after a SIGKILL.

- Every process that `nad` starts inherits `NAD_OWNER=<pid>.<start time>` in its environment.
- A first SIGINT or SIGTERM raises KeyboardInterrupt in the main thread, so that flows, MLflow
  runs and the cluster wind down as on Ctrl-C. If that has not ended the process after GRACE_S
  seconds, or at a second signal, the marked processes are ended and `nad` exits at once. Either
  way the exit code is 128 + the signal number (130 for SIGINT, 143 for SIGTERM).
- A watchdog process, in a session of its own, waits for `nad` to end, however it ends, and then
  ends the marked processes left; each `nad` start also ends those whose owner is gone.

Why: Prefect 3.9 starts its temporary server as a plain subprocess that nobody stops when its
parent is killed; its SIGTERM handler lets a flow wait for its running tasks (a training net runs
on for minutes); and a Ctrl-C in a terminal reaches the whole process group, the server too, after
which Prefect's event client retries the dead server for minutes. Signals are seen through
`signal.set_wakeup_fd` by a thread of ours, so whichever Python handler is installed (Prefect
swaps SIGTERM's during a flow), the deadline holds. The store needs nothing here: a writer killed
at any point leaves whole versions, and the next writer recovers the rest (`tasks.ingest.store`).

Only the standard library is used: the watchdog runs this file as a script (`python -I -S`).
"""

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

OWNER_ENV = "NAD_OWNER"
GRACE_S = 3.0  # after the first signal, how long an orderly stop may take
END_WAIT_S = 2.0  # after SIGTERM to a leftover process, how long before SIGKILL
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
PROC = Path("/proc")
_KEPT: list = []  # the watchdog's Popen and the wakeup socket pair live as long as the process


# ---------------------------------------------------------------- processes and their owners


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (tells a pid from its reuse), or None."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else fields[19]  # a zombie has ended


def owner_token(pid: int) -> str:
    return f"{pid}.{start_time(pid)}"


def owner_alive(token: str) -> bool:
    pid, _, started = token.partition(".")
    return pid.isdigit() and start_time(int(pid)) == started


def marked_processes() -> dict[int, str]:
    """pid -> owner token of every process (of ours) that carries the mark, except this one."""
    found = {}
    for entry in PROC.glob("[0-9]*"):
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # another user's, or gone
        for item in environ.split(b"\0"):
            if item.startswith(f"{OWNER_ENV}=".encode()):
                found[int(entry.name)] = item.split(b"=", 1)[1].decode(errors="replace")
    found.pop(os.getpid(), None)
    return found


def end_processes(pids: list[int], wait_s: float = END_WAIT_S) -> None:
    """SIGTERM, then SIGKILL whatever is still running after `wait_s`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while (pids := [p for p in pids if start_time(p)]) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not pids:
            return


def end_owned_by(token: str) -> None:
    """End every process marked with `token`, again for any that a dying parent starts meanwhile."""
    for _ in range(3):
        pids = [pid for pid, owner in marked_processes().items() if owner == token]
        if not pids:
            return
        end_processes(pids)


def reap_orphans() -> None:
    """End marked processes whose owner is gone (a `nad` killed with its watchdog)."""
    orphans = [pid for pid, owner in marked_processes().items() if not owner_alive(owner)]
    if orphans:
        end_processes(orphans)


def wait_for_exit(pid: int, started: str) -> None:
    """Block until process `pid` (started at `started`) has ended."""
    try:
        handle = os.pidfd_open(pid)
    except (AttributeError, OSError):
        handle = None
    if handle is not None:
        import select

        select.select([handle], [], [])
        return
    while start_time(pid) == started:
        time.sleep(0.5)


def watch(token: str) -> None:
    """The watchdog: when the owner has ended, end what it left."""
    pid, _, started = token.partition(".")
    if owner_alive(token):
        wait_for_exit(int(pid), started)
    end_owned_by(token)


def start_watchdog(token: str) -> subprocess.Popen:
    env = {name: value for name, value in os.environ.items() if name != OWNER_ENV}
    return subprocess.Popen(
        [sys.executable, "-I", "-S", str(Path(__file__).resolve()), token],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # out of reach of a Ctrl-C to the terminal's process group
    )


# ---------------------------------------------------------------- signals


class Stopper:
    """Counts stop signals and enforces the deadline. A signal is seen on two paths, the Python
    handler in the main thread and the wakeup fd read by a thread of ours, because a library may
    take over either (an asyncio loop in the main thread sets the wakeup fd to its own): the
    count is the larger of the two paths' counts."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.signal: int | None = None
        self.seen = {"handler": 0, "wakeup": 0}
        self.counted = 0
        self.lock = threading.RLock()  # the handler may run while the main thread holds it

    def received(self, signum: int, path: str) -> None:
        with self.lock:
            self.seen[path] += 1
            if max(self.seen.values()) == self.counted:
                return  # the other path already counted this signal
            self.counted += 1
            self.signal = self.signal or signum
        if self.counted > 1:
            self.stop_now()
        name = signal.Signals(signum).name
        say(f"error: interrupted by {name}; stopping (within {GRACE_S:.0f} s; send it again to stop now)")
        quiet_stderr()
        timer = threading.Timer(GRACE_S, self.stop_now)
        timer.daemon = True
        timer.start()

    def stop_now(self) -> None:
        """End what this process started and exit with 128 + the signal."""
        end_owned_by(self.token)
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(128 + (self.signal or signal.SIGTERM))

    def at_exit(self) -> None:
        """Registered first, so it runs last: after an interrupt, exit with the signal's code."""
        if self.signal is not None:
            self.stop_now()

    def listen(self, reader: socket.socket) -> None:
        while data := reader.recv(64):
            for signum in data:
                if signum in STOP_SIGNALS:
                    self.received(signum, "wakeup")


def quiet_stderr() -> None:
    """From now on this process's stderr goes to the NAD_QUIET_LOG file, if set: what libraries
    print while being torn down (Prefect's crash report, Dask's closing errors) is noise to the
    user, who has the one `error:` line already, but is kept for whoever debugs."""
    from schemas.runtime import QUIET_LOG_ENV  # here: the watchdog runs this file with -I, alone

    log = os.environ.get(QUIET_LOG_ENV)
    if not log:
        return
    with contextlib.suppress(OSError):
        sys.stderr.flush()
        descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(descriptor, 2)
        os.close(descriptor)


def say(line: str) -> None:
    with contextlib.suppress(Exception):
        print(line, file=sys.stderr, flush=True)


def handle_stop_signals(stopper: Stopper) -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt; the stopper sees every one of them."""

    def raise_interrupt(signum, frame) -> None:
        stopper.received(signum, "handler")
        raise KeyboardInterrupt(signal.Signals(signum).name)

    reader, writer = socket.socketpair()
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    threading.Thread(target=stopper.listen, args=(reader,), daemon=True, name="nad-signals").start()
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # a background job keeps ignoring it
        signal.signal(signal.SIGINT, raise_interrupt)
    signal.signal(signal.SIGTERM, raise_interrupt)
    _KEPT.extend((reader, writer))


def stop_cleanly() -> None:
    """Call first in `main()`: mark what this process starts, end what dead runs left, start the
    watchdog, handle SIGINT and SIGTERM."""
    if not (PROC / "self" / "stat").exists() or threading.current_thread() is not threading.main_thread():
        return
    token = owner_token(os.getpid())
    os.environ[OWNER_ENV] = token
    reap_orphans()
    _KEPT.append(start_watchdog(token))
    stopper = Stopper(token)
    atexit.register(stopper.at_exit)
    handle_stop_signals(stopper)


if __name__ == "__main__":
    watch(sys.argv[1])
