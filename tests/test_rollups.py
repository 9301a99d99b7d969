"""Rollups: equal to a recomputation from raw, corrected by late data, fresh, and percentiles
within 1% of percentile_disc. These run against whichever edition the test server has."""

from __future__ import annotations

import itertools
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql
from starlette.testclient import TestClient

from jobs.rollups import refresh_invalidated, refresh_range

BATCH = "/api/v1/analytics/metrics/batch"

# Recomputations from raw, to compare each rollup relation with.
RECOMPUTED = {
    "metric_rollup_1h": """
        SELECT time_bucket('1 hour', time) AS bucket, series_id, count(*) AS count,
               sum(value) AS sum, min(value) AS min, max(value) AS max, last(value, time) AS last
        FROM analytics.metric_events GROUP BY 1, 2""",
    "metric_rollup_1d": """
        SELECT time_bucket('1 day', time) AS bucket, series_id, count(*) AS count,
               sum(value) AS sum, min(value) AS min, max(value) AS max, last(value, time) AS last
        FROM analytics.metric_events GROUP BY 1, 2""",
    "metric_sketch_1h": """
        SELECT time_bucket('1 hour', time) AS bucket, series_id,
               analytics.sketch_key(value) AS key, count(*) AS n
        FROM analytics.metric_events GROUP BY 1, 2, 3""",
    "metric_sketch_1d": """
        SELECT time_bucket('1 day', time) AS bucket, series_id,
               analytics.sketch_key(value) AS key, count(*) AS n
        FROM analytics.metric_events GROUP BY 1, 2, 3""",
    "metric_totals_1h": """
        SELECT time_bucket('1 hour', e.time) AS bucket, s.metric_id, count(*) AS count,
               sum(e.value) AS sum, min(e.value) AS min, max(e.value) AS max
        FROM analytics.metric_events e JOIN analytics.series s ON s.id = e.series_id
        GROUP BY 1, 2""",
    "metric_totals_1d": """
        SELECT time_bucket('1 day', e.time) AS bucket, s.metric_id, count(*) AS count,
               sum(e.value) AS sum, min(e.value) AS min, max(e.value) AS max
        FROM analytics.metric_events e JOIN analytics.series s ON s.id = e.series_id
        GROUP BY 1, 2""",
    "metric_totals_sketch_1h": """
        SELECT time_bucket('1 hour', e.time) AS bucket, s.metric_id,
               analytics.sketch_key(e.value) AS key, count(*) AS n
        FROM analytics.metric_events e JOIN analytics.series s ON s.id = e.series_id
        GROUP BY 1, 2, 3""",
    "metric_totals_sketch_1d": """
        SELECT time_bucket('1 day', e.time) AS bucket, s.metric_id,
               analytics.sketch_key(e.value) AS key, count(*) AS n
        FROM analytics.metric_events e JOIN analytics.series s ON s.id = e.series_id
        GROUP BY 1, 2, 3""",
}


def rows(db: psycopg.Connection[Any], query: str) -> list[tuple[Any, ...]]:
    return db.execute(f"SELECT * FROM ({query}) AS q ORDER BY 1, 2, 3").fetchall()


def assert_rollups_equal_raw(db: psycopg.Connection[Any]) -> None:
    for name, recompute in RECOMPUTED.items():
        stored = rows(db, f"SELECT * FROM analytics.{name}")
        expected = rows(db, recompute)
        assert len(stored) == len(expected), name
        for got, want in zip(stored, expected, strict=True):
            assert got[:3] == want[:3], name
            for a, b in zip(got[3:], want[3:], strict=True):
                assert a == pytest.approx(b, rel=1e-12), (name, got, want)


def hour_ago(hours: float) -> datetime:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return now - timedelta(hours=hours)


def post(client: TestClient, events: list[dict[str, Any]]) -> None:
    for i in range(0, len(events), 5000):
        response = client.post(BATCH, json=events[i : i + 5000])
        assert response.status_code == 200, response.text


def ev(value: float, when: datetime, metric: str = "m", **tags: str) -> dict[str, Any]:
    return {
        "metric_name": metric,
        "value": value,
        "metric_type": "gauge",
        "tags": tags,
        "timestamp": when.isoformat(),
    }


def spread(values: list[float], start: datetime, hours: float, **tags: str) -> list[dict[str, Any]]:
    step = timedelta(hours=hours) / max(len(values), 1)
    return [ev(v, start + step * i, **tags) for i, v in enumerate(values)]


def stats(client: TestClient, name: str = "m", **params: Any) -> dict[str, Any]:
    response = client.get(f"/api/v1/analytics/metrics/{name}/statistics", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_rollups_equal_a_recomputation_from_raw(
    client: TestClient, db: psycopg.Connection[Any], db_url: str
) -> None:
    rng = random.Random(1)
    start = hour_ago(50)
    events = [
        ev(
            rng.lognormvariate(3, 1),
            start + timedelta(seconds=rng.uniform(0, 49 * 3600)),
            host=f"h{rng.randrange(4)}",
        )
        for _ in range(3000)
    ]
    post(client, events)

    report = refresh_invalidated(db_url, grace=timedelta(0))

    assert report.hours >= 49
    assert_rollups_equal_raw(db)
    left = db.execute("SELECT count(*) FROM _analytics.rollup_invalidations").fetchone()
    assert left == (0,)


def test_late_events_correct_past_rollups(
    client: TestClient, db: psycopg.Connection[Any], db_url: str
) -> None:
    start = hour_ago(24 * 5)
    post(client, spread([float(v) for v in range(100)], start, 10))
    refresh_invalidated(db_url, grace=timedelta(0))

    # Days late, into hours already rolled up, and far outside any policy's refresh window.
    post(client, [ev(1000.0, start + timedelta(hours=2, minutes=30)), ev(-5.0, start)])
    window = {"start": start.isoformat(), "end": (start + timedelta(hours=10)).isoformat()}
    before_refresh = stats(client, **window)
    refresh_invalidated(db_url, grace=timedelta(0))
    after_refresh = stats(client, **window)

    assert_rollups_equal_raw(db)
    for answer in (before_refresh, after_refresh):
        assert answer["count"] == 102
        assert answer["max"] == 1000.0
        assert answer["min"] == -5.0


@pytest.mark.parametrize("server_zone", ["UTC", "Pacific/Chatham"])
def test_events_on_bucket_edges_land_in_their_own_buckets(
    client: TestClient, db: psycopg.Connection[Any], db_url: str, server_zone: str
) -> None:
    # Rollups are UTC whatever the server's time zone (Chatham is UTC+12:45 or +13:45).
    db.execute(
        pgsql.SQL("ALTER DATABASE {} SET timezone = {}").format(
            pgsql.Identifier(db_url.rsplit("/", 1)[1]), pgsql.Literal(server_zone)
        )
    )
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=2
    )
    edge = timedelta(microseconds=1)
    post(
        client,
        [
            ev(1.0, midnight - edge),
            ev(2.0, midnight),
            ev(3.0, midnight + timedelta(hours=1) - edge),
            ev(4.0, midnight + timedelta(hours=1)),
        ],
    )

    refresh_invalidated(db_url, grace=timedelta(0))

    assert_rollups_equal_raw(db)
    hourly = db.execute(
        "SELECT bucket, count, sum FROM analytics.metric_rollup_1h ORDER BY bucket"
    ).fetchall()
    assert [(b - midnight, c, s) for b, c, s in hourly] == [
        (-timedelta(hours=1), 1, 1.0),
        (timedelta(0), 2, 5.0),
        (timedelta(hours=1), 1, 4.0),
    ]
    daily = db.execute("SELECT bucket, count FROM analytics.metric_rollup_1d ORDER BY 1").fetchall()
    assert daily == [(midnight - timedelta(days=1), 1), (midnight, 3)]


def test_statistics_include_an_event_committed_a_moment_ago(
    client: TestClient, db_url: str
) -> None:
    post(client, spread([10.0] * 48, hour_ago(48), 47))
    refresh_invalidated(db_url, grace=timedelta(0))

    post(client, [ev(500.0, datetime.now(UTC) - timedelta(seconds=1))])
    answer = stats(client, hours=72)

    assert answer["count"] == 49
    assert answer["max"] == 500.0
    assert answer["sum"] == pytest.approx(980.0)


def test_a_refresh_over_a_range_is_safe_to_repeat(
    client: TestClient, db: psycopg.Connection[Any], db_url: str
) -> None:
    start = hour_ago(30)
    post(client, spread([1.0, 2.0, 3.0, 4.0], start, 20))
    refresh_invalidated(db_url, grace=timedelta(0))

    refresh_range(db_url, start - timedelta(hours=3), start + timedelta(hours=25))
    refresh_range(db_url, start - timedelta(hours=3), start + timedelta(hours=25))

    assert_rollups_equal_raw(db)


def lognormal(rng: random.Random, n: int) -> list[float]:
    return [rng.lognormvariate(2, 2) for _ in range(n)]


def multimodal(rng: random.Random, n: int) -> list[float]:
    modes = [(5, 0.5), (200, 10), (9000, 300)]
    return [max(1e-3, rng.gauss(*modes[i % 3])) for i in range(n)]


def wide(rng: random.Random, n: int) -> list[float]:
    return [10 ** rng.uniform(-6, 9) for _ in range(n)]


def signed(rng: random.Random, n: int) -> list[float]:
    return [rng.choice([-1, 0, 1]) * 10 ** rng.uniform(-6, 9) for _ in range(n)]


@pytest.mark.parametrize(
    ("shape", "n", "days"),
    [
        (lognormal, 5000, 1),
        (multimodal, 3000, 1),
        (wide, 4000, 30),
        (signed, 4000, 30),
        (lognormal, 1, 1),
        (lognormal, 3, 1),
    ],
    ids=[
        "skewed",
        "multimodal",
        "1e-6 to 1e9 over 30 days",
        "positive negative zero",
        "one",
        "three",
    ],
)
def test_percentiles_from_rollups_are_within_one_percent(
    client: TestClient, db_url: str, shape: Any, n: int, days: int
) -> None:
    rng = random.Random(n)
    start = hour_ago(24 * days + 2)
    events = [
        ev(v, start + timedelta(seconds=rng.uniform(0, days * 86_400)), host=f"h{i % 7}")
        for i, v in enumerate(shape(rng, n))
    ]
    post(client, events)
    refresh_invalidated(db_url, grace=timedelta(0))
    window = {
        "start": (start - timedelta(minutes=30)).isoformat(),
        "end": datetime.now(UTC).isoformat(),
    }

    merged = stats(client, **window)
    exact = stats(client, exact="true", **window)

    assert merged["count"] == exact["count"] == n
    assert merged["min"] == exact["min"]
    assert merged["max"] == exact["max"]
    for p in ("p50", "p95", "p99"):
        assert merged[p] == pytest.approx(exact[p], rel=0.01, abs=0), p


def test_group_by_and_tag_filters(client: TestClient, db_url: str) -> None:
    start = hour_ago(30)
    post(client, spread([1.0, 2.0, 3.0], start, 20, endpoint="/a", method="GET"))
    post(client, spread([10.0, 20.0], start, 20, endpoint="/b", method="GET"))
    post(client, spread([100.0], start, 20, endpoint="/b", method="POST"))
    post(client, spread([1000.0], start, 20))
    refresh_invalidated(db_url, grace=timedelta(0))

    grouped = stats(client, hours=48, group_by="endpoint")
    filtered = stats(client, hours=48, **{"tag.method": "GET"})
    either = client.get(
        "/api/v1/analytics/metrics/m/statistics?hours=48&tag.endpoint=/a&tag.endpoint=/b"
        "&tag.method=GET"
    ).json()

    assert [(g["value"], g["count"], g["sum"]) for g in grouped["groups"]] == [
        ("/a", 3, 6.0),
        ("/b", 3, 130.0),
        (None, 1, 1000.0),
    ]
    assert (filtered["count"], filtered["sum"]) == (5, 36.0)
    assert (either["count"], either["sum"]) == (5, 36.0)


def test_a_filter_matching_nothing_gives_count_zero(client: TestClient) -> None:
    post(client, [ev(1.0, hour_ago(2), endpoint="/a")])

    answer = stats(client, hours=24, **{"tag.endpoint": "/nope"})

    assert answer["count"] == 0
    assert answer["p99"] is None


def test_the_job_leaves_an_hour_alone_until_its_grace_has_passed(
    client: TestClient, db: psycopg.Connection[Any], db_url: str
) -> None:
    hour = hour_ago(5)
    post(client, [ev(1.0, hour + timedelta(minutes=1))])  # separate batches: two marked hours
    post(client, [ev(2.0, hour + timedelta(hours=3, minutes=1))])

    # Ten minutes after the later hour closed: only the earlier one is past the 15-minute grace.
    report = refresh_invalidated(db_url, now=hour + timedelta(hours=4, minutes=10))

    assert report.ranges == [(hour, hour + timedelta(hours=1))]
    left = db.execute("SELECT DISTINCT bucket FROM _analytics.rollup_invalidations").fetchall()
    assert left == [(hour + timedelta(hours=3),)]


def test_one_value_is_its_own_percentile_on_every_path(client: TestClient, db_url: str) -> None:
    # 125.5 keys to a sketch bucket whose representative is 125.598: outside [min, max].
    when = hour_ago(50) + timedelta(minutes=20)
    post(client, [ev(125.5, when, host="a")])
    hourly = {"start": hour_ago(52).isoformat(), "end": hour_ago(48).isoformat()}
    daily = {"start": hour_ago(24 * 5).isoformat(), "end": datetime.now(UTC).isoformat()}
    selections: list[dict[str, Any]] = [{}, {"tag.host": "a"}]

    def answers() -> list[dict[str, Any]]:
        found = []
        for window in (hourly, daily):
            for selection in selections:
                found.append(stats(client, **window, **selection))
                found.append(stats(client, exact="true", **window, **selection))
            grouped = stats(client, group_by="host", **window)
            found.extend(grouped["groups"])
        return found

    before_refresh = answers()  # the hour is listed as invalidated: read from raw events
    refresh_invalidated(db_url, grace=timedelta(0))
    after_refresh = answers()  # hourly and daily rollups

    for figures in before_refresh + after_refresh:
        assert figures["count"] == 1
        assert [figures[k] for k in ("min", "max", "p50", "p95", "p99")] == [125.5] * 5


def ordered(figures: dict[str, Any], where: Any) -> None:
    """min <= p50 <= p95 <= p99 <= max, as percentiles of the same selection must be."""
    chain = [figures[k] for k in ("min", "p50", "p95", "p99", "max")]
    assert all(a <= b for a, b in itertools.pairwise(chain)), (where, chain)


def test_percentiles_lie_between_min_and_max_per_group_and_bucket(
    client: TestClient, db_url: str
) -> None:
    # A few values per group-hour, so each percentile often falls in the sketch bucket of the
    # group's min or max, where the bucket's representative can lie outside the data.
    rng = random.Random(13)
    start = hour_ago(30)
    events = [
        ev(
            rng.choice([1, -1, 1, 1]) * 10 ** rng.uniform(-2, 4),
            start + timedelta(seconds=rng.uniform(0, 28 * 3600)),
            host=f"h{rng.randrange(3)}",
        )
        for _ in range(240)
    ]
    post(client, events)
    window = {
        "start": (start - timedelta(days=1)).isoformat(),
        "end": datetime.now(UTC).isoformat(),
    }
    timeseries = "/api/v1/analytics/metrics/m/time-series"

    def check(path: str) -> None:
        for exact in ("false", "true"):
            answer = stats(client, group_by="host", exact=exact, **window)
            for group in answer["groups"]:
                ordered(group, (path, exact, group["value"]))
            ordered(stats(client, exact=exact, **window), (path, exact))
        for interval in ("15m", "1h", "6h", "1d"):
            points: dict[tuple[Any, str], dict[str, Any]] = {}
            for agg in ("min", "p50", "p95", "p99", "max"):
                for grouped in ({"group_by": "host"}, {}):
                    response = client.get(
                        timeseries, params={"interval": interval, "agg": agg, **window, **grouped}
                    )
                    assert response.status_code == 200, response.text
                    body = response.json()
                    for line in body.get(
                        "series", [{"value": "all", "points": body.get("points")}]
                    ):
                        for point in line["points"]:
                            key = (line["value"], point["time"])
                            points.setdefault(key, {})[agg] = point["value"]
            checked = [f for f in points.values() if f["min"] is not None]
            assert checked
            for key, figures in points.items():
                if figures["min"] is not None:
                    ordered(figures, (path, interval, key))

    check("raw")
    refresh_invalidated(db_url, grace=timedelta(0))
    check("rollups")


def invalidated(db: psycopg.Connection[Any]) -> list[datetime]:
    rows = db.execute("SELECT DISTINCT bucket FROM _analytics.rollup_invalidations ORDER BY 1")
    return [row[0] for row in rows]


def test_a_range_refresh_leaves_its_hours_read_from_the_rollups(
    client: TestClient, db: psycopg.Connection[Any], db_url: str
) -> None:
    rng = random.Random(3)
    start = hour_ago(24 * 5)
    post(
        client,
        [
            ev(
                rng.lognormvariate(3, 1),
                start + timedelta(seconds=rng.uniform(0, 4 * 24 * 3600)),
                host=f"h{rng.randrange(3)}",
            )
            for _ in range(2000)
        ],
    )
    # From mid-day to mid-day: whole days inside and partial days at both edges.
    lo, hi = start + timedelta(hours=30), start + timedelta(hours=30 + 48)
    outside = [hour for hour in invalidated(db) if not lo <= hour < hi]

    report = refresh_range(db_url, lo, hi)

    assert [hour for hour in invalidated(db) if lo <= hour < hi] == []  # read from the rollups
    assert report.invalidations > 0
    assert invalidated(db) == outside  # the rest waits for the periodic run
    windows = [
        {"start": lo.isoformat(), "end": hi.isoformat()},
        {"start": lo.isoformat(), "end": hi.isoformat(), "group_by": "host"},
        {"start": (lo + timedelta(hours=20)).isoformat(), "end": hi.isoformat()},
    ]
    after_range = [stats(client, **window) for window in windows]
    exact = stats(client, exact="true", **windows[0])
    refresh_invalidated(db_url, grace=timedelta(0))
    assert invalidated(db) == []
    assert [stats(client, **window) for window in windows] == after_range
    assert {k: after_range[0][k] for k in ("count", "min", "max")} == {
        k: exact[k] for k in ("count", "min", "max")
    }
    assert_rollups_equal_raw(db)


def test_a_range_refresh_of_one_rollup_leaves_the_invalidations(
    client: TestClient, db: psycopg.Connection[Any], db_url: str
) -> None:
    start = hour_ago(30)
    post(client, spread([1.0, 2.0, 3.0], start, 3))
    before = invalidated(db)

    refresh_range(db_url, start, start + timedelta(hours=3), only="metric_rollup_1h")

    assert invalidated(db) == before  # the other rollups are not recomputed yet


def test_a_range_refresh_keeps_the_hours_still_in_their_grace(
    client: TestClient, db: psycopg.Connection[Any], db_url: str
) -> None:
    hour = hour_ago(5)
    post(client, [ev(1.0, hour + timedelta(minutes=1))])
    post(client, [ev(2.0, hour + timedelta(hours=3, minutes=1))])

    # As the periodic run: an hour closed less than 15 minutes ago stays listed (ingest lists
    # the current hour once per process, relying on that).
    refresh_range(
        db_url, hour, hour + timedelta(hours=4), now=hour + timedelta(hours=4, minutes=10)
    )

    assert invalidated(db) == [hour + timedelta(hours=3)]


def test_an_event_committed_during_a_range_refresh_stays_invalidated(
    client: TestClient, db: psycopg.Connection[Any], db_url: str
) -> None:
    day = hour_ago(24 * 3).replace(hour=0)
    post(client, spread([float(v) for v in range(24)], day, 24))
    first_id = db.execute("SELECT min(id) FROM _analytics.rollup_invalidations").fetchone()
    assert first_id is not None
    failed: list[BaseException] = []

    def refresh() -> None:
        try:
            refresh_range(db_url, day, day + timedelta(days=1))
        except BaseException as exc:  # seen by the assertions, not only printed by the thread
            failed.append(exc)
            raise

    refreshing = threading.Thread(target=refresh)
    with psycopg.connect(db_url) as holder:
        # A row lock the refresh's DELETE of the rows it read waits on: it has read its
        # invalidations and recomputed the day, and has not deleted them yet.
        holder.execute(
            "SELECT 1 FROM _analytics.rollup_invalidations WHERE id = %s FOR UPDATE", first_id
        )
        refreshing.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            waiting = db.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                "'astraeus-rollups' AND wait_event_type = 'Lock' "
                "AND query LIKE 'DELETE FROM _analytics.rollup_invalidations WHERE id%%'"
            ).fetchone()
            if (waiting and waiting[0]) or failed:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the refresh never reached its delete")
        assert failed == []
        late = day + timedelta(hours=7, minutes=30)
        post(client, [ev(1000.0, late)])  # commits while the refresh is between read and delete
        holder.rollback()
    refreshing.join(timeout=60)

    assert not refreshing.is_alive()
    assert failed == []
    assert invalidated(db) == [late.replace(minute=0)]
    answer = stats(client, start=day.isoformat(), end=(day + timedelta(days=1)).isoformat())
    assert answer["count"] == 25
    assert answer["max"] == 1000.0
