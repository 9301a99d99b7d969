"""GET /openapi.json (OpenAPI 3.1) and GET /docs.

Request bodies are described by the msgspec structs that decode and validate them
(`msgspec.json.schema_components`), so the contract cannot drift from the code; each operation
below names its struct. Errors share one schema (ErrorBody). A test checks that every route of
the app is described here and nothing else is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute

from alerts.channels import ChannelIn
from alerts.incidents import Action
from alerts.rules import RuleIn
from alerts.silences import SilenceIn
from auth.routes import KeyIn
from core.http import JSON, Endpoint
from ingest.events import PlatformEvent
from ingest.routes import NDJSON_TYPES
from ingest.wire import MetricEvent
from monitoring.services import ServiceIn
from service.background import BatchTrackIn

API = "/api/v1/analytics"
NDJSON = NDJSON_TYPES


class ErrorBody(msgspec.Struct):
    """Every error answer (4xx, 5xx)."""

    error: str
    message: str
    details: list[dict[str, Any]]


LINE_PROTOCOL = "line-protocol"  # a text body of InfluxDB line protocol
REMOTE_WRITE = "remote-write"  # a snappy-compressed protobuf body of Prometheus remote write
OTLP = "otlp"  # an ExportMetricsServiceRequest, protobuf or OTLP JSON
# Batch bodies: a JSON array of these, {"events": [...]}, or NDJSON lines of them.
BATCH_ITEMS: dict[str, Any] = {"batch:metric": MetricEvent, "batch:platform": PlatformEvent}


@dataclass(frozen=True)
class Param:
    name: str
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    summary: str
    ok: int = 200
    body: Any = None  # a msgspec type, or a key of BATCH_ITEMS for the batch bodies
    body_required: bool = True
    query: tuple[Param, ...] = ()
    ok_media: str = "application/json"
    note: str = ""  # what the answer holds beyond the obvious, appended to the description


CLASSIC = (
    "A Prometheus classic histogram answers under its family's name (x for the x_bucket{le}, "
    "x_sum and x_count counters, when no metric x exists): its observations' count, sum, avg "
    "and histogram_quantile percentiles from the buckets, with the cumulative buckets."
)

WINDOW = (
    Param("hours", "Window: this many hours back from now (default 24).", {"type": "number"}),
    Param("start", "Window start, RFC 3339 (instead of hours).", {"type": "string"}),
    Param("end", "Window end, RFC 3339 (default now).", {"type": "string"}),
)
SELECTION = (
    Param("group_by", "A tag key: one result per value."),
    Param("tag.region", "A tag filter, repeatable: tag.<key>=<value> for any tag key."),
)
PERIOD = (
    Param("period_type", "hour, day (default), week (ISO) or month, UTC."),
    Param("period_start", "Any moment in the wanted period, RFC 3339 (default now)."),
)
TRENDS = (
    Param("days", "Days back from now (default 30).", {"type": "number"}),
    Param("period_type", "hour, day (default), week or month."),
)

RULE_WRITTEN = (
    "Answers the rule with `warnings`, a list of sentences: a metric no event has recorded yet "
    "is accepted, named there, and the rule's no_data setting governs it until events arrive "
    "(`allow_unknown_metric: true` silences that warning)."
)

OPERATIONS: tuple[Op, ...] = (
    Op("GET", "/healthz", "The process serves HTTP"),
    Op("GET", "/readyz", "The database answers and every migration is applied"),
    Op("GET", "/metrics", "The service's own metrics (Prometheus)", ok_media="text/plain"),
    Op("POST", f"{API}/metrics/record", "Record one metric event", body=MetricEvent),
    *(
        Op(
            "POST",
            path,
            f"Record InfluxDB line protocol ({version} API)",
            ok=204,
            body=LINE_PROTOCOL,
            query=(Param("precision", f"Timestamp unit: {units}."), *accepted),
            note="Each numeric field is the gauge <measurement>_<field>; 400 names the line.",
        )
        for path, version, units, accepted in (
            (
                "/api/v2/write",
                "2.x",
                "ns (default), us, ms or s (n, u, m and h too, as 1.x)",
                (Param("org", "Accepted, not used."), Param("bucket", "Accepted, not used.")),
            ),
            (
                "/write",
                "1.x",
                "n or ns (default), u or us, ms, s, m, h",
                (Param("db", "Accepted, not used."), Param("rp", "Accepted, not used.")),
            ),
        )
    ),
    Op(
        "POST",
        "/api/v1/write",
        "Record Prometheus remote write (1.0, or 2.0 by the Content-Type's proto parameter)",
        ok=204,
        body=REMOTE_WRITE,
        note=(
            "Content-Encoding: snappy. Counters are stored as their increases beside their "
            "totals; samples that cannot be stored make a 400 naming them, the others stored; "
            "X-Prometheus-Remote-Write-*-Written headers on every answer."
        ),
    ),
    *(
        Op(
            "POST",
            path,
            "Record OTLP/HTTP metrics (protobuf or JSON, gzip or not)",
            body=OTLP,
            ok_media="application/x-protobuf",
            note=(
                "Gauges, sums, summaries, histograms (delta, cumulative); points that cannot be "
                "stored are counted in partial_success, the others stored; errors are a "
                "google.rpc.Status."
            ),
        )
        for path in ("/v1/metrics", "/otlp/v1/metrics")
    ),
    Op(
        "POST",
        f"{API}/metrics/batch",
        "Record a batch of metric events",
        body="batch:metric",
    ),
    Op(
        "POST",
        f"{API}/events",
        "Record a batch of platform events",
        body="batch:platform",
    ),
    Op("GET", f"{API}/performance", "Performance summary", query=WINDOW),
    Op("GET", f"{API}/metrics", "Every metric"),
    Op("GET", f"{API}/metrics/{{name}}/tags", "A metric's tag keys and values"),
    Op(
        "GET",
        f"{API}/metrics/{{name}}/statistics",
        "Statistics of a metric",
        query=(*WINDOW, *SELECTION, Param("exact", "true: exact percentiles from raw events.")),
        note=CLASSIC,
    ),
    Op(
        "GET",
        f"{API}/metrics/{{name}}/time-series",
        "Time series of a metric",
        query=(
            *WINDOW,
            *SELECTION,
            Param("interval", "1m ... 1mo (default 1h)."),
            Param("agg", "avg (default), sum, min, max, count, p50, p95, p99, rate."),
        ),
        note=CLASSIC,
    ),
    Op("GET", f"{API}/platform/trends", "Platform figures per period", query=TRENDS),
    Op("GET", f"{API}/user/{{id}}", "A user's figures for a period", query=PERIOD),
    Op("GET", f"{API}/user/{{id}}/trends", "A user's figures per period", query=TRENDS),
    Op("GET", f"{API}/agent/{{id}}", "An agent's figures for a period", query=PERIOD),
    Op("GET", f"{API}/agent/{{id}}/trends", "An agent's figures per period", query=TRENDS),
    Op(
        "GET",
        f"{API}/dashboard",
        "The dashboard",
        query=(Param("days", "1 to 366 (default 7).", {"type": "integer"}),),
    ),
    Op("GET", f"{API}/alerts/rules", "Alert rules"),
    Op(
        "POST",
        f"{API}/alerts/rules",
        "Create an alert rule",
        ok=201,
        body=RuleIn,
        note=RULE_WRITTEN,
    ),
    Op("GET", f"{API}/alerts/rules/{{rule_id}}", "One alert rule"),
    Op(
        "PUT",
        f"{API}/alerts/rules/{{rule_id}}",
        "Replace an alert rule",
        body=RuleIn,
        note=RULE_WRITTEN,
    ),
    Op(
        "PATCH",
        f"{API}/alerts/rules/{{rule_id}}",
        "Change some fields of a rule",
        body=dict[str, Any],
        note=RULE_WRITTEN,
    ),
    Op("DELETE", f"{API}/alerts/rules/{{rule_id}}", "Delete an alert rule", ok=204),
    Op("GET", f"{API}/alerts/channels", "Notification channels"),
    Op("POST", f"{API}/alerts/channels", "Create a channel", ok=201, body=ChannelIn),
    Op("GET", f"{API}/alerts/channels/{{channel_id}}", "One channel"),
    Op("PUT", f"{API}/alerts/channels/{{channel_id}}", "Replace a channel", body=ChannelIn),
    Op("DELETE", f"{API}/alerts/channels/{{channel_id}}", "Delete a channel", ok=204),
    Op(
        "GET",
        f"{API}/alerts/silences",
        "Silences in force",
        query=(Param("all", "true: ended ones too."),),
    ),
    Op("POST", f"{API}/alerts/silences", "Create a silence", ok=201, body=SilenceIn),
    Op("DELETE", f"{API}/alerts/silences/{{silence_id}}", "End a silence", ok=204),
    Op(
        "GET",
        f"{API}/alerts/incidents",
        "Incidents (open and acknowledged by default)",
        query=(
            Param("status", "open, acknowledged or resolved."),
            Param("severity", "info, warning, error or critical."),
            Param("since", "Opened at or after, RFC 3339."),
        ),
    ),
    Op("GET", f"{API}/alerts/incidents/{{incident_id}}", "One incident with its timeline"),
    Op(
        "POST",
        f"{API}/alerts/incidents/{{incident_id}}/acknowledge",
        "Acknowledge",
        body=Action,
        body_required=False,
    ),
    Op(
        "POST",
        f"{API}/alerts/incidents/{{incident_id}}/resolve",
        "Resolve",
        body=Action,
        body_required=False,
    ),
    Op("GET", f"{API}/monitoring/services", "Monitored services"),
    Op("POST", f"{API}/monitoring/services", "Register a service", ok=201, body=ServiceIn),
    Op("GET", f"{API}/monitoring/services/{{name}}", "One service"),
    Op("PUT", f"{API}/monitoring/services/{{name}}", "Replace a service", body=ServiceIn),
    Op("DELETE", f"{API}/monitoring/services/{{name}}", "Remove a service", ok=204),
    Op("GET", f"{API}/monitoring/health", "Health summary"),
    Op(
        "GET",
        f"{API}/monitoring/health/{{service}}",
        "One service's health and history",
        query=(Param("limit", "History rows (default 100).", {"type": "number"}),),
    ),
    Op(
        "GET",
        f"{API}/monitoring/sla/{{service}}",
        "SLA figures of a service",
        query=(Param("days", "Days back (default 30).", {"type": "number"}),),
    ),
    Op("POST", f"{API}/keys", "Create an API key (shown once)", ok=201, body=KeyIn),
    Op("GET", f"{API}/keys", "API keys (never the keys themselves)"),
    Op("DELETE", f"{API}/keys/{{key}}", "Revoke an API key by id or name"),
    Op(
        "GET",
        f"{API}/jobs",
        "Periodic jobs and their recent runs, scheduled and manual",
        query=(
            Param("job", "Only this job."),
            Param("limit", "Runs listed, 1 to 1000 (default 50).", {"type": "integer"}),
        ),
    ),
    Op(
        "POST",
        f"{API}/batch-track",
        "Materialise analytics for a range of periods",
        body=BatchTrackIn,
    ),
)


def _path_params(path: str) -> list[dict[str, Any]]:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    return [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for n in names
    ]


# The error statuses the service answers with (ErrorBody each): what a client must handle.
ERRORS = (400, 401, 403, 404, 405, 408, 409, 413, 415, 422, 429, 503)


def op_errors(op: Op) -> tuple[int, ...]:
    if op.path in ("/healthz", "/readyz"):
        return (503,)
    if op.path == "/metrics":
        return (401,)  # with METRICS_REQUIRE_KEY=true
    return ERRORS


def operation_id(op: Op) -> str:
    words = re.sub(r"[^a-z0-9]+", "_", op.path.lower()).strip("_")
    return f"{op.method.lower()}_{words}"


def scopes(routes: Sequence[BaseRoute]) -> dict[tuple[str, str], str | None]:
    """The scope each operation needs, as its route declares it (None: no key; /metrics is
    described as public, its default)."""
    return {
        (route.method, route.path): None if route.optional else route.scope
        for route in routes
        if isinstance(route, Endpoint)
    }


def document(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI document of the app serving `routes`."""
    return _document(tuple(sorted(scopes(routes).items(), key=repr)))


@cache
def _document(declared: tuple[tuple[tuple[str, str], str | None], ...]) -> dict[str, Any]:
    needs = dict(declared)
    types: list[Any] = [ErrorBody]
    for op in OPERATIONS:
        body = BATCH_ITEMS.get(op.body) if isinstance(op.body, str) else op.body
        if body is not None and repr(body) not in map(repr, types):
            types.append(body)
    schemas, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    by_type = dict(zip(map(repr, types), schemas, strict=True))
    error = {
        "description": "An error",
        "content": {"application/json": {"schema": by_type[repr(ErrorBody)]}},
    }
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        operation: dict[str, Any] = {
            "summary": op.summary,
            "operationId": operation_id(op),
            "parameters": [
                *_path_params(op.path),
                *(
                    {
                        "name": p.name,
                        "in": "query",
                        "description": p.description,
                        "schema": p.schema,
                    }
                    for p in op.query
                ),
            ],
            "responses": {
                str(op.ok): {"description": "Done"}
                if op.ok == 204
                else {
                    "description": "Done",
                    "content": {
                        op.ok_media: {
                            "schema": {"type": "string"}
                            if op.ok_media != "application/json"
                            else {"type": "object"}
                        }
                    },
                },
                **dict.fromkeys(map(str, op_errors(op)), error),
            },
        }
        if op.body == OTLP:  # OTLP answers in the request's type; its errors are a Status
            binary = {"schema": {"type": "string", "format": "binary"}}
            operation["responses"][str(op.ok)]["content"] = {
                "application/x-protobuf": binary,
                "application/json": {"schema": {"type": "object"}},
            }
            status = {
                "description": "A google.rpc.Status (code, message)",
                "content": {
                    "application/x-protobuf": binary,
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "code": {"type": "integer"},
                                "message": {"type": "string"},
                            },
                        }
                    },
                },
            }
            for code in map(str, op_errors(op)):
                if code not in ("401", "403"):  # the key check answers before the handler
                    operation["responses"][code] = status
        scope = needs[(op.method, op.path)]
        if scope is not None:
            operation["security"] = [{"apiKey": []}]
            operation["description"] = f"Needs an API key with the `{scope}` scope."
        else:
            operation["security"] = []
        if op.note:
            operation["description"] = f"{operation.get('description', '')} {op.note}".strip()
        if op.body == LINE_PROTOCOL:
            operation["requestBody"] = {
                "required": True,
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        elif op.body == OTLP:
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
                    "application/json": {"schema": {"type": "object"}},
                },
            }
        elif op.body == REMOTE_WRITE:
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}}
                },
            }
        elif isinstance(op.body, str):
            item = by_type[repr(BATCH_ITEMS[op.body])]
            array = {"type": "array", "items": item}
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                array,
                                {
                                    "type": "object",
                                    "properties": {"events": array},
                                    "required": ["events"],
                                    "additionalProperties": False,
                                },
                            ]
                        }
                    },
                    **{media: {"schema": {"type": "string"}} for media in NDJSON},
                },
            }
        elif op.body is not None:
            operation["requestBody"] = {
                "required": op.body_required,
                "content": {"application/json": {"schema": by_type[repr(op.body)]}},
            }
        paths.setdefault(op.path, {})[op.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "astraeus-analytics",
            "version": "1",
            "description": "Metrics ingest, statistics, analytics, alerting and health. "
            "Every error answers with ErrorBody.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"apiKey": []}],
    }


async def openapi(request: Request) -> JSON:
    return JSON(document(request.app.routes))


DOCS = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>astraeus-analytics API</title>
<style>body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
h2{font-size:1rem;margin:1.4rem 0 .2rem}code{background:#f3f3f3;padding:0 .25rem}
.m{display:inline-block;width:4.5rem;font-weight:600}small{color:#555}</style></head>
<body><h1>astraeus-analytics API</h1>
<p>The contract is <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1). Send
<code>Authorization: Bearer &lt;key&gt;</code>; errors answer <code>{"error", "message",
"details"}</code>.</p><div id="ops">Loading...</div>
<script>
fetch('/openapi.json').then(r => r.json()).then(doc => {
  const out = [];
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const params = (op.parameters || []).map(p => `<code>${p.name}</code>`).join(' ');
      const body = op.requestBody ? Object.keys(op.requestBody.content).join(', ') : '';
      out.push(`<h2><span class="m">${method.toUpperCase()}</span><code>${path}</code></h2>` +
        `<div>${op.summary}. <small>${op.description || 'No key needed.'}</small></div>` +
        (params ? `<div><small>parameters:</small> ${params}</div>` : '') +
        (body ? `<div><small>body:</small> ${body}</div>` : ''));
    }
  }
  document.getElementById('ops').innerHTML = out.join('');
});
</script></body></html>
"""


async def docs(request: Request) -> HTMLResponse:
    return HTMLResponse(DOCS)
