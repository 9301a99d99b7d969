"""Admission control: under overload a request is refused from its headers, before its body is
read or decoded, and the bytes held by ingest stay within INGEST_QUEUE_MAX_BYTES."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import httpx2
import msgspec
import psycopg
import pytest
from starlette.testclient import TestClient

import ingest.events
import ingest.routes
from tests.support import (
    BATCH,
    RECORD,
    api_server,
    count,
    event,
    events_table_locked,
    make_client,
    wait_for,
)


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every body the metric routes decode, by decoder: the cost a refusal must not pay."""
    calls: list[str] = []

    def counting(name: str) -> Callable[[bytes], Any]:
        decode = getattr(ingest.routes, name)

        def wrapper(body: bytes) -> Any:
            calls.append(name)
            return decode(body)

        return wrapper

    for name in ("decode_record", "decode_json_batch", "decode_ndjson"):
        monkeypatch.setattr(ingest.routes, name, counting(name))
    yield calls


def post_raw(client: TestClient, path: str, body: bytes) -> Any:
    return client.post(path, content=body, headers={"content-type": "application/json"})


def test_a_full_queue_refuses_before_reading_the_body(
    db_url: str, db: psycopg.Connection[Any], decoded: list[str]
) -> None:
    with (
        make_client(
            db_url, INGEST_WRITERS="1", INGEST_QUEUE_MAX_BYTES="1000", INGEST_MAX_BODY_BYTES="5000"
        ) as client,
        ThreadPoolExecutor(max_workers=2) as pool,
    ):
        committer = client.app.state.committer  # type: ignore[attr-defined]
        with events_table_locked(db_url) as waiting:
            blocker = pool.submit(client.post, BATCH, json=[event(0, "blocker")])
            wait_for(lambda: waiting() == 1)
            decoded.clear()

            invalid = post_raw(client, BATCH, b"[" + b"x" * 2000)  # malformed: a 400 otherwise
            huge = post_raw(client, BATCH, b"[" + b" " * 9000 + b"]")  # over the body limit: 413
            single = post_raw(client, RECORD, b'{"metric_name": 1' + b" " * 1000 + b"}")  # 422

            assert committer.queued_bytes > 0
        assert blocker.result().status_code == 200

    for refused in (invalid, huge, single):
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"] == "ingest_queue_full"
    assert decoded == []  # not one of them was decoded
    assert count(db) == 1


def test_an_idle_queue_takes_a_body_larger_than_the_budget(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    body = msgspec.json.encode([event(i, tags={"pad": "x" * 200}) for i in range(20)])
    with make_client(db_url, INGEST_QUEUE_MAX_BYTES="1000") as client:
        assert len(body) > 1000
        response = post_raw(client, BATCH, body)
    assert response.status_code == 200
    assert count(db) == 20


def test_admitted_bytes_stay_within_the_budget(db_url: str, db: psycopg.Connection[Any]) -> None:
    bodies = [msgspec.json.encode(event(i, tags={"pad": "y" * 50})) for i in range(1, 31)]
    size = len(bodies[0])
    budget = 6 * size + size // 2  # room for six bodies, not seven
    with (
        make_client(db_url, INGEST_WRITERS="1", INGEST_QUEUE_MAX_BYTES=str(budget)) as client,
        ThreadPoolExecutor(max_workers=8) as pool,
    ):
        committer = client.app.state.committer  # type: ignore[attr-defined]
        with events_table_locked(db_url) as waiting:
            blocker = pool.submit(post_raw, client, RECORD, bodies[0])
            wait_for(lambda: waiting() == 1)
            held = [pool.submit(post_raw, client, RECORD, body) for body in bodies[1:6]]
            wait_for(lambda: committer.queued_bytes == 6 * size)
            refused = [post_raw(client, RECORD, body) for body in bodies[6:]]
            assert committer.queued_bytes == 6 * size
        answered = [f.result() for f in [blocker, *held]]

    assert [r.status_code for r in answered] == [200] * 6
    assert {r.status_code for r in refused} == {429}
    assert count(db) == 6


def test_the_budget_drains_to_zero_after_a_burst(db_url: str, db: psycopg.Connection[Any]) -> None:
    good = msgspec.json.encode([event(i) for i in range(500)])
    invalid = msgspec.json.encode([{"metric_name": "x", "value": "no", "metric_type": "gauge"}])
    malformed = b"[{"
    bodies = [good, invalid, malformed] * 20
    with (
        make_client(db_url, INGEST_QUEUE_MAX_BYTES=str(len(good) * 4)) as client,
        ThreadPoolExecutor(max_workers=16) as pool,
    ):
        committer = client.app.state.committer  # type: ignore[attr-defined]
        answers = list(pool.map(lambda body: post_raw(client, BATCH, body), bodies))
        metrics = client.get("/metrics").text

        assert committer.queued_bytes == 0
        assert committer.queued_events == 0
    statuses = {r.status_code for r in answers}
    assert statuses <= {200, 400, 422, 429}
    assert 200 in statuses
    assert "astraeus_ingest_queue_bytes 0.0" in metrics
    assert count(db) == 500 * sum(r.status_code == 200 for r in answers)


def test_platform_events_over_the_budget_are_refused_before_their_body_is_read(
    db_url: str, db: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Platform events share the metric batches' bytes budget and its early 429."""
    read: list[str] = []
    decode, read_body = ingest.events.decode, ingest.routes.read_body

    async def reading(request: Any, limit: int) -> bytes:
        if request.url.path.endswith("/events"):  # not the blocker's metric batch
            read.append("read")
        return await read_body(request, limit)

    monkeypatch.setattr(ingest.routes, "read_body", reading)
    monkeypatch.setattr(
        ingest.events, "decode", lambda body, ndjson: read.append("decode") or decode(body, ndjson)
    )
    page_views = [{"event_type": "page_view", "user_id": f"u{i}"} for i in range(40)]
    body = msgspec.json.encode(page_views)
    with (
        make_client(db_url, INGEST_WRITERS="1", INGEST_QUEUE_MAX_BYTES=str(len(body))) as client,
        ThreadPoolExecutor(max_workers=2) as pool,
    ):
        committer = client.app.state.committer  # type: ignore[attr-defined]
        with events_table_locked(db_url) as waiting:
            blocker = pool.submit(client.post, BATCH, json=[event(0, "blocker")])
            wait_for(lambda: waiting() == 1)
            refused = post_raw(client, "/api/v1/analytics/events", body)
            malformed = post_raw(client, "/api/v1/analytics/events", b"[" + b"x" * len(body))
            assert committer.queued_bytes > 0
        assert blocker.result().status_code == 200
        assert read == []  # neither body was read, let alone decoded
        accepted = post_raw(client, "/api/v1/analytics/events", body)
        assert committer.queued_bytes == 0

    for response in (refused, malformed):
        assert response.status_code == 429
        assert response.headers["retry-after"] == "1"
        assert response.json()["error"] == "ingest_queue_full"
    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {"accepted": 40, "duplicate": False}
    assert read == ["read", "decode"]
    stored = db.execute("SELECT count(*) FROM analytics.platform_events").fetchone()
    assert stored == (40,)


def test_a_body_that_does_not_arrive_gives_its_budget_back(db_url: str) -> None:
    # A sender that declares a large body and stops sending would hold that much of the bytes
    # budget for as long as it kept the connection open: every batch after it refused with 429.
    with api_server(
        db_url,
        AUTH_DISABLED="true",
        RUN_SCHEDULER="false",
        LOG_LEVEL="warning",
        INGEST_BODY_TIMEOUT_S="2",
        INGEST_QUEUE_MAX_BYTES="1000",
    ) as base:
        address = urlsplit(base)
        with socket.create_connection((address.hostname, address.port), timeout=10) as stalled:
            stalled.sendall(
                b"POST " + BATCH.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 90000\r\n\r\n[{"
            )
            wait_for(lambda: _post(base, [event(1.0)]) == 429)  # the budget is held meanwhile

            # Within the server's timeout, not at the client's (the socket's 10 s would raise),
            # and then closed: the rest of that body is no next request. (Read to the close:
            # the headers and the body may come in two reads.)
            received = []
            while chunk := stalled.recv(65536):
                received.append(chunk)
            answer = b"".join(received).decode()

            assert answer.startswith("HTTP/1.1 408")
            assert '"error":"body_timeout"' in answer and "connection: close" in answer.lower()
        assert _post(base, [event(2.0)]) == 200  # its share of the budget is back


def _post(base: str, events: list[dict[str, Any]]) -> int:
    return httpx2.post(base + BATCH, json=events, timeout=10).status_code
