"""Prometheus remote write (POST /api/v1/write): requests built with the protobuf messages and
snappy as a sender builds them, 1.0 and 2.0; counters stored as increases beside their
totals; the refusals a sender sees, in remote write's form (status, the -Written headers).

The real senders (Prometheus itself, vmagent) are in test_remote_write_senders.py."""

from __future__ import annotations

import math
import struct
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import cramjam
import psycopg
import pytest
from starlette.testclient import TestClient

from ingest.proto import remote_write_v1_pb2 as v1
from ingest.proto import remote_write_v2_pb2 as v2
from ingest.totals import RunningTotals
from tests.support import make_client

V1_HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}
V2_HEADERS = {
    "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "2.0.0",
}
STALE = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def series_v1(labels: dict[str, str], *samples: tuple[datetime, float]) -> v1.TimeSeries:
    return v1.TimeSeries(
        labels=[v1.Label(name=k, value=v) for k, v in sorted(labels.items())],
        samples=[v1.Sample(value=value, timestamp=ms(at)) for at, value in samples],
    )


def send_v1(client: TestClient, *series: v1.TimeSeries, metadata: list[Any] | None = None) -> Any:
    body = v1.WriteRequest(timeseries=series, metadata=metadata or []).SerializeToString()
    return client.post(
        "/api/v1/write", content=bytes(cramjam.snappy.compress_raw(body)), headers=V1_HEADERS
    )


def rows(db: psycopg.Connection[Any], metric: str) -> list[tuple[Any, ...]]:
    """(time, value, total, tags, type) of every stored sample of `metric`, oldest first."""
    return db.execute(
        "SELECT e.time, e.value, e.total, s.tags, m.metric_type::text "
        "FROM analytics.metric_events AS e JOIN analytics.series AS s ON s.id = e.series_id "
        "JOIN analytics.metrics AS m ON m.id = s.metric_id WHERE m.name = %s ORDER BY e.time",
        (metric,),
    ).fetchall()


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


def test_gauges_are_stored_as_sent_with_their_labels_as_tags(
    client: TestClient, db: psycopg.Connection[Any], now: datetime
) -> None:
    labels = {"__name__": "node_load1", "job": "node", "instance": "a:9100"}
    answer = send_v1(client, series_v1(labels, (now, 0.25), (now + timedelta(seconds=15), 1.5)))
    assert answer.status_code == 204, answer.text
    assert answer.headers["X-Prometheus-Remote-Write-Samples-Written"] == "2"
    assert answer.headers["X-Prometheus-Remote-Write-Histograms-Written"] == "0"
    tags = {"job": "node", "instance": "a:9100"}
    assert rows(db, "node_load1") == [
        (now, 0.25, None, tags, "gauge"),
        (now + timedelta(seconds=15), 1.5, None, tags, "gauge"),
    ]


def test_a_counter_is_stored_as_its_increases_with_resets_and_its_totals_beside(
    client: TestClient, db: psycopg.Connection[Any], now: datetime
) -> None:
    labels = {"__name__": "http_requests_total", "job": "api"}
    step = timedelta(seconds=15)
    first = series_v1(labels, (now, 100), (now + step, 130))
    assert send_v1(client, first).status_code == 204
    # The next request: on from 130, then a restart (the total falls), then on again.
    later = series_v1(labels, (now + 2 * step, 180), (now + 3 * step, 20), (now + 4 * step, 25))
    assert send_v1(client, later).status_code == 204
    stored = rows(db, "http_requests_total")
    assert [(v, t) for _, v, t, _, _ in stored] == [
        (0, 100),  # the first total of a series: its baseline
        (30, 130),
        (50, 180),
        (20, 20),  # a reset: the whole new total
        (5, 25),
    ]
    assert {kind for *_, kind in stored} == {"counter"}
    statistics = client.get(
        "/api/v1/analytics/metrics/http_requests_total/statistics",
        params={"start": (now - step).isoformat(), "end": (now + 5 * step).isoformat()},
    ).json()
    assert statistics["sum"] == 105  # the increase over the window
    assert statistics["count"] == 5


@pytest.mark.parametrize("memory", [RunningTotals.MOST, 8])
def test_shards_of_one_sender_at_once_store_every_increase(
    db_url: str,
    db: psycopg.Connection[Any],
    now: datetime,
    memory: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As Prometheus sends: shards of their own series at once, each one request at a time;
    also with the newest totals of fewer series in memory than there are (each group making
    room by forgetting others', read back from the store)."""
    monkeypatch.setattr(RunningTotals, "MOST", memory)
    step = timedelta(seconds=1)

    def shard(number: int) -> list[int]:
        statuses = []
        for scrape in range(12):
            series = [
                series_v1(
                    {"__name__": "shard_requests_total", "instance": f"i{number}-{n}"},
                    (now + scrape * step, scrape * (n + 1)),
                )
                for n in range(5)
            ]
            statuses.append(send_v1(client, *series).status_code)
        return statuses

    with make_client(db_url) as client, ThreadPoolExecutor(max_workers=4) as pool:
        statuses = [
            status for shard_statuses in pool.map(shard, range(4)) for status in shard_statuses
        ]
    assert statuses == [204] * 48
    stored = rows(db, "shard_requests_total")
    assert len(stored) == 4 * 5 * 12
    by_series: dict[str, list[tuple[float, float]]] = {}
    for _, value, total, tags, _ in stored:
        by_series.setdefault(tags["instance"], []).append((value, total))
    for instance, samples in by_series.items():
        n = int(instance.rsplit("-", 1)[1])
        assert samples == [(0, 0)] + [(n + 1, scrape * (n + 1)) for scrape in range(1, 12)]


def test_a_resent_request_and_resent_samples_are_not_counted_twice(
    client: TestClient, db: psycopg.Connection[Any], now: datetime
) -> None:
    labels = {"__name__": "jobs_done_total"}
    step = timedelta(seconds=10)
    request = series_v1(labels, (now, 5), (now + step, 8))
    assert send_v1(client, request).status_code == 204
    again = send_v1(client, request)  # the same bytes: a sender's retry
    assert again.status_code == 204
    assert again.headers["X-Prometheus-Remote-Write-Samples-Written"] == "2"
    # Samples sent again in another request (a sender's resend after its restart), with one
    # new sample after them.
    resent = send_v1(client, series_v1(labels, (now + step, 8), (now + 2 * step, 9)))
    assert resent.status_code == 204
    assert [(v, t) for _, v, t, _, _ in rows(db, "jobs_done_total")] == [(0, 5), (3, 8), (1, 9)]


def test_metadata_gives_type_unit_and_help_and_histogram_parts_are_counters(
    client: TestClient, db: psycopg.Connection[Any], now: datetime
) -> None:
    metadata = [
        v1.MetricMetadata(
            type=v1.MetricMetadata.GAUGE,
            metric_family_name="queue_depth_total",
            help="Jobs waiting (a gauge, whatever its name says).",
            unit="jobs",
        ),
        v1.MetricMetadata(
            type=v1.MetricMetadata.HISTOGRAM,
            metric_family_name="rpc_seconds",
            help="RPC latency.",
        ),
    ]
    assert send_v1(client, metadata=metadata).status_code == 204  # metadata alone
    answer = send_v1(
        client,
        series_v1({"__name__": "queue_depth_total"}, (now, 7), (now + timedelta(seconds=1), 3)),
        series_v1({"__name__": "rpc_seconds_bucket", "le": "0.1"}, (now, 4)),
        series_v1({"__name__": "rpc_seconds_count"}, (now, 9)),
        metadata=metadata,
    )
    assert answer.status_code == 204, answer.text
    assert [(v, t, kind) for _, v, t, _, kind in rows(db, "queue_depth_total")] == [
        (7, None, "gauge"),
        (3, None, "gauge"),
    ]
    assert rows(db, "rpc_seconds_bucket")[0][1:] == (0, 4, {"le": "0.1"}, "counter")
    described = db.execute(
        "SELECT name, unit, description FROM analytics.metrics WHERE name = ANY (%s) ORDER BY 1",
        (["queue_depth_total", "rpc_seconds_count"],),
    ).fetchall()
    assert described == [
        ("queue_depth_total", "jobs", "Jobs waiting (a gauge, whatever its name says)."),
        ("rpc_seconds_count", None, "RPC latency."),
    ]


def test_stale_markers_are_skipped_and_a_nan_is_refused_while_the_rest_is_stored(
    client: TestClient, db: psycopg.Connection[Any], now: datetime
) -> None:
    good = series_v1(
        {"__name__": "temp", "room": "a"}, (now, 21.5), (now + timedelta(seconds=5), STALE)
    )
    bad = series_v1({"__name__": "temp", "room": "b"}, (now, math.nan))
    answer = send_v1(client, good, bad)
    assert answer.status_code == 400
    assert answer.headers["X-Prometheus-Remote-Write-Samples-Written"] == "1"
    body = answer.json()
    assert body["details"] == [
        {
            "series": 'temp{room="b"}',
            "reason": f"sample at {ms(now)} ms: nan is not a finite number",
        }
    ]
    assert [(v, tags) for _, v, _, tags, _ in rows(db, "temp")] == [(21.5, {"room": "a"})]
    exposition = client.get("/metrics").text
    assert (
        'astraeus_ingest_skipped_values_total{protocol="remote_write",reason="stale_marker"} 1.0'
        in (exposition)
    )


def test_samples_past_our_limits_are_refused_by_series_and_the_others_stored(
    client: TestClient, db: psycopg.Connection[Any], now: datetime
) -> None:
    old = now - timedelta(days=400)
    answer = send_v1(
        client,
        series_v1({"__name__": "disk_free", "dev": "sda"}, (now, 10.0)),
        series_v1({"__name__": "disk_free", "dev": "sdb"}, (old, 11.0)),
    )
    assert answer.status_code == 400
    assert answer.headers["X-Prometheus-Remote-Write-Samples-Written"] == "1"
    detail = answer.json()["details"][0]
    assert detail["series"] == 'disk_free{dev="sdb"}'
    assert detail["reason"].startswith("timestamp: older than the retention")
    assert [tags for *_, tags, _ in rows(db, "disk_free")] == [{"dev": "sda"}]


def test_a_metric_at_its_series_limit_is_refused_and_the_others_stored(
    db_url: str, db: psycopg.Connection[Any], now: datetime
) -> None:
    from tests.support import make_client

    with make_client(db_url, INGEST_MAX_SERIES_PER_METRIC="2") as client:
        answer = send_v1(
            client,
            *(series_v1({"__name__": "per_pod", "pod": f"p{i}"}, (now, 1.0)) for i in range(3)),
            series_v1({"__name__": "cluster_up"}, (now, 1.0)),
        )
    assert answer.status_code == 400, answer.text
    assert answer.headers["X-Prometheus-Remote-Write-Samples-Written"] == "1"
    assert "'per_pod' has reached its limit of 2 series" in answer.json()["message"]
    assert len(rows(db, "cluster_up")) == 1
    assert rows(db, "per_pod") == []


def test_remote_write_2_with_symbols_metadata_and_start_timestamps(
    client: TestClient, db: psycopg.Connection[Any], now: datetime
) -> None:
    symbols = ["", "__name__", "orders_total", "shop", "eu", "Orders placed.", "orders"]
    counter = v2.TimeSeries(
        labels_refs=[1, 2, 3, 4],
        samples=[
            v2.Sample(value=12, timestamp=ms(now), start_timestamp=ms(now - timedelta(hours=1))),
            v2.Sample(
                value=15, timestamp=ms(now) + 1000, start_timestamp=ms(now - timedelta(hours=1))
            ),
            # A new start time: the counter restarted, though its total went up.
            v2.Sample(value=40, timestamp=ms(now) + 2000, start_timestamp=ms(now) + 1500),
        ],
        metadata=v2.Metadata(type=v2.Metadata.METRIC_TYPE_COUNTER, help_ref=5, unit_ref=6),
    )
    body = v2.Request(symbols=symbols, timeseries=[counter]).SerializeToString()
    answer = client.post(
        "/api/v1/write", content=bytes(cramjam.snappy.compress_raw(body)), headers=V2_HEADERS
    )
    assert answer.status_code == 204, answer.text
    assert answer.headers["X-Prometheus-Remote-Write-Samples-Written"] == "3"
    # The first sample says since when it counts: its whole total is its increase.
    assert [(v, t, tags) for _, v, t, tags, _ in rows(db, "orders_total")] == [
        (12, 12, {"shop": "eu"}),
        (3, 15, {"shop": "eu"}),
        (40, 40, {"shop": "eu"}),
    ]
    assert db.execute(
        "SELECT metric_type::text, unit, description FROM analytics.metrics "
        "WHERE name = 'orders_total'"
    ).fetchone() == ("counter", "orders", "Orders placed.")


@pytest.mark.parametrize(
    ("headers", "body", "status", "says"),
    [
        ({**V1_HEADERS, "Content-Type": "application/json"}, b"{}", 415, "Content-Type"),
        (
            {**V1_HEADERS, "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v3.X"},
            b"",
            415,
            "proto=io.prometheus.write.v3.X",
        ),
        ({**V1_HEADERS, "Content-Encoding": "gzip"}, b"", 415, "snappy"),
        (V1_HEADERS, b"\x1f\x8b\x08\x00not snappy at all", 400, "snappy"),
        (V1_HEADERS, bytes(cramjam.snappy.compress_raw(b"\x0a\x05\xff\xff")), 400, "protobuf"),
        (
            V1_HEADERS,
            bytes(cramjam.snappy.compress_raw(b"\x00" * 1000))[:-3],  # truncated
            400,
            "snappy",
        ),
    ],
    ids=["not protobuf", "unknown proto", "gzip", "not snappy", "truncated protobuf", "cut off"],
)
def test_bad_requests_are_refused_in_remote_writes_terms_and_store_nothing(
    client: TestClient,
    db: psycopg.Connection[Any],
    headers: dict[str, str],
    body: bytes,
    status: int,
    says: str,
) -> None:
    answer = client.post("/api/v1/write", content=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["message"]
    assert answer.headers["X-Prometheus-Remote-Write-Samples-Written"] == "0"
    assert db.execute("SELECT count(*) FROM analytics.metric_events").fetchone() == (0,)


def test_a_body_that_decompresses_past_the_limit_is_413(db_url: str) -> None:
    from tests.support import make_client

    huge = bytes(cramjam.snappy.compress_raw(b"\x00" * 2_000_000))
    with make_client(db_url, INGEST_MAX_BODY_BYTES="1000000") as client:
        answer = client.post("/api/v1/write", content=huge, headers=V1_HEADERS)
    assert answer.status_code == 413
    assert "decompresses to 2000000 bytes" in answer.json()["message"]


def test_remote_write_needs_an_ingest_key(db_url: str) -> None:
    from tests.support import make_client

    with make_client(db_url, scopes="read") as client:
        answer = client.post("/api/v1/write", content=b"", headers=V1_HEADERS)
    assert answer.status_code == 403


def test_a_counter_without_a_suffix_stays_a_running_total_after_our_restart(
    db_url: str, db: psycopg.Connection[Any], now: datetime
) -> None:
    from tests.support import make_client

    step = timedelta(seconds=10)
    metadata = [v1.MetricMetadata(type=v1.MetricMetadata.COUNTER, metric_family_name="jobs_done")]
    with make_client(db_url) as client:
        assert send_v1(client, metadata=metadata).status_code == 204
        labels = {"__name__": "jobs_done"}
        assert send_v1(client, series_v1(labels, (now, 100), (now + step, 130))).status_code == 204
    with make_client(db_url) as restarted:  # a new process: no metadata heard yet
        later = series_v1(labels, (now + 2 * step, 160), (now + 3 * step, 190))
        assert send_v1(restarted, later).status_code == 204
    assert [(v, t) for _, v, t, _, _ in rows(db, "jobs_done")] == [
        (0, 100),
        (30, 130),
        (30, 160),
        (30, 190),
    ]


def test_created_series_are_gauges_and_odd_names_keep_their_type(
    client: TestClient, db: psycopg.Connection[Any], now: datetime
) -> None:
    metadata = [v1.MetricMetadata(type=v1.MetricMetadata.COUNTER, metric_family_name="shop")]
    created = series_v1({"__name__": "shop_created"}, (now, 1.7e9))
    odd = series_v1({"__name__": ":odd"}, (now, 1.0))
    assert send_v1(client, created, odd, metadata=metadata).status_code == 204
    odd_counter = [v1.MetricMetadata(type=v1.MetricMetadata.COUNTER, metric_family_name=":odd")]
    later = series_v1({"__name__": ":odd"}, (now + timedelta(seconds=1), 2.0))
    assert send_v1(client, later, metadata=odd_counter).status_code == 204  # stays a gauge
    assert [(v, t, kind) for _, v, t, _, kind in rows(db, "shop_created")] == [
        (1.7e9, None, "gauge")
    ]
    assert [(v, kind) for _, v, _, _, kind in rows(db, "_:odd")] == [(1.0, "gauge"), (2.0, "gauge")]


def test_a_partial_write_sent_again_is_a_400_again_and_stores_nothing_more(
    client: TestClient, db: psycopg.Connection[Any], now: datetime
) -> None:
    good = series_v1({"__name__": "fan_rpm"}, (now, 900.0))
    bad = series_v1({"__name__": "fan_rpm", "fan": "2"}, (now, math.inf))
    first = send_v1(client, good, bad)
    again = send_v1(client, good, bad)
    assert (first.status_code, again.status_code) == (400, 400)
    assert again.json()["details"] == first.json()["details"]
    assert len(rows(db, "fan_rpm")) == 1
