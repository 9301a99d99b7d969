"""Incidents: list, one with its timeline, acknowledge and resolve (409 on illegal moves)."""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
import msgspec
from starlette.requests import Request

import sql
from alerts import EVALUATION_LOCK
from alerts.rules import BODY_LIMIT
from core.db import connection
from core.errors import Conflict, NotFound, field_error
from core.http import JSON, decode, read_body
from core.params import bad, timestamp

STATUSES = ("open", "acknowledged", "resolved")
SEVERITIES = ("info", "warning", "error", "critical")


class Action(msgspec.Struct, forbid_unknown_fields=True):
    who: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    note: Annotated[str, msgspec.Meta(max_length=4000)] | None = None


_action = msgspec.json.Decoder(Action)


def incident_id(request: Request) -> int:
    raw = request.path_params["incident_id"]
    if not (raw.isascii() and raw.isdigit()) or int(raw) > 2**63 - 1:
        raise NotFound(f"No incident with id {raw!r}.")
    return int(raw)


async def select(conn: asyncpg.Connection, **where: Any) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        sql.query("incidents_select"),
        where.get("status"),
        where.get("severity"),
        where.get("since"),
        where.get("id"),
        where.get("limit", 500),
    )
    return [dict(row) for row in rows]


async def listing(request: Request) -> JSON:
    """GET /alerts/incidents?status=&severity=&since=: open and acknowledged by default."""
    query = request.query_params
    status, severity = query.get("status"), query.get("severity")
    if status is not None and status not in STATUSES:
        raise bad("status", f"expected one of {', '.join(STATUSES)}")
    if severity is not None and severity not in SEVERITIES:
        raise bad("severity", f"expected one of {', '.join(SEVERITIES)}")
    since = timestamp(query, "since")
    async with connection(request.app.state.pool) as conn:
        found = await select(conn, status=status, severity=severity, since=since)
    return JSON({"incidents": found})


async def _one(conn: asyncpg.Connection, target: int) -> dict[str, Any]:
    found = await select(conn, id=target)
    if not found:
        raise NotFound(f"No incident with id {target}.")
    incident = found[0]
    incident["timeline"] = [
        dict(row) for row in await conn.fetch(sql.query("incident_timeline"), target)
    ]
    incident["deliveries"] = [
        {**dict(row), "attempts_log": msgspec.json.decode(row["attempts_log"])}
        for row in await conn.fetch(sql.query("incident_deliveries"), target)
    ]
    return incident


async def one(request: Request) -> JSON:
    async with connection(request.app.state.pool) as conn:
        return JSON(await _one(conn, incident_id(request)))


async def _move(request: Request, statement: str, kind: str) -> JSON:
    target = incident_id(request)
    action: Action = decode(await read_body(request, BODY_LIMIT), _action)
    async with connection(request.app.state.pool) as conn, conn.transaction():
        if statement == "incident_resolve":
            await conn.execute(sql.query("evaluation_lock"), EVALUATION_LOCK)
        args = (
            (target, action.who)
            if statement == "incident_acknowledge"
            else (target, action.who, action.note)
        )
        moved = await conn.fetchval(sql.query(statement), *args)
        if moved is None:
            status = await conn.fetchval(sql.query("incident_status"), target)
            if status is None:
                raise NotFound(f"No incident with id {target}.")
            raise Conflict(
                f"Incident {target} is {status}; it cannot be {kind}.",
                details=[field_error("status", f"current status: {status}")],
            )
        await conn.execute(
            sql.query("incident_event_insert"), target, kind, action.who, action.note, None
        )
        return JSON(await _one(conn, target))


async def acknowledge(request: Request) -> JSON:
    return await _move(request, "incident_acknowledge", "acknowledged")


async def resolve(request: Request) -> JSON:
    return await _move(request, "incident_resolve", "resolved")
