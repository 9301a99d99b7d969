"""A Prometheus classic histogram (`x_bucket{le}`, `x_sum`, `x_count` counters, sent by remote
write) answers as the distribution of its family `x` (query/classic.py): observations, sum,
average and Prometheus' histogram_quantile of the buckets' increases, by group and filter, in
statistics and time series. Against Prometheus itself: test_remote_write_senders.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from ingest.proto import remote_write_v1_pb2 as v1
from query.classic import quantile
from tests.ingest.test_remote_write import send_v1, series_v1

BOUNDS = ("0.1", "0.5", "1", "+Inf")
# Each instance's bucket totals (cumulative, by BOUNDS) and _sum at its two scrapes: the first
# is the series' baseline, so what counts is the second minus the first.
SCRAPES = {
    "a": (((1, 2, 3, 3), 2.0), ((3, 8, 10, 11), 5.5)),  # increases 2, 6, 7, 8; sum 3.5
    "b": (((0, 0, 0, 0), 0.0), ((0, 1, 5, 6), 4.0)),  # increases 0, 1, 5, 6; sum 4.0
}


@pytest.fixture
def scraped(client: TestClient) -> datetime:
    """The two scrapes of both instances, sent as Prometheus sends them; the first's time."""
    first = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    family = v1.MetricMetadata(type=v1.MetricMetadata.HISTOGRAM, metric_family_name="req_seconds")
    assert send_v1(client, metadata=[family]).status_code == 204
    for number in range(2):
        at = first + timedelta(minutes=number)
        series = []
        for instance, scrapes in SCRAPES.items():
            counts, total = scrapes[number]
            labels = {"job": "api", "instance": instance}
            series += [
                series_v1({"__name__": "req_seconds_bucket", "le": le, **labels}, (at, count))
                for le, count in zip(BOUNDS, counts, strict=True)
            ]
            series.append(series_v1({"__name__": "req_seconds_sum", **labels}, (at, total)))
            series.append(series_v1({"__name__": "req_seconds_count", **labels}, (at, counts[-1])))
        answer = send_v1(client, *series)
        assert answer.status_code == 204, answer.text
    return first


def window(first: datetime) -> dict[str, str]:
    return {
        "start": (first - timedelta(minutes=1)).isoformat(),
        "end": datetime.now(UTC).isoformat(),
    }


def test_the_family_answers_as_a_distribution(client: TestClient, scraped: datetime) -> None:
    answer = client.get("/api/v1/analytics/metrics/req_seconds/statistics", params=window(scraped))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["histogram"] == "classic"
    # Summed by bound over both instances: 2, 7, 12, 14 observations at or below each.
    assert body["buckets"] == [
        {"le": le, "count": n} for le, n in zip(BOUNDS, (2, 7, 12, 14), strict=True)
    ]
    assert body["count"] == 14
    assert body["sum"] == pytest.approx(7.5)
    assert body["avg"] == pytest.approx(7.5 / 14)
    assert body["p50"] == pytest.approx(0.5)  # rank 7: the top of (0.1, 0.5]
    assert body["p95"] == body["p99"] == 1.0  # in the +Inf bucket: the highest finite bound
    assert body["min"] is None and body["max"] is None
    exact = client.get(
        "/api/v1/analytics/metrics/req_seconds/statistics",
        params={**window(scraped), "exact": "true"},
    ).json()
    assert {k: exact[k] for k in ("count", "sum", "p50", "p95", "buckets")} == {
        k: body[k] for k in ("count", "sum", "p50", "p95", "buckets")
    }


def test_groups_and_filters_select_the_buckets_of_their_series(
    client: TestClient, scraped: datetime
) -> None:
    grouped = client.get(
        "/api/v1/analytics/metrics/req_seconds/statistics",
        params={**window(scraped), "group_by": "instance"},
    ).json()
    by_instance = {group["value"]: group for group in grouped["groups"]}
    assert grouped["group_by"] == "instance"
    assert by_instance["a"]["count"] == 8 and by_instance["b"]["count"] == 6
    assert by_instance["a"]["p50"] == pytest.approx(0.3)  # rank 4 of 2, 6: halfway up (0.1, 0.5]
    assert by_instance["b"]["p50"] == pytest.approx(0.75)  # rank 3 of 1, 5: halfway up (0.5, 1]
    assert by_instance["a"]["avg"] == pytest.approx(3.5 / 8)
    filtered = client.get(
        "/api/v1/analytics/metrics/req_seconds/statistics",
        params={**window(scraped), "tag.instance": "b"},
    ).json()
    assert {k: filtered[k] for k in ("count", "p50", "sum")} == {
        k: by_instance["b"][k] for k in ("count", "p50", "sum")
    }


def test_the_time_series_has_each_buckets_distribution(
    client: TestClient, scraped: datetime
) -> None:
    def points(agg: str) -> dict[datetime, Any]:
        answer = client.get(
            "/api/v1/analytics/metrics/req_seconds/time-series",
            params={**window(scraped), "interval": "1m", "agg": agg},
        )
        assert answer.status_code == 200, answer.text
        return {datetime.fromisoformat(p["time"]): p["value"] for p in answer.json()["points"]}

    second = scraped + timedelta(minutes=1)  # the first scrape is the baseline: no observations
    counts = points("count")
    assert counts[second] == 14 and counts[scraped] == 0
    assert sum(counts.values()) == 14
    p50 = points("p50")
    assert p50[second] == pytest.approx(0.5) and p50[scraped] is None
    assert points("avg")[second] == pytest.approx(7.5 / 14)
    assert points("rate")[second] == pytest.approx(14 / 60)


def test_what_a_classic_histogram_cannot_answer_is_refused_by_name(
    client: TestClient, scraped: datetime
) -> None:
    answer = client.get(
        "/api/v1/analytics/metrics/req_seconds/time-series",
        params={**window(scraped), "interval": "1m", "agg": "min"},
    )
    assert answer.status_code == 400
    assert "agg" in answer.text
    for asked in ({"tag.le": "0.5"}, {"group_by": "le"}):  # a bound is not a selection
        refused = client.get(
            "/api/v1/analytics/metrics/req_seconds/statistics", params={**window(scraped), **asked}
        )
        assert refused.status_code == 400
        assert next(iter(asked)) in refused.text
    assert client.get("/api/v1/analytics/metrics/req_secs/statistics").status_code == 404
    buckets = client.get(
        "/api/v1/analytics/metrics/req_seconds_bucket/statistics", params=window(scraped)
    ).json()
    assert "histogram" not in buckets  # the bucket counters answer as counters of their own
    assert buckets["sum"] == 2 + 7 + 12 + 14


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.5, [(0.1, 2), (0.5, 7), (1.0, 12), (float("inf"), 14)], 0.5),
        (0.25, [(1.0, 4), (2.0, 8), (float("inf"), 8)], 0.5),  # the lowest bucket from 0
        (0.9, [(1.0, 4), (2.0, 8), (float("inf"), 10)], 2.0),  # rank in +Inf: highest bound
        (0.5, [(-1.0, 3), (1.0, 4), (float("inf"), 4)], -1.0),  # a bound at or below 0
        (0.5, [(1.0, 5), (float("inf"), 3)], 0.5),  # a falling count is made monotonic
        (0.5, [(1.0, 2), (2.0, 3)], None),  # no +Inf bucket
        (0.5, [(float("inf"), 3)], None),  # fewer than two buckets
        (0.5, [(1.0, 0), (float("inf"), 0)], None),  # no observations
    ],
)
def test_quantile_is_prometheus_histogram_quantile(
    q: float, buckets: list[tuple[float, float]], expected: float | None
) -> None:
    assert quantile(q, buckets) == (pytest.approx(expected) if expected is not None else None)
