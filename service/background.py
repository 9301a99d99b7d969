"""HTTP over background work: GET /api/v1/analytics/jobs (the periodic jobs and their recent
runs) and POST /api/v1/analytics/batch-track (materialise tracked analytics for a range, with
jobs/track.py, in a thread with the request's bounds)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

import msgspec
import psycopg
from starlette.requests import Request

import sql
from core.db import bounded, connection, in_thread
from core.errors import DatabaseUnavailable, ValidationFailed
from core.http import JSON, json_body
from core.params import bad
from core.periods import previous_start, spanning
from jobs.periodic import periodic_jobs
from jobs.track import batch_track


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
    wanted: BatchTrackIn = await json_body(request, _batch_track, 4096)
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
