"""Training flow: split, preprocessing, the three nets (each an ensemble of one or more members)
side by side, both predictors, the threshold chosen on validation, then the evaluate and register
subflows."""

import os
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from prefect import flow, get_run_logger

from schemas.datasets import DEFAULT_DATASET, get_dataset
from schemas.training import TrainConfig
from tasks.cluster import dask_client
from tasks.metrics import Evaluation
from tasks.model.fusion import assemble_predictors_task
from tasks.model.preprocess import fit_preprocessing_task, preprocessing_folder
from tasks.model.tensorflow_threads import configure_tensorflow
from tasks.registry.tracking import track_and_register_task
from tasks.training.evaluate import evaluate_predictors_task
from tasks.training.split import SplitResult, split_store_task
from tasks.training.summary import Registration, TrainedNet, TrainingSummary
from tasks.training.threshold import tune_threshold_task
from tasks.training.train import NETS, train_net_task


@flow(name="evaluate")
def evaluate_flow(predictors: dict[str, str], split: SplitResult) -> dict[str, dict[str, Evaluation]]:
    """Fusion and baseline on the validation and test rows of the split."""
    return evaluate_predictors_task(predictors, split)


@flow(name="register")
def register_flow(summary: TrainingSummary, store: str) -> Registration:
    """Log the run to MLflow, register the fused model, and apply the champion gate."""
    return track_and_register_task(summary, store)


def point_latest(run_dir: Path) -> None:
    """`runs/latest` names the newest run; the link is swapped atomically."""
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest-{run_dir.name}"
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, link)


def train_nets(split: SplitResult, prep_dir: Path, config: TrainConfig, run_dir: Path) -> list[TrainedNet]:
    """Every member of every net; side by side when `config.parallel`."""
    jobs = [(name, member) for name in NETS for member in range(config.ensemble)]
    if not config.parallel:
        return [train_net_task(name, split, prep_dir, config, run_dir, member) for name, member in jobs]
    futures = [train_net_task.submit(name, split, prep_dir, config, run_dir, member) for name, member in jobs]
    return [future.result() for future in futures]


def split_and_preprocess(
    store: Path,
    partitions: list[str] | None,
    config: TrainConfig,
    out: Path,
    dask_address: str | None,
    dataset: str,
) -> tuple[SplitResult, Path]:
    """The split of the store and the preprocessing fitted on its train rows, on one Dask cluster."""
    with dask_client(dask_address) as client:
        address = client.scheduler.address
        split = split_store_task(
            store, partitions, config.split, out / "splits", address, dataset, config.feature_set
        )
        prep_folder = preprocessing_folder(
            out / "preprocessing", split.key, config.clip, config.log_transform, config.one_hot
        )
        prep_dir = fit_preprocessing_task(
            split.files("train"),
            config.clip,
            prep_folder,
            address,
            dataset,
            config.log_transform,
            config.feature_set,
            config.one_hot,
        )
    return split, prep_dir


@flow(name="train")
def train_flow(
    store: Path,
    partitions: list[str] | None = None,
    config: TrainConfig | None = None,
    out: Path = Path("artifacts"),
    dask_address: str | None = None,
    dataset: str = DEFAULT_DATASET,
) -> TrainingSummary:
    """Train the nets on the chosen partitions (ZYELL: days) of the store; return what was made.

    The split and the preprocessing are content-addressed by the files' sha256s and the
    config, so a re-run after a crash reuses them.
    """
    config = (config or TrainConfig.from_preset("default")).for_dataset(get_dataset(dataset))
    logger = get_run_logger()
    configure_tensorflow()
    split, prep_dir = split_and_preprocess(Path(store), partitions, config, Path(out), dask_address, dataset)
    logger.info("split %s (%s): %s", split.key, "reused" if split.reused else "new", split.counts)
    run_dir = Path(out) / "runs" / datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    nets = train_nets(split, prep_dir, config, run_dir)
    net_paths = {name: [net.path for net in nets if net.name == name] for name in NETS}
    predictors = assemble_predictors_task(net_paths, prep_dir, config, run_dir)
    threshold = None
    if config.tune_threshold:
        threshold = tune_threshold_task(predictors["fusion"], split.files("validation"), run_dir)
        logger.info("threshold %.2f (best %.2f, gain lower bound %+.4f)", threshold.threshold, threshold.best,
                    threshold.gain_lower_bound)  # fmt: skip
    evaluations = evaluate_flow(predictors, split)
    summary = TrainingSummary(
        run_dir=str(run_dir),
        config=config,
        split=split,
        preprocessing=str(prep_dir),
        predictors=predictors,
        nets=tuple(nets),
        threshold=threshold,
        evaluations=evaluations,
    )
    (run_dir / "training.json").write_text(summary.to_json())
    registration = register_flow(summary, str(store))
    point_latest(run_dir)  # only a run that completed, registration included
    logger.info(
        "MLflow run %s, model version %s: %s",
        registration.run_id,
        registration.version,
        registration.gate.describe(),
    )
    return replace(summary, tracking=registration)
