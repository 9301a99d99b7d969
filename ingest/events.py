"""Platform events: a closed vocabulary, validated at the edge, stored whole or not at all.

`POST /api/v1/analytics/events` takes the same bodies as metric batches (a JSON array,
``{"events": [...]}``, NDJSON, gzip), the same Idempotency-Key semantics (scope ``events``) and
the same size limits. Each event names its `event_type`; the fields that type needs are
required (REQUIRED below), the others optional. A batch with any invalid event is refused with
422 listing each (index, field, reason) and stores nothing.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec

import sql
from core.db import connection
from core.errors import BadRequest, DatabaseTimeout, PayloadTooLarge, field_error
from core.http import describe
from core.settings import IngestSettings
from ingest.budget import ByteBudget, QueueFull, Ticket
from ingest.committer import CommitTimeout
from ingest.idempotency import reused_key
from ingest.pending import Accepted, IdempotencyKey
from ingest.validate import from_epoch
from ingest.wire import refuse

EventType = Literal[
    "user_signup",
    "session_start",
    "page_view",
    "user_action",
    "active_time",
    "contract_created",
    "bid_placed",
    "contract_won",
    "contract_completed",
    "contract_cancelled",
    "contract_failed",
    "credits_purchased",
    "credits_spent",
    "payment",
    "agent_registered",
    "agent_call",
    "agent_up",
    "agent_down",
    "validation_score",
    "reputation_score",
    "orchestration_run",
    "fraud_alert",
    "security_event",
    "api_call",
]

# What each type must carry; everything else is optional (and stored when given).
REQUIRED: dict[str, tuple[str, ...]] = {
    "user_signup": ("user_id",),
    "session_start": ("user_id",),
    "page_view": ("user_id",),
    "user_action": ("user_id",),
    "active_time": ("user_id", "value"),  # value: seconds active
    "contract_created": ("user_id", "contract_id"),
    "bid_placed": ("agent_id", "contract_id", "amount"),  # amount: the bid
    "contract_won": ("agent_id", "contract_id"),
    "contract_completed": ("contract_id",),  # with user_id and/or agent_id
    "contract_cancelled": ("user_id", "contract_id"),
    "contract_failed": ("agent_id", "contract_id"),
    "credits_purchased": ("user_id", "amount"),
    "credits_spent": ("user_id", "amount"),
    "payment": ("amount", "fee"),
    "agent_registered": ("agent_id",),
    "agent_call": ("agent_id", "success", "duration_ms"),
    "agent_up": ("agent_id",),
    "agent_down": ("agent_id",),
    "validation_score": ("agent_id", "value"),
    "reputation_score": ("agent_id", "value"),
    "orchestration_run": ("user_id", "value", "duration_ms"),  # value: agents involved
    "fraud_alert": (),
    "security_event": (),
    "api_call": ("endpoint", "method", "status", "duration_ms"),
}
EITHER = {"contract_completed": ("user_id", "agent_id")}

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)] | float


class PlatformEvent(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    event_type: EventType
    timestamp: Timestamp | None = None
    user_id: Id | None = None
    agent_id: Id | None = None
    contract_id: Id | None = None
    amount: float | None = None
    fee: float | None = None
    duration_ms: Annotated[float, msgspec.Meta(ge=0)] | None = None
    success: bool | None = None
    value: float | None = None
    endpoint: Annotated[str, msgspec.Meta(max_length=500, pattern=r"^[^\x00]*$")] | None = None
    method: Annotated[str, msgspec.Meta(max_length=16, pattern=r"^[A-Z]+$")] | None = None
    status: Annotated[int, msgspec.Meta(ge=100, le=599)] | None = None


class Envelope(msgspec.Struct, forbid_unknown_fields=True):
    events: list[msgspec.Raw]


COLUMNS = (
    "time",
    "event_type",
    "user_id",
    "agent_id",
    "contract_id",
    "amount",
    "fee",
    "duration_ms",
    "success",
    "value",
    "endpoint",
    "method",
    "status",
)
_event = msgspec.json.Decoder(PlatformEvent)
_items = msgspec.json.Decoder(list[msgspec.Raw])
_envelope = msgspec.json.Decoder(Envelope)


def decode(body: bytes, ndjson: bool) -> list[msgspec.Raw | bytes]:
    try:
        if ndjson:
            return [line for line in body.split(b"\n") if line.strip()]
        if body.lstrip()[:1] == b"{":
            return list(_envelope.decode(body).events)
        return list(_items.decode(body))
    except msgspec.ValidationError as exc:
        detail = describe(exc)
        raise BadRequest(
            f'Send a JSON array of events or {{"events": [...]}}: {detail["reason"]}'
        ) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}") from None


def validate(items: list[Any], now: datetime, limits: Any) -> list[tuple[Any, ...]]:
    """Rows for COPY, or a 413/422 listing every invalid event (the first 100)."""
    if len(items) > limits.max_batch_events:
        raise PayloadTooLarge(
            f"The batch has {len(items)} events; the limit is {limits.max_batch_events}."
        )
    rows: list[tuple[Any, ...]] = []
    errors: list[dict[str, Any]] = []
    invalid = 0
    newest = now + timedelta(seconds=limits.max_future_s)
    oldest = now - timedelta(days=limits.retention_days)
    for index, item in enumerate(items):
        problems: list[dict[str, Any]] = []
        try:
            event = _event.decode(item)
        except msgspec.ValidationError as exc:
            problems.append(describe(exc, index))
        except msgspec.DecodeError as exc:
            raise BadRequest(f"The body is not valid JSON (event {index}): {exc}") from None
        else:
            for name in REQUIRED[event.event_type]:
                if getattr(event, name) is None:
                    problems.append(
                        field_error(name, f"required for event_type {event.event_type}", index)
                    )
            either = EITHER.get(event.event_type)
            if either and all(getattr(event, name) is None for name in either):
                problems.append(
                    field_error(either[0], f"{event.event_type} needs {' or '.join(either)}", index)
                )
            stamp = event.timestamp
            when = (
                now
                if stamp is None
                else stamp
                if isinstance(stamp, datetime)
                else (from_epoch(stamp))
            )
            if when > newest:
                problems.append(
                    field_error("timestamp", f"more than {limits.max_future_s} s ahead", index)
                )
            elif when < oldest:
                problems.append(
                    field_error(
                        "timestamp",
                        f"older than the retention of {limits.retention_days} days",
                        index,
                    )
                )
            rows.append((when, *(getattr(event, c) for c in COLUMNS[1:])))
        if problems:
            invalid += 1
            errors.extend(problems)
    if errors:
        raise refuse(errors[:100], invalid, len(items))
    return rows


# Events that later periods' figures depend on: contract totals count them up to each
# period's end (user and agent totals move only with an entity's first_seen, see `seen`); an
# agent's last state carries into the following periods.
TOTALS_TYPES = frozenset(
    {
        "contract_created",
        "contract_completed",
        "contract_cancelled",
        "contract_failed",
    }
)
STATE_TYPES = frozenset({"agent_up", "agent_down"})


def hours(rows: list[tuple[Any, ...]]) -> list[datetime]:
    """The UTC hours the rows' timestamps fall in, for the track job."""
    return sorted(
        {row[0].astimezone(UTC).replace(minute=0, second=0, microsecond=0) for row in rows}
    )


def seen(
    rows: list[tuple[Any, ...]], column: int, marker: str
) -> tuple[list[str], list[datetime], list[datetime | None]]:
    """Each entity the rows name in `column` (2: user_id, 3: agent_id), sorted, with its
    earliest time and the earliest time of its `marker` event (signup, registration; None)."""
    first: dict[str, tuple[datetime, datetime | None]] = {}
    for row in rows:
        entity = row[column]
        if entity is None:
            continue
        when = row[0]
        marked = when if row[1] == marker else None
        known = first.get(entity)
        if known is not None:
            if known[0] < when:
                when = known[0]
            if known[1] is not None and (marked is None or known[1] < marked):
                marked = known[1]
        first[entity] = (when, marked)
    ids = sorted(first)
    return ids, [first[i][0] for i in ids], [first[i][1] for i in ids]


class EventWriter:
    """One transaction per batch, at most `concurrency` at once: past that, 429.

    Admission comes before the body is read, as for metric batches: `admit` answers 429 at once
    when every slot is taken or when the declared size does not fit in the bytes budget (the
    one metric ingest uses, INGEST_QUEUE_MAX_BYTES), so that a refusal costs no read or decode.
    """

    def __init__(
        self, pool: Any, ttl: timedelta, concurrency: int, budget: ByteBudget | None = None
    ) -> None:
        self.pool = pool
        self.ttl = ttl
        self.slots = asyncio.Semaphore(concurrency)
        self.budget = budget or ByteBudget(IngestSettings().queue_max_bytes)

    def admit(self, declared: int | None) -> Ticket:
        if self.slots.locked():
            raise QueueFull(headers={"Retry-After": "1"})
        return self.budget.admit(declared)

    async def store(self, rows: list[tuple[Any, ...]], key: IdempotencyKey | None) -> Accepted:
        if self.slots.locked():
            raise QueueFull(headers={"Retry-After": "1"})
        try:
            return await self._store(rows, key)
        except DatabaseTimeout:  # cut off at the request's deadline: committed or not
            raise CommitTimeout(headers={"Retry-After": "5"}) from None

    async def _store(self, rows: list[tuple[Any, ...]], key: IdempotencyKey | None) -> Accepted:
        async with self.slots, connection(self.pool) as conn, conn.transaction():
            if key is not None:
                claimed = await conn.fetch(
                    sql.query("claim_idempotency_keys"),
                    key.scope,
                    [key.key],
                    [key.body_sha256],
                    [len(rows)],
                    self.ttl,
                )
                if not claimed:
                    row = await conn.fetchrow(
                        sql.query("idempotency_answers"), key.scope, [key.key], self.ttl
                    )
                    if row is not None and row["body_sha256"] == key.body_sha256:
                        return Accepted(row["accepted"], duplicate=True)
                    raise reused_key(key.key)
            await conn.copy_records_to_table(
                "platform_events", schema_name="analytics", columns=COLUMNS, records=rows
            )
            types = {row[1] for row in rows}
            await conn.execute(
                sql.query("record_event_invalidations"),
                hours(rows),
                not types.isdisjoint(TOTALS_TYPES),
                not types.isdisjoint(STATE_TYPES),
                *seen(rows, 2, "user_signup"),
                *seen(rows, 3, "agent_registered"),
            )
        return Accepted(len(rows))
