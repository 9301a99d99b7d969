"""GET /api/v1/analytics/jobs (the periodic jobs and their recent runs) and
POST /api/v1/analytics/batch-track."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Annotated, Literal

import msgspec
import psycopg
from starlette.requests import Request
from starlette.routing import Route

import sql
from alerts.rules import decode
from jobs import keys
from jobs.periodic import periodic_jobs
from jobs.track import batch_track
from query.params import bad
from service.db import connection
from service.errors import (
    Conflict,
    DatabaseUnavailable,
    NotFound,
    ValidationFailed,
    field_error,
)
from service.http import JSON, read_body, require_media_type
from service.periods import previous_start, spanning


async def job_runs(request: Request) -> JSON:
    job = request.query_params.get("job")
    raw_limit = request.query_params.get("limit", "50")
    if not (raw_limit.isascii() and raw_limit.isdigit()) or not 1 <= int(raw_limit) <= 1000:
        raise bad("limit", "expected a whole number from 1 to 1000")
    settings = request.app.state.settings
    async with connection(request.app.state.pool) as conn:
        rows = await conn.fetch(sql.query("job_runs_api"), job, int(raw_limit))
    return JSON(
        {
            "scheduler_in_this_process": settings.run_scheduler,
            "jobs": [
                {"name": j.name, "interval_s": j.interval.total_seconds()}
                for j in periodic_jobs(settings)
            ],
            "runs": [
                {
                    "id": row["id"],
                    "job": row["job"],
                    "started_at": row["started_at"],
                    "finished_at": row["finished_at"],
                    "duration_ms": float(row["duration_ms"])
                    if row["duration_ms"] is not None
                    else None,
                    "rows_affected": row["rows_affected"],
                    "outcome": row["outcome"],
                    "error": row["error"],
                    "detail": row["detail"],
                    "host": row["host"],
                    "pid": row["pid"],
                    "trigger": row["trigger"],
                }
                for row in rows
            ],
        }
    )


class BatchTrackIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    period_start: Annotated[datetime, msgspec.Meta(tz=True)]
    period_end: Annotated[datetime, msgspec.Meta(tz=True)]
    period_type: Literal["hour", "day", "week", "month"] = "day"


_batch_track = msgspec.json.Decoder(BatchTrackIn)
MAX_BATCH_PERIODS = 1_000
LONGEST = {
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
    "month": timedelta(days=31),
}


async def post_batch_track(request: Request) -> JSON:
    """Materialise user, agent and platform analytics for every closed period of the range
    (jobs/track.py); idempotent. Answers when done, with the rows per entity kind."""
    require_media_type(request, "application/json")
    wanted: BatchTrackIn = decode(await read_body(request, 4096), _batch_track)
    if wanted.period_end <= wanted.period_start:
        raise ValidationFailed.of("period_end", "must be later than period_start")
    try:
        # At least this many periods: past the limit without walking a huge range.
        count = (wanted.period_end - wanted.period_start) // LONGEST[wanted.period_type]
        if count <= MAX_BATCH_PERIODS:
            count = len(spanning(wanted.period_type, wanted.period_start, wanted.period_end))
            previous_start(wanted.period_type, wanted.period_start)  # churn reads it
    except OverflowError:
        raise ValidationFailed.of(
            "period_end", "the range reaches past the years 1 to 9999"
        ) from None
    if count > MAX_BATCH_PERIODS:
        raise ValidationFailed.of(
            "period_end",
            f"the range spans {count} periods of a {wanted.period_type}; at most "
            f"{MAX_BATCH_PERIODS} per request (use `python -m jobs track` for more)",
        )
    url = request.app.state.settings.require_database_url()
    try:
        report = await asyncio.to_thread(
            batch_track, url, wanted.period_type, wanted.period_start, wanted.period_end
        )
    except psycopg.OperationalError:
        raise DatabaseUnavailable() from None
    return JSON(
        {
            "period_type": wanted.period_type,
            "period_start": wanted.period_start,
            "period_end": wanted.period_end,
            **report.body(),
        }
    )


class KeyIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    scopes: Annotated[list[str], msgspec.Meta(min_length=1, max_length=3)]


_key_in = msgspec.json.Decoder(KeyIn)


async def create_key(request: Request) -> JSON:
    """POST /api/v1/analytics/keys: a new key, shown in this answer only."""
    require_media_type(request, "application/json")
    wanted: KeyIn = decode(await read_body(request, 4096), _key_in)
    url = request.app.state.settings.require_database_url()
    try:
        record, key = await asyncio.to_thread(keys.create, url, wanted.name, wanted.scopes)
    except keys.KeyTaken as exc:
        raise Conflict(str(exc), details=[field_error("name", "already in use")]) from None
    except keys.KeyRefused as exc:
        raise ValidationFailed.of(exc.field, exc.reason) from None
    except psycopg.OperationalError:
        raise DatabaseUnavailable() from None
    await request.app.state.keys.reload(request.app.state.pool)  # usable here at once
    return JSON({**record.body(), "key": key}, 201)


async def list_keys(request: Request) -> JSON:
    """GET /api/v1/analytics/keys: every key, revoked ones too, never the keys themselves."""
    url = request.app.state.settings.require_database_url()
    try:
        found = await asyncio.to_thread(keys.listing, url)
    except psycopg.OperationalError:
        raise DatabaseUnavailable() from None
    return JSON({"keys": [k.body() for k in found]})


async def revoke_key(request: Request) -> JSON:
    """DELETE /api/v1/analytics/keys/{key}: revoke the live key with this id or name."""
    url = request.app.state.settings.require_database_url()
    try:
        record = await asyncio.to_thread(keys.revoke, url, request.path_params["key"])
    except keys.NoSuchKey as exc:
        raise NotFound(str(exc)) from None
    except psycopg.OperationalError:
        raise DatabaseUnavailable() from None
    await request.app.state.keys.reload(request.app.state.pool)  # refused here at once
    return JSON(record.body())


routes = [
    Route("/api/v1/analytics/keys", create_key, methods=["POST"]),
    Route("/api/v1/analytics/keys", list_keys, methods=["GET"]),
    Route("/api/v1/analytics/keys/{key}", revoke_key, methods=["DELETE"]),
    Route("/api/v1/analytics/jobs", job_runs, methods=["GET"]),
    Route("/api/v1/analytics/batch-track", post_batch_track, methods=["POST"]),
]
