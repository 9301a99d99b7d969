"""HTTP endpoints of the write path."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

import sql
from core import deadlines
from core.db import connection
from core.errors import ApiError, BadRequest, PayloadTooLarge, ValidationFailed, field_error
from core.http import JSON, Endpoint, declared_length, read_body, require_media_type
from core.metrics import stored
from ingest import events, influx, offload, otlp, remote_write, totals
from ingest.budget import Ticket
from ingest.committer import GroupCommitter
from ingest.pending import Accepted, IdempotencyKey
from ingest.samples import Family, Samples
from ingest.validate import Batch, validate_valid, validated
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


async def prometheus_write(request: Request) -> Response:
    """POST /api/v1/write: Prometheus remote write 1.0 and 2.0 (ingest/remote_write.py),
    answered 204 once every sample is committed, with the
    X-Prometheus-Remote-Write-*-Written headers on every answer."""
    written = {"Samples": 0, "Histograms": 0, "Exemplars": 0}
    try:
        await _prometheus_write(request, written)
    except ApiError as refused:
        refused.headers.update(_written(written))
        raise
    return Response(status_code=204, headers=_written(written))


def _written(written: dict[str, int]) -> dict[str, str]:
    return {f"X-Prometheus-Remote-Write-{k}-Written": str(n) for k, n in written.items()}


async def _prometheus_write(request: Request, written: dict[str, int]) -> None:
    state = request.app.state
    limits = state.settings.ingest
    memory: remote_write.Memory = state.remote_write
    protocol = remote_write.protocol_of(
        request.headers.get("content-type"), request.headers.get("content-encoding")
    )
    with admit(request) as ticket:
        body = await read_body(request, limits.max_body_bytes, kept="snappy")
        plain = remote_write.decompress(body, limits.max_body_bytes)
        ticket.resize(len(body) + len(plain))
        # Senders retry a request on 5xx, 429 or a timeout, byte for byte: the body is its key.
        # Stored once: the same bytes again are answered as a duplicate, after the same
        # checks (so a request that was a partial write is a 400 again, not a 204).
        key = IdempotencyKey.of("remote_write", hashlib.sha256(body).hexdigest(), body)
        big = len(plain) >= offload.BODY_BYTES
        series, decoded = await offload.run(
            big, remote_write.parse, plain, protocol, memory.families
        )
        memory.learn(decoded.families)
        types = await state.series.types_of(state.pool, {s.known.name for s in series if s.name})
        decoded = await offload.run(big, remote_write.events, series, decoded, types)
        if len(decoded.events) > limits.max_batch_events:
            raise PayloadTooLarge(
                f"The request has {len(decoded.events)} samples; the limit is "
                f"{limits.max_batch_events} (INGEST_MAX_BATCH_EVENTS)"
            )
        stored = await _store_samples(request, decoded, key)
        points = decoded.histograms.keys() | decoded.distributions.keys()
        histograms = sum(i in points for i in stored)
        written["Samples"], written["Histograms"] = len(stored) - histograms, histograms
    await _describe(state, memory, decoded.families)
    if decoded.stale:
        state.metrics.skipped.labels("remote_write", "stale_marker").inc(decoded.stale)
    if decoded.problem_count:
        listed = (
            f" (the first {len(decoded.problems)} are listed)"
            if (decoded.problem_count > len(decoded.problems))
            else ""
        )
        raise BadRequest(
            f"{decoded.problem_count} samples or series were not stored{listed}; the other "
            f"{written['Samples'] + written['Histograms']} were: {decoded.problems[0]['reason']}",
            details=decoded.problems,
        )


async def _store_samples(request: Request, decoded: Samples, key: IdempotencyKey) -> list[int]:
    """Commit what our limits let through and return where the committed events are in
    `decoded.events`; the others are refused in `decoded`. A metric the registry refuses (its
    series limit, a type changed under us) is left out and the rest committed again: a sender
    drops a refused request whole."""
    state = request.app.state
    origin = list(range(len(decoded.events)))  # each event's place in decoded.events
    while origin:  # each pass leaves out at least one metric more
        batch, problems = await offload.run(
            len(origin) >= offload.EVENTS,
            validate_valid,
            [decoded.events[i] for i in origin],
            datetime.now(UTC),
            state.settings.ingest,
            state.tagsets,
        )
        for index, reasons in sorted(problems.items()):
            reason = "; ".join(f"{f}: {r}" for f, r in reasons)
            decoded.refuse(decoded.where[origin[index]], reason)
        running, found, cumulative = decoded.totals, decoded.distributions, decoded.histograms
        if not problems and len(origin) == len(decoded.events):  # all of them: n is o
            kept = origin
            totals.mark(batch, dict(running), dict(cumulative))
            batch.distributions = dict(found) or None
        else:
            kept = [o for i, o in enumerate(origin) if i not in problems]
            totals.mark(
                batch,
                {n: running[o] for n, o in enumerate(kept) if o in running},
                {n: cumulative[o] for n, o in enumerate(kept) if o in cumulative},
            )
            batch.distributions = {n: found[o] for n, o in enumerate(kept) if o in found} or None
        try:
            await _submit(request, batch, key)
        except ValidationFailed as refused:
            metrics = {d["metric"] for d in refused.details if "metric" in d}
            if not metrics:
                raise BadRequest(refused.message, details=refused.details) from None
            for name in sorted(metrics):
                reason = next(d["reason"] for d in refused.details if d.get("metric") == name)
                decoded.refuse(name, f"{reason}; none of its samples here were stored")
            origin = [o for o in kept if decoded.events[o].metric_name not in metrics]
            continue
        return kept
    return []


async def _submit(request: Request, batch: Batch, key: IdempotencyKey | None) -> Accepted:
    state = request.app.state
    outcome: Accepted = await state.committer.submit(batch, key)
    if not outcome.duplicate:
        stored(state.metrics, "metric", outcome.accepted, 0)
    return outcome


async def _describe(state: Any, memory: remote_write.Memory, families: dict[str, Family]) -> None:
    """Metadata's help and unit onto the metrics of each family, once for each text."""
    todo = memory.undescribed(families)
    if not todo:
        return
    names = sorted(todo)
    async with connection(state.pool) as conn:
        rows = await conn.fetch(
            sql.query("metrics_describe"),
            names,
            [todo[n].unit[:32] or None for n in names],
            [todo[n].help or None for n in names],
        )
    memory.described_now({row["family"] for row in rows}, todo)


async def otlp_metrics(request: Request) -> Response:
    """POST /v1/metrics (and /otlp/v1/metrics): OTLP/HTTP metrics (ingest/otlp.py), answered
    200 once every storable point is committed, with partial_success for the others; errors
    as a google.rpc.Status, in the request's content type."""
    state = request.app.state
    media = otlp.JSON
    try:
        media = otlp.media_of(request.headers.get("content-type"))
        rejected, message = await _otlp_metrics(request, media)
    except ApiError as refused:
        return Response(
            otlp.status(media, refused),
            status_code=refused.status,
            headers=refused.headers,
            media_type=media,
        )
    if rejected:
        state.metrics.skipped.labels("otlp", "rejected").inc(rejected)
    return Response(otlp.answer(media, rejected, message), media_type=media)


async def _otlp_metrics(request: Request, media: str) -> tuple[int, str]:
    state = request.app.state
    limits = state.settings.ingest
    with admit(request) as ticket:
        body = await read_body(request, limits.max_body_bytes)
        ticket.resize(len(body))
        # The SDK retries a request on 429, 502, 503, 504 and timeouts, the same bytes.
        key = IdempotencyKey.of("otlp", hashlib.sha256(body).hexdigest(), body)
        big = len(body) >= offload.BODY_BYTES
        parsed = await offload.run(big, otlp.parse, body, media)
        decoded = await offload.run(big, otlp.events, parsed)
        if len(decoded.events) > limits.max_batch_events:
            raise PayloadTooLarge(
                f"The request has {len(decoded.events)} points; the limit is "
                f"{limits.max_batch_events} (INGEST_MAX_BATCH_EVENTS)"
            )
        await _store_samples(request, decoded, key)
    if decoded.families:
        await _describe(state, state.remote_write, decoded.families)
    if decoded.skipped:
        state.metrics.skipped.labels("otlp", "no_recorded_value").inc(decoded.skipped)
    if not decoded.problem_count:
        return 0, ""
    first = decoded.problems[0]
    more = decoded.problem_count - 1
    also = f" (and {more} more)" if more else ""
    return decoded.problem_count, f"{first['series']}: {first['reason']}{also}"


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
    Endpoint("POST", "/api/v1/write", prometheus_write, "ingest", budget=deadlines.ingest),
    Endpoint("POST", "/v1/metrics", otlp_metrics, "ingest", budget=deadlines.ingest),
    Endpoint("POST", "/otlp/v1/metrics", otlp_metrics, "ingest", budget=deadlines.ingest),
]
