"""A store on a disk that fills mid-write (issue 20): `nad ingest` fails with one `error:` line per
file that names the store, nothing half-written is visible, and a re-run after space is freed
completes. The disk is a real 2 MiB tmpfs, mounted in a mount namespace of the test's own
(`unshare`), nearly filled by a filler file that is then deleted."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from tasks.errors import is_transient
from tasks.ingest.store import JOURNAL_DIR, STAGING_DIR, part_dir, read_report, stored_parts

REPO = Path(__file__).resolve().parents[1]
NAD = Path(sys.executable).parent / "nad"
DISK_KIB = 2048
FREE_KIB = 300  # room for about half of the tiny days' partitions


def on_a_small_disk(files: list[Path], results: Path) -> None:
    """In a mount namespace of its own: ingest `files` into a store on a nearly full tmpfs,
    copy the store out, delete the filler, ingest again, copy the store out again."""
    disk, names = results / "disk", " ".join(str(path) for path in files)
    script = f"""
        set -u
        mount -t tmpfs -o size={DISK_KIB}k tmpfs {disk}
        dd if=/dev/zero of={disk}/filler bs=1k count={DISK_KIB - FREE_KIB} status=none
        {NAD} ingest {names} --store {disk}/store > {results}/full.out 2>&1; echo $? > {results}/full.rc
        cp -a {disk}/store {results}/store-full
        rm {disk}/filler
        {NAD} ingest {names} --store {disk}/store > {results}/freed.out 2>&1; echo $? > {results}/freed.rc
        cp -a {disk}/store {results}/store-freed
    """
    (results / "disk").mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    namespace = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]
    subprocess.run([*namespace, "sh", "-c", script], env=env, check=True, timeout=600, cwd=REPO)


def assert_store_whole(store: Path) -> list[str]:
    """Each stored day is one whole version (its report matches its rows); no half-written
    version lies in staging or the journal. Returns the stored days."""
    days = stored_parts(store)
    for part in days:
        assert len(pd.read_parquet(part_dir(store, part))) == read_report(store, part).rows_kept, part
    for leftover in (STAGING_DIR, JOURNAL_DIR):
        assert not list((store / leftover).glob("*")), leftover
    return days


def test_a_full_disk_names_the_store_keeps_it_whole_and_a_rerun_completes(
    tiny_dir: Path, tiny_days, tmp_path: Path
) -> None:
    files = sorted(tiny_dir.glob("*_firewall.csv"))
    on_a_small_disk(files, tmp_path)

    full = (tmp_path / "full.out").read_text()
    errors = [line for line in full.splitlines() if line.startswith("error:")]
    assert (tmp_path / "full.rc").read_text().strip() != "0", full
    assert errors and "Traceback" not in full, full
    named = f"cannot write to the store {tmp_path}/disk/store: no space left"
    assert all(named in line for line in errors), full
    assert len(assert_store_whole(tmp_path / "store-full")) < len(files)

    freed = (tmp_path / "freed.out").read_text()
    assert (tmp_path / "freed.rc").read_text().strip() == "0", freed
    assert len(assert_store_whole(tmp_path / "store-freed")) == len(files)


def test_disk_refusals_are_not_retried() -> None:
    assert not is_transient(OSError(errno.ENOSPC, "Error writing bytes to file"))
    assert not is_transient(OSError(errno.EROFS, "Read-only file system"))
    assert is_transient(OSError(errno.EIO, "Input/output error"))
