from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx2
from starlette.testclient import TestClient

from tests.support import make_client


def test_healthz_answers_without_the_database(client: TestClient) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_the_timescaledb_edition(client: TestClient) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["timescaledb"]["edition"] in {"apache", "timescale"}


def test_readyz_is_503_until_migrations_are_applied(empty_db_url: str) -> None:
    with make_client(empty_db_url, scopes=None) as client:
        response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["status"] == "not_ready"


def test_unknown_paths_use_the_error_shape(client: TestClient) -> None:
    response = client.get("/api/v1/analytics/nothing-here")

    assert response.status_code == 404
    assert set(response.json()) == {"error", "message", "details"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_server_migrates_on_start_and_becomes_ready(empty_db_url: str) -> None:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": empty_db_url, "PORT": str(port)}
    server = subprocess.Popen(
        [sys.executable, "-m", "service"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                status = httpx2.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code
                break
            except httpx2.TransportError:
                time.sleep(0.1)
        assert status == 200
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=15)
    assert "0001_core.sql" in output or "migration(s) applied now" in output
    # uvicorn shuts down gracefully, then re-raises the signal it got.
    assert "Application shutdown complete" in output
    assert server.returncode in (0, -signal.SIGTERM)


def test_the_server_refuses_to_start_without_a_database_url() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}

    result = subprocess.run(
        [sys.executable, "-m", "service"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 2
    assert "DATABASE_URL is not set" in result.stderr
