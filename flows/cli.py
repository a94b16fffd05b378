"""The `nad` command line.

Heavy modules (TensorFlow, Dask, Prefect) are imported inside the commands: Dask's worker
processes start by importing this entry point again, and should not pay for them.
"""

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from schemas.datasets import DatasetSpec, PartitionError, get_dataset
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


class DatasetChoice(StrEnum):
    zyell = "zyell"
    nsl_kdd = "nsl-kdd"


DatasetOption = Annotated[
    DatasetChoice,
    typer.Option(help="The input format: ZYELL firewall days, or NSL-KDD text files (5-class subset)."),
]


@app.callback()
def _root() -> None:
    """Network anomaly detection by model fusion, on ZYELL-format firewall logs or NSL-KDD."""


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
) -> None:
    """Validate data files and write them to the store; bad rows go to quarantine with the reason,
    rows with labels outside the five classes are set aside as out of scope."""
    from tasks.cluster import dask_client
    from tasks.ingest import ingest_files
    from tasks.store import StoreError

    if partition is not None and len(files) > 1:
        raise typer.BadParameter("--partition applies to a single file", param_hint="--partition")
    failures = 0
    with dask_client(dask_address) as client:
        try:
            outcomes = list(ingest_files(files, store, client, get_dataset(dataset), partition))
        except StoreError as error:
            raise typer.BadParameter(str(error), param_hint="--store") from error
        for outcome in outcomes:
            if outcome.report:
                typer.echo(outcome.report.summary())
            else:
                failures += 1
                typer.echo(f"error: {outcome.error}", err=True)
    if failures:
        raise typer.Exit(code=1)


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
) -> None:
    """Prefect flow: ingest every new or changed file of SOURCE_DIR, concurrently."""
    from flows.backfill import backfill as backfill_flow

    state = backfill_flow(source, store, since, until, force, dask_address, dataset.value, return_state=True)
    rows = state.result(raise_on_failure=False)
    if state.is_failed():
        typer.echo(f"backfill failed: {rows}", err=True)
        raise typer.Exit(code=1)
    for row in rows:
        typer.echo(
            f"{row['file']}: {row['partition']} rows={row['rows']:,} kept={row['kept']:,} "
            f"quarantined={row['quarantined']:,} out_of_scope={row['out_of_scope']:,} {row['status']}"
        )


def parse_partitions(text: str | None, spec: DatasetSpec) -> list[str] | None:
    """`2020-12-03,2020-12-04` (ZYELL days) or `KDDTrain+` (NSL-KDD file stems) as store folders."""
    if not text:
        return None
    try:
        return [spec.partition_folder(spec.normalise_partition(part.strip())) for part in text.split(",")]
    except PartitionError as error:
        raise typer.BadParameter(str(error), param_hint="--partitions") from error


@app.command()
def train(
    store: StoreOption,
    partitions: Annotated[
        str | None,
        typer.Option(
            "--partitions",
            "--days",
            help="Comma-separated: ZYELL days YYYY-MM-DD or NSL-KDD file stems (default: all labelled).",
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="A TrainConfig JSON file (default: the paper's).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Where splits, preprocessing and runs go.")] = Path("artifacts"),
    dataset: DatasetOption = DatasetChoice.zyell,
    dask_address: DaskOption = None,
) -> None:
    """Prefect flow: split, preprocess, train the three nets side by side, save both predictors."""
    from flows.train import train as train_flow
    from schemas.training import TrainConfig
    from tasks.store import StoreError, check_store

    spec = get_dataset(dataset)
    try:
        check_store(store, spec.name)
    except StoreError as error:
        raise typer.BadParameter(str(error), param_hint="--dataset") from error
    parts = parse_partitions(partitions, spec)
    summary = train_flow(store, parts, TrainConfig.from_file(config), out, dask_address, spec.name)
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
        f"\nMLflow run {tracking['run_id']} ({tracking['tracking_uri']}); "
        f"model {tracking['model_name']} version {tracking['version']} "
        f"{tracking['gate.decision']}: validation criterion {tracking['gate.new_criterion']:.4f} "
        f"vs champion {tracking['gate.champion_criterion']}"
    )


@app.command()
def score(
    files: Annotated[list[Path], typer.Argument(help="Data files to score, labelled or not.")],
    out: Annotated[Path, typer.Option(help="Folder for predictions, quarantine and summaries.")] = Path(
        "scores"
    ),
    model: Annotated[
        str | None,
        typer.Option(help="A predictor folder or an MLflow model URI (default: the dataset's champion)."),
    ] = None,
    truth: Annotated[
        Path | None, typer.Option(help="Folder of truth files with the same names (else: a label column).")
    ] = None,
    dataset: DatasetOption = DatasetChoice.zyell,
) -> None:
    """Validate and score data files chunk by chunk; with labels, also compute and log the metrics."""
    from tasks.score import resolve_predictor, score_file
    from tasks.tracking import HEADLINE, log_evaluation_run

    spec = get_dataset(dataset)
    model = model or f"models:/{spec.model_name}@champion"
    predictor = resolve_predictor(model)
    if predictor.preprocessing.dataset != spec.name:
        raise typer.BadParameter(
            f"{model} was trained on {predictor.preprocessing.dataset}, not {spec.name}", param_hint="--model"
        )
    for path in files:
        truth_file = truth / path.name if truth and (truth / path.name).exists() else None
        report = score_file(path, predictor, out, truth_file, model)
        predicted = ", ".join(f"{k} {v:,}" for k, v in report.predicted.items() if v)
        typer.echo(
            f"{path.name}: read {report.rows_read:,} = kept {report.rows_kept:,} + quarantined "
            f"{report.rows_quarantined:,} + out of scope {report.rows_out_of_scope:,}; "
            f"predicted {predicted}; {report.rows_per_second:,.0f} rows/s"
        )
        if report.metrics:
            figures = {f"score.{predictor.kind}.{k}": report.metrics[k] for k in HEADLINE}
            params = {"file": str(path), "model": model, "data.dataset": spec.name}
            run_id = log_evaluation_run(f"score-{path.stem}", params, figures)
            typer.echo(
                "  "
                + "  ".join(f"{k} {report.metrics[k]:.4f}" for k in HEADLINE)
                + f"  (MLflow run {run_id})"
            )


@app.command()
def evaluate(
    predictions: Annotated[Path, typer.Argument(help="A folder of *.predictions.parquet from nad score.")],
    truth: Annotated[Path, typer.Option(help="Folder of truth files named like the scored files.")],
    dataset: DatasetOption = DatasetChoice.zyell,
) -> None:
    """Score existing predictions against truth files: per file, and over all files."""
    from tasks.score import evaluate_prediction_folder

    try:
        per_file, overall = evaluate_prediction_folder(predictions, truth, get_dataset(dataset))
    except FileNotFoundError as error:
        raise typer.BadParameter(str(error), param_hint="PREDICTIONS") from error
    keys = ("precision", "recall", "f1", "fbeta", "far", "criterion")
    for name, figures in [*per_file.items(), ("all files", overall)]:
        typer.echo(f"{name}: " + "  ".join(f"{k} {figures[k]:.4f}" for k in keys))


@app.command()
def pipeline(
    source: Annotated[Path, typer.Option(help="Folder of data files (ZYELL: MMDD_firewall.csv).")],
    store: StoreOption,
    last_days: Annotated[
        int | None, typer.Option(help="Train on the K last labelled partitions (ZYELL: most recent days).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Where splits, runs and scores go.")] = Path("artifacts"),
    config: Annotated[Path | None, typer.Option(help="A TrainConfig JSON file.")] = None,
    score: Annotated[
        bool, typer.Option("--score", help="Score SOURCE's unlabelled days with the champion.")
    ] = False,
    truth: Annotated[Path | None, typer.Option(help="Truth files for the scored files.")] = None,
    dataset: DatasetOption = DatasetChoice.zyell,
    dask_address: DaskOption = None,
) -> None:
    """Prefect flow: backfill, train, evaluate, register through the gate, and optionally score."""
    from flows.pipeline import pipeline as pipeline_flow
    from tasks.tracking import comparison_table

    result = pipeline_flow(source, store, last_days, out, config, score, truth, dask_address, dataset.value)
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
