"""Idempotency-Keys: recorded with their batch's events, so a retry is answered, not stored.

A key is claimed in the group's transaction (a key already there makes its batch a duplicate,
answered as the first time), released if its batch is refused in that transaction, and pruned
once older than IDEMPOTENCY_TTL_HOURS. The body's hash catches a key reused for other data.
"""

from __future__ import annotations

import contextlib
import time
from datetime import timedelta

import asyncpg

import sql
from core.db import connection
from core.errors import ApiError, ValidationFailed, field_error
from ingest.pending import Accepted, IdempotencyKey, Pending

PRUNE_EVERY_S = 600


def reused_key(key: str) -> ValidationFailed:
    reason = "this key was used for a different batch; use a new key for new data"
    return ValidationFailed(
        f"Idempotency-Key {key!r}: {reason}",
        details=[field_error("Idempotency-Key", reason)],
    )


class IdempotencyKeys:
    def __init__(self, pool: asyncpg.Pool, ttl: timedelta) -> None:
        self.pool = pool
        self.ttl = ttl
        self._last_prune = 0.0

    async def previous_answer(self, key: IdempotencyKey) -> Accepted | None:
        """The answer given to an earlier batch with this key, if it is still remembered. Looked
        up within the request's budget, which its commit then shares."""
        async with connection(self.pool) as conn:
            row = await conn.fetchrow(
                sql.query("idempotency_answers"), key.scope, [key.key], self.ttl
            )
        if row is None:
            return None
        if row["body_sha256"] != key.body_sha256:
            raise reused_key(key.key)
        return Accepted(row["accepted"], duplicate=True)

    async def claim(
        self, conn: asyncpg.Connection, group: list[Pending]
    ) -> tuple[list[Pending], dict[Pending, Accepted | ApiError], list[tuple[Pending, Pending]]]:
        """The batches to write; answers for those whose key says they are duplicates; and the
        copies of a batch sent twice into one group, each with the copy it must follow."""
        answers: dict[Pending, Accepted | ApiError] = {}
        keyed: dict[tuple[str, str], Pending] = {}
        live: list[Pending] = []
        later: list[Pending] = []  # same key twice in one group: the second is a duplicate
        for pending in group:
            if pending.key is None:
                live.append(pending)
            elif (pending.key.scope, pending.key.key) in keyed:
                later.append(pending)
            else:
                keyed[(pending.key.scope, pending.key.key)] = pending
        by_scope: dict[str, list[Pending]] = {}
        for pending in keyed.values():
            assert pending.key is not None
            by_scope.setdefault(pending.key.scope, []).append(pending)
        for scope, members in by_scope.items():
            members.sort(key=lambda p: p.key.key if p.key else "")
            claimed = {
                row["key"]
                for row in await conn.fetch(
                    sql.query("claim_idempotency_keys"),
                    scope,
                    [p.key.key for p in members if p.key],
                    [p.key.body_sha256 for p in members if p.key],
                    [len(p.batch) for p in members],
                    self.ttl,
                )
            }
            taken = [p for p in members if p.key and p.key.key not in claimed]
            live.extend(p for p in members if p.key and p.key.key in claimed)
            if taken:
                rows = await conn.fetch(
                    sql.query("idempotency_answers"),
                    scope,
                    [p.key.key for p in taken if p.key],
                    self.ttl,
                )
                stored = {row["key"]: row for row in rows}
                for pending in taken:
                    assert pending.key is not None
                    row = stored[pending.key.key]
                    answers[pending] = (
                        Accepted(row["accepted"], duplicate=True)
                        if row["body_sha256"] == pending.key.body_sha256
                        else reused_key(pending.key.key)
                    )
        followers: list[tuple[Pending, Pending]] = []
        for pending in later:
            assert pending.key is not None
            first = keyed[(pending.key.scope, pending.key.key)]
            if first.key and first.key.body_sha256 == pending.key.body_sha256:
                followers.append((pending, first))  # answered as the first copy turns out
            else:
                answers[pending] = reused_key(pending.key.key)
        return live, answers, followers

    async def release(self, conn: asyncpg.Connection, refused: list[Pending]) -> None:
        by_scope: dict[str, list[str]] = {}
        for pending in refused:
            if pending.key is not None:
                by_scope.setdefault(pending.key.scope, []).append(pending.key.key)
        for scope, keys in by_scope.items():
            await conn.execute(sql.query("release_idempotency_keys"), scope, keys)

    async def prune(self, within: float) -> None:
        """Deletes expired keys, at most every PRUNE_EVERY_S, giving up after `within` s."""
        now = time.monotonic()
        if now - self._last_prune < PRUNE_EVERY_S:
            return
        self._last_prune = now
        with contextlib.suppress(
            ApiError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError
        ):
            async with connection(self.pool, within) as conn:
                await conn.execute(sql.query("prune_idempotency_keys"), self.ttl)
