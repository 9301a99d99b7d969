"""The schema and every SQL statement the service runs.

- ``migrations/NNNN_name.sql``: run-once migrations, applied in order, never edited once landed.
- ``idempotent/*.sql``: definitions (functions, comments) re-applied on every migrate.
- ``queries/*.sql``: named statements, each under a ``-- name: <name>`` header, looked up by
  name from Python with :func:`query`.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent
MIGRATIONS = ROOT / "migrations"
IDEMPOTENT = ROOT / "idempotent"
QUERIES = ROOT / "queries"

_HEADER = re.compile(r"^--\s*name:\s*([a-z0-9_]+)\s*$", re.MULTILINE)


class UnknownQuery(KeyError):
    pass


def parse_named(text: str, source: str) -> dict[str, str]:
    """Split a file of named statements into {name: statement}."""
    found: dict[str, str] = {}
    headers = list(_HEADER.finditer(text))
    for i, header in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
        body = text[header.end() : end].strip()
        name = header.group(1)
        if name in found:
            raise ValueError(f"{source}: query {name!r} is defined twice")
        if not body:
            raise ValueError(f"{source}: query {name!r} is empty")
        found[name] = body.rstrip(";").rstrip()
    return found


@cache
def _all_queries() -> dict[str, str]:
    queries: dict[str, str] = {}
    for path in sorted(QUERIES.glob("*.sql")):
        for name, statement in parse_named(path.read_text(), path.name).items():
            if name in queries:
                raise ValueError(f"{path.name}: query {name!r} is also defined elsewhere")
            queries[name] = statement
    return queries


def query(name: str) -> str:
    """The SQL text of a named statement from sql/queries/."""
    try:
        return _all_queries()[name]
    except KeyError:
        raise UnknownQuery(f"no query named {name!r} in {QUERIES}") from None


# The two kinds of rollup tier, with the column naming what a row is of (0015_rollup_tiers).
TIER_KINDS = {"series": "series_id", "metric": "metric_id"}


def tier_query(name: str, kind: str) -> str:
    """A statement of sql/queries/tiers.sql for one kind of tier: `{kind}` and `{owner}` filled
    in from TIER_KINDS, a fixed pair, never from input."""
    return query(name).format(kind=kind, owner=TIER_KINDS[kind])
