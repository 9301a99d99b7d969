"""Liveness and readiness, for load balancers and orchestrators."""

from __future__ import annotations

import asyncpg
from starlette.requests import Request

import sql
from core.db import connection
from core.errors import DatabaseUnavailable
from core.http import JSON
from sql.migrate import pending


async def healthz(request: Request) -> JSON:
    """The process is up and serving HTTP. Never touches the database."""
    return JSON({"status": "ok"})


async def readyz(request: Request) -> JSON:
    """The database answers and every migration this build ships is applied: answered within
    READY_S (core/deadlines.py) whatever the database does."""
    state = request.app.state
    try:
        async with connection(state.pool) as conn:
            applied = [row["version"] for row in await conn.fetch(sql.query("applied_migrations"))]
    except asyncpg.UndefinedTableError:
        return JSON({"status": "not_ready", "reason": "the schema has not been migrated"}, 503)
    except (
        DatabaseUnavailable,
        OSError,
        TimeoutError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
    ):
        return JSON(
            {"status": "not_ready", "reason": "the database cannot be reached"},
            503,
            headers={"Retry-After": "5"},
        )
    missing = pending(applied, state.migrations)
    if missing:
        return JSON(
            {"status": "not_ready", "reason": f"migrations not applied: {', '.join(missing)}"}, 503
        )
    return JSON({"status": "ready", "timescaledb": state.timescaledb})
