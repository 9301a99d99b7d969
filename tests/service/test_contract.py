"""Schemathesis against the live app and a real database: generated requests for every
operation of /openapi.json, and no answer may be a 5xx or stray from the document."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Route

from auth import keys
from service.openapi import OPERATIONS, scopes
from tests.databases import Databases
from tests.support import api_server


@pytest.fixture(scope="module")
def live(databases: Databases) -> Iterator[tuple[str, str]]:
    """The API server as its own process on a database of its own: (base URL, admin key)."""
    url = databases.create()
    with psycopg.connect(url, autocommit=True) as conn:  # keep our key clear of ids tried
        conn.execute("ALTER TABLE analytics.api_keys ALTER COLUMN id RESTART WITH 1000000")
    _, key = keys.create(url, "schemathesis", list(keys.SCOPES))
    try:
        with api_server(
            url, MIGRATE_ON_START="false", RUN_SCHEDULER="false", LOG_LEVEL="error"
        ) as base:
            yield base, key
    finally:
        databases.drop(url)


@schemathesis.serializer("application/x-protobuf")
def as_bytes(ctx: Any, value: Any) -> bytes:
    """Remote write's body as generated (bytes, or a string of them): not snappy, so it must
    be refused (415 without Content-Encoding: snappy), never a server error."""
    return value if isinstance(value, bytes) else str(value).encode()


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_every_operation_keeps_the_contract(live: tuple[str, str]) -> None:
    base, key = live
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def exercise(case: Any) -> None:
            response = case.call_and_validate(
                headers={"Authorization": f"Bearer {key}"}, checks=CHECKS
            )
            statuses[response.status_code] += 1

        try:
            exercise()
        except Exception as exc:  # every operation is tried; all failures are reported
            failures.append(f"{operation.label}: {str(exc)[:600]}")

    assert operations == 53
    assert not failures, "\n\n".join(failures)
    # The generated requests reached the handlers, not just the key check or the router.
    assert sum(n for status, n in statuses.items() if status < 300) >= 100, statuses
    assert not {401, 403} & set(statuses), statuses


def test_the_document_describes_every_route_and_its_scope(client: Any) -> None:
    served = {
        (method, route.path)
        for route in client.app.routes
        if isinstance(route, Route)
        for method in (route.methods or ())
        if method != "HEAD"
    }
    described = {(op.method, op.path) for op in OPERATIONS}
    document = client.get("/openapi.json").json()

    assert described == served - {("GET", "/openapi.json"), ("GET", "/docs")}
    assert document["openapi"] == "3.1.0"
    needs = scopes(client.app.routes)
    for op in OPERATIONS:  # each states the scope its route declares
        described_op = document["paths"][op.path][op.method.lower()]
        assert (described_op["security"] != []) == (needs[(op.method, op.path)] is not None), op
    page = client.get("/docs", headers={"Authorization": ""})
    assert page.status_code == 200 and "/openapi.json" in page.text
