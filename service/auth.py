"""API keys on every request: `Authorization: Bearer <key>`, checked before routing
by service/front.py.

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

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import MutableMapping
from typing import Any

import sql
from jobs.keys import digest
from service import db
from service.db import connection
from service.errors import ApiError

API = "/api/v1/analytics"
PUBLIC = frozenset({"/healthz", "/readyz", "/openapi.json", "/docs"})
INGEST = re.compile(rf"^{API}/(metrics/record|metrics/batch|events)$")
ADMIN = re.compile(rf"^{API}/(alerts|monitoring/services|batch-track|keys)(/|$)")
BEARER = re.compile(r"^Bearer (ak_[A-Za-z0-9_\-]{43})$")  # what jobs/keys.py makes
MISS_RELOAD_S = 1.0
RELOAD_S = 5.0  # the budget of a reload, whichever request started it
log = logging.getLogger("astraeus.auth")


def required_scope(method: str, path: str, metrics_need_key: bool = False) -> str | None:
    """The scope a request needs (None: none). Reads need `read`; any write that is not event
    ingest needs `admin`, whatever routes are added later."""
    if path in PUBLIC:
        return None
    if path == "/metrics":
        return "read" if metrics_need_key else None
    if method == "POST" and INGEST.match(path):
        return "ingest"
    if ADMIN.match(path) or method not in {"GET", "HEAD"}:
        return "admin"
    return "read"


def route_path(scope: MutableMapping[str, Any]) -> str:
    """The path the router matches: without the root path a proxy or a mount puts in front."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


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


class KeyTable:
    """Every live key's hash and scopes, in memory: no request waits on the database.

    Reloaded every `ttl` seconds (AUTH_CACHE_S), in the background by whichever request finds
    it stale (that request and the others carry on with the table they have), and on a miss at
    most once a second: a request with an unknown key waits for that reload (a key just
    created on another server works at once, after up to a second), and random tokens cost one
    shared query a second at most. A reload that fails keeps the table it has, and so does a
    request whose database budget (service/deadlines.py) runs out waiting for one. A reload has
    a budget of its own (RELOAD_S), not that of the request that happened to start it.
    Keys created or revoked through this server reload it at once.
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.keys: dict[bytes, frozenset[str]] = {}
        self.loaded_at = -1e9
        self.flight: asyncio.Task[None] | None = None

    async def reload(self, pool: Any) -> None:
        """One reload at a time; concurrent callers wait for the same one, each no longer than
        its own budget."""
        if self.flight is None:
            self.flight = db.detached(self._reload(pool), RELOAD_S)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(db.deadline()):
                await asyncio.shield(self.flight)

    async def _reload(self, pool: Any) -> None:
        try:
            async with connection(pool) as conn:  # within RELOAD_S
                rows = await conn.fetch(sql.query("api_keys_live"))
            self.keys = {bytes(row["key_sha256"]): frozenset(row["scopes"]) for row in rows}
            self.loaded_at = time.monotonic()
        except Exception as exc:  # keep serving the keys known so far
            log.warning("API keys could not be reloaded: %s", exc)
            self.loaded_at = time.monotonic()  # try again after the interval, not at once
        finally:
            self.flight = None

    async def scopes(self, pool: Any, key: str) -> frozenset[str] | None:
        sha = digest(key)
        age = time.monotonic() - self.loaded_at
        if age >= self.ttl and (self.ttl == 0 or sha not in self.keys):
            await self.reload(pool)
        elif age >= self.ttl:
            # A known key goes on with the table it has while the reload runs: the periodic
            # reload held up every request arriving during it (a stall every AUTH_CACHE_S).
            if self.flight is None:
                self.flight = asyncio.ensure_future(self._reload(pool))
        elif sha not in self.keys:
            # Maybe a key created a moment ago elsewhere: wait for the next allowed reload
            # (shared by every request waiting) rather than refuse it.
            seen = self.loaded_at
            if age < MISS_RELOAD_S:
                await asyncio.sleep(min(MISS_RELOAD_S - age, db.remaining(MISS_RELOAD_S)))
            if self.loaded_at == seen:  # nobody reloaded since this request looked
                await self.reload(pool)
        return self.keys.get(sha)


async def refusal(keys: KeyTable, scope: MutableMapping[str, Any], needed: str) -> ApiError | None:
    """Why a request whose path needs `needed` is refused (None: it is let through)."""
    header = ""
    for name, value in scope["headers"]:
        if name == b"authorization":
            header = value.decode("latin-1")
            break
    match = BEARER.match(header)
    if match is None:
        return Unauthorized()
    scopes = await keys.scopes(scope["app"].state.pool, match.group(1))
    if scopes is None:
        return Unauthorized()
    if needed not in scopes:
        return Forbidden(needed)
    return None
