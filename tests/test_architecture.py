"""The codebase's shape, checked: small functions, small modules, a thin entry point, a pure logic layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
MODULES = sorted(SRC.rglob("*.py"))
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 450
MAX_ENTRY_POINT_LINES = 120
MAX_PARAMETERS = 8


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_the_source_tree_is_found() -> None:
    assert len(MODULES) > 30, MODULES  # guards every test below against checking an empty list


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_over_the_limit(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(SRC)} has {lines} lines (limit {MAX_MODULE_LINES})"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_function_over_the_limit(path: Path) -> None:
    long = [
        f"{f.name} (line {f.lineno}): {f.end_lineno - f.lineno + 1} lines"
        for f in _functions(ast.parse(path.read_text()))
        if f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path.relative_to(SRC)}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def _parameters(f: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Positional and keyword-only parameters but ``self``/``cls``, ``*args`` and ``**kwargs`` one each."""
    names = [a.arg for a in (*f.args.posonlyargs, *f.args.args, *f.args.kwonlyargs)]
    own = names[1:] if names[:1] in (["self"], ["cls"]) else names
    return len(own) + (f.args.vararg is not None) + (f.args.kwarg is not None)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_function_takes_over_the_parameter_limit(path: Path) -> None:
    many = [
        f"{f.name} (line {f.lineno}): {_parameters(f)} parameters"
        for f in _functions(ast.parse(path.read_text()))
        if _parameters(f) > MAX_PARAMETERS
    ]
    assert not many, f"{path.relative_to(SRC)}: functions over {MAX_PARAMETERS} parameters: {many}"


def test_entry_point_is_thin() -> None:
    lines = len((SRC / "train.py").read_text().splitlines())
    assert lines < MAX_ENTRY_POINT_LINES, f"src/train.py has {lines} lines"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_logic_is_pure() -> None:
    """``lenbench.logic`` holds formulas, metrics and extraction: no torch, Lightning, MLflow, Hydra or files."""
    forbidden = (
        "torch",
        "pytorch_lightning",
        "lightning",
        "mlflow",
        "hydra",
        "matplotlib",
        "lenbench.tracking",
    )
    for path in sorted((SRC / "lenbench" / "logic").rglob("*.py")):
        bad = {
            name for name in _imports(path) if name.split(".")[0] in forbidden or name.startswith(forbidden)
        }
        assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"


def test_only_the_job_layer_knows_hydra() -> None:
    """Below the job API nothing imports Hydra: experiments, explainers, data and tracking are plain Python."""
    allowed = {SRC / "train.py", SRC / "lenbench" / "job.py", SRC / "lenbench" / "config.py"}
    allowed.add(SRC / "lenbench" / "tune" / "__main__.py")  # the tuning entry point, composed like train
    allowed.add(SRC / "hydra_plugins" / "lenbench_seed_batching" / "launcher.py")  # a Hydra launcher plugin
    for path in MODULES:
        if path in allowed:
            continue
        hydra = {name for name in _imports(path) if name.split(".")[0] == "hydra"}
        assert not hydra, f"{path.relative_to(SRC)} imports {sorted(hydra)}"


def test_metric_names_are_declared_once() -> None:
    """No module but the registry spells out the list of fold metrics (the old FOLD_METRICS tuple)."""
    for path in MODULES:
        if path.name == "scoring.py":
            continue
        text = path.read_text()
        assert "FOLD_METRICS" not in text, path
        listed = sum(f'"{name}"' in text for name in ("model_f1", "model_auroc", "explanation_f1"))
        assert listed < 3, f"{path.relative_to(SRC)} lists the metrics itself; read lenbench.scoring.METRICS"


PACKAGE = SRC / "lenbench"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


LENBENCH_MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imported_modules(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool) -> set[str]:
    """The lenbench modules one import statement names: ``import a.b`` names ``a.b``; ``from a import b`` names
    ``a.b`` when that is a module, else ``a``; relative names are resolved against the importer's package."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = importer.split(".")
            package = package if is_package else package[:-1]
            package = package[: len(package) - node.level + 1]
            base = ".".join([*package, base] if base else package)
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in LENBENCH_MODULES else base for a in node.names]
    return {name for name in names if name in LENBENCH_MODULES}


def _import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in LENBENCH_MODULES.items():
        edges = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= _imported_modules(node, name, path.name == "__init__.py") - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = [stack.pop()]
            while component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    """No two lenbench modules import each other, directly or around a longer loop.

    Every ``import``/``from`` statement counts wherever it stands: at the top, inside a function, under
    ``if TYPE_CHECKING``. An import of a submodule (``lenbench.a.b``, or ``from lenbench.a import b`` where ``b`` is
    a module) is an edge to that submodule only, not to its parent packages' ``__init__.py`` that Python runs first:
    a package re-exporting its submodules is not a cycle with them. An import of a name a package defines or
    re-exports (``from lenbench.data import DataError``) is an edge to that package's ``__init__.py``, so a
    submodule that imports from its own package's ``__init__`` while the ``__init__`` imports it is a cycle.
    """
    graph = _import_graph()
    assert len(graph) > 30 and sum(map(len, graph.values())) > 50, graph  # the graph was really read
    cycles = _cycles(graph)
    assert not cycles, "import cycles among lenbench modules:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_check_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def _function_level_imports(tree: ast.AST) -> list[list[ast.Import | ast.ImportFrom]]:
    """The imports inside functions, as runs of consecutive import statements of one body."""
    runs: list[list[ast.Import | ast.ImportFrom]] = []
    for function in _functions(tree):
        for body in (n.body for n in ast.walk(function) if hasattr(n, "body") and isinstance(n.body, list)):
            run: list[ast.Import | ast.ImportFrom] = []
            for statement in [*body, None]:
                if isinstance(statement, (ast.Import, ast.ImportFrom)):
                    run.append(statement)
                    continue
                if run:
                    runs.append(run)
                run = []
    return runs


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_function_level_imports_of_lenbench_say_why(path: Path) -> None:
    """An import of a lenbench module inside a function defers something heavy on purpose, and says so.

    The reason is a comment (``# deferred: ...``) on the line before the run of imports it belongs to, or on the
    line of any import of that run (consecutive import statements of one body share one comment). Any other
    lenbench import belongs at the top of its module, where the import graph shows it.
    """
    text = path.read_text()
    lines = text.splitlines()
    name = _module_name(path) if path.is_relative_to(PACKAGE) else path.stem
    silent = []
    for run in _function_level_imports(ast.parse(text)):
        if not any(_imported_modules(node, name, path.name == "__init__.py") for node in run):
            continue
        spans = [lines[n.lineno - 1 : n.end_lineno] for n in run]
        commented = lines[run[0].lineno - 2].strip().startswith("#") or any(
            "#" in line for span in spans for line in span
        )
        if not commented:
            silent.append(f"line {run[0].lineno}: {lines[run[0].lineno - 1].strip()}")
    assert not silent, f"{path.relative_to(SRC)}: function-level lenbench imports without a comment: {silent}"
