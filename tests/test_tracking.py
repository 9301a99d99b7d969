"""Batch tracking (POST /batch-track, `python -m jobs track`, the scheduled job) and the
dashboard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from jobs.alerts import evaluate
from jobs.track import track_invalidated
from tests.conftest import make_client
from tests.test_alerts import BASE, record, rule
from tests.test_entities import MONDAY, TODAY, TUESDAY, at, post, user_week
from tests.test_jobs import jobs_cli

TRACK = "/api/v1/analytics/batch-track"
TABLES = ("user_analytics", "agent_analytics", "platform_metrics")


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def track(client: TestClient, start: datetime, end: datetime, kind: str = "day") -> Any:
    response = client.post(
        TRACK,
        json={"period_start": iso(start), "period_end": iso(end), "period_type": kind},
    )
    assert response.status_code == 200, response.text
    return response.json()


def stored(db: psycopg.Connection[Any]) -> dict[str, list[tuple[Any, ...]]]:
    """Every materialised row with its xmin: a row rewritten with equal values shows."""
    return {
        table: db.execute(
            f"SELECT xmin::text, * FROM analytics.{table} ORDER BY 2, 3, 4"
        ).fetchall()
        for table in TABLES
    }


def agent_day(client: TestClient) -> None:
    post(
        client,
        [
            {"event_type": "agent_up", "agent_id": "a1", "timestamp": at(MONDAY, 0)},
            {"event_type": "agent_down", "agent_id": "a1", "timestamp": at(MONDAY, 18)},
            {
                "event_type": "agent_call",
                "agent_id": "a1",
                "success": False,
                "duration_ms": 40,
                "timestamp": at(MONDAY, 3),
            },
        ],
    )


def test_batch_track_materialises_what_the_api_answers(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    user_week(client)
    agent_day(client)
    before = client.get("/api/v1/analytics/platform/trends", params={"days": 30}).json()

    answer = track(client, MONDAY, TUESDAY + timedelta(days=1))

    # Monday: u1, agents a1 (user events name it, and its own) ; Tuesday: u1, a1 (a call and
    # its carried-in "down" state), a2.
    assert answer == {
        "period_type": "day",
        "period_start": iso(MONDAY),
        "period_end": iso(TUESDAY + timedelta(days=1)),
        "periods": 2,
        "open_periods_skipped": 0,
        "users": 2,
        "agents": 3,
        "platform": 2,
        "rows_changed": 7,
    }
    monday = client.get("/api/v1/analytics/user/u1", params={"period_start": iso(MONDAY)}).json()
    row = db.execute(
        "SELECT * FROM analytics.user_analytics WHERE period_type = 'day' AND period_start = %s",
        (MONDAY,),
    ).fetchone()
    assert row is not None
    columns = [
        c.name
        for c in db.execute("SELECT * FROM analytics.user_analytics LIMIT 0").description or ()
    ]
    assert {
        k: v for k, v in zip(columns, row, strict=True) if k not in ("period_start", "period_end")
    } == {k: v for k, v in monday.items() if k not in ("period_start", "period_end")}
    a1 = db.execute(
        "SELECT uptime_percentage, calls_failed FROM analytics.agent_analytics "
        "WHERE agent_id = 'a1' AND period_start = %s",
        (MONDAY,),
    ).fetchone()
    assert a1 == (75.0, 1)
    # The platform days now come from the materialised rows: the same answer.
    after = client.get("/api/v1/analytics/platform/trends", params={"days": 30}).json()
    assert after == before


def test_tracking_twice_leaves_the_same_rows(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    user_week(client)
    agent_day(client)
    track(client, MONDAY - timedelta(days=7), TUESDAY + timedelta(days=1))
    first = stored(db)

    again = track(client, MONDAY - timedelta(days=7), TUESDAY + timedelta(days=1))

    assert again["rows_changed"] == 0
    assert stored(db) == first  # not even rewritten: same xmin


def test_late_events_correct_past_periods(
    client: TestClient, db: psycopg.Connection[Any], db_url: str
) -> None:
    day = TODAY - timedelta(days=3)
    post(client, [{"event_type": "page_view", "user_id": "u1", "timestamp": at(day, 10)}])
    report = track_invalidated(db_url)
    assert report.invalidations == 1 and report.rows["user"] >= 1

    def active() -> int:
        trends = client.get("/api/v1/analytics/platform/trends", params={"days": 5}).json()
        return next(p for p in trends["periods"] if p["period_start"] == iso(day))["users_active"]

    # A clean period is read from its materialised row (here tampered with, to see it).
    db.execute(
        "UPDATE analytics.platform_metrics SET users_active = 99 "
        "WHERE period_type = 'day' AND period_start = %s",
        (day,),
    )
    assert active() == 99

    post(
        client,
        [
            {"event_type": "page_view", "user_id": "u1", "timestamp": at(day, 23.5)},
            {"event_type": "page_view", "user_id": "u5", "timestamp": at(day, 23.5)},
        ],
    )

    assert active() == 2  # at once: the late events make the day dirty, read from raw
    track_invalidated(db_url)
    assert active() == 2
    assert db.execute(
        "SELECT user_id, page_views FROM analytics.user_analytics "
        "WHERE period_type = 'day' AND period_start = %s ORDER BY user_id",
        (day,),
    ).fetchall() == [("u1", 2), ("u5", 1)]
    assert db.execute(
        "SELECT users_active FROM analytics.platform_metrics "
        "WHERE period_type = 'day' AND period_start = %s",
        (day,),
    ).fetchone() == (2,)
    assert db.execute(
        "SELECT count(*) FROM analytics.tracked_periods WHERE dirty AND period_end < now()"
    ).fetchone() == (0,)


def test_the_job_tracks_closed_periods_only(
    client: TestClient, db: psycopg.Connection[Any], db_url: str
) -> None:
    post(client, [{"event_type": "page_view", "user_id": "u1"}])

    report = track_invalidated(db_url)
    answer = track(client, TODAY - timedelta(days=1), TODAY + timedelta(days=1))

    assert report.periods == 0
    assert (answer["periods"], answer["open_periods_skipped"], answer["users"]) == (1, 1, 0)
    assert db.execute("SELECT count(*) FROM analytics.user_analytics").fetchone() == (0,)
    assert db.execute(
        "SELECT DISTINCT period_type FROM analytics.tracked_periods WHERE dirty ORDER BY 1"
    ).fetchall() == [("day",), ("hour",), ("month",), ("week",)]


def test_deleted_events_take_their_rows_away(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    user_week(client)
    track(client, MONDAY, TUESDAY)
    db.execute("DELETE FROM analytics.platform_events WHERE user_id = 'u1'")

    answer = track(client, MONDAY, TUESDAY)

    assert answer["users"] == 0 and answer["rows_changed"] >= 2  # the user row, the platform
    assert db.execute("SELECT count(*) FROM analytics.user_analytics").fetchone() == (0,)


def test_weeks_and_hours_can_be_tracked(client: TestClient, db: psycopg.Connection[Any]) -> None:
    user_week(client)

    weeks = track(client, MONDAY, MONDAY + timedelta(days=7), "week")
    hours = track(client, MONDAY, MONDAY + timedelta(days=1), "hour")

    assert (weeks["periods"], weeks["users"]) == (1, 1)
    assert db.execute(
        "SELECT agents_used, total_spent FROM analytics.user_analytics WHERE period_type = 'week'"
    ).fetchone() == (2, 65.0)
    assert (hours["periods"], hours["platform"]) == (24, 24)
    assert hours["users"] == 7  # the hours of Monday with u1's events: 9 to 14, 16


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (
            {"period_start": "2026-01-02T00:00:00Z", "period_end": "2026-01-01T00:00:00Z"},
            422,
            "period_end",
        ),
        ({"period_start": "2026-01-01T00:00:00Z"}, 422, "period_end"),
        (
            {
                "period_start": "2026-01-01T00:00:00Z",
                "period_end": "2026-01-02T00:00:00Z",
                "period_type": "fortnight",
            },
            422,
            "period_type",
        ),
        (
            {"period_start": "2026-01-01T00:00:00", "period_end": "2026-01-02T00:00:00Z"},
            422,
            "period_start",
        ),
        (
            {
                "period_start": "2020-01-01T00:00:00Z",
                "period_end": "2026-01-01T00:00:00Z",
                "period_type": "hour",
            },
            422,
            "period_end",
        ),
        (
            {
                "period_start": "2026-01-01T00:00:00Z",
                "period_end": "9999-12-31T23:00:00Z",
                "period_type": "month",
            },
            422,
            "period_end",
        ),
        (
            {
                "period_start": "2026-01-01T00:00:00Z",
                "period_end": "2026-01-02T00:00:00Z",
                "users": "all",
            },
            422,
            "users",
        ),
    ],
)
def test_bad_batch_track_requests_are_refused(
    client: TestClient, db: psycopg.Connection[Any], body: dict[str, Any], status: int, field: str
) -> None:
    response = client.post(TRACK, json=body)

    assert response.status_code == status, response.text
    assert response.json()["details"][0]["field"] == field
    assert db.execute("SELECT count(*) FROM analytics.tracked_periods").fetchone() == (0,)


def test_batch_track_wants_json(client: TestClient) -> None:
    assert (
        client.post(
            TRACK, content=b"period_type=day", headers={"Content-Type": "text/plain"}
        ).status_code
        == 415
    )
    assert (
        client.post(TRACK, content=b"{", headers={"Content-Type": "application/json"}).status_code
        == 400
    )


def test_the_track_command(client: TestClient, db_url: str) -> None:
    user_week(client)

    ranged = jobs_cli(
        "track",
        "--start",
        iso(MONDAY),
        "--end",
        iso(TUESDAY),
        "--period-type",
        "week",
        url=db_url,
    )
    scheduled = jobs_cli("track", url=db_url)
    bad = jobs_cli("track", "--start", iso(MONDAY), url=db_url)

    assert ranged.returncode == 0, ranged.stderr
    assert (
        ranged.stdout.strip()
        .splitlines()[-1]
        .startswith("1 period(s) tracked (0 still open): 1 user row(s)")
    )
    assert scheduled.returncode == 0, scheduled.stderr
    assert "period(s) tracked" in scheduled.stdout
    assert bad.returncode == 2 and "--end" in bad.stderr


def test_the_dashboard(client: TestClient, db_url: str) -> None:
    yesterday = TODAY - timedelta(days=1)
    now = datetime.now(UTC)
    post(
        client,
        [
            {"event_type": "user_signup", "user_id": "u1", "timestamp": at(yesterday, 1)},
            {"event_type": "user_signup", "user_id": "u2", "timestamp": iso(now)},
            {"event_type": "agent_registered", "agent_id": "a1", "timestamp": iso(now)},
            {
                "event_type": "contract_created",
                "user_id": "u2",
                "contract_id": "c1",
                "timestamp": iso(now),
            },
            {
                "event_type": "payment",
                "user_id": "u2",
                "agent_id": "a1",
                "amount": 80,
                "fee": 8,
                "timestamp": iso(now),
            },
        ],
    )
    record(client, 1.0, BASE - timedelta(minutes=5))
    rule(client, aggregation="count", condition_operator="lt", threshold=1, duration_seconds=0)
    evaluate(db_url, now=BASE)
    track(client, yesterday, TODAY)

    answer = client.get("/api/v1/analytics/dashboard", params={"days": 7}).json()

    current = answer["current_metrics"]
    assert current["period_start"] == iso(TODAY)
    assert current["users"] == {"total": 2, "active": 1, "new": 1}
    assert current["agents"] == {"total": 1, "active": 1, "new": 1}
    assert current["contracts"] == {"total": 1, "active": 1, "completed": 0, "failed": 0}
    assert (current["financial"]["revenue"], current["financial"]["platform_fees"]) == (80, 8)
    assert [p["period_start"] for p in answer["trends"]] == [
        iso(TODAY - timedelta(days=d)) for d in range(6, -1, -1)
    ]
    assert answer["trends"][-2]["users_new"] == 1  # yesterday, from its materialised row
    assert set(answer["performance"]) >= {"api", "contracts", "orchestrations"}
    assert answer["monitoring"]["open_incidents"] == 1
    assert answer["monitoring"]["incidents"][0]["severity"] == "critical"
    assert (
        answer["monitoring"]["health"] == client.get("/api/v1/analytics/monitoring/health").json()
    )
    assert client.get("/api/v1/analytics/dashboard", params={"days": 0}).status_code == 400


def test_the_open_day_is_reused_for_dashboard_cache_s(db_url: str) -> None:
    for cache, expected in (("10", 1), ("0", 2)):
        with make_client(db_url, DASHBOARD_CACHE_S=cache) as client:
            users = client.get("/api/v1/analytics/dashboard").json()["current_metrics"]["users"]
            post(client, [{"event_type": "page_view", "user_id": f"late-{cache}"}])
            again = client.get("/api/v1/analytics/dashboard").json()["current_metrics"]["users"]
            assert again["active"] - users["active"] == expected - 1


def test_late_events_correct_the_periods_that_depend_on_them(
    client: TestClient, db: psycopg.Connection[Any], db_url: str
) -> None:
    d1, d2, d3 = (TODAY - timedelta(days=n) for n in (4, 3, 2))
    post(
        client,
        [
            {"event_type": "user_signup", "user_id": "u1", "timestamp": at(d1, 1)},
            {"event_type": "page_view", "user_id": "u1", "timestamp": at(d2, 1)},
            {"event_type": "page_view", "user_id": "u1", "timestamp": at(d3, 1)},
        ],
    )
    track_invalidated(db_url)

    def day(moment: datetime) -> dict[str, Any]:
        trends = client.get("/api/v1/analytics/platform/trends", params={"days": 6}).json()
        return next(p for p in trends["periods"] if p["period_start"] == iso(moment))

    assert (day(d3)["users_total"], day(d2)["users_churned"]) == (1, 0)
    # Late: u2 signed up on d1 (every later total), u3 was active on d1 only (d2 churn).
    post(
        client,
        [
            {"event_type": "user_signup", "user_id": "u2", "timestamp": at(d1, 2)},
            {"event_type": "page_view", "user_id": "u3", "timestamp": at(d1, 3)},
        ],
    )

    assert (day(d3)["users_total"], day(d2)["users_churned"]) == (2, 2)  # at once, from raw
    track_invalidated(db_url)
    assert (day(d3)["users_total"], day(d2)["users_churned"]) == (2, 2)
    assert db.execute(
        "SELECT period_start, users_total, users_churned FROM analytics.platform_metrics "
        "WHERE period_type = 'day' AND period_start >= %s ORDER BY 1",
        (d2,),
    ).fetchall() == [(d2, 2, 2), (d3, 2, 0)]


def test_the_dashboard_over_one_day_and_odd_ranges(client: TestClient) -> None:
    one = client.get("/api/v1/analytics/dashboard", params={"days": "1"})
    fraction = client.get("/api/v1/analytics/dashboard", params={"days": "1.5"})
    year_one = client.post(
        TRACK, json={"period_start": "0001-01-01T00:00:00Z", "period_end": "0001-01-02T00:00:00Z"}
    )

    assert one.status_code == 200 and len(one.json()["trends"]) == 1
    assert fraction.status_code == 400 and fraction.json()["details"][0]["field"] == "days"
    assert year_one.status_code == 422 and year_one.json()["details"][0]["field"] == "period_end"
