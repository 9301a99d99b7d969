"""InfluxDB line protocol: the real client (influxdb-client, gzip on) on /api/v2/write, a plain
1.x /write, and the refusals a sender sees, each naming the line, with nothing stored."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.write_api import SYNCHRONOUS
from starlette.testclient import TestClient

from auth import keys
from tests.support import api_server, count, make_client, stored_events


def stored(db: psycopg.Connection[Any], metric: str) -> list[tuple[datetime, float, Any]]:
    return [(at, value, tags) for at, value, tags, _ in stored_events(db, metric)]


def test_the_influxdb_client_writes_every_numeric_field_as_a_gauge(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    _, key = keys.create(db_url, "telegraf", ["ingest"])
    now = datetime.now(UTC).replace(microsecond=123456)
    points = [
        Point("cpu")
        .tag("host", f"h{i}")
        .field("usage_idle", 90.5 + i)
        .field("cores", 4)  # an integer: 4i on the wire
        .field("online", i % 2 == 0)  # a boolean: 1 or 0
        .field("model", "x86 64")  # a string: skipped
        .time(now - timedelta(seconds=i), WritePrecision.NS)
        for i in range(3)
    ]
    with (
        api_server(db_url) as base,
        InfluxDBClient(url=base, token=key, org="any", enable_gzip=True) as influx,
    ):
        influx.write_api(write_options=SYNCHRONOUS).write(bucket="any", record=points)
        metrics = influx.api_client.rest_client.pool_manager.request("GET", f"{base}/metrics")

    idle = stored(db, "cpu_usage_idle")
    assert [(t, v, tags) for t, v, tags in idle] == [
        (now - timedelta(seconds=2), 92.5, {"host": "h2"}),
        (now - timedelta(seconds=1), 91.5, {"host": "h1"}),
        (now, 90.5, {"host": "h0"}),
    ]
    assert [v for _, v, _ in stored(db, "cpu_cores")] == [4.0, 4.0, 4.0]
    assert [v for _, v, _ in stored(db, "cpu_online")] == [1.0, 0.0, 1.0]
    assert stored(db, "cpu_model") == []
    assert db.execute(
        "SELECT metric_type FROM analytics.metrics WHERE name = 'cpu_usage_idle'"
    ).fetchone() == ("gauge",)
    exposition = metrics.data.decode()
    assert 'astraeus_ingest_skipped_values_total{protocol="influx",reason="string_field"} 3.0' in (
        exposition
    )


def test_a_1x_write_takes_its_precision_and_answers_204(
    db_url: str, db: psycopg.Connection[Any], client: TestClient
) -> None:
    second = int(datetime.now(UTC).timestamp())
    body = f"disk,path=/var used_percent=41.25 {second}\ndisk,path=/ used_percent=7 {second}\n"
    answer = client.post("/write?db=telegraf&precision=s", content=body)

    assert answer.status_code == 204, answer.text
    assert answer.content == b""
    rows = stored(db, "disk_used_percent")
    assert sorted((v, tags["path"]) for _, v, tags in rows) == [(7.0, "/"), (41.25, "/var")]
    assert {t for t, _, _ in rows} == {datetime.fromtimestamp(second, UTC)}


def test_a_line_without_a_timestamp_is_stamped_on_arrival(
    db: psycopg.Connection[Any], client: TestClient
) -> None:
    before = datetime.now(UTC)
    assert client.post("/api/v2/write?org=o&bucket=b", content=b"mem used=1.5").status_code == 204
    ((at, value, _),) = stored(db, "mem_used")
    assert value == 1.5 and before <= at <= datetime.now(UTC)


@pytest.mark.parametrize(
    ("body", "line", "reason"),
    [
        (b"cpu v=1\ncpu,host=a\ncpu v=3", 2, "Failed to parse value of tag"),
        (b"cpu v=1\n\ncpu v=\n", 3, "Failed to parse value of field"),
        (b"cpu v=1 12x", 1, "timestamp"),
        (b"cpu v=1\ncpu v=1e999", 2, "Failed to parse"),
    ],
)
def test_a_bad_line_refuses_the_request_naming_it(
    db: psycopg.Connection[Any], client: TestClient, body: bytes, line: int, reason: str
) -> None:
    answer = client.post("/api/v2/write", content=body)

    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "bad_request"
    assert answer.json()["message"].startswith(f"line {line}: ")
    assert answer.json()["details"][0]["line"] == line
    assert reason in answer.json()["details"][0]["reason"]
    assert count(db) == 0


def test_events_our_limits_refuse_are_named_by_line_as_a_400(
    db: psycopg.Connection[Any], client: TestClient
) -> None:
    long_value = "x" * 1000
    body = f"cpu,host=a v=1\ncpu,host={long_value} v=2\n".encode()
    answer = client.post("/write", content=body)

    assert answer.status_code == 400, answer.text
    detail = answer.json()["details"][0]
    assert detail["line"] == 2 and detail["field"].startswith("tags")
    assert count(db) == 0


def test_refusals_of_the_request_itself(db: psycopg.Connection[Any], client: TestClient) -> None:
    precision = client.post("/api/v2/write?precision=days", content=b"cpu v=1")
    truncated = client.post(
        "/api/v2/write",
        content=gzip.compress(b"cpu v=1\n" * 100)[:-8],
        headers={"Content-Encoding": "gzip"},
    )

    assert precision.status_code == 400
    assert precision.json()["details"] == [
        {"field": "precision", "reason": "one of ns, n, us, u, ms, s, m, h, not 'days'"}
    ]
    assert truncated.status_code == 400 and "truncated" in truncated.json()["message"]
    assert count(db) == 0


def test_the_key_may_come_as_token_and_must_have_the_ingest_scope(db_url: str) -> None:
    _, reader = keys.create(db_url, "reader", ["read"])
    _, writer = keys.create(db_url, "writer", ["ingest"])
    with make_client(db_url, scopes=None) as anonymous:
        missing = anonymous.post("/api/v2/write", content=b"cpu v=1")
        read_only = anonymous.post(
            "/api/v2/write", content=b"cpu v=1", headers={"Authorization": f"Token {reader}"}
        )
        token = anonymous.post(
            "/api/v2/write", content=b"cpu v=1", headers={"Authorization": f"Token {writer}"}
        )

    assert missing.status_code == 401
    assert read_only.status_code == 403
    assert token.status_code == 204


def test_the_client_reports_the_refusal(db_url: str) -> None:
    _, key = keys.create(db_url, "sender", ["ingest"])
    with (
        api_server(db_url) as base,
        InfluxDBClient(url=base, token=key, org="o") as influx,
        pytest.raises(InfluxDBError) as refused,
    ):
        influx.write_api(write_options=SYNCHRONOUS).write(bucket="b", record="cpu,host=a")

    assert refused.value.response.status == 400
    assert "line 1" in refused.value.message


def test_names_are_made_ones_we_take_and_strings_may_hold_newlines(
    db: psycopg.Connection[Any], client: TestClient
) -> None:
    body = (
        "\ufeffmy\\ cpu,1m=x v=2\n"  # a byte order mark, a space, a tag key with a digit first
        'log,host=a msg="line one\nline two",level=3i\n'  # a newline inside a string field
    ).encode()
    answer = client.post("/api/v2/write", content=body)

    assert answer.status_code == 204, answer.text
    assert [(v, tags) for _, v, tags in stored(db, "my_cpu_v")] == [(2.0, {"_1m": "x"})]
    assert [(v, tags) for _, v, tags in stored(db, "log_level")] == [(3.0, {"host": "a"})]


def test_a_retried_body_of_timestamped_points_is_stored_once(
    db: psycopg.Connection[Any], client: TestClient
) -> None:
    second = int(datetime.now(UTC).timestamp())
    body = f"net,if=eth0 rx=10,tx=20 {second}\nnet,if=eth1 rx=1 {second}".encode()
    answers = [client.post("/write?precision=s", content=body).status_code for _ in range(3)]

    assert answers == [204, 204, 204]
    assert count(db) == 3


def test_a_1x_error_says_what_is_wrong_in_its_error_field(
    db_url: str, db: psycopg.Connection[Any], client: TestClient
) -> None:
    refused = client.post("/write", content=b"cpu,host=a")
    with make_client(db_url, INGEST_MAX_BATCH_EVENTS="5") as limited:
        too_many = limited.post("/write", content=b"cpu a=1,b=2,c=3\ncpu d=4,e=5,f=6")

    assert refused.status_code == 400
    assert refused.json()["error"] == refused.json()["message"]
    assert refused.json()["error"].startswith("line 1: ")
    assert too_many.status_code == 413
    assert "lines times numeric fields" in too_many.json()["error"]
    assert count(db) == 0
