from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest

import sql


def all_query_names() -> list[str]:
    return sorted(sql._all_queries())


@pytest.mark.parametrize("name", all_query_names())
def test_every_named_query_prepares_against_the_schema(
    db: psycopg.Connection[Any], name: str
) -> None:
    # PREPARE parses and plans the statement without running it: a typo in a column or a
    # type fails here, not in production. psycopg's %(name)s placeholders become $1, $2, ...
    numbers: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        return f"${numbers.setdefault(match.group(1), len(numbers) + 1)}"

    statement = re.sub(r"%\((\w+)\)s", number, sql.query(name))
    db.execute(f"PREPARE check_statement AS {statement}".encode())
    db.execute("DEALLOCATE check_statement")


def test_a_query_defined_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        sql.parse_named("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n", "x.sql")


def test_an_unknown_query_name_says_where_it_looked() -> None:
    with pytest.raises(sql.UnknownQuery, match="no query named 'nope'"):
        sql.query("nope")
