"""One block of a file (a byte range of whole lines, one Dask partition) and the screening of
its lines: those that cannot be parsed as rows (not UTF-8, blank, a repeated header) are set
aside with their rule and reason before the CSV parser sees the rest."""

from dataclasses import dataclass, field

import numpy as np

from schemas.datasets import DEFAULT_DATASET, DatasetSpec, get_dataset
from tasks.ingest.scan import FileScan


@dataclass(frozen=True)
class Block:
    """A byte range of whole lines of one file: one partition."""

    path: str  # the file as given
    text_path: str  # where the bytes are read (a gzip file's decompressed copy)
    start: int
    end: int
    first_line: int
    labelled: bool
    header: bytes
    partition: str
    dataset: str = DEFAULT_DATASET  # a name, so that blocks pickle small and plain

    @property
    def spec(self) -> DatasetSpec:
        return get_dataset(self.dataset)


def plan_blocks(scan: FileScan, partition: str, spec: DatasetSpec) -> list[Block]:
    ends = (*scan.block_starts[1:], scan.size)
    return [
        Block(scan.path, scan.text_path, start, end, first, scan.labelled, scan.header, partition, spec.name)
        for start, end, first in zip(scan.block_starts, ends, scan.first_lines, strict=True)
    ]


def read_block(block: Block) -> bytes:
    with open(block.text_path, "rb") as handle:
        handle.seek(block.start)
        return handle.read(block.end - block.start)


@dataclass
class LineScreen:
    """The lines of a block, and those rejected before or while parsing."""

    starts: np.ndarray
    ends: np.ndarray  # exclusive, without the line break
    rejected: dict[int, tuple[str, str]] = field(default_factory=dict)  # index -> (rule, reason)

    def kept(self) -> np.ndarray:
        """Indices of the lines not rejected, in order."""
        keep = np.ones(len(self.starts), dtype=bool)
        keep[list(self.rejected)] = False
        return np.flatnonzero(keep)


def split_lines(raw: bytes) -> LineScreen:
    buffer = np.frombuffer(raw, dtype=np.uint8)
    newlines = np.flatnonzero(buffer == ord("\n"))
    ends = newlines if raw.endswith(b"\n") else np.append(newlines, len(raw))
    starts = np.concatenate(([0], newlines + 1))[: len(ends)]
    carriage = (ends > starts) & (buffer[np.maximum(ends - 1, 0)] == ord("\r"))
    return LineScreen(starts=starts, ends=ends - carriage)


def screen_lines(raw: bytes, block: Block) -> LineScreen:
    """Reject lines that cannot be parsed as rows: not UTF-8, blank, or a repeated header.

    Lines with the wrong number of fields are caught by the CSV parser (`read_rows`).
    """
    screen = split_lines(raw)
    if not raw.isascii():
        high = np.flatnonzero(np.frombuffer(raw, dtype=np.uint8) >= 0x80)
        suspects = np.searchsorted(high, screen.ends) > np.searchsorted(high, screen.starts)
        for index in np.flatnonzero(suspects):
            try:
                raw[screen.starts[index] : screen.ends[index]].decode("utf-8")
            except UnicodeDecodeError as error:
                reason = f"bytes are not UTF-8 ({error.reason} at byte {error.start})"
                screen.rejected[int(index)] = ("encoding", reason)
    for index in np.flatnonzero(screen.ends == screen.starts):
        screen.rejected[int(index)] = ("blank_line", "blank line")
    header = block.header.rstrip(b"\r\n")
    for index in np.flatnonzero(screen.ends - screen.starts == len(header)) if header else ():
        if raw[screen.starts[index] : screen.ends[index]] == header:
            screen.rejected[int(index)] = ("repeated_header", "a repeated header line")
    return screen


def kept_bytes(raw: bytes, screen: LineScreen) -> bytes:
    """The block without the lines rejected so far."""
    if not screen.rejected:
        return raw
    keep = np.ones(len(raw), dtype=bool)
    for index in screen.rejected:
        keep[screen.starts[index] : screen.ends[index] + 1] = False
    return np.frombuffer(raw, dtype=np.uint8)[keep].tobytes()


def line_text(raw: bytes, screen: LineScreen, index: int) -> str:
    return raw[screen.starts[index] : screen.ends[index]].decode("utf-8", errors="backslashreplace")
