"""The Parquet store: layout, per-partition locks and atomic partition replacement.

A store holds one dataset (named in `_dataset.json`); a partition is one ingested file, named
by its dataset's spec (`day=2020-12-03` for ZYELL, `file=KDDTrain+` for NSL-KDD). Layout::

    STORE/_dataset.json                            which dataset the store holds
    STORE/day=2020-12-03/part-00000.parquet ...    valid rows (hive partition)
    STORE/day=2020-12-03/_report.json              the ingest report of that version
    STORE/_quarantine/day=2020-12-03/part-*.parquet   rejected rows with their reasons
    STORE/_out_of_scope/day=2020-12-03/part-*.parquet valid rows whose label is outside the five classes
    STORE/.staging/ .journal/ .trash/ .locks/      bookkeeping, ignored by readers

Functions here take the partition's folder name (`part`). A partition is replaced in three
steps: (1) the new version is written under `.staging`; (2) a journal naming the staged and
live folders is written and renamed into place, which is the commit point; (3) the live
folders move to `.trash` and the staged ones take their place. `recover_part` rolls a
committed journal forward and deletes uncommitted staging, so a crash at any point leaves
either the previous version or the new one, never a mix. Every writer opens the store with
`claim_store`, which recovers each partition that a dead writer left behind; a partition whose
lock is held belongs to a live writer and is left to it. Readers skip names that start with
`_` or `.`.

A new version never silently empties a stored partition (`check_new_version`, the one home of
this rule): it is refused, before its commit point, when it keeps no row, or fewer than half
(`MIN_KEPT_SHARE`) of the rows the stored version keeps, unless `replace_anyway`; the first
version of a partition that keeps no row is refused unless `allow_empty`. A refused version
is never committed, so nothing of the stored one moves to `.trash`.
"""

import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tasks.errors import message_of
from tasks.files import atomic_path
from tasks.ingest.report import IngestReport

QUARANTINE_DIR = "_quarantine"
OUT_OF_SCOPE_DIR = "_out_of_scope"
DATASET_FILE = "_dataset.json"
REPORT_NAME = "_report.json"
STAGING_DIR, JOURNAL_DIR, TRASH_DIR, LOCKS_DIR = ".staging", ".journal", ".trash", ".locks"
MIN_KEPT_SHARE = 0.5  # a new version keeping less than this share of the stored one's rows is refused


class StoreError(ValueError):
    """The store holds another dataset, or not what was asked for."""


class ReportError(ValueError):
    """A partition's `_report.json` that is not an ingest report (damaged, or not JSON)."""


class VersionRefused(ValueError):
    """A new version of a partition that would lose the stored rows; nothing was replaced."""


def check_new_version(
    part: str,
    kept: int,
    quarantined: int,
    stored_kept: int | None,
    replace_anyway: bool = False,
    allow_empty: bool = False,
) -> None:
    """Refuse a new version of `part` that keeps `kept` rows, against `stored_kept` rows of the
    stored version (None: no stored version): one that keeps no row, or fewer than
    MIN_KEPT_SHARE of the stored rows, unless `replace_anyway`; a first version that keeps no
    row, unless `allow_empty`. Call before the commit point."""
    if stored_kept is None or stored_kept == 0:
        if kept == 0 and not (allow_empty or (stored_kept == 0 and replace_anyway)):
            raise VersionRefused(
                f"{part}: keeps no row ({quarantined:,} quarantined); nothing stored "
                "(--allow-empty to store it)"
            )
        return
    if kept < stored_kept * MIN_KEPT_SHARE and not replace_anyway:
        raise VersionRefused(
            f"{part}: the new version keeps {kept:,} rows against {stored_kept:,} stored; "
            "nothing replaced (--replace-anyway to override)"
        )


def part_dir(store: Path, part: str) -> Path:
    return store / part


def quarantine_dir(store: Path, part: str) -> Path:
    return store / QUARANTINE_DIR / part


def out_of_scope_dir(store: Path, part: str) -> Path:
    return store / OUT_OF_SCOPE_DIR / part


def claim_store(store: Path, dataset: str) -> None:
    """Open `store` for writing: mark a new store as holding `dataset`, or check that it does,
    and recover what dead writers left behind."""
    store.mkdir(parents=True, exist_ok=True)
    marker = store / DATASET_FILE
    if not marker.exists():
        tmp = store / f".{DATASET_FILE}.{uuid.uuid4().hex}"
        tmp.write_text(json.dumps({"dataset": dataset}))
        os.replace(tmp, marker)
    check_store(store, dataset)
    recover_store(store)


def check_store(store: Path, dataset: str) -> None:
    """Raise unless `store` holds `dataset` or nothing (a store from before datasets holds ZYELL)."""
    marker = store / DATASET_FILE
    if not marker.exists() and not stored_parts(store):
        return
    held = json.loads(marker.read_text())["dataset"] if marker.exists() else "zyell"
    if held != dataset:
        raise StoreError(f"{store} holds dataset {held!r}, not {dataset!r}; use another store")


def read_report(store: Path, part: str) -> IngestReport | None:
    """The report of the live version of `part`, or None if it is not in the store. A report
    written by an older version reads with defaults (`IngestReport.from_dict`); a damaged one
    raises ReportError naming its file."""
    path = part_dir(store, part) / REPORT_NAME
    if not path.exists():
        return None
    try:
        return IngestReport.from_dict(json.loads(path.read_text()))
    except ValueError as error:  # JSONDecodeError is a ValueError
        raise ReportError(f"{path}: not a readable ingest report ({message_of(error)})") from error


def stored_parts(store: Path) -> list[str]:
    """The partition folders of the store, in name order (for days: oldest first)."""
    return sorted(p.name for p in store.glob("*=*") if p.is_dir() and p.name[0] not in "._")


def last_labelled_parts(store: Path, count: int | None) -> list[str] | None:
    """The `count` last labelled partitions of the store (None: let the split take them all)."""
    if count is None:
        return None
    reports = {part: read_report(store, part) for part in stored_parts(store)}
    labelled = [part for part, report in reports.items() if report and report.classes]
    return labelled[-count:]


@dataclass(frozen=True)
class Stage:
    """Where a new version of one partition is written before it is swapped in."""

    root: Path
    data: Path
    quarantine: Path
    out_of_scope: Path


def new_stage(store: Path, part: str) -> Stage:
    root = store / STAGING_DIR / f"{part}-{uuid.uuid4().hex}"
    stage = Stage(root, root / "data", root / "quarantine", root / "out_of_scope")
    for folder in (stage.data, stage.quarantine, stage.out_of_scope):
        folder.mkdir(parents=True)
    return stage


@contextmanager
def part_lock(store: Path, part: str, wait: bool = True) -> Iterator[bool]:
    """One writer per partition, across threads and processes. Yields whether the lock is held:
    always True when `wait`; False at once, without waiting, when another writer holds it."""
    locks = store / LOCKS_DIR
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{part}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def journal_path(store: Path, part: str) -> Path:
    return store / JOURNAL_DIR / f"{part}.json"


def write_journal(store: Path, part: str, stage: Stage) -> None:
    """The commit point: once this file exists, the staged version wins."""
    moves = [
        [str(stage.data), str(part_dir(store, part))],
        [str(stage.quarantine), str(quarantine_dir(store, part))],
        [str(stage.out_of_scope), str(out_of_scope_dir(store, part))],
    ]
    entry = {"stage": str(stage.root), "trash": str(store / TRASH_DIR / stage.root.name), "moves": moves}
    path = journal_path(store, part)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        json.dump(entry, handle)
        handle.flush()
        os.fsync(handle.fileno())


def apply_journal(store: Path, part: str) -> bool:
    """Swap the staged folders of a committed journal in; safe to repeat after a crash."""
    path = journal_path(store, part)
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


def recover_part(store: Path, part: str) -> None:
    """Finish a committed swap of `part`, and drop staging that never reached its commit point.

    Call with the partition's lock held.
    """
    apply_journal(store, part)
    journal_path(store, part).with_name(f".{part}.json.tmp").unlink(missing_ok=True)
    for folder in (STAGING_DIR, TRASH_DIR):  # with the journal applied, both are garbage
        for leftover in (store / folder).glob(f"{glob_escape(part)}-*"):
            if leftover.name.rsplit("-", 1)[0] == part:
                shutil.rmtree(leftover, ignore_errors=True)


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in text)


def recover_store(store: Path) -> list[str]:
    """Recover every partition that a dead writer left a journal, staging or trash of; skip
    those whose lock a live writer holds. Returns the partitions recovered."""
    journals = (store / JOURNAL_DIR).glob("*.json*")  # `.PART.json.tmp`: a journal never committed
    pending = {p.name.lstrip(".").removesuffix(".tmp").removesuffix(".json") for p in journals}
    for folder in (STAGING_DIR, TRASH_DIR):
        pending |= {p.name.rsplit("-", 1)[0] for p in (store / folder).glob("*-*")}
    recovered = []
    for part in sorted(pending):
        with part_lock(store, part, wait=False) as held:
            if held:
                recover_part(store, part)
                recovered.append(part)
    return recovered


def commit_stage(store: Path, part: str, stage: Stage) -> None:
    """Make the staged version of `part` the live one. Call with its lock held."""
    write_journal(store, part, stage)
    apply_journal(store, part)
