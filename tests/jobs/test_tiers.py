"""The rollup tiers: kept by the deltas every group commit writes and by the compactor, equal
to a rebuild from raw events, fresh at once, and counting every event exactly once whatever
the compactor is doing."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import psycopg
import pytest
from starlette.testclient import TestClient

import sql
from jobs import retention
from jobs.compact import Compactor, compact, rebuild, start_in_thread
from query.plan import MINUTE, plan
from query.statistics import Owners, metric_and_marks

BATCH = "/api/v1/analytics/metrics/batch"
TIERS = ("series_1m", "series_1h", "series_1d", "metric_1m", "metric_1h", "metric_1d")


def events(rng: random.Random, count: int, now: datetime, spread_s: float) -> list[dict]:
    return [
        {
            "metric_name": f"m{rng.randrange(3)}",
            "metric_type": "gauge",
            "value": round(rng.lognormvariate(3, 1.5), 3) * rng.choice([1, 1, 1, -1]),
            "tags": {"pod": str(rng.randrange(12))},
            "timestamp": (now - timedelta(seconds=rng.uniform(0, spread_s))).isoformat(),
        }
        for _ in range(count)
    ]


def post(client: TestClient, batch: list[dict[str, Any]]) -> None:
    response = client.post(BATCH, json=batch)
    assert response.status_code == 200, response.text


def tiers(db: psycopg.Connection[Any]) -> dict[str, list[tuple[Any, ...]]]:
    found = {}
    for tier in TIERS:
        owner = "series_id" if tier.startswith("series") else "metric_id"
        found[tier] = db.execute(
            f"SELECT bucket, {owner}, count, round(sum::numeric, 6), min, max, keys, "
            f"counts::bigint[], k50, k95, k99 FROM analytics.{tier} ORDER BY 1, 2"
        ).fetchall()
    return found


def set_marks_back(db: psycopg.Connection[Any], hours: int, days: int) -> None:
    """As if the compactor last folded `hours` hours and `days` days ago."""
    db.execute(
        "UPDATE _analytics.tier_watermarks SET mark = time_bucket('1 hour', now()) - %s "
        "WHERE tier = '1h'",
        (timedelta(hours=hours),),
    )
    db.execute(
        "UPDATE _analytics.tier_watermarks SET mark = time_bucket('1 day', now()) - %s "
        "WHERE tier = '1d'",
        (timedelta(days=days),),
    )


def statistics(client: TestClient, name: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/api/v1/analytics/metrics/{name}/statistics", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.mark.parametrize("marks_back", [(0, 0), (5, 2)], ids=["current", "folding"])
def test_the_tiers_equal_a_rebuild_from_raw_events(
    client: TestClient, db: psycopg.Connection[Any], db_url: str, marks_back: tuple[int, int]
) -> None:
    # Fresh events, late ones and days-old ones, some compacted before others arrive; with the
    # marks set back, the compactor also folds hours and days from the minutes it wrote.
    set_marks_back(db, *marks_back)
    rng = random.Random(5)
    now = datetime.now(UTC)
    folded = 0
    for round_ in range(6):
        post(client, events(rng, 400, now, 3 * 86400 if round_ % 3 == 0 else 900))
        if round_ % 2:
            folded += compact(db_url).hours_folded
    folded += compact(db_url).hours_folded
    # (one hour fewer in the first two minutes of an hour: it folds FOLD_GRACE after closing)
    assert folded in (marks_back[0], max(marks_back[0] - 1, 0))
    compacted = tiers(db)
    hour_mark = db.execute("SELECT mark FROM _analytics.tier_watermarks WHERE tier = '1h'")
    mark = hour_mark.fetchone()[0]  # type: ignore[index]
    in_hours = sum(row[2] for row in compacted["metric_1h"])
    in_minutes = sum(row[2] for row in compacted["metric_1m"] if row[0] >= mark)
    assert in_hours + in_minutes == 2400
    assert db.execute("SELECT count(*) FROM _analytics.series_deltas").fetchone() == (0,)

    rebuild(db_url, now - timedelta(days=5), now + timedelta(days=1))

    assert tiers(db) == compacted


def test_an_acknowledged_event_counts_at_once_and_the_same_once_compacted(
    client: TestClient, db_url: str
) -> None:
    rng = random.Random(9)
    now = datetime.now(UTC)
    post(client, events(rng, 500, now, 600))
    before = statistics(client, "m1", hours=1)
    by_pod = statistics(client, "m1", hours=1, group_by="pod")

    compact(db_url)

    assert before["count"] > 0
    after = statistics(client, "m1", hours=1)
    for figure in ("count", "min", "max", "p50", "p95", "p99"):
        assert after[figure] == before[figure]
    assert after["sum"] == pytest.approx(before["sum"], rel=1e-12)  # (summed in another order)
    groups = statistics(client, "m1", hours=1, group_by="pod")["groups"]
    assert [(g["value"], g["count"], g["p95"]) for g in groups] == [
        (g["value"], g["count"], g["p95"]) for g in by_pod["groups"]
    ]
    exact = statistics(client, "m1", hours=1, exact="true")
    assert exact["count"] == before["count"]
    assert before["min"] <= before["p50"] <= before["p95"] <= before["p99"] <= before["max"]


def test_the_loop_merges_metric_deltas_every_round_and_series_deltas_less_often(
    client: TestClient, db: psycopg.Connection[Any], db_url: str
) -> None:
    def pending(kind: str) -> int:
        row = db.execute(f"SELECT count(*) FROM _analytics.{kind}_deltas").fetchone()
        assert row is not None
        return int(row[0])

    stop = threading.Event()
    loop = Compactor(db_url, timedelta(milliseconds=50), stop=stop, series_every=timedelta(hours=1))
    thread = start_in_thread(loop)  # its first round takes both kinds; then metrics only
    try:
        deadline = time.monotonic() + 10
        while (pending("series") or pending("metric")) and time.monotonic() < deadline:
            time.sleep(0.05)
        post(client, events(random.Random(3), 300, datetime.now(UTC), 600))
        while pending("metric") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pending("metric") == 0
        assert pending("series") > 0  # waiting for its own, longer interval
        whole = statistics(client, "m1", hours=1)
        groups = statistics(client, "m1", hours=1, group_by="pod")["groups"]
        assert sum(g["count"] for g in groups) == whole["count"] > 0
    finally:
        stop.set()
        thread.join()
    compact(db_url)
    assert pending("series") == 0
    after = statistics(client, "m1", hours=1, group_by="pod")["groups"]
    assert [(g["value"], g["count"], g["p95"]) for g in after] == [
        (g["value"], g["count"], g["p95"]) for g in groups
    ]


def test_ingest_during_compaction_counts_every_event_once(
    client: TestClient, db: psycopg.Connection[Any], db_url: str
) -> None:
    set_marks_back(db, 2, 1)
    stop = threading.Event()
    rounds = 0

    def compactor() -> None:
        nonlocal rounds
        while not stop.is_set():
            compact(db_url)
            rounds += 1

    thread = threading.Thread(target=compactor)
    thread.start()
    rng = random.Random(11)
    try:
        for _ in range(20):
            post(client, events(rng, 250, datetime.now(UTC), 4 * 3600))
    finally:
        stop.set()
        thread.join()

    assert rounds >= 2
    total = sum(statistics(client, f"m{i}", hours=6)["count"] for i in range(3))
    assert total == 5000
    compact(db_url)
    assert sum(statistics(client, f"m{i}", hours=6)["count"] for i in range(3)) == 5000
    raw = db.execute("SELECT count(*) FROM analytics.metric_events").fetchone()
    hours = db.execute(
        "SELECT coalesce(sum(count), 0) FROM analytics.series_1h WHERE bucket < "
        "(SELECT mark FROM _analytics.tier_watermarks WHERE tier = '1h')"
    ).fetchone()
    minutes = db.execute(
        "SELECT coalesce(sum(count), 0) FROM analytics.series_1m WHERE bucket >= "
        "(SELECT mark FROM _analytics.tier_watermarks WHERE tier = '1h')"
    ).fetchone()
    assert raw is not None and hours is not None and minutes is not None
    assert hours[0] + minutes[0] == raw[0] == 5000


def test_a_late_event_under_the_watermarks_goes_straight_to_its_hour_and_day(
    client: TestClient, db: psycopg.Connection[Any], db_url: str
) -> None:
    late = datetime.now(UTC) - timedelta(days=3, hours=2)
    post(
        client,
        [
            {
                "metric_name": "late",
                "metric_type": "gauge",
                "value": 7.5,
                "timestamp": late.isoformat(),
            }
        ],
    )
    compact(db_url)

    hourly = db.execute("SELECT count, min FROM analytics.metric_1h").fetchall()
    daily = db.execute("SELECT count, max FROM analytics.metric_1d").fetchall()
    minutes = db.execute("SELECT count(*) FROM analytics.metric_1m").fetchone()
    assert hourly == [(1, 7.5)] and daily == [(1, 7.5)]
    assert minutes == (0,)  # older than the per-metric minute tier's 48 hours
    answer = statistics(
        client,
        "late",
        start=(late - timedelta(minutes=10)).isoformat(),
        end=(late + timedelta(minutes=10)).isoformat(),
    )
    assert answer["count"] == 1 and answer["p99"] == 7.5
    # Past the minute tier's horizon the window widens to the event's whole hour.
    assert answer["start"] <= (late - timedelta(minutes=10)).isoformat()


def test_statistics_answer_whole_minutes_and_say_so(client: TestClient) -> None:
    post(client, events(random.Random(2), 50, datetime.now(UTC), 60))
    answer = statistics(client, "m0", start="2026-01-01T10:00:30Z", end="2026-01-01T11:59:10Z")

    assert answer["start"].startswith("2026-01-01T10:00:00")
    assert answer["end"].startswith("2026-01-01T12:00:00")


def test_retention_keeps_every_minute_queries_may_read(
    client: TestClient, db: psycopg.Connection[Any], db_url: str
) -> None:
    set_marks_back(db, 30, 2)
    post(client, events(random.Random(4), 300, datetime.now(UTC), 20 * 3600))
    compact(db_url)  # folds the 30 hours; keeps their minutes (they are within 48 h)
    series_minutes = db.execute(
        "SELECT mark FROM _analytics.tier_watermarks WHERE tier = 'series_1m'"
    ).fetchone()
    assert series_minutes is not None

    report = retention.apply(db_url, retention.Policy(90, 400, 0))

    dropped = {relation for relation, _ in report.chunks}
    assert dropped <= {"analytics.series_1m"}
    oldest = db.execute("SELECT min(bucket) FROM analytics.series_1m").fetchone()
    # (a chunk is an hour: the one holding the horizon stays whole)
    assert oldest is not None and oldest[0] >= series_minutes[0] - timedelta(hours=1)


def test_a_bucket_of_one_tier_row_takes_its_percentile_from_the_row_as_a_merge_would(
    client: TestClient, db_url: str
) -> None:
    now = datetime.now(UTC)
    post(client, events(random.Random(8), 3000, now - timedelta(minutes=30), 600))
    compact(db_url)
    window = {
        "start": (now - timedelta(minutes=45)).isoformat(),
        "end": (now - timedelta(minutes=25)).isoformat(),
    }

    for agg in ("p50", "p95", "p99"):
        series = client.get(
            "/api/v1/analytics/metrics/m0/time-series",
            params={**window, "interval": "1m", "agg": agg},
        ).json()
        assert series["resolution"] == "1m"
        points = [p for p in series["points"] if p["value"] is not None]
        assert len(points) >= 5
        for point in points:  # the same minute through statistics: a merge of its one row
            minute = datetime.fromisoformat(point["time"])
            merged = statistics(
                client,
                "m0",
                start=minute.isoformat(),
                end=(minute + timedelta(minutes=1)).isoformat(),
            )
            assert point["value"] == merged[agg], (agg, point["time"])


def test_a_minute_with_pending_deltas_merges_its_row_in_a_time_series(
    client: TestClient, db_url: str
) -> None:
    """A time series at the tier's width reads a row's sketch only where deltas are pending:
    the minutes with late deltas on top of their compacted row answer the merged percentile,
    the others their row's own, and every figure is what the same minute answers once
    compacted."""
    now = datetime.now(UTC)
    first = events(random.Random(21), 2000, now - timedelta(minutes=30), 600)
    post(client, first)
    compact(db_url)
    late = events(random.Random(22), 400, now - timedelta(minutes=30), 120)  # a few minutes
    post(client, late)
    window = {
        "start": (now - timedelta(minutes=45)).isoformat(),
        "end": (now - timedelta(minutes=25)).isoformat(),
    }

    def points(agg: str) -> dict[str, float | None]:
        series = client.get(
            "/api/v1/analytics/metrics/m0/time-series",
            params={**window, "interval": "1m", "agg": agg},
        ).json()
        assert series["resolution"] == "1m"
        return {p["time"]: p["value"] for p in series["points"]}

    pending = {agg: points(agg) for agg in ("p50", "p95", "p99", "max", "count")}
    compact(db_url)
    for agg, before in pending.items():
        assert before == points(agg), agg
    assert sum(pending["count"].values()) == sum(  # type: ignore[arg-type]
        1 for e in first + late if e["metric_name"] == "m0"
    )


def test_a_one_minute_series_of_one_owner_answers_what_the_general_statement_answers(
    client: TestClient, db_url: str
) -> None:
    """timeseries_minutes (a minute row per bucket) and timeseries_tiers answer the same rows,
    bit for bit: compacted minutes, minutes with deltas pending on top of their row, minutes of
    pending deltas alone, empty minutes; the metric and one series (in its group); each
    percentile and none."""
    now = datetime.now(UTC)
    post(client, events(random.Random(31), 3000, now - timedelta(minutes=20), 900))
    compact(db_url)
    post(client, events(random.Random(32), 300, now - timedelta(minutes=20), 240))
    post(client, events(random.Random(33), 100, now - timedelta(minutes=2), 60))

    async def both() -> list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
        conn = await asyncpg.connect(db_url)
        try:
            found, marks = await metric_and_marks(conn, "m0")
            series_id = await conn.fetchval(
                "SELECT id FROM analytics.series WHERE metric_id = $1 AND tags->>'pod' = '3'",
                found["id"],
            )
            pairs = []
            for read in (
                Owners("metric", [found["id"]], [None]),
                Owners("series", [series_id], ["3"]),
            ):
                parts = plan(now - timedelta(minutes=50), now, marks, read.kind, MINUTE)
                for q in (None, 0.5, 0.95, 0.99):
                    general = await conn.fetch(
                        sql.tier_query("timeseries_tiers", read.kind),
                        *parts.arguments(read.ids, read.groups),
                        "1 minutes",
                        q,
                    )
                    fast = await conn.fetch(
                        sql.tier_query("timeseries_minutes", read.kind),
                        read.ids[0],
                        parts.start,
                        parts.end,
                        q,
                        read.groups[0],
                    )
                    pairs.append(([dict(r) for r in general], [dict(r) for r in fast]))
            return pairs
        finally:
            await conn.close()

    compared = asyncio.run(both())
    assert len(compared) == 8
    for general, fast in compared:
        assert len(general) == 51 and sum(1 for row in general if row["count"]) >= 15
        assert fast == general
