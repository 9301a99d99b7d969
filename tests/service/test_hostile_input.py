"""SQL-injection and odd-text corpus through every path parameter (reads and writes), query
parameter, tag filter and group-by: no 5xx, no SQL error text in any answer, nothing changed
in the database."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import psycopg
from starlette.routing import Route
from starlette.testclient import TestClient

from core.settings import load
from service.app import create_app

CORPUS = [
    "'",
    '"',
    "\\",
    "--",
    ";",
    "$$",
    "\x00",
    "\u2019",  # a right single quotation mark
    "\u02bc",  # a modifier letter apostrophe
    "' OR '1'='1",
    "1; DROP TABLE analytics.metrics; --",
    "$1",
    "%s",
    "%(x)s",
    "a" * 5000,
    "\u202e",
    "x' UNION SELECT key_sha256 FROM analytics.api_keys --",
]
LEAKS = re.compile(r"(?i)syntax error|sqlstate|asyncpg|psycopg|relation \"|postgres|traceback")
QUERY_NAMES = [
    "hours",
    "start",
    "end",
    "tags",
    "group_by",
    "interval",
    "aggregation",
    "exact",
    "days",
    "period_type",
    "period_start",
    "limit",
    "status",
    "severity",
    "since",
    "job",
    "tag.region",
]


def get_paths() -> list[str]:
    app = create_app(load({"DATABASE_URL": "postgresql://unused/x"}))
    static = {"/openapi.json", "/docs"}  # the contract: it names PostgreSQL checks
    return [
        route.path
        for route in app.routes
        if isinstance(route, Route) and "GET" in (route.methods or ()) and route.path not in static
    ]


def existing(path: str) -> str:
    """`path` with its parameters naming things the test stored."""
    entity = "a1" if "/agent/" in path else "u1"
    return path.replace("{name}", "m").replace("{id}", entity)


def writes_with_path_parameters() -> list[tuple[str, str]]:
    app = create_app(load({"DATABASE_URL": "postgresql://unused/x"}))
    return [
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route) and "{" in route.path
        for method in sorted(route.methods or ())
        if method not in {"GET", "HEAD"}
    ]


def snapshot(db: psycopg.Connection[Any]) -> dict[str, Any]:
    """Every table of ours, by content."""
    tables = db.execute(
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
        "WHERE schemaname IN ('analytics', '_analytics') ORDER BY 1"
    ).fetchall()
    return {
        name: db.execute(
            f"SELECT count(*), md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {name} t"
        ).fetchone()
        for (name,) in tables
    }


def check(answer: Any, where: str) -> None:
    assert answer.status_code < 500, (where, answer.status_code, answer.text[:300])
    assert not LEAKS.search(answer.text), (where, answer.text[:300])


def test_hostile_text_everywhere_in_reads(client: TestClient, db: psycopg.Connection[Any]) -> None:
    client.post(
        "/api/v1/analytics/metrics/record",
        json={"metric_name": "m", "value": 1, "metric_type": "gauge", "tags": {"region": "eu"}},
    )
    client.post(
        "/api/v1/analytics/events",
        json=[{"event_type": "page_view", "user_id": "u1", "agent_id": "a1"}],
    )
    before = snapshot(db)

    for path in get_paths():
        for text in CORPUS:
            filled = re.sub(r"\{[^}]+\}", quote(text, safe=""), path)
            check(client.get(filled), filled)
            real = existing(path)  # so that the query reaches the handler
            for name in QUERY_NAMES:
                check(client.get(real, params={name: text}), f"{real}?{name}")

    for method, path in writes_with_path_parameters():
        for text in CORPUS:
            filled = re.sub(r"\{[^}]+\}", quote(text, safe=""), path)
            answer = client.request(method, filled, json={})
            check(answer, f"{method} {filled}")
            assert answer.status_code in {400, 404, 405, 422}, (method, filled, answer.status_code)

    assert snapshot(db) == before  # nothing was read into a write, nothing matched a name
