"""Health checks against real targets started by the tests, incidents, and exact SLA figures."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from jobs.health import check_services
from tests.peers import free_port

MONITORING = "/api/v1/analytics/monitoring"


@pytest.fixture
def target() -> Iterator[str]:
    """An HTTP target: /ok, /slow (150 ms), /degraded (says so), /error (500), /hang (5 s)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            delay = {"/slow": 0.15, "/hang": 5.0}.get(self.path, 0)
            time.sleep(delay)
            status = 500 if self.path == "/error" else 200
            self.send_response(status)
            if self.path == "/degraded":
                self.send_header("X-Health", "degraded")
            self.send_header("content-length", "7")
            self.end_headers()
            self.wfile.write(b"all ok\n")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    server.daemon_threads = True
    server.block_on_close = False
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def service(client: TestClient, name: str, check: dict[str, Any], **fields: Any) -> dict:
    response = client.post(
        f"{MONITORING}/services",
        json={"name": name, "service_type": "api", "check": check, **fields},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def statuses(client: TestClient) -> dict[str, str]:
    body = client.get(f"{MONITORING}/health").json()
    return {s["service_name"]: s["status"] for s in body["services"]}


def test_each_status_is_reached_and_a_hanging_target_delays_nobody(
    client: TestClient, db_url: str, target: str
) -> None:
    fast = {"timeout_ms": 1000, "degraded_ms": 100}
    service(client, "fast", {"kind": "http", "url": f"{target}/ok"}, **fast)
    service(client, "slow", {"kind": "http", "url": f"{target}/slow"}, **fast)
    service(client, "says-degraded", {"kind": "http", "url": f"{target}/degraded"}, **fast)
    service(client, "erroring", {"kind": "http", "url": f"{target}/error"}, **fast)
    service(
        client,
        "wrong-body",
        {"kind": "http", "url": f"{target}/ok", "body_contains": "banana"},
        **fast,
    )
    service(
        client,
        "hanging",
        {"kind": "http", "url": f"{target}/hang"},
        timeout_ms=300,
        degraded_ms=100,
    )
    service(client, "closed-port", {"kind": "tcp", "host": "127.0.0.1", "port": free_port()})
    service(client, "database", {"kind": "postgres", "dsn": db_url}, service_type="database")
    service(client, "never-checked", {"kind": "tcp", "host": "127.0.0.1", "port": 1}, enabled=False)

    started = time.monotonic()
    report = check_services(db_url)
    took = time.monotonic() - started

    assert took < 2.5  # the hanging target is cut at 300 ms; the others ran meanwhile
    found = statuses(client)
    assert found == {
        "astraeus-database": "healthy",
        "fast": "healthy",
        "slow": "degraded",
        "says-degraded": "degraded",
        "erroring": "unhealthy",
        "wrong-body": "unhealthy",
        "hanging": "unhealthy",
        "closed-port": "unhealthy",
        "database": "healthy",
    }
    errors = {r.name: r.error for r in report.results}
    assert errors["hanging"] == "no answer within 300 ms"
    assert errors["erroring"] == "CheckFailed: HTTP 500, expected 200 to 299"
    summary = client.get(f"{MONITORING}/health").json()
    assert (
        summary["overall_status"],
        summary["total_services"],
        summary["healthy"],
        summary["degraded"],
        summary["unhealthy"],
        summary["unknown"],
    ) == ("unhealthy", 9, 3, 2, 4, 0)


def test_a_service_without_a_recent_result_is_unknown(
    client: TestClient, db: psycopg.Connection[Any], target: str
) -> None:
    created = service(client, "quiet", {"kind": "http", "url": f"{target}/ok"}, interval_seconds=60)
    db.execute(
        "INSERT INTO analytics.service_state (service_id, status, last_checked) "
        "VALUES (%s, 'healthy', now() - interval '3 minutes')",
        (created["id"],),
    )

    assert statuses(client) == {"quiet": "unknown"}
    assert client.get(f"{MONITORING}/health").json()["overall_status"] == "degraded"


def test_consecutive_failures_open_an_incident_and_recovery_resolves_it(
    client: TestClient, db_url: str, target: str
) -> None:
    created = service(client, "flaky", {"kind": "http", "url": f"{target}/error"})

    for _ in range(3):
        check_services(db_url, failures_to_alert=3)
    opened = client.get("/api/v1/analytics/alerts/incidents").json()["incidents"]
    client.put(
        f"{MONITORING}/services/flaky",
        json={
            "name": "flaky",
            "service_type": "api",
            "check": {"kind": "http", "url": f"{target}/ok"},
        },
    )
    recovered = check_services(db_url, failures_to_alert=3)

    detail = client.get(f"{MONITORING}/health/flaky").json()
    assert created["status"] == "unknown"
    assert [(i["rule_name"], i["severity"], i["metric_value"]) for i in opened] == [
        ("service flaky unhealthy", "critical", 3.0)
    ]
    assert recovered.resolved == [opened[0]["id"]]
    assert detail["consecutive_failures"] == 0 and detail["status"] == "healthy"
    assert [h["status"] for h in detail["history"]] == ["healthy"] + ["unhealthy"] * 3


def test_sla_figures_are_time_weighted_and_exact(
    client: TestClient, db: psycopg.Connection[Any], target: str
) -> None:
    created = service(
        client,
        "billing-api",
        {"kind": "http", "url": f"{target}/ok"},
        interval_seconds=3600,
        sla_target=99.9,
    )
    start = datetime.now(UTC) - timedelta(hours=24)
    # Hourly checks: 0-9 healthy, 10-11 unhealthy, 12 degraded, 13 healthy, none 14-17 (13
    # holds two intervals, to 15; then unknown until 18), 18-23 healthy.
    history = (
        [("healthy", 20.0)] * 10
        + [("unhealthy", None)] * 2
        + [("degraded", 800.0)]
        + [("healthy", 20.0)]
    )
    rows = [(start + timedelta(hours=h), s, ms) for h, (s, ms) in enumerate(history)]
    rows += [(start + timedelta(hours=h), "healthy", 20.0) for h in range(18, 24)]
    for at, status, ms in rows:
        db.execute(
            "INSERT INTO analytics.health_checks (time, service_id, status, "
            "response_time_ms) VALUES (%s, %s, %s, %s)",
            (at, created["id"], status, ms),
        )

    sla = client.get(f"{MONITORING}/sla/billing-api", params={"days": 1}).json()

    hour = 3600
    assert sla["uptime_percentage"] == pytest.approx(100 * 19 / 21, abs=1e-3)
    assert sla["total_downtime_seconds"] == pytest.approx(2 * hour, abs=2)
    assert sla["degraded_seconds"] == pytest.approx(1 * hour, abs=2)
    assert sla["unknown_seconds"] == pytest.approx(3 * hour, abs=2)
    assert sla["downtime_incidents"] == 1
    # The check at hour 0 is a moment older than the endpoint's own window: 17 checks count.
    assert sla["avg_response_time_ms"] == pytest.approx((20 * 16 + 800) / 17)
    assert (sla["sla_target"], sla["sla_met"]) == (99.9, False)
    allowed = 0.001 * 21 * hour
    assert sla["error_budget_remaining"]["seconds"] == pytest.approx(allowed - 2 * hour, abs=2)
    assert sla["error_budget_remaining"]["percent"] == pytest.approx(
        100 * (allowed - 2 * hour) / allowed, rel=1e-3
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"check": {"kind": "smoke-signal"}}, "check.kind"),
        ({"check": {"kind": "http"}}, "check.url"),
        ({"check": {"kind": "tcp", "host": "h", "port": 70000}}, "check.port"),
        ({"check": {"kind": "http", "url": "ftp://x"}}, "check.url"),
        ({"service_type": "toaster"}, "service_type"),
        ({"timeout_ms": 100, "degraded_ms": 500}, "timeout_ms"),
        ({"sla_target": 101}, "sla_target"),
        ({"channels": [999]}, "channels"),
    ],
)
def test_invalid_services_are_refused_naming_the_field(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    base = {"name": "svc", "service_type": "api", "check": {"kind": "tcp", "host": "h", "port": 1}}

    response = client.post(f"{MONITORING}/services", json={**base, **body})

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == field


def test_services_are_listed_replaced_and_deleted(client: TestClient, db_url: str) -> None:
    service(client, "pg", {"kind": "postgres", "dsn": "postgresql://u:secret@db/x"})
    duplicate = client.post(
        f"{MONITORING}/services",
        json={
            "name": "pg",
            "service_type": "api",
            "check": {"kind": "tcp", "host": "h", "port": 1},
        },
    )
    check_services(db_url)  # adds the built-in self check

    listed = client.get(f"{MONITORING}/services").json()["services"]
    builtin = client.delete(f"{MONITORING}/services/astraeus-database")
    deleted = client.delete(f"{MONITORING}/services/pg")

    assert duplicate.status_code == 409
    assert {s["name"]: s["check"].get("dsn") for s in listed} == {
        "astraeus-database": None,
        "pg": "********",
    }
    assert builtin.status_code == 404
    assert deleted.status_code == 204
    for path in ("services/pg", "health/pg", "sla/pg"):
        assert client.get(f"{MONITORING}/{path}").status_code == 404


def test_the_health_command_checks_once(db_url: str, target: str, client: TestClient) -> None:
    service(client, "web", {"kind": "http", "url": f"{target}/ok"})

    result = subprocess.run(
        [sys.executable, "-m", "jobs", "health", "--database-url", db_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()[:-1]}
    # The service checks itself too: its database, and its API (not running in this test).
    assert lines == {"web": "healthy", "astraeus-database": "healthy", "astraeus-api": "unhealthy"}
    assert "3 service(s) checked" in result.stdout


SERVICES_TOML = """
[[services]]
name = "billing-api"
service_type = "api"
interval_seconds = 30
sla_target = 99.5
check = { kind = "http", url = "http://127.0.0.1:9/health", expect_status = [200, 204] }

[[services]]
name = "cache"
service_type = "cache"
check = { kind = "redis", url = "redis://127.0.0.1:6379" }
"""


def test_services_are_loaded_from_a_toml_file_at_start(db_url: str, tmp_path: Any) -> None:
    from tests.support import make_client

    path = tmp_path / "services.toml"
    path.write_text(SERVICES_TOML)

    with make_client(db_url, SERVICES_FILE=str(path)) as client:
        listed = client.get(f"{MONITORING}/services").json()["services"]

    assert [(s["name"], s["interval_seconds"], s["sla_target"]) for s in listed] == [
        ("billing-api", 30, 99.5),
        ("cache", 60, 99.9),
    ]
    assert listed[0]["check"]["expect_status"] == [200, 204]


def test_a_bad_services_file_stops_the_server_naming_the_entry(tmp_path: Any) -> None:
    path = tmp_path / "services.toml"
    path.write_text(SERVICES_TOML.replace('kind = "redis"', 'kind = "carrier-pigeon"'))

    result = subprocess.run(
        [sys.executable, "-m", "service"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={
            "PATH": "/usr/bin:/bin",
            "DATABASE_URL": "postgresql://x@h/d",
            "SERVICES_FILE": str(path),
        },
    )

    assert result.returncode == 2
    assert "services[1]" in result.stderr and "kind" in result.stderr
    assert "Traceback" not in result.stderr


def test_resolving_a_service_incident_by_hand_notifies_and_restarts_the_count(
    client: TestClient, db_url: str, db: psycopg.Connection[Any], target: str
) -> None:
    hook = client.post(
        "/api/v1/analytics/alerts/channels",
        json={
            "name": "pager",
            "type": "webhook",
            "url": f"{target}/ok",
            "secret": "a-webhook-secret-of-some-length",
        },
    ).json()["id"]
    service(client, "flaky", {"kind": "http", "url": f"{target}/error"}, channels=[hook])
    for _ in range(3):
        check_services(db_url, failures_to_alert=3)
    incident = client.get("/api/v1/analytics/alerts/incidents").json()["incidents"][0]

    client.post(f"/api/v1/analytics/alerts/incidents/{incident['id']}/resolve", json={"who": "hal"})
    again = check_services(db_url, failures_to_alert=3)

    kinds = db.execute(
        "SELECT kind FROM analytics.notifications WHERE incident_id = %s ORDER BY id",
        (incident["id"],),
    ).fetchall()
    assert kinds == [("firing",), ("resolved",)]
    assert again.opened == []  # one failure after the resolution, not the third in a row


@pytest.mark.parametrize(
    ("check", "field"),
    [
        (
            {"kind": "http", "url": "http://x.example/", "expect_status": [500, 200]},
            "check.expect_status",
        ),
        (
            {"kind": "http", "url": "http://x.example/", "method": "HEAD", "body_contains": "ok"},
            "check.body_contains",
        ),
        ({"kind": "redis", "url": "rediss://x.example:6380"}, "check.url"),
    ],
)
def test_checks_that_could_never_pass_are_refused(
    client: TestClient, check: dict[str, Any], field: str
) -> None:
    response = client.post(
        f"{MONITORING}/services", json={"name": "svc", "service_type": "api", "check": check}
    )

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == field
