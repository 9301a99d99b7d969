from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

RECORD = "/api/v1/analytics/metrics/record"
SEED_EXAMPLE = {
    "metric_name": "api.response_time",
    "value": 125.5,
    "metric_type": "timer",
    "unit": "ms",
    "tags": {"endpoint": "/api/agents", "method": "GET"},
}


def statistics(client: TestClient, name: str, **params: Any) -> Any:
    return client.get(f"/api/v1/analytics/metrics/{name}/statistics", params=params)


def stored_events(db: psycopg.Connection[Any]) -> int:
    row = db.execute("SELECT count(*) FROM analytics.metric_events").fetchone()
    assert row is not None
    return int(row[0])


def test_the_seed_example_is_recorded_and_counted_at_once(client: TestClient) -> None:
    recorded = client.post(RECORD, json=SEED_EXAMPLE)

    assert recorded.status_code == 200
    assert recorded.json() == {"accepted": 1, "duplicate": False}
    stats = statistics(client, "api.response_time", hours=24).json()
    assert stats["metric_name"] == "api.response_time"
    assert stats["count"] == 1
    assert stats["avg"] == stats["min"] == stats["max"] == 125.5
    assert stats["p50"] == stats["p99"] == pytest.approx(125.5, rel=0.01)


def hours_ago(hours: int) -> datetime:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return now - timedelta(hours=hours)


def test_statistics_over_a_window_are_exact(client: TestClient) -> None:
    base = hours_ago(30)
    for i, value in enumerate([10, 20, 30, 40, 50, 60, 70, 80, 90, 100]):
        tags = {"endpoint": "/a" if i % 2 else "/b"}
        when = (base + timedelta(minutes=i)).isoformat()
        event = {
            "metric_name": "latency",
            "value": value,
            "metric_type": "timer",
            "tags": tags,
            "timestamp": when,
        }
        assert client.post(RECORD, json=event).status_code == 200
    # Outside the window, and another metric inside it: neither may count.
    outside = {
        "metric_name": "latency",
        "value": 1000,
        "metric_type": "timer",
        "timestamp": (base - timedelta(hours=1)).isoformat(),
    }
    other = {
        "metric_name": "other",
        "value": 5000,
        "metric_type": "gauge",
        "timestamp": base.isoformat(),
    }
    assert client.post(RECORD, json=outside).status_code == 200
    assert client.post(RECORD, json=other).status_code == 200

    end = (base + timedelta(hours=1)).astimezone(timezone(timedelta(hours=2)))
    response = statistics(
        client, "latency", start=base.isoformat(), end=end.isoformat(), exact="true"
    )

    assert response.status_code == 200
    assert response.json() == {
        "metric_name": "latency",
        "count": 10,
        "avg": 55.0,
        "min": 10.0,
        "max": 100.0,
        "sum": 550.0,
        "p50": 50.0,
        "p95": 100.0,
        "p99": 100.0,
        "start": base.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end": (base + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "exact": True,
    }


def test_an_empty_window_has_count_zero_and_null_figures(client: TestClient) -> None:
    client.post(RECORD, json={**SEED_EXAMPLE, "timestamp": hours_ago(5).isoformat()})

    stats = statistics(client, "api.response_time", hours=1).json()

    assert stats["count"] == 0
    assert stats["avg"] is None and stats["p95"] is None


@pytest.mark.parametrize("unit", [1, 1.0, 1000])
def test_epoch_timestamps_in_seconds_or_milliseconds(client: TestClient, unit: float) -> None:
    when = hours_ago(3)
    client.post(RECORD, json={**SEED_EXAMPLE, "timestamp": int(when.timestamp()) * unit})

    stats = statistics(
        client,
        "api.response_time",
        start=when.isoformat(),
        end=(when + timedelta(seconds=1)).isoformat(),
    ).json()

    assert stats["count"] == 1


def test_same_tags_in_any_order_are_one_series(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    client.post(RECORD, json={**SEED_EXAMPLE, "tags": {"a": "1", "b": "2"}})
    client.post(RECORD, json={**SEED_EXAMPLE, "tags": {"b": "2", "a": "1"}})
    client.post(RECORD, json={**SEED_EXAMPLE, "tags": {"a": "1"}, "source": "web"})

    rows = db.execute("SELECT tags FROM analytics.series ORDER BY id").fetchall()

    assert [row[0] for row in rows] == [{"a": "1", "b": "2"}, {"a": "1", "source": "web"}]


BAD_RECORDS = [
    pytest.param(
        {k: v for k, v in SEED_EXAMPLE.items() if k != "value"}, 422, "value", id="missing value"
    ),
    pytest.param(
        {k: v for k, v in SEED_EXAMPLE.items() if k != "metric_name"},
        422,
        "metric_name",
        id="missing name",
    ),
    pytest.param({**SEED_EXAMPLE, "value": "fast"}, 422, "value", id="value not a number"),
    pytest.param({**SEED_EXAMPLE, "value": True}, 422, "value", id="value a boolean"),
    pytest.param(
        {**SEED_EXAMPLE, "metric_type": "meter"}, 422, "metric_type", id="unknown metric type"
    ),
    pytest.param({**SEED_EXAMPLE, "tags": {"endpoint": 5}}, 422, "tags", id="tag not a string"),
    pytest.param({**SEED_EXAMPLE, "metric_name": "has space"}, 422, "metric_name", id="bad name"),
    pytest.param(
        {**SEED_EXAMPLE, "timestamp": "2026-11-01T12:00:00"},
        422,
        "timestamp",
        id="timestamp without offset",
    ),
    pytest.param({**SEED_EXAMPLE, "colour": "red"}, 422, "colour", id="unknown field"),
    pytest.param(
        {**SEED_EXAMPLE, "source": "a", "tags": {"source": "b"}},
        422,
        "source",
        id="source contradicts tag",
    ),
    pytest.param([SEED_EXAMPLE], 422, "body", id="array instead of object"),
]


@pytest.mark.parametrize(("body", "status", "field"), BAD_RECORDS)
def test_bad_records_name_the_field_and_store_nothing(
    client: TestClient, db: psycopg.Connection[Any], body: Any, status: int, field: str
) -> None:
    response = client.post(RECORD, json=body)

    assert response.status_code == status
    error = response.json()
    assert error["error"] == "validation_failed"
    assert [detail["field"] for detail in error["details"]] == [field]
    assert field in error["message"]
    assert stored_events(db) == 0


def test_a_non_finite_value_is_refused(client: TestClient, db: psycopg.Connection[Any]) -> None:
    body = b'{"metric_name": "x", "value": 1e999, "metric_type": "gauge"}'

    response = client.post(RECORD, content=body, headers={"content-type": "application/json"})

    assert response.status_code == 422
    assert response.json()["details"] == [
        {"field": "value", "reason": "must be a finite number (at most 1.8e308 in magnitude)"}
    ]
    assert stored_events(db) == 0


@pytest.mark.parametrize("body", [b'{"metric_name": "x",', b"NaN", b'{"value": NaN}', b""])
def test_malformed_json_is_a_400(
    client: TestClient, db: psycopg.Connection[Any], body: bytes
) -> None:
    response = client.post(RECORD, content=body, headers={"content-type": "application/json"})

    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert "not valid JSON" in response.json()["message"]
    assert stored_events(db) == 0


def test_a_form_body_is_a_415(client: TestClient, db: psycopg.Connection[Any]) -> None:
    response = client.post(RECORD, data={"metric_name": "x"})

    assert response.status_code == 415
    assert stored_events(db) == 0


def test_a_metric_keeps_the_type_of_its_first_event(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    client.post(RECORD, json=SEED_EXAMPLE)

    response = client.post(RECORD, json={**SEED_EXAMPLE, "metric_type": "gauge"})

    assert response.status_code == 422
    assert response.json()["details"] == [
        {
            "field": "metric_type",
            "reason": "metric 'api.response_time' is a timer; this event says gauge",
            "metric": "api.response_time",
        }
    ]
    assert stored_events(db) == 1


def test_an_oversized_body_is_a_413(client: TestClient, db: psycopg.Connection[Any]) -> None:
    body = {**SEED_EXAMPLE, "tags": {"k": "v" * 70_000}}

    response = client.post(RECORD, json=body)

    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert stored_events(db) == 0


def test_statistics_of_an_unknown_metric_is_a_404(client: TestClient) -> None:
    response = statistics(client, "never.recorded")

    assert response.status_code == 404
    assert "never.recorded" in response.json()["message"]


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"hours": "abc"}, "hours"),
        ({"hours": "0"}, "hours"),
        ({"hours": "-3"}, "hours"),
        ({"hours": "nan"}, "hours"),
        ({"start": "yesterday"}, "start"),
        ({"start": "2026-03-01T12:00:00"}, "start"),
        ({"start": "2026-03-02T00:00:00Z", "end": "2026-03-01T00:00:00Z"}, "end"),
        ({"end": "2026-03-01T00:00:00Z"}, "start"),
        ({"hours": "1", "start": "2026-03-01T00:00:00Z"}, "hours"),
    ],
)
def test_bad_statistics_parameters_are_a_400_naming_them(
    client: TestClient, params: dict[str, str], parameter: str
) -> None:
    client.post(RECORD, json=SEED_EXAMPLE)

    response = statistics(client, "api.response_time", **params)

    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == parameter
