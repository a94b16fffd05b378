"""Training flow: split, preprocessing, the three nets side by side, both predictors, then the
evaluate and register subflows."""

import json
import os
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from prefect import flow, get_run_logger

from schemas.datasets import DEFAULT_DATASET
from schemas.training import TrainConfig
from tasks.cluster import dask_client
from tasks.evaluate import evaluate_predictors_task
from tasks.fusion import assemble_predictors_task
from tasks.preprocess import fit_preprocessing_task
from tasks.split import SplitResult, split_store_task
from tasks.tracking import track_and_register_task
from tasks.train import NETS, configure_tensorflow, train_net_task


@flow(name="evaluate")
def evaluate(predictors: dict[str, str], split: SplitResult) -> dict:
    """Fusion and baseline on the validation and test rows of the split."""
    return evaluate_predictors_task(predictors, split)


@flow(name="register")
def register(training: dict, evaluations: dict, store: str) -> dict:
    """Log the run to MLflow, register the fused model, and apply the champion gate."""
    return track_and_register_task(training, evaluations, store)


def point_latest(run_dir: Path) -> None:
    """`runs/latest` names the newest run; the link is swapped atomically."""
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest-{run_dir.name}"
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, link)


@flow(name="train")
def train(
    store: Path,
    partitions: list[str] | None = None,
    config: TrainConfig | None = None,
    out: Path = Path("artifacts"),
    dask_address: str | None = None,
    dataset: str = DEFAULT_DATASET,
) -> dict:
    """Train the paper's nets on the chosen partitions (ZYELL: days) of the store; return where
    everything went.

    The split and the preprocessing are content-addressed by the files' sha256s and the
    config, so a re-run after a crash reuses them.
    """
    config = config or TrainConfig()
    logger = get_run_logger()
    configure_tensorflow()
    with dask_client(dask_address) as client:
        address = client.scheduler.address
        split = split_store_task(
            Path(store), partitions, config.split, Path(out) / "splits", address, dataset
        )
        prep_folder = Path(out) / "preprocessing" / f"{split.key}-clip{config.clip:g}"
        prep_dir = fit_preprocessing_task(split.files("train"), config.clip, prep_folder, address, dataset)
    logger.info("split %s (%s): %s", split.key, "reused" if split.reused else "new", split.counts)
    run_dir = Path(out) / "runs" / datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    if config.parallel:
        futures = {name: train_net_task.submit(name, split, prep_dir, config, run_dir) for name in NETS}
        trained = {name: future.result() for name, future in futures.items()}
    else:
        trained = {name: train_net_task(name, split, prep_dir, config, run_dir) for name in NETS}
    net_paths = {name: net.path for name, net in trained.items()}
    predictors = assemble_predictors_task(net_paths, prep_dir, config.threshold, run_dir)
    point_latest(run_dir)
    evaluations = evaluate(predictors, split)
    training = {
        "run_dir": str(run_dir),
        "split": split.folder,
        "split_result": asdict(split),
        "preprocessing": str(prep_dir),
        "predictors": predictors,
        "nets": {name: {k: v for k, v in asdict(t).items() if k != "history"} for name, t in trained.items()},
        "history": {name: t.history for name, t in trained.items()},
        "config": config.model_dump(mode="json"),
    }
    (run_dir / "training.json").write_text(json.dumps({**training, "evaluations": evaluations}, indent=2))
    tracking = register(training, evaluations, str(store))
    logger.info(
        "MLflow run %s, model version %s: %s",
        tracking["run_id"],
        tracking["version"],
        tracking["gate.decision"],
    )
    return {**training, "evaluations": evaluations, "tracking": tracking}
