"""GET /api/v1/analytics/jobs (the periodic jobs and their recent runs) and
POST /api/v1/analytics/batch-track."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

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
from service.db import connection, in_thread, statement_bound_s
from service.errors import (
    Conflict,
    DatabaseUnavailable,
    NotFound,
    ValidationFailed,
    field_error,
)
from service.http import JSON, read_body, require_media_type
from service.periods import previous_start, spanning
from service.settings import Settings


def bounded(settings: Settings, bound_s: float) -> dict[str, Any]:
    """connect_sync's options for a request bounded by `bound_s` seconds: a connection attempt
    and each statement end within it (in_thread ends the request at the bound whatever the
    database does, and these end the thread's work soon after)."""
    return {
        "connect_timeout": max(2, min(settings.db_connect_timeout_s, math.ceil(bound_s))),
        "statement_timeout_ms": max(1, int(bound_s * 1000)),
    }


def keys_call(settings: Settings) -> tuple[float, dict[str, Any]]:
    """The bound of a keys request and its connection options: a read's, STATEMENT_TIMEOUT_MS
    + 1 s, its statements under STATEMENT_TIMEOUT_MS."""
    options = bounded(settings, statement_bound_s(settings))
    options["statement_timeout_ms"] = settings.statement_timeout_ms
    return statement_bound_s(settings), options


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
    settings = request.app.state.settings
    bound_s = float(settings.batch_track_timeout_s)
    try:
        report = await in_thread(
            bound_s,
            batch_track,
            settings.require_database_url(),
            wanted.period_type,
            wanted.period_start,
            wanted.period_end,
            **bounded(settings, bound_s),
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
    settings = request.app.state.settings
    bound_s, options = keys_call(settings)
    url = settings.require_database_url()
    try:
        record, key = await in_thread(
            bound_s, keys.create, url, wanted.name, wanted.scopes, **options
        )
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
    settings = request.app.state.settings
    bound_s, options = keys_call(settings)
    try:
        found = await in_thread(bound_s, keys.listing, settings.require_database_url(), **options)
    except psycopg.OperationalError:
        raise DatabaseUnavailable() from None
    return JSON({"keys": [k.body() for k in found]})


async def revoke_key(request: Request) -> JSON:
    """DELETE /api/v1/analytics/keys/{key}: revoke the live key with this id or name."""
    settings = request.app.state.settings
    bound_s, options = keys_call(settings)
    url = settings.require_database_url()
    try:
        record = await in_thread(bound_s, keys.revoke, url, request.path_params["key"], **options)
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
