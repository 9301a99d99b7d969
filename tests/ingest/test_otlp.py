"""OTLP/HTTP metrics (POST /v1/metrics, /otlp/v1/metrics): the OpenTelemetry SDK exporting to
us with the protobuf exporter and, from its own virtualenv, the JSON one, with cumulative and
delta temporality; requests built with opentelemetry-proto for the cases the SDK does not make;
the refusals in OTLP's form (a google.rpc.Status, partial_success), nothing stored."""

from __future__ import annotations

import gzip
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as service
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from starlette.testclient import TestClient

from auth import keys
from tests.support import api_server

SENDER = Path(__file__).parents[1] / "senders" / "otlp_sender.py"
JSON_PYTHON = Path(__file__).parents[2] / ".venv-otlp-json" / "bin" / "python"
PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


def rows(db: psycopg.Connection[Any], metric: str) -> list[tuple[Any, ...]]:
    """(value, total, tags, type) of `metric`'s stored samples, oldest first."""
    return db.execute(
        "SELECT e.value, e.total, s.tags, m.metric_type::text "
        "FROM analytics.metric_events AS e JOIN analytics.series AS s ON s.id = e.series_id "
        "JOIN analytics.metrics AS m ON m.id = s.metric_id WHERE m.name = %s ORDER BY e.time",
        (metric,),
    ).fetchall()


def export(db_url: str, encoding: str, temporality: str) -> None:
    python = str(JSON_PYTHON) if encoding == "json" else sys.executable
    _, key = keys.create(db_url, f"otel {encoding} {temporality}", ["ingest"])
    with api_server(db_url) as base:
        subprocess.run(
            [python, str(SENDER), encoding, f"{base}/v1/metrics", key, temporality],
            check=True,
            timeout=120,
        )


SENDERS = [
    pytest.param("protobuf", id="protobuf exporter"),
    pytest.param(
        "json",
        id="JSON exporter",
        marks=pytest.mark.skipif(
            not JSON_PYTHON.exists(), reason="no .venv-otlp-json: `make test` makes it"
        ),
    ),
]


@pytest.mark.parametrize("encoding", SENDERS)
def test_the_sdk_cumulative_counter_counts_each_observation_once(
    db_url: str, db: psycopg.Connection[Any], encoding: str
) -> None:
    export(db_url, encoding, "cumulative")
    orders = rows(db, "shop.orders")
    # Totals 3 and 5, and 5 again at shutdown: the first counts from its start time.
    assert [(v, t) for v, t, _, _ in orders] == [(3, 3), (2, 5), (0, 5)]
    assert sum(v for v, *_ in orders) == 5
    tags = orders[0][2]
    assert tags["region"] == "eu"
    assert tags["deployment.environment"] == "test"
    assert tags["source"] == "shop"  # service.name
    assert "service.name" not in tags
    assert orders[0][3] == "counter"
    # A cumulative up-down counter is its current value; the gauge its values.
    assert [(v, t, kind) for v, t, _, kind in rows(db, "shop.stock")] == [
        (10, None, "gauge"),
        (6, None, "gauge"),
        (6, None, "gauge"),
    ]
    assert {v for v, *_ in rows(db, "shop.temperature")} == {21.5, 19.0}
    # The histogram: one observation each export; the shutdown's re-export adds none.
    assert histogram_points(db, "shop.latency") == [(1, 0.2), (1, pytest.approx(0.4))]
    check_exponential(db_url)
    assert db.execute(
        "SELECT unit, description FROM analytics.metrics WHERE name = 'shop.orders'"
    ).fetchone() == ("{order}", "Orders placed.")


@pytest.mark.parametrize("encoding", SENDERS)
def test_the_sdk_delta_counter_is_stored_as_its_increments(
    db_url: str, db: psycopg.Connection[Any], encoding: str
) -> None:
    export(db_url, encoding, "delta")
    assert [(v, t) for v, t, _, _ in rows(db, "shop.orders")] == [(3, None), (2, None)]
    assert histogram_points(db, "shop.latency") == [(1, 0.2), (1, 0.4)]
    check_exponential(db_url)


def check_exponential(db_url: str) -> None:
    """The SDK's exponential histogram, rescaled to fit its 160 buckets: a range of 125x needs
    scale 4 (buckets 4.4% wide, wider than our keys): percentiles within the bucket width and
    the sketch's 1% of what was recorded, min and max exact."""
    observed = [0.01 * 1.05**i for i in range(100)]
    from tests.support import make_client

    with make_client(db_url, scopes="read") as client:
        figures = client.get(
            "/api/v1/analytics/metrics/shop.wait/statistics", params={"hours": 1}
        ).json()
    assert figures["count"] == 100
    assert figures["sum"] == pytest.approx(sum(observed))
    assert (figures["min"], figures["max"]) == (observed[0], observed[-1])
    for name, rank in (("p50", 49), ("p95", 94), ("p99", 98)):
        assert figures[name] == pytest.approx(observed[rank], rel=2 ** (1 / 16) - 1 + 0.01), name


def histogram_points(db: psycopg.Connection[Any], metric: str) -> list[tuple[int, float]]:
    """(observations, sum) of each stored histogram point of `metric`, oldest first."""
    return [
        (count, total)
        for count, total in db.execute(
            "SELECT d.count, d.sum FROM analytics.distribution_store AS d "
            "JOIN analytics.series AS s ON s.id = d.series_id "
            "JOIN analytics.metrics AS m ON m.id = s.metric_id WHERE m.name = %s ORDER BY d.time",
            (metric,),
        ).fetchall()
    ]


def point(value: float, at: datetime, **fields: Any) -> metrics_pb2.NumberDataPoint:
    return metrics_pb2.NumberDataPoint(
        as_double=value, time_unix_nano=int(at.timestamp() * 1e9), **fields
    )


def request(*metrics: metrics_pb2.Metric) -> service.ExportMetricsServiceRequest:
    resource = {
        "attributes": [
            common_pb2.KeyValue(key="service.name", value=common_pb2.AnyValue(string_value="api"))
        ]
    }
    return service.ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                resource=resource, scope_metrics=[metrics_pb2.ScopeMetrics(metrics=metrics)]
            )
        ]
    )


def gauge(name: str, *points: metrics_pb2.NumberDataPoint) -> metrics_pb2.Metric:
    return metrics_pb2.Metric(name=name, gauge=metrics_pb2.Gauge(data_points=points))


def test_refused_points_are_a_partial_success_and_the_rest_is_stored(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    now = datetime.now(UTC)
    body = request(
        gauge("cpu.load", point(0.5, now), point(math.nan, now), point(1.0, now, flags=1)),
        metrics_pb2.Metric(
            name="rpc.latency",
            histogram=metrics_pb2.Histogram(
                data_points=[metrics_pb2.HistogramDataPoint(count=1, sum=0.2)]
            ),
        ),
        gauge("old.thing", point(1.0, now - timedelta(days=400))),
    ).SerializeToString()
    answer = client.post("/v1/metrics", content=body, headers=PROTOBUF)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/x-protobuf")
    response = service.ExportMetricsServiceResponse.FromString(answer.content)
    assert response.partial_success.rejected_data_points == 3
    message = response.partial_success.error_message
    assert message.startswith('cpu.load{"source":"api"}: point at') and "(and 2 more)" in message
    assert [v for v, *_ in rows(db, "cpu.load")] == [0.5]  # the flagged point: no value
    assert rows(db, "old.thing") == []


def test_json_requests_are_answered_in_json_and_gzip_is_read(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    now = datetime.now(UTC)
    body = {
        "resourceMetrics": [
            {
                "resource": {"attributes": [{"key": "host.name", "value": {"stringValue": "a"}}]},
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "jobs.done",
                                "sum": {
                                    "aggregationTemporality": 2,
                                    "isMonotonic": True,
                                    "dataPoints": [
                                        {
                                            "asInt": "7",
                                            "startTimeUnixNano": str(
                                                int((now - timedelta(hours=1)).timestamp() * 1e9)
                                            ),
                                            "timeUnixNano": str(int(now.timestamp() * 1e9)),
                                        }
                                    ],
                                },
                            }
                        ]
                    }
                ],
            }
        ]
    }
    answer = client.post(
        "/otlp/v1/metrics",
        content=gzip.compress(msgspec.json.encode(body)),
        headers={**JSON, "Content-Encoding": "gzip"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json() == {}
    assert rows(db, "jobs.done") == [(7, 7, {"host.name": "a"}, "counter")]


@pytest.mark.parametrize(
    ("headers", "body", "status", "says"),
    [
        (PROTOBUF, b"\x0a\x05\xff\xff", 400, "not a valid protobuf"),
        (JSON, b'{"resourceMetrics": [{"scopeMetrics": 3}]}', 400, "not a valid OTLP JSON"),
        ({"Content-Type": "text/plain"}, b"x", 415, "Content-Type"),
        ({**PROTOBUF, "Content-Encoding": "gzip"}, b"not gzip", 400, "gzip"),
    ],
    ids=["truncated protobuf", "bad JSON", "text", "bad gzip"],
)
def test_bad_requests_get_a_status_in_the_requests_type_and_store_nothing(
    client: TestClient,
    db: psycopg.Connection[Any],
    headers: dict[str, str],
    body: bytes,
    status: int,
    says: str,
) -> None:
    answer = client.post("/v1/metrics", content=body, headers=headers)
    assert answer.status_code == status, answer.text
    if headers["Content-Type"] == PROTOBUF["Content-Type"]:
        message = status_pb2.Status.FromString(answer.content).message
    else:
        message = answer.json()["message"]
    assert says in message
    assert db.execute("SELECT count(*) FROM analytics.metric_events").fetchone() == (0,)


def test_a_body_past_the_limit_is_413(db_url: str) -> None:
    from tests.support import make_client

    huge = gzip.compress(b"\x00" * 2_000_000)
    with make_client(db_url, INGEST_MAX_BODY_BYTES="1000000") as client:
        answer = client.post(
            "/v1/metrics", content=huge, headers={**JSON, "Content-Encoding": "gzip"}
        )
    assert answer.status_code == 413
    assert answer.json()["code"] == 11  # RESOURCE_EXHAUSTED


def test_a_summary_is_its_count_and_sum_totals_and_its_quantiles(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    now = datetime.now(UTC)
    start = int((now - timedelta(minutes=10)).timestamp() * 1e9)
    summaries = [
        metrics_pb2.SummaryDataPoint(
            start_time_unix_nano=start,
            time_unix_nano=int((now + timedelta(seconds=n)).timestamp() * 1e9),
            count=count,
            sum=total,
            quantile_values=[
                metrics_pb2.SummaryDataPoint.ValueAtQuantile(quantile=0.99, value=p99)
            ],
        )
        for n, (count, total, p99) in enumerate(((4, 2.0, 0.9), (6, 2.5, 0.8)))
    ]
    metric = metrics_pb2.Metric(name="rpc.time", summary=metrics_pb2.Summary(data_points=summaries))
    answer = client.post(
        "/v1/metrics", content=request(metric).SerializeToString(), headers=PROTOBUF
    )
    assert answer.status_code == 200, answer.text
    assert (
        service.ExportMetricsServiceResponse.FromString(
            answer.content
        ).partial_success.rejected_data_points
        == 0
    )
    assert [(v, t) for v, t, _, _ in rows(db, "rpc.time_count")] == [(4, 4), (2, 6)]
    assert [(v, t) for v, t, _, _ in rows(db, "rpc.time_sum")] == [(2.0, 2.0), (0.5, 2.5)]
    assert [(v, tags["quantile"], kind) for v, _, tags, kind in rows(db, "rpc.time")] == [
        (0.9, "0.99", "gauge"),
        (0.8, "0.99", "gauge"),
    ]


def statistics(client: TestClient, metric: str, since: datetime) -> dict[str, Any]:
    answer = client.get(
        f"/api/v1/analytics/metrics/{metric}/statistics",
        params={"start": (since - timedelta(minutes=1)).isoformat()},
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_a_delta_histogram_is_a_distribution_with_percentiles_within_its_buckets(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    points = [
        metrics_pb2.HistogramDataPoint(
            time_unix_nano=int((now + timedelta(seconds=n)).timestamp() * 1e9),
            count=5,
            sum=3.25,
            min=0.05,
            max=2.0,
            explicit_bounds=[0.1, 0.5, 1.0],
            bucket_counts=[1, 2, 1, 1],  # 0.05 | 0.2 0.3 | 0.7 | 2.0
        )
        for n in range(2)
    ]
    histogram = metrics_pb2.Metric(
        name="rpc.duration",
        unit="s",
        histogram=metrics_pb2.Histogram(data_points=points, aggregation_temporality=1),
    )
    answer = client.post(
        "/v1/metrics", content=request(histogram).SerializeToString(), headers=PROTOBUF
    )
    assert answer.status_code == 200, answer.text
    assert (
        service.ExportMetricsServiceResponse.FromString(
            answer.content
        ).partial_success.rejected_data_points
        == 0
    )
    figures = statistics(client, "rpc.duration", now)
    assert figures["count"] == 10  # observations, not points
    assert figures["sum"] == pytest.approx(6.5)
    assert (figures["min"], figures["max"]) == (0.05, 2.0)
    assert 0.1 <= figures["p50"] <= 0.5 * 1.01
    assert 1.0 <= figures["p99"] <= 2.0
    stored = db.execute(
        "SELECT count, sum, min, max, cardinality(keys) > 1 FROM analytics.distribution_store"
    ).fetchall()
    assert stored == [(5, 3.25, 0.05, 2.0, True)] * 2
    assert db.execute("SELECT count(*) FROM analytics.metric_event_store").fetchone() == (0,)
    assert db.execute(
        "SELECT metric_type::text FROM analytics.metrics WHERE name = 'rpc.duration'"
    ).fetchone() == ("histogram",)


def test_a_histogram_without_bounds_is_its_observations_at_their_mean(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    one = metrics_pb2.HistogramDataPoint(
        time_unix_nano=int(now.timestamp() * 1e9), count=3, sum=6.0, bucket_counts=[3]
    )
    histogram = metrics_pb2.Metric(
        name="unbounded",
        histogram=metrics_pb2.Histogram(data_points=[one], aggregation_temporality=1),
    )
    answer = client.post(
        "/v1/metrics", content=request(histogram).SerializeToString(), headers=PROTOBUF
    )
    assert answer.status_code == 200, answer.text
    figures = statistics(client, "unbounded", now)
    assert (figures["count"], figures["sum"]) == (3, 6.0)
    assert figures["p50"] == pytest.approx(2.0, rel=0.01)


def test_an_exponential_histogram_keeps_percentiles_within_one_percent(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    scale = 8  # buckets grow by 0.27%
    base = 2 ** (2**-scale)
    observed = [0.010 * 1.05**i for i in range(100)]  # 10 ms .. 1.3 s
    indexes = [math.ceil(math.log(v, base)) - 1 for v in observed]
    offset = min(indexes)
    counts = [0] * (max(indexes) - offset + 1)
    for index in indexes:
        counts[index - offset] += 1
    point = metrics_pb2.ExponentialHistogramDataPoint(
        time_unix_nano=int(now.timestamp() * 1e9),
        count=len(observed),
        sum=sum(observed),
        scale=scale,
        positive=metrics_pb2.ExponentialHistogramDataPoint.Buckets(
            offset=offset, bucket_counts=counts
        ),
    )
    histogram = metrics_pb2.Metric(
        name="queue.wait",
        exponential_histogram=metrics_pb2.ExponentialHistogram(
            data_points=[point], aggregation_temporality=1
        ),
    )
    answer = client.post(
        "/v1/metrics", content=request(histogram).SerializeToString(), headers=PROTOBUF
    )
    assert answer.status_code == 200, answer.text
    figures = statistics(client, "queue.wait", now)
    assert figures["count"] == 100
    for name, rank in (("p50", 49), ("p95", 94), ("p99", 98)):
        assert figures[name] == pytest.approx(observed[rank], rel=0.015), name


def test_histogram_points_survive_a_rebuild_of_the_tiers_from_raw(
    db_url: str, client: TestClient
) -> None:
    from jobs.compact import compact, rebuild

    now = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    histogram_point = metrics_pb2.HistogramDataPoint(
        time_unix_nano=int(now.timestamp() * 1e9),
        count=4,
        sum=10.0,
        explicit_bounds=[1.0, 5.0],
        bucket_counts=[1, 2, 1],
    )
    histogram = metrics_pb2.Metric(
        name="batch.size",
        histogram=metrics_pb2.Histogram(data_points=[histogram_point], aggregation_temporality=1),
    )
    body = request(histogram, gauge("batch.gauge", point(2.0, now))).SerializeToString()
    assert client.post("/v1/metrics", content=body, headers=PROTOBUF).status_code == 200
    before = statistics(client, "batch.size", now)
    compact(db_url)
    rebuild(db_url, now - timedelta(days=1), now + timedelta(days=1))
    after = statistics(client, "batch.size", now)
    assert after == before
    assert after["count"] == 4 and after["sum"] == 10.0


def test_cumulative_histograms_store_what_each_point_adds_resets_included(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    start = int((now - timedelta(hours=1)).timestamp() * 1e9)

    def cumulative(seconds: int, counts: list[int], total: float, since: int) -> Any:
        return metrics_pb2.HistogramDataPoint(
            start_time_unix_nano=since,
            time_unix_nano=int((now + timedelta(seconds=seconds)).timestamp() * 1e9),
            count=sum(counts),
            sum=total,
            explicit_bounds=[1.0, 10.0],
            bucket_counts=counts,
        )

    points = [
        cumulative(0, [1, 1, 0], 5.5, start),  # since its start: 2 observations
        cumulative(10, [1, 3, 1], 30.0, start),  # +3
        cumulative(20, [1, 3, 1], 30.0, start),  # the same again: nothing
        cumulative(30, [0, 1, 0], 4.0, start + 10**9),  # a new start: a restart, 1
    ]
    histogram = metrics_pb2.Metric(
        name="job.seconds",
        histogram=metrics_pb2.Histogram(data_points=points, aggregation_temporality=2),
    )
    body = request(histogram).SerializeToString()
    answer = client.post("/v1/metrics", content=body, headers=PROTOBUF)
    assert answer.status_code == 200, answer.text
    assert histogram_points(db, "job.seconds") == [(2, 5.5), (3, 24.5), (1, 4.0)]
    figures = statistics(client, "job.seconds", now)
    assert (figures["count"], figures["sum"]) == (6, 34.0)
    # The same request again (a retry): stored once.
    again = client.post("/v1/metrics", content=body, headers=PROTOBUF)
    assert again.status_code == 200
    assert len(histogram_points(db, "job.seconds")) == 3


def test_a_cumulative_histogram_goes_on_where_it_was_after_our_restart(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    from tests.support import make_client

    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    start = int((now - timedelta(hours=1)).timestamp() * 1e9)

    def send(client: TestClient, seconds: int, counts: list[int]) -> None:
        point = metrics_pb2.HistogramDataPoint(
            start_time_unix_nano=start,
            time_unix_nano=int((now + timedelta(seconds=seconds)).timestamp() * 1e9),
            count=sum(counts),
            explicit_bounds=[1.0, 10.0],
            bucket_counts=counts,
        )
        histogram = metrics_pb2.Metric(
            name="task.seconds",
            histogram=metrics_pb2.Histogram(data_points=[point], aggregation_temporality=2),
        )
        body = request(histogram).SerializeToString()
        assert client.post("/v1/metrics", content=body, headers=PROTOBUF).status_code == 200

    with make_client(db_url) as client:
        send(client, 0, [1, 0, 0])
        send(client, 10, [1, 2, 0])
    with make_client(db_url) as restarted:
        send(restarted, 20, [1, 5, 0])
    assert [n for n, _ in histogram_points(db, "task.seconds")] == [1, 2, 3]


@pytest.mark.parametrize(
    ("scale", "offset"), [(-10, 0), (0, 1023), (20, 2**30)], ids=["scale -10", "huge", "fine"]
)
def test_extreme_exponential_buckets_are_stored_within_the_floats(
    client: TestClient, db: psycopg.Connection[Any], scale: int, offset: int
) -> None:
    point = metrics_pb2.ExponentialHistogramDataPoint(
        time_unix_nano=int(datetime.now(UTC).timestamp() * 1e9),
        count=2,
        scale=scale,
        positive=metrics_pb2.ExponentialHistogramDataPoint.Buckets(
            offset=offset, bucket_counts=[1, 1]
        ),
    )
    histogram = metrics_pb2.Metric(
        name="extreme",
        exponential_histogram=metrics_pb2.ExponentialHistogram(
            data_points=[point], aggregation_temporality=1
        ),
    )
    answer = client.post(
        "/v1/metrics", content=request(histogram).SerializeToString(), headers=PROTOBUF
    )
    assert answer.status_code == 200, answer.text
    assert [n for n, _ in histogram_points(db, "extreme")] == [2]


def test_few_observations_of_a_wide_bucket_are_spread_over_it(
    client: TestClient,
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    points = [
        metrics_pb2.HistogramDataPoint(
            time_unix_nano=int((now + timedelta(milliseconds=n)).timestamp() * 1e9),
            count=3,
            explicit_bounds=[100.0, 250.0],
            bucket_counts=[0, 3, 0],
        )
        for n in range(200)
    ]
    histogram = metrics_pb2.Metric(
        name="wide",
        histogram=metrics_pb2.Histogram(data_points=points, aggregation_temporality=1),
    )
    answer = client.post(
        "/v1/metrics", content=request(histogram).SerializeToString(), headers=PROTOBUF
    )
    assert answer.status_code == 200, answer.text
    assert statistics(client, "wide", now)["p50"] == pytest.approx(175, rel=0.02)
