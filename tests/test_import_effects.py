"""No import-time side effects: importing every module of tasks/ and flows/ leaves os.environ as
it was (an entry point sets what it needs, when it runs). Third-party packages (TensorFlow, MLflow,
pyarrow) set variables of their own on import, so they are imported before the snapshot."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMPORT_ALL = """
import ast, importlib, json, os, sys
from pathlib import Path
ours = sorted([*Path("tasks").rglob("*.py"), *Path("flows").rglob("*.py")])
for path in ours:
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        names += [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        for name in names:
            if name.split(".")[0] not in {"tasks", "flows", "schemas", "simulator"}:
                importlib.import_module(name)
before = dict(os.environ)
for path in ours:
    importlib.import_module(".".join(path.with_suffix("").parts).removesuffix(".__init__"))
after = dict(os.environ)
changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
print(json.dumps({k: [before.get(k), after.get(k)] for k in sorted(changed)}))
"""


def test_importing_every_module_leaves_the_environment_as_it_was() -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {}
