"""API keys on every request: `Authorization: Bearer <key>`, checked before routing.

What a path needs is decided here, in one table (`required_scope`), so that it can be read and
audited at a glance, and a test walks every route of the app against it:

- public: `/healthz`, `/readyz`, `/openapi.json`, `/docs`, and `/metrics` (unless
  METRICS_REQUIRE_KEY, then `read`);
- `ingest`: POST of metric events and platform events;
- `admin`: alert rules, channels, silences, incidents, services, batch tracking, keys;
- `read`: everything else (queries, analytics, the dashboard, health, jobs).

A missing, malformed, unknown or revoked key is a 401 with one message whatever the case (so it
says nothing of which keys exist); a key without the scope a 403 naming the scope. Verified
keys (and refused ones) are remembered for AUTH_CACHE_S seconds, so a revocation takes up to
that long to reach every server, and the hot ingest path does not query for every request.
"""

from __future__ import annotations

import re
import time
from collections.abc import MutableMapping
from typing import Any

import sql
from jobs.keys import digest
from service.db import connection, translate
from service.errors import ApiError
from service.http import JSON
from service.metrics import ASGIApp, Receive, Scope, Send

API = "/api/v1/analytics"
PUBLIC = frozenset({"/healthz", "/readyz", "/openapi.json", "/docs"})
INGEST = re.compile(rf"^{API}/(metrics/record|metrics/batch|events)$")
ADMIN = re.compile(rf"^{API}/(alerts|monitoring/services|batch-track|keys)(/|$)")
BEARER = re.compile(r"^Bearer ([A-Za-z0-9_\-]{16,200})$")
CACHE_ENTRIES = 10_000


def required_scope(method: str, path: str, metrics_need_key: bool = False) -> str | None:
    """The scope a request needs (None: none)."""
    if path in PUBLIC:
        return None
    if path == "/metrics":
        return "read" if metrics_need_key else None
    if method == "POST" and INGEST.match(path):
        return "ingest"
    if ADMIN.match(path):
        return "admin"
    return "read"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"
    default_message = "A valid API key is required: send `Authorization: Bearer <key>`."

    def __init__(self) -> None:
        super().__init__(headers={"WWW-Authenticate": 'Bearer realm="astraeus"'})


class Forbidden(ApiError):
    status = 403
    code = "forbidden"

    def __init__(self, scope: str) -> None:
        super().__init__(
            f"This key does not have the {scope!r} scope.",
            details=[{"field": "scope", "reason": f"needs {scope}"}],
        )


class KeyCache:
    """Key hash -> (checked at, scopes or None for refused), for `ttl` seconds."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.entries: dict[bytes, tuple[float, frozenset[str] | None]] = {}

    async def scopes(self, pool: Any, key: str) -> frozenset[str] | None:
        sha = digest(key)
        now = time.monotonic()
        hit = self.entries.get(sha)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        async with connection(pool) as conn:
            row = await conn.fetchrow(sql.query("api_key_scopes"), sha)
        found = frozenset(row["scopes"]) if row is not None else None
        if self.ttl > 0:
            if len(self.entries) >= CACHE_ENTRIES:
                self.entries = {k: v for k, v in self.entries.items() if now - v[0] < self.ttl}
                if len(self.entries) >= CACHE_ENTRIES:
                    self.entries.clear()
            self.entries[sha] = (now, found)
        return found


class ApiKeys:
    """ASGI middleware: refuses a request whose key does not carry the scope its path needs."""

    def __init__(
        self, app: ASGIApp, cache: KeyCache, disabled: bool, metrics_need_key: bool
    ) -> None:
        self.app = app
        self.cache = cache
        self.disabled = disabled
        self.metrics_need_key = metrics_need_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.disabled:
            needed = required_scope(scope["method"], scope["path"], self.metrics_need_key)
            if needed is not None:
                refusal = await self._refusal(scope, needed)
                if refusal is not None:
                    app = scope["app"]
                    app.state.metrics.refused.labels(refusal.code).inc()
                    response = JSON(refusal.body(), refusal.status, headers=refusal.headers)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _refusal(self, scope: MutableMapping[str, Any], needed: str) -> ApiError | None:
        header = ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        match = BEARER.match(header)
        if match is None:
            return Unauthorized()
        try:
            scopes = await self.cache.scopes(scope["app"].state.pool, match.group(1))
        except ApiError as exc:  # the database cannot be reached: 503, not 401
            return exc
        except Exception as exc:
            translated = translate(exc)
            if translated is None:
                raise
            return translated
        if scopes is None:
            return Unauthorized()
        if needed not in scopes:
            return Forbidden(needed)
        return None
