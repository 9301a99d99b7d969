"""Service health checks: run concurrently, each cut at its own timeout, results recorded.

A check answers healthy, degraded (it answered but took longer than `degraded_ms`, or an http
target sent the header ``X-Health: degraded``) or unhealthy (an error, a timeout, an unexpected
status or body). Results go to the analytics.health_checks hypertable; analytics.service_state
keeps the latest and the failures in a row. After HEALTH_FAILURES_TO_ALERT consecutive failures
the service opens an incident (the alerting incidents, notified through the service's
channels), which resolves itself when a check succeeds again.

Kinds of check: ``http`` (url, method, expect_status [low, high], body_contains), ``tcp``
(host, port), ``postgres`` (dsn: SELECT 1), ``redis`` (url: PING) and ``custom`` (name: an async
function registered with `register_check`, which raises to fail and may return "degraded").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx2
import msgspec
from psycopg.rows import dict_row

import sql
from alerts import EVALUATION_LOCK
from core.db import connect_sync
from jobs.scheduler import one_line

log = logging.getLogger("astraeus.health")

CustomCheck = Callable[[], Awaitable[str | None]]
CUSTOM_CHECKS: dict[str, CustomCheck] = {}


def register_check(name: str, check: CustomCheck) -> None:
    """Make `check` available to services whose check is {"kind": "custom", "name": name}."""
    CUSTOM_CHECKS[name] = check


class CheckFailed(Exception):
    pass


@dataclass(frozen=True)
class Result:
    service_id: int
    name: str
    status: str
    response_time_ms: float | None
    error: str | None


@dataclass
class HealthReport:
    results: list[Result] = field(default_factory=list)
    opened: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)


async def _probe(spec: dict[str, Any], http: httpx2.AsyncClient, own_url: str) -> bool:
    """Runs one check; returns True when the target says it is degraded, raises on failure."""
    kind = spec["kind"]
    if kind == "http":
        response = await http.request(spec.get("method", "GET"), spec["url"])
        low, high = spec.get("expect_status", [200, 299])
        if not low <= response.status_code <= high:
            raise CheckFailed(f"HTTP {response.status_code}, expected {low} to {high}")
        wanted = spec.get("body_contains")
        if wanted and wanted not in response.text:
            raise CheckFailed(f"the body does not contain {wanted!r}")
        return response.headers.get("x-health", "").lower() == "degraded"
    if kind == "tcp":
        _, writer = await asyncio.open_connection(spec["host"], spec["port"])
        writer.close()
        await writer.wait_closed()
        return False
    if kind == "postgres":
        conn = await asyncpg.connect(spec.get("dsn") or own_url)
        try:
            await conn.fetchval(sql.query("health_check_postgres"))
        finally:
            await conn.close()
        return False
    if kind == "redis":
        target = urlsplit(spec["url"])
        reader, writer = await asyncio.open_connection(target.hostname, target.port or 6379)
        try:
            writer.write(b"*1\r\n$4\r\nPING\r\n")
            answer = await reader.readline()
        finally:
            writer.close()
            await writer.wait_closed()
        if not answer.startswith(b"+PONG"):
            raise CheckFailed(f"PING answered {answer[:60]!r}")
        return False
    check = CUSTOM_CHECKS.get(spec.get("name", ""))
    if check is None:
        raise CheckFailed(f"no custom check registered as {spec.get('name')!r}")
    return await check() == "degraded"


async def check_one(service: dict[str, Any], http: httpx2.AsyncClient, own_url: str) -> Result:
    started = time.perf_counter()
    timeout_ms = service["timeout_ms"]
    status, error = "healthy", None
    try:
        degraded = await asyncio.wait_for(
            _probe(service["check_spec"], http, own_url), timeout_ms / 1000
        )
    except TimeoutError:
        status, error = "unhealthy", f"no answer within {timeout_ms} ms"
    except Exception as exc:  # any failure of the target is a result, not an error of ours
        status, error = "unhealthy", one_line(exc)
    else:
        elapsed = (time.perf_counter() - started) * 1000
        if degraded or elapsed > service["degraded_ms"]:
            status = "degraded"
    elapsed = (time.perf_counter() - started) * 1000
    return Result(service["id"], service["name"], status, round(elapsed, 3), error)


async def run_all(services: list[dict[str, Any]], own_url: str) -> list[Result]:
    limits = httpx2.Limits(max_connections=max(10, len(services)))
    # No client timeout: each check's own timeout_ms applies (asyncio.wait_for).
    async with httpx2.AsyncClient(limits=limits, follow_redirects=False, timeout=None) as http:
        return list(await asyncio.gather(*(check_one(s, http, own_url) for s in services)))


def check_services(
    url: str, *, failures_to_alert: int = 3, only_due: bool = False, api_url: str | None = None
) -> HealthReport:
    """One pass: check every enabled service (or those due), record, open/resolve incidents."""
    report = HealthReport()
    with connect_sync(url, "astraeus-health") as conn, conn.cursor(row_factory=dict_row) as cur:
        if api_url is not None:
            spec = msgspec.json.encode({"kind": "http", "url": f"{api_url}/healthz"}).decode()
            cur.execute(
                sql.query("service_builtin"), {"name": "astraeus-api", "type": "api", "spec": spec}
            )
        cur.execute(
            sql.query("service_builtin"),
            {"name": "astraeus-database", "type": "database", "spec": '{"kind": "postgres"}'},
        )
        services = cur.execute(sql.query("services_to_check"), {"only_due": only_due}).fetchall()
        conn.commit()
        if not services:
            return report
        report.results = asyncio.run(run_all(services, url))
        # The lock a manual resolve takes too: recording and resolving never interleave.
        cur.execute(sql.query("advisory_xact_lock"), {"key": EVALUATION_LOCK})
        for result in report.results:
            state = cur.execute(
                sql.query("service_record"),
                {
                    "service": result.service_id,
                    "status": result.status,
                    "ms": result.response_time_ms,
                    "error": result.error,
                },
            ).fetchone()
            assert state is not None
            failures = state["consecutive_failures"]
            if result.status == "unhealthy" and failures >= failures_to_alert:
                opened = cur.execute(
                    sql.query("service_incident_open"),
                    {
                        "service": result.service_id,
                        "name": result.name,
                        "failures": failures,
                        "threshold": failures_to_alert,
                        "error": result.error,
                    },
                ).fetchone()
                if opened is not None:
                    cur.execute(
                        sql.query("incident_event"),
                        {
                            "incident": opened["id"],
                            "kind": "opened",
                            "note": result.error,
                            "value": failures,
                        },
                    )
                    cur.execute(
                        sql.query("service_notifications_enqueue"),
                        {"incident": opened["id"], "service": result.service_id, "kind": "firing"},
                    )
                    report.opened.append(opened["id"])
            elif result.status != "unhealthy":
                for resolved in cur.execute(
                    sql.query("service_incident_recover"), {"service": result.service_id}
                ).fetchall():
                    cur.execute(
                        sql.query("incident_event"),
                        {
                            "incident": resolved["id"],
                            "kind": "recovered",
                            "note": None,
                            "value": None,
                        },
                    )
                    cur.execute(
                        sql.query("service_notifications_enqueue"),
                        {
                            "incident": resolved["id"],
                            "service": result.service_id,
                            "kind": "resolved",
                        },
                    )
                    report.resolved.append(resolved["id"])
        conn.commit()
    return report
