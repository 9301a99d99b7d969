"""Prometheus native histograms in remote write (1.0 and 2.0): stored as distributions whose
percentiles merge like our sketches', cumulative ones as what each sample adds (resets, the
sender's reset hint and start time included), gauge histograms as they are, custom bounds as
explicit buckets; a histogram that cannot be read refused by series while the rest is stored.

Requests are built as Prometheus builds them: spans of bucket indexes and deltas of counts
(integer histograms) or absolute counts (float ones); bucket i of schema s is
(base^(i-1), base^i], base = 2^(2^-s)."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import cramjam
import psycopg
import pytest
from starlette.testclient import TestClient

from ingest.proto import remote_write_v1_pb2 as v1
from ingest.proto import remote_write_v2_pb2 as v2
from tests.ingest.test_otlp import histogram_points, statistics
from tests.ingest.test_remote_write import STALE, V2_HEADERS, ms, send_v1, series_v1


def spans(indexes: dict[int, int]) -> tuple[list[tuple[int, int]], list[int]]:
    """(offset, length) spans over the non-empty bucket indexes, and their counts in order."""
    found: list[tuple[int, int]] = []
    counts: list[int] = []
    previous = None
    for index in sorted(indexes):
        if previous is not None and index == previous + 1:
            found[-1] = (found[-1][0], found[-1][1] + 1)
        else:
            gap = index if previous is None else index - previous - 1
            found.append((gap, 1))
        counts.append(indexes[index])
        previous = index
    return found, counts


def deltas(counts: list[int]) -> list[int]:
    return [n - (counts[i - 1] if i else 0) for i, n in enumerate(counts)]


def native(
    observed: list[float], schema: int, at: datetime, version: Any = v1, **fields: Any
) -> Any:
    """An integer native histogram of `observed` (positive ones in positive buckets, zeros in
    the zero bucket), as Prometheus encodes it; `version`: the v1 or v2 messages."""
    base = 2 ** (2**-schema)
    positive = Counter(math.ceil(math.log(v, base)) for v in observed if v > 0)
    found, counts = spans(dict(positive))
    return version.Histogram(
        count_int=len(observed),
        sum=sum(observed),
        schema=schema,
        zero_count_int=sum(1 for v in observed if v == 0),
        positive_spans=[version.BucketSpan(offset=o, length=n) for o, n in found],
        positive_deltas=deltas(counts),
        timestamp=ms(at),
        **fields,
    )


def with_histograms(labels: dict[str, str], *histograms: Any) -> v1.TimeSeries:
    return v1.TimeSeries(
        labels=[v1.Label(name=k, value=v) for k, v in sorted(labels.items())],
        histograms=histograms,
    )


def send_v2(client: TestClient, symbols: list[str], *series: v2.TimeSeries) -> Any:
    body = v2.Request(symbols=symbols, timeseries=series).SerializeToString()
    return client.post(
        "/api/v1/write", content=bytes(cramjam.snappy.compress_raw(body)), headers=V2_HEADERS
    )


def written(answer: Any) -> tuple[str, str]:
    headers = answer.headers
    return (
        headers["X-Prometheus-Remote-Write-Samples-Written"],
        headers["X-Prometheus-Remote-Write-Histograms-Written"],
    )


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


def test_native_histograms_are_distributions_with_percentiles_within_one_percent(
    client: TestClient, db: psycopg.Connection[Any], now: datetime
) -> None:
    labels = {"__name__": "rpc_seconds", "job": "api"}
    before = [0.02 * 1.01**k for k in range(200)]
    added = [0.05 * 1.003**k for k in range(1000)]  # 50 ms .. 1 s, 0.3% apart
    again = [0.0] * 20 + [5 * 1.002**k for k in range(280)]  # after a restart
    step = timedelta(seconds=15)
    # The series' first histogram (1.0 carries no start time): the baseline.
    first = send_v1(client, with_histograms(labels, native(before, 8, now)))
    assert first.status_code == 204, first.text
    assert written(first) == ("0", "1")
    assert histogram_points(db, "rpc_seconds") == []
    later = with_histograms(
        labels,
        native(before + added, 8, now + step),
        native(again, 8, now + 2 * step),  # its count fell: a restart, counted whole
    )
    answer = send_v1(client, later)
    assert answer.status_code == 204, answer.text
    assert written(answer) == ("0", "2")
    points = histogram_points(db, "rpc_seconds")
    assert [count for count, _ in points] == [1000, 300]
    assert [total for _, total in points] == pytest.approx([sum(added), sum(again)])
    figures = statistics(client, "rpc_seconds", now)
    assert figures["count"] == 1300
    assert figures["sum"] == pytest.approx(sum(added) + sum(again))
    ordered = sorted(added + again)
    for name, share in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        exact = ordered[math.ceil(share * len(ordered)) - 1]
        assert figures[name] == pytest.approx(exact, rel=0.015), name
    assert db.execute(
        "SELECT metric_type::text FROM analytics.metrics WHERE name = 'rpc_seconds'"
    ).fetchone() == ("histogram",)
    # A retry (the same bytes) and a resend (its samples in another request): stored once.
    assert send_v1(client, later).status_code == 204
    assert (
        send_v1(client, with_histograms(labels, native(again, 8, now + 2 * step))).status_code
        == 204
    )
    assert len(histogram_points(db, "rpc_seconds")) == 2
    # A plain sample of the histogram metric is a sample, not a histogram, in the answer.
    plain = send_v1(client, series_v1(labels, (now + 3 * step, 0.5)))
    assert written(plain) == ("1", "0")


def test_remote_write_2_start_times_reset_hints_custom_buckets_and_gauge_histograms(
    client: TestClient, db: psycopg.Connection[Any], now: datetime
) -> None:
    symbols = ["", "__name__", "wait_seconds", "job_seconds", "queue_depth", "job", "w"]
    step = timedelta(seconds=10)
    # Exponential, with the series' start time: its first histogram counts whole; then the
    # sender's reset hint says the counts start again (though they grew).
    first = native([0.1, 0.2, 0.4, 0.8], 3, now, v2)
    reset = native([0.1] * 6, 3, now + step, v2, reset_hint=v2.Histogram.RESET_HINT_YES)
    # A float histogram (counts as such): whole counts are read as integers.
    floats = v2.Histogram(
        count_float=8,
        sum=0.8,
        schema=3,
        positive_spans=[v2.BucketSpan(offset=-26, length=1)],
        positive_counts=[8.0],
        timestamp=ms(now + 2 * step),
    )
    exponential = v2.TimeSeries(
        labels_refs=[1, 2, 5, 6],
        histograms=[first, reset, floats],
        created_timestamp=ms(now - timedelta(hours=1)),
    )

    # Custom bounds (schema -53): buckets (-inf, 0.1], (0.1, 0.5], (0.5, 1], (1, +inf).
    def custom(counts: list[int], total: float, seconds: int) -> v2.Histogram:
        return v2.Histogram(
            count_int=sum(counts),
            sum=total,
            schema=-53,
            custom_values=[0.1, 0.5, 1.0],
            positive_spans=[v2.BucketSpan(offset=0, length=4)],
            positive_deltas=deltas(counts),
            timestamp=ms(now + timedelta(seconds=seconds)),
        )

    explicit = v2.TimeSeries(
        labels_refs=[1, 3],
        histograms=[custom([1, 2, 1, 1], 4.0, 0), custom([1, 3, 2, 1], 5.1, 10)],
        created_timestamp=ms(now - timedelta(hours=1)),
    )
    # A gauge histogram: each sample is its own observations, though they repeat.
    gauge = [
        native([2.0, 3.0, 3.0], 8, now + n * step, v2, reset_hint=v2.Histogram.RESET_HINT_GAUGE)
        for n in range(2)
    ]
    depth = v2.TimeSeries(labels_refs=[1, 4], histograms=gauge)
    # Schema 0: bucket 1 is (1, 2]; its observations are spread over it, no wider. Negative
    # bucket 1 is [-2, -1).
    coarse = native([1.5] * 10, 0, now, v2, reset_hint=v2.Histogram.RESET_HINT_GAUGE)
    coarse.negative_spans.append(v2.BucketSpan(offset=1, length=1))
    coarse.negative_deltas.append(2)
    coarse.count_int += 2
    coarse.sum -= 3.0
    size = v2.TimeSeries(labels_refs=[1, 7], histograms=[coarse])
    answer = send_v2(client, [*symbols, "size_bytes"], exponential, explicit, depth, size)
    assert answer.status_code == 204, answer.text
    assert written(answer) == ("0", "8")
    assert histogram_points(db, "wait_seconds") == [
        (4, pytest.approx(1.5)),
        (6, pytest.approx(0.6)),
        (2, pytest.approx(0.2)),  # 8 since the reset, 6 of them counted already
    ]
    assert histogram_points(db, "job_seconds") == [(5, 4.0), (2, pytest.approx(1.1))]
    assert histogram_points(db, "queue_depth") == [(3, 8.0), (3, 8.0)]
    figures = statistics(client, "job_seconds", now)
    assert figures["count"] == 7
    assert 0.1 <= figures["p50"] <= 0.5 * 1.01  # within its bucket
    assert statistics(client, "queue_depth", now)["p50"] == pytest.approx(3.0, rel=0.02)
    coarse_figures = statistics(client, "size_bytes", now)
    assert coarse_figures["count"] == 12
    assert -2.0 <= coarse_figures["min"] <= -1.0
    assert 1.0 <= coarse_figures["p50"] <= coarse_figures["max"] <= 2.0


def test_a_stale_histogram_is_no_observation(
    client: TestClient, db: psycopg.Connection[Any], now: datetime
) -> None:
    labels = {"__name__": "gone_seconds"}
    stale = v1.Histogram(sum=STALE, timestamp=ms(now), reset_hint=v1.Histogram.NO)
    answer = send_v1(client, with_histograms(labels, stale))
    assert answer.status_code == 204, answer.text
    assert written(answer) == ("0", "0")
    assert db.execute("SELECT count(*) FROM analytics.distribution_store").fetchone() == (0,)


BAD = {
    "spans longer than the deltas": (
        dict(schema=3, count_int=3, positive_spans=[(0, 3)], positive_deltas=[1, 1]),
        "positive_spans cover 3 buckets, and there are 2 counts",
    ),
    "a bucket below zero": (
        dict(schema=3, count_int=3, positive_spans=[(0, 2)], positive_deltas=[2, -3]),
        "positive_deltas: bucket 1 would count below zero",
    ),
    "an unknown schema": (
        dict(schema=9, count_int=1, positive_spans=[(0, 1)], positive_deltas=[1]),
        "schema 9: this server reads -4..8 and -53",
    ),
    "a fractional count": (
        dict(schema=3, count_float=1.5, positive_spans=[(0, 1)], positive_counts=[1.5]),
        "positive_counts: 1.5 is not a whole count",
    ),
    "more in its buckets than its count": (
        dict(schema=3, count_int=1, positive_spans=[(0, 1)], positive_deltas=[2]),
        "its buckets hold 2 observations, more than its count 1",
    ),
    "custom bounds out of order": (
        dict(
            schema=-53,
            count_int=1,
            custom_values=[1.0, 0.5],
            positive_spans=[(0, 1)],
            positive_deltas=[1],
        ),
        "custom_values: the bounds must be finite and increasing",
    ),
    "custom buckets without bounds": (
        dict(
            schema=-53,
            count_int=5,
            custom_values=[],
            positive_spans=[(0, 1)],
            positive_deltas=[5],
            reset_hint=3,
        ),
        "custom_values: custom buckets need at least one bound",
    ),
    "buckets too far apart": (
        dict(
            schema=0,
            count_int=2,
            positive_spans=[(0, 1), (10_000_000, 1)],
            positive_deltas=[1, 0],
            reset_hint=3,
        ),
        "positive buckets 0..10000001: more than 32768 indexes apart",
    ),
    "a count that is not one": (
        dict(schema=3, count_float=math.nan, positive_spans=[(0, 1)], positive_counts=[1.0]),
        "count_float: nan is not a count",
    ),
    "a custom bucket past +Inf": (
        dict(
            schema=-53,
            count_int=1,
            custom_values=[1.0],
            positive_spans=[(2, 1)],
            positive_deltas=[1],
        ),
        "custom buckets are positive buckets 0..1",
    ),
}


@pytest.mark.parametrize(("fields", "says"), BAD.values(), ids=BAD.keys())
def test_a_native_histogram_that_cannot_be_read_is_refused_and_the_rest_stored(
    client: TestClient,
    db: psycopg.Connection[Any],
    now: datetime,
    fields: dict[str, Any],
    says: str,
) -> None:
    fields = dict(fields)
    fields["positive_spans"] = [
        v1.BucketSpan(offset=o, length=n) for o, n in fields["positive_spans"]
    ]
    bad = with_histograms(
        {"__name__": "bad_seconds", "job": "x"}, v1.Histogram(timestamp=ms(now), sum=1.0, **fields)
    )
    good = series_v1({"__name__": "good_gauge"}, (now, 1.0))
    answer = send_v1(client, bad, good)
    assert answer.status_code == 400, answer.text
    assert written(answer) == ("1", "0")
    problem = answer.json()["details"][0]
    assert problem["series"] == 'bad_seconds{job="x"}'
    assert problem["reason"].startswith(f"native histogram at {ms(now)} ms: ")
    assert says in problem["reason"]
    assert db.execute("SELECT count(*) FROM analytics.distribution_store").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM analytics.metric_events").fetchone() == (1,)
