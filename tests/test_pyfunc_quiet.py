"""The model-from-code module loads without MLflow's advice to add type hints to `predict`."""

import subprocess
import sys


def test_the_pyfunc_module_imports_without_mlflows_type_hint_warning() -> None:
    done = subprocess.run(
        [sys.executable, "-W", "always", "-c", "import tasks.registry.pyfunc_model"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Add type hints" not in done.stderr + done.stdout
