"""Rollups: the tiers equal a rebuild from raw, late data corrects them, statistics are fresh,
and percentiles lie within 1% of percentile_disc and within [min, max]. These run against
whichever edition the test server has (the tiers are the same on both)."""

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

from jobs.compact import compact, rebuild
from tests.support import assert_tiers_equal_raw

BATCH = "/api/v1/analytics/metrics/batch"


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

    report = compact(db_url)

    assert report.events == 3000
    assert db.execute("SELECT count(*) FROM _analytics.series_deltas").fetchone() == (0,)
    assert_tiers_equal_raw(db, db_url)


def test_late_events_correct_past_rollups(
    client: TestClient, db: psycopg.Connection[Any], db_url: str
) -> None:
    start = hour_ago(24 * 5)
    post(client, spread([float(v) for v in range(100)], start, 10))
    compact(db_url)

    # Days late, into hours already rolled up, and far outside any policy's refresh window.
    post(client, [ev(1000.0, start + timedelta(hours=2, minutes=30)), ev(-5.0, start)])
    window = {"start": start.isoformat(), "end": (start + timedelta(hours=10)).isoformat()}
    before_refresh = stats(client, **window)
    compact(db_url)
    after_refresh = stats(client, **window)

    assert_tiers_equal_raw(db, db_url)
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

    compact(db_url)

    assert_tiers_equal_raw(db, db_url)
    hourly = db.execute(
        "SELECT bucket, count, sum FROM analytics.series_1h ORDER BY bucket"
    ).fetchall()
    assert [(b - midnight, c, s) for b, c, s in hourly] == [
        (-timedelta(hours=1), 1, 1.0),
        (timedelta(0), 2, 5.0),
        (timedelta(hours=1), 1, 4.0),
    ]
    daily = db.execute("SELECT bucket, count FROM analytics.series_1d ORDER BY 1").fetchall()
    assert daily == [(midnight - timedelta(days=1), 1), (midnight, 3)]


def test_statistics_include_an_event_committed_a_moment_ago(
    client: TestClient, db_url: str
) -> None:
    post(client, spread([10.0] * 48, hour_ago(48), 47))
    compact(db_url)

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
    compact(db_url)

    rebuild(db_url, start - timedelta(hours=3), start + timedelta(hours=25))
    rebuild(db_url, start - timedelta(hours=3), start + timedelta(hours=25))

    assert_tiers_equal_raw(db, db_url)


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
    compact(db_url)
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
    compact(db_url)

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

    before_refresh = answers()  # pending deltas
    compact(db_url)
    after_refresh = answers()  # hourly and daily tiers

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

    check("pending")
    compact(db_url)
    check("tiers")


def test_an_event_committed_during_a_rebuild_is_counted_once(
    client: TestClient, db: psycopg.Connection[Any], db_url: str
) -> None:
    day = hour_ago(24 * 3).replace(hour=0)
    post(client, spread([float(v) for v in range(24)], day, 24))
    failed: list[BaseException] = []

    def rebuilding() -> None:
        try:
            rebuild(db_url, day, day + timedelta(days=1))
        except BaseException as exc:  # seen by the assertions, not only printed by the thread
            failed.append(exc)
            raise

    thread = threading.Thread(target=rebuilding)
    with psycopg.connect(db_url) as holder:
        # A row lock the rebuild's DELETE of the day's deltas waits on: its snapshot is taken.
        holder.execute("SELECT 1 FROM _analytics.series_deltas LIMIT 1 FOR UPDATE")
        thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            waiting = db.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                "'astraeus-rebuild' AND wait_event_type = 'Lock'"
            ).fetchone()
            if (waiting and waiting[0]) or failed:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the rebuild never reached its delete")
        assert failed == []
        late = day + timedelta(hours=7, minutes=30)
        post(client, [ev(1000.0, late)])  # commits after the rebuild's snapshot
        holder.rollback()
    thread.join(timeout=60)

    assert not thread.is_alive()
    assert failed == []
    window = {"start": day.isoformat(), "end": (day + timedelta(days=1)).isoformat()}
    for _ in ("rebuilt, the late delta pending", "compacted"):
        answer = stats(client, **window)
        assert answer["count"] == 25
        assert answer["max"] == 1000.0
        compact(db_url)
    assert_tiers_equal_raw(db, db_url)
