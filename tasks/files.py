"""Atomic writes: a file is written under a temporary name beside its target and renamed over it.

A reader sees the old file or the whole new one, never a part. The temporary name is
`.NAME.tmp` (plus `suffix`, for writers that pick the format by extension), in the target's
folder so the rename never crosses a file system. A write that fails leaves no temporary file
behind; one killed outright leaves `.NAME.tmp`, which the next write replaces.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path, suffix: str = "") -> Iterator[Path]:
    """A temporary path to write `path` through: renamed over `path` when the block ends
    normally, removed when it raises."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> Path:
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
