"""Input as operators have it: rotated, gzip-compressed days (`.csv.gz`, NSL-KDD `.txt.gz`) and a
folder where a file belongs. (The malformed-file table in test_ingest.py holds the one-file
cases: gzip content, a damaged gzip, a UTF-8 BOM.)"""

import gzip
import re
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from schemas.datasets import NSL_KDD
from tasks.ingest.files import ingest_file, select_files
from tasks.ingest.scan import IngestError
from tasks.ingest.store import STAGING_DIR, part_dir, quarantine_dir
from tasks.model.fusion import load_predictor
from tasks.scoring.score import score_file

DAY, PART, NAME = "2020-12-10", "day=2020-12-10", "1210_firewall.csv"
KDD_TRAIN = Path(__file__).resolve().parent / "data" / "nsl-kdd" / "KDDTrain+_20Percent.txt.gz"


def compressed(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(gzip.compress(source.read_bytes()))
    return target


def with_bad_port(source: Path, target: Path, line_no: int) -> Path:
    """A copy of `source` with an out-of-range dpt on line `line_no` (1-based, header = 1)."""
    lines = source.read_bytes().split(b"\n")
    fields = lines[line_no - 1].split(b",")
    fields[4] = b"70000"
    lines[line_no - 1] = b",".join(fields)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"\n".join(lines))
    return target


def stored(store: Path, part: str) -> pd.DataFrame:
    return pd.read_parquet(part_dir(store, part)).sort_values("line", ignore_index=True)


def test_a_gzip_day_is_read_directly_with_its_day_from_the_name(
    tiny_dir: Path, tiny_days, tmp_path: Path, dask_cluster_client
) -> None:
    plain = with_bad_port(tiny_dir / NAME, tmp_path / "plain" / NAME, line_no=700)
    packed = compressed(plain, tmp_path / "packed" / f"{NAME}.gz")
    expected = ingest_file(plain, tmp_path / "expected", dask_cluster_client, blocksize=64 * 1024)
    report = ingest_file(packed, tmp_path / "store", dask_cluster_client, blocksize=64 * 1024)
    assert report.partition == DAY and report.file == str(packed)
    assert (report.rows_read, report.rows_kept, report.rows_quarantined) == (
        expected.rows_read,
        expected.rows_kept,
        1,
    )
    assert report.sha256 == expected.sha256  # the text's: the same day, compressed or not
    pd.testing.assert_frame_equal(stored(tmp_path / "store", PART), stored(tmp_path / "expected", PART))
    quarantine = pd.read_parquet(quarantine_dir(tmp_path / "store", PART))
    assert quarantine[["file", "line", "rule"]].values.tolist() == [
        [str(packed), 700, "dpt: outside 0..65535"]
    ]
    assert not list((tmp_path / "store" / STAGING_DIR).iterdir())  # no decompressed copy left
    again = ingest_file(packed, tmp_path / "expected", dask_cluster_client, skip_unchanged=True)
    assert again.status == "skipped"


def test_a_gzip_name_without_a_day_is_still_a_clear_error(
    tiny_dir: Path, tiny_days, tmp_path: Path, dask_cluster_client
) -> None:
    for name in ("firewall.csv.gz", "1310_firewall.csv.gz", "day_1210.csv.gz"):
        source = compressed(tiny_dir / NAME, tmp_path / name)
        with pytest.raises(IngestError, match=r"cannot tell the day from the name|not a calendar day"):
            ingest_file(source, tmp_path / "store", dask_cluster_client)
    assert ingest_file(source, tmp_path / "store", dask_cluster_client, partition=DAY).partition == DAY


def test_the_shipped_nsl_kdd_file_ingests_as_it_is(tmp_path: Path, dask_cluster_client) -> None:
    report = ingest_file(KDD_TRAIN, tmp_path, dask_cluster_client, NSL_KDD, blocksize=2**20)
    assert report.partition == "KDDTrain+_20Percent"
    counts = (report.rows_read, report.rows_kept, report.rows_quarantined, report.rows_out_of_scope)
    assert counts == (25_192, 15_576, 0, 9_616)
    assert report.classes == {"Normal": 13_449, "Probing-IP sweep": 710, "Probing-Port sweep": 587,
                              "DDOS-smurf": 529, "Probing-Nmap": 301}  # fmt: skip
    assert report.sha256 == "1a1559ff163a1dfa7ad1fba6b00ac6a408cc16741588831b66f043b918881e53"


def test_backfill_selects_gzip_days_and_refuses_twins(tiny_dir: Path, tiny_days, tmp_path: Path) -> None:
    compressed(tiny_dir / "1203_firewall.csv", tmp_path / "1203_firewall.csv.gz")
    compressed(tiny_dir / "0124_firewall.csv", tmp_path / "0124_firewall.csv.gz")
    (tmp_path / NAME).write_bytes((tiny_dir / NAME).read_bytes())
    (tmp_path / "1203_firewall.csv.gz.part").write_bytes(b"")  # an unfinished download
    names = [path.name for path in select_files(tmp_path, since="1201", until="1231")]
    assert names == ["1203_firewall.csv.gz", NAME]
    assert len(select_files(tmp_path)) == 3
    compressed(tiny_dir / NAME, tmp_path / f"{NAME}.gz")
    with pytest.raises(ValueError, match=re.escape(f"{NAME} and {NAME}.gz: the same file")):
        select_files(tmp_path)


def test_cli_ingest_names_a_directory_and_a_gzip_name_without_a_day(
    tiny_dir: Path, tiny_days, tmp_path: Path
) -> None:
    folder = tmp_path / "0101_firewall.csv"
    folder.mkdir()
    nameless = compressed(tiny_dir / NAME, tmp_path / "firewall.csv.gz")
    good = compressed(tiny_dir / NAME, tmp_path / f"{NAME}.gz")
    result = CliRunner().invoke(
        app, ["ingest", str(folder), str(nameless), str(good), "--store", str(tmp_path / "s")]
    )
    assert result.exit_code == 1
    assert f"error: {folder}: is a directory" in result.output
    assert f"error: {nameless}: cannot tell the day from the name" in result.output
    assert f"{NAME}.gz -> {PART}: ingested" in result.output


@pytest.fixture(scope="module")
def fusion(trained):
    return load_predictor(Path(trained.predictors["fusion"]))


def test_score_reads_a_gzip_day(fusion, tiny_dir: Path, tiny_days, tmp_path: Path) -> None:
    name = "0124_firewall.csv"
    plain = with_bad_port(tiny_dir / name, tmp_path / "plain" / name, line_no=40)
    packed = compressed(plain, tmp_path / "packed" / f"{name}.gz")
    truth = tiny_dir / "truth" / name
    expected = score_file(plain, fusion, tmp_path / "expected", truth)
    copies_before = set(Path(tempfile.gettempdir()).glob(f".gunzip-*-{name}"))
    report = score_file(packed, fusion, tmp_path / "out", truth)
    assert set(Path(tempfile.gettempdir()).glob(f".gunzip-*-{name}")) == copies_before
    assert report.predictions == str(tmp_path / "out" / "0124_firewall.predictions.parquet")
    assert (report.rows_read, report.rows_kept, report.rows_quarantined) == (
        expected.rows_read,
        expected.rows_kept,
        1,
    )
    assert report.metrics == expected.metrics
    pd.testing.assert_frame_equal(pd.read_parquet(report.predictions), pd.read_parquet(expected.predictions))
    quarantine = pd.read_parquet(tmp_path / "out" / "0124_firewall.quarantine.parquet")
    assert quarantine[["file", "line"]].values.tolist() == [[str(packed), 40]]
