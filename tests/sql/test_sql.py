from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import sql


def all_statements() -> list[tuple[str, str | None]]:
    """Every named query, a tier statement once for each kind of tier."""
    found: list[tuple[str, str | None]] = []
    for name, text in sorted(sql._all_queries().items()):
        if "{owner}" in text:
            found.extend((name, kind) for kind in sql.TIER_KINDS)
        else:
            found.append((name, None))
    return found


@pytest.mark.parametrize(("name", "kind"), all_statements())
def test_every_named_query_prepares_against_the_schema(
    db: psycopg.Connection[Any], name: str, kind: str | None
) -> None:
    # PREPARE parses and plans the statement without running it: a typo in a column or a
    # type fails here, not in production. psycopg's %(name)s placeholders become $1, $2, ...
    numbers: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        return f"${numbers.setdefault(match.group(1), len(numbers) + 1)}"

    text = sql.query(name) if kind is None else sql.tier_query(name, kind)
    if _first_word(text) not in PREPARABLE:
        # SET and DDL cannot be prepared: run in a transaction rolled back (parameterless).
        assert "%(" not in text, f"{name}: a statement PREPARE cannot take has parameters"
        with db.transaction(force_rollback=True):
            db.execute(text.encode())
        return
    statement = re.sub(r"%\((\w+)\)s", number, text)
    db.execute(f"PREPARE check_statement AS {statement}".encode())
    db.execute("DEALLOCATE check_statement")


PREPARABLE = {"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "VALUES", "WITH"}


def _first_word(statement: str) -> str:
    """The statement's first keyword, past its leading comment lines."""
    code = re.sub(r"^(\s*--[^\n]*\n)*\s*", "", statement)
    return code.split(None, 1)[0].upper()


def test_a_query_defined_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        sql.parse_named("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n", "x.sql")


def test_an_unknown_query_name_says_where_it_looked() -> None:
    with pytest.raises(sql.UnknownQuery, match="no query named 'nope'"):
        sql.query("nope")


def test_sketch_keys_are_computed_inline_with_the_values_of_0003(
    db: psycopg.Connection[Any],
) -> None:
    # Called as a function per row, sketch_key made keying raw events several times slower than
    # a plain percentile over them; inlined, the plan holds its expression instead of a call.
    plan = db.execute(
        "EXPLAIN (VERBOSE, COSTS OFF) SELECT analytics.sketch_key(v), analytics.sketch_value(k) "
        "FROM (VALUES (1.5::float8, 50001)) AS t (v, k)"
    ).fetchall()
    text = "\n".join(row[0] for row in plan)
    assert "sketch_key" not in text and "sketch_value" not in text, text
    # The keys 0003's definition gives (ceil(ln |v| / ln g), biased, mirrored; zero alone).
    rows = db.execute(
        "SELECT v, analytics.sketch_key(v)"
        " FROM unnest(ARRAY[125.5, 1, 0.001, 0, -3.25, NULL]::float8[]) AS t (v)"
    ).fetchall()
    assert rows == [
        (125.5, 50269),
        (1.0, 50000),
        (0.001, 49617),
        (0.0, 0),
        (-3.25, -50066),
        (None, None),
    ]
    assert db.execute("SELECT analytics.sketch_value(NULL)").fetchone() == (None,)


def test_every_finite_value_has_a_representative_within_one_percent(
    db: psycopg.Connection[Any],
) -> None:
    extremes = [1.7976931348623157e308, 1.79e308, 1e308, 5e-324, 2.2e-308, 33.125]
    extremes += [-v for v in extremes]
    rows = db.execute(
        "SELECT v, analytics.sketch_value(analytics.sketch_key(v)) FROM unnest(%s::float8[]) AS v",
        (extremes,),
    ).fetchall()
    for value, representative in rows:
        assert abs(representative / value - 1) <= 0.01, (value, representative)


# No static SQL outside sql/: every statement is a named one of sql/queries/*.sql, save the
# dynamic builders below (sql/README.md says why each cannot be a named statement).

ROOT = Path(__file__).resolve().parents[2]
NOT_SCANNED = {"tests", "bench"}  # (tests and benchmarks set up their own data in SQL)
SQL_VERBS: tuple[str, ...] = (
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "WITH",
    "SET",
    "CREATE",
    "ALTER",
    "DROP",
)
SQL_VERBS += ("LOCK", "VACUUM", "ANALYZE", "COPY", "TRUNCATE", "CALL", "SHOW", "BEGIN", "COMMIT")
SQL_VERBS += ("ROLLBACK", "REFRESH", "VALUES", "MERGE", "COMMENT", "DO", "GRANT", "REVOKE")
SQL_VERBS += ("EXPLAIN", "LISTEN", "NOTIFY", "DISCARD", "RESET", "PREPARE", "EXECUTE", "DECLARE")
SQL_VERBS += ("CLUSTER", "REINDEX", "SAVEPOINT", "RELEASE", "TABLE")
_SQL_START = re.compile(rf"({'|'.join(SQL_VERBS)})\s")
# What may come before the verb: blanks, opening parentheses, -- comment lines.
_SQL_LEAD = re.compile(r"^(?:\s|\(|--[^\n]*(?:\n|$))*")
# Calls that run or compose SQL (psycopg's and asyncpg's; psycopg.sql.SQL).
SQL_CALLS = {
    "execute",
    "executemany",
    "fetch",
    "fetchrow",
    "fetchval",
    "prepare",
    "cursor",
    "copy",
    "copy_from_query",
    "SQL",
}
# module.function (the innermost function or method, with its class) -> why its SQL is built in
# Python. Kept in step with sql/README.md, "Dynamic builders".
DYNAMIC_BUILDERS = {
    "jobs.track._upsert": (
        "per kind of tracked figures: the table and id column from the fixed TABLES map, the "
        "column lists from the table's own columns (psycopg.sql.Identifier)"
    ),
    "jobs.retention.apply": (
        "show_chunks or drop_chunks, a fixed pair; the cut-off is an interval or a timestamptz "
        'by relation, which both take as "any": a prepared statement could not type it'
    ),
}


def scanned_packages() -> list[Path]:
    """Every top-level package of the project but the tests and benchmarks."""
    return sorted(
        path.parent
        for path in ROOT.glob("*/__init__.py")
        if path.parent.name not in NOT_SCANNED and not path.parent.name.startswith(".")
    )


def _strings(node: ast.expr) -> Iterator[ast.Constant]:
    """The string constants an expression builds its text from: a literal, the pieces of an
    f-string, either side of + or %, both branches of `x if c else y`, the elements of a
    container, the string a method such as .format() or .encode() is called on."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
        yield node
    elif isinstance(node, ast.JoinedStr):
        for value in node.values:
            yield from _strings(value)
    elif isinstance(node, ast.BinOp):
        yield from _strings(node.left)
        yield from _strings(node.right)
    elif isinstance(node, ast.IfExp):
        yield from _strings(node.body)
        yield from _strings(node.orelse)
    elif isinstance(node, ast.List | ast.Tuple | ast.Set):
        for element in node.elts:
            yield from _strings(element)
    elif isinstance(node, ast.Dict):
        for value in node.values:
            yield from _strings(value)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        yield from _strings(node.func.value)


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


class _SqlLiterals(ast.NodeVisitor):
    def __init__(self, module: str) -> None:
        self.scope = [module]
        self.found: list[tuple[str, int, str]] = []  # (module.function, line, text)

    def _scoped(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scoped

    def _check(self, expression: ast.expr | None) -> None:
        for constant in _strings(expression) if expression is not None else ():
            value = constant.value
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            text = _SQL_LEAD.sub("", text, count=1)
            if _SQL_START.match(text.upper()):
                self.found.append((".".join(self.scope), constant.lineno, text))

    def visit_Call(self, node: ast.Call) -> None:
        if _callee(node) in SQL_CALLS:
            for argument in [*node.args, *(keyword.value for keyword in node.keywords)]:
                self._check(argument)
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        self._check(node.value)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._check(node.value)
        self.generic_visit(node)

    def visit_Return(self, node: ast.Return) -> None:
        self._check(node.value)
        self.generic_visit(node)


def sql_literals() -> list[tuple[str, str, int, str]]:
    """(file, module.function, line, text) of every SQL literal in the scanned packages."""
    found = []
    for package in scanned_packages():
        for path in sorted(package.rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            visitor = _SqlLiterals(module)
            visitor.visit(ast.parse(path.read_text(), str(path)))
            relative = str(path.relative_to(ROOT))
            found += [(relative, where, line, text) for where, line, text in visitor.found]
    return found


def test_no_static_sql_is_written_outside_sql() -> None:
    """Every static statement is a named one (sql/queries/*.sql, `sql.query(name)`).

    Flagged: a string constant (a literal, or a piece of an f-string) whose text, leading
    whitespace stripped and upper-cased, starts with an SQL verb followed by whitespace (an
    f-string's "SELECT " piece before its first field included), where it can only be SQL:
    an argument of a call that runs or composes SQL (SQL_CALLS: execute, fetch*, cursor, copy,
    psycopg.sql.SQL, ...), or what an assignment or a return builds (so a statement kept in a
    constant or variable first is caught too), through +, %, f-strings, conditionals,
    containers and .format()/.encode(). Not flagged: docstrings, log and error messages, API
    descriptions ("Create an alert rule"), HTTP methods ("DELETE"): plain words that are not
    in those places, so no wording has to change; on the tree this was written for, the rule
    finds exactly the dynamic builders. Those may stay, listed in DYNAMIC_BUILDERS with why.
    """
    packages = {package.name for package in scanned_packages()}
    assert {"jobs", "sql"} <= packages, packages
    stray = [
        f"{path}:{line} ({where}): {text.splitlines()[0][:80]}"
        for path, where, line, text in sql_literals()
        if where not in DYNAMIC_BUILDERS
    ]
    assert not stray, "SQL literals outside sql/queries (make them named statements):\n" + (
        "\n".join(stray)
    )


def test_every_dynamic_builder_listed_still_builds_sql() -> None:
    """An entry of DYNAMIC_BUILDERS whose function no longer writes SQL goes (and from
    sql/README.md): the list says exactly where SQL is still built in Python."""
    builders = {where for _, where, _, _ in sql_literals()}
    assert set(DYNAMIC_BUILDERS) <= builders, set(DYNAMIC_BUILDERS) - builders
    assert all(reason.strip() for reason in DYNAMIC_BUILDERS.values())


def test_the_scan_catches_sql_in_every_form_it_takes() -> None:
    source = '''
BOOT = """
CREATE TABLE t (x int);
"""
def f(conn, cur, verb):
    conn.execute("select 1")
    cur.execute("SELECT pg_advisory_lock(%s)", (1,))
    conn.fetchval(sql="UPDATE t SET x = 1")
    conn.execute(f"SELECT {verb}(%s)", (2,))
    statement = ("INSERT INTO t " "VALUES (1)")
    conn.execute(pgsql.SQL("DELETE FROM {}").format(pgsql.Identifier("t")))
    return "WITH a AS (SELECT 1) SELECT * FROM a".encode()
def g(log):
    """Select the rows: SELECT is a plain word here."""
    log.info("Set the policy with %s", 7)
    raise ValueError("create the table first")
    Op("DELETE", "/x", "Delete a rule")
'''
    visitor = _SqlLiterals("m")
    visitor.visit(ast.parse(source))
    assert [(where, line) for where, line, _ in visitor.found] == [
        ("m", 2),
        ("m.f", 6),
        ("m.f", 7),
        ("m.f", 8),
        ("m.f", 9),
        ("m.f", 10),
        ("m.f", 11),
        ("m.f", 12),
    ]
