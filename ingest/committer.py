"""Group commit: concurrent requests share one transaction and one binary COPY.

Requests put their validated batch on a bounded in-memory queue and wait for its outcome.
Writer tasks (INGEST_WRITERS) each take whatever is queued, up to INGEST_GROUP_MAX_EVENTS (a
larger batch goes alone), and commit it in one transaction:

1. claim the batches' Idempotency-Keys (a key already there marks its batch a duplicate);
2. resolve series, refusing batches whose metric type or series count is wrong;
3. COPY every accepted event into analytics.metric_event_store (values as exact decimals
   where they are one, ingest/decimals.py);
4. insert the group's partial aggregates into the rollup deltas (ingest/deltas.py,
   record_group), so that queries count the events the moment they commit;
5. commit, then answer each request.

In the steady state (no Idempotency-Key in the group, every series known) steps 1 and 2 ask
the database nothing, and a small group (the record path's) is one statement (record_group)
with its raw rows in it, outside a transaction block: one round trip instead of five.

One refused batch never fails the others in its group. A data error the checks did not foresee
makes the group retry each batch in a transaction of its own, so only the culprit fails.

A group's transaction ends within INGEST_COMMIT_TIMEOUT_S, by when every request in it has been
answered: past that its connection is terminated (a stopped database answers nothing, not even
a cancel) and the writer goes on with a fresh one. A transaction cut off that way may still have
committed, so its batches are answered `commit_timeout`, never as accepted.

Admission comes first, before a request's body is read: `admit` answers 429 at once when the
queue is full of events (INGEST_QUEUE_MAX_EVENTS) or when the body's declared size does not fit
in the bytes budget (INGEST_QUEUE_MAX_BYTES, ingest/budget.py, shared with platform events),
which counts every admitted request's body from admission until its answer (being read,
decoded, validated, queued or in a commit). A refusal under overload thus costs a header check,
not a decode, and the memory held by ingest stays bounded by the budget whatever the clients
send.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

import sql
from core.db import HeldConnection, remaining, translate
from core.errors import ApiError, DatabaseTimeout, DatabaseUnavailable, ValidationFailed
from core.settings import IngestSettings
from ingest import deltas, offload, totals
from ingest.budget import ByteBudget, QueueFull, Ticket
from ingest.idempotency import IdempotencyKeys
from ingest.pending import Accepted, IdempotencyKey, Pending
from ingest.rows import EVENT_COLUMNS, prepare
from ingest.series import SeriesRegistry
from ingest.validate import Batch

log = logging.getLogger("astraeus.ingest")


class CommitTimeout(ApiError):
    status = 503
    code = "commit_timeout"
    default_message = (
        "The batch was not confirmed in time. It may still be committed: retry with the same "
        "Idempotency-Key to be sure it is stored exactly once."
    )


@dataclass
class CommitStats:
    """Totals since start: committed groups (transactions), batches and events."""

    groups: int = 0
    batches: int = 0
    events: int = 0


class GroupCommitter:
    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: SeriesRegistry,
        limits: IngestSettings,
        on_commit: Callable[[float], None] = lambda seconds: None,
        budget: ByteBudget | None = None,
    ) -> None:
        self.pool = pool
        self.on_commit = on_commit  # seconds of each committed group (/metrics)
        self.registry = registry
        self.limits = limits
        self.ttl = timedelta(hours=limits.idempotency_ttl_hours)
        self._queue: deque[Pending] = deque()
        self._queued_events = 0
        # Shared with platform events (ingest/events.py): one bound on what ingest holds.
        self.budget = budget or ByteBudget(limits.queue_max_bytes)
        self._work = asyncio.Condition()
        self._writers: list[asyncio.Task[None]] = []
        self._stopping = False
        self.keys = IdempotencyKeys(pool, self.ttl)
        self.totals = totals.RunningTotals()
        self.stats = CommitStats()

    @property
    def queued_events(self) -> int:
        return self._queued_events

    @property
    def queued_bytes(self) -> int:
        """Body bytes of the requests admitted and not yet answered."""
        return self.budget.held

    def admit(self, declared: int | None) -> Ticket:
        """Admission, before the body is read: a ticket for `declared` bytes, or 429 at once.

        A request is let in when the queue holds fewer than INGEST_QUEUE_MAX_EVENTS events and
        its declared size fits in what INGEST_QUEUE_MAX_BYTES leaves; into an empty budget any
        size is let in (the body limits bound it), so that no batch is refused for ever.
        """
        if self._stopping:
            raise DatabaseUnavailable("The server is shutting down; retry on another instance.")
        if self._queued_events >= self.limits.queue_max_events:
            raise QueueFull(headers={"Retry-After": "1"})
        return self.budget.admit(declared)

    def start(self) -> None:
        self._writers = [
            asyncio.create_task(self._writer(), name=f"ingest-writer-{n}")
            for n in range(self.limits.writers)
        ]

    async def stop(self) -> None:
        """Commit what is queued, then stop the writers."""
        self._stopping = True
        async with self._work:
            self._work.notify_all()
        await asyncio.gather(*self._writers, return_exceptions=True)

    async def submit(self, batch: Batch, key: IdempotencyKey | None) -> Accepted:
        """Queue `batch` and wait until it is committed (or refused, or timed out)."""
        if self._stopping:
            raise DatabaseUnavailable("The server is shutting down; retry on another instance.")
        if self._queued_events and self._queued_events + len(batch) > self.limits.queue_max_events:
            raise QueueFull(headers={"Retry-After": "1"})
        pending = Pending(batch, key)
        self._queue.append(pending)
        self._queued_events += len(batch)
        async with self._work:
            self._work.notify()
        try:
            # Within the request's budget: an Idempotency-Key lookup may have used some of it.
            return await asyncio.wait_for(
                asyncio.shield(pending.future), remaining(self.limits.commit_timeout_s)
            )
        except TimeoutError:
            pending.abandoned = True
            raise CommitTimeout(headers={"Retry-After": "5"}) from None

    def _take_group(self) -> list[Pending]:
        group: list[Pending] = []
        size = 0
        while self._queue:
            head = self._queue[0]
            if group and size + len(head.batch) > self.limits.group_max_events:
                break
            self._queue.popleft()
            self._queued_events -= len(head.batch)
            if head.abandoned:
                head.settle(CommitTimeout())
                continue
            group.append(head)
            size += len(head.batch)
        return group

    async def _writer(self) -> None:
        held = HeldConnection(self.pool)
        try:
            while True:
                async with self._work:
                    await self._work.wait_for(lambda: bool(self._queue) or self._stopping)
                group = self._take_group()
                if not group:
                    if self._stopping and not self._queue:
                        return
                    continue
                try:
                    # Entered before anything is awaited: turns in the order groups were taken.
                    async with self.totals.turn([pending.batch for pending in group]):
                        await self._commit_group(group, held)
                except Exception as exc:  # the writer must survive whatever one group does
                    log.exception("group commit failed")
                    for failed in group:
                        failed.settle(translate(exc) or ApiError())
                    del failed, exc
                # Answered: let go of the group before waiting for the next one. Kept until
                # then, it held up to INGEST_GROUP_MAX_EVENTS decoded events and their bodies
                # for as long as the queue stayed empty, pinning memory after every burst.
                del group
        finally:
            await held.close()

    async def _commit_group(self, group: list[Pending], held: HeldConnection) -> None:
        started = time.monotonic()
        try:
            await self._commit(group, held)
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
            if len(group) == 1:
                log.warning("batch refused by the database: %s", exc)
                group[0].settle(ValidationFailed(f"The database refused the batch: {exc}"))
                return
            for pending in group:  # find the culprit: each batch alone
                await self._commit_group([pending], held)
            return
        except DatabaseTimeout:  # cut off: committed or not, nobody knows
            log.warning("group commit cut off after %d s", self.limits.commit_timeout_s)
            for pending in group:
                pending.settle(CommitTimeout(headers={"Retry-After": "5"}))
            return
        except ApiError as exc:  # no connection could be had
            for pending in group:
                pending.settle(exc)
            return
        except Exception as exc:
            unavailable = translate(exc)
            if unavailable is None:
                raise
            log.warning("group commit could not reach the database: %s", exc)
            for pending in group:
                pending.settle(unavailable)
            return
        elapsed = time.monotonic() - started
        self.on_commit(elapsed)
        log.debug("committed %d batches in %.1f ms", len(group), elapsed * 1e3)
        await self.keys.prune(self.limits.commit_timeout_s)

    async def _commit(self, group: list[Pending], held: HeldConnection) -> None:
        totals.received([pending.batch for pending in group])
        if await self._commit_steady(group, held):
            return
        moved: list[int] = []
        try:
            async with held.connection(self.limits.commit_timeout_s) as conn, conn.transaction():
                live, answers, followers = await self.keys.claim(conn, group)
                resolution = await self.registry.resolve(conn, [p.batch for p in live])
                writing: list[tuple[Pending, list[int]]] = []
                refused: list[Pending] = []
                for pending, resolved in zip(live, resolution.outcomes, strict=True):
                    if isinstance(resolved, ApiError):
                        answers[pending] = resolved
                        refused.append(pending)
                    else:
                        writing.append((pending, resolved))
                await self.keys.release(conn, refused)
                if writing:
                    moved = await self._increases(conn, writing)
                    # Read before anything is awaited: another group may make room meanwhile.
                    state = self.totals.saved(moved)
                    await self._write(conn, writing, self.registry.metric_of(resolution))
                    if state[0]:
                        await conn.execute(sql.query("histogram_state_save"), *state)
                for pending, _ in writing:
                    answers[pending] = Accepted(pending.batch.received())
                for follower, first in followers:
                    # Stored by its first copy: a duplicate. Refused: refused the same way.
                    outcome = answers[first]
                    answers[follower] = (
                        Accepted(outcome.accepted, duplicate=True)
                        if isinstance(outcome, Accepted)
                        else outcome
                    )
        except BaseException:
            self.totals.forget(moved)
            raise
        self.registry.remember(resolution)
        self._count([pending for pending, _ in writing])
        for pending, outcome in answers.items():
            pending.settle(outcome)

    async def _commit_steady(self, group: list[Pending], held: HeldConnection) -> bool:
        """The steady state of a small group, in one statement: no Idempotency-Key, every
        series known, few enough events for the raw rows to go with the deltas (record_group
        alone commits as it ends, whole or not at all: no BEGIN and COMMIT round trips).
        False, having done nothing, otherwise."""
        if any(p.key is not None or p.batch.distributions for p in group):
            return False
        if sum(len(pending.batch) for pending in group) >= deltas.SMALL:
            return False
        resolution = self.registry.known([pending.batch for pending in group])
        if resolution is None:
            return False
        writing = [
            (pending, ids)
            for pending, ids in zip(group, resolution.outcomes, strict=True)
            if not isinstance(ids, ApiError)  # known series: never refused
        ]
        batches = [pending.batch for pending, _ in writing]
        if self.totals.missing(batches, [ids for _, ids in writing]):
            return False  # a running total's previous sample must be read first
        moved = self._apply(writing)
        try:
            async with held.connection(self.limits.commit_timeout_s) as conn:
                await self._write(conn, writing, self.registry.metric_of(resolution), copy=False)
        except BaseException:
            self.totals.forget(moved)
            raise
        self._count(group)
        for pending in group:
            pending.settle(Accepted(pending.batch.received()))
        return True

    async def _increases(
        self, conn: asyncpg.Connection, writing: list[tuple[Pending, list[int]]]
    ) -> list[int]:
        """Running totals into increases (ingest/totals.py), reading the previous sample of
        series new to this process first; the series whose newest sample moved."""
        batches = [pending.batch for pending, _ in writing]
        # Again for those missing since: while a load is awaited, another group (of other
        # series) may make room in the memory by forgetting some of this group's. (A series
        # read and found new stays missing.)
        read: set[int] = set()
        while missing := [
            s for s in self.totals.missing(batches, [ids for _, ids in writing]) if s not in read
        ]:
            await self.totals.load(conn, missing)
            read.update(missing)
        return self._apply(writing)

    def _apply(self, writing: list[tuple[Pending, list[int]]]) -> list[int]:
        if all(pending.batch.running is None for pending, _ in writing):
            return []
        ids = [ids for _, ids in writing]
        moved = self.totals.apply([pending.batch for pending, _ in writing], ids)
        writing[:] = [(pending, one) for (pending, _), one in zip(writing, ids, strict=True)]
        return moved

    async def _write(
        self,
        conn: asyncpg.Connection,
        writing: list[tuple[Pending, list[int]]],
        metric_of: Mapping[int, int],
        copy: bool = True,
    ) -> None:
        """The raw rows (by COPY, or within record_group) and the group's deltas."""
        batches = [pending.batch for pending, _ in writing]
        found, raw, sketches = await offload.run(
            sum(len(batch) for batch in batches) >= offload.EVENTS,
            prepare,
            batches,
            [ids for _, ids in writing],
            metric_of,
        )
        if copy:
            await conn.copy_records_to_table(
                "metric_event_store",
                schema_name="analytics",
                columns=EVENT_COLUMNS,
                records=zip(*raw, strict=True),
            )
            raw = ([], [], [], [], [], [])
        await conn.execute(
            sql.query("record_group"),
            *raw,
            *found.series.columns(),
            *found.metrics.columns(),
        )
        if sketches[0]:
            await conn.execute(sql.query("record_distributions"), *sketches)

    def _count(self, written: list[Pending]) -> None:
        """One committed group with these batches in it."""
        self.stats.groups += 1
        self.stats.batches += len(written)
        self.stats.events += sum(len(pending.batch) for pending in written)
