"""The house rules of ARCHITECTURE.md, checked on the source: which package may import which,
no import cycles, and routes declared only in routes modules, each with its scope."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest
from starlette.routing import BaseRoute

from core.http import Endpoint
from service.routes import ROUTES

ROOT = Path(__file__).resolve().parents[2]

# Lower floors first. A module may import its own package and packages on a lower floor only;
# packages on one floor do not import each other.
FLOORS: list[set[str]] = [
    {"sql"},  # the schema, its migration runner, every statement
    {"core"},  # settings, errors, the pool, logs, periods, budgets, metrics, HTTP helpers
    {"auth", "ingest"},  # API keys; the write path
    {"alerts"},  # rules, channels, silences, incidents
    {"monitoring"},  # monitored services, health, SLA
    {"query"},  # the read path (the dashboard reads alerts and monitoring)
    {"jobs"},  # background and DBA work, and its CLI
    {"service"},  # HTTP: the route table, the front layer, OpenAPI, the app
    {"bench"},  # benchmarks
]
FLOOR = {package: level for level, packages in enumerate(FLOORS) for package in packages}
SCOPES = {None, "ingest", "read", "admin"}
# What makes a route: Starlette's constructors and methods, and ours.
ROUTE_MAKERS = {"Route", "Endpoint", "Mount", "Host", "Router", "WebSocketRoute", "add_route"}
ROUTE_MAKERS |= {"add_websocket_route", "route"}


def modules() -> dict[str, Path]:
    found = {}
    for package in FLOOR:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = modules()


def _type_checking_only(tree: ast.Module) -> set[int]:
    """The nodes under `if TYPE_CHECKING:` (its body only: they never run)."""
    return {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name | ast.Attribute)
        and ast.unparse(node.test).split(".")[-1] == "TYPE_CHECKING"
        for statement in node.body
        for inner in ast.walk(statement)
    }


def imports(name: str, path: Path) -> set[str]:
    """Every project module `path` (module `name`) imports, at any depth, relative imports and
    importlib.import_module("...") included, but not under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(), str(path))
    skipped = _type_checking_only(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from . import x, from ..core import y
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            # `from core import db` imports core.db when that is a module, else core
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        elif (
            isinstance(node, ast.Call)
            and ast.unparse(node.func).endswith("import_module")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names = [node.args[0].value]
        else:
            continue
        found.update(name for name in names if name.split(".")[0] in FLOOR)
    return found


GRAPH = {name: imports(name, path) for name, path in MODULES.items()}


def test_every_package_is_on_a_floor() -> None:
    """Every top-level folder holding Python code is a package on a floor (tests aside)."""
    folders = {
        path.relative_to(ROOT).parts[0]
        for path in ROOT.glob("*/**/*.py")
        if path.relative_to(ROOT).parts[0] not in {"tests"}
        and not path.relative_to(ROOT).parts[0].startswith(".")
    }
    assert folders == set(FLOOR)
    assert all((ROOT / package / "__init__.py").exists() for package in FLOOR)


def test_no_package_imports_a_higher_floor_or_its_neighbour() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if (source := module.split(".")[0]) != (dest := target.split(".")[0])
        and FLOOR[dest] >= FLOOR[source]
    ]
    assert wrong == []


def test_there_are_no_import_cycles() -> None:
    known = {
        name: {t for t in targets if t in MODULES and t != name} for name, targets in GRAPH.items()
    }
    # `import a.b` also runs a/__init__.py, which imports nothing of ours here: not an edge
    try:
        graphlib.TopologicalSorter(known).prepare()
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_routes_are_declared_only_in_routes_modules() -> None:
    """Every Route is an Endpoint (with its scope) in a package's routes module; bench/noop.py
    is the exception: a bare Starlette app the benchmarks use to measure the HTTP stack alone."""
    declaring = {
        name
        for name, path in MODULES.items()
        for node in ast.walk(ast.parse(path.read_text()))
        if (isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] in ROUTE_MAKERS)
        or (  # `from starlette.routing import Route as R`, then R(...)
            isinstance(node, ast.ImportFrom)
            and node.module == "starlette.routing"
            and any(alias.asname and alias.name in ROUTE_MAKERS for alias in node.names)
        )
    }
    assert declaring == {
        "ingest.routes",
        "query.routes",
        "alerts.routes",
        "monitoring.routes",
        "auth.routes",
        "service.routes",
        "bench.noop",
    }


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_every_route_declares_a_known_scope(route: BaseRoute) -> None:
    assert isinstance(route, Endpoint)
    assert route.scope in SCOPES
    assert not route.optional or route.path == "/metrics"
