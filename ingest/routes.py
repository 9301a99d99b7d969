"""HTTP endpoints of the write path."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.routing import Route

from ingest.wire import decode_record
from ingest.writer import store
from service.db import connection
from service.http import JSON, read_body, require_json

RECORD_BODY_LIMIT = 64 * 1024


async def record(request: Request) -> JSON:
    """POST /api/v1/analytics/metrics/record: one event, answered once it is committed."""
    require_json(request)
    event = decode_record(await read_body(request, RECORD_BODY_LIMIT))
    state = request.app.state
    async with connection(state.pool) as conn:
        accepted = await store(conn, state.series, [event], datetime.now(UTC))
    return JSON({"accepted": accepted})


routes = [
    Route("/api/v1/analytics/metrics/record", record, methods=["POST"]),
]
