"""Every live key's hash and scopes, in memory, for the check on every request."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import sql
from auth.keys import digest
from core import db
from core.db import connection

MISS_RELOAD_S = 1.0
RELOAD_S = 5.0  # the budget of a reload, whichever request started it
log = logging.getLogger("astraeus.auth")


class KeyTable:
    """Every live key's hash and scopes, in memory: no request waits on the database.

    Reloaded every `ttl` seconds (AUTH_CACHE_S), in the background by whichever request finds
    it stale (that request and the others carry on with the table they have), and on a miss at
    most once a second: a request with an unknown key waits for that reload (a key just
    created on another server works at once, after up to a second), and random tokens cost one
    shared query a second at most. A reload that fails keeps the table it has, and so does a
    request whose database budget (core/deadlines.py) runs out waiting for one. A reload has
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
