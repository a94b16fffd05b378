"""TensorFlow starts without its start-up lines in every process that loads a model or trains."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START_UP_LINES = ("absl::InitializeLog", "oneDNN custom operations")


def stderr_of(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr


def test_the_quiet_import_prints_nothing_and_stderr_works_after() -> None:
    printed = stderr_of(
        "import sys; from tasks.model.quiet_start import import_keras; keras, tf = import_keras(); "
        "keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])(tf.zeros((1, 3))); "
        "sys.stderr.write('still here')"
    )
    assert not any(line in printed for line in START_UP_LINES), printed
    assert printed.endswith("still here")


def test_training_and_model_loading_modules_start_tensorflow_quietly() -> None:
    printed = stderr_of("import tasks.training.train, tasks.model.fusion, tasks.model.tensorflow_threads")
    assert not any(line in printed for line in START_UP_LINES), printed
