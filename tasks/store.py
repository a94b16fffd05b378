"""The Parquet store of firewall days: layout, per-day locks and atomic day replacement.

Layout::

    STORE/day=2020-12-03/part-00000.parquet ...   valid rows (hive partition `day`)
    STORE/day=2020-12-03/_report.json             the ingest report of that version
    STORE/_quarantine/day=2020-12-03/part-*.parquet  rejected rows with their reasons
    STORE/.staging/ .journal/ .trash/ .locks/     bookkeeping, ignored by readers

A day is replaced in three steps: (1) the new version is written under `.staging`; (2) a
journal naming the staged and live folders is written and renamed into place, which is the
commit point; (3) the live folders move to `.trash` and the staged ones take their place.
`recover_day` rolls a committed journal forward and deletes uncommitted staging, so a crash
at any point leaves either the previous version or the new one, never a mix. Readers skip
names that start with `_` or `.`.
"""

import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

QUARANTINE_DIR = "_quarantine"
REPORT_NAME = "_report.json"
STAGING_DIR, JOURNAL_DIR, TRASH_DIR, LOCKS_DIR = ".staging", ".journal", ".trash", ".locks"


def day_dir(store: Path, day: date) -> Path:
    return store / f"day={day.isoformat()}"


def quarantine_dir(store: Path, day: date) -> Path:
    return store / QUARANTINE_DIR / f"day={day.isoformat()}"


def read_report(store: Path, day: date) -> dict | None:
    """The report of the live version of `day`, or None if the day is not in the store."""
    path = day_dir(store, day) / REPORT_NAME
    return json.loads(path.read_text()) if path.exists() else None


def stored_days(store: Path) -> list[date]:
    return sorted(date.fromisoformat(p.name.removeprefix("day=")) for p in store.glob("day=*") if p.is_dir())


def last_labelled_days(store: Path, count: int | None) -> list[date] | None:
    """The `count` most recent labelled days of the store (None: let the split take them all)."""
    if count is None:
        return None
    labelled = [day for day in stored_days(store) if (read_report(store, day) or {}).get("classes")]
    return labelled[-count:]


@dataclass(frozen=True)
class Stage:
    """Where a new version of one day is written before it is swapped in."""

    root: Path
    data: Path
    quarantine: Path


def new_stage(store: Path, day: date) -> Stage:
    root = store / STAGING_DIR / f"{day.isoformat()}-{uuid.uuid4().hex}"
    stage = Stage(root=root, data=root / "data", quarantine=root / "quarantine")
    stage.data.mkdir(parents=True)
    stage.quarantine.mkdir(parents=True)
    return stage


@contextmanager
def day_lock(store: Path, day: date) -> Iterator[None]:
    """One writer per day, across threads and processes."""
    locks = store / LOCKS_DIR
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{day.isoformat()}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def journal_path(store: Path, day: date) -> Path:
    return store / JOURNAL_DIR / f"{day.isoformat()}.json"


def write_journal(store: Path, day: date, stage: Stage) -> None:
    """The commit point: once this file exists, the staged version wins."""
    moves = [
        [str(stage.data), str(day_dir(store, day))],
        [str(stage.quarantine), str(quarantine_dir(store, day))],
    ]
    entry = {"stage": str(stage.root), "trash": str(store / TRASH_DIR / stage.root.name), "moves": moves}
    path = journal_path(store, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as handle:
        json.dump(entry, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def apply_journal(store: Path, day: date) -> bool:
    """Swap the staged folders of a committed journal in; safe to repeat after a crash."""
    path = journal_path(store, day)
    if not path.exists():
        return False
    entry = json.loads(path.read_text())
    trash = Path(entry["trash"])
    for index, (staged, live) in enumerate(entry["moves"]):
        staged_path, live_path = Path(staged), Path(live)
        if not staged_path.exists():
            continue  # moved already, before a crash
        if live_path.exists():
            trash.mkdir(parents=True, exist_ok=True)
            os.rename(live_path, trash / str(index))
        live_path.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staged_path, live_path)
    path.unlink()
    shutil.rmtree(trash, ignore_errors=True)
    shutil.rmtree(entry["stage"], ignore_errors=True)
    return True


def recover_day(store: Path, day: date) -> None:
    """Finish a committed swap of `day`, and drop staging that never reached its commit point.

    Call with the day's lock held.
    """
    apply_journal(store, day)
    for leftover in (store / STAGING_DIR).glob(f"{day.isoformat()}-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def recover_store(store: Path) -> None:
    """Recover every day that has a journal or leftover staging."""
    pending = {p.stem for p in (store / JOURNAL_DIR).glob("*.json")}
    pending |= {p.name[:10] for p in (store / STAGING_DIR).glob("*-*")}
    for name in sorted(pending):
        day = date.fromisoformat(name)
        with day_lock(store, day):
            recover_day(store, day)


def commit_stage(store: Path, day: date, stage: Stage) -> None:
    """Make the staged version of `day` the live one. Call with the day's lock held."""
    write_journal(store, day, stage)
    apply_journal(store, day)
