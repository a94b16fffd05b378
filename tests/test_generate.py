"""The ZYELL-format generator: files, formats, sizes, class mix, counters and determinism."""

import hashlib
import ipaddress
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from schemas.firewall import APP_VOCABULARY, ATTACK_NAMES, CLASS_NAMES, COLUMNS, COUNTER_COLUMNS, TIME_FORMAT
from schemas.generation import Preset, TrafficConfig, get_preset
from simulator.counters import compute_counters
from simulator.generate import MANIFEST, TRUTH_DIR, DaySummary, generate_dataset
from simulator.traffic import APP_PROFILES
from tests.conftest import TINY_SEED

REAL_ROWS = {
    "1203": 3_265_630,
    "1210": 2_809_865,
    "1216": 3_165_968,
    "0123": 3_601_186,
    "0124": 2_050_710,
    "0125": 2_120_819,
    "0126": 5_517_815,
}
REAL_TRAINING_TOTALS = {
    "Normal": 8_920_477,
    "Probing-IP sweep": 240_524,
    "Probing-Port sweep": 77_289,
    "DDOS-smurf": 2_345,
    "Probing-Nmap": 829,
}
TRAIN_FILES = ["1203_firewall.csv", "1210_firewall.csv", "1216_firewall.csv"]
TEST_FILES = ["0123_firewall.csv", "0124_firewall.csv", "0125_firewall.csv", "0126_firewall.csv"]


def read_day(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"src": str, "dst": str, "app": str, "label": str})


def only_days(preset: Preset, split: str) -> Preset:
    return preset.model_copy(update={"days": tuple(d for d in preset.days if d.split == split)})


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- files and formats


def test_writes_the_original_file_names_and_truth(tiny_dir: Path, tiny_days: list[DaySummary]) -> None:
    assert sorted(p.name for p in tiny_dir.glob("*.csv")) == sorted(TRAIN_FILES + TEST_FILES)
    assert sorted(p.name for p in (tiny_dir / TRUTH_DIR).glob("*.csv")) == sorted(TEST_FILES)
    assert (tiny_dir / MANIFEST).exists()
    assert not list(tiny_dir.rglob(".*.tmp"))


def test_header_is_exact_and_unquoted(tiny_dir: Path, tiny_days: list[DaySummary]) -> None:
    for name in TRAIN_FILES:
        assert (tiny_dir / name).open().readline().rstrip("\n") == ",".join(COLUMNS)
    for name in TEST_FILES:
        assert (tiny_dir / name).open().readline().rstrip("\n") == ",".join(COLUMNS[:-1])


def test_test_days_have_no_label_but_aligned_truth(tiny_dir: Path, tiny_days: list[DaySummary]) -> None:
    for name in TEST_FILES:
        day, truth = read_day(tiny_dir / name), read_day(tiny_dir / TRUTH_DIR / name)
        assert "label" not in day.columns
        assert list(truth.columns) == ["label"]
        assert len(truth) == len(day)
        assert set(truth["label"]) <= set(CLASS_NAMES)


def test_values_have_the_documented_formats_and_ranges(tiny_dir: Path, tiny_days: list[DaySummary]) -> None:
    for name in TRAIN_FILES + TEST_FILES:
        day = read_day(tiny_dir / name)
        stamps = [datetime.strptime(t, TIME_FORMAT) for t in day["time"]]
        assert stamps == sorted(stamps), f"{name} is not in time order"
        assert {s.strftime("%m%d") for s in stamps} == {name[:4]}
        for column in ("src", "dst"):
            for address in day[column].unique():
                assert str(ipaddress.IPv4Address(address)) == address
        assert day["spt"].between(0, 65535).all() and day["dpt"].between(0, 65535).all()
        assert day["proto"].isin([1, 2, 6, 17]).all()
        assert day["app"].isin(APP_VOCABULARY).all()
        assert (day[["duration", "out (bytes)", "in (bytes)"]] >= 0).all().all()
        assert (day[list(COUNTER_COLUMNS)] >= 1).all().all()
        for column in ("spt", "dpt", "duration", "out (bytes)", "in (bytes)", *COUNTER_COLUMNS):
            assert pd.api.types.is_integer_dtype(day[column]), column


def test_apps_match_their_protocols_and_ports(tiny_dir: Path, tiny_days: list[DaySummary]) -> None:
    day = pd.concat([read_day(tiny_dir / name) for name in TRAIN_FILES])
    normal = day[day["label"] == "Normal"]
    for app_name in ("domain", "https", "http", "ssh", "microsoft-ds", "netbios-ns"):
        sessions = normal[normal["app"] == app_name]
        assert len(sessions) > 0, app_name
        assert (sessions["dpt"] == APP_PROFILES[app_name].dpt).all(), app_name
        assert (sessions["proto"] == APP_PROFILES[app_name].proto).all(), app_name
    icmp = day[day["app"] == "icmp"]
    assert (icmp["proto"] == 1).all() and (icmp["spt"] == 0).all() and (icmp["dpt"] == 0).all()


# ---------------------------------------------------------------- sizes and class mix


def test_full_plan_reproduces_zyell_row_counts_exactly() -> None:
    days = get_preset("full").days
    assert {f"{d.date:%m%d}": d.rows for d in days} == REAL_ROWS
    assert sum(d.rows for d in days if d.split == "train") == 9_241_463
    assert sum(d.rows for d in days) == 22_531_993


def test_full_plan_class_totals_within_five_percent_after_label_noise() -> None:
    preset = get_preset("full")
    noise = preset.traffic.label_noise
    train = [d for d in preset.days if d.split == "train"]
    for name, real in REAL_TRAINING_TOTALS.items():
        planned = sum(d.normal_rows if name == "Normal" else d.attacks[name] for d in train)
        expected = planned if name == "Normal" else planned * (1 - noise)
        assert abs(expected - real) <= 0.05 * real, (name, expected, real)


def test_full_plan_day_mix_follows_the_real_data() -> None:
    days = {f"{d.date:%m%d}": d for d in get_preset("full").days}
    assert days["1203"].attacks["Probing-IP sweep"] / days["1203"].rows == pytest.approx(0.056, abs=0.01)
    assert days["1203"].attacks["Probing-Port sweep"] / days["1203"].rows == pytest.approx(0.02, abs=0.002)
    assert days["1203"].attacks["DDOS-smurf"] == days["1203"].attacks["Probing-Nmap"] == 0
    assert days["1210"].attacks["Probing-IP sweep"] / days["1210"].rows == pytest.approx(0.018, abs=0.003)
    for rare in ("DDOS-smurf", "Probing-Nmap"):
        assert days["1216"].attacks[rare] > 0.9 * sum(
            d.attacks[rare] for d in days.values() if d.split == "train"
        )


def test_dry_run_prints_the_full_plan_without_writing(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["generate", "--out", str(tmp_path / "x"), "--preset", "full", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "3,265,630" in result.output and "22,531,993" in result.output
    assert not (tmp_path / "x").exists()


def test_demo_training_days_hold_every_class(tmp_path: Path) -> None:
    summaries = generate_dataset(only_days(get_preset("demo"), "train"), 7, tmp_path)
    for summary in summaries:
        missing = [name for name in CLASS_NAMES if summary.class_counts[name] == 0]
        assert not missing, (summary.file, missing)
    written = read_day(tmp_path / TRAIN_FILES[0])
    assert written["label"].value_counts().to_dict() == summaries[0].class_counts | {}
    apps = written["app"].value_counts()
    assert apps.index[0] == "https"
    assert apps.get("sftp", 0) < 5


def test_label_noise_is_a_parameter(tmp_path: Path) -> None:
    clean = only_days(get_preset("tiny", TrafficConfig(label_noise=0.0)), "train")
    noisy = only_days(get_preset("tiny", TrafficConfig(label_noise=0.2)), "train")
    exact = generate_dataset(clean, 3, tmp_path / "clean")
    for plan, summary in zip(clean.days, exact, strict=True):
        assert {k: summary.class_counts[k] for k in ATTACK_NAMES} == plan.attacks
    flipped = generate_dataset(noisy, 3, tmp_path / "noisy")
    planned_attacks = sum(sum(p.attacks.values()) for p in noisy.days)
    kept_attacks = sum(s.rows - s.class_counts["Normal"] for s in flipped)
    assert kept_attacks == pytest.approx(0.8 * planned_attacks, abs=3)


# ---------------------------------------------------------------- mechanics


def test_counters_in_files_equal_their_recomputation(tiny_dir: Path, tiny_days: list[DaySummary]) -> None:
    from tests.test_counters import naive_counters

    for name in ("1216_firewall.csv", "0124_firewall.csv"):
        day = read_day(tiny_dir / name)
        seconds = (pd.to_datetime(day["time"]) - pd.Timestamp(day["time"][0][:10])).dt.total_seconds()
        expected = naive_counters(
            seconds.astype(int).tolist(), day["src"].tolist(), day["dst"].tolist(), day["dpt"].tolist()
        )
        for column in COUNTER_COLUMNS:
            assert day[column].tolist() == expected[column], (name, column)


def test_attacks_follow_their_mechanics(tiny_dir: Path, tiny_days: list[DaySummary]) -> None:
    day = pd.concat([read_day(tiny_dir / name) for name in TRAIN_FILES])
    smurf = day[day["label"] == "DDOS-smurf"]
    assert (smurf["proto"] == 1).all()
    assert smurf["dst"].str.endswith(".255").any(), "no broadcast echo requests"
    sweep = day[(day["label"] == "Probing-IP sweep")]
    biggest = sweep.groupby("src")["dst"].nunique().idxmax()
    last_octets = np.sort(
        sweep[sweep["src"] == biggest]["dst"].str.rsplit(".", n=1).str[1].astype(int).unique()
    )
    assert (np.diff(last_octets) == 1).mean() > 0.9, "an IP sweep walks consecutive hosts"
    ports = day[day["label"] == "Probing-Port sweep"]
    assert ports.groupby(["src", "dst"])["dpt"].nunique().max() >= 10
    assert (ports["out (bytes)"] <= 60).all()
    nmap = day[day["label"] == "Probing-Nmap"]
    assert nmap["proto"].nunique() >= 2


def test_counters_only_look_back_and_only_compare_values() -> None:
    """A row's counters are final once it is written: rows after it, even in the same second,
    never change them. And values are only compared, so renaming hosts and ports changes nothing."""
    rng = np.random.default_rng(5)
    seconds = np.sort(rng.integers(0, 100, 300))
    src, dst, dpt = rng.integers(0, 9, (3, 300))
    cut = next(i for i in range(150, 300) if seconds[i] == seconds[i - 1])  # inside a second
    full = compute_counters(seconds, src, dst, dpt)
    before_cut = compute_counters(seconds[:cut], src[:cut], dst[:cut], dpt[:cut])
    renamed = compute_counters(seconds, 1000 - 7 * src, 13 * dst + 5, 65535 - dpt)
    for name in COUNTER_COLUMNS:
        np.testing.assert_array_equal(before_cut[name], full[name][:cut], err_msg=name)
        np.testing.assert_array_equal(renamed[name], full[name], err_msg=name)


# ---------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_files(
    tmp_path: Path, tiny_dir: Path, tiny_days: list[DaySummary]
) -> None:
    generate_dataset(get_preset("tiny"), TINY_SEED, tmp_path / "again")
    for path in sorted(tiny_dir.rglob("*.csv")):
        assert sha256(path) == sha256(tmp_path / "again" / path.relative_to(tiny_dir)), path.name


def test_another_seed_gives_other_traffic(
    tmp_path: Path, tiny_dir: Path, tiny_days: list[DaySummary]
) -> None:
    generate_dataset(only_days(get_preset("tiny"), "train"), TINY_SEED + 1, tmp_path)
    assert sha256(tmp_path / TRAIN_FILES[0]) != sha256(tiny_dir / TRAIN_FILES[0])


def test_cli_generate_prints_the_per_class_table(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["generate", "--out", str(tmp_path), "--preset", "tiny", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert "Probing-Nmap" in result.output and "1203_firewall.csv" in result.output
    assert len(list(tmp_path.glob("*_firewall.csv"))) == 7
