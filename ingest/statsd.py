"""StatsD and DogStatsD over UDP (off unless STATSD_ADDR is set), into the group commit.

A datagram holds lines `name:value|type[|@rate][|#tag:value,...][|c:container][|T<seconds>]`
(several values `name:1:2:3|h` as DogStatsD allows). By type:

- `c` counter: the increments of a flush interval (STATSD_FLUSH_MS) summed, each divided by its
  sample rate, into one `counter` event per series: its statistics are the increase;
- `g` gauge: its value at the end of the interval, one `gauge` event per series updated; `+N`
  and `-N` move the last value (StatsD's rule; kept while the server runs, from 0 for a series
  not seen yet, forgotten after GAUGE_TTL intervals without an update). DogStatsD clients send
  `-5` to mean "set to -5": here that is a move;
- `s` set: the number of distinct values of the interval (a value is the whole text after the
  name's colon), one `gauge` event;
- `ms` timer, `h` histogram, `d` distribution: every sample an event (`timer` for ms,
  `histogram` for h and d) dated on arrival (or by `|T`), so that percentiles are over the
  samples; a sample rate does not multiply them (the count is of the samples received).

DogStatsD tags become tags (`#env:prod,canary` is env=prod, canary=true), its container id
(`c:`) and timestamp (`T`) are accepted. A line that does not parse is counted on /metrics by
reason (`astraeus_statsd_lines_total{outcome}`) and dropped; the listener never stops for it.
Events go in batches of CHUNK, at most IN_FLIGHT of them queued at once (a flush never fills
the ingest queue that HTTP senders share), the samples as soon as CHUNK of them are waiting.
UDP itself drops datagrams when the socket's buffer is full: watch the kernel's `Udp: receive
buffer errors` (`netstat -su`, or `RcvbufErrors` in /proc/net/snmp) and raise
`net.core.rmem_default` (the listener takes the system's default buffer), or send fewer,
larger datagrams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from core.errors import ApiError, ValidationFailed
from core.metrics import Metrics, stored
from core.settings import Settings
from ingest.committer import GroupCommitter
from ingest.tagsets import TagSets
from ingest.validate import validated
from ingest.wire import NAME_PATTERN, MetricEvent

log = logging.getLogger("astraeus.statsd")

TYPES = {"c": "counter", "g": "gauge", "s": "gauge", "ms": "timer", "h": "histogram"}
TYPES["d"] = "histogram"
_NAME = re.compile(NAME_PATTERN)
_LINE = re.compile(r"^(?P<name>[^:|]+):(?P<values>[^|]*)\|(?P<type>[a-z]+)(?P<rest>(?:\|.*)?)$")
CHUNK = 5_000  # events per batch (within INGEST_MAX_BATCH_EVENTS)
MAX_KEYS = 100_000  # series of counters, gauges and sets in one interval; past it, dropped
GAUGE_TTL = 360  # intervals a gauge's last value is kept without an update (1 h at 10 s)
PASSES = 50  # submissions of one batch, each without the events the last one refused
IN_FLIGHT = 4  # batches queued at once: group commits stay full, the shared queue far from full

Tags = tuple[tuple[str, str], ...]  # sorted (key, value) pairs
Key = tuple[str, str, Tags]  # (name, metric type, tags)


class Malformed(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Sample:
    name: str
    kind: str  # c, g, s, ms, h, d
    numbers: list[float] = field(default_factory=list)  # of c, g, ms, h, d
    moves: list[bool] = field(default_factory=list)  # of g: +N or -N
    member: str = ""  # of s
    rate: float = 1.0
    tags: dict[str, str] = field(default_factory=dict)
    timestamp: datetime | None = None


def parse(line: str) -> Sample:
    """One line, or Malformed naming why."""
    if line.startswith(("_e{", "_sc|")):  # DogStatsD events and service checks: no metric
        raise Malformed("unsupported")
    found = _LINE.match(line)
    if found is None:
        raise Malformed("syntax")
    name, kind = found["name"], found["type"]
    if kind not in TYPES:
        raise Malformed("type")
    if not _NAME.match(name):
        raise Malformed("name")
    sample = Sample(name, kind)
    for part in found["rest"].split("|")[1:]:
        if part.startswith("@"):
            try:
                sample.rate = float(part[1:])
            except ValueError:
                raise Malformed("sample_rate") from None
            if not 0 < sample.rate <= 1:
                raise Malformed("sample_rate")
        elif part.startswith("#"):
            for tag in part[1:].split(","):
                if tag:
                    key, _, value = tag.partition(":")
                    sample.tags[key] = value if value else "true"
        elif part.startswith("T"):
            try:
                sample.timestamp = datetime.fromtimestamp(int(part[1:]), UTC)
            except (ValueError, OverflowError, OSError):
                raise Malformed("timestamp") from None
        # c:<container id> and other DogStatsD extensions: tolerated
    if kind == "s":
        sample.member = found["values"]  # one member, colons and all
        return sample
    for value in found["values"].split(":"):
        try:
            number = float(value)
        except ValueError:
            raise Malformed("value") from None
        if not math.isfinite(number):
            raise Malformed("value")
        sample.numbers.append(number)
        sample.moves.append(kind == "g" and value.startswith(("+", "-")))
    return sample


class Aggregator:
    """The state of one flush interval (and the gauges' last values, kept across them)."""

    def __init__(self) -> None:
        self.counters: dict[Key, float] = {}
        self.gauges: dict[Key, float] = {}
        self.gauge_seen: dict[Key, int] = {}  # the interval a gauge was last updated in
        self.updated: set[Key] = set()
        self.sets: dict[Key, set[str]] = {}
        self.samples: list[MetricEvent] = []
        self.interval = 0
        self._tags: dict[Tags, msgspec.Raw] = {}

    def as_json(self, tags: Tags) -> msgspec.Raw:
        found = self._tags.get(tags)
        if found is None:
            if len(self._tags) > MAX_KEYS:
                self._tags.clear()
            found = self._tags[tags] = msgspec.Raw(msgspec.json.encode(dict(tags)))
        return found

    def add(self, sample: Sample, now: datetime) -> bool:
        """Count `sample` in; False when it would add a series past MAX_KEYS (dropped)."""
        kind = sample.kind
        key: Key = (sample.name, TYPES[kind], tuple(sorted(sample.tags.items())))
        series = len(self.counters) + len(self.updated) + len(self.sets)
        if (
            kind in {"c", "g", "s"}
            and series >= MAX_KEYS
            and key not in self.counters
            and key not in self.updated
            and key not in self.sets
        ):
            return False
        if kind == "c":
            rate = sample.rate
            self.counters[key] = self.counters.get(key, 0.0) + sum(n / rate for n in sample.numbers)
        elif kind == "g":
            for number, move in zip(sample.numbers, sample.moves, strict=True):
                self.gauges[key] = self.gauges.get(key, 0.0) + number if move else number
            self.updated.add(key)
            self.gauge_seen[key] = self.interval
        elif kind == "s":
            self.sets.setdefault(key, set()).add(sample.member)
        else:
            tags, at = self.as_json(key[2]), sample.timestamp or now
            for number in sample.numbers:
                self.samples.append(
                    MetricEvent(
                        metric_name=key[0],
                        value=number,
                        metric_type=key[1],  # type: ignore[arg-type]
                        tags=tags,
                        timestamp=at,
                    )
                )
        return True

    def take_samples(self) -> list[MetricEvent]:
        samples, self.samples = self.samples, []
        return samples

    def flush(self, now: datetime) -> tuple[list[MetricEvent], int]:
        """The interval's events, and how many aggregates were not finite (dropped)."""

        def event(key: Key, value: float) -> MetricEvent:
            name, metric_type, tags = key
            return MetricEvent(
                metric_name=name,
                value=value,
                metric_type=metric_type,  # type: ignore[arg-type]
                tags=self.as_json(tags),
                timestamp=now,
            )

        figures = [*self.counters.items(), *((k, self.gauges[k]) for k in self.updated)]
        figures += [(key, float(len(members))) for key, members in self.sets.items()]
        events = self.take_samples()
        events += [event(key, value) for key, value in figures if math.isfinite(value)]
        not_finite = sum(1 for _, value in figures if not math.isfinite(value))
        for key in [k for k in self.updated if not math.isfinite(self.gauges[k])]:
            del self.gauges[key], self.gauge_seen[key]  # (1e308 twice): start again from 0
        self.counters, self.sets, self.updated = {}, {}, set()
        self.interval += 1
        stale = [k for k, seen in self.gauge_seen.items() if self.interval - seen > GAUGE_TTL]
        for key in stale:
            del self.gauges[key], self.gauge_seen[key]
        return events, not_finite


class Listener(asyncio.DatagramProtocol):
    """Datagrams in, aggregated; every STATSD_FLUSH_MS the interval's events committed."""

    def __init__(
        self, settings: Settings, committer: GroupCommitter, tagsets: TagSets, metrics: Metrics
    ) -> None:
        self.settings = settings
        self.committer = committer
        self.tagsets = tagsets
        self.metrics = metrics
        self.aggregator = Aggregator()
        self.transport: asyncio.DatagramTransport | None = None
        self.address: tuple[str, int] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._sending = asyncio.Semaphore(IN_FLIGHT)
        self._early: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        host, _, port = self.settings.statsd_addr.rpartition(":")
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(host, int(port))
        )
        self.transport = transport
        self.address = transport.get_extra_info("sockname")[:2]
        self._flusher = asyncio.create_task(self._flush_forever(), name="statsd-flush")
        log.info("StatsD listening on %s:%d (UDP)", *self.address)

    async def stop(self) -> None:
        """Stop listening, and commit what the last interval holds."""
        if self.transport is not None:
            self.transport.close()
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._flusher
        for task in list(self._early):
            with contextlib.suppress(Exception):
                await task
        try:
            await self.flush()
        except Exception:
            log.exception("StatsD: the last flush failed")

    def datagram_received(self, data: bytes, addr: Any) -> None:
        lines = self.metrics.statsd_lines
        now = datetime.now(UTC)
        for raw in data.split(b"\n"):
            raw = raw.strip()
            if not raw:
                continue
            try:
                kept = self.aggregator.add(parse(raw.decode()), now)
            except UnicodeDecodeError:
                lines.labels("malformed_encoding").inc()
            except Malformed as bad:
                lines.labels(f"malformed_{bad.reason}").inc()
            else:
                lines.labels("accepted" if kept else "dropped_too_many_series").inc()
        if len(self.aggregator.samples) >= CHUNK:  # timers pile up fastest: send them now
            task = asyncio.ensure_future(self._send(self.aggregator.take_samples()))
            self._early.add(task)
            task.add_done_callback(self._early.discard)

    async def _flush_forever(self) -> None:
        interval = self.settings.statsd_flush_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush()
            except Exception:  # a bug: reported, and the next interval flushes again
                log.exception("StatsD: a flush failed")
                self.metrics.statsd_events.labels("error").inc()

    async def flush(self) -> None:
        events, not_finite = self.aggregator.flush(datetime.now(UTC))
        if not_finite:
            self.metrics.statsd_events.labels("not_finite").inc(not_finite)
        await self._send(events)

    async def _send(self, events: list[MetricEvent]) -> None:
        """`events` in batches of CHUNK (within INGEST_MAX_BATCH_EVENTS), at most IN_FLIGHT of
        them queued at once, whoever sends them."""
        size = min(CHUNK, self.settings.ingest.max_batch_events)

        async def one(batch: list[MetricEvent]) -> None:
            async with self._sending:
                await self._submit(batch)

        await asyncio.gather(*(one(events[i : i + size]) for i in range(0, len(events), size)))

    async def _submit(self, events: list[MetricEvent], split: bool = True) -> None:
        counted = self.metrics.statsd_events
        for _ in range(PASSES):
            if not events:
                return
            try:
                batch = await validated(events, self.settings.ingest, self.tagsets)
                outcome = await self.committer.submit(batch, None)
            except ValidationFailed as refused:
                dropped = {d["index"] for d in refused.details if isinstance(d.get("index"), int)}
                if not dropped:  # a refusal of a whole metric (its series limit): one by one
                    if split and len({e.metric_name for e in events}) > 1:
                        for name in {e.metric_name for e in events}:
                            await self._submit([e for e in events if e.metric_name == name], False)
                        return
                    break
                counted.labels("refused").inc(len(dropped))
                log.warning("StatsD: %d event(s) refused: %s", len(dropped), refused.message)
                events = [e for i, e in enumerate(events) if i not in dropped]
                continue
            except ApiError as failed:  # the queue full, the database away, a commit timeout
                counted.labels(failed.code).inc(len(events))
                log.warning("StatsD: %d event(s) not stored: %s", len(events), failed.message)
                return
            stored(self.metrics, "metric", outcome.accepted, 0)
            counted.labels("stored").inc(outcome.accepted)
            return
        if events:
            counted.labels("refused").inc(len(events))
