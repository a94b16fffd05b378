"""Nothing lost, nothing misleading (issue 20): a re-ingest that keeps far fewer rows never
replaces a stored day, and every damaged input is named in one `error:` line. Each case runs
the real `nad` in a subprocess, with bad inputs of its own."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from schemas.firewall import COLUMNS
from tasks.ingest.store import TRASH_DIR, part_dir, read_report, stored_parts

REPO = Path(__file__).resolve().parents[1]
NAD = Path(sys.executable).parent / "nad"
NAME, DAY = "1203_firewall.csv", "day=2020-12-03"


@pytest.fixture(scope="module")
def plain_env(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The environment of a `nad` subprocess that runs no flow (ingest, evaluate, incidents)."""
    return {
        **os.environ,
        "PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-home")),
        "PYTHONPATH": str(REPO),
    }


def nad(env: dict, *args: object, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(NAD), *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one `error:` line of a failed command: a non-zero exit and no traceback."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def succeeded(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    return result


def broken(source: Path, target: Path, column: str, value: str, share: float = 1.0) -> Path:
    """A copy of a day file whose first `share` of rows carry `value` in `column`."""
    lines = source.read_text().splitlines()
    index, bad = COLUMNS.index(column), round((len(lines) - 1) * share)
    for number in range(1, bad + 1):
        fields = lines[number].split(",")
        fields[index] = value
        lines[number] = ",".join(fields)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n")
    return target


def stored_rows(store: Path) -> int:
    return len(pd.read_parquet(part_dir(store, DAY)))


def trash(store: Path) -> list[Path]:
    return list((store / TRASH_DIR).glob("*")) if (store / TRASH_DIR).exists() else []


# ---------------------------------------------------------------- 1. a re-ingest never empties a good day


@pytest.fixture
def good_store(plain_env: dict, tiny_dir: Path, tiny_days, tmp_path: Path) -> Path:
    store = tmp_path / "store"
    succeeded(nad(plain_env, "ingest", tiny_dir / NAME, "--store", store))
    return store


@pytest.mark.parametrize(
    ("column", "value"), [("proto", "300"), ("duration", "-5"), ("src", "fe80::1")], ids=str
)
def test_a_reingest_that_keeps_no_row_replaces_nothing(
    plain_env: dict, good_store: Path, tiny_dir: Path, tmp_path: Path, column: str, value: str
) -> None:
    stored = read_report(good_store, DAY).rows_kept
    bad = broken(tiny_dir / NAME, tmp_path / "bad" / NAME, column, value)
    result = nad(plain_env, "ingest", bad, "--store", good_store)
    assert error_line(result) == (
        f"error: {bad}: {DAY}: the new version keeps 0 rows against {stored:,} stored; "
        "nothing replaced (--replace-anyway to override)"
    )
    assert stored_rows(good_store) == stored and read_report(good_store, DAY).rows_kept == stored
    assert trash(good_store) == []
    assert not list((good_store / ".staging").glob("*"))


def test_a_reingest_that_keeps_under_half_is_refused_and_over_half_replaces(
    plain_env: dict, good_store: Path, tiny_dir: Path, tmp_path: Path
) -> None:
    stored = read_report(good_store, DAY).rows_kept
    under = broken(tiny_dir / NAME, tmp_path / "under" / NAME, "proto", "300", share=0.6)
    kept = stored - round(stored * 0.6)
    assert f"keeps {kept:,} rows against {stored:,} stored" in error_line(
        nad(plain_env, "ingest", under, "--store", good_store)
    )
    assert stored_rows(good_store) == stored
    over = broken(tiny_dir / NAME, tmp_path / "over" / NAME, "proto", "300", share=0.4)
    succeeded(nad(plain_env, "ingest", over, "--store", good_store))
    assert stored_rows(good_store) == stored - round(stored * 0.4)


def test_replace_anyway_overrides(plain_env: dict, good_store: Path, tiny_dir: Path, tmp_path: Path) -> None:
    bad = broken(tiny_dir / NAME, tmp_path / "bad" / NAME, "proto", "300")
    succeeded(nad(plain_env, "ingest", bad, "--store", good_store, "--replace-anyway"))
    assert stored_rows(good_store) == 0 and read_report(good_store, DAY).rows_kept == 0


def test_a_first_ingest_that_keeps_no_row_fails_unless_allowed(
    plain_env: dict, tiny_dir: Path, tiny_days, tmp_path: Path
) -> None:
    bad = broken(tiny_dir / NAME, tmp_path / "bad" / NAME, "duration", "-5")
    store = tmp_path / "store"
    rows = len(bad.read_text().splitlines()) - 1
    assert error_line(nad(plain_env, "ingest", bad, "--store", store)) == (
        f"error: {bad}: {DAY}: keeps no row ({rows:,} quarantined); "
        "nothing stored (--allow-empty to store it)"
    )
    assert stored_parts(store) == []
    succeeded(nad(plain_env, "ingest", bad, "--store", store, "--allow-empty"))
    assert stored_parts(store) == [DAY] and stored_rows(store) == 0


def test_backfill_refuses_the_emptying_version_unless_replace_anyway(
    good_store: Path, tiny_dir: Path, tmp_path: Path, prefect_harness
) -> None:
    from flows.backfill import BackfillFailed, backfill_flow

    stored = read_report(good_store, DAY).rows_kept
    bad = broken(tiny_dir / NAME, tmp_path / "source" / NAME, "proto", "300")
    with pytest.raises(BackfillFailed, match=f"keeps 0 rows against {stored:,} stored; nothing replaced"):
        backfill_flow(bad.parent, good_store)
    assert stored_rows(good_store) == stored and trash(good_store) == []
    rows = backfill_flow(bad.parent, good_store, replace_anyway=True)
    assert [row.kept for row in rows] == [0] and stored_rows(good_store) == 0


# ---------------------------------------------------------------- 2. a scored file that keeps no row

TEST_DAY = "0124_firewall.csv"


@pytest.fixture(scope="module")
def nad_env(prefect_harness, mlflow_store: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The environment of a `nad` subprocess that runs a flow: this session's Prefect server
    and MLflow store."""
    from prefect.settings import PREFECT_API_URL

    return {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-home")),
        "MLFLOW_TRACKING_URI": mlflow_store,
        "PYTHONPATH": str(REPO),
    }


@pytest.fixture
def fusion(trained) -> Path:
    return Path(trained.predictors["fusion"])


def test_scoring_a_file_that_keeps_no_row_fails_for_it_alone(
    nad_env: dict, fusion: Path, tiny_dir: Path, tmp_path: Path
) -> None:
    bad = broken(tiny_dir / TEST_DAY, tmp_path / "in" / "0125_firewall.csv", "duration", "-5")
    rows = len(bad.read_text().splitlines()) - 1
    out = tmp_path / "out"
    result = nad(nad_env, "score", bad, tiny_dir / TEST_DAY, "--model", fusion, "--out", out)
    assert error_line(result) == f"error: {bad}: no row kept ({rows:,} quarantined); nothing scored"
    assert [path.name for path in out.glob("*.summary.json")] == ["0124_firewall.summary.json"]
    assert not (out / "0125_firewall.predictions.parquet").exists()
    assert result.stdout.startswith(f"{TEST_DAY}: read ")


# ---------------------------------------------------------------- 3. evaluate checks the truth exactly


@pytest.fixture
def scored(fusion: Path, tiny_dir: Path, tmp_path: Path) -> Path:
    """The predictions of the tiny test day, as `nad score` writes them."""
    from tasks.model.fusion import load_predictor
    from tasks.scoring.score import score_file

    scores = tmp_path / "scores"
    score_file(tiny_dir / TEST_DAY, load_predictor(fusion), scores)
    return scores


def truth_folder(tmp_path: Path, lines: list[str]) -> Path:
    folder = tmp_path / "truth"
    folder.mkdir(exist_ok=True)
    (folder / TEST_DAY).write_text("".join(lines))
    return folder / TEST_DAY


@pytest.mark.parametrize("command", ["evaluate", "incidents"])
@pytest.mark.parametrize("extra", [100, -100], ids=["longer", "shorter"])
def test_a_truth_file_of_another_length_is_refused(
    plain_env: dict, scored: Path, tiny_dir: Path, tmp_path: Path, extra: int, command: str
) -> None:
    lines = (tiny_dir / "truth" / TEST_DAY).read_text().splitlines(keepends=True)
    rows = len(lines) - 1
    truth = truth_folder(tmp_path, lines + lines[1 : 1 + extra] if extra > 0 else lines[:extra])
    result = nad(plain_env, command, scored, "--truth", truth.parent)
    assert error_line(result) == (
        f"error: {truth}: {rows + extra:,} labels for the {rows:,} rows scored into "
        f"{scored / '0124_firewall.predictions.parquet'}; a truth file has one label per data line"
    )


@pytest.mark.parametrize("header", ["none", "other"])
def test_a_truth_file_without_the_label_column_is_named(
    plain_env: dict, scored: Path, tiny_dir: Path, tmp_path: Path, header: str
) -> None:
    lines = (tiny_dir / "truth" / TEST_DAY).read_text().splitlines(keepends=True)
    truth = truth_folder(tmp_path, lines[1:] if header == "none" else ["class\n", *lines[1:]])
    line = error_line(nad(plain_env, "evaluate", scored, "--truth", truth.parent))
    assert line.startswith(f"error: {truth}: no 'label' column"), line


# ---------------------------------------------------------------- 5. a damaged model folder


def damage_predictor_json(folder: Path) -> str:
    text = (folder / "predictor.json").read_text()
    (folder / "predictor.json").write_text(text[: len(text) // 2])
    return "predictor.json: not valid JSON (line "


def damage_keras(folder: Path) -> str:
    (folder / "binary-0.keras").write_bytes(os.urandom(4096))
    return "binary-0.keras: cannot be loaded: "


def remove_keras(folder: Path) -> str:
    (folder / "attack-0.keras").unlink()
    return "attack-0.keras: missing"


def threshold_7(folder: Path) -> str:
    import json

    spec = json.loads((folder / "predictor.json").read_text())
    (folder / "predictor.json").write_text(json.dumps({**spec, "threshold": 7}))
    return "predictor.json: threshold 7 is outside (0, 1)"


@pytest.mark.parametrize(
    "damage", [damage_predictor_json, damage_keras, remove_keras, threshold_7], ids=lambda f: f.__name__
)
def test_a_damaged_model_folder_is_named_not_the_data(
    nad_env: dict, fusion: Path, tiny_dir: Path, tmp_path: Path, damage
) -> None:
    import shutil

    model = Path(shutil.copytree(fusion, tmp_path / "model"))
    words = damage(model)
    result = nad(nad_env, "score", tiny_dir / TEST_DAY, "--model", model, "--out", tmp_path / "out")
    line = error_line(result)
    assert line.startswith(f"error: {model}/{words}"), line
    assert TEST_DAY not in line and not (tmp_path / "out").exists()


# ---------------------------------------------------------------- 4. backfill names what it cannot read


def test_backfill_names_every_day_entry_it_cannot_read(
    nad_env: dict, tiny_dir: Path, tiny_days, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / NAME).write_bytes((tiny_dir / NAME).read_bytes())
    folder, loop, dangling = (
        source / name for name in ("1210_firewall.csv", "1216_firewall.csv", "0123_firewall.csv")
    )
    folder.mkdir()
    loop.symlink_to(loop.name)
    dangling.symlink_to(tmp_path / "gone.csv")
    store = tmp_path / "store"
    line = error_line(nad(nad_env, "backfill", source, "--store", store))
    assert f"{folder}: is a directory, not a data file" in line
    assert f"{loop}: a symlink loop" in line
    assert f"{dangling}: a dangling link to {tmp_path / 'gone.csv'}" in line
    assert stored_parts(store) == [DAY]


def test_allow_empty_never_turns_unreadable_days_into_success(nad_env: dict, tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / NAME).symlink_to(tmp_path / "gone.csv")
    result = nad(nad_env, "backfill", source, "--store", tmp_path / "store", "--allow-empty")
    assert f"{source / NAME}: a dangling link to {tmp_path / 'gone.csv'}" in error_line(result)
    assert "no files to ingest" not in result.stdout


# ---------------------------------------------------------------- 6. options checked before any work

HEAVY = ("tensorflow", "mlflow")
PROBE = (
    "import sys\nfrom flows.cli import main\nsys.argv[0] = 'nad'\n"
    "try:\n    main()\nfinally:\n"
    "    print('imported:', *[m for m in {heavy!r} if m in sys.modules], file=sys.stderr)"
)


def nad_probed(env: dict, *args: object) -> tuple[subprocess.CompletedProcess, list[str]]:
    """`nad ARGS` as the entry point runs it, and which heavy modules it had imported at exit."""
    code = PROBE.format(heavy=HEAVY)
    result = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    [imported] = [line for line in result.stderr.splitlines() if line.startswith("imported:")]
    return result, imported.split()[1:]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["score", "{day}", "--vote-window", "9223372036854775808"], "'--vote-window': "),
        (["score", "{day}", "--vote-window", "86401"], "'--vote-window': "),
        (["score", "{day}", "--vote-window", "-1"], "'--vote-window': "),
        (["incidents", "{tmp}", "--gap", "nan"], "'--gap': "),
        (["incidents", "{tmp}", "--gap", "inf"], "'--gap': "),
        (["incidents", "{tmp}", "--gap", "1e300"], "'--gap': "),
        (["incidents", "{tmp}", "--gap", "-1"], "'--gap': "),
        (["incidents", "{tmp}", "--top", "0"], "'--top': "),
        (["incidents", "{tmp}", "--top", "99999999999"], "'--top': "),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_option_values_out_of_bounds_are_refused_before_any_work(
    plain_env: dict, tiny_dir: Path, tiny_days, tmp_path: Path, args: list[str], words: str
) -> None:
    args = [arg.format(day=tiny_dir / TEST_DAY, tmp=tmp_path) for arg in args]
    out = ["--out", tmp_path / "out"] if args[0] == "score" else []
    result, imported = nad_probed(plain_env, *args, *out)
    assert result.returncode == 2 and f"error: Invalid value for {words}" in error_line(result), result.stderr
    assert imported == [] and not (tmp_path / "out").exists()


def truth_missing(tmp: Path, day: Path, model: Path) -> tuple[list, str]:
    args = ["score", day, "--model", model, "--truth", tmp / "notruth", "--out", tmp / "out"]
    return args, f"{tmp / 'notruth'}: no such folder"


def model_missing(tmp: Path, day: Path, model: Path) -> tuple[list, str]:
    args = ["score", day, "--model", tmp / "nomodel", "--out", tmp / "out"]
    return args, f"{tmp / 'nomodel'}: no such folder, and not a model URI"


def config_missing(tmp: Path, day: Path, model: Path) -> tuple[list, str]:
    args = ["train", "--store", tmp / "store", "--config", tmp / "no.json", "--out", tmp / "out"]
    return args, f"{tmp / 'no.json'}: "


def pipeline_config_missing(tmp: Path, day: Path, model: Path) -> tuple[list, str]:
    args = ["pipeline", "--source", tmp, "--store", tmp / "store", "--config", tmp / "no.json"]
    args += ["--out", tmp / "out"]
    return args, f"{tmp / 'no.json'}: "


def evaluate_truth_missing(tmp: Path, day: Path, model: Path) -> tuple[list, str]:
    return ["evaluate", tmp, "--truth", tmp / "notruth"], f"{tmp / 'notruth'}: no such folder"


def incidents_truth_missing(tmp: Path, day: Path, model: Path) -> tuple[list, str]:
    return ["incidents", tmp, "--truth", tmp / "notruth"], f"{tmp / 'notruth'}: no such folder"


@pytest.mark.parametrize(
    "case",
    [truth_missing, model_missing, config_missing, pipeline_config_missing, evaluate_truth_missing,
     incidents_truth_missing],
    ids=lambda f: f.__name__,
)  # fmt: skip
def test_files_named_by_options_are_checked_before_tensorflow_is_imported(
    plain_env: dict, tiny_dir: Path, tiny_days, tmp_path: Path, case
) -> None:
    args, words = case(tmp_path, tiny_dir / TEST_DAY, tmp_path)
    result, imported = nad_probed(plain_env, *args)
    line = error_line(result)
    assert line.startswith(f"error: {words}"), line
    assert imported == [], imported


def test_training_names_a_day_that_keeps_no_row_asked_for_or_not(
    tiny_dir: Path, tiny_store: Path, tmp_path: Path, dask_cluster_client
) -> None:
    import shutil

    from schemas.training import SplitConfig
    from tasks.ingest.files import ingest_file
    from tasks.training.split import SplitError, split_store

    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    bad = broken(tiny_dir / NAME, tmp_path / "bad" / NAME, "duration", "-5")
    ingest_file(bad, store, dask_cluster_client, replace_anyway=True)
    expected = f"{DAY} holds no usable row"
    with pytest.raises(SplitError, match=expected):
        split_store(store, None, SplitConfig(), tmp_path / "splits", dask_cluster_client)
    with pytest.raises(SplitError, match=expected):
        split_store(store, [DAY], SplitConfig(), tmp_path / "splits", dask_cluster_client)
    others = [p for p in stored_parts(store) if p != DAY]
    assert split_store(store, others, SplitConfig(), tmp_path / "splits", dask_cluster_client).partitions
