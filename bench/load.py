"""Queries under load (`--only load`): the read path while ingest runs near its capacity.

1. history: a day of events for SERIES series of one metric, loaded by binary COPY and built
   into the rollup tiers (`python -m jobs refresh --start --end`), so that 24-hour windows have
   something to read;
2. raw COPY: the same rows (float8 values) into analytics.metric_event_store for a few seconds (the
   database's own bulk-load rate, the reference of the ratio);
3. capacity: POST /metrics/batch of 5,000 events (no timestamp: stamped on arrival, as a live
   stream) from 4 clients back to back;
4. load: batches offered at LOAD_SHARE of that capacity (open loop) for the given time, while
   another process runs, round robin, the queries a dashboard runs (24-hour statistics of the
   whole metric and of one series, the 24-hour time series at 1 m) and, once a second, records
   one event and polls its series' statistics until it is counted (acknowledged -> visible).

The server runs with its defaults (access log on, compactor and scheduler running).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx2
import msgspec

from bench import HEADERS, copy_events, copy_floats
from bench.overload import capacity, offered, percentile
from jobs.compact import rebuild

METRIC = "load.latency"
SERIES = 1000
BATCH_SIZE = 5_000
LOAD_SHARE = 0.8
QUERIES = {
    "statistics_24h_metric": ("statistics", {"hours": "24"}),
    "statistics_24h_series": ("statistics", {"hours": "24", "tag.pod": "p7"}),
    "timeseries_24h_1m_metric": ("time-series", {"hours": "24", "interval": "1m", "agg": "p95"}),
}


def bodies(count: int, seed: int = 5) -> list[bytes]:
    rng = random.Random(seed)
    encoded = []
    for _ in range(count):
        batch = [
            {
                "metric_name": METRIC,
                "metric_type": "timer",
                "value": round(rng.lognormvariate(3.5, 0.8), 3),
                "tags": {"pod": f"p{rng.randrange(SERIES)}"},
            }
            for _ in range(BATCH_SIZE)
        ]
        encoded.append(msgspec.json.encode(batch))
    return encoded


async def series_ids(url: str, metric: str = METRIC) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT s.id FROM analytics.series AS s JOIN analytics.metrics AS m "
            "ON m.id = s.metric_id WHERE m.name = $1 ORDER BY s.id",
            metric,
        )
        return [row["id"] for row in rows]
    finally:
        await conn.close()


async def history(url: str, ids: list[int], events: int, end: datetime) -> None:
    rng = random.Random(17)
    conn = await asyncpg.connect(url)
    try:

        def rows() -> Any:
            for _ in range(events):
                yield (
                    end - timedelta(seconds=rng.uniform(60, 86_400)),
                    ids[rng.randrange(len(ids))],
                    round(rng.lognormvariate(3.5, 0.8), 3),
                )

        await copy_events(conn, rows())
    finally:
        await conn.close()


async def raw_copy(url: str, ids: list[int], seconds: float) -> float:
    """Events per second of binary COPY of 5,000-event batches (one transaction each)."""
    rng = random.Random(23)
    conn = await asyncpg.connect(url)
    stored = 0
    try:
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            now = datetime.now(UTC)
            batch = [
                (now, ids[rng.randrange(len(ids))], round(rng.lognormvariate(3.5, 0.8), 3))
                for _ in range(BATCH_SIZE)
            ]
            async with conn.transaction():
                await copy_floats(conn, batch)
            stored += BATCH_SIZE
        return stored / (time.perf_counter() - started)
    finally:
        await conn.close()


def _prober(base: str, headers: dict[str, str], seconds: float, out: Any) -> None:
    """The query side, in a process of its own: latencies per query, and ack -> visible."""
    timings: dict[str, list[float]] = {name: [] for name in QUERIES}
    visible: list[float] = []
    missed = 0
    client = httpx2.Client(base_url=base, headers=headers, timeout=30)
    path = f"/api/v1/analytics/metrics/{METRIC}"
    started = time.monotonic()
    next_probe = started
    probe = 0
    while time.monotonic() - started < seconds:
        for name, (kind, params) in QUERIES.items():
            t = time.perf_counter()
            response = client.get(f"{path}/{kind}", params=params)
            timings[name].append(time.perf_counter() - t)
            if response.status_code != 200:
                raise RuntimeError(f"{name} answered {response.status_code}: {response.text}")
        if time.monotonic() >= next_probe:
            next_probe += 1.0
            probe += 1
            tags = {"pod": "probe"}
            before = client.get(f"{path}/statistics", params={"hours": "1", "tag.pod": "probe"})
            count = before.json()["count"]
            record = {"metric_name": METRIC, "metric_type": "timer", "value": 1.0, "tags": tags}
            response = client.post("/api/v1/analytics/metrics/record", json=record)
            acked = time.perf_counter()
            if response.status_code != 200:
                missed += 1
                continue
            while True:
                seen = client.get(f"{path}/statistics", params={"hours": "1", "tag.pod": "probe"})
                if seen.json()["count"] > count:
                    visible.append(time.perf_counter() - acked)
                    break
                if time.perf_counter() - acked > 5:
                    missed += 1
                    break
    client.close()
    out.put({"timings": timings, "visible": visible, "missed": missed})


def _figures(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": statistics.median(values) * 1e3 if values else float("nan"),
        "p95_ms": percentile(values, 0.95) * 1e3,
        "max_ms": max(values, default=float("nan")) * 1e3,
    }


def run(url: str, base: str, seconds: float, history_events: int) -> dict[str, Any]:
    sent = bodies(20)
    print(f"    warming up ({SERIES:,} series registered) ...", flush=True)
    asyncio.run(capacity(base, sent, BATCH_SIZE, 2, 3))
    ids = asyncio.run(series_ids(url))
    end = datetime.now(UTC)
    print(f"    history: {history_events:,} events over the last day, COPY + rebuild ...")
    asyncio.run(history(url, ids, history_events, end))
    rebuild(url, end - timedelta(days=1, hours=1), end + timedelta(hours=1))
    print("    raw binary COPY, 10 s ...", flush=True)
    raw = asyncio.run(raw_copy(url, ids, 10))
    print(f"        {raw:,.0f} events/s", flush=True)
    print("    our capacity, closed loop, 4 clients, 15 s ...", flush=True)
    ours = asyncio.run(capacity(base, sent, BATCH_SIZE, 4, 15))
    print(f"        {ours:,.0f} events/s ({ours / raw:.2f} of raw COPY)", flush=True)
    target = ours * LOAD_SHARE
    print(
        f"    load: {target:,.0f} events/s offered for {seconds:g} s, queries alongside ...",
        flush=True,
    )
    out: multiprocessing.Queue[dict[str, Any]] = multiprocessing.Queue()
    prober = multiprocessing.Process(
        target=_prober, args=(base, dict(HEADERS), seconds, out), daemon=True
    )
    prober.start()
    load = asyncio.run(offered(base, sent, BATCH_SIZE, target, seconds, 64))
    probed = out.get(timeout=120)
    prober.join(timeout=30)
    queries = {name: _figures(values) for name, values in probed["timings"].items()}
    visible = _figures(probed["visible"])
    for name, figures in queries.items():
        print(
            f"        {name:<26} p50 {figures['p50_ms']:7.1f} ms  p95 {figures['p95_ms']:7.1f} ms"
            f"  max {figures['max_ms']:7.1f} ms  ({figures['n']} queries)",
            flush=True,
        )
    print(
        f"        acknowledged -> visible      p50 {visible['p50_ms']:7.1f} ms  p95 "
        f"{visible['p95_ms']:7.1f} ms  max {visible['max_ms']:7.1f} ms  "
        f"({visible['n']} probes, {probed['missed']} not seen within 5 s)",
        flush=True,
    )
    print(
        f"        ingest acknowledged {load['acknowledged_events_per_s']:,.0f} events/s "
        f"({load['acknowledged_events_per_s'] / ours:.2f} of capacity), "
        f"{load['refused_share']:.1%} refused",
        flush=True,
    )
    return {
        "series": SERIES,
        "history_events": history_events,
        "raw_copy_events_per_s": raw,
        "capacity_events_per_s": ours,
        "capacity_to_raw_copy": ours / raw,
        "offered_events_per_s": target,
        "load": load,
        "queries": queries,
        "acknowledged_to_visible": visible,
        "probes_not_seen": probed["missed"],
    }
