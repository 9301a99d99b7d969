from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import psycopg
import pytest
from starlette.testclient import TestClient

from auth import keys
from core.settings import load
from service.app import create_app
from tests.databases import Databases, server


@pytest.fixture(scope="session")
def databases() -> Iterator[Databases]:
    with server() as url:
        dbs = Databases(url)
        dbs.create_template()
        try:
            yield dbs
        finally:
            dbs.drop_all()


@pytest.fixture
def db_url(databases: Databases) -> Iterator[str]:
    """A freshly migrated database of this test's own."""
    url = databases.create()
    yield url
    databases.drop(url)


@pytest.fixture
def empty_db_url(databases: Databases) -> Iterator[str]:
    """A database with nothing of ours in it (not migrated)."""
    url = databases.create(template="template0")
    yield url
    databases.drop(url)


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A plain connection to the test's database, for looking at what the API stored."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


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


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    with make_client(db_url) as test_client:
        yield test_client
