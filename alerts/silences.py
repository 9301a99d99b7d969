"""Silences: while one is in force, the incidents it covers notify nobody."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import asyncpg
import msgspec
from starlette.requests import Request
from starlette.responses import Response

import sql
from alerts.rules import BODY_LIMIT
from core.db import connection
from core.errors import NotFound, ValidationFailed
from core.http import JSON, json_body


class SilenceIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    rule_id: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)] | None = None
    matchers: dict[str, str] = {}
    starts_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    ends_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    duration_seconds: Annotated[int, msgspec.Meta(ge=1, le=366 * 86400)] | None = None
    created_by: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    comment: Annotated[str, msgspec.Meta(max_length=4000)] | None = None


_silence = msgspec.json.Decoder(SilenceIn)


def present(row: asyncpg.Record) -> dict[str, Any]:
    body = dict(row)
    body["matchers"] = msgspec.json.decode(row["matchers"])
    return body


async def create(request: Request) -> JSON:
    silence: SilenceIn = await json_body(request, _silence, BODY_LIMIT)
    if silence.rule_id is None and not silence.matchers:
        raise ValidationFailed.of("rule_id", "name a rule_id or give matchers")
    if (silence.ends_at is None) == (silence.duration_seconds is None):
        raise ValidationFailed.of("ends_at", "give ends_at or duration_seconds, one of them")
    starts = silence.starts_at or datetime.now(UTC)
    try:
        ends = silence.ends_at or starts + timedelta(seconds=silence.duration_seconds or 0)
    except OverflowError:
        raise ValidationFailed.of("duration_seconds", "ends past the year 9999") from None
    if ends <= starts:
        raise ValidationFailed.of("ends_at", "must be later than starts_at")
    async with connection(request.app.state.pool) as conn:
        if silence.rule_id is not None and not await conn.fetchval(
            sql.query("rule_exists"), silence.rule_id
        ):
            raise ValidationFailed.of("rule_id", f"no alert rule with id {silence.rule_id}")
        new_id = await conn.fetchval(
            sql.query("silence_insert"),
            silence.rule_id,
            msgspec.json.encode(silence.matchers).decode(),
            starts,
            ends,
            silence.created_by,
            silence.comment,
        )
        rows = await conn.fetch(sql.query("silences_select"), True)
    return JSON(next(present(r) for r in rows if r["id"] == new_id), status_code=201)


async def listing(request: Request) -> JSON:
    """Silences in force or still to come; ?all=true adds the ended ones."""
    everything = request.query_params.get("all", "false").lower() in ("true", "1")
    async with connection(request.app.state.pool) as conn:
        rows = await conn.fetch(sql.query("silences_select"), everything)
    return JSON({"silences": [present(row) for row in rows]})


async def remove(request: Request) -> Response:
    raw = request.path_params["silence_id"]
    if not (raw.isascii() and raw.isdigit()) or int(raw) > 2**31 - 1:
        raise NotFound(f"No silence with id {raw!r}.")
    async with connection(request.app.state.pool) as conn:
        if await conn.fetchval(sql.query("silence_delete"), int(raw)) is None:
            raise NotFound(f"No silence with id {raw}.")
    return Response(status_code=204)
