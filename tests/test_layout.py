"""The layout is the architecture: who may import whom, read from the source with `ast`.

    simulator -> schemas          tasks -> schemas          flows -> tasks, schemas
    `nad generate` (the function `generate` in flows/cli.py) -> simulator
    tests, benchmarks -> all of them; nothing imports tests or benchmarks

The pipeline (tasks/, flows/, schemas/) never imports the simulator; ruff's TID251 says the same
at lint time (pyproject.toml), this test also catches imports that a `noqa` would hide.
"""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = frozenset({"schemas", "simulator", "tasks", "flows", "tests", "benchmarks"})
ALLOWED_IMPORTS = {
    "schemas": {"schemas"},
    "simulator": {"simulator", "schemas"},
    "tasks": {"tasks", "schemas"},
    "flows": {"flows", "tasks", "schemas"},
}
GENERATE_COMMAND = (REPO / "flows" / "cli.py", "generate")


def imported_packages(tree: ast.AST, exempt_function: str | None = None) -> set[str]:
    """Top-level packages imported anywhere in `tree` (function bodies too), except in the body
    of the module-level function named `exempt_function`."""
    function = module_function(tree, exempt_function) if exempt_function else None
    exempt = {id(node) for node in ast.walk(function)} if function else set()
    packages = set()
    for node in ast.walk(tree):
        if id(node) in exempt:
            continue
        if isinstance(node, ast.Import):
            packages |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            packages.add(node.module.split(".")[0])
    return packages


def module_function(tree: ast.AST, name: str) -> ast.FunctionDef | None:
    body = getattr(tree, "body", [])
    return next((node for node in body if isinstance(node, ast.FunctionDef) and node.name == name), None)


def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def modules_of(package: str) -> list[Path]:
    paths = sorted((REPO / package).rglob("*.py"))
    assert paths, f"no modules in {package}/"
    return paths


def project_imports(path: Path) -> set[str]:
    exempt = GENERATE_COMMAND[1] if path == GENERATE_COMMAND[0] else None
    return imported_packages(parsed(path), exempt) & PROJECT_PACKAGES


@pytest.mark.parametrize("package", sorted(ALLOWED_IMPORTS))
def test_each_package_imports_only_what_the_layout_allows(package: str) -> None:
    breaches = {
        str(path.relative_to(REPO)): sorted(imported - ALLOWED_IMPORTS[package])
        for path in modules_of(package)
        if (imported := project_imports(path)) - ALLOWED_IMPORTS[package]
    }
    assert breaches == {}


def test_the_generator_lives_in_the_simulator_not_in_tasks() -> None:
    simulator = {path.name for path in modules_of("simulator")}
    assert {"traffic.py", "counters.py", "generate.py"} <= simulator
    assert not simulator & ({path.name for path in modules_of("tasks")} - {"__init__.py"})
    assert (REPO / "simulator" / "TRAFFIC_MODEL.md").is_file()


def test_nad_generate_is_the_one_command_over_the_simulator() -> None:
    path, name = GENERATE_COMMAND
    command = module_function(parsed(path), name)
    assert command is not None, f"no function {name} in {path.relative_to(REPO)}"
    assert "simulator" in imported_packages(command)
    assert "simulator" not in imported_packages(parsed(path), exempt_function=name)


@pytest.mark.parametrize(
    "source",
    [
        "import simulator",
        "import simulator.counters as counters",
        "import numpy, simulator.traffic",
        "from simulator import traffic",
        "from simulator.generate import generate_dataset",
        "def score():\n    from simulator.generate import DaySummary",
        "class Step:\n    def run(self):\n        import simulator",
        "def generate():\n    import simulator\n\n\nimport simulator.traffic",
        "if True:\n    try:\n        import simulator\n    except ImportError:\n        pass",
    ],
)
def test_the_check_sees_every_form_of_import(source: str) -> None:
    assert "simulator" in imported_packages(ast.parse(source), exempt_function="generate")


@pytest.mark.parametrize(
    "source",
    [
        "import simulators",
        "from schemas import simulator",
        "from . import simulator",
        "def generate():\n    from simulator.generate import generate_dataset",
    ],
)
def test_the_check_ignores_what_is_not_an_import_of_the_simulator(source: str) -> None:
    assert "simulator" not in imported_packages(ast.parse(source), exempt_function="generate")
