"""Work shared by concurrent requests (the API-key reload, the dashboard's open period) has a
budget of its own: the first request's running out does not cut it short for the others,
which still wait only within their own budgets.

The database is a stand-in whose query takes half a second and fails at once when its
connection is terminated, as a pooled connection does at a deadline.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg

from auth.keys import digest
from auth.table import KeyTable
from core import db
from core.errors import DatabaseTimeout
from query.entities import LiveFigures

KEY = "ak_" + "k" * 43
QUERY_S = 0.5


class SlowConnection:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.terminated = asyncio.Event()

    def terminate(self) -> None:
        self.terminated.set()

    async def fetch(self, *_: Any) -> list[dict[str, Any]]:
        ended = asyncio.ensure_future(self.terminated.wait())
        try:
            await asyncio.wait([ended], timeout=QUERY_S)
        finally:
            ended.cancel()
        if self.terminated.is_set():
            raise asyncpg.InterfaceError("connection terminated")
        return self.rows


class SlowPool:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    async def acquire(self, **_: float) -> SlowConnection:  # asyncpg.Pool.acquire(timeout=)
        return SlowConnection(self.rows)

    async def release(self, conn: SlowConnection, **_: float) -> None:
        pass


async def within(seconds: float, work: Any) -> Any:
    """`work` as a request with a database budget of `seconds`."""
    db.budget.set(db.Budget(seconds))
    return await work()


async def first_then_second(work: Any) -> tuple[Any, Any]:
    """A request with almost no budget starts the shared work, one with plenty joins it."""
    first = asyncio.create_task(within(0.05, work))
    await asyncio.sleep(0)
    second = asyncio.create_task(within(10, work))
    return await first, await second


def test_a_key_reload_outlives_the_budget_of_the_request_that_started_it() -> None:
    pool = SlowPool([{"key_sha256": digest(KEY), "scopes": ["read"]}])

    async def scenario() -> tuple[Any, Any]:
        table = KeyTable(ttl=60)
        return await first_then_second(lambda: table.scopes(pool, KEY))

    first, second = asyncio.run(scenario())
    assert first is None  # its budget ended before the reload did: the table it had says no
    assert second == frozenset({"read"})


def test_shared_dashboard_figures_outlive_the_budget_of_the_request_that_started_them() -> None:
    pool = SlowPool([{"users_total": 7}])

    async def compute() -> dict[str, Any]:
        async with db.connection(pool) as conn:  # type: ignore[arg-type]
            rows = await conn.fetch()
        return dict(rows[0])

    async def scenario(live: LiveFigures) -> tuple[Any, Any]:
        async def request() -> Any:
            try:
                return await live.get(("day", datetime(2026, 12, 1, tzinfo=UTC)), compute)
            except DatabaseTimeout:
                return "503"

        return await first_then_second(request)

    assert asyncio.run(scenario(LiveFigures(ttl=10, bound_s=5))) == ("503", {"users_total": 7})
    # The shared computation is bounded all the same: by its own budget.
    assert asyncio.run(scenario(LiveFigures(ttl=10, bound_s=0.1))) == ("503", "503")
