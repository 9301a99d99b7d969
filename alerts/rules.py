"""Alert rules: the seed's body, validated at the edge, and their CRUD endpoints.

A rule may name a metric no event has recorded yet (rules are often provisioned before the
metrics flow): it is accepted, and the write answers a `warnings` list saying so; until events
arrive the rule's `no_data` setting governs its evaluation. `allow_unknown_metric: true` (kept
for clients that send it) says the client knows, and silences that warning.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from starlette.requests import Request
from starlette.responses import Response

import sql
from core.db import Resource, connection
from core.errors import NotFound, ValidationFailed
from core.http import JSON, decode, json_body, require_media_type
from ingest.wire import NAME_PATTERN

BODY_LIMIT = 64 * 1024


Operator = Literal["gt", "lt", "eq", "gte", "lte"]
Severity = Literal["info", "warning", "error", "critical"]
Aggregation = Literal["avg", "min", "max", "sum", "count", "p50", "p95", "p99", "rate"]
NoData = Literal["ok", "alerting", "keep_state"]


class RuleIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # No control characters: the name goes into e-mail subjects and chat messages.
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
    metric_name: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NAME_PATTERN)]
    condition_operator: Operator
    threshold: float
    severity: Severity = "warning"
    description: Annotated[str, msgspec.Meta(max_length=2000)] | None = None
    duration_seconds: Annotated[int, msgspec.Meta(ge=0, le=7 * 86400)] = 0
    tags: dict[str, str | list[str]] = {}
    aggregation: Aggregation = "avg"
    window_seconds: Annotated[int, msgspec.Meta(ge=10, le=86400)] = 60
    recovery_threshold: float | None = None
    no_data: NoData = "keep_state"
    enabled: bool = True
    channels: list[Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]] = []
    # Kept for clients written when a metric not recorded yet was refused without it.
    allow_unknown_metric: Annotated[
        bool,
        msgspec.Meta(
            description="Silences the warning that no event has recorded metric_name yet."
        ),
    ] = False

    def filters(self) -> dict[str, list[str]]:
        return {k: [v] if isinstance(v, str) else v for k, v in self.tags.items()}


_rule = msgspec.json.Decoder(RuleIn)
_patch = msgspec.json.Decoder(dict[str, Any])


async def check(conn: asyncpg.Connection, rule: RuleIn) -> list[str]:
    """What the wire types cannot say: hysteresis direction, the channels, rate on counters.
    Returns the warnings of the write: a metric not recorded yet."""

    recovery, op = rule.recovery_threshold, rule.condition_operator
    if recovery is not None:
        if op == "eq":
            raise ValidationFailed.of(
                "recovery_threshold", "has no meaning with condition_operator eq"
            )
        if op in ("gt", "gte") and recovery > rule.threshold:
            raise ValidationFailed.of(
                "recovery_threshold", "must not be above threshold for gt/gte"
            )
        if op in ("lt", "lte") and recovery < rule.threshold:
            raise ValidationFailed.of(
                "recovery_threshold", "must not be below threshold for lt/lte"
            )
    for key, values in rule.filters().items():
        if not key or not values:
            raise ValidationFailed.of(
                f"tags.{key}", "a tag filter needs a key and at least one value"
            )
    await require_channels(conn, rule.channels)
    metric = await conn.fetchrow(sql.query("metric_by_name"), rule.metric_name)
    if metric is None:
        warnings = []
        if not rule.allow_unknown_metric:
            warnings.append(
                f"No metric named {rule.metric_name!r} has been recorded yet: until its events "
                f"arrive the rule is evaluated as having no data (no_data: {rule.no_data})."
            )
        if rule.aggregation == "rate":
            warnings.append(
                f"rate applies to counters: record {rule.metric_name!r} as a counter, "
                "or its rate means nothing."
            )
        return warnings
    if rule.aggregation == "rate" and metric["metric_type"] != "counter":
        raise ValidationFailed.of(
            "aggregation",
            f"rate applies to counters; {rule.metric_name!r} is a {metric['metric_type']}",
        )
    return []


async def require_channels(conn: asyncpg.Connection, channels: list[int]) -> None:
    """422 naming `channels` unless every id is an existing channel."""
    found = {r["id"] for r in await conn.fetch(sql.query("channels_existing"), channels)}
    missing = sorted(set(channels) - found)
    if missing:
        raise ValidationFailed.of("channels", f"no channel with id {', '.join(map(str, missing))}")


def columns(rule: RuleIn) -> tuple[Any, ...]:
    return (
        rule.name,
        rule.metric_name,
        msgspec.json.encode(rule.filters()).decode(),
        rule.aggregation,
        rule.window_seconds,
        rule.condition_operator,
        rule.threshold,
        rule.recovery_threshold,
        rule.duration_seconds,
        rule.severity,
        rule.description,
        rule.no_data,
        rule.enabled,
    )


def present(row: asyncpg.Record) -> dict[str, Any]:
    body = dict(row)
    body["tags"] = msgspec.json.decode(row["tags"])
    body["state"] = {
        "state": body.pop("state"),
        "since": body.pop("state_since"),
        "last_value": body.pop("last_value"),
        "last_evaluated_at": body.pop("last_evaluated_at"),
    }
    return body


async def fetch(conn: asyncpg.Connection, rule_id: int) -> dict[str, Any]:
    rows = await conn.fetch(sql.query("rules_select"), rule_id)
    if not rows:
        raise NotFound(f"No alert rule with id {rule_id}.")
    return present(rows[0])


def rule_id(request: Request) -> int:
    raw = request.path_params["rule_id"]
    if not (raw.isascii() and raw.isdigit()) or int(raw) > 2**31 - 1:
        raise NotFound(f"No alert rule with id {raw!r}.")
    return int(raw)


RULES = Resource(
    taken="An alert rule with that name exists already.",
    missing="No such alert rule.",
)


async def create(request: Request) -> JSON:
    rule = await json_body(request, _rule, BODY_LIMIT)
    async with connection(request.app.state.pool) as conn:
        warnings = await check(conn, rule)
        async with conn.transaction():
            new_id = await RULES.save(conn, "rule_insert", *columns(rule))
            await conn.execute(sql.query("rule_set_channels"), new_id, rule.channels)
        return JSON({**await fetch(conn, new_id), "warnings": warnings}, status_code=201)


async def replace(request: Request) -> JSON:
    require_media_type(request, "application/json")  # 415 before 404, as ever
    target = rule_id(request)
    rule = await json_body(request, _rule, BODY_LIMIT)
    async with connection(request.app.state.pool) as conn:
        await fetch(conn, target)
        warnings = await check(conn, rule)
        async with conn.transaction():
            await RULES.save(conn, "rule_update", target, *columns(rule))
            await conn.execute(sql.query("rule_set_channels"), target, rule.channels)
            if not rule.enabled:
                await conn.execute(sql.query("rule_close_incidents"), target, None, "rule disabled")
        return JSON({**await fetch(conn, target), "warnings": warnings})


async def patch(request: Request) -> JSON:
    require_media_type(request, "application/json")  # 415 before 404, as ever
    target = rule_id(request)
    changes = await json_body(request, _patch, BODY_LIMIT)
    async with connection(request.app.state.pool) as conn:
        current = await fetch(conn, target)
        fields = set(RuleIn.__struct_fields__) - {"allow_unknown_metric"}
        merged = {k: v for k, v in current.items() if k in fields}
        merged.update(changes)
        rule = decode(msgspec.json.encode(merged), _rule)
        warnings = await check(conn, rule)
        async with conn.transaction():
            await RULES.save(conn, "rule_update", target, *columns(rule))
            await conn.execute(sql.query("rule_set_channels"), target, rule.channels)
            if not rule.enabled:
                await conn.execute(sql.query("rule_close_incidents"), target, None, "rule disabled")
        return JSON({**await fetch(conn, target), "warnings": warnings})


async def remove(request: Request) -> Response:
    target = rule_id(request)
    async with connection(request.app.state.pool) as conn, conn.transaction():
        await conn.execute(sql.query("rule_close_incidents"), target, None, "rule deleted")
        await RULES.save(conn, "rule_delete", target)
    return Response(status_code=204)


async def listing(request: Request) -> JSON:
    async with connection(request.app.state.pool) as conn:
        rows = await conn.fetch(sql.query("rules_select"), None)
    return JSON({"rules": [present(row) for row in rows]})


async def one(request: Request) -> JSON:
    async with connection(request.app.state.pool) as conn:
        return JSON(await fetch(conn, rule_id(request)))
