"""What a user sees when something is wrong: one `error:` line and a non-zero exit, never a
traceback (unless `--debug`), and no silent success on missing input. Each case runs the real
`nad` in a subprocess, against the session's Prefect test server and MLflow store."""

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from schemas.checks import MAX_TEXT_LENGTH
from schemas.datasets import DATASETS
from tasks.errors import QUOTE_LIMIT, is_transient, message_of, quote
from tasks.ingest.store import quarantine_dir, read_report, stored_parts
from tests.helpers import TRAIN_FILES

REPO = Path(__file__).resolve().parents[1]
NAD = Path(sys.executable).parent / "nad"
TEST_DAY = "0124_firewall.csv"
QUICK = {
    "preset": "paper",
    "binary": {"epochs": 2},
    "attack": {"epochs": 2},
    "baseline": {"epochs": 2},
    "batch_size": 256,
}


@pytest.fixture(scope="module")
def nad_env(prefect_harness, mlflow_store: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The environment of a `nad` subprocess: this session's Prefect server and MLflow store."""
    from prefect.settings import PREFECT_API_URL

    return {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-home")),
        "MLFLOW_TRACKING_URI": mlflow_store,
        "PYTHONPATH": str(REPO),
    }


def nad(env: dict, *args: object, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(NAD), *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    """The `error:` lines of a failed command, checked: a non-zero exit and no traceback."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one `error:` line of a failed command."""
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def fusion(trained) -> Path:
    return Path(trained.predictors["fusion"])


# ---------------------------------------------------------------- 1. no silent success on no input


def test_backfill_of_a_missing_folder_is_an_error(nad_env: dict, tmp_path: Path) -> None:
    result = nad(nad_env, "backfill", tmp_path / "nosuchdir", "--store", tmp_path / "store")
    assert error_line(result) == f"error: {tmp_path / 'nosuchdir'}: no such folder"


def test_backfill_that_matches_no_day_is_an_error_unless_allowed(
    nad_env: dict, tiny_dir: Path, tiny_days, tmp_path: Path
) -> None:
    args = ["backfill", tiny_dir, "--store", tmp_path / "store", "--since", "0301", "--until", "0302"]
    line = error_line(nad(nad_env, *args))
    assert f"no zyell files (*_firewall.csv) in {tiny_dir} with a day from 0301 to 0302" in line
    assert "--allow-empty" in line
    allowed = nad(nad_env, *args, "--allow-empty")
    assert allowed.returncode == 0, allowed.stderr
    assert "no files to ingest" in allowed.stdout and not (tmp_path / "store").exists()


@pytest.fixture
def labelled_store(tiny_store: Path, tmp_path: Path) -> Path:
    """A copy of the store of the tiny training days: enough to train on."""
    return Path(shutil.copytree(tiny_store, tmp_path / "store"))


def test_pipeline_on_a_missing_source_neither_trains_nor_registers(
    nad_env: dict, labelled_store: Path, tmp_path: Path
) -> None:
    config = tmp_path / "quick.json"
    config.write_text(json.dumps(QUICK))
    out = tmp_path / "out"
    args = ["--source", tmp_path / "nosuchdir", "--store", labelled_store, "--out", out, "--config", config]
    result = nad(nad_env, "pipeline", *args)
    assert error_line(result) == f"error: {tmp_path / 'nosuchdir'}: no such folder"
    assert not (out / "runs").exists() and "promoted" not in result.stdout + result.stderr


def test_pipeline_after_an_empty_backfill_does_not_train(
    labelled_store: Path, tmp_path: Path, prefect_harness
) -> None:
    from flows.pipeline import pipeline_flow

    quiet_day = tmp_path / "incoming"
    quiet_day.mkdir()
    out = tmp_path / "out"
    result = pipeline_flow(quiet_day, labelled_store, out=out, allow_empty=True)
    assert result.training is None and result.backfill == []
    assert not (out / "runs").exists()


@pytest.mark.slow
def test_pipeline_after_an_empty_backfill_trains_when_told(
    labelled_store: Path, tmp_path: Path, prefect_harness
) -> None:
    from flows.pipeline import pipeline_flow

    quiet_day = tmp_path / "incoming"
    quiet_day.mkdir()
    config = tmp_path / "quick.json"
    config.write_text(json.dumps(QUICK))
    out = tmp_path / "out"
    told = {"allow_empty": True, "train_anyway": True}
    result = pipeline_flow(quiet_day, labelled_store, out=out, config_file=config, **told)
    assert result.backfill == [] and result.training.tracking.version
    assert (out / "runs" / "latest" / "fusion").is_dir()


@pytest.mark.slow
def test_runs_latest_moves_only_when_a_run_completes(
    labelled_store: Path, tmp_path: Path, prefect_harness, fresh_mlflow: str
) -> None:
    """Registration fails (the store's artifact folder is a file), after the nets are trained: the
    run's folder exists, but `runs/latest` still names the last run that completed."""
    from flows.train import train_flow
    from schemas.training import TrainConfig

    (Path(fresh_mlflow.removeprefix("sqlite:///")).parent / "mlartifacts").write_text("not a folder")
    runs = tmp_path / "out" / "runs"
    (runs / "completed").mkdir(parents=True)
    (runs / "latest").symlink_to("completed")
    config = TrainConfig.from_preset("paper", {key: value for key, value in QUICK.items() if key != "preset"})
    with pytest.raises(Exception, match="mlartifacts"):
        train_flow(labelled_store, config=config, out=tmp_path / "out")
    assert {path.name for path in runs.iterdir()} - {"completed", "latest"}, "no run was trained"
    assert os.readlink(runs / "latest") == "completed"


# ---------------------------------------------------------------- 4. one line, not a traceback


def test_debug_shows_the_traceback_as_well(nad_env: dict, tmp_path: Path) -> None:
    result = nad(nad_env, "--debug", "backfill", tmp_path / "nosuchdir", "--store", tmp_path / "store")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "InputError" in result.stderr
    assert f"error: {tmp_path / 'nosuchdir'}: no such folder" in result.stderr.splitlines()


def test_training_on_an_empty_store_is_one_line_and_not_retried(nad_env: dict, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = nad(nad_env, "train", "--store", tmp_path / "empty", "--out", tmp_path / "out")
    assert error_line(result) == f"error: no labelled partitions to split in {tmp_path / 'empty'}"
    assert "Retry 1/" not in result.stderr


def test_training_on_a_missing_store_says_so_before_any_work(nad_env: dict, tmp_path: Path) -> None:
    result = nad(nad_env, "train", "--store", tmp_path / "nostore", "--out", tmp_path / "out")
    assert error_line(result) == (
        f"error: {tmp_path / 'nostore'}: no such folder (--store); nad ingest or nad backfill fills a store"
    )
    assert "Prefect" not in result.stderr and not (tmp_path / "out").exists()


def test_training_on_a_store_without_attacks_is_one_line(
    nad_env: dict, tiny_dir: Path, tiny_days, tmp_path: Path, dask_cluster_client
) -> None:
    from tasks.ingest.files import ingest_files

    day = pd.read_csv(tiny_dir / TRAIN_FILES[0])
    normal = tmp_path / TRAIN_FILES[0]
    day[day["label"] == "Normal"].to_csv(normal, index=False)
    assert next(ingest_files([normal], tmp_path / "store", dask_cluster_client)).report
    result = nad(nad_env, "train", "--store", tmp_path / "store", "--out", tmp_path / "out")
    assert "class 'DDOS-smurf' has 0 rows, too few" in error_line(result)
    assert "Retry 1/" not in result.stderr


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (json.dumps({"batch_size": 0}), "batch_size"),
        (json.dumps({"no_such_field": 1}), "no_such_field"),
        ("{not json", "Expecting property name"),
        (None, "No such file or directory"),
    ],
    ids=["invalid-value", "unknown-key", "not-json", "missing"],
)
def test_a_bad_training_config_is_one_line_naming_the_file(
    nad_env: dict, tmp_path: Path, content: str | None, words: str
) -> None:
    config = tmp_path / "config.json"
    if content is not None:
        config.write_text(content)
    args = ["--store", tmp_path / "store", "--out", tmp_path / "out", "--config", config]
    result = nad(nad_env, "train", *args)
    line = error_line(result)
    assert line.startswith(f"error: {config}: ") and words in line


@pytest.mark.parametrize("command", ["train", "pipeline"])
def test_a_feature_set_the_dataset_lacks_is_refused_before_any_work(
    nad_env: dict, tmp_path: Path, command: str
) -> None:
    args = ["--store", tmp_path / "store", "--out", tmp_path / "out", "--dataset", "nsl-kdd"]
    if command == "pipeline":
        args += ["--source", tmp_path / "nosuch"]  # refused before the backfill would find no source
    result = nad(nad_env, command, *args, "--feature-set", "context")
    assert error_line(result) == (
        "error: feature set 'context': nsl-kdd declares no context features; its feature set is 'paper'"
    )
    assert not (tmp_path / "out").exists() and not (tmp_path / "store").exists()


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ("{tmp}/nosuch", "{tmp}/nosuch: no such folder, and not a model URI"),
        ("{keras}", "{keras}: a file, not a model"),
        ("{tmp}", "{tmp}: holds no model"),
        ("models:/no-such-model@champion", "models:/no-such-model@champion: "),
        ("models:/nad-fusion/999", "models:/nad-fusion/999: "),
    ],
    ids=["missing-path", "keras-file", "empty-folder", "unknown-name", "unknown-version"],
)
def test_scoring_with_a_model_that_is_not_one_is_one_line_naming_it(
    nad_env: dict, fusion: Path, tiny_dir: Path, tmp_path: Path, model: str, words: str
) -> None:
    places = {"tmp": tmp_path, "keras": min(fusion.glob("*.keras"))}
    model, words = (text.format(**places) for text in (model, words))
    result = nad(nad_env, "score", tiny_dir / TEST_DAY, "--model", model, "--out", tmp_path / "out")
    assert error_line(result).startswith(f"error: {words}")


def test_a_truth_file_100_lines_short_is_one_line_and_leaves_no_temporary_file(
    nad_env: dict, fusion: Path, tiny_dir: Path, tmp_path: Path
) -> None:
    truth = tmp_path / "truth"
    truth.mkdir()
    lines = (tiny_dir / "truth" / TEST_DAY).read_text().splitlines(keepends=True)
    (truth / TEST_DAY).write_text("".join(lines[:-100]))
    out = tmp_path / "out"
    result = nad(nad_env, "score", tiny_dir / TEST_DAY, "--model", fusion, "--truth", truth, "--out", out)
    rows = len(lines) - 1
    assert error_line(result) == (
        f"error: {truth / TEST_DAY}: {rows - 100:,} labels for the {rows:,} rows of {tiny_dir / TEST_DAY}; "
        "a truth file has one label per data line"
    )
    assert [path.name for path in out.rglob("*") if path.name.endswith(".tmp")] == []


def test_evaluating_against_a_short_truth_file_is_one_line(
    nad_env: dict, fusion: Path, tiny_dir: Path, tmp_path: Path
) -> None:
    from tasks.model.fusion import load_predictor
    from tasks.scoring.score import score_file

    scores, truth = tmp_path / "scores", tmp_path / "truth"
    score_file(tiny_dir / TEST_DAY, load_predictor(fusion), scores)
    truth.mkdir()
    lines = (tiny_dir / "truth" / TEST_DAY).read_text().splitlines(keepends=True)
    (truth / TEST_DAY).write_text("".join(lines[:-100]))
    rows = len(lines) - 1
    result = nad(nad_env, "evaluate", scores, "--truth", truth)
    assert error_line(result) == (
        f"error: {truth / TEST_DAY}: {rows - 100:,} labels for the {rows:,} rows scored into "
        f"{scores / '0124_firewall.predictions.parquet'}; a truth file has one label per data line"
    )


def test_ingest_into_a_store_that_is_a_file_is_one_line(
    nad_env: dict, tiny_dir: Path, tiny_days, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    store.write_text("not a folder")
    result = nad(nad_env, "ingest", tiny_dir / TRAIN_FILES[0], "--store", store)
    assert str(store) in error_line(result)


@pytest.fixture
def read_only_store(tmp_path: Path) -> Iterator[Path]:
    """An existing, empty store folder that cannot be written: a read-only tmpfs for root (whom
    permissions do not stop), else a folder without write permission."""
    store = tmp_path / "read-only-store"
    store.mkdir()
    if os.geteuid() != 0:
        store.chmod(0o555)
        yield store
        store.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(store)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"root without the right to mount, so no folder is read-only: {mounted.stderr!r}")
    try:
        yield store
    finally:
        subprocess.run(["umount", str(store)], check=True)


def test_ingest_into_a_read_only_store_is_one_line_naming_it(
    nad_env: dict, tiny_dir: Path, tiny_days, read_only_store: Path
) -> None:
    result = nad(nad_env, "ingest", tiny_dir / TRAIN_FILES[0], "--store", read_only_store)
    line = error_line(result)
    assert line.startswith(f"error: {read_only_store}/") and line.endswith(
        ("Read-only file system", "Permission denied")
    ), line


# ---------------------------------------------------------------- 5. one bad file in a multi-file score


def test_one_bad_file_does_not_stop_the_others(
    nad_env: dict, fusion: Path, tiny_dir: Path, tmp_path: Path
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    good = [inputs / TEST_DAY, inputs / "0125_firewall.csv"]
    for path in good:
        shutil.copy(tiny_dir / path.name, path)
    empty, wrong = inputs / "0126_firewall.csv", inputs / "0123_firewall.csv"
    empty.touch()
    wrong.write_text("a,b,c\n1,2,3\n")
    out = tmp_path / "out"
    result = nad(nad_env, "score", good[0], empty, wrong, good[1], "--model", fusion, "--out", out)
    assert error_lines(result) == [
        f"error: {empty}: the file is empty",
        f"error: {wrong}: line 1: missing column(s) {list(DATASETS['zyell'].unlabelled_columns)}",
    ]
    assert sorted(p.name for p in out.glob("*.summary.json")) == [
        "0124_firewall.summary.json",
        "0125_firewall.summary.json",
    ]
    scored = [line.split(":")[0] for line in result.stdout.splitlines() if not line.startswith(" ")]
    assert scored == [TEST_DAY, "0125_firewall.csv"]


# ---------------------------------------------------------------- 9. oversized values


def test_quote_cuts_a_long_value_and_says_how_long_it_was() -> None:
    assert quote("tcp") == "'tcp'"
    long = quote("x" * 5_000_000)
    assert len(long) < QUOTE_LIMIT + 30 and long.endswith("… (5,000,000 characters)")
    assert len(message_of(ValueError("y" * 1_000_000))) < 2_100


@pytest.mark.parametrize("spec", DATASETS.values(), ids=DATASETS)
def test_every_free_text_field_has_a_maximum_length(spec) -> None:
    names = [column.name for column in spec.categorical]
    assert names
    for name in names:
        frame = pd.DataFrame({name: ["x" * MAX_TEXT_LENGTH, "x" * (MAX_TEXT_LENGTH + 1)]})
        check = next(c for c in spec.contract(True).columns[name].checks if "longer than" in str(c.error))
        assert check(frame[name]).check_output.tolist() == [True, False]


def test_a_5_mb_value_goes_to_quarantine_quoted_short(
    nad_env: dict, tiny_dir: Path, tiny_days, tmp_path: Path
) -> None:
    lines = (tiny_dir / TRAIN_FILES[0]).read_text().splitlines(keepends=True)[:50]
    fields = lines[7].split(",")
    fields[DATASETS["zyell"].columns.index("app")] = "x" * 5_000_000
    lines[7] = ",".join(fields)
    day = tmp_path / TRAIN_FILES[0]
    day.write_text("".join(lines))
    store = tmp_path / "store"
    result = nad(nad_env, "ingest", day, "--store", store)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(result.stdout) + len(result.stderr) < 20_000
    [part] = stored_parts(store)
    assert read_report(store, part).rows_quarantined == 1
    assert (store / part / "_report.json").stat().st_size < 5_000
    [row] = pd.read_parquet(quarantine_dir(store, part)).to_dict("records")
    assert row["line"] == 8 and row["rule"] == f"app: longer than {MAX_TEXT_LENGTH} characters"
    assert len(row["reason"]) < 2 * QUOTE_LIMIT and "(5,000,000 characters)" in row["reason"]


# ---------------------------------------------------------------- retries


def test_only_failures_that_may_pass_are_transient() -> None:
    assert is_transient(OSError(5, "Input/output error")) and is_transient(TimeoutError())
    assert is_transient(ConnectionResetError())
    for permanent in (PermissionError(13, "denied"), FileNotFoundError(2, "missing"), ValueError("bad data")):
        assert not is_transient(permanent)
