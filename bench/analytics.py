"""Analytics benchmark: user, agent and platform analytics, batch tracking and the dashboard.

Loads EVENTS platform events over 30 days for USERS users and AGENTS agents (binary COPY,
streamed from a generator), tracks yesterday through POST /batch-track (timed) and the rest
of the dashboard's week with the track job's code, then times through the HTTP API:

- one user's and one agent's analytics for a day, and their 30-day trends;
- the dashboard (7 days), as served (the open day reused for DASHBOARD_CACHE_S) and from a
  second server computing the open day on every request (DASHBOARD_CACHE_S=0);

against the same figures straight from SQL on raw events (the functions the API uses, and for
the dashboard the 7 platform days computed from raw), in the same run.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx2

from bench import HEADERS
from bench.queries import _summary
from core.periods import period_bounds, previous_start, spanning
from ingest.events import COLUMNS
from jobs.track import batch_track

DAYS = 30
USERS = 100_000
AGENTS = 1_000

# Event types and their share of the stream (signups and registrations come on top: one per
# user and agent).
MIX = {
    "page_view": 30,
    "user_action": 12,
    "session_start": 5,
    "active_time": 4,
    "api_call": 15,
    "agent_call": 12,
    "credits_spent": 4,
    "credits_purchased": 1,
    "contract_created": 2,
    "bid_placed": 4,
    "contract_won": 1,
    "contract_completed": 1.5,
    "contract_cancelled": 0.2,
    "contract_failed": 0.3,
    "payment": 1.5,
    "validation_score": 1,
    "reputation_score": 0.5,
    "orchestration_run": 1,
    "agent_up": 0.3,
    "agent_down": 0.3,
    "fraud_alert": 0.05,
    "security_event": 0.05,
}
USER_TYPES = {
    "page_view",
    "user_action",
    "session_start",
    "active_time",
    "api_call",
    "agent_call",
    "credits_spent",
    "credits_purchased",
    "contract_created",
    "contract_completed",
    "contract_cancelled",
    "payment",
    "orchestration_run",
}
AGENT_TYPES = {
    "agent_call",
    "credits_spent",
    "bid_placed",
    "contract_won",
    "contract_completed",
    "contract_failed",
    "payment",
    "validation_score",
    "reputation_score",
    "agent_up",
    "agent_down",
}


def _events(count: int, end: datetime) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(7)
    start = end - timedelta(days=DAYS)
    users = [f"user_{i}" for i in range(USERS)]
    agents = [f"agent_{i}" for i in range(AGENTS)]
    types, weights = list(MIX), list(MIX.values())
    signups = sorted(rng.random() for _ in range(USERS))
    registrations = sorted(rng.random() for _ in range(AGENTS))
    step = (end - start) / count
    chunk = 10_000
    s = r = 0
    for base in range(0, count, chunk):
        n = min(chunk, count - base)
        kinds = rng.choices(types, weights, k=n)
        who = rng.choices(users, k=n)
        what = rng.choices(agents, k=n)
        for i in range(n):
            when = start + step * (base + i)
            # Signups and registrations interleaved in time, spread over the 30 days.
            while s < USERS and signups[s] * DAYS <= (base + i) / count * DAYS:
                yield (when, "user_signup", users[s], *([None] * 10))
                s += 1
            while r < AGENTS and registrations[r] * DAYS <= (base + i) / count * DAYS:
                yield (when, "agent_registered", None, agents[r], *([None] * 9))
                r += 1
            kind = kinds[i]
            user = who[i] if kind in USER_TYPES else None
            agent = what[i] if kind in AGENT_TYPES else None
            amount = fee = duration = value = None
            success = endpoint = method = status = contract = None
            if kind in ("credits_spent", "credits_purchased", "bid_placed"):
                amount = rng.uniform(1, 100)
            elif kind == "payment":
                amount = rng.uniform(10, 500)
                fee = amount * 0.15
            elif kind == "agent_call":
                success = rng.random() < 0.97
                duration = rng.lognormvariate(5, 0.6)
            elif kind == "api_call":
                endpoint, method = "/api/v1/contracts", "GET"
                status = 500 if rng.random() < 0.01 else 200
                duration = rng.lognormvariate(4, 0.5)
            elif kind in ("validation_score", "reputation_score", "active_time"):
                value = rng.uniform(0, 100)
            elif kind == "orchestration_run":
                value, duration = float(rng.randint(2, 8)), rng.lognormvariate(7, 0.4)
            if kind.startswith("contract") or kind in ("bid_placed", "payment"):
                contract = f"c{rng.randrange(count // 50)}"
            yield (
                when,
                kind,
                user,
                agent,
                contract,
                amount,
                fee,
                duration,
                success,
                value,
                endpoint,
                method,
                status,
            )


async def load(url: str, count: int, end: datetime) -> float:
    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        await conn.copy_records_to_table(
            "platform_events", schema_name="analytics", columns=COLUMNS, records=_events(count, end)
        )
        elapsed = time.perf_counter() - started
        # The COPY went around the ingest path, which keeps the entities seen.
        await conn.execute("SELECT analytics.refresh_entities_seen()")
        await conn.execute(
            "ANALYZE analytics.platform_events, analytics.users_seen, analytics.agents_seen"
        )
        return elapsed
    finally:
        await conn.close()


async def _time_paths(base: str, paths: list[tuple[str, dict[str, str]]]) -> dict[str, float]:
    latencies = []
    async with httpx2.AsyncClient(base_url=base, timeout=120, headers=HEADERS) as client:
        for path, params in paths:
            started = time.perf_counter()
            response = await client.get(path, params=params)
            latencies.append(time.perf_counter() - started)
            response.raise_for_status()
    return _summary(latencies)


async def _time_sql_each(url: str, statements: list[tuple[str, tuple[Any, ...]]]) -> dict:
    conn = await asyncpg.connect(url)
    try:
        latencies = []
        for query, args in statements:
            started = time.perf_counter()
            await conn.fetch(query, *args)
            latencies.append(time.perf_counter() - started)
        return _summary(latencies)
    finally:
        await conn.close()


async def measure(url: str, base: str, uncached: str, now: datetime, repeat: int) -> dict[str, Any]:
    rng = random.Random(3)
    day_start, day_end = period_bounds("day", now - timedelta(days=2))
    day = {"period_type": "day", "period_start": day_start.isoformat()}
    users = [f"user_{rng.randrange(USERS)}" for _ in range(repeat)]
    agents = [f"agent_{rng.randrange(AGENTS)}" for _ in range(repeat)]
    results: dict[str, Any] = {}

    async def case(
        name: str, api_paths: list[tuple[str, dict[str, str]]], raw: list, server: str = base
    ) -> None:
        api = await _time_paths(server, api_paths)
        direct = await _time_sql_each(url, raw)
        results[name] = {
            "api": api,
            "raw_sql": direct,
            "api_to_sql_p95": api["p95_ms"] / direct["p95_ms"],
        }
        print(
            f"    {name:<22} API p50 {api['p50_ms']:7.1f} ms  p95 {api['p95_ms']:7.1f} ms"
            f"   SQL on raw p50 {direct['p50_ms']:8.1f} ms  p95 {direct['p95_ms']:8.1f} ms",
            flush=True,
        )

    until = min(day_end, now)
    await case(
        "user_day",
        [(f"/api/v1/analytics/user/{u}", day) for u in users],
        [
            (
                "SELECT * FROM analytics.user_figures($2, $3) WHERE user_id = $1",
                (u, day_start, day_end),
            )
            for u in users
        ],
    )
    await case(
        "agent_day",
        [(f"/api/v1/analytics/agent/{a}", day) for a in agents],
        [
            (
                "SELECT * FROM analytics.agent_figures($2, $3, $4) WHERE agent_id = $1",
                (a, day_start, day_end, until),
            )
            for a in agents
        ],
    )
    month = spanning("day", now - timedelta(days=DAYS), now)
    await case(
        "user_trends_30d",
        [(f"/api/v1/analytics/user/{u}/trends", {"days": "30"}) for u in users],
        [
            (
                "SELECT s.lo, f.* FROM unnest($2::timestamptz[], $3::timestamptz[]) s (lo, hi) "
                "CROSS JOIN LATERAL analytics.user_figures(s.lo, s.hi) f WHERE f.user_id = $1",
                (u, [lo for lo, _ in month], [hi for _, hi in month]),
            )
            for u in users
        ],
    )
    week = spanning("day", now - timedelta(days=6), now)
    platform_raw = (
        "SELECT * FROM unnest($1::timestamptz[], $2::timestamptz[], $3::timestamptz[]) "
        "s (lo, hi, before) CROSS JOIN LATERAL analytics.platform_figures(s.lo, s.hi, s.before)"
    )
    raw_week = [
        (
            platform_raw,
            (
                [lo for lo, _ in week],
                [hi for _, hi in week],
                [previous_start("day", lo) for lo, _ in week],
            ),
        )
        for _ in range(3)
    ]
    await case(
        "dashboard_7d",
        [("/api/v1/analytics/dashboard", {"days": "7"}) for _ in range(repeat)],
        raw_week,
    )
    await case(
        "dashboard_7d_uncached",
        [("/api/v1/analytics/dashboard", {"days": "7"}) for _ in range(max(5, repeat // 5))],
        raw_week,
        server=uncached,
    )
    return results


def run(url: str, base: str, uncached: str, events: int, repeat: int = 50) -> dict[str, Any]:
    now = datetime.now(UTC)
    print(
        f"loading {events:,} platform events over {DAYS} days, {USERS:,} users, "
        f"{AGENTS:,} agents (binary COPY) ...",
        flush=True,
    )
    load_s = asyncio.run(load(url, events, now))
    print(f"    {events / load_s:,.0f} events/s", flush=True)
    yesterday = period_bounds("day", now - timedelta(days=1))
    print("batch-track yesterday, every user, agent and the platform (POST /batch-track) ...")
    started = time.perf_counter()
    response = httpx2.post(
        f"{base}/api/v1/analytics/batch-track",
        json={
            "period_start": yesterday[0].isoformat(),
            "period_end": yesterday[1].isoformat(),
            "period_type": "day",
        },
        timeout=600,
        headers=HEADERS,
    )
    track_day_s = time.perf_counter() - started
    response.raise_for_status()
    tracked = response.json()
    print(
        f"    {track_day_s:.1f} s: {tracked['users']:,} users, {tracked['agents']:,} agents, "
        f"{tracked['platform']} platform row",
        flush=True,
    )
    print("tracking the 5 days before it (the dashboard's week) ...", flush=True)
    started = time.perf_counter()
    batch_track(url, "day", yesterday[0] - timedelta(days=5), yesterday[0])
    week_s = time.perf_counter() - started
    print(f"    {week_s:.1f} s", flush=True)
    print(f"querying ({repeat} API calls each) ...", flush=True)
    figures = asyncio.run(measure(url, base, uncached, now, repeat))
    return {
        "events": events,
        "users": USERS,
        "agents": AGENTS,
        "load_events_per_s": events / load_s,
        "batch_track_day_s": track_day_s,
        "batch_track_day": tracked,
        "track_5_days_s": week_s,
        **figures,
    }
