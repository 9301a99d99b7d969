from __future__ import annotations

import gzip
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
import pytest
from starlette.testclient import TestClient

from tests.support import make_client

BATCH = "/api/v1/analytics/metrics/batch"
JSON_HEADERS = {"content-type": "application/json"}
NDJSON_HEADERS = {"content-type": "application/x-ndjson"}


def event(value: float = 1.0, **fields: Any) -> dict[str, Any]:
    return {"metric_name": "jobs.duration", "value": value, "metric_type": "timer", **fields}


def stored(db: psycopg.Connection[Any]) -> list[float]:
    rows = db.execute("SELECT value FROM analytics.metric_events ORDER BY value").fetchall()
    return [row[0] for row in rows]


def ndjson(events: list[dict[str, Any]]) -> bytes:
    return b"\n".join(msgspec.json.encode(e) for e in events) + b"\n"


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        pytest.param(msgspec.json.encode([event(1), event(2), event(3)]), JSON_HEADERS, id="array"),
        pytest.param(
            msgspec.json.encode({"events": [event(1), event(2), event(3)]}),
            JSON_HEADERS,
            id="envelope",
        ),
        pytest.param(ndjson([event(1), event(2), event(3)]), NDJSON_HEADERS, id="ndjson"),
        pytest.param(
            gzip.compress(msgspec.json.encode([event(1), event(2), event(3)])),
            {**JSON_HEADERS, "content-encoding": "gzip"},
            id="gzip json",
        ),
        pytest.param(
            gzip.compress(ndjson([event(1), event(2), event(3)])),
            {**NDJSON_HEADERS, "content-encoding": "gzip"},
            id="gzip ndjson",
        ),
    ],
)
def test_every_body_format_stores_the_batch(
    client: TestClient, db: psycopg.Connection[Any], body: bytes, headers: dict[str, str]
) -> None:
    response = client.post(BATCH, content=body, headers=headers)

    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 3, "duplicate": False}
    assert stored(db) == [1.0, 2.0, 3.0]


def test_a_batch_with_invalid_items_lists_each_and_stores_nothing(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    events = [event(i) for i in range(10)]
    events[2] = event("slow")
    events[5] = {**event(), "metric_type": "meter"}
    events[7] = {k: v for k, v in event().items() if k != "metric_name"}

    response = client.post(BATCH, json=events)

    assert response.status_code == 422
    body = response.json()
    assert body["message"] == "3 of 10 events are invalid; nothing was stored"
    assert [(d["index"], d["field"]) for d in body["details"]] == [
        (2, "value"),
        (5, "metric_type"),
        (7, "metric_name"),
    ]
    assert stored(db) == []


def test_a_batch_invalid_after_decoding_is_refused_whole(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    future = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    events = [event(1), event(2, timestamp=future), event(3, tags={"k" * 101: "v"})]

    response = client.post(BATCH, json=events)

    assert response.status_code == 422
    details = response.json()["details"]
    assert [(d["index"], d["field"]) for d in details] == [
        (1, "timestamp"),
        (2, f"tags.{'k' * 40}"),
    ]
    assert "ahead of the server's clock" in details[0]["reason"]
    assert stored(db) == []


def test_only_the_first_hundred_invalid_items_are_listed(client: TestClient) -> None:
    response = client.post(BATCH, json=[event("bad") for _ in range(150)])

    assert response.status_code == 422
    body = response.json()
    assert len(body["details"]) == 100
    assert body["message"].startswith("150 of 150 events are invalid")
    assert "the first 100 are listed" in body["message"]


def test_ndjson_errors_name_the_item_and_malformed_lines_the_line(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    invalid = ndjson([event(1), event("x")])
    malformed = ndjson([event(1)]) + b"\n" + b'{"metric_name": \n'

    refused = client.post(BATCH, content=invalid, headers=NDJSON_HEADERS)
    broken = client.post(BATCH, content=malformed, headers=NDJSON_HEADERS)

    assert refused.status_code == 422
    assert refused.json()["details"][0]["index"] == 1
    assert broken.status_code == 400
    assert "on line 3" in broken.json()["message"]
    assert stored(db) == []


def test_malformed_json_is_a_400_with_the_position(client: TestClient) -> None:
    response = client.post(BATCH, content=b'[{"value": 1},, ]', headers=JSON_HEADERS)

    assert response.status_code == 400
    assert "byte 14" in response.json()["message"]


def test_a_retry_with_the_same_key_is_stored_once(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    events = [event(1), event(2)]
    headers = {"Idempotency-Key": "batch-0001"}

    first = client.post(BATCH, json=events, headers=headers)
    retry = client.post(BATCH, json=events, headers=headers)
    other = client.post(BATCH, json=events, headers={"Idempotency-Key": "batch-0002"})

    assert first.json() == {"accepted": 2, "duplicate": False}
    assert retry.status_code == 200
    assert retry.json() == {"accepted": 2, "duplicate": True}
    assert other.json() == {"accepted": 2, "duplicate": False}
    assert stored(db) == [1.0, 1.0, 2.0, 2.0]


def test_a_key_reused_for_other_data_is_refused(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    client.post(BATCH, json=[event(1)], headers={"Idempotency-Key": "k1"})

    response = client.post(BATCH, json=[event(9)], headers={"Idempotency-Key": "k1"})

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "Idempotency-Key"
    assert stored(db) == [1.0]


def test_a_refused_batch_does_not_use_up_its_key(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    client.post(BATCH, json=[event(1)])
    conflicting = [{**event(2), "metric_type": "gauge"}]
    refused = client.post(BATCH, json=conflicting, headers={"Idempotency-Key": "k2"})

    fixed = client.post(BATCH, json=[event(2)], headers={"Idempotency-Key": "k2"})

    assert refused.status_code == 422
    assert fixed.json() == {"accepted": 1, "duplicate": False}
    assert stored(db) == [1.0, 2.0]


def test_an_expired_key_is_stored_again(client: TestClient, db: psycopg.Connection[Any]) -> None:
    client.post(BATCH, json=[event(1)], headers={"Idempotency-Key": "old"})
    db.execute("UPDATE _analytics.idempotency_keys SET created_at = now() - interval '25 hours'")

    again = client.post(BATCH, json=[event(1)], headers={"Idempotency-Key": "old"})

    assert again.json() == {"accepted": 1, "duplicate": False}
    assert stored(db) == [1.0, 1.0]


@pytest.mark.parametrize("key", [b"", b"has space", b"x" * 201, "naïve".encode("latin-1")])
def test_a_malformed_key_is_a_400(client: TestClient, key: bytes) -> None:
    response = client.post(BATCH, json=[event(1)], headers={"Idempotency-Key": key})

    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "Idempotency-Key"


def test_a_batch_writes_its_partial_aggregates_with_its_events(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=2)
    events = [
        event(2.0, timestamp=(minute + timedelta(seconds=5)).isoformat()),
        event(2.0, timestamp=(minute + timedelta(seconds=50)).isoformat()),
        event(-3.5, timestamp=(minute + timedelta(seconds=20)).isoformat(), tags={"host": "b"}),
        event(0.0, timestamp=(minute + timedelta(minutes=1)).isoformat()),
    ]

    assert client.post(BATCH, json=events).status_code == 200

    # One row per (minute, series), keys ascending with their counts (analytics.sketch_key).
    series = db.execute(
        "SELECT d.minute - %s, d.count, d.sum, d.min, d.max, d.keys, d.counts "
        "FROM _analytics.series_deltas AS d ORDER BY 1, 2 DESC",
        (minute,),
    ).fetchall()
    keys = db.execute("SELECT analytics.sketch_key(2.0), analytics.sketch_key(-3.5)").fetchone()
    assert keys is not None
    two, minus = keys
    assert series == [
        (timedelta(0), 2, 4.0, 2.0, 2.0, [two], [2]),
        (timedelta(0), 1, -3.5, -3.5, -3.5, [minus], [1]),
        (timedelta(minutes=1), 1, 0.0, 0.0, 0.0, [0], [1]),
    ]
    # And one per (minute, metric), all of its series together.
    metric = db.execute(
        "SELECT minute - %s, count, sum, keys, counts FROM _analytics.metric_deltas ORDER BY 1",
        (minute,),
    ).fetchall()
    assert metric == [
        (timedelta(0), 3, 0.5, [minus, two], [1, 2]),
        (timedelta(minutes=1), 1, 0.0, [0], [1]),
    ]


def test_a_refused_batch_writes_no_partial_aggregates(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    response = client.post(BATCH, json=[event(1.0), {**event(2.0), "metric_type": "nope"}])

    assert response.status_code == 422
    assert db.execute("SELECT count(*) FROM _analytics.series_deltas").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM _analytics.metric_deltas").fetchone() == (0,)


def test_a_type_conflict_in_a_batch_names_both_types(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    client.post(BATCH, json=[event(1)])

    response = client.post(BATCH, json=[event(2), {**event(3), "metric_type": "counter"}])

    assert response.status_code == 422
    assert response.json()["details"] == [
        {
            "field": "metric_type",
            "reason": "metric 'jobs.duration' is a timer; this event says counter",
            "index": 1,
            "metric": "jobs.duration",
        }
    ]
    assert stored(db) == [1.0]


@pytest.fixture
def strict_client(db_url: str) -> Iterator[TestClient]:
    limits = {
        "INGEST_MAX_BODY_BYTES": "4096",
        "INGEST_MAX_BATCH_EVENTS": "5",
        "INGEST_MAX_NAME_LENGTH": "20",
        "INGEST_MAX_TAGS": "2",
        "INGEST_MAX_TAG_KEY_LENGTH": "8",
        "INGEST_MAX_TAG_VALUE_LENGTH": "8",
        "INGEST_MAX_FUTURE_S": "60",
        "INGEST_MAX_SERIES_PER_METRIC": "3",
        "RETENTION_DAYS": "7",
    }
    with make_client(db_url, **limits) as test_client:
        yield test_client


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


@pytest.mark.parametrize(
    ("events", "field", "reason"),
    [
        ([event(metric_name="n" * 21)], "metric_name", "longer than 20 characters"),
        ([event(metric_name="bad name")], "metric_name", "matching regex"),
        ([event(tags={"a": "1", "b": "2", "c": "3"})], "tags", "more than 2 tags"),
        ([event(tags={"a": "1", "b": "2"}, source="s")], "tags", "counting `source`"),
        ([event(tags={"longerkey": "1"})], "tags.longerkey", "key longer than 8"),
        ([event(tags={"k": "123456789"})], "tags.k", "value longer than 8"),
        # An hour ahead: the parameters are made when the suite is collected, minutes earlier.
        ([event(timestamp=ago(seconds=-3600))], "timestamp", "more than 60 s ahead"),
        ([event(timestamp=ago(days=8))], "timestamp", "older than the retention of 7 days"),
    ],
)
def test_each_limit_is_refused_with_a_422_naming_it(
    strict_client: TestClient,
    db: psycopg.Connection[Any],
    events: list[dict[str, Any]],
    field: str,
    reason: str,
) -> None:
    response = strict_client.post(BATCH, json=events)

    assert response.status_code == 422
    detail = response.json()["details"][0]
    assert (detail["index"], detail["field"]) == (0, field)
    assert reason in detail["reason"]
    assert stored(db) == []


def test_a_non_finite_value_is_refused(client: TestClient, db: psycopg.Connection[Any]) -> None:
    body = b'[{"metric_name": "x", "value": -1e400, "metric_type": "gauge"}]'

    response = client.post(BATCH, content=body, headers=JSON_HEADERS)

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "value"
    assert stored(db) == []


def test_too_many_events_in_a_batch_is_a_413(
    strict_client: TestClient, db: psycopg.Connection[Any]
) -> None:
    response = strict_client.post(BATCH, json=[event(i) for i in range(6)])

    assert response.status_code == 413
    assert "the limit is 5" in response.json()["message"]
    assert stored(db) == []


def test_a_body_over_the_limit_is_a_413(strict_client: TestClient) -> None:
    response = strict_client.post(BATCH, json=[event(tags={"k": "v" * 5000})])

    assert response.status_code == 413


def test_a_gzip_bomb_is_a_413(strict_client: TestClient) -> None:
    bomb = gzip.compress(b"[" + b" " * 3_000_000 + b"]")
    assert len(bomb) < 4096

    response = strict_client.post(
        BATCH, content=bomb, headers={**JSON_HEADERS, "content-encoding": "gzip"}
    )

    assert response.status_code == 413
    assert "once decompressed" in response.json()["message"]


def test_corrupt_gzip_is_a_400(client: TestClient) -> None:
    response = client.post(
        BATCH, content=b"not gzip at all", headers={**JSON_HEADERS, "content-encoding": "gzip"}
    )

    assert response.status_code == 400


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "text/plain"},
        {"content-type": "application/xml"},
        {**JSON_HEADERS, "content-encoding": "br"},
    ],
)
def test_unsupported_content_is_a_415(client: TestClient, headers: dict[str, str]) -> None:
    response = client.post(BATCH, content=b"[]", headers=headers)

    assert response.status_code == 415


def test_new_series_beyond_the_limit_are_refused_but_existing_ones_work(
    strict_client: TestClient, db: psycopg.Connection[Any]
) -> None:
    first = [event(i, tags={"host": f"h{i}"}) for i in range(3)]
    assert strict_client.post(BATCH, json=first).status_code == 200

    over = strict_client.post(BATCH, json=[event(9, tags={"host": "h9"})])
    existing = strict_client.post(BATCH, json=[event(5, tags={"host": "h1"})])
    other_metric = strict_client.post(BATCH, json=[event(6, metric_name="other")])

    assert over.status_code == 422
    assert "'jobs.duration' has reached its limit of 3 series" in over.json()["message"]
    assert existing.status_code == 200
    assert other_metric.status_code == 200
    assert stored(db) == [0.0, 1.0, 2.0, 5.0, 6.0]


def test_a_new_metric_with_two_types_in_one_batch_is_refused_and_not_created(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    mixed = [
        {**event(1), "metric_name": "fresh", "metric_type": "counter"},
        {**event(2), "metric_name": "fresh", "metric_type": "gauge"},
    ]

    refused = client.post(BATCH, json=mixed)
    fixed = client.post(BATCH, json=[{**event(3), "metric_name": "fresh", "metric_type": "gauge"}])

    assert refused.status_code == 422
    assert refused.json()["details"][0]["index"] == 1
    assert fixed.status_code == 200
    assert db.execute(
        "SELECT metric_type::text FROM analytics.metrics WHERE name = 'fresh'"
    ).fetchone() == ("gauge",)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"tags": {"k": "a\u0000b"}}, "tags.k"),
        ({"source": "a\u0000"}, "source"),
        ({"unit": "m\u0000s"}, "unit"),
    ],
)
def test_nul_characters_are_refused(
    client: TestClient, db: psycopg.Connection[Any], fields: dict[str, Any], field: str
) -> None:
    response = client.post(BATCH, json=[event(1), event(2, **fields)])

    assert response.status_code == 422
    assert (response.json()["details"][0]["index"], response.json()["details"][0]["field"]) == (
        1,
        field,
    )
    assert stored(db) == []
