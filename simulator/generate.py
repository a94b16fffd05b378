"""Generate ZYELL-format firewall days: simulate, count, label and write CSVs atomically."""

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from schemas.firewall import APP_VOCABULARY, ATTACK_NAMES, CLASS_NAMES, COLUMNS, LABEL_COLUMN, TIME_FORMAT
from schemas.generation import DayPlan, Preset
from simulator.counters import compute_counters
from simulator.traffic import (
    ATTACK_GENERATORS,
    Network,
    Rows,
    apply_label_noise,
    attack_context,
    build_network,
    concat_rows,
    connectivity_checks,
    day_app_mix,
    monitoring_rounds,
    multiport_sessions,
    normal_sessions,
)

WRITE_CHUNK_ROWS = 1_000_000
TRUTH_DIR = "truth"
MANIFEST = "manifest.json"
CSV_OPTIONS = pacsv.WriteOptions(include_header=False, quoting_style="none")
APP_MIX_SPREAD = {"train": 0.15, "test": 0.35}


@dataclass(frozen=True)
class DaySummary:
    """What was written for one day."""

    file: str
    split: str
    rows: int
    class_counts: dict[str, int]


def day_rng(seed: int, plan: DayPlan) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, 1, int(f"{plan.date:%Y%m%d}")]))


def network_for(seed: int, preset: Preset) -> Network:
    """The same site for every day of a data set, so hosts keep their roles across days."""
    return build_network(np.random.default_rng(np.random.SeedSequence([seed, 0])), preset.network_scale)


def simulate_day(plan: DayPlan, preset: Preset, net: Network, seed: int) -> Rows:
    """All rows of one day in time order, labels with noise applied."""
    rng = day_rng(seed, plan)
    cfg, span = preset.traffic, preset.span_seconds
    n_monitoring = round(plan.normal_rows * cfg.monitoring_share)
    n_multiport = round(plan.normal_rows * cfg.multiport_share)
    n_checks = round(plan.normal_rows * cfg.checks_share)
    n_sessions = plan.normal_rows - n_monitoring - n_multiport - n_checks
    slow_share = cfg.slow_attack_share if plan.split == "train" else cfg.test_slow_attack_share
    ctx = attack_context(rng, net, plan.split, slow_share)
    mix = day_app_mix(rng, APP_MIX_SPREAD[plan.split])
    batches = [
        normal_sessions(rng, net, n_sessions, span, mix, cfg.failed_session_share),
        monitoring_rounds(rng, net, n_monitoring, span),
        multiport_sessions(rng, net, n_multiport, span),
        connectivity_checks(rng, net, n_checks, span),
    ]
    for name in ATTACK_NAMES:
        batches.append(ATTACK_GENERATORS[name](rng, net, ctx, plan.attacks.get(name, 0), span))
    rows = concat_rows(batches)
    order = np.argsort(rows["t"], kind="stable")
    rows = {field: column[order] for field, column in rows.items()}
    rows["label"] = apply_label_noise(rng, rows["label"], cfg.label_noise)
    return rows


def format_ips(addresses: np.ndarray) -> pa.Array:
    """Dotted-quad strings; each distinct address is formatted once."""
    unique, inverse = np.unique(addresses, return_inverse=True)
    text = pa.array([f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}" for a in unique.tolist()])
    return text.take(pa.array(inverse))


def time_strings(plan: DayPlan, span: int) -> pa.Array:
    start = datetime.combine(plan.date, time())
    return pa.array([(start + timedelta(seconds=s)).strftime(TIME_FORMAT) for s in range(span)])


def table_chunks(rows: Rows, plan: DayPlan, span: int, labelled: bool) -> Iterator[pa.Table]:
    """The day as Arrow tables of at most WRITE_CHUNK_ROWS rows, in the file's column order."""
    seconds = rows["t"].astype(np.int64)
    counters = compute_counters(seconds, rows["src"], rows["dst"], rows["dpt"])
    clock, apps, classes = time_strings(plan, span), pa.array(APP_VOCABULARY), pa.array(CLASS_NAMES)
    names = COLUMNS if labelled else COLUMNS[:-1]
    for lo in range(0, len(seconds), WRITE_CHUNK_ROWS):
        part = slice(lo, lo + WRITE_CHUNK_ROWS)
        columns = {
            "time": clock.take(pa.array(seconds[part])),
            "src": format_ips(rows["src"][part]),
            "dst": format_ips(rows["dst"][part]),
            "spt": rows["spt"][part],
            "dpt": rows["dpt"][part],
            "duration": rows["duration"][part],
            "out (bytes)": rows["out"][part],
            "in (bytes)": rows["in"][part],
            "proto": rows["proto"][part],
            "app": apps.take(pa.array(rows["app"][part])),
            **{name: counts[part] for name, counts in counters.items()},
            LABEL_COLUMN: classes.take(pa.array(rows["label"][part])),
        }
        yield pa.table({name: columns[name] for name in names})


def write_csv_atomically(path: Path, tables: Iterator[pa.Table]) -> None:
    """Write to a temporary name beside `path`, then rename: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    first = next(tables)
    with open(tmp, "wb") as sink:
        # Arrow quotes header names; the originals are bare.
        sink.write((",".join(first.column_names) + "\n").encode())
        with pacsv.CSVWriter(sink, first.schema, write_options=CSV_OPTIONS) as writer:
            writer.write_table(first)
            for table in tables:
                writer.write_table(table)
    os.replace(tmp, path)


def class_counts(labels: np.ndarray) -> dict[str, int]:
    counts = np.bincount(labels, minlength=len(CLASS_NAMES))
    return {name: int(count) for name, count in zip(CLASS_NAMES, counts, strict=True)}


def write_day(plan: DayPlan, preset: Preset, net: Network, seed: int, out_dir: Path) -> DaySummary:
    """Simulate one day and write it; test days go without labels, with a truth file beside."""
    rows = simulate_day(plan, preset, net, seed)
    labelled = plan.split == "train"
    write_csv_atomically(out_dir / plan.file_name, table_chunks(rows, plan, preset.span_seconds, labelled))
    if not labelled:
        truth = pa.table({LABEL_COLUMN: pa.array(CLASS_NAMES).take(pa.array(rows["label"]))})
        (out_dir / TRUTH_DIR).mkdir(exist_ok=True)
        write_csv_atomically(out_dir / TRUTH_DIR / plan.file_name, iter([truth]))
    return DaySummary(plan.file_name, plan.split, len(rows["label"]), class_counts(rows["label"]))


def generate_dataset(preset: Preset, seed: int, out_dir: Path) -> list[DaySummary]:
    """Write every day of `preset` into `out_dir`, one at a time, plus a manifest."""
    out_dir.mkdir(parents=True, exist_ok=True)
    net = network_for(seed, preset)
    summaries = [write_day(plan, preset, net, seed, out_dir) for plan in preset.days]
    manifest = {
        "preset": preset.name,
        "seed": seed,
        "traffic": preset.traffic.model_dump(),
        "days": [summary.__dict__ for summary in summaries],
    }
    tmp = out_dir / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, out_dir / MANIFEST)
    return summaries


SHIFTED_DATE = "2021-01-27"  # the day after the last test day
SHIFTED_ATTACK_SHARES = {
    "Probing-IP sweep": 0.25,
    "Probing-Port sweep": 0.15,
    "DDOS-smurf": 0.02,
    "Probing-Nmap": 0.01,
}
SHIFTED_TRAFFIC = {"failed_session_share": 0.3, "monitoring_share": 0.08, "multiport_share": 0.05}


def write_shifted_day(preset: Preset, seed: int, out_dir: Path) -> DaySummary:
    """A test day unlike the training period, for drift demos: on the site of `preset` and
    `seed`, as large as its last test day, but with ten times the attack rows and another mix
    of normal traffic (more failed sessions, monitoring and multi-port sessions)."""
    last = preset.days[-1]
    attacks = {name: round(last.rows * share) for name, share in SHIFTED_ATTACK_SHARES.items()}
    plan = DayPlan(date=SHIFTED_DATE, split="test", rows=last.rows, attacks=attacks)
    shifted = preset.model_copy(update={"traffic": preset.traffic.model_copy(update=SHIFTED_TRAFFIC)})
    return write_day(plan, shifted, network_for(seed, preset), seed, out_dir)
