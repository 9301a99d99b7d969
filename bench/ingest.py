"""Ingest benchmark: our HTTP paths against the database's own bulk-load path, in one run.

1. raw: asyncpg binary COPY of the same rows (float8 values) into analytics.metric_event_store, one
   connection, one transaction per batch (what our path does at best);
2. batch: POST /metrics/batch from several concurrent clients, the same events as JSON;
3. record: POST /metrics/record, one event per request, from 50+ concurrent clients.

The server, the database and this load generator share the machine, as they do here.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx2
import msgspec

from bench import HEADERS, copy_floats

METRICS = 300
TAG_SETS_PER_METRIC = 8
ENDPOINTS = ["/api/agents", "/api/contracts", "/api/users", "/api/payments", "/api/search"]
REGIONS = ["eu-west", "us-east", "ap-south"]
SPREAD_S = float(__import__("os").environ.get("BENCH_SPREAD_S", "86400"))
TYPES = ["counter", "gauge", "histogram", "timer"]


@dataclass(frozen=True)
class Workload:
    events: int = 400_000
    batch_size: int = 5_000
    batch_clients: int = 4
    record_clients: int = 50
    records: int = 10_000


def make_events(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """Realistic events: hundreds of metrics, a few tag sets each, over the last day."""
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    series = []
    for m in range(METRICS):
        name = f"svc{m % 30}.{['latency', 'requests', 'errors', 'queue', 'bytes'][m % 5]}.m{m}"
        metric_type = TYPES[m % 4]
        for t in range(TAG_SETS_PER_METRIC):
            tags = {
                "endpoint": ENDPOINTS[t % len(ENDPOINTS)],
                "region": REGIONS[t % len(REGIONS)],
                "method": "GET" if t % 2 else "POST",
            }
            series.append((name, metric_type, tags))
    events = []
    for _ in range(count):
        name, metric_type, tags = series[rng.randrange(len(series))]
        when = now - timedelta(seconds=rng.uniform(0, SPREAD_S))
        events.append(
            {
                "metric_name": name,
                "value": round(rng.lognormvariate(4, 1), 3),
                "metric_type": metric_type,
                "tags": tags,
                "timestamp": when.isoformat(),
            }
        )
    return events


def batches(events: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


async def raw_copy(url: str, events: list[dict[str, Any]], batch_size: int) -> float:
    """Events per second of a plain binary COPY of the same rows, series ids resolved up front."""
    conn = await asyncpg.connect(url)
    try:
        ids = {
            (r["name"], tuple(sorted(msgspec.json.decode(r["tags"]).items()))): r["id"]
            for r in await conn.fetch(
                "SELECT s.id, m.name, s.tags::text AS tags FROM analytics.series s "
                "JOIN analytics.metrics m ON m.id = s.metric_id"
            )
        }
        rows = [
            (
                datetime.fromisoformat(e["timestamp"]),
                ids[(e["metric_name"], tuple(sorted(e["tags"].items())))],
                e["value"],
            )
            for e in events
        ]
        started = time.perf_counter()
        for i in range(0, len(rows), batch_size):
            async with conn.transaction():
                await copy_floats(conn, rows[i : i + batch_size])
        return len(rows) / (time.perf_counter() - started)
    finally:
        await conn.close()


async def http_batches(base: str, events: list[dict[str, Any]], size: int, clients: int) -> float:
    """Events per second through POST /metrics/batch with `clients` concurrent senders."""
    bodies = [msgspec.json.encode(b) for b in batches(events, size)]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    limits = httpx2.Limits(max_connections=clients)
    async with httpx2.AsyncClient(
        base_url=base, timeout=60, limits=limits, headers=HEADERS
    ) as client:

        async def sender() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                response = await client.post(
                    "/api/v1/analytics/metrics/batch",
                    content=body,
                    headers={"content-type": "application/json"},
                )
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(clients)))
        return len(events) / (time.perf_counter() - started)


class KeepAlive:
    """A minimal HTTP/1.1 keep-alive client for small POSTs.

    With 50+ clients of single events, a general-purpose client (httpx) costs the load generator
    more CPU than the server spends on the request; on a 2-core machine that would measure the
    client. This one costs a few microseconds per request.
    """

    def __init__(self, base: str, headers: dict[str, str] | None = None) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.headers = {"Content-Type": "application/json", **HEADERS, **(headers or {})}
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        extra = "".join(f"{name}: {value}\r\n" for name, value in self.headers.items())
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"{extra}Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        response = await self.reader.readuntil(b"\r\n\r\n")
        status = int(response[9:12])
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", response)
        await self.reader.readexactly(int(length.group(1)) if length else 0)
        if re.search(rb"(?i)\r\nconnection: *close", response):
            await self.close()  # the next request opens a new connection
        return status

    async def close(self) -> None:
        if self.writer is not None:
            writer, self.writer = self.writer, None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def http_records(base: str, events: list[dict[str, Any]], clients: int) -> dict[str, float]:
    """Single-event POST /metrics/record from `clients` concurrent connections: rate, latency."""
    bodies = [msgspec.json.encode(e) for e in events]
    latencies: list[float] = []

    async def sender(mine: list[bytes]) -> None:
        client = KeepAlive(base)
        try:
            for body in mine:
                started = time.perf_counter()
                status = await client.post("/api/v1/analytics/metrics/record", body)
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    raise RuntimeError(f"record answered {status}")
        finally:
            await client.close()

    started = time.perf_counter()
    await asyncio.gather(*(sender(bodies[i::clients]) for i in range(clients)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "events_per_s": len(bodies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }
