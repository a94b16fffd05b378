"""The layout is the architecture: who may import whom, read from the source with `ast`.

    simulator -> schemas          tasks -> schemas          flows -> tasks, schemas
    `nad generate` (the function `generate` in flows/cli.py) -> simulator
    tests, benchmarks -> all of them; nothing imports tests or benchmarks

The pipeline (tasks/, flows/, schemas/) never imports the simulator; ruff's TID251 says the same
at lint time (pyproject.toml), this test also catches imports that a `noqa` would hide.

Inside tasks/, one package per stage, in pipeline order (STAGES): a stage imports only the stages
before it and the shared leaves; scoring and monitoring never reach training code, not even
through another module. No project module is part of an import cycle (lazy imports count too).
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
STAGES = ("ingest", "model", "training", "registry", "scoring", "monitoring")  # pipeline order
SHARED_LEAVES = frozenset({"errors", "progress", "metrics", "cluster", "files"})  # tasks/NAME.py
NEVER_REACHES = {"scoring": "training", "monitoring": "training"}


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


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def imported_modules(tree: ast.AST) -> set[str]:
    """Every module imported anywhere in `tree` (function bodies too), `from M import N` as M."""
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def import_graph(packages=("schemas", "simulator", "tasks", "flows")) -> dict[str, set[str]]:
    """Project module -> the project modules it imports."""
    paths = [path for package in packages for path in modules_of(package)]
    names = {module_name(path) for path in paths}
    return {module_name(path): imported_modules(parsed(path)) & names for path in paths}


def stage_of(module: str) -> str:
    """`tasks.scoring.score` -> `scoring`; a shared leaf `tasks.errors` -> `errors`."""
    return module.split(".")[1]


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for name in graph[todo.pop()] - seen:
            seen.add(name)
            todo.append(name)
    return seen


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each module that lies on one (depth-first search)."""
    found, state, path = [], {}, []

    def visit(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for name in sorted(graph[module]):
            if state.get(name) == "open":
                found.append([*path[path.index(name) :], name])
            elif name not in state:
                visit(name)
        path.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def test_tasks_holds_only_stage_packages_and_shared_leaves() -> None:
    loose = {path.stem for path in (REPO / "tasks").glob("*.py")} - {"__init__"}
    folders = {
        path.name for path in (REPO / "tasks").iterdir() if path.is_dir() and path.name != "__pycache__"
    }
    assert loose <= SHARED_LEAVES
    assert folders == set(STAGES)


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_package_says_what_comes_in_what_goes_out_and_what_holds(stage: str) -> None:
    tree = parsed(REPO / "tasks" / stage / "__init__.py")
    docstring = ast.get_docstring(tree) or ""
    assert len(tree.body) == 1 and docstring, "a docstring and nothing else"
    assert all(word in docstring for word in ("\nIn: ", "Out", "\nInvariants: "))


def test_a_stage_imports_only_the_stages_before_it_and_the_shared_leaves() -> None:
    graph = import_graph(("tasks",))
    breaches = set()
    for module, imported in graph.items():
        if module == "tasks":
            continue
        stage = stage_of(module)
        allowed = (
            set(SHARED_LEAVES)
            if stage in SHARED_LEAVES
            else {*SHARED_LEAVES, *STAGES[: STAGES.index(stage) + 1]}
        )
        breaches |= {(module, name) for name in imported if name != "tasks" and stage_of(name) not in allowed}
    assert breaches == set()


@pytest.mark.parametrize(("stage", "forbidden"), sorted(NEVER_REACHES.items()))
def test_scoring_never_reaches_training_code(stage: str, forbidden: str) -> None:
    graph = import_graph(("tasks", "schemas"))
    reached = {
        (module, name)
        for module in graph
        if module.startswith(f"tasks.{stage}.")
        for name in reachable(graph, module)
        if name.startswith(f"tasks.{forbidden}.")
    }
    assert reached == set()


def test_no_project_module_lies_on_an_import_cycle() -> None:
    assert cycles(import_graph()) == []


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"a"}}, [["a", "b", "a"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c", "a"]]),
        ({"a": {"a"}}, [["a", "a"]]),
    ],
)
def test_the_cycle_check_sees_a_cycle(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert cycles(graph) == expected


FUNCTION_LINE_LIMIT = 50


def long_functions(tree: ast.AST) -> dict[str, int]:
    """Functions (methods and nested ones too) of more than FUNCTION_LINE_LIMIT lines, from their
    `def` line to their last line, decorators not counted."""
    return {
        node.name: node.end_lineno - node.lineno + 1
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > FUNCTION_LINE_LIMIT
    }


def test_no_function_in_tasks_or_flows_is_over_50_lines() -> None:
    too_long = {
        f"{path.relative_to(REPO)}:{name}": lines
        for package in ("tasks", "flows")
        for path in modules_of(package)
        for name, lines in long_functions(parsed(path)).items()
    }
    assert too_long == {}


def test_the_length_check_counts_from_def_to_the_last_line() -> None:
    body = "\n".join(["    x = 1"] * (FUNCTION_LINE_LIMIT - 1))
    assert long_functions(ast.parse(f"@task\ndef fits():\n{body}\n")) == {}
    assert long_functions(ast.parse(f"def over():\n{body}\n    x = 2\n")) == {"over": FUNCTION_LINE_LIMIT + 1}
