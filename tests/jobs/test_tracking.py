"""Batch tracking (POST /batch-track, `python -m jobs track`, the scheduled job) and the
dashboard."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from jobs.alerts import evaluate
from jobs.track import TRACK_GRACE, TRACK_LOCK, track_invalidated
from tests.support import (
    BASE,
    MONDAY,
    TRACK,
    TUESDAY,
    at,
    iso,
    jobs_cli,
    make_client,
    post,
    record,
    rule,
    stored,
    track,
    user_week,
    utc_today,
)


def untracked_closed_periods(db: psycopg.Connection[Any]) -> int:
    """Dirty periods the track job is due to have tracked: closed TRACK_GRACE ago (one closed
    since is left for the next run, as on a Monday or the 1st just after 00:00 UTC)."""
    row = db.execute(
        "SELECT count(*) FROM analytics.tracked_periods WHERE dirty AND period_end <= now() - %s",
        (TRACK_GRACE,),
    ).fetchone()
    assert row is not None
    return int(row[0])


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
    day = utc_today() - timedelta(days=3)
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
    assert untracked_closed_periods(db) == 0


def test_the_job_tracks_closed_periods_only(
    client: TestClient, db: psycopg.Connection[Any], db_url: str
) -> None:
    today = utc_today()
    post(client, [{"event_type": "page_view", "user_id": "u1"}])

    report = track_invalidated(db_url)
    answer = track(client, today - timedelta(days=1), today + timedelta(days=1))

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


def test_batch_track_is_answered_503_at_its_bound(db_url: str, db: psycopg.Connection[Any]) -> None:
    # Another tracking run holds the lock for longer than BATCH_TRACK_TIMEOUT_S.
    with make_client(db_url, BATCH_TRACK_TIMEOUT_S="2") as client:
        db.execute("SELECT pg_advisory_lock(%s)", (TRACK_LOCK,))
        try:
            answer = client.post(
                TRACK,
                json={"period_start": "2024-01-01T00:00:00Z", "period_end": "2024-01-02T00:00:00Z"},
            )
        finally:
            db.execute("SELECT pg_advisory_unlock(%s)", (TRACK_LOCK,))
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"]
        # Its connection was given up: the next request tracks the range.
        again = client.post(
            TRACK,
            json={"period_start": "2024-01-01T00:00:00Z", "period_end": "2024-01-02T00:00:00Z"},
        )
        assert again.status_code == 200, again.text


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
    now = datetime.now(UTC)
    today = utc_today(now)
    yesterday = today - timedelta(days=1)
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
    track(client, yesterday, today)

    answer = client.get("/api/v1/analytics/dashboard", params={"days": 7}).json()

    current = answer["current_metrics"]
    assert current["period_start"] == iso(today)
    assert current["users"] == {"total": 2, "active": 1, "new": 1}
    assert current["agents"] == {"total": 1, "active": 1, "new": 1}
    assert current["contracts"] == {"total": 1, "active": 1, "completed": 0, "failed": 0}
    assert (current["financial"]["revenue"], current["financial"]["platform_fees"]) == (80, 8)
    assert [p["period_start"] for p in answer["trends"]] == [
        iso(today - timedelta(days=d)) for d in range(6, -1, -1)
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
    d1, d2, d3 = (utc_today() - timedelta(days=n) for n in (4, 3, 2))
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
    # Late: u2 signed up on d1, u3 was active on d1 only (every later total; d2 churn).
    post(
        client,
        [
            {"event_type": "user_signup", "user_id": "u2", "timestamp": at(d1, 2)},
            {"event_type": "page_view", "user_id": "u3", "timestamp": at(d1, 3)},
        ],
    )

    assert (day(d3)["users_total"], day(d2)["users_churned"]) == (3, 2)  # at once, from raw
    track_invalidated(db_url)
    assert (day(d3)["users_total"], day(d2)["users_churned"]) == (3, 2)
    assert db.execute(
        "SELECT period_start, users_total, users_churned FROM analytics.platform_metrics "
        "WHERE period_type = 'day' AND period_start >= %s ORDER BY 1",
        (d2,),
    ).fetchall() == [(d2, 3, 2), (d3, 3, 0)]


def test_the_dashboard_over_one_day_and_odd_ranges(client: TestClient) -> None:
    one = client.get("/api/v1/analytics/dashboard", params={"days": "1"})
    fraction = client.get("/api/v1/analytics/dashboard", params={"days": "1.5"})
    year_one = client.post(
        TRACK, json={"period_start": "0001-01-01T00:00:00Z", "period_end": "0001-01-02T00:00:00Z"}
    )

    assert one.status_code == 200 and len(one.json()["trends"]) == 1
    assert fraction.status_code == 400 and fraction.json()["details"][0]["field"] == "days"
    assert year_one.status_code == 422 and year_one.json()["details"][0]["field"] == "period_end"


def platform_day(client: TestClient, moment: datetime, days: int = 7) -> dict[str, Any]:
    trends = client.get("/api/v1/analytics/platform/trends", params={"days": days}).json()
    return next(p for p in trends["periods"] if p["period_start"] == iso(moment))


def entity_figures(period: dict[str, Any]) -> tuple[int, ...]:
    return tuple(
        period[f"{kind}_{figure}"]
        for kind in ("users", "agents")
        for figure in ("total", "active", "new")
    )


def test_users_and_agents_without_a_signup_are_counted(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    """Issue 13: a user's sessions, page views and contracts with no user_signup made the
    dashboard say users {"total": 0, "active": 1}."""
    moment = datetime.now(UTC)
    now, today = iso(moment), utc_today(moment)
    yesterday = today - timedelta(days=1)
    u1 = {"user_id": "u1"}
    post(
        client,
        [
            {"event_type": "session_start", **u1, "timestamp": at(yesterday, 9)},
            {"event_type": "page_view", **u1, "timestamp": at(yesterday, 9.5)},
            {
                "event_type": "contract_created",
                **u1,
                "contract_id": "c1",
                "timestamp": at(yesterday, 10),
            },
            {
                "event_type": "agent_call",
                "agent_id": "a1",
                "success": True,
                "duration_ms": 5,
                "timestamp": at(yesterday, 11),
            },
            {"event_type": "session_start", **u1, "timestamp": now},
            {"event_type": "page_view", "user_id": "u2", "timestamp": now},
        ],
    )
    # Yesterday: u1 and a1 first seen; today: u1 again and u2 first seen, no agent.
    expected_yesterday = (1, 1, 1, 1, 1, 1)
    expected_today = (2, 2, 1, 1, 0, 0)

    def answers() -> tuple[tuple[int, ...], ...]:
        board = client.get("/api/v1/analytics/dashboard", params={"days": 2}).json()
        current = board["current_metrics"]
        return (
            tuple(current[k][f] for k in ("users", "agents") for f in ("total", "active", "new")),
            entity_figures(board["trends"][0]),
            entity_figures(platform_day(client, yesterday, days=2)),
            entity_figures(platform_day(client, today, days=2)),
        )

    live = answers()
    track(client, yesterday, today)
    tracked = answers()

    expected = (expected_today, expected_yesterday, expected_yesterday, expected_today)
    assert live == expected
    assert tracked == expected
    assert db.execute(
        "SELECT users_total, users_active, users_new, agents_total, agents_active, agents_new "
        "FROM analytics.platform_metrics WHERE period_type = 'day' AND period_start = %s",
        (yesterday,),
    ).fetchone() == (1, 1, 1, 1, 1, 1)


def test_a_total_is_never_below_the_actives(client: TestClient) -> None:
    today = utc_today()
    first = today - timedelta(days=5)
    rng = random.Random(13)
    events: list[dict[str, Any]] = []
    for n in range(300):
        when = at(first, rng.uniform(0, 24 * 5))
        user, agent = f"u{rng.randrange(40)}", f"a{rng.randrange(15)}"
        kind = rng.choice(["page_view", "session_start", "user_signup", "agent_up", "agent_call"])
        if kind == "agent_call":
            events.append(
                {
                    "event_type": kind,
                    "agent_id": agent,
                    "user_id": user,
                    "success": True,
                    "duration_ms": 3,
                    "timestamp": when,
                }
            )
        elif kind == "agent_up":
            events.append({"event_type": kind, "agent_id": agent, "timestamp": when})
        else:
            events.append({"event_type": kind, "user_id": user, "timestamp": when})
        if n % 7 == 0:  # some signups and registrations come after the entity's first events
            events.append({"event_type": "agent_registered", "agent_id": agent, "timestamp": when})
    post(client, events)

    def check(period_type: str) -> None:
        trends = client.get(
            "/api/v1/analytics/platform/trends", params={"days": 6, "period_type": period_type}
        ).json()["periods"]
        for before, period in itertools.pairwise(trends):
            for kind in ("users", "agents"):
                total, active, new = (period[f"{kind}_{f}"] for f in ("total", "active", "new"))
                assert total >= active >= new, (period_type, period)
                assert total == before[f"{kind}_total"] + new, (period_type, period)
        assert trends[-1]["users_total"] == len({e["user_id"] for e in events if "user_id" in e})
        assert trends[-1]["agents_total"] == len({e["agent_id"] for e in events if "agent_id" in e})

    check("day")
    check("hour")
    track(client, first - timedelta(days=1), today)
    track(client, first - timedelta(days=1), today, "hour")
    check("day")
    check("hour")


def test_a_late_event_for_a_new_user_raises_the_later_totals(
    client: TestClient, db: psycopg.Connection[Any], db_url: str
) -> None:
    d1, d2, d3 = (utc_today() - timedelta(days=n) for n in (4, 3, 2))
    post(
        client,
        [
            *[
                {"event_type": "page_view", "user_id": "u1", "timestamp": at(d, 12)}
                for d in (d1, d2, d3)
            ],
            {"event_type": "agent_up", "agent_id": "a1", "timestamp": at(d1, 12)},
        ],
    )
    track_invalidated(db_url)
    assert entity_figures(platform_day(client, d3)) == (1, 1, 0, 1, 0, 0)

    # Late, and no signup, registration or contract event among them: u9 and a9 first seen
    # on d1, u1 seen again on d1 (no news). Only d1 and d2 (churn) depend on d1's events as such.
    post(
        client,
        [
            {"event_type": "page_view", "user_id": "u9", "timestamp": at(d1, 1)},
            {"event_type": "agent_down", "agent_id": "a9", "timestamp": at(d1, 2)},
            {"event_type": "page_view", "user_id": "u1", "timestamp": at(d1, 13)},
        ],
    )

    assert entity_figures(platform_day(client, d3)) == (2, 1, 0, 2, 0, 0)  # at once, from raw
    track_invalidated(db_url)
    assert entity_figures(platform_day(client, d3)) == (2, 1, 0, 2, 0, 0)
    assert db.execute(
        "SELECT period_start, users_total, users_new, agents_total, agents_new "
        "FROM analytics.platform_metrics WHERE period_type = 'day' AND period_start >= %s "
        "AND period_start <= %s ORDER BY 1",
        (d1, d3),
    ).fetchall() == [(d1, 2, 2, 2, 2), (d2, 2, 0, 2, 0), (d3, 2, 0, 2, 0)]
    assert untracked_closed_periods(db) == 0


def test_refreshing_the_entities_seen_after_deleting_events(
    client: TestClient, db: psycopg.Connection[Any], db_url: str
) -> None:
    d1, d2 = utc_today() - timedelta(days=3), utc_today() - timedelta(days=2)
    post(
        client,
        [
            {"event_type": "page_view", "user_id": "u1", "timestamp": at(d1, 1)},
            {"event_type": "user_signup", "user_id": "u2", "timestamp": at(d1, 2)},
            {"event_type": "page_view", "user_id": "u2", "timestamp": at(d2, 3)},
        ],
    )
    track_invalidated(db_url)
    assert platform_day(client, d2)["users_total"] == 2
    db.execute("DELETE FROM analytics.platform_events WHERE user_id = 'u1'")
    db.execute("DELETE FROM analytics.platform_events WHERE event_type = 'user_signup'")

    assert db.execute("SELECT analytics.refresh_entities_seen()").fetchone() == (2,)
    assert db.execute("SELECT analytics.refresh_entities_seen()").fetchone() == (0,)
    track_invalidated(db_url)

    assert db.execute(
        "SELECT user_id, first_seen, signed_up_at FROM analytics.users_seen"
    ).fetchall() == [("u2", d2 + timedelta(hours=3), None)]
    assert db.execute(
        "SELECT period_start, users_total, users_new FROM analytics.platform_metrics "
        "WHERE period_type = 'day' AND period_start IN (%s, %s) ORDER BY 1",
        (d1, d2),
    ).fetchall() == [(d1, 0, 0), (d2, 1, 1)]


def test_refresh_entities_counts_what_servers_on_the_old_version_stored(
    client: TestClient, db: psycopg.Connection[Any], db_url: str
) -> None:
    """During a rolling upgrade to migration 0012, servers still on the old version store
    events without keeping users_seen / agents_seen: `refresh-entities`, once every server
    runs the new version, counts them."""
    d1, d2 = utc_today() - timedelta(days=3), utc_today() - timedelta(days=2)
    post(client, [{"event_type": "page_view", "user_id": "u1", "timestamp": at(d1, 1)}])
    # As the old version stored a batch: its events and their hour, no entities seen.
    db.execute(
        "INSERT INTO analytics.platform_events (time, event_type, user_id, agent_id) "
        "VALUES (%s, 'page_view', 'old1', NULL), (%s, 'agent_up', NULL, 'old-a1')",
        (d1 + timedelta(hours=2), d1 + timedelta(hours=2)),
    )
    db.execute(
        "INSERT INTO _analytics.event_invalidations (hour, totals, states) "
        "VALUES (%s, false, true)",
        (d1 + timedelta(hours=2),),
    )
    track_invalidated(db_url)
    assert entity_figures(platform_day(client, d2)) == (1, 0, 0, 0, 0, 0)

    refreshed = jobs_cli("refresh-entities", url=db_url)
    again = jobs_cli("refresh-entities", url=db_url)
    track_invalidated(db_url)

    assert refreshed.returncode == 0, refreshed.stderr
    assert refreshed.stdout.strip() == "2 user(s) and agent(s) added, changed or removed"
    assert again.stdout.strip() == "0 user(s) and agent(s) added, changed or removed"
    assert entity_figures(platform_day(client, d1)) == (2, 2, 2, 1, 1, 1)
    assert entity_figures(platform_day(client, d2)) == (2, 0, 0, 1, 0, 0)
    assert untracked_closed_periods(db) == 0
    assert db.execute(
        "SELECT users_total, users_new, agents_total, agents_new FROM analytics.platform_metrics "
        "WHERE period_type = 'day' AND period_start = %s",
        (d1,),
    ).fetchone() == (2, 2, 1, 1)
