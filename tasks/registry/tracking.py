"""MLflow: the local default store, the training run's params, metrics and artifacts, the registry
and the champion gate.

The default store is SQLite `mlflow.db` plus an `mlartifacts/` folder in the working directory;
`MLFLOW_TRACKING_URI` overrides it. Nothing here touches MLflow at import time.
"""

import json
import re
import subprocess
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Protocol

import mlflow
import pandas as pd
import pyarrow.parquet as pq
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.models import ModelSignature, infer_signature
from mlflow.types.schema import ColSpec, Schema
from prefect import task

from schemas.datasets import DatasetSpec, get_dataset
from tasks.errors import ModelError
from tasks.ingest.report import BackfillRow
from tasks.ingest.store import part_dir, stored_parts
from tasks.metrics import HEADLINE, Evaluation, per_class_report, plot_confusion
from tasks.model.fusion import load_predictor
from tasks.registry.gate import (
    changed_partitions,
    compared,
    first_version,
    left_out,
    not_compared,
    score_gate_rows,
    unscorable_reason,
)
from tasks.registry.mlflow_setup import CHAMPION, MODEL_NAME, configure_mlflow, owner_tags, tracking_uri
from tasks.registry.run_datasets import log_run_datasets
from tasks.training.split import SPLIT_MANIFEST, SplitResult
from tasks.training.summary import GateDecision, Registration, TrainingSummary

MANIFEST_FOLDER = "split"
MANIFEST_ARTIFACT = f"{MANIFEST_FOLDER}/{SPLIT_MANIFEST}"  # the run's split: which rows it trained on
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
NOTE_TAG = "mlflow.note.content"  # the run page's description


def flatten(value, prefix: str = "") -> dict[str, str]:
    """Nested config as dotted MLflow params."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, inner in value.items():
            out |= flatten(inner, f"{prefix}{key}.")
        return out
    return {prefix.rstrip("."): str(value)}


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def param_name(text: str) -> str:
    """`data.day=2020-12-03` as `data.day.2020-12-03`, other characters MLflow refuses as `_`."""
    return re.sub(r"[^A-Za-z0-9_\-. :/]", "_", text.replace("=", "."))


def metric_name(split: str, model: str, metric: str) -> str:
    return f"{split}.{model}.{metric}"


def comparison_table(evaluations: dict[str, dict[str, Evaluation]]) -> str:
    """Markdown: fusion against baseline, every headline metric, on each split."""
    lines = ["| split | metric | fusion | baseline |", "|---|---|---:|---:|"]
    for split, models in evaluations.items():
        for metric in HEADLINE:
            fusion, baseline = getattr(models["fusion"], metric), getattr(models["baseline"], metric)
            lines.append(f"| {split} | {metric} | {fusion:.4f} | {baseline:.4f} |")
    return "\n".join(lines)


def run_description(summary: TrainingSummary, gate: GateDecision) -> str:
    """The run page's description (markdown): what trained on which rows, and how it scored."""
    split, config = summary.split, summary.config
    rows = {name: sum(counts.values()) for name, counts in split.counts.items()}
    nets = ", ".join(f"{net.label} {net.epochs_run} epochs" for net in summary.nets)
    threshold = summary.threshold.threshold if summary.threshold else config.threshold
    lines = [
        f"**{split.dataset}** model, preset `{config.preset}`, feature set `{config.feature_set}`.",
        "",
        f"Trained on {len(split.partitions)} partitions: {', '.join(split.partitions)}; split "
        f"`{split.key}`: " + ", ".join(f"{name} {n:,} rows" for name, n in rows.items()) + ".",
        "",
        f"Nets: {nets}. Fusion threshold {threshold:.2f}.",
        "",
        comparison_table(summary.evaluations),
        "",
        f"Champion gate: {gate.describe()}.",
    ]
    return "\n".join(lines)


def plot_curves(histories: dict[str, dict[str, list[float]]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(histories), figsize=(5 * len(histories), 4))
    for ax, (name, history) in zip(axes, histories.items(), strict=True):
        for key, values in history.items():
            ax.plot(range(1, len(values) + 1), values, label=key)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def log_training_run(summary: TrainingSummary, store: str) -> str:
    """One parent run for the training flow, a nested run per net; returns the parent run id."""
    configure_mlflow()
    split = summary.split
    with mlflow.start_run(run_name=f"train-{Path(summary.run_dir).name}", tags=owner_tags()) as parent:
        mlflow.log_params(flatten(summary.config.model_dump(mode="json"), "config."))
        mlflow.log_params({param_name(f"data.{part}"): sha for part, sha in split.partitions.items()})
        mlflow.log_params(
            {
                "data.dataset": split.dataset,
                "data.store": store,
                "data.split_key": split.key,
                "git_commit": git_commit(),
            }
        )
        mlflow.log_params(
            {f"rows.{part}.{cls}": n for part, counts in split.counts.items() for cls, n in counts.items()}
        )
        mlflow.set_tags(
            {
                "nad.run_dir": summary.run_dir,
                "nad.kind": "training",
                "nad.dataset": split.dataset,
                "nad.preset": summary.config.preset,
            }
        )
        log_run_datasets(split, Path(store))
        log_nets(summary)
        log_threshold(summary)
        mlflow.log_metrics(
            {
                metric_name(part, model, metric): value
                for part, models in summary.evaluations.items()
                for model, evaluation in models.items()
                for metric, value in evaluation.headline().items()
            }
        )
        log_evaluation_artifacts(summary)
        mlflow.log_artifact(str(Path(split.folder) / SPLIT_MANIFEST), artifact_path=MANIFEST_FOLDER)
        return parent.info.run_id


def log_nets(summary: TrainingSummary) -> None:
    """Class weights on the parent run; schedule and curves on a nested run per net member."""
    for net in summary.nets:
        if net.member == 0:
            mlflow.log_params(
                {f"class_weight.{net.name}.{k}": round(v, 6) for k, v in net.class_weights.items()}
            )
        name = net.label if summary.config.ensemble > 1 else net.name
        with mlflow.start_run(run_name=name, nested=True, tags=owner_tags()):
            mlflow.log_params(
                {
                    "net": net.name,
                    "member": net.member,
                    "epochs_run": net.epochs_run,
                    "max_epochs": net.max_epochs,
                    "best_epoch": net.best_epoch,
                    "batch_size": net.batch_size,
                    "seconds": net.seconds,
                }
            )
            for key, values in net.history.items():
                for step, value in enumerate(values, start=1):
                    mlflow.log_metric(key, value, step=step)


def log_threshold(summary: TrainingSummary) -> None:
    """The threshold in use; when chosen on validation, the criterion-against-threshold curve."""
    choice = summary.threshold
    if choice is None:
        mlflow.log_param("threshold.chosen", summary.config.threshold)
        return
    mlflow.log_params({"threshold.chosen": choice.threshold, "threshold.best": choice.best})
    mlflow.log_metrics(
        {
            "threshold.gain_lower_bound": choice.gain_lower_bound,
            "threshold.criterion_at_default": choice.criterion_at_default,
            "threshold.criterion_at_best": choice.criterion_at_best,
        }
    )
    for name in ("threshold.json", "threshold-curve.png"):
        mlflow.log_artifact(str(Path(summary.run_dir) / name), artifact_path="threshold")


def log_evaluation_artifacts(summary: TrainingSummary) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for part, models in summary.evaluations.items():
            for model, evaluation in models.items():
                for normalised in (False, True):
                    suffix = "normalised" if normalised else "counts"
                    title = f"{model} on {part} ({suffix})"
                    plot_confusion(
                        evaluation, title, folder / f"confusion-{part}-{model}-{suffix}.png", normalised
                    )
                (folder / f"per-class-{part}-{model}.md").write_text(per_class_report(evaluation) + "\n")
        (folder / "fusion-vs-baseline.md").write_text(comparison_table(summary.evaluations) + "\n")
        plot_curves({net.label: net.history for net in summary.nets}, folder / "training-curves.png")
        mlflow.log_artifacts(str(folder), artifact_path="evaluation")
    mlflow.log_artifact(str(Path(summary.preprocessing) / "preprocessing.json"))


RAW_DTYPES = {"timestamp": object, "string": object, "float": "float64", "integer": "int64"}


def raw_example(store_part: str, spec: DatasetSpec, rows: int = 5) -> pd.DataFrame:
    """A few stored rows in the raw-file form that the served model takes: its input schema."""
    kinds = spec.column_kinds(labelled=False)
    frame = pd.read_parquet(store_part, columns=list(kinds)).head(rows)
    if spec.time_column:
        frame[spec.time_column] = frame[spec.time_column].dt.strftime(spec.time_format)
    return frame.astype({name: RAW_DTYPES[kind] for name, kind in kinds.items()})


def example_part(store: Path) -> str:
    """The first Parquet file of the store's first partition."""
    return min(str(p) for part in stored_parts(store) for p in part_dir(store, part).glob("part-*.parquet"))


def log_fused_model(run_id: str, fusion_dir: str, example: pd.DataFrame, model_name: str = MODEL_NAME) -> str:
    """Log the fused model as a pyfunc on the run and register it; return the new version."""
    configure_mlflow()
    predictions = pd.Series(load_predictor(Path(fusion_dir)).predict(example), name="pred_label").astype(str)
    with mlflow.start_run(run_id=run_id), warnings.catch_warnings():
        # MLflow's hint that integer columns cannot hold nulls is for its own validation; the
        # model applies the ingest row contract to every request
        warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\.")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_CODE),
            artifacts={"predictor": fusion_dir},
            code_paths=[str(Path(__file__).parents[1]), str(Path(__file__).parents[2] / "schemas")],
            signature=optional_columns(infer_signature(example, predictions)),
            input_example=example,
            extra_pip_requirements=["keras==3.15.1", "tensorflow-cpu==2.21.0", "pandera==0.35.0"],
            registered_model_name=model_name,
        )
    return str(info.registered_model_version)


def optional_columns(signature: ModelSignature) -> ModelSignature:
    """The signature with every input column optional: MLflow's scoring server then hands a
    request that lacks a column to the model, whose refusal names it first in a few words, instead
    of refusing it itself with the request's rows dumped twice (~1.5 kB, the cause last)."""
    columns = [ColSpec(column.type, column.name, required=False) for column in signature.inputs.inputs]
    return ModelSignature(inputs=Schema(columns), outputs=signature.outputs)


def champion_manifest(run_id: str) -> dict | None:
    """The split manifest logged on a training run; None for a run that has none."""
    try:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=MANIFEST_ARTIFACT)
    except (mlflow.exceptions.MlflowException, OSError):
        return None
    return json.loads(Path(local).read_text())


def judge_against(champion: ModelVersion, version: str, split: SplitResult, fusion_dir: str) -> GateDecision:
    """The gate's decision for `version` against the `champion` model version (see tasks/registry/gate.py)."""
    from tasks.registry.champion import download_predictor  # tasks.scoring.score imports this module

    ours = json.loads((Path(split.folder) / SPLIT_MANIFEST).read_text())
    theirs = champion_manifest(champion.run_id)
    their_version = str(champion.version)
    try:
        champion_model = load_predictor(download_predictor(f"models:/{champion.name}/{their_version}"))
    except (ModelError, OSError, ValueError) as error:
        return not_compared(version, their_version, f"the champion cannot be loaded ({error})")
    files = split.files("test")
    columns = set(pq.read_schema(files[0]).names) if files else set()
    reason = unscorable_reason(
        theirs, ours, champion_model.preprocessing.dataset, champion_model.preprocessing.features, columns
    )
    if reason is not None:
        return not_compared(version, their_version, reason)
    changed = changed_partitions(theirs["partitions"], split.partitions)
    challenger = load_predictor(Path(fusion_dir))
    rows, truth, theirs_codes, ours_codes = score_gate_rows(
        files, theirs, changed, champion_model, challenger
    )
    if rows.rows == 0:
        return not_compared(version, their_version, f"no gate row is left ({left_out(rows, changed)})", rows)
    return compared(version, their_version, truth, theirs_codes, ours_codes, rows, changed)


def champion_gate(
    run_id: str, version: str, split: SplitResult, fusion_dir: str, model_name: str = MODEL_NAME
) -> GateDecision:
    """Move `champion` to `version` unless the champion is significantly better on the same rows:
    the challenger's test rows that the champion neither trained nor validated on (tasks/registry/gate.py).

    The first version becomes champion. The decision, the rows and both figures go on the run.
    """
    configure_mlflow()
    client = MlflowClient()
    try:
        current = client.get_model_version_by_alias(model_name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        current = None
    if current is None:
        decision = first_version(str(version))
    else:
        decision = judge_against(current, str(version), split, fusion_dir)
    if decision.promoted:
        client.set_registered_model_alias(model_name, CHAMPION, version)
    client.log_dict(run_id, asdict(decision), "gate.json")
    for key, value in decision.tags().items():
        client.set_tag(run_id, key, value)
    for key, value in decision.metrics().items():
        client.log_metric(run_id, key, value)
    return decision


def run_link(run_id: str) -> str:
    """Where to open a run: the server's page, or the run's id with the local UI command."""
    uri = tracking_uri()
    if uri.startswith("http"):
        experiment = MlflowClient().get_run(run_id).info.experiment_id
        return f"{uri.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}"
    return f"run {run_id} (mlflow ui --backend-store-uri {uri})"


class ScoredFileReport(Protocol):
    """What the pipeline report shows of a scored file: a `tasks.scoring.score.ScoreReport`
    (scoring comes after the registry, so this module names only the fields it reads)."""

    @property
    def file(self) -> str: ...
    @property
    def rows_read(self) -> int: ...
    @property
    def rows_quarantined(self) -> int: ...
    @property
    def metrics(self) -> Evaluation | None: ...


def pipeline_report(
    ingested: list[BackfillRow], summary: TrainingSummary, scored: list[ScoredFileReport]
) -> str:
    """The pipeline's markdown artifact: rows, the comparison, the gate and the MLflow run."""
    tracking = summary.tracking
    gate = tracking.gate
    lines = [
        "# nad-fusion pipeline",
        "",
        "## Ingested files",
        "",
        "| file | partition | rows | kept | quarantined | out of scope | status |",
    ]
    lines.append("|---|---|---:|---:|---:|---:|---|")
    lines += [
        f"| {r.file} | {r.partition} | {r.rows} | {r.kept} | {r.quarantined} "
        f"| {r.out_of_scope} | {r.status} |"
        for r in ingested
    ]
    lines += ["", "## Fusion against baseline", "", comparison_table(summary.evaluations), ""]
    lines += [
        "## Champion gate",
        "",
        f"Model version {tracking.version} (preset {summary.config.preset}): {gate.describe()}.",
        "",
        f"MLflow: {run_link(tracking.run_id)}",
    ]
    if scored:
        lines += [
            "",
            "## Scored days",
            "",
            "| file | rows | quarantined | criterion |",
            "|---|---:|---:|---:|",
        ]
        for report in scored:
            criterion = f"{report.metrics.criterion:.4f}" if report.metrics else "no labels"
            name = Path(report.file).name
            lines.append(f"| {name} | {report.rows_read} | {report.rows_quarantined} | {criterion} |")
    return "\n".join(lines) + "\n"


def training_report(summary: TrainingSummary) -> str:
    """What `nad train` prints: nets, predictors, threshold, the comparison and the gate."""
    lines = [f"run folder: {summary.run_dir} (preset {summary.config.preset})"]
    for net in summary.nets:
        lines.append(
            f"  {net.label:10s} {net.epochs_run:4d}/{net.max_epochs} epochs (best {net.best_epoch}), "
            f"batch {net.batch_size}, {net.seconds:8.1f} s  ({net.path})"
        )
    lines += [f"  predictor {name}: {folder}" for name, folder in summary.predictors.items()]
    if summary.threshold is not None:
        choice = summary.threshold
        lines.append(
            f"  threshold {choice.threshold:.2f} (best on validation {choice.best:.2f}, "
            f"gain lower bound {choice.gain_lower_bound:+.4f})"
        )
    lines += ["", "fusion vs baseline on the held-out split rows:", comparison_table(summary.evaluations)]
    if summary.tracking is not None:
        tracking, gate = summary.tracking, summary.tracking.gate
        lines.append(
            f"\nMLflow run {tracking.run_id} ({tracking.tracking_uri}); model {tracking.model_name} version "
            f"{tracking.version} {gate.describe()}"
        )
    return "\n".join(lines)


@task(name="track-and-register")
def track_and_register_task(summary: TrainingSummary, store: str) -> Registration:
    """Prefect task: log the run, register the fused model (one registered model per dataset),
    apply the champion gate."""
    spec = get_dataset(summary.dataset)
    run_id = log_training_run(summary, store)
    example = raw_example(example_part(Path(store)), spec)
    version = log_fused_model(run_id, summary.predictors["fusion"], example, spec.model_name)
    gate = champion_gate(run_id, version, summary.split, summary.predictors["fusion"], spec.model_name)
    MlflowClient().set_tag(run_id, NOTE_TAG, run_description(summary, gate))
    return Registration(run_id, version, spec.model_name, tracking_uri(), gate)
