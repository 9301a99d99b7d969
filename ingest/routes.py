"""HTTP endpoints of the write path."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from core import deadlines
from core.errors import ApiError, BadRequest, ValidationFailed, field_error
from core.http import JSON, Endpoint, declared_length, read_body, require_media_type
from core.metrics import stored
from ingest import events, influx, offload
from ingest.budget import Ticket
from ingest.committer import GroupCommitter
from ingest.pending import Accepted, IdempotencyKey
from ingest.validate import validated
from ingest.wire import MetricEvent, decode_json_batch, decode_ndjson, decode_record

RECORD_BODY_LIMIT = 64 * 1024
JSON_TYPE = "application/json"
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson")
_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")


def idempotency_key(request: Request, scope: str, body: bytes) -> IdempotencyKey | None:
    raw = request.headers.get("idempotency-key")
    if raw is None:
        return None
    if not _KEY.match(raw):
        reason = "1 to 200 printable ASCII characters without spaces"
        raise BadRequest(
            f"Idempotency-Key: {reason}", details=[field_error("Idempotency-Key", reason)]
        )
    return IdempotencyKey.of(scope, raw, body)


async def _store(request: Request, events: list[MetricEvent], body: bytes, single: bool) -> JSON:
    return JSON((await _commit(request, events, body, single)).body())


async def _commit(
    request: Request,
    events: list[MetricEvent],
    body: bytes,
    single: bool,
    key: IdempotencyKey | None = None,
) -> Accepted:
    """Validate and group-commit `events`; the answer of a retried Idempotency-Key (the
    request's, else `key`) instead."""
    state = request.app.state
    committer: GroupCommitter = state.committer
    key = idempotency_key(request, "metrics", body) or key
    if key is not None:
        previous = await committer.keys.previous_answer(key)
        if previous is not None:
            return previous
    try:
        batch = await validated(events, state.settings.ingest, state.tagsets)
        outcome = await committer.submit(batch, key)
    except ValidationFailed as refused:
        raise refused.for_single_item() if single else refused from None
    if not outcome.duplicate:
        stored(state.metrics, "metric", outcome.accepted, len(body))
    return outcome


def admit(request: Request) -> Ticket:
    """A place in the ingest queue's budget before anything of the body is read, or 429."""
    committer: GroupCommitter = request.app.state.committer
    return committer.admit(declared_length(request))


async def record(request: Request) -> JSON:
    """POST /api/v1/analytics/metrics/record: one event, answered once it is committed."""
    require_media_type(request, JSON_TYPE)
    with admit(request) as ticket:
        body = await read_body(request, RECORD_BODY_LIMIT)
        ticket.resize(len(body))
        return await _store(request, decode_record(body), body, single=True)


async def batch(request: Request) -> JSON:
    """POST /api/v1/analytics/metrics/batch: many events, stored whole or not at all."""
    media_type = require_media_type(request, JSON_TYPE, *NDJSON_TYPES)
    with admit(request) as ticket:
        body = await read_body(request, request.app.state.settings.ingest.max_body_bytes)
        ticket.resize(len(body))
        decode = decode_json_batch if media_type == JSON_TYPE else decode_ndjson
        events = await offload.run(len(body) >= offload.BODY_BYTES, decode, body)
        return await _store(request, events, body, single=False)


async def influx_write(request: Request) -> Response:
    """POST /write (InfluxDB 1.x) and POST /api/v2/write (2.x): line protocol, answered 204
    once every point is committed (ingest/influx.py). `db`, `rp`, `org` and `bucket` are
    accepted and not used: there is one store."""
    try:
        return await _influx_write(request)
    except ApiError as refused:
        if request.url.path.endswith("/api/v2/write"):
            raise
        raise influx.V1Error(refused) from None


async def _influx_write(request: Request) -> Response:
    state = request.app.state
    unit_ns = influx.precision_of(request.query_params.get("precision"))
    with admit(request) as ticket:
        body = await read_body(request, state.settings.ingest.max_body_bytes)
        ticket.resize(len(body))
        points = await offload.run(
            len(body) >= offload.BODY_BYTES,
            influx.decode,
            body,
            unit_ns,
            state.settings.ingest.max_batch_events,
        )
        # Influx senders retry a body on 429, 5xx or a timeout, and never send an
        # Idempotency-Key: a body of timestamped points is its own key (the same points).
        key = None
        if points.timestamped and "idempotency-key" not in request.headers:
            key = IdempotencyKey.of("influx", hashlib.sha256(body).hexdigest(), body)
        try:
            await _commit(request, points.events, body, single=False, key=key)
        except ValidationFailed as refused:
            raise influx.by_line(refused, points) from None
    if points.skipped_strings:
        state.metrics.skipped.labels("influx", "string_field").inc(points.skipped_strings)
    return Response(status_code=204)


async def post_events(request: Request) -> JSON:
    """POST /api/v1/analytics/events."""
    state = request.app.state
    media = require_media_type(request, JSON_TYPE, *NDJSON_TYPES)
    writer: events.EventWriter = state.events
    with writer.admit(declared_length(request)) as ticket:
        body = await read_body(request, state.settings.ingest.max_body_bytes)
        ticket.resize(len(body))
        key = idempotency_key(request, "events", body)
        items = events.decode(body, ndjson=media != JSON_TYPE)
        rows = events.validate(items, datetime.now(UTC), state.settings.ingest)
        outcome = await writer.store(rows, key)
    if not outcome.duplicate:
        stored(state.metrics, "platform", outcome.accepted, len(body))
    return JSON(outcome.body())


routes = [
    Endpoint("POST", "/api/v1/analytics/metrics/record", record, "ingest", budget=deadlines.ingest),
    Endpoint("POST", "/api/v1/analytics/metrics/batch", batch, "ingest", budget=deadlines.ingest),
    Endpoint("POST", "/api/v1/analytics/events", post_events, "ingest", budget=deadlines.ingest),
    Endpoint("POST", "/api/v2/write", influx_write, "ingest", budget=deadlines.ingest),
    Endpoint("POST", "/write", influx_write, "ingest", budget=deadlines.ingest),
]
