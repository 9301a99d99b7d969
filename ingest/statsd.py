"""StatsD and DogStatsD over UDP (off unless STATSD_ADDR is set), into the group commit.

A datagram holds lines `name:value|type[|@rate][|#tag:value,...][|c:container][|T<seconds>]`
(several values `name:1:2:3|h` as DogStatsD allows). By type:

- `c` counter: the increments of a flush interval (STATSD_FLUSH_MS) summed, each divided by its
  sample rate, into one `counter` event per series: its statistics are the increase;
- `g` gauge: its value at the end of the interval, one `gauge` event per series updated; `+N`
  and `-N` move the last value (kept while the server runs; from 0 for a series not seen yet);
- `s` set: the number of distinct values of the interval, one `gauge` event;
- `ms` timer, `h` histogram, `d` distribution: every sample an event (`timer` for ms,
  `histogram` for h and d), so that percentiles are over the samples; a sample rate does not
  multiply them (the count is of the samples received).

DogStatsD tags become tags (`#env:prod,canary` is env=prod, canary=true), its container id
(`c:`) and timestamp (`T`) are accepted (the timestamp dates the sample; counters, gauges and
sets are dated at the flush). A line that does not parse is counted on /metrics by reason
(`astraeus_statsd_lines_total{outcome}`) and dropped; the listener never stops for it. UDP itself
drops datagrams when the socket's buffer is full: watch the kernel's `Udp: receive buffer
errors` (`netstat -su`, or `RcvbufErrors` in /proc/net/snmp) and raise `net.core.rmem_max`, or
send fewer, larger datagrams.
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
from ingest.validate import validate
from ingest.wire import NAME_PATTERN, MetricEvent

log = logging.getLogger("astraeus.statsd")

TYPES = {"c": "counter", "g": "gauge", "s": "gauge", "ms": "timer", "h": "histogram"}
TYPES["d"] = "histogram"
_NAME = re.compile(NAME_PATTERN)
_LINE = re.compile(r"^(?P<name>[^:|]+):(?P<values>[^|]*)\|(?P<type>[a-z]+)(?P<rest>(?:\|.*)?)$")
RETRIES = 3  # submissions of one batch, each without the events the last one refused
CHUNK = 5_000  # events per batch of a flush (within INGEST_MAX_BATCH_EVENTS)

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
    values: list[str]
    rate: float = 1.0
    tags: dict[str, str] = field(default_factory=dict)
    timestamp: datetime | None = None


def parse(line: str) -> Sample:
    """One line, or Malformed naming why."""
    found = _LINE.match(line)
    if found is None:
        raise Malformed("syntax")
    name, kind = found["name"], found["type"]
    if kind not in TYPES:
        raise Malformed("type")
    if not _NAME.match(name):
        raise Malformed("name")
    sample = Sample(name, kind, found["values"].split(":"))
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
    if kind != "s":
        for value in sample.values:
            if kind == "g" and value.startswith(("+", "-")):
                value = value[1:]
            try:
                number = float(value)
            except ValueError:
                raise Malformed("value") from None
            if not math.isfinite(number):
                raise Malformed("value")
    return sample


class Aggregator:
    """The state of one flush interval (and the gauges' last values, kept across them)."""

    def __init__(self) -> None:
        self.counters: dict[Key, float] = {}
        self.gauges: dict[Key, float] = {}
        self.updated: set[Key] = set()
        self.sets: dict[Key, set[str]] = {}
        self.samples: list[MetricEvent] = []
        self._tags: dict[tuple[tuple[str, str], ...], msgspec.Raw] = {}

    def as_json(self, tags: Tags) -> msgspec.Raw:
        found = self._tags.get(tags)
        if found is None:
            if len(self._tags) > 100_000:
                self._tags.clear()
            found = self._tags[tags] = msgspec.Raw(msgspec.json.encode(dict(tags)))
        return found

    def add(self, sample: Sample) -> None:
        kind = sample.kind
        key: Key = (sample.name, TYPES[kind], tuple(sorted(sample.tags.items())))
        if kind == "c":
            self.counters[key] = self.counters.get(key, 0.0) + sum(
                float(v) / sample.rate for v in sample.values
            )
        elif kind == "g":
            for value in sample.values:
                if value.startswith(("+", "-")):
                    self.gauges[key] = self.gauges.get(key, 0.0) + float(value)
                else:
                    self.gauges[key] = float(value)
            self.updated.add(key)
        elif kind == "s":
            self.sets.setdefault(key, set()).update(sample.values)
        else:
            for value in sample.values:
                self.samples.append(
                    MetricEvent(
                        metric_name=key[0],
                        value=float(value),
                        metric_type=key[1],  # type: ignore[arg-type]
                        tags=self.as_json(key[2]),
                        timestamp=sample.timestamp,
                    )
                )

    def flush(self, now: datetime) -> list[MetricEvent]:
        def event(key: Key, value: float) -> MetricEvent:
            name, metric_type, tags = key
            return MetricEvent(
                metric_name=name,
                value=value,
                metric_type=metric_type,  # type: ignore[arg-type]
                tags=self.as_json(tags),
                timestamp=now,
            )

        events = self.samples
        events += [event(key, total) for key, total in self.counters.items()]
        events += [event(key, self.gauges[key]) for key in self.updated]
        events += [event(key, float(len(members))) for key, members in self.sets.items()]
        self.samples, self.counters, self.sets, self.updated = [], {}, {}, set()
        return events


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
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        lines = self.metrics.statsd_lines
        for raw in data.split(b"\n"):
            raw = raw.strip()
            if not raw:
                continue
            try:
                self.aggregator.add(parse(raw.decode()))
            except UnicodeDecodeError:
                lines.labels("malformed_encoding").inc()
            except Malformed as bad:
                lines.labels(f"malformed_{bad.reason}").inc()
            except Exception:  # a bug: reported, and the listener goes on
                log.exception("StatsD: a line could not be handled: %r", raw[:200])
                lines.labels("error").inc()
            else:
                lines.labels("accepted").inc()

    async def _flush_forever(self) -> None:
        interval = self.settings.statsd_flush_ms / 1000
        while True:
            await asyncio.sleep(interval)
            await self.flush()

    async def flush(self) -> None:
        """The interval's events, committed in batches of CHUNK (together, so that the group
        commit takes them in as few transactions as it can)."""
        events = self.aggregator.flush(datetime.now(UTC))
        size = min(CHUNK, self.settings.ingest.max_batch_events)
        chunks = [events[i : i + size] for i in range(0, len(events), size)]
        await asyncio.gather(*(self._submit(chunk) for chunk in chunks))

    async def _submit(self, events: list[MetricEvent]) -> None:
        for _ in range(RETRIES):
            if not events:
                return
            try:
                batch = validate(events, datetime.now(UTC), self.settings.ingest, self.tagsets)
                outcome = await self.committer.submit(batch, None)
            except ValidationFailed as refused:
                dropped = {d["index"] for d in refused.details if isinstance(d.get("index"), int)}
                if not dropped:
                    break
                self.metrics.statsd_events.labels("refused").inc(len(dropped))
                log.warning("StatsD: %d event(s) refused: %s", len(dropped), refused.message)
                events = [e for i, e in enumerate(events) if i not in dropped]
                continue
            except ApiError as failed:  # the queue full, the database away: dropped
                self.metrics.statsd_events.labels(failed.code).inc(len(events))
                log.warning("StatsD: %d event(s) dropped: %s", len(events), failed.message)
                return
            stored(self.metrics, "metric", outcome.accepted, 0)
            self.metrics.statsd_events.labels("stored").inc(outcome.accepted)
            return
        if events:
            self.metrics.statsd_events.labels("refused").inc(len(events))
