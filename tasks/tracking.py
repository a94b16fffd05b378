"""MLflow: the local default store, the training run's params, metrics and artifacts, the registry
and the champion gate.

The default store is SQLite `mlflow.db` plus an `mlartifacts/` folder in the working directory;
`MLFLOW_TRACKING_URI` overrides it. Nothing here touches MLflow at import time.
"""

import os
import re
import subprocess
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature
from prefect import task

from schemas.datasets import DatasetSpec, get_dataset
from tasks.metrics import Evaluation, per_class_report, plot_confusion
from tasks.store import part_dir, stored_parts

EXPERIMENT = "nad-fusion"
MODEL_NAME = "nad-fusion"
CHAMPION = "champion"
GATE_METRIC = "validation.fusion.criterion"
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
HEADLINE = ("precision", "recall", "f1", "fbeta", "far", "cost", "criterion")


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def artifact_location(uri: str) -> str | None:
    """Artifacts of a SQLite store go in `mlartifacts/` beside the database file."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()


def configure_mlflow() -> str:
    """Point MLflow at the store and make sure the experiment exists; return its id."""
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        mlflow.create_experiment(EXPERIMENT, artifact_location=artifact_location(uri))
    return mlflow.set_experiment(EXPERIMENT).experiment_id


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


def comparison_table(evaluations: dict[str, dict[str, dict]]) -> str:
    """Markdown: fusion against baseline, every headline metric, on each split."""
    lines = ["| split | metric | fusion | baseline |", "|---|---|---:|---:|"]
    for split, models in evaluations.items():
        for metric in HEADLINE:
            fusion, baseline = models["fusion"][metric], models["baseline"][metric]
            lines.append(f"| {split} | {metric} | {fusion:.4f} | {baseline:.4f} |")
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


def log_training_run(training: dict, evaluations: dict[str, dict[str, dict]], store: str) -> str:
    """One parent run for the training flow, a nested run per net; returns the parent run id."""
    configure_mlflow()
    split = training["split_result"]
    with mlflow.start_run(run_name=f"train-{Path(training['run_dir']).name}") as parent:
        mlflow.log_params(flatten(training["config"], "config."))
        mlflow.log_params({param_name(f"data.{part}"): sha for part, sha in split["partitions"].items()})
        mlflow.log_params(
            {
                "data.dataset": split["dataset"],
                "data.store": store,
                "data.split_key": split["key"],
                "git_commit": git_commit(),
            }
        )
        mlflow.log_params(
            {f"rows.{part}.{cls}": n for part, counts in split["counts"].items() for cls, n in counts.items()}
        )
        mlflow.set_tags(
            {"nad.run_dir": training["run_dir"], "nad.kind": "training", "nad.dataset": split["dataset"]}
        )
        for name, net in training["nets"].items():
            mlflow.log_params(
                {f"class_weight.{name}.{k}": round(v, 6) for k, v in net["class_weights"].items()}
            )
            with mlflow.start_run(run_name=name, nested=True):
                mlflow.log_params({"net": name, "epochs_run": net["epochs_run"], "seconds": net["seconds"]})
                for key, values in training["history"][name].items():
                    for step, value in enumerate(values, start=1):
                        mlflow.log_metric(key, value, step=step)
        mlflow.log_metrics(
            {
                metric_name(part, model, metric): figures[metric]
                for part, models in evaluations.items()
                for model, figures in models.items()
                for metric in HEADLINE
            }
        )
        log_evaluation_artifacts(evaluations, training)
        return parent.info.run_id


def log_evaluation_artifacts(evaluations: dict[str, dict[str, dict]], training: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for part, models in evaluations.items():
            for model, figures in models.items():
                evaluation = Evaluation(**figures)
                for normalised in (False, True):
                    suffix = "normalised" if normalised else "counts"
                    title = f"{model} on {part} ({suffix})"
                    plot_confusion(
                        evaluation, title, folder / f"confusion-{part}-{model}-{suffix}.png", normalised
                    )
                (folder / f"per-class-{part}-{model}.md").write_text(per_class_report(evaluation) + "\n")
        (folder / "fusion-vs-baseline.md").write_text(comparison_table(evaluations) + "\n")
        plot_curves(training["history"], folder / "training-curves.png")
        mlflow.log_artifacts(str(folder), artifact_path="evaluation")
    mlflow.log_artifact(str(Path(training["preprocessing"]) / "preprocessing.json"))


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
    from tasks.fusion import load_predictor

    configure_mlflow()
    predictions = pd.Series(load_predictor(Path(fusion_dir)).predict(example), name="pred_label").astype(str)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_CODE),
            artifacts={"predictor": fusion_dir},
            code_paths=[str(Path(__file__).parent), str(Path(__file__).parents[1] / "schemas")],
            signature=infer_signature(example, predictions),
            input_example=example,
            extra_pip_requirements=["keras==3.15.1", "tensorflow-cpu==2.21.0", "pandera==0.35.0"],
            registered_model_name=model_name,
        )
    return str(info.registered_model_version)


def champion_gate(run_id: str, version: str, model_name: str = MODEL_NAME) -> dict:
    """Move `champion` to `version` only if its validation criterion is at least the champion's.

    The first version becomes champion. The decision and both figures go on the run.
    """
    configure_mlflow()
    client = MlflowClient()
    new = client.get_run(run_id).data.metrics[GATE_METRIC]
    try:
        current = client.get_model_version_by_alias(model_name, CHAMPION)
        old = client.get_run(current.run_id).data.metrics.get(GATE_METRIC)
        old_version = current.version
    except mlflow.exceptions.MlflowException:
        old, old_version = None, None
    promote = old is None or new >= old
    if promote:
        client.set_registered_model_alias(model_name, CHAMPION, version)
    decision = {
        "gate.decision": "promoted" if promote else "kept",
        "gate.version": version,
        "gate.new_criterion": new,
        "gate.champion_criterion": "none" if old is None else old,
        "gate.champion_version": old_version or "none",
    }
    client.log_dict(run_id, decision, "gate.json")
    for key, value in decision.items():
        client.set_tag(run_id, key, str(value))
    client.log_metric(run_id, "gate.new_criterion", new)
    if old is not None:
        client.log_metric(run_id, "gate.champion_criterion", old)
    return decision


def log_evaluation_run(name: str, params: dict[str, str], metrics: dict[str, float]) -> str:
    """An evaluation run (scoring a day against known labels); returns its id."""
    configure_mlflow()
    with mlflow.start_run(run_name=name) as run:
        mlflow.set_tag("nad.kind", "evaluation")
        mlflow.log_params(params)
        mlflow.log_metrics({k: v for k, v in metrics.items() if k.split(".")[-1] in HEADLINE})
        return run.info.run_id


def run_link(run_id: str) -> str:
    """Where to open a run: the server's page, or the run's id with the local UI command."""
    uri = tracking_uri()
    if uri.startswith("http"):
        experiment = MlflowClient().get_run(run_id).info.experiment_id
        return f"{uri.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}"
    return f"run {run_id} (mlflow ui --backend-store-uri {uri})"


def pipeline_report(ingested: list[dict], training: dict, scored: list[dict]) -> str:
    """The pipeline's markdown artifact: rows, the comparison, the gate and the MLflow run."""
    tracking = training["tracking"]
    lines = [
        "# nad-fusion pipeline",
        "",
        "## Ingested files",
        "",
        "| file | partition | rows | kept | quarantined | out of scope | status |",
    ]
    lines.append("|---|---|---:|---:|---:|---:|---|")
    lines += [
        f"| {r['file']} | {r['partition']} | {r['rows']} | {r['kept']} | {r['quarantined']} "
        f"| {r['out_of_scope']} | {r['status']} |"
        for r in ingested
    ]
    lines += ["", "## Fusion against baseline", "", comparison_table(training["evaluations"]), ""]
    lines += [
        "## Champion gate",
        "",
        f"Model version {tracking['version']}: **{tracking['gate.decision']}** (validation criterion "
        f"{tracking['gate.new_criterion']:.4f} against the champion's "
        f"{tracking['gate.champion_criterion']}).",
        "",
        f"MLflow: {run_link(tracking['run_id'])}",
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
            criterion = f"{report['metrics']['criterion']:.4f}" if report["metrics"] else "no labels"
            name = Path(report["file"]).name
            lines.append(f"| {name} | {report['rows_read']} | {report['rows_quarantined']} | {criterion} |")
    return "\n".join(lines) + "\n"


@task(name="track-and-register")
def track_and_register_task(training: dict, evaluations: dict, store: str) -> dict:
    """Prefect task: log the run, register the fused model (one registered model per dataset),
    apply the champion gate."""
    spec = get_dataset(training["split_result"]["dataset"])
    run_id = log_training_run(training, evaluations, store)
    example = raw_example(example_part(Path(store)), spec)
    version = log_fused_model(run_id, training["predictors"]["fusion"], example, spec.model_name)
    decision = champion_gate(run_id, version, spec.model_name)
    return {
        "run_id": run_id,
        "version": version,
        "model_name": spec.model_name,
        "tracking_uri": tracking_uri(),
        **decision,
    }
