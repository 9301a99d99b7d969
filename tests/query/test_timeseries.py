from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from jobs.compact import compact

BATCH = "/api/v1/analytics/metrics/batch"


def ev(value: float, when: datetime, metric: str = "m", kind: str = "gauge", **tags: str) -> dict:
    return {
        "metric_name": metric,
        "value": value,
        "metric_type": kind,
        "tags": tags,
        "timestamp": when.isoformat(),
    }


def post(client: TestClient, events: list[dict[str, Any]]) -> None:
    for i in range(0, len(events), 5000):
        assert client.post(BATCH, json=events[i : i + 5000]).status_code == 200


def series(client: TestClient, name: str = "m", **params: Any) -> dict[str, Any]:
    response = client.get(f"/api/v1/analytics/metrics/{name}/time-series", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def expected(db: psycopg.Connection[Any], width: str, start: datetime, end: datetime) -> dict:
    rows = db.execute(
        "SELECT time_bucket(%s::interval, time), count(*), sum(value), min(value), max(value) "
        "FROM analytics.metric_events WHERE time >= %s AND time < %s GROUP BY 1",
        (width, start, end),
    ).fetchall()
    return {iso(b): (c, s, lo, hi) for b, c, s, lo, hi in rows}


@pytest.fixture
def month_of_data(client: TestClient, db_url: str) -> tuple[datetime, datetime]:
    rng = random.Random(3)
    end = datetime.now(UTC)
    start = end - timedelta(days=75)
    post(
        client,
        [
            ev(rng.uniform(1, 100), start + timedelta(seconds=rng.uniform(0, 75 * 86400)))
            for _ in range(6000)
        ],
    )
    compact(db_url)
    return start, end


@pytest.mark.parametrize(
    ("interval", "width", "resolution", "days"),
    [
        ("15m", "15 minutes", "1m", 1),
        ("15m", "15 minutes", "raw", 5),
        ("1h", "1 hour", "1h", 3),
        ("6h", "6 hours", "1h", 5),
        ("1d", "1 day", "1d", 30),
        ("1w", "1 week", "1d", 70),
        ("1mo", "1 month", "1d", 75),
    ],
)
def test_every_resolution_equals_raw(
    client: TestClient,
    db: psycopg.Connection[Any],
    month_of_data: tuple[datetime, datetime],
    interval: str,
    width: str,
    resolution: str,
    days: int,
) -> None:
    end = month_of_data[1]
    start = end - timedelta(days=days)
    answers = {
        agg: series(
            client, interval=interval, agg=agg, start=start.isoformat(), end=end.isoformat()
        )
        for agg in ("count", "sum", "min", "max", "avg")
    }
    # Over the window as answered: whole minutes (or an hour past the minute tier's horizon).
    answered = answers["count"]
    want = expected(
        db,
        width,
        datetime.fromisoformat(answered["start"]),
        datetime.fromisoformat(answered["end"]),
    )

    assert answered["resolution"] == resolution
    assert datetime.fromisoformat(answered["start"]) <= start
    points = answers["count"]["points"]
    assert {iso(datetime.fromisoformat(p["time"])) for p in points if p["value"]} == set(want)
    for agg, index in (("count", 0), ("sum", 1), ("min", 2), ("max", 3)):
        got = {iso(datetime.fromisoformat(p["time"])): p["value"] for p in answers[agg]["points"]}
        for bucket, figures in want.items():
            assert got[bucket] == pytest.approx(figures[index], rel=1e-9), (agg, bucket)
    for point in answers["avg"]["points"]:
        bucket = iso(datetime.fromisoformat(point["time"]))
        if bucket in want:
            count, total = want[bucket][:2]
            assert point["value"] == pytest.approx(total / count, rel=1e-9)
        else:
            assert point["value"] is None


def test_weeks_start_on_monday_and_months_on_the_first(
    client: TestClient, month_of_data: tuple[datetime, datetime]
) -> None:
    start, end = month_of_data
    weeks = series(client, interval="1w", start=start.isoformat(), end=end.isoformat())
    months = series(client, interval="1mo", start=start.isoformat(), end=end.isoformat())

    week_starts = [datetime.fromisoformat(p["time"]) for p in weeks["points"]]
    month_starts = [datetime.fromisoformat(p["time"]) for p in months["points"]]
    assert all(w.weekday() == 0 and w.time() == datetime.min.time() for w in week_starts)
    assert all(m.day == 1 and m.time() == datetime.min.time() for m in month_starts)
    assert week_starts == sorted(week_starts)
    assert all(b - a == timedelta(weeks=1) for a, b in itertools.pairwise(week_starts))
    assert month_starts[0] <= start < month_starts[1]


def test_percentiles_per_bucket_are_within_one_percent(
    client: TestClient, db: psycopg.Connection[Any], month_of_data: tuple[datetime, datetime]
) -> None:
    start, end = month_of_data[1] - timedelta(days=20), month_of_data[1]
    answer = series(client, interval="1d", agg="p95", start=start.isoformat(), end=end.isoformat())
    exact = {
        iso(b): v
        for b, v in db.execute(
            "SELECT time_bucket('1 day', time), percentile_disc(0.95) WITHIN GROUP (ORDER BY "
            "value) FROM analytics.metric_events WHERE time >= %s AND time < %s GROUP BY 1",
            (datetime.fromisoformat(answer["start"]), datetime.fromisoformat(answer["end"])),
        ).fetchall()
    }

    got = {iso(datetime.fromisoformat(p["time"])): p["value"] for p in answer["points"]}
    assert set(exact) <= set(got)
    for bucket, value in exact.items():
        assert got[bucket] == pytest.approx(value, rel=0.01)


def test_gaps_are_null_and_a_fresh_event_shows_at_once(client: TestClient) -> None:
    now = datetime.now(UTC)
    post(client, [ev(5.0, now - timedelta(hours=3)), ev(7.0, now - timedelta(seconds=2))])

    answer = series(client, hours=4, interval="1h", agg="max")

    values = [p["value"] for p in answer["points"]]
    assert len(values) == 5
    assert values[-1] == 7.0
    assert values.count(None) == 3


def test_rate_of_a_counter_is_per_second(client: TestClient) -> None:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    post(client, [ev(1800.0, hour + timedelta(minutes=m), "calls", "counter") for m in (1, 2)])

    answer = series(
        client,
        "calls",
        interval="1h",
        agg="rate",
        start=hour.isoformat(),
        end=(hour + timedelta(hours=1)).isoformat(),
    )

    assert answer["points"] == [{"time": iso(hour), "value": 1.0}]


def test_group_by_gives_one_series_per_tag_value(client: TestClient) -> None:
    when = datetime.now(UTC) - timedelta(minutes=30)
    post(
        client, [ev(1.0, when, region="eu"), ev(2.0, when, region="us"), ev(4.0, when, region="us")]
    )

    answer = series(client, hours=1, interval="1h", agg="sum", group_by="region")

    sums = {s["value"]: [p["value"] for p in s["points"] if p["value"]] for s in answer["series"]}
    assert sums == {"eu": [1.0], "us": [6.0]}


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"interval": "90s"}, "interval"),
        ({"interval": "2mo"}, "interval"),
        ({"interval": "5w"}, "interval"),
        ({"interval": "fortnight"}, "interval"),
        ({"interval": "1m", "hours": "240"}, "interval"),
        ({"agg": "median"}, "agg"),
        ({"agg": "rate"}, "agg"),
    ],
)
def test_bad_parameters_are_a_400_naming_them(
    client: TestClient, params: dict[str, str], parameter: str
) -> None:
    post(client, [ev(1.0, datetime.now(UTC))])

    response = client.get("/api/v1/analytics/metrics/m/time-series", params=params)

    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == parameter


def test_a_bucket_of_one_value_has_that_value_as_every_percentile(
    client: TestClient, db_url: str
) -> None:
    # Each value keys to a sketch bucket whose representative lies outside the value itself;
    # one a day, so that each is alone in its 15-minute, hourly and daily bucket.
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=30)
    values = {hour: 125.5, hour - timedelta(days=1): 0.3, hour - timedelta(days=2): -7.1}
    post(client, [ev(v, t + timedelta(minutes=10), region="eu") for t, v in values.items()])
    window = {"start": (hour - timedelta(days=3)).isoformat(), "end": datetime.now(UTC).isoformat()}

    def buckets(interval: str, agg: str, **params: str) -> dict[str, float]:
        answer = series(client, interval=interval, agg=agg, **window, **params)
        points = answer["series"][0]["points"] if "group_by" in params else answer["points"]
        return {p["time"]: p["value"] for p in points if p["value"] is not None}

    def check() -> None:
        for agg in ("p50", "p95", "p99"):
            for params in ({}, {"group_by": "region"}):
                for interval in ("15m", "1h", "1d"):
                    found = buckets(interval, agg, **params)
                    assert sorted(found.values()) == [-7.1, 0.3, 125.5], (agg, params, interval)

    check()  # from raw events: the hours are listed as invalidated
    compact(db_url)
    check()  # from the hourly and daily rollups
