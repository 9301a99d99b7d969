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


def modules() -> dict[str, Path]:
    found = {}
    for package in FLOOR:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = modules()


def imports(path: Path) -> set[str]:
    """Every project module `path` imports, at any depth but `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text(), str(path))
    skipped = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from core import db` imports core.db when that is a module, else core
            names = [
                f"{node.module}.{alias.name}"
                if f"{node.module}.{alias.name}" in MODULES
                else node.module
                for alias in node.names
            ]
        else:
            continue
        found.update(name for name in names if name.split(".")[0] in FLOOR)
    return found


GRAPH = {name: imports(path) for name, path in MODULES.items()}


def test_every_package_is_on_a_floor() -> None:
    packages = {
        path.parent.name
        for path in ROOT.glob("*/__init__.py")
        if path.parent.name not in {"tests"} and not path.parent.name.startswith(".")
    }
    assert packages == set(FLOOR)


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
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in {"Route", "Endpoint", "Mount", "WebSocketRoute"}
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
