"""Shared measuring helpers for the benchmark scripts."""

import contextlib
import threading
import time
from collections.abc import Callable

import psutil


class PeakTreeRss:
    """Samples the summed RSS of this process and its children (Dask workers too) every 50 ms."""

    def __init__(self) -> None:
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss
            self.peak = max(self.peak, total)
            time.sleep(0.05)

    def __enter__(self) -> "PeakTreeRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def timed(action: Callable[[], object]) -> tuple[float, int]:
    """Wall seconds and peak RSS of the process tree (bytes) of one call."""
    with PeakTreeRss() as rss:
        start = time.perf_counter()
        action()
        return time.perf_counter() - start, rss.peak
