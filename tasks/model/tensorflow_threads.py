"""TensorFlow's thread pools, set once per process before its first op (training, Dask workers)."""

import logging
import os

from tasks.model.quiet_start import import_keras


def configure_tensorflow(threads: int | None = None) -> None:
    """One intra-op pool the size of the machine, shared by the nets trained side by side.

    TensorFlow's pools are per process, so three nets trained in threads share `threads`
    cores instead of each taking all of them. Must run before TensorFlow's first op.
    """
    threads = threads or os.cpu_count() or 1
    _, tf = import_keras()
    tf.get_logger().setLevel("ERROR")  # retracing notes from three nets tracing at once
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        logging.getLogger(__name__).debug("TensorFlow already initialised; thread pools unchanged")
