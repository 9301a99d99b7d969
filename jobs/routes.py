"""GET /api/v1/analytics/jobs: the periodic jobs and their recent runs."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

import sql
from jobs.periodic import periodic_jobs
from query.params import bad
from service.db import connection
from service.http import JSON


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
                }
                for row in rows
            ],
        }
    )


routes = [Route("/api/v1/analytics/jobs", job_runs, methods=["GET"])]
