"""The `nad` command line.

Heavy modules (TensorFlow, Dask, Prefect) are imported inside the commands: Dask's worker
processes start by importing this entry point again, and should not pay for them.
"""

import os
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from schemas.firewall import CLASS_NAMES
from schemas.generation import TrafficConfig, get_preset
from schemas.runtime import DASK_ADDRESS_ENV

QUIET_DEFAULTS = {"TF_CPP_MIN_LOG_LEVEL": "2", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}

app = typer.Typer(
    help="nad-fusion: network anomaly detection on firewall logs.",
    no_args_is_help=True,
    add_completion=False,
)


class PresetChoice(StrEnum):
    tiny = "tiny"
    demo = "demo"
    full = "full"


@app.callback()
def _root() -> None:
    """Network anomaly detection by model fusion, on ZYELL-format firewall logs."""


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
    from tasks.generate import generate_dataset

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
DaskOption = Annotated[
    str | None,
    typer.Option(
        help=f"tcp://HOST:PORT of an existing Dask cluster (or ${DASK_ADDRESS_ENV}); default: a local one."
    ),
]


@app.command()
def ingest(
    files: Annotated[list[Path], typer.Argument(help="Day files, named MMDD_firewall.csv.")],
    store: StoreOption,
    day: Annotated[
        str | None, typer.Option(help="YYYY-MM-DD, for a single file whose name does not tell it.")
    ] = None,
    dask_address: DaskOption = None,
) -> None:
    """Validate day files and write them to the store; bad rows go to quarantine with the reason."""
    from tasks.cluster import dask_client
    from tasks.ingest import ingest_files

    if day is not None and len(files) > 1:
        raise typer.BadParameter("--day applies to a single file", param_hint="--day")
    the_day = date.fromisoformat(day) if day else None
    failures = 0
    with dask_client(dask_address) as client:
        for outcome in ingest_files(files, store, client, day=the_day):
            if outcome.report:
                typer.echo(outcome.report.summary())
            else:
                failures += 1
                typer.echo(f"error: {outcome.error}", err=True)
    if failures:
        raise typer.Exit(code=1)


@app.command()
def backfill(
    source: Annotated[Path, typer.Argument(help="Folder of MMDD_firewall.csv day files.")],
    store: StoreOption,
    since: Annotated[str | None, typer.Option(help="First day, MMDD.")] = None,
    until: Annotated[
        str | None, typer.Option(help="Last day, MMDD (before --since: wraps the year).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Re-ingest days whose file is unchanged.")] = False,
    dask_address: DaskOption = None,
) -> None:
    """Prefect flow: ingest every new or changed day of SOURCE_DIR, concurrently."""
    from flows.backfill import backfill as backfill_flow

    state = backfill_flow(source, store, since, until, force, dask_address, return_state=True)
    rows = state.result(raise_on_failure=False)
    if state.is_failed():
        typer.echo(f"backfill failed: {rows}", err=True)
        raise typer.Exit(code=1)
    for row in rows:
        typer.echo(
            f"{row['file']}: day={row['day']} rows={row['rows']:,} kept={row['kept']:,} "
            f"quarantined={row['quarantined']:,} {row['status']}"
        )


def parse_days(text: str | None) -> list[date] | None:
    if not text:
        return None
    try:
        return [date.fromisoformat(part.strip()) for part in text.split(",")]
    except ValueError as error:
        raise typer.BadParameter(
            f"{text!r}: give days as YYYY-MM-DD[,YYYY-MM-DD...]", param_hint="--days"
        ) from error


@app.command()
def train(
    store: StoreOption,
    days: Annotated[str | None, typer.Option(help="YYYY-MM-DD,... (default: every labelled day).")] = None,
    config: Annotated[
        Path | None, typer.Option(help="A TrainConfig JSON file (default: the paper's).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Where splits, preprocessing and runs go.")] = Path("artifacts"),
    dask_address: DaskOption = None,
) -> None:
    """Prefect flow: split, preprocess, train the three nets side by side, save both predictors."""
    from flows.train import train as train_flow
    from schemas.training import TrainConfig

    summary = train_flow(store, parse_days(days), TrainConfig.from_file(config), out, dask_address)
    typer.echo(f"run folder: {summary['run_dir']}")
    for name, net in summary["nets"].items():
        typer.echo(f"  {name:8s} {net['epochs_run']:4d} epochs  {net['seconds']:8.1f} s  ({net['path']})")
    for name, folder in summary["predictors"].items():
        typer.echo(f"  predictor {name}: {folder}")
    from tasks.tracking import comparison_table

    typer.echo(
        "\nfusion vs baseline on the held-out split rows:\n" + comparison_table(summary["evaluations"])
    )
    tracking = summary["tracking"]
    typer.echo(
        f"\nMLflow run {tracking['run_id']} ({tracking['tracking_uri']}); model {tracking['version']} "
        f"{tracking['gate.decision']}: validation criterion {tracking['gate.new_criterion']:.4f} "
        f"vs champion {tracking['gate.champion_criterion']}"
    )


@app.command()
def score(
    files: Annotated[list[Path], typer.Argument(help="Day files to score, MMDD_firewall.csv.")],
    out: Annotated[Path, typer.Option(help="Folder for predictions, quarantine and summaries.")],
    model: Annotated[
        str, typer.Option(help="A predictor folder or an MLflow model URI.")
    ] = "models:/nad-fusion@champion",
    truth: Annotated[
        Path | None, typer.Option(help="Folder of truth files with the same names (else: a label column).")
    ] = None,
) -> None:
    """Validate and score day files chunk by chunk; with labels, also compute and log the metrics."""
    from tasks.score import resolve_predictor, score_file
    from tasks.tracking import HEADLINE, log_evaluation_run

    predictor = resolve_predictor(model)
    for path in files:
        truth_file = truth / path.name if truth and (truth / path.name).exists() else None
        report = score_file(path, predictor, out, truth_file, model)
        predicted = ", ".join(f"{k} {v:,}" for k, v in report.predicted.items() if v)
        typer.echo(
            f"{path.name}: read {report.rows_read:,} = kept {report.rows_kept:,} + quarantined "
            f"{report.rows_quarantined:,}; predicted {predicted}; {report.rows_per_second:,.0f} rows/s"
        )
        if report.metrics:
            figures = {f"score.{predictor.kind}.{k}": report.metrics[k] for k in HEADLINE}
            run_id = log_evaluation_run(f"score-{path.stem}", {"file": str(path), "model": model}, figures)
            typer.echo(
                "  "
                + "  ".join(f"{k} {report.metrics[k]:.4f}" for k in HEADLINE)
                + f"  (MLflow run {run_id})"
            )


@app.command()
def evaluate(
    predictions: Annotated[Path, typer.Argument(help="A folder of *.predictions.parquet from nad score.")],
    truth: Annotated[Path, typer.Option(help="Folder of truth files (MMDD_firewall.csv).")],
) -> None:
    """Score existing predictions against truth files: per day, and over all days."""
    from tasks.score import evaluate_prediction_folder

    try:
        per_file, overall = evaluate_prediction_folder(predictions, truth)
    except FileNotFoundError as error:
        raise typer.BadParameter(str(error), param_hint="PREDICTIONS") from error
    keys = ("precision", "recall", "f1", "fbeta", "far", "criterion")
    for name, figures in [*per_file.items(), ("all days", overall)]:
        typer.echo(f"{name}: " + "  ".join(f"{k} {figures[k]:.4f}" for k in keys))


@app.command()
def pipeline(
    source: Annotated[Path, typer.Option(help="Folder of MMDD_firewall.csv day files.")],
    store: StoreOption,
    last_days: Annotated[int | None, typer.Option(help="Train on the K most recent labelled days.")] = None,
    out: Annotated[Path, typer.Option(help="Where splits, runs and scores go.")] = Path("artifacts"),
    config: Annotated[Path | None, typer.Option(help="A TrainConfig JSON file.")] = None,
    score: Annotated[
        bool, typer.Option("--score", help="Score SOURCE's unlabelled days with the champion.")
    ] = False,
    truth: Annotated[Path | None, typer.Option(help="Truth files for the scored days.")] = None,
    dask_address: DaskOption = None,
) -> None:
    """Prefect flow: backfill, train, evaluate, register through the gate, and optionally score."""
    from flows.pipeline import pipeline as pipeline_flow
    from tasks.tracking import comparison_table

    result = pipeline_flow(source, store, last_days, out, config, score, truth, dask_address)
    training = result["training"]
    typer.echo(comparison_table(training["evaluations"]))
    tracking = training["tracking"]
    typer.echo(
        f"model version {tracking['version']}: {tracking['gate.decision']}; MLflow run {tracking['run_id']}"
    )
    for report in result["scores"]:
        criterion = f"criterion {report['metrics']['criterion']:.4f}" if report["metrics"] else "no labels"
        typer.echo(f"scored {Path(report['file']).name}: {report['rows_read']:,} rows, {criterion}")


def main() -> None:
    for name, value in QUIET_DEFAULTS.items():
        os.environ.setdefault(name, value)
    app()


if __name__ == "__main__":
    main()
