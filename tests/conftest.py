"""The pytest fixtures every test module may ask for; plain helpers shared by several modules
are in tests/support.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from tests.databases import Databases, server
from tests.support import make_client


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


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    with make_client(db_url) as test_client:
        yield test_client
