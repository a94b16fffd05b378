"""Drift reports of several days, shown: a PNG heatmap of days x inputs, a Prefect table
artifact, and MLflow artifacts on the scoring runs."""

from pathlib import Path

import numpy as np
from prefect import task
from prefect.artifacts import create_table_artifact

from tasks.errors import InputError
from tasks.files import atomic_path
from tasks.model.drift import DriftReport, read_report

HEATMAP_NAME = "drift-heatmap.png"
ARTIFACT_FOLDER = "drift"


def day_name(report: DriftReport) -> str:
    return Path(report.file).name


def write_heatmap(reports: list[DriftReport], path: Path) -> Path:
    """PSI of each day (row) and model input (column); a flagged cell is marked with x."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    inputs = list(reports[0].psi)
    values = np.array([[report.psi.get(name, np.nan) for name in inputs] for report in reports])
    label_inches = 0.07 * max(len(name) for name in inputs)  # the inputs' names stand upright below
    size = (max(6, 0.32 * len(inputs) + 3), 1.6 + 0.45 * len(reports) + label_inches)
    figure, axes = pyplot.subplots(figsize=size, layout="constrained")
    image = axes.imshow(values, aspect="auto", cmap="magma_r", vmin=0, vmax=max(1.0, np.nanmax(values)))
    axes.set_xticks(range(len(inputs)), inputs, rotation=90, fontsize=7)
    labels = [f"{day_name(r)}{' DRIFT' if r.drifted else ''}" for r in reports]
    axes.set_yticks(range(len(reports)), labels, fontsize=8)
    for row, report in enumerate(reports):
        for column, name in enumerate(inputs):
            if name in report.flagged:
                axes.text(column, row, "x", ha="center", va="center", color="white", fontsize=7)
    figure.colorbar(image, ax=axes, label=f"PSI (x: over {reports[0].threshold:g})")
    axes.set_title("PSI of each day's model inputs against the training period", fontsize=9)
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=110)
    pyplot.close(figure)
    return path


def table_rows(reports: list[DriftReport]) -> list[dict]:
    """One row per day: the verdict, the top inputs and the class mix against training."""
    return [
        {
            "day": day_name(report),
            "drift": "DRIFT" if report.drifted else "ok",
            "inputs flagged": f"{len(report.flagged)} of {len(report.psi)}",
            "top inputs (PSI)": ", ".join(f"{name} {report.psi[name]:.2f}" for name in report.top),
            "class mix PSI": round(report.class_mix_psi, 3),
            "predicted attack share": round(1 - report.predicted_mix["Normal"], 4),
            "training attack share": round(1 - report.training_mix["Normal"], 4),
            "rows": report.rows,
        }
        for report in reports
    ]


def report_files(paths: list[Path]) -> list[Path]:
    """The drift reports that `paths` name: report files, or folders of them."""
    found = []
    for path in paths:
        found += sorted(Path(path).glob("*.drift.json")) if Path(path).is_dir() else [Path(path)]
    if not found:
        raise InputError(f"{', '.join(map(str, paths))}: no *.drift.json drift reports; nothing to check")
    return found


def log_to_mlflow(reports: list[Path], heatmap: Path, runs: list[str | None]) -> list[str]:
    """Each report and the heatmap as artifacts of its file's scoring run; files scored without
    one (no labels) go to one `drift` run of their own. Returns the runs written to."""
    import mlflow
    from mlflow import MlflowClient

    from tasks.registry.mlflow_setup import configure_mlflow, owner_tags

    configure_mlflow()
    client = MlflowClient()
    alone = [report for report, run in zip(reports, runs, strict=True) if run is None]
    written = []
    for report, run in zip(reports, runs, strict=True):
        if run is not None:
            client.log_artifact(run, str(report), ARTIFACT_FOLDER)
            client.log_artifact(run, str(heatmap), ARTIFACT_FOLDER)
            written.append(run)
    if alone:
        with mlflow.start_run(run_name="drift", tags=owner_tags()) as run:
            mlflow.set_tag("nad.kind", "drift")
            for report in alone:
                mlflow.log_artifact(str(report), ARTIFACT_FOLDER)
            mlflow.log_artifact(str(heatmap), ARTIFACT_FOLDER)
            written.append(run.info.run_id)
    return written


@task(name="publish-drift")
def publish_drift_task(reports: list[Path], runs: list[str | None], out_dir: Path) -> Path:
    """Prefect task: the heatmap of the scored days beside their predictions, the table as a
    Prefect artifact, and both in MLflow."""
    loaded = [read_report(path) for path in reports]
    heatmap = write_heatmap(loaded, Path(out_dir) / HEATMAP_NAME)
    create_table_artifact(
        table_rows(loaded), key="drift", description="drift of each scored day against the training period"
    )
    log_to_mlflow(reports, heatmap, runs)
    return heatmap
