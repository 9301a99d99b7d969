"""The tests' shared helpers: every plain function and constant used by more than one test
module is here, and only here (a helper used by one module stays in that module).

The pytest fixtures (databases, db_url, empty_db_url, db, client) are in tests/conftest.py;
where the tests get a database is tests/databases.py; the network peers of the notification
and health-check tests (an SMTP server, an HTTP receiver, free_port) are tests/peers.py.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import psycopg
import pytest
from psycopg import sql as pgsql
from starlette.testclient import TestClient

from auth import keys
from core.settings import load
from jobs.compact import rebuild
from service.app import create_app

# The app: a client of it in this process, or `python -m service` as its own process.


def make_client(url: str, scopes: str | None = "ingest,read,admin", **env: str) -> TestClient:
    """A client of a fresh app on `url`, sending a new key with `scopes` (None: no key)."""
    settings = load(
        {"DATABASE_URL": url, "MIGRATE_ON_START": "false", "RUN_SCHEDULER": "false", **env}
    )
    headers = {}
    if scopes is not None:
        _, key = keys.create(url, f"tests {scopes} {secrets.token_hex(4)}", scopes.split(","))
        headers["Authorization"] = f"Bearer {key}"
    return TestClient(create_app(settings), raise_server_exceptions=False, headers=headers)


@contextlib.contextmanager
def api_server(url: str, **env: str) -> Iterator[str]:
    """`python -m service` on `url` as its own process, as users run it, with `env` on top of
    the tests' environment; yields its base URL once /readyz answers 200."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    variables = {**os.environ, "DATABASE_URL": url, "PORT": str(port), **env}
    server = subprocess.Popen([sys.executable, "-m", "service"], env=variables)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx2.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            assert server.poll() is None, "the API server exited"
            assert time.monotonic() < deadline, "the API server did not start"
            time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


# Metric events, the raw events stored, and the group commit's writer held at a lock.

RECORD = "/api/v1/analytics/metrics/record"
BATCH = "/api/v1/analytics/metrics/batch"


def event(value: float, metric: str = "queue.depth", **fields: Any) -> dict[str, Any]:
    return {"metric_name": metric, "value": value, "metric_type": "gauge", **fields}


def count(db: psycopg.Connection[Any], where: str = "true") -> int:
    query = pgsql.SQL("SELECT count(*) FROM analytics.metric_events WHERE {}").format(
        pgsql.SQL(where)
    )
    row = db.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def stored_events(db: psycopg.Connection[Any], metric: str) -> list[tuple[Any, ...]]:
    """(time, value, tags, metric type) of every raw event of `metric`, oldest first."""
    return db.execute(
        "SELECT e.time, e.value, s.tags, m.metric_type FROM analytics.metric_events AS e "
        "JOIN analytics.series AS s ON s.id = e.series_id "
        "JOIN analytics.metrics AS m ON m.id = s.metric_id WHERE m.name = %s ORDER BY e.time",
        (metric,),
    ).fetchall()


def wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


@contextlib.contextmanager
def events_table_locked(db_url: str) -> Iterator[Callable[[], int]]:
    """Holds an exclusive lock on the raw events' store; yields a function counting blocked
    writers."""
    with psycopg.connect(db_url) as holder, psycopg.connect(db_url, autocommit=True) as probe:
        holder.execute("LOCK TABLE analytics.metric_event_store IN ACCESS EXCLUSIVE MODE")

        def waiting() -> int:
            row = probe.execute(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = "
                "'analytics.metric_event_store'::regclass"
            ).fetchone()
            return int(row[0]) if row else 0

        try:
            yield waiting
        finally:
            holder.rollback()


# Platform events: a user's week of them, on days that stay put while the suite runs.

EVENTS = "/api/v1/analytics/events"


def utc_today(now: datetime | None = None) -> datetime:
    """The UTC day of `now` (default: this moment). Tests read it when they run, never at
    import: a suite crossing 00:00 UTC would pair yesterday's date with the server's today."""
    return (now or datetime.now(UTC)).replace(hour=0, minute=0, second=0, microsecond=0)


# Weeks from today, so a suite crossing midnight moves no window past these days.
MONDAY = utc_today() - timedelta(days=utc_today().weekday() + 21)  # three weeks ago
TUESDAY = MONDAY + timedelta(days=1)


def at(day: datetime, hours: float) -> str:
    return (day + timedelta(hours=hours)).isoformat()


def post(client: TestClient, events: list[dict[str, Any]]) -> None:
    response = client.post(EVENTS, json=events)
    assert response.status_code == 200, response.text


def user_week(client: TestClient) -> None:
    u = {"user_id": "u1"}
    post(
        client,
        [
            {"event_type": "session_start", **u, "timestamp": at(MONDAY, 9)},
            {"event_type": "session_start", **u, "timestamp": at(MONDAY, 14)},
            *[{"event_type": "page_view", **u, "timestamp": at(MONDAY, 9.1)} for _ in range(3)],
            {"event_type": "user_action", **u, "timestamp": at(MONDAY, 9.2)},
            {"event_type": "active_time", **u, "value": 120, "timestamp": at(MONDAY, 10)},
            {
                "event_type": "contract_created",
                **u,
                "contract_id": "c1",
                "timestamp": at(MONDAY, 11),
            },
            {"event_type": "credits_purchased", **u, "amount": 100, "timestamp": at(MONDAY, 11)},
            {
                "event_type": "credits_spent",
                **u,
                "agent_id": "a1",
                "amount": 30,
                "timestamp": at(MONDAY, 12),
            },
            {
                "event_type": "agent_call",
                **u,
                "agent_id": "a1",
                "success": True,
                "duration_ms": 100,
                "timestamp": at(MONDAY, 12),
            },
            {
                "event_type": "orchestration_run",
                **u,
                "value": 3,
                "duration_ms": 900,
                "timestamp": at(MONDAY, 13),
            },
            {
                "event_type": "payment",
                **u,
                "agent_id": "a1",
                "amount": 40,
                "fee": 4,
                "timestamp": at(MONDAY, 16),
            },
            {"event_type": "session_start", **u, "timestamp": at(TUESDAY, 9)},
            {
                "event_type": "payment",
                **u,
                "agent_id": "a2",
                "amount": 25,
                "fee": 2.5,
                "timestamp": at(TUESDAY, 12),
            },
            {
                "event_type": "credits_spent",
                **u,
                "agent_id": "a2",
                "amount": 20,
                "timestamp": at(TUESDAY, 10),
            },
            {
                "event_type": "agent_call",
                **u,
                "agent_id": "a1",
                "success": True,
                "duration_ms": 100,
                "timestamp": at(TUESDAY, 10),
            },
            {
                "event_type": "contract_cancelled",
                **u,
                "contract_id": "c1",
                "timestamp": at(TUESDAY, 11),
            },
        ],
    )


# Alert rules: the seed rule, and the values its metric is recorded with.

RULES = "/api/v1/analytics/alerts/rules"
SEED_RULE = {
    "name": "high_error_rate",
    "metric_name": "api.error_rate",
    "condition_operator": "gt",
    "threshold": 5.0,
    "severity": "critical",
    "description": "Alert when error rate exceeds 5%",
    "duration_seconds": 300,
}
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=40)


def record(
    client: TestClient, value: float, at: datetime, metric: str = "api.error_rate", **tags: str
) -> None:
    event = {
        "metric_name": metric,
        "value": value,
        "metric_type": "gauge",
        "tags": tags,
        "timestamp": at.isoformat(),
    }
    assert client.post("/api/v1/analytics/metrics/record", json=event).status_code == 200


def rule(client: TestClient, **fields: Any) -> dict[str, Any]:
    response = client.post(RULES, json={**SEED_RULE, **fields})
    assert response.status_code == 201, response.text
    return dict(response.json())


# Rollup tiers against a rebuild from raw events.

TIERS = ("series_1m", "series_1h", "series_1d", "metric_1m", "metric_1h", "metric_1d")


def tier_rows(db: psycopg.Connection[Any]) -> dict[str, list[tuple[Any, ...]]]:
    found = {}
    for tier in TIERS:
        owner = "series_id" if tier.startswith("series") else "metric_id"
        found[tier] = db.execute(
            pgsql.SQL(
                "SELECT bucket, {}, count, sum, min, max, keys, counts::bigint[], k50, k95, k99 "
                "FROM analytics.{} ORDER BY 1, 2"
            ).format(pgsql.Identifier(owner), pgsql.Identifier(tier))
        ).fetchall()
    return found


def assert_tiers_equal_raw(db: psycopg.Connection[Any], db_url: str) -> None:
    """The tiers as the compactor left them equal a rebuild of everything from raw events."""
    compacted = tier_rows(db)
    rebuild(db_url, datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(days=1))
    rebuilt = tier_rows(db)
    for tier in TIERS:
        assert len(compacted[tier]) == len(rebuilt[tier]), tier
        for got, want in zip(compacted[tier], rebuilt[tier], strict=True):
            assert got[:3] == want[:3] and got[4:] == want[4:], (tier, got, want)
            assert got[3] == pytest.approx(want[3], rel=1e-12), (tier, got, want)


# `python -m jobs` as users run it.


def jobs_cli(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"]}
    if url:
        env["DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "jobs", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


# Batch tracking and the rows it materialises.

TRACK = "/api/v1/analytics/batch-track"
TABLES = ("user_analytics", "agent_analytics", "platform_metrics")


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def track(client: TestClient, start: datetime, end: datetime, kind: str = "day") -> Any:
    response = client.post(
        TRACK,
        json={"period_start": iso(start), "period_end": iso(end), "period_type": kind},
    )
    assert response.status_code == 200, response.text
    return response.json()


def stored(db: psycopg.Connection[Any]) -> dict[str, list[tuple[Any, ...]]]:
    """Every materialised row with its xmin: a row rewritten with equal values shows."""
    return {
        table: db.execute(
            f"SELECT xmin::text, * FROM analytics.{table} ORDER BY 2, 3, 4"
        ).fetchall()
        for table in TABLES
    }
