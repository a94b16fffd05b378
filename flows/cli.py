"""The `nad` command line.

Heavy modules (TensorFlow, Dask, Prefect) are imported inside the commands: Dask's worker
processes start by importing this entry point again, and should not pay for them.
"""

import logging
import os
import re
import sys
import tempfile
import traceback
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, get_args

import typer

from schemas.context import FEATURE_SETS
from schemas.datasets import DATASETS, DatasetSpec, PartitionError, get_dataset
from schemas.firewall import CLASS_NAMES
from schemas.generation import PresetName, TrafficConfig, get_preset
from schemas.runtime import DASK_ADDRESS_ENV, QUIET_LOG_ENV
from schemas.training import PRESET_NAMES
from tasks.errors import InputError, message_about, message_of
from tasks.registry.serving import MAX_REQUEST_ROWS, QUIET_TENSORFLOW
from tasks.scoring.voting import VOTE_RULES

if TYPE_CHECKING:  # the flow itself loads TensorFlow, so the commands import it when they run
    from flows.pipeline import PipelineResult
    from tasks.ingest.report import BackfillRow

# Prefect's 20 s wait for its temporary server is too short on a busy 2-core machine.
QUIET_DEFAULTS = {
    **QUIET_TENSORFLOW,
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}

app = typer.Typer(
    help="nad-fusion: network anomaly detection on firewall logs.",
    no_args_is_help=True,
    add_completion=False,
)


# The choices come from the registries; a member's name is its value with `-` as `_`.
def choices(name: str, values: Iterable[str]) -> type[StrEnum]:
    return StrEnum(name, {value.replace("-", "_"): value for value in values})


PresetChoice = choices("PresetChoice", get_args(PresetName))
TrainPreset = choices("TrainPreset", PRESET_NAMES)
FeatureSet = choices("FeatureSet", FEATURE_SETS)
VoteRule = choices("VoteRule", VOTE_RULES)
DatasetChoice = choices("DatasetChoice", DATASETS)


DatasetOption = Annotated[
    DatasetChoice,
    typer.Option(help="The input format: ZYELL firewall days, or NSL-KDD text files (5-class subset)."),
]


MAX_SECONDS = 86_400  # the longest --vote-window and --gap: one day
MAX_TOP = 1_000_000  # the most incidents --top prints per file
MODEL_URI = re.compile(r"^[a-z][a-z0-9+.-]*:/")  # tasks.scoring.score.is_model_uri, without importing MLflow


def check_option_paths(truth: Path | None = None, model: str | None = None) -> None:
    """Folders named by options exist, checked before any heavy import or work: the truth a
    folder, a model that is not a URI a path (`read_config` checks a --config file)."""
    if truth is not None and not truth.is_dir():
        raise InputError(f"{truth}: {'not a folder' if truth.exists() else 'no such folder'} (--truth)")
    if model and not MODEL_URI.match(model) and not Path(model).exists():
        raise InputError(f"{model}: no such folder, and not a model URI (--model)")


class Session:
    """What the global options set for this run of `nad`."""

    debug = False


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="On an error, print its traceback too (and Prefect's).")
    ] = False,
) -> None:
    """Network anomaly detection by model fusion, on ZYELL-format firewall logs or NSL-KDD."""
    Session.debug = debug
    if not debug:
        quiet_log = Path(tempfile.gettempdir()) / f"nad-fusion-{os.getuid()}.log"
        os.environ.setdefault(QUIET_LOG_ENV, str(quiet_log))


class WithoutTraceback(logging.Formatter):
    """Formats a console log line as `inner` does, but leaves out the traceback: it stays in
    the Prefect logs (the API), and `--debug` shows it."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        bare = {**record.__dict__, "exc_info": None, "exc_text": None, "stack_info": None}
        return self.inner.format(logging.makeLogRecord(bare))


def hide_console_tracebacks() -> None:
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not isinstance(handler.formatter, WithoutTraceback):
            handler.setFormatter(WithoutTraceback(handler.formatter))


def run_flow(flow, /, **parameters):
    """Run a Prefect flow in this process and return its result. A failure raises its root cause;
    the console shows Prefect's tracebacks only with --debug. Parameters go by name only, so that
    reordering a flow's parameters cannot misroute a value."""
    if not Session.debug:
        hide_console_tracebacks()
    return flow(**parameters)


def read_config(path: Path | None, preset: str | None, feature_set: FeatureSet | None, spec: DatasetSpec):
    """The training config, or an error naming the config file; its feature set must be one
    that `spec` declares, so that a wrong one fails before any work."""
    from schemas.training import TrainConfig

    try:
        config = TrainConfig.from_file(path, preset, feature_set.value if feature_set else None)
    except (OSError, ValueError) as error:
        raise InputError(message_about(path or "the training config", error)) from error
    try:
        spec.context_of(config.feature_set)
    except ValueError as error:
        raise InputError(f"feature set {config.feature_set!r}: {error}") from error
    return config


def format_counts_table(rows: list[tuple[str, str, int, dict[str, int]]]) -> str:
    """A per-day, per-class table with a total line."""
    header = ["day", "split", "rows", *CLASS_NAMES]
    body = [
        [day, split, f"{total:,}", *(f"{counts.get(c, 0):,}" for c in CLASS_NAMES)]
        for day, split, total, counts in rows
    ]
    total = ["total", "", f"{sum(r[2] for r in rows):,}"] + [
        f"{sum(r[3].get(c, 0) for r in rows):,}" for c in CLASS_NAMES
    ]
    table = [header, *body, total]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.rjust(w) if i > 1 else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in table
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join(lines)


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Folder for the day CSVs (created if missing).")],
    preset: Annotated[PresetChoice, typer.Option(help="Data set size.")] = PresetChoice.demo,
    seed: Annotated[int, typer.Option(help="Same seed, byte-identical files.")] = 7,
    label_noise: Annotated[float | None, typer.Option(help="Share of attack rows mislabelled.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; write nothing.")] = False,
) -> None:
    """Generate ZYELL-format firewall days: labelled training days, unlabelled test days plus truth."""
    from simulator.generate import generate_dataset  # noqa: TID251 (the one command over the simulator)

    traffic = TrafficConfig() if label_noise is None else TrafficConfig(label_noise=label_noise)
    plan = get_preset(preset.value, traffic)
    if dry_run:
        rows = [
            (day.file_name, day.split, day.rows, {"Normal": day.normal_rows, **day.attacks})
            for day in plan.days
        ]
        typer.echo(f"plan of preset {plan.name} (before label noise of {traffic.label_noise:.1%}):")
        typer.echo(format_counts_table(rows))
        return
    summaries = generate_dataset(plan, seed, out)
    typer.echo(f"wrote {len(summaries)} days of preset {plan.name} (seed {seed}) to {out}/")
    typer.echo(format_counts_table([(s.file, s.split, s.rows, s.class_counts) for s in summaries]))
    typer.echo(f"test-day labels are in {out}/truth/; the manifest is {out}/manifest.json")


StoreOption = Annotated[Path, typer.Option(help="The Parquet store (created if missing).")]
FilledStoreOption = Annotated[Path, typer.Option(help="The Parquet store nad ingest or backfill filled.")]
ReplaceAnywayOption = Annotated[
    bool,
    typer.Option(
        "--replace-anyway",
        help="Replace a stored day even by a version that keeps no row, or under half its rows.",
    ),
]
DaskOption = Annotated[
    str | None,
    typer.Option(
        help=f"tcp://HOST:PORT of an existing Dask cluster (or ${DASK_ADDRESS_ENV}); default: a local one."
    ),
]


@app.command()
def ingest(
    files: Annotated[
        list[Path],
        typer.Argument(help="Data files: ZYELL days named MMDD_firewall.csv, or NSL-KDD .txt files."),
    ],
    store: StoreOption,
    partition: Annotated[
        str | None,
        typer.Option(
            "--partition",
            "--day",
            help="For a single file: its partition (ZYELL: the day, YYYY-MM-DD), if the name lacks it.",
        ),
    ] = None,
    dataset: DatasetOption = DatasetChoice.zyell,
    dask_address: DaskOption = None,
    replace_anyway: ReplaceAnywayOption = False,
    allow_empty: Annotated[
        bool, typer.Option("--allow-empty", help="Store a new day even when it keeps no row.")
    ] = False,
) -> None:
    """Validate data files and write them to the store; bad rows go to quarantine with the reason,
    rows with labels outside the five classes are set aside as out of scope. A new version that
    keeps no row, or under half the stored version's rows, replaces nothing."""
    from tasks.ingest.scan import unreadable_files

    if partition is not None and len(files) > 1:
        raise typer.BadParameter("--partition applies to a single file", param_hint="--partition")
    spec = get_dataset(dataset)
    errors = unreadable_files(files, spec)
    readable = [path for path in files if path not in errors]
    if readable:
        errors |= ingest_readable(readable, store, spec, partition, dask_address, replace_anyway, allow_empty)
    for path in files:
        if path in errors:
            typer.echo(f"error: {errors[path]}", err=True)
    if errors:
        raise typer.Exit(code=1)


def ingest_readable(
    files: list[Path],
    store: Path,
    spec: DatasetSpec,
    partition: str | None,
    dask_address: str | None,
    replace_anyway: bool = False,
    allow_empty: bool = False,
) -> dict[Path, str]:
    """Ingest on a cluster started now, printing each report in order; the errors by file."""
    from tasks.cluster import dask_client
    from tasks.ingest.files import ingest_files
    from tasks.ingest.store import StoreError

    errors = {}
    with dask_client(dask_address) as client:
        try:
            found = ingest_files(
                files, store, client, spec, partition, replace_anyway=replace_anyway, allow_empty=allow_empty
            )
            for outcome in found:
                if outcome.report:
                    typer.echo(outcome.report.summary())
                else:
                    errors[outcome.path] = outcome.error
        except StoreError as error:
            raise typer.BadParameter(str(error), param_hint="--store") from error
    return errors


AllowEmptyOption = Annotated[
    bool,
    typer.Option(
        "--allow-empty",
        help="Succeed without ingesting when no file matches (a quiet day), and store a new day "
        "that keeps no row; else an error.",
    ),
]


@app.command()
def backfill(
    source: Annotated[
        Path, typer.Argument(help="Folder of data files (ZYELL: MMDD_firewall.csv; NSL-KDD: *.txt).")
    ],
    store: StoreOption,
    since: Annotated[str | None, typer.Option(help="ZYELL: first day, MMDD.")] = None,
    until: Annotated[
        str | None, typer.Option(help="ZYELL: last day, MMDD (before --since: wraps the year).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Re-ingest files that are unchanged.")] = False,
    dataset: DatasetOption = DatasetChoice.zyell,
    dask_address: DaskOption = None,
    allow_empty: AllowEmptyOption = False,
    replace_anyway: ReplaceAnywayOption = False,
) -> None:
    """Prefect flow: ingest every new or changed file of SOURCE_DIR, concurrently."""
    from flows.backfill import BackfillFailed, backfill_flow

    try:
        rows = run_flow(
            backfill_flow, source=source, store=store, since=since, until=until, force=force,
            dask_address=dask_address, dataset=dataset.value, allow_empty=allow_empty,
            replace_anyway=replace_anyway,
        )  # fmt: skip
    except BackfillFailed as failed:
        echo_backfill_rows([row for row in failed.rows if not row.failed])
        raise
    echo_backfill_rows(rows)
    if not rows:
        typer.echo(f"no files to ingest in {source} (allowed by --allow-empty)")


def echo_backfill_rows(rows: list["BackfillRow"]) -> None:
    for row in rows:
        typer.echo(
            f"{row.file}: {row.partition} rows={row.rows:,} kept={row.kept:,} "
            f"quarantined={row.quarantined:,} out_of_scope={row.out_of_scope:,} {row.status}"
        )


def parse_partitions(text: str | None, spec: DatasetSpec) -> list[str] | None:
    """`2020-12-03,2020-12-04` (ZYELL days) or `KDDTrain+` (NSL-KDD file stems) as store folders."""
    if not text:
        return None
    try:
        return [spec.partition_folder(spec.normalise_partition(part.strip())) for part in text.split(",")]
    except PartitionError as error:
        raise typer.BadParameter(str(error), param_hint="--partitions") from error


PresetOption = Annotated[
    TrainPreset | None,
    typer.Option(help="default (trains well at every scale) or paper (the paper's schedule)."),
]


FeatureSetOption = Annotated[
    FeatureSet | None,
    typer.Option(
        help="paper (the paper's 17 features) or context (and traffic context; ZYELL only). "
        "Default: the preset's (default: context where the dataset declares it; paper: paper)."
    ),
]


@app.command()
def train(
    store: FilledStoreOption,
    partitions: Annotated[
        str | None,
        typer.Option(
            "--partitions",
            "--days",
            help="Comma-separated: ZYELL days YYYY-MM-DD or NSL-KDD file stems (default: all labelled).",
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="A JSON object of TrainConfig fields to override on the preset.")
    ] = None,
    preset: PresetOption = None,
    feature_set: FeatureSetOption = None,
    out: Annotated[Path, typer.Option(help="Where splits, preprocessing and runs go.")] = Path("artifacts"),
    dataset: DatasetOption = DatasetChoice.zyell,
    dask_address: DaskOption = None,
) -> None:
    """Prefect flow: split, preprocess, train the three nets side by side, save both predictors."""
    from tasks.ingest.store import StoreError, check_store

    spec = get_dataset(dataset)
    try:
        check_store(store, spec.name)
    except StoreError as error:
        raise typer.BadParameter(str(error), param_hint="--dataset") from error
    parts = parse_partitions(partitions, spec)
    settings = read_config(config, preset, feature_set, spec)  # before TensorFlow is imported
    if not store.is_dir():
        raise InputError(f"{store}: no such folder (--store); nad ingest or nad backfill fills a store")
    from flows.train import train_flow
    from tasks.registry.tracking import training_report

    summary = run_flow(
        train_flow, store=store, partitions=parts, config=settings, out=out, dask_address=dask_address,
        dataset=spec.name,
    )  # fmt: skip
    typer.echo(training_report(summary))


@app.command()
def score(
    files: Annotated[list[Path], typer.Argument(help="Data files to score, labelled or not.")],
    out: Annotated[Path, typer.Option(help="Folder for predictions, quarantine and summaries.")] = Path(
        "scores"
    ),
    model: Annotated[
        str | None,
        typer.Option(
            help="A predictor folder, a run folder, the --out folder of nad train, or an MLflow model "
            "URI (default: the dataset's champion)."
        ),
    ] = None,
    truth: Annotated[
        Path | None, typer.Option(help="Folder of truth files with the same names (else: a label column).")
    ] = None,
    dataset: DatasetOption = DatasetChoice.zyell,
    vote_window: Annotated[
        int,
        typer.Option(
            help="Voting by source: a source's flagged rows in each clock window of this many "
            "seconds take one class (0: no vote; at most a day).",
            min=0,
            max=MAX_SECONDS,
        ),
    ] = 0,
    vote_rule: Annotated[
        VoteRule, typer.Option(help="majority: most rows; probability: largest summed attack probability.")
    ] = VoteRule.majority,
    dask_address: Annotated[
        str | None,
        typer.Option(
            help="tcp://HOST:PORT of an existing Dask cluster whose workers score the blocks "
            "(they must reach the files and the model); default: this process."
        ),
    ] = None,
) -> None:
    """Prefect flow (as the score-day deployment): validate and score each file block by block;
    with labels, also the metrics, logged to MLflow. A file that fails gets an error line."""
    check_option_paths(truth=truth, model=model)
    from flows.score import ScoreFailed, score_days

    check_vote_option(vote_window, dataset)  # refused before the flow starts
    try:
        outcomes = run_flow(
            score_days, files=files, model=model, out=out, truth=truth, dataset=dataset.value,
            vote_seconds=vote_window, vote_rule=vote_rule.value, dask_address=dask_address,
        )  # fmt: skip
    except ScoreFailed as failed:
        outcomes = failed.outcomes
    echo_score_outcomes(outcomes)


def check_vote_option(vote_window: int, dataset: str) -> None:
    """A vote window needs a dataset whose rows have a source and a time."""
    from tasks.scoring.voting import check_votable

    if vote_window:
        check_votable(get_dataset(dataset))


def echo_score_outcomes(outcomes) -> None:
    """One line per scored file, an error line per failed one; exit 1 when any failed."""
    for outcome in outcomes:
        if outcome.error:
            typer.echo(f"error: {outcome.error}", err=True)
        else:
            typer.echo(score_lines(outcome))
    if any(outcome.error for outcome in outcomes):
        raise typer.Exit(code=1)


def score_lines(outcome) -> str:
    """A scored file's counts, and its metrics with their MLflow run when its labels were known."""
    from tasks.scoring.incidents import detection_line

    report = outcome.report
    predicted = ", ".join(f"{k} {v:,}" for k, v in report.predicted.items() if v)
    lines = [
        f"{Path(report.file).name}: read {report.rows_read:,} = kept {report.rows_kept:,} + quarantined "
        f"{report.rows_quarantined:,} + out of scope {report.rows_out_of_scope:,}; "
        f"predicted {predicted}; {report.rows_per_second:,.0f} rows/s"
    ]
    if report.vote:
        vote = report.vote
        lines.append(
            f"  voted by source in {vote.window_seconds} s windows ({vote.rule}): "
            f"{report.rows_revoted:,} flagged rows changed class"
        )
    if report.rows_outside_envelope:
        lines.append(
            f"  {report.rows_outside_envelope:,} flagged rows lie outside the train range of the attack "
            "class they were given: Normal (the known-attack envelope)"
        )
    if report.metrics:
        figures = headline_text(report.metrics)
        lines.append(f"  {figures}  (MLflow run {outcome.mlflow_run})")
    if report.incidents is not None:
        lines.append(f"  {report.incidents:,} incidents (nad incidents {Path(report.predictions).parent})")
    if report.incident_detection:
        lines.append(f"  {detection_line(report.incident_detection)}")
    return "\n".join(lines)


def headline_text(evaluation) -> str:
    """`precision 0.9330  ...  cost 32  criterion 0.8869`: the headline metrics, the cost as a count."""
    return "  ".join(
        f"{name} {value:,.0f}" if name == "cost" else f"{name} {value:.4f}"
        for name, value in evaluation.headline().items()
    )


@app.command()
def evaluate(
    predictions: Annotated[Path, typer.Argument(help="A folder of *.predictions.parquet from nad score.")],
    truth: Annotated[Path, typer.Option(help="Folder of truth files named like the scored files.")],
    dataset: DatasetOption = DatasetChoice.zyell,
) -> None:
    """Score existing predictions against truth files: per file, and over all files."""
    check_option_paths(truth=truth)
    from tasks.scoring.predictions import evaluate_prediction_folder

    try:
        per_file, overall = evaluate_prediction_folder(predictions, truth, get_dataset(dataset))
    except FileNotFoundError as error:
        raise typer.BadParameter(str(error), param_hint="PREDICTIONS") from error
    for name, figures in [*per_file.items(), ("all files", overall)]:
        typer.echo(f"{name}: {headline_text(figures)}")


@app.command()
def pipeline(
    source: Annotated[Path, typer.Option(help="Folder of data files (ZYELL: MMDD_firewall.csv).")],
    store: StoreOption,
    last_days: Annotated[
        int | None, typer.Option(help="Train on the K last labelled partitions (ZYELL: most recent days).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Where splits, runs and scores go.")] = Path("artifacts"),
    config: Annotated[
        Path | None, typer.Option(help="A JSON object of TrainConfig fields to override on the preset.")
    ] = None,
    preset: PresetOption = None,
    feature_set: FeatureSetOption = None,
    score: Annotated[
        bool, typer.Option("--score", help="Score SOURCE's unlabelled days with the champion.")
    ] = False,
    truth: Annotated[Path | None, typer.Option(help="Truth files for the scored files.")] = None,
    dataset: DatasetOption = DatasetChoice.zyell,
    dask_address: DaskOption = None,
    allow_empty: AllowEmptyOption = False,
    train_anyway: Annotated[
        bool,
        typer.Option(
            "--train-anyway",
            help="Train and register even after a failed or empty backfill, on the store as it is.",
        ),
    ] = False,
) -> None:
    """Prefect flow: backfill, train, evaluate, register through the gate, and optionally score."""
    # a bad config or truth folder is refused before the backfill starts, and TensorFlow loads
    check_option_paths(truth=truth)
    read_config(config, preset, feature_set, get_dataset(dataset))
    from flows.pipeline import pipeline_flow

    result = run_flow(
        pipeline_flow, source=source, store=store, last_days=last_days, out=out, config_file=config,
        score=score, truth=truth, dask_address=dask_address, dataset=dataset.value, preset=preset,
        allow_empty=allow_empty, train_anyway=train_anyway,
        feature_set=feature_set.value if feature_set else None,
    )  # fmt: skip
    echo_pipeline_result(result, source)


def echo_pipeline_result(result: "PipelineResult", source: Path) -> None:
    """What the pipeline trained, registered and scored, or why it trained nothing."""
    from tasks.registry.tracking import comparison_table

    training = result.training
    if training is None:
        typer.echo(f"no new files in {source}: nothing trained (--train-anyway trains on the store as it is)")
        return
    typer.echo(comparison_table(training.evaluations))
    tracking = training.tracking
    typer.echo(
        f"model version {tracking.version} (preset {training.config.preset}): {tracking.gate.decision}; "
        f"MLflow run {tracking.run_id}"
    )
    for report in (outcome.report for outcome in result.scores):
        criterion = f"criterion {report.metrics.criterion:.4f}" if report.metrics else "no labels"
        typer.echo(f"scored {Path(report.file).name}: {report.rows_read:,} rows, {criterion}")


@app.command()
def drift(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Days to check: data files (checked with --model), or drift reports of nad score "
            "(STEM.drift.json, or a --out folder of nad score)."
        ),
    ] = None,
    store: Annotated[Path | None, typer.Option(help="Check the days of this store instead.")] = None,
    days: Annotated[
        str | None, typer.Option(help="With --store: comma-separated days YYYY-MM-DD (default: all).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="The model whose training period is the reference (default: the champion)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for the reports and the heatmap.")] = Path("drift"),
    dataset: DatasetOption = DatasetChoice.zyell,
) -> None:
    """Drift of each day against the model's training period: PSI per model input, the predicted
    class mix against the training mix; writes STEM.drift.json and drift-heatmap.png to --out."""
    if bool(paths) == (store is not None):
        raise typer.BadParameter("give days to check (files or reports) or --store, one of the two")
    if days and store is None:
        raise typer.BadParameter("--days applies to --store", param_hint="--days")
    check_option_paths(model=model)
    from tasks.monitoring.drift_days import drift_reports
    from tasks.monitoring.drift_publish import HEATMAP_NAME, write_heatmap

    spec = get_dataset(dataset)
    reports = drift_reports(paths or [], store, parse_partitions(days, spec), model, spec, out)
    for report in reports:
        typer.echo(drift_line(report))
    out.mkdir(parents=True, exist_ok=True)
    typer.echo(f"heatmap: {write_heatmap(reports, out / HEATMAP_NAME)}")


def drift_line(report) -> str:
    """A day's verdict, its top inputs and its class mix against the training mix."""
    top = ", ".join(f"{name} {report.psi[name]:.2f}" for name in report.top)
    attack, trained = 1 - report.predicted_mix["Normal"], 1 - report.training_mix["Normal"]
    return (
        f"{Path(report.file).name}: {'DRIFT' if report.drifted else 'ok'}: {len(report.flagged)} of "
        f"{len(report.psi)} inputs over PSI {report.threshold:g} (drift above {report.day_share:.0%}); "
        f"top {top}; class mix PSI {report.class_mix_psi:.3f} (attacks {attack:.2%} against {trained:.2%})"
    )


def report_error(error: Exception) -> int:
    """Print `error` as one `error:` line (after its traceback with --debug); return the exit code.

    Command-line errors are click's (vendored by typer), told by their `format_message`.
    """
    if Session.debug:
        traceback.print_exception(error)
    if type(error).__name__ == "NoArgsIsHelpError":  # `nad` alone: the help, printed already
        return error.exit_code
    if hasattr(error, "format_message"):
        context = getattr(error, "ctx", None)
        hint = f" (see '{context.command_path} --help')" if context is not None else ""
        typer.echo(f"error: {error.format_message()}{hint}", err=True)
        return error.exit_code
    typer.echo(f"error: {message_of(error)}", err=True)
    return 1


@app.command()
def incidents(
    predictions: Annotated[Path, typer.Argument(help="A folder of *.predictions.parquet from nad score.")],
    gap: Annotated[
        float,
        typer.Option(
            min=0,
            max=MAX_SECONDS,
            help="Seconds of silence that end an incident (at most a day).",
        ),
    ] = 60,
    top: Annotated[
        int, typer.Option(min=1, max=MAX_TOP, help="Incidents shown per file, the largest by rows.")
    ] = 20,
    truth: Annotated[
        Path | None, typer.Option(help="Truth files named like the scored files: incident-level detection.")
    ] = None,
) -> None:
    """Incidents: a source's flagged rows of one class, each within GAP seconds of the last; written
    beside the predictions as STEM.incidents.parquet, the largest printed."""
    check_option_paths(truth=truth)
    from tasks.scoring.incidents import FileFailure, detection_line, folder_incidents, format_incidents

    results = folder_incidents(predictions, gap, truth)
    for result in results:
        if isinstance(result, FileFailure):
            typer.echo(f"error: {result.error}", err=True)
            continue
        typer.echo(f"{result.predictions.name}: {len(result.incidents):,} incidents -> {result.path.name}")
        if len(result.incidents):
            typer.echo(format_incidents(result.incidents, top))
        if result.detection:
            typer.echo(detection_line(result.detection))
    if any(isinstance(result, FileFailure) for result in results):
        raise typer.Exit(1)


@app.command()
def serve(
    model: Annotated[
        str | None,
        typer.Option(help="An MLflow model URI or a model folder, as for score (default: the champion)."),
    ] = None,
    port: Annotated[int, typer.Option(help="The port; every worker listens on it.", min=1, max=65535)] = 5000,
    workers: Annotated[int, typer.Option(help="Worker processes: one per core.", min=1, max=64)] = (
        os.cpu_count() or 1
    ),
    host: Annotated[str, typer.Option(help="The address to listen on; 0.0.0.0 opens it to the network.")] = (
        "127.0.0.1"
    ),
    max_rows: Annotated[int, typer.Option(help="Rows of one request; more is answered 400.", min=1)] = (
        MAX_REQUEST_ROWS
    ),
    queue_limit: Annotated[
        int, typer.Option(help="Requests queued per worker; past it, 503 at once.", min=1)
    ] = 512,
    dataset: DatasetOption = DatasetChoice.zyell,
) -> None:
    """Serve a model over HTTP, fast: MLflow's /invocations protocol (dataframe_split in,
    {"predictions": [...]} out) and /ping, the row contract on every request (400 naming row,
    column and why), batched scoring, one single-worker process per core (docs/serving.md)."""
    check_option_paths(model=model)
    from tasks.registry.champion import champion_uri, check_model_dataset, predictor_folder
    from tasks.registry.serving import start_workers, stop_workers

    name = model or champion_uri(get_dataset(dataset))
    folder = predictor_folder(name)
    check_model_dataset(folder, get_dataset(dataset), name)
    processes = start_workers(folder, host, port, workers, max_rows, queue_limit)
    typer.echo(f"serving {name} on http://{host}:{port}/invocations with {workers} worker(s); Ctrl-C stops")
    try:
        for process in processes:
            process.wait()
    finally:
        stop_workers(processes)


def main() -> None:
    from flows.runtime import stop_cleanly

    stop_cleanly()  # SIGINT and SIGTERM end any command within seconds; no server outlives nad
    for name, value in QUIET_DEFAULTS.items():
        os.environ.setdefault(name, value)
    try:
        code = app(standalone_mode=False)
    except Exception as error:  # whatever fails, the user reads one line
        code = report_error(error)
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
