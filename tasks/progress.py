"""Progress of the long steps (ingest, training, scoring): rows done, rate and time left.

On a terminal, one line on stderr at most every `every_s` seconds, for example
`ingest 1203_firewall.csv: 2,400,000/5,600,000 rows, 410,000 rows/s, 8 s left`; nothing at all
when stderr is not a terminal (a pipe, a log file, CI), and nothing for a step shorter than
`every_s`. Inside a Prefect flow or task run, the same figures also go to a progress artifact of
that run, updated at most as often, so that the UI shows how far a run has come.
"""

import sys
import time
from collections.abc import Callable
from typing import TextIO
from uuid import UUID

EVERY_S = 5.0


def format_duration(seconds: float) -> str:
    """8 s, 3 min 20 s, 2 h 05 min."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def progress_line(label: str, done: int, total: int | None, elapsed_s: float, unit: str = "rows") -> str:
    """`label: done/total unit, rate unit/s, time left`; the rate and time left once known."""
    parts = [f"{label}: {done:,}/{total:,} {unit}" if total else f"{label}: {done:,} {unit}"]
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    if rate > 0:
        parts.append(f"{rate:,.0f} {unit}/s")
        if total and done < total:
            parts.append(f"{format_duration((total - done) / rate)} left")
    return ", ".join(parts)


def is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def in_prefect_run() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return TaskRunContext.get() is not None or FlowRunContext.get() is not None


class RunArtifact:
    """A Prefect progress artifact of the current flow or task run, created on first use."""

    def __init__(self) -> None:
        self.id: UUID | None = None

    def show(self, percent: float, line: str) -> None:
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        if self.id is None:
            self.id = create_progress_artifact(percent, description=line)
        else:
            update_progress_artifact(self.id, percent, description=line)


class Progress:
    """Counts rows done and shows them now and then; see the module docstring for where."""

    def __init__(
        self,
        label: str,
        total: int | None,
        unit: str = "rows",
        *,
        stream: TextIO | None = None,
        every_s: float = EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        artifact: RunArtifact | None = None,
    ) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream if stream is not None else sys.stderr
        self.terminal = is_terminal(self.stream)
        self.artifact = artifact if artifact is not None else (RunArtifact() if in_prefect_run() else None)
        self.every_s, self.clock = every_s, clock
        self.started = self.last = clock()
        self.done = 0
        self.shown = False

    def line(self) -> str:
        return progress_line(self.label, self.done, self.total, self.clock() - self.started, self.unit)

    def advance(self, rows: int) -> None:
        self.update(self.done + rows)

    def update(self, done: int) -> None:
        """Set the rows done; show them if `every_s` has passed since the start or the last line."""
        self.done = done
        if self.clock() - self.last >= self.every_s:
            self.show()

    def finish(self) -> None:
        """A last line, if any was shown: a step that was quick stays silent."""
        if self.shown:
            self.show()

    def show(self) -> None:
        self.last, self.shown = self.clock(), True
        line = self.line()
        if self.terminal:
            print(line, file=self.stream, flush=True)
        if self.artifact is not None:
            percent = 100.0 * min(self.done / self.total, 1.0) if self.total else 0.0
            self.artifact.show(percent, line)
