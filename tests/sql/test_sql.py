from __future__ import annotations

import re
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
    statement = re.sub(r"%\((\w+)\)s", number, text)
    db.execute(f"PREPARE check_statement AS {statement}".encode())
    db.execute("DEALLOCATE check_statement")


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
