"""Keras and TensorFlow imported without TensorFlow's start-up lines.

TensorFlow 2.x on a CPU with oneDNN prints "All log messages before absl::InitializeLog() ..."
and "oneDNN custom operations are on ..." twice while it is imported, before absl logging
exists, so TF_CPP_MIN_LOG_LEVEL does not hold them back. Turning oneDNN off
(TF_ENABLE_ONEDNN_OPTS=0) silences them too, but trains about 12% slower here; instead the
process's stderr is pointed at /dev/null for the import alone. An import that fails still raises.
"""

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

_LOCK = threading.Lock()


def import_keras() -> tuple[ModuleType, ModuleType]:
    """(keras, tensorflow), imported quietly the first time."""
    with _LOCK:
        if "tensorflow" not in sys.modules:
            with stderr_silenced():
                import tensorflow
        import keras
        import tensorflow

    return keras, tensorflow


@contextmanager
def stderr_silenced() -> Iterator[None]:
    """File descriptor 2 points at /dev/null inside the block: the C++ lines go to it directly."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
