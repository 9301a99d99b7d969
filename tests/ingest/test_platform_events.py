from __future__ import annotations

import asyncio
import gzip
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import psycopg
import pytest
from starlette.testclient import TestClient

from ingest.events import COLUMNS, REQUIRED, EventWriter
from tests.support import make_client

EVENTS = "/api/v1/analytics/events"
SAMPLE = {
    "user_id": "u1",
    "agent_id": "a1",
    "contract_id": "c1",
    "amount": 10.0,
    "fee": 1.5,
    "duration_ms": 120.0,
    "success": True,
    "value": 3.0,
    "endpoint": "/api/agents",
    "method": "GET",
    "status": 200,
}


def minimal(event_type: str) -> dict[str, Any]:
    """An event of `event_type` with exactly its required fields."""
    event = {"event_type": event_type, **{name: SAMPLE[name] for name in REQUIRED[event_type]}}
    if event_type == "contract_completed":
        event["user_id"] = "u1"
    return event


def stored(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT event_type, user_id, agent_id, amount FROM analytics.platform_events"
        " ORDER BY event_type"
    ).fetchall()


def test_every_event_type_with_its_required_fields_is_stored(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    batch = [minimal(event_type) for event_type in REQUIRED]

    response = client.post(EVENTS, json=batch)

    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 24, "duplicate": False}
    assert sorted(row[0] for row in stored(db)) == sorted(REQUIRED)


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (
            msgspec.json.encode({"events": [minimal("page_view")]}),
            {"content-type": "application/json"},
        ),
        (
            msgspec.json.encode(minimal("page_view")) + b"\n",
            {"content-type": "application/x-ndjson"},
        ),
        (
            gzip.compress(msgspec.json.encode([minimal("page_view")])),
            {"content-type": "application/json", "content-encoding": "gzip"},
        ),
    ],
)
def test_the_metric_batch_formats_work_for_events(
    client: TestClient, db: psycopg.Connection[Any], body: bytes, headers: dict[str, str]
) -> None:
    response = client.post(EVENTS, content=body, headers=headers)

    assert response.status_code == 200, response.text
    assert stored(db) == [("page_view", "u1", None, None)]


def test_invalid_events_are_listed_and_nothing_is_stored(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    batch = [
        minimal("page_view"),
        {"event_type": "bid_placed", "agent_id": "a1", "contract_id": "c1"},  # no amount
        {"event_type": "teleport", "user_id": "u1"},
        {"event_type": "contract_completed", "contract_id": "c1"},  # whose?
        {**minimal("api_call"), "status": 999},
        {
            **minimal("page_view"),
            "timestamp": (datetime.now(UTC) - timedelta(days=400)).isoformat(),
        },
    ]

    response = client.post(EVENTS, json=batch)

    assert response.status_code == 422
    body = response.json()
    assert body["message"] == "5 of 6 events are invalid; nothing was stored"
    assert [(d["index"], d["field"]) for d in body["details"]] == [
        (1, "amount"),
        (2, "event_type"),
        (3, "user_id"),
        (4, "status"),
        (5, "timestamp"),
    ]
    assert "required for event_type bid_placed" in body["details"][0]["reason"]
    assert stored(db) == []


def test_a_retry_with_the_same_key_is_stored_once(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    headers = {"Idempotency-Key": "events-1"}

    first = client.post(EVENTS, json=[minimal("page_view")], headers=headers)
    retry = client.post(EVENTS, json=[minimal("page_view")], headers=headers)
    reused = client.post(EVENTS, json=[minimal("session_start")], headers=headers)
    metrics_scope = client.post(
        "/api/v1/analytics/metrics/batch",
        headers=headers,
        json=[{"metric_name": "m", "value": 1, "metric_type": "gauge"}],
    )

    assert first.json() == {"accepted": 1, "duplicate": False}
    assert retry.json() == {"accepted": 1, "duplicate": True}
    assert reused.status_code == 422
    assert metrics_scope.json() == {"accepted": 1, "duplicate": False}  # keys are per scope
    assert stored(db) == [("page_view", "u1", None, None)]


def test_the_users_and_agents_seen_are_kept_with_their_events(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=5)

    def send(*events: tuple[str, str, float]) -> None:
        body = [
            {
                "event_type": kind,
                **({"agent_id": who} if kind.startswith("agent") else {"user_id": who}),
                "timestamp": (base + timedelta(hours=hours)).isoformat(),
            }
            for kind, who, hours in events
        ]
        response = client.post(EVENTS, json=body)
        assert response.status_code == 200, response.text

    def seen() -> list[tuple[Any, ...]]:
        return db.execute(
            "SELECT xmin::text, user_id, first_seen, signed_up_at FROM analytics.users_seen "
            "UNION ALL SELECT xmin::text, agent_id, first_seen, registered_at "
            "FROM analytics.agents_seen ORDER BY 2"
        ).fetchall()

    def hours(*values: float | None) -> list[datetime | None]:
        return [None if v is None else base + timedelta(hours=v) for v in values]

    send(
        ("page_view", "u1", 10),
        ("page_view", "u1", 8),
        ("user_signup", "u2", 9),
        ("agent_up", "a1", 12),
        ("agent_registered", "a1", 13),
    )
    first = seen()
    send(("page_view", "u1", 20), ("page_view", "u2", 30), ("agent_down", "a1", 14))  # no news
    again = seen()
    send(
        ("user_signup", "u1", 11),
        ("page_view", "u2", 1),
        ("agent_up", "a1", 2),
        ("page_view", "u3", 3),
    )  # late

    assert [row[1:] for row in first] == [
        ("a1", *hours(12, 13)),
        ("u1", *hours(8, None)),
        ("u2", *hours(9, 9)),
    ]
    assert again == first  # not even rewritten
    assert [row[1:] for row in seen()] == [
        ("a1", *hours(2, 13)),
        ("u1", *hours(8, 11)),
        ("u2", *hours(1, 9)),
        ("u3", *hours(3, None)),
    ]


@pytest.fixture
def strict(db_url: str) -> Iterator[TestClient]:
    with make_client(db_url, INGEST_MAX_BATCH_EVENTS="2", INGEST_MAX_BODY_BYTES="2048") as c:
        yield c


def test_limits_and_bad_bodies(strict: TestClient, db: psycopg.Connection[Any]) -> None:
    too_many = strict.post(EVENTS, json=[minimal("page_view")] * 3)
    too_big = strict.post(EVENTS, json=[{**minimal("page_view"), "user_id": "u" * 150}] * 20)
    malformed = strict.post(
        EVENTS, content=b'[{"event_type": ', headers={"content-type": "application/json"}
    )
    wrong_type = strict.post(EVENTS, content=b"x", headers={"content-type": "text/csv"})

    assert (
        too_many.status_code,
        too_big.status_code,
        malformed.status_code,
        wrong_type.status_code,
    ) == (413, 413, 400, 415)
    assert stored(db) == []


def test_concurrent_batches_keep_the_entities_seen_exact(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    """Batches naming the same new users in different orders, 8 transactions at once: no
    deadlock (each batch locks its users in one order), and the rows are exact."""
    base = datetime.now(UTC) - timedelta(days=2)
    rng = random.Random(7)

    def batch() -> list[tuple[Any, ...]]:
        users = [f"u{n}" for n in range(300)]
        rng.shuffle(users)
        return [
            (
                base + timedelta(minutes=rng.randrange(2000)),
                rng.choice(["page_view", "user_signup"]),
                user,
                *[None] * (len(COLUMNS) - 3),
            )
            for user in users
        ]

    async def run() -> None:
        async with asyncpg.create_pool(db_url, min_size=8, max_size=8) as pool:
            writer = EventWriter(pool, timedelta(hours=1), 8)
            for _ in range(3):
                await asyncio.gather(*(writer.store(batch(), None) for _ in range(8)))

    asyncio.run(run())

    assert (
        db.execute(
            "SELECT user_id, first_seen, signed_up_at FROM analytics.users_seen ORDER BY 1"
        ).fetchall()
        == db.execute(
            "SELECT user_id, min(time), min(time) FILTER (WHERE event_type = 'user_signup') "
            "FROM analytics.platform_events GROUP BY 1 ORDER BY 1"
        ).fetchall()
    )
