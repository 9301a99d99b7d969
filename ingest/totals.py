"""Counters sent as running totals, stored as their increases (and the totals beside them).

A counter means one thing here whatever protocol brought it (docs/ingest.md, "Counters"): each
stored `value` is an increment, so its statistics and time series are its increase. Our JSON
and StatsD counters and OTLP delta sums arrive as increments; Prometheus counters (and the
`_bucket`, `_sum` and `_count` of its histograms and summaries) and OTLP cumulative sums arrive
as running totals. A total is stored with `value` = its increase since the series' previous
sample and `total` = the total as sent (0022_counter_totals.sql: PromQL's rate() works on the
totals). The increase of a sample, against the series' newest stored one:

- larger or equal total: the difference;
- a smaller total, or a new start time (OTLP `start_time_unix_nano`, remote write 2.0
  `start_timestamp`): the counter restarted, and the whole total is the increase (Prometheus'
  rule for resets);
- no earlier sample at all: the whole total when the sample says since when it counts (a
  start time), else 0: the first total of a series is its baseline;
- at or before the newest stored sample's time: a sample already stored (a sender's resend
  after its own restart, or the same point exported again), or an out-of-order one, whose
  increase its successor already carries: not stored again.

The newest sample of each series is kept in memory (loaded from the store on first use, so a
restart of ours loses nothing; a start time is not stored, so the first sample after our
restart compares totals only). A group's increases are computed when its transaction begins;
a group whose running totals share a series with a group queued before it waits for that one
to end (`turn`: groups of other series commit at the same time, as Prometheus' shards send);
if one fails, the series it touched are forgotten and read back from the store next time.
Two ingest processes fed the same series at once would each compute against their own newest
sample: a sender sends a series to one endpoint (Prometheus shards by series), and that is
what this relies on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import msgspec

import sql
from ingest.distributions import MOST_COUNT, Cumulative, Sketch
from ingest.validate import Batch, Running
from ingest.wire import MetricEvent, SeriesKey


@dataclass
class Seen:
    """A cumulative histogram series' last point (None: none known)."""

    time: datetime
    point: Cumulative | None


NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass
class Newest:
    time: datetime
    total: float | None  # None: the stored sample was not a running total
    start: datetime | None = None


def mark(
    batch: Batch,
    totals: dict[int, datetime | None],
    histograms: dict[int, Cumulative] | None = None,
) -> Batch:
    """`batch` with the events at `totals`' indexes marked as running totals (and those at
    `histograms`' as cumulative histogram points)."""
    if totals or histograms:
        batch.running = Running(
            list(batch.events), list(batch.times), list(batch.keys), totals, histograms or {}
        )
    return batch


def received(batches: Sequence[Batch]) -> None:
    """Batches back as received, before a commit (or its retry) resolves their series."""
    for batch in batches:
        running = batch.running
        if running is not None:
            batch.events, batch.times = list(running.events), list(running.times)
            batch.keys, batch.totals, batch.kept = list(running.keys), None, None
            if batch.distributions and running.histograms:  # computed again by `apply`
                for index in running.histograms:
                    batch.distributions.pop(index, None)


class RunningTotals:
    """The newest stored sample of each series that receives running totals. A group's
    increases are computed against what the groups queued before it committed, never against
    one still in flight (`turn`)."""

    MOST = 500_000  # series kept; past that the longest unused tenth is read again when needed

    def __init__(self) -> None:
        self._newest: dict[int, Newest] = {}
        self._histograms: dict[int, Seen] = {}
        # series -> the end of the last group queued that holds its running totals
        self._holders: dict[SeriesKey, asyncio.Future[None]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, batches: Sequence[Batch]) -> AsyncIterator[None]:
        """A group's turn: entered once the groups taken before it that hold running totals
        (or cumulative histograms) of any of its series have ended. Enter it as the group is
        taken from the queue, before anything is awaited: the order of entering is the order
        of turns."""
        keys = {
            running.keys[index]
            for batch in batches
            if (running := batch.running) is not None
            for index in itertools.chain(running.totals, running.histograms)
        }
        if not keys:
            yield
            return
        done = asyncio.get_running_loop().create_future()
        before = {self._holders[key] for key in keys if key in self._holders}
        for key in keys:
            self._holders[key] = done
        try:
            if before:
                await asyncio.wait(before)
            yield
        finally:
            done.set_result(None)
            for key in keys:
                if self._holders.get(key) is done:
                    del self._holders[key]

    def forget(self, series: Sequence[int]) -> None:
        for series_id in series:
            self._newest.pop(series_id, None)
            self._histograms.pop(series_id, None)

    def missing(self, batches: Sequence[Batch], ids: Sequence[Sequence[int]]) -> list[int]:
        """Series of these batches' running totals (and cumulative histograms) whose newest
        sample is not in memory."""
        found: set[int] = set()
        for batch, series in zip(batches, ids, strict=True):
            if batch.running is not None:
                found.update(series[index] for index in batch.running.totals)
                found.update(
                    series[index]
                    for index in batch.running.histograms
                    if series[index] not in self._histograms
                )
        return sorted(found - self._newest.keys())

    async def load(self, conn: asyncpg.Connection, series: list[int]) -> None:
        """Read the newest stored sample of `series` (those with none stay unknown: new),
        and when each histogram series' newest point was stored."""
        if not series:
            return
        for row in await conn.fetch(sql.query("counter_totals_last"), series):
            self._newest.setdefault(row["series_id"], Newest(row["time"], row["total"]))
        stored = {
            row["series_id"]: Seen(row["time"], _decode_point(row["point"]))
            for row in await conn.fetch(sql.query("histogram_state_load"), series)
        }
        for series_id in series:
            if series_id in stored or series_id not in self._newest:
                self._histograms.setdefault(series_id, stored.get(series_id, Seen(NEVER, None)))

    def saved(self, moved: Sequence[int]) -> tuple[list[int], list[datetime], list[str]]:
        """The histogram state of the series in `moved` (histogram_state_save's columns)."""
        columns: tuple[list[int], list[datetime], list[str]] = ([], [], [])
        for series_id in sorted(set(moved)):
            seen = self._histograms.get(series_id)
            if seen is not None and seen.point is not None:
                columns[0].append(series_id)
                columns[1].append(seen.time)
                columns[2].append(_encode_point(seen.point).decode())
        return columns

    def apply(self, batches: Sequence[Batch], ids: list[list[int]]) -> list[int]:
        """Turn the running totals of `batches` into increases, in place (each batch's events,
        times, keys and `ids`, as `received` left them), and return the series whose newest
        sample moved (to forget if the transaction fails)."""
        moved: list[int] = []
        for number, batch in enumerate(batches):
            running = batch.running
            if running is None:
                continue
            series = ids[number] if len(ids[number]) == len(running.events) else None
            if series is None:
                raise RuntimeError("series ids do not match the batch as received")
            order = sorted(range(len(running.events)), key=lambda i: running.times[i])
            taken: dict[int, MetricEvent] = {}
            sums: dict[int, float | None] = {}
            for index in order:
                event = running.events[index]
                point = running.histograms.get(index)
                if point is not None:
                    found = self._histogram(series[index], running.times[index], point)
                    if found is not False:
                        moved.append(series[index])  # its state is saved with the group
                    if not isinstance(found, Sketch):
                        continue  # nothing new since the last point, or a baseline
                    if batch.distributions is None:
                        batch.distributions = {}
                    batch.distributions[index] = found
                    taken[index] = msgspec.structs.replace(event, value=found.sum)
                    sums[index] = None
                    continue
                if index not in running.totals:
                    taken[index] = event
                    sums[index] = None
                    continue
                increase = self._increase(
                    series[index], running.times[index], event.value, running.totals[index]
                )
                if increase is None:
                    continue  # stored already, or older than what is
                moved.append(series[index])
                taken[index] = msgspec.structs.replace(event, value=increase)
                sums[index] = event.value
            keep = sorted(taken)
            batch.events = [taken[i] for i in keep]
            batch.times = [running.times[i] for i in keep]
            batch.keys = [running.keys[i] for i in keep]
            batch.totals = [sums[i] for i in keep]
            batch.kept = keep
            ids[number] = [series[i] for i in keep]
        return moved

    def _increase(
        self, series: int, when: datetime, total: float, start: datetime | None
    ) -> float | None:
        newest = self._newest.get(series)
        if newest is not None and when <= newest.time:
            return None
        if newest is None or newest.total is None:
            increase = total if start is not None else 0.0
        elif total < newest.total or (
            start is not None and newest.start is not None and start != newest.start
        ):
            increase = total  # a restart
        else:
            increase = total - newest.total
        if newest is None and len(self._newest) >= self.MOST:
            for old in list(itertools.islice(self._newest, self.MOST // 10)):
                del self._newest[old]
        self._newest.pop(series, None)  # to the end: the longest unused go first
        self._newest[series] = Newest(when, total, start)
        return increase

    def _histogram(self, series: int, when: datetime, point: Cumulative) -> Sketch | bool | None:
        """The observations a cumulative histogram point adds (the rules of the counters; a
        sender's reset hint, as remote write's native histograms carry, is a restart too);
        None when it adds none, False when it is older than the series' newest point."""
        seen = self._histograms.get(series)
        if seen is not None and when <= seen.time:
            return False
        if seen is None or seen.point is None:  # the series' first: whole if it says since when
            found = point.whole() if point.start is not None or point.reset else None
        else:
            before = seen.point
            restarted = point.reset or (
                point.start is not None and before.start is not None and point.start != before.start
            )
            since = None if restarted else point.since(before)
            if since is False:  # not comparable: a restart if its count fell, else skipped
                found = point.whole() if point.count < before.count else None
            elif restarted:
                found = point.whole()
            else:
                found = since if isinstance(since, Sketch) else None
        if isinstance(found, Sketch) and found.count > MOST_COUNT:
            found = None  # past what the tiers count in one row: taken as a baseline
        self._histograms.pop(series, None)  # to the end: the longest unused go first
        self._histograms[series] = Seen(when, point)
        if len(self._histograms) > self.MOST:
            for old in list(itertools.islice(self._histograms, self.MOST // 10)):
                del self._histograms[old]
        return found


_encode_point = msgspec.json.encode
_point_decoder = msgspec.json.Decoder(Cumulative)


def _decode_point(text: str) -> Cumulative | None:
    try:
        return _point_decoder.decode(text)
    except msgspec.ValidationError:
        return None  # a state of another version: the next point is a baseline
