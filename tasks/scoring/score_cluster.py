"""Scoring on an existing Dask cluster: the blocks of each file spread over its workers.

What always holds:
- Each worker loads the predictor once, when `PredictorPlugin` is registered (or when the
  worker joins later), from a folder path that the workers can read; a block task carries the
  plugin's name, never the model. TensorFlow's thread pools are sized to the worker's threads
  (the nanny's OMP_NUM_THREADS=1 does not reach them).
- A block task parses and predicts one block and returns its `BlockPrediction`; the file is
  assembled in the calling process by `tasks.scoring.score.score_file`, in block order. So the counts,
  the metrics, the voting and the incidents, which need the whole file, are computed there,
  exactly as in local scoring, and the predictions are the same row for row.
- A block whose worker dies is run again by the scheduler on another worker, and each block's
  result is taken once, so every row is written once. When the scheduler gives up on a block,
  the file fails with one line; its predictions are written to a hidden file that is renamed
  only after the last block, so no partial predictions file is ever visible.
"""

import hashlib
from collections.abc import Iterator
from pathlib import Path

from distributed import Client, WorkerPlugin, get_worker
from distributed.client import FutureCancelledError
from distributed.scheduler import KilledWorker
from prefect import task

from tasks.errors import NadError, message_of, retry_if_transient
from tasks.model.context import ContextTables
from tasks.scoring.blocks import BlockLoader, BlockPrediction, BlockScorer, ClusterModel, predict_block

PLUGIN_PREFIX = "nad-predictor-"


class ClusterError(NadError):
    """The cluster could not score a file: its workers died, or the model does not load there."""


class PredictorPlugin(WorkerPlugin):
    """Loads the predictor in `folder` once per worker, with TensorFlow sized to its threads."""

    idempotent = True  # registered again (another file, another run): the loaded model stays

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.predictor = None

    def setup(self, worker) -> None:
        from tasks.model.fusion import load_predictor
        from tasks.model.tensorflow_threads import configure_tensorflow

        configure_tensorflow(worker.state.nthreads)
        self.predictor = load_predictor(Path(self.folder))


def plugin_name(folder: Path) -> str:
    """One plugin per predictor folder, so that two models never share a name."""
    return PLUGIN_PREFIX + hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]


def load_model_on_cluster(client: Client, folder: Path) -> str:
    """Make every worker (present and future) load the predictor in `folder`; return the
    plugin's name. A plugin already registered for the folder is kept as it is."""
    name = plugin_name(folder)
    try:
        client.register_plugin(PredictorPlugin(str(folder.resolve())), name=name)
    except Exception as error:  # whatever the workers raised: a missing folder, a missing module
        raise ClusterError(
            f"{folder}: the Dask workers cannot load this model ({message_of(error)})"
        ) from error
    return name


def predict_on_worker(
    plugin: str, load: BlockLoader, index: int, tables: ContextTables | None, source: str
) -> BlockPrediction:
    """A Dask task: block `index` of `source`, predicted with this worker's predictor."""
    predictor = get_worker().plugins[plugin].predictor
    return predict_block(load(index), predictor, tables, index, source)


def cluster_scorer(client: Client, plugin: str) -> BlockScorer:
    """Every block of a file submitted at once; the predictions come back in block order."""

    def score(source: str, count: int, load: BlockLoader, tables: ContextTables | None):
        futures = [
            client.submit(predict_on_worker, plugin, load, index, tables, source, pure=False)
            for index in range(count)
        ]
        try:
            yield from in_order(futures, source)
        finally:
            client.cancel(futures)

    return score


def in_order(futures: list, source: str) -> Iterator[BlockPrediction]:
    for index, future in enumerate(futures):
        try:
            yield future.result()
        except (KilledWorker, FutureCancelledError) as error:
            raise ClusterError(
                f"{source}: block {index + 1} of {len(futures)} was lost with the Dask workers "
                f"that ran it ({type(error).__name__}); nothing written"
            ) from error
        future.release()


@task(name="load-model-on-cluster", retries=1, retry_delay_seconds=2, retry_condition_fn=retry_if_transient)
def load_model_on_cluster_task(address: str, folder: Path) -> ClusterModel:
    """Prefect task: every worker of the cluster at `address` loads the predictor in `folder`."""
    with Client(address, set_as_default=False) as client:
        return ClusterModel(address, load_model_on_cluster(client, Path(folder)))
