from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.support import MONDAY, TUESDAY, at, post, user_week, utc_today


def test_user_figures_for_a_day_and_a_week(client: TestClient) -> None:
    user_week(client)

    day = client.get(
        "/api/v1/analytics/user/u1", params={"period_type": "day", "period_start": at(MONDAY, 15)}
    ).json()
    week = client.get(
        "/api/v1/analytics/user/u1", params={"period_type": "week", "period_start": at(TUESDAY, 3)}
    ).json()

    assert day["period_start"] == MONDAY.isoformat().replace("+00:00", "Z")
    assert {
        k: day[k]
        for k in (
            "sessions",
            "page_views",
            "actions",
            "active_time_seconds",
            "contracts_created",
            "credits_purchased",
            "credits_spent",
            "agents_used",
            "orchestrations_run",
            "total_spent",
        )
    } == {
        "sessions": 2,
        "page_views": 3,
        "actions": 1,
        "active_time_seconds": 120,
        "contracts_created": 1,
        "credits_purchased": 100,
        "credits_spent": 30,
        "agents_used": 1,
        "orchestrations_run": 1,
        "total_spent": 40,
    }
    assert (
        week["sessions"],
        week["credits_spent"],
        week["contracts_cancelled"],
        week["total_spent"],
    ) == (3, 50, 1, 65)
    # Tuesday alone names two agents (a1, a2), Monday one; the week has two, not three.
    assert week["agents_used"] == 2


def test_agent_figures_with_time_weighted_uptime(client: TestClient) -> None:
    a = {"agent_id": "a9"}
    post(
        client,
        [
            {"event_type": "agent_up", **a, "timestamp": at(MONDAY, 0)},
            {"event_type": "agent_down", **a, "timestamp": at(MONDAY, 12)},
            {"event_type": "agent_up", **a, "timestamp": at(MONDAY, 18)},
            *[
                {
                    "event_type": "agent_call",
                    **a,
                    "success": ok,
                    "duration_ms": ms,
                    "timestamp": at(MONDAY, 1),
                }
                for ok, ms in ((True, 100), (True, 200), (True, 300), (False, 400))
            ],
            {
                "event_type": "bid_placed",
                **a,
                "contract_id": "c1",
                "amount": 10,
                "timestamp": at(MONDAY, 2),
            },
            {
                "event_type": "bid_placed",
                **a,
                "contract_id": "c2",
                "amount": 30,
                "timestamp": at(MONDAY, 2),
            },
            {"event_type": "contract_won", **a, "contract_id": "c1", "timestamp": at(MONDAY, 3)},
            {
                "event_type": "contract_completed",
                **a,
                "contract_id": "c1",
                "timestamp": at(MONDAY, 4),
            },
            {"event_type": "contract_failed", **a, "contract_id": "c2", "timestamp": at(MONDAY, 5)},
            {"event_type": "payment", **a, "amount": 500, "fee": 50, "timestamp": at(MONDAY, 4)},
            {"event_type": "validation_score", **a, "value": 0.8, "timestamp": at(MONDAY, 6)},
            {"event_type": "validation_score", **a, "value": 0.6, "timestamp": at(MONDAY, 7)},
            {"event_type": "reputation_score", **a, "value": 4.5, "timestamp": at(MONDAY, 7)},
        ],
    )

    monday = client.get(
        "/api/v1/analytics/agent/a9",
        params={"period_type": "day", "period_start": MONDAY.isoformat()},
    ).json()
    tuesday = client.get(
        "/api/v1/analytics/agent/a9",
        params={"period_type": "day", "period_start": TUESDAY.isoformat()},
    ).json()

    assert (monday["calls_total"], monday["calls_successful"], monday["calls_failed"]) == (4, 3, 1)
    assert monday["success_rate"] == 0.75
    assert monday["response_time_avg_ms"] == 250
    assert (monday["response_time_p50_ms"], monday["response_time_p99_ms"]) == (200, 400)
    assert (monday["bids_placed"], monday["average_bid_price"]) == (2, 20)
    assert (monday["contracts_won"], monday["contracts_completed"], monday["contracts_failed"]) == (
        1,
        1,
        1,
    )
    assert monday["revenue"] == 500
    assert monday["validation_score"] == pytest.approx(0.7)
    assert monday["reputation_score"] == 4.5
    assert monday["uptime_percentage"] == pytest.approx(75.0)  # up 12 h + 6 h, down 6 h
    assert monday["downtime_percentage"] == pytest.approx(25.0)
    assert tuesday["uptime_percentage"] == pytest.approx(100.0)  # up since Monday 18:00
    assert tuesday["calls_total"] == 0 and tuesday["success_rate"] is None


def test_months_are_calendar_months(client: TestClient) -> None:
    first = utc_today().replace(day=1)
    post(
        client,
        [
            {"event_type": "page_view", "user_id": "u2", "timestamp": at(first, 1 / 60)},
            {
                "event_type": "page_view",
                "user_id": "u2",
                "timestamp": (first - timedelta(minutes=1)).isoformat(),
            },
        ],
    )

    month = client.get("/api/v1/analytics/user/u2", params={"period_type": "month"}).json()

    assert month["period_start"] == first.isoformat().replace("+00:00", "Z")
    assert month["page_views"] == 1


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/api/v1/analytics/user/nobody", {}, 404),
        ("/api/v1/analytics/agent/nobody", {}, 404),
        ("/api/v1/analytics/user/u1", {"period_type": "fortnight"}, 400),
        ("/api/v1/analytics/user/u1", {"period_start": "last tuesday"}, 400),
    ],
)
def test_unknown_entities_and_bad_parameters(
    client: TestClient, path: str, params: dict[str, str], status: int
) -> None:
    post(client, [{"event_type": "page_view", "user_id": "u1"}])

    assert client.get(path, params=params).status_code == status


def test_trends_list_every_period_oldest_first(client: TestClient) -> None:
    user_week(client)

    days = client.get("/api/v1/analytics/user/u1/trends", params={"days": 30}).json()
    weeks = client.get(
        "/api/v1/analytics/user/u1/trends", params={"days": 30, "period_type": "week"}
    ).json()
    agent = client.get("/api/v1/analytics/agent/a1/trends", params={"days": 30}).json()
    too_many = client.get(
        "/api/v1/analytics/user/u1/trends", params={"days": 30, "period_type": "hour"}
    )

    starts = [p["period_start"] for p in days["periods"]]
    assert starts == sorted(starts) and len(starts) == 31
    by_start = {p["period_start"]: p for p in days["periods"]}
    monday = by_start[MONDAY.isoformat().replace("+00:00", "Z")]
    assert (monday["sessions"], monday["agents_used"]) == (2, 1)
    assert sum(p["sessions"] for p in days["periods"]) == 3
    assert sum(p["sessions"] for p in weeks["periods"]) == 3
    assert max(p["agents_used"] for p in weeks["periods"]) == 2
    assert sum(p["calls_total"] for p in agent["periods"]) == 2
    assert too_many.status_code == 400 and too_many.json()["details"][0]["field"] == "days"


def test_platform_figures_per_day(client: TestClient) -> None:
    d1 = utc_today() - timedelta(days=10)
    d2 = d1 + timedelta(days=1)
    post(
        client,
        [
            {"event_type": "user_signup", "user_id": "u1", "timestamp": at(d1, 1)},
            {"event_type": "user_signup", "user_id": "u2", "timestamp": at(d1, 1)},
            *[
                {"event_type": "page_view", "user_id": u, "timestamp": at(d1, 2)}
                for u in ("u1", "u2", "u3")
            ],
            {"event_type": "agent_registered", "agent_id": "a1", "timestamp": at(d1, 3)},
            {
                "event_type": "contract_created",
                "user_id": "u1",
                "contract_id": "c1",
                "timestamp": at(d1, 4),
            },
            {
                "event_type": "contract_created",
                "user_id": "u2",
                "contract_id": "c2",
                "timestamp": at(d1, 4),
            },
            {"event_type": "payment", "amount": 100, "fee": 10, "timestamp": at(d1, 5)},
            {
                "event_type": "credits_purchased",
                "user_id": "u1",
                "amount": 50,
                "timestamp": at(d1, 5),
            },
            {
                "event_type": "api_call",
                "endpoint": "/a",
                "method": "GET",
                "status": 200,
                "duration_ms": 100,
                "timestamp": at(d1, 6),
            },
            {
                "event_type": "api_call",
                "endpoint": "/a",
                "method": "GET",
                "status": 500,
                "duration_ms": 300,
                "timestamp": at(d1, 6),
            },
            {"event_type": "fraud_alert", "timestamp": at(d1, 7)},
            {"event_type": "page_view", "user_id": "u1", "timestamp": at(d2, 1)},
            {"event_type": "user_signup", "user_id": "u4", "timestamp": at(d2, 1)},
            {
                "event_type": "contract_completed",
                "user_id": "u1",
                "contract_id": "c1",
                "timestamp": at(d2, 2),
            },
            {
                "event_type": "contract_failed",
                "agent_id": "a1",
                "contract_id": "c2",
                "timestamp": at(d2, 2),
            },
            {
                "event_type": "orchestration_run",
                "user_id": "u1",
                "value": 2,
                "duration_ms": 50,
                "timestamp": at(d2, 3),
            },
            {"event_type": "security_event", "timestamp": at(d2, 4)},
        ],
    )

    trends = client.get("/api/v1/analytics/platform/trends", params={"days": 12}).json()

    by_day = {p["period_start"]: p for p in trends["periods"]}
    first = by_day[d1.isoformat().replace("+00:00", "Z")]
    second = by_day[d2.isoformat().replace("+00:00", "Z")]
    keys = (
        "users_total",
        "users_active",
        "users_new",
        "users_churned",
        "agents_total",
        "agents_active",
        "agents_new",
        "contracts_total",
        "contracts_active",
        "contracts_completed",
        "contracts_failed",
        "revenue",
        "platform_fees",
        "credits_purchased",
        "api_calls",
        "orchestrations",
        "fraud_alerts",
        "security_events",
    )
    # u3 never signed up: seen, so counted in the total and new on its first day.
    assert [first[k] for k in keys] == [3, 3, 3, 0, 1, 1, 1, 2, 2, 0, 0, 100, 10, 50, 2, 0, 1, 0]
    assert [second[k] for k in keys] == [4, 2, 1, 2, 1, 1, 0, 2, 0, 1, 1, 0, 0, 0, 0, 1, 0, 1]
    assert (first["response_time_avg_ms"], first["error_rate"]) == (200, 0.5)
    assert first["throughput_per_s"] == pytest.approx(2 / 86400)
    assert second["error_rate"] is None


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", ()) for node in plan_nodes(child))]


def test_platform_totals_read_the_first_seen_indexes(client: TestClient, db: Any) -> None:
    """A user or agent total is an index range over users_seen / agents_seen, not a pass over
    every event before the period."""
    today = utc_today()
    first = today - timedelta(days=30)
    post(
        client,
        [
            {
                "event_type": "agent_call",
                "user_id": f"u{n}",
                "agent_id": f"a{n}",
                "success": True,
                "duration_ms": 1,
                "timestamp": at(first, n * 30 * 24 / 20_000),
            }
            for n in range(20_000)
        ],
    )
    db.execute("VACUUM ANALYZE analytics.users_seen, analytics.agents_seen")
    day = today - timedelta(days=27)

    (plan,) = db.execute(
        "EXPLAIN (FORMAT JSON) SELECT * FROM analytics.platform_figures(%s, %s, %s)",
        (day, day + timedelta(days=1), day - timedelta(days=1)),
    ).fetchone()

    nodes = plan_nodes(plan[0]["Plan"])
    indexes = {node["Index Name"] for node in nodes if "Index Name" in node}
    assert {"users_seen_first_seen_idx", "agents_seen_first_seen_idx"} <= indexes
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan" and "_seen" in n["Relation Name"]]
    # The events are read over the period and the one before (active, churned, the period's
    # sums); only contract totals still read the events before them.
    # (A bitmap heap scan, as the Community edition plans some, states its range as the
    # recheck of its index scan's condition; and that edition drops the condition of a chunk
    # lying wholly inside the range read, which is bounded by the chunk itself.)
    inside = {
        name
        for (name,) in db.execute(
            "SELECT chunk_name FROM timescaledb_information.chunks "
            "WHERE hypertable_name = 'platform_events' AND range_start >= %s AND range_end <= %s",
            (day - timedelta(days=1), day + timedelta(days=1)),
        ).fetchall()
    }
    for node in nodes:
        relation = node.get("Relation Name", "")
        if relation.startswith(("_hyper_", "platform_events")) and relation not in inside:
            condition = "".join(node.get(k, "") for k in ("Index Cond", "Recheck Cond", "Filter"))
            assert '"time" >=' in condition or "contract" in condition, node
