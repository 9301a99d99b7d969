"""Overload benchmark: what the server acknowledges when offered twice what it can store.

1. capacity: POST /metrics/batch of 5,000 events from 4 clients back to back (closed loop), for a
   fixed time: the events per second the server stores at best;
2. overload: batches offered at twice that rate (open loop: each sent at its time on an idle
   connection or a new one, whatever the answers; a refused batch is not retried), for a fixed
   time: events acknowledged per second, the share of requests refused, the latency of the
   accepted and of the refused ones;
3. the server's resident memory at start, before the overload (the baseline: warmed up by the
   capacity phase, every series and connection in place), right after it, and some seconds
   later, when it should be back near the baseline.

The bodies are encoded once up front and sent with a minimal keep-alive client, so that the
load generator costs little of the machine the server runs on.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from bench.ingest import KeepAlive, make_events

BATCH = "/api/v1/analytics/metrics/batch"


@dataclass(frozen=True)
class OverloadWorkload:
    batch_size: int = 5_000
    capacity_clients: int = 4
    capacity_seconds: float = 15
    overload_factor: float = 2.0
    overload_connections: int = 256
    overload_seconds: float = 30
    cooldown_seconds: float = 10


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def capacity(
    base: str,
    bodies: list[bytes],
    events: int,
    clients: int,
    seconds: float,
    path: str = BATCH,
    ok: int = 200,
    headers: dict[str, str] | None = None,
) -> float:
    """Events per second stored by `clients` senders posting `bodies` (of `events` each) to
    `path` back to back for `seconds`; any answer but `ok` stops the run."""
    stored = 0
    deadline = time.perf_counter() + seconds

    async def sender(offset: int) -> None:
        nonlocal stored
        client = KeepAlive(base, headers)
        try:
            i = offset
            while time.perf_counter() < deadline:
                status = await client.post(path, bodies[i % len(bodies)])
                if status != ok:
                    raise RuntimeError(f"{path} answered {status} in the closed loop")
                stored += events
                i += clients
        finally:
            await client.close()

    started = time.perf_counter()
    await asyncio.gather(*(sender(n) for n in range(clients)))
    return stored / (time.perf_counter() - started)


async def offered(
    base: str, bodies: list[bytes], events: int, rate: float, seconds: float, most: int
) -> dict[str, Any]:
    """Batches sent at a fixed pace adding up to `rate` events/s for `seconds`, each on an idle
    connection or a new one (at most `most` at once): an open loop, whatever the answers."""
    interval = events / rate  # seconds between two batches
    accepted: list[float] = []
    refused: list[float] = []
    other: dict[int, int] = {}
    skipped = 0
    idle: list[KeepAlive] = []
    opened: list[KeepAlive] = []
    tasks: set[asyncio.Task[None]] = set()

    async def send(body: bytes) -> None:
        client = idle.pop() if idle else KeepAlive(base)
        if client not in opened:
            opened.append(client)
        t = time.perf_counter()
        try:
            status = await client.post(BATCH, body)
        except (OSError, asyncio.IncompleteReadError):
            status = 0
            await client.close()
        took = time.perf_counter() - t
        if status == 200:
            accepted.append(took)
        elif status == 429:
            refused.append(took)
        else:
            other[status] = other.get(status, 0) + 1
        idle.append(client)

    started = time.perf_counter()
    n = 0
    while (slot := started + n * interval) < started + seconds:
        now = time.perf_counter()
        if slot > now:
            await asyncio.sleep(slot - now)
        if len(tasks) >= most:
            skipped += 1  # the generator's own limit; counted as offered and not answered
        else:
            task = asyncio.create_task(send(bodies[n % len(bodies)]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        n += 1
    elapsed = time.perf_counter() - started
    await asyncio.gather(*tasks)
    for client in opened:
        await client.close()
    answered = len(accepted) + len(refused) + sum(other.values())
    return {
        "offered_events_per_s": n * events / elapsed,
        "acknowledged_events_per_s": len(accepted) * events / elapsed,
        "requests": n,
        "refused_share": len(refused) / answered if answered else 0.0,
        "not_sent": skipped,
        "other_statuses": other,
        "connections": len(opened),
        "accepted_p50_ms": statistics.median(accepted) * 1e3 if accepted else float("nan"),
        "accepted_p99_ms": percentile(accepted, 0.99) * 1e3,
        "accepted_max_ms": max(accepted, default=float("nan")) * 1e3,
        "refused_p50_ms": statistics.median(refused) * 1e3 if refused else float("nan"),
        "refused_p99_ms": percentile(refused, 0.99) * 1e3,
    }


def run(base: str, pid: int, workload: OverloadWorkload) -> dict[str, Any]:
    events = make_events(workload.batch_size * 20, seed=13)
    bodies = [
        msgspec.json.encode(events[i : i + workload.batch_size])
        for i in range(0, len(events), workload.batch_size)
    ]
    print("    warming up (registers every series) ...", flush=True)
    asyncio.run(capacity(base, bodies, workload.batch_size, 2, 3))
    rss_start = rss_mb(pid)
    print(f"    capacity, closed loop, {workload.capacity_clients} clients ...", flush=True)
    cap = asyncio.run(
        capacity(
            base, bodies, workload.batch_size, workload.capacity_clients, workload.capacity_seconds
        )
    )
    print(f"    {cap:,.0f} events/s", flush=True)
    rss_before = rss_mb(pid)
    target = cap * workload.overload_factor
    print(
        f"    offered {target:,.0f} events/s ({workload.overload_factor:g}x) from "
        f"up to {workload.overload_connections} connections "
        f"for {workload.overload_seconds:g} s ...",
        flush=True,
    )
    overload = asyncio.run(
        offered(
            base,
            bodies,
            workload.batch_size,
            target,
            workload.overload_seconds,
            workload.overload_connections,
        )
    )
    rss_after = rss_mb(pid)
    time.sleep(workload.cooldown_seconds)
    rss_cooled = rss_mb(pid)
    result = {
        "workload": workload.__dict__,
        "capacity_events_per_s": cap,
        **overload,
        "acknowledged_to_capacity": overload["acknowledged_events_per_s"] / cap,
        "rss_mb": {
            "start": rss_start,
            "before_overload": rss_before,
            "after_overload": rss_after,
            "after_cooldown": rss_cooled,
        },
        "rss_after_cooldown_over_baseline_mb": rss_cooled - rss_before,
    }
    print(
        f"    offered {overload['offered_events_per_s']:,.0f} events/s, acknowledged "
        f"{overload['acknowledged_events_per_s']:,.0f} "
        f"({result['acknowledged_to_capacity']:.0%} of capacity), "
        f"{overload['refused_share']:.0%} of requests refused",
        flush=True,
    )
    print(
        f"    accepted p50 {overload['accepted_p50_ms']:.0f} ms, p99 "
        f"{overload['accepted_p99_ms']:.0f} ms; refused p99 {overload['refused_p99_ms']:.1f} ms",
        flush=True,
    )
    print(
        f"    server RSS {rss_start:.0f} MB at start, {rss_before:.0f} MB before the overload "
        f"(baseline, warmed up by the capacity phase), {rss_after:.0f} MB right after, "
        f"{rss_cooled:.0f} MB {workload.cooldown_seconds:g} s later "
        f"({rss_cooled - rss_before:+.0f} MB over the baseline)",
        flush=True,
    )
    return result
