"""The emitters' protocols (`--only protocols`): samples/s of each next to the JSON batch path
and raw COPY, in one run on one database, and the same payloads into a local VictoriaMetrics.

The same samples each way: SERIES series of one gauge (`node_load` with a `host` tag), batches
of BATCH_SIZE samples stamped on arrival, CLIENTS senders back to back for SECONDS each:

1. JSON: POST /api/v1/analytics/metrics/batch (the reference of the ratios);
2. InfluxDB line protocol: POST /api/v2/write, `node,host=hN load=V` per sample;
3. StatsD: timer lines (`node_load:V|ms|#host:hN`, each a sample kept as an event), 25 to a
   datagram, paced at STATSD_RATE samples/s for SECONDS from one sender: what is stored and
   what UDP lost;
4. Prometheus remote write 1.0: POST /api/v1/write, the same samples as the gauge
   `node_load_rw`, one TimeSeries per host, snappy; every body is distinct (timestamps move on),
   since a body sent again is a retry, answered from its Idempotency-Key;
   And as Prometheus 2.42 sends scrapes: `node_scrape_M_total` counters (50 metrics x 100
   instances, `job` and `instance` labels) scraped each second (running totals: stored as
   increases), CLIENTS shards each sending its own share of the series in time order, 500
   samples a request (its max_samples_per_send), one request in flight a shard; and the same
   scrapes as JSON batches (the counters' increases), to compare in the same shape;
5. OTLP/HTTP: POST /v1/metrics, protobuf, the same samples as points of the gauge
   `node_load_otlp` with a `host` attribute, every body distinct as for remote write;
6. raw binary COPY of the same rows into the hypertable (the database's own rate);
7. VictoriaMetrics 1.79 (Debian's package) taking the line-protocol bodies at its /write and
   the remote-write bodies at its /api/v1/write (it reads no OTLP before 1.92).
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from typing import Any

import asyncpg
import cramjam
import msgspec
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as otlp_service
from opentelemetry.proto.common.v1 import common_pb2 as otlp_common
from opentelemetry.proto.metrics.v1 import metrics_pb2 as otlp_metrics

from bench import load
from bench.overload import BATCH, capacity
from bench.storage import VictoriaMetrics
from ingest.proto import remote_write_v1_pb2 as v1

METRIC = "node_load"
TYPE = "gauge"  # what line protocol makes of a field
SERIES = 1000
BATCH_SIZE = 5_000
CLIENTS = 4
SECONDS = 15.0
BODIES = 20
STATSD_RATE = 50_000  # samples/s offered
STATSD_LINES = 25  # per datagram (~900 bytes)


def samples(seed: int) -> list[list[tuple[int, float]]]:
    rng = random.Random(seed)
    return [
        [(rng.randrange(SERIES), round(rng.lognormvariate(1.0, 0.5), 3)) for _ in range(BATCH_SIZE)]
        for _ in range(BODIES)
    ]


def json_bodies(batches: list[list[tuple[int, float]]]) -> list[bytes]:
    return [
        msgspec.json.encode(
            [
                {
                    "metric_name": METRIC,
                    "metric_type": "gauge",
                    "value": v,
                    "tags": {"host": f"h{h}"},
                }
                for h, v in batch
            ]
        )
        for batch in batches
    ]


def line_bodies(batches: list[list[tuple[int, float]]]) -> list[bytes]:
    return ["\n".join(f"node,host=h{h} load={v}" for h, v in batch).encode() for batch in batches]


REMOTE_WRITE_BODIES = 400  # distinct bodies: more than 15 s can send at 100,000 samples/s
REMOTE_WRITE_HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


def remote_write_bodies(batches: list[list[tuple[int, float]]]) -> list[bytes]:
    """Snappy WriteRequests of the same samples, each body its own milliseconds (an hour ago
    on): one TimeSeries per host, its samples in time order."""
    start = int(time.time() * 1000) - 3_600_000
    bodies = []
    for number in range(REMOTE_WRITE_BODIES):
        batch = batches[number % len(batches)]
        by_host: dict[int, list[tuple[int, float]]] = {}
        for offset, (host, value) in enumerate(batch):
            by_host.setdefault(host, []).append((start + number * BATCH_SIZE + offset, value))
        request = v1.WriteRequest(
            timeseries=[
                v1.TimeSeries(
                    labels=[
                        v1.Label(name="__name__", value=f"{METRIC}_rw"),
                        v1.Label(name="host", value=f"h{host}"),
                    ],
                    samples=[v1.Sample(value=v, timestamp=t) for t, v in points],
                )
                for host, points in sorted(by_host.items())
            ]
        )
        bodies.append(bytes(cramjam.snappy.compress_raw(request.SerializeToString())))
    return bodies


SCRAPE_METRICS, SCRAPE_INSTANCES = 50, 100
SCRAPE_SECONDS = 240  # scrapes generated: more than 15 s can send at 80,000 samples/s
SCRAPE_PER_SEND = 500  # Prometheus 2.42's max_samples_per_send


Scrape = list[tuple[int, int, int]]  # (metric, instance, second) samples of a request


def _scrape_request(points: Scrape, start: int) -> bytes:
    """A snappy WriteRequest of the scrape counters' samples."""
    request = v1.WriteRequest(
        timeseries=[
            v1.TimeSeries(
                labels=[
                    v1.Label(name="__name__", value=f"node_scrape_{m}_total"),
                    v1.Label(name="instance", value=f"10.0.0.{i}:9100"),
                    v1.Label(name="job", value="node"),
                ],
                samples=[v1.Sample(value=second * (m + i + 1), timestamp=start + second * 1000)],
            )
            for m, i, second in points
        ]
    )
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def _scrape_json(points: Scrape, start: int) -> bytes:
    """The same samples as our JSON batch: the counters' increases, as our counters are sent."""
    return msgspec.json.encode(
        [
            {
                "metric_name": f"node_scrape_{m}_json",
                "metric_type": "counter",
                "value": m + i + 1,
                "tags": {"instance": f"10.0.0.{i}:9100", "job": "node"},
                "timestamp": (start + second * 1000) / 1000,
            }
            for m, i, second in points
        ]
    )


def _scrapes() -> list[Scrape]:
    """What Prometheus 2.42 sends of 5,000 counter series scraped each second (from an hour
    ago): CLIENTS shards, each its own share of the series in time order, at most
    SCRAPE_PER_SEND samples a request. Request j * CLIENTS + k is shard k's j-th
    (bench.overload.capacity's sender k sends those). The last five hold the first scrape:
    bench runs send them first, to register the series (a counter sample at or before its
    series' newest is not stored again)."""
    everything = [(m, i) for m in range(SCRAPE_METRICS) for i in range(SCRAPE_INSTANCES)]
    sends = []
    for shard in (everything[k::CLIENTS] for k in range(CLIENTS)):
        stream = [(m, i, second) for second in range(1, SCRAPE_SECONDS + 1) for m, i in shard]
        sends.append(
            [stream[at : at + SCRAPE_PER_SEND] for at in range(0, len(stream), SCRAPE_PER_SEND)]
        )
    first = [(m, i, 0) for m, i in everything]
    step = len(first) // 5
    return [
        *(points for round_ in zip(*sends, strict=True) for points in round_),
        *(first[n * step : (n + 1) * step] for n in range(5)),
    ]


def scrape_bodies() -> tuple[list[bytes], list[bytes]]:
    """The scrapes (_scrapes) as remote write sends them, and as JSON batches."""
    start = int(time.time() * 1000) - 3_600_000
    scrapes = _scrapes()
    return (
        [_scrape_request(points, start) for points in scrapes],
        [_scrape_json(points, start) for points in scrapes],
    )


def otlp_bodies(batches: list[list[tuple[int, float]]]) -> list[bytes]:
    """ExportMetricsServiceRequests of the same samples, as remote_write_bodies dates them."""
    start = (int(time.time() * 1000) - 3_600_000) * 1_000_000
    bodies = []
    for number in range(REMOTE_WRITE_BODIES):
        points = [
            otlp_metrics.NumberDataPoint(
                as_double=value,
                time_unix_nano=start + (number * BATCH_SIZE + offset) * 1_000_000,
                attributes=[otlp_common.KeyValue(key="host", value={"string_value": f"h{host}"})],
            )
            for offset, (host, value) in enumerate(batches[number % len(batches)])
        ]
        metric = otlp_metrics.Metric(
            name=f"{METRIC}_otlp", gauge=otlp_metrics.Gauge(data_points=points)
        )
        request = otlp_service.ExportMetricsServiceRequest(
            resource_metrics=[
                otlp_metrics.ResourceMetrics(
                    scope_metrics=[otlp_metrics.ScopeMetrics(metrics=[metric])]
                )
            ]
        )
        bodies.append(request.SerializeToString())
    return bodies


def statsd_datagrams(batches: list[list[tuple[int, float]]]) -> list[bytes]:
    lines = [f"{METRIC}_ms:{v}|ms|#host:h{n}" for batch in batches for n, v in batch]
    return [
        "\n".join(lines[i : i + STATSD_LINES]).encode() for i in range(0, len(lines), STATSD_LINES)
    ]


async def _events(url: str, metric: str) -> int:
    """Events stored of the metrics named `metric` (a LIKE pattern)."""
    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM analytics.metric_events AS e JOIN analytics.series AS s "
                "ON s.id = e.series_id JOIN analytics.metrics AS m ON m.id = s.metric_id "
                "WHERE m.name LIKE $1",
                metric,
            )
        )
    finally:
        await conn.close()


def statsd_rate(url: str, port: int, datagrams: list[bytes], flush_s: float) -> dict[str, float]:
    """Datagrams paced at STATSD_RATE samples/s for SECONDS; samples stored per second of the
    sending, once the last flush is in, and the share UDP lost."""
    per_datagram = STATSD_LINES / STATSD_RATE
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < SECONDS:
            ahead = sent * per_datagram - elapsed
            if ahead > 0:
                time.sleep(ahead)
            sender.sendto(datagrams[sent % len(datagrams)], ("127.0.0.1", port))
            sent += 1
        elapsed = time.perf_counter() - started
    time.sleep(flush_s * 3)  # the last flushes, committed
    stored = asyncio.run(_events(url, f"{METRIC}_ms"))
    offered = sent * STATSD_LINES
    return {
        "offered_per_s": offered / elapsed,
        "stored_per_s": stored / elapsed,
        "lost_share": 1 - stored / offered,
    }


OTLP_HEADERS = {"Content-Type": "application/x-protobuf"}


def distinct_bodies(
    url: str,
    base: str,
    metric: str,
    bodies: list[bytes],
    path: str,
    ok: int,
    headers: dict[str, str],
    per_body: int = BATCH_SIZE,
) -> float:
    """Samples/s stored from bodies (of `per_body` samples) each sent once (the last five
    first, to register the series), counted in the database: a body sent again would be a
    retry, stored once."""
    asyncio.run(capacity(base, bodies[-5:], per_body, 1, 1, path, ok, headers))
    before = asyncio.run(_events(url, metric))
    started = time.perf_counter()
    posted = asyncio.run(capacity(base, bodies[:-5], per_body, CLIENTS, SECONDS, path, ok, headers))
    elapsed = time.perf_counter() - started  # every body answered: committed (or refused)
    rate = (asyncio.run(_events(url, metric)) - before) / elapsed
    if rate < 0.95 * posted:
        print(
            "        (fewer stored than posted: bodies were sent twice; raise REMOTE_WRITE_BODIES)"
        )
    return rate


def run(url: str, base: str, statsd_port: int, flush_s: float) -> dict[str, Any]:
    batches = samples(29)
    as_json, as_lines = json_bodies(batches), line_bodies(batches)
    print(f"    warming up ({SERIES:,} series registered) ...", flush=True)
    asyncio.run(capacity(base, as_json, BATCH_SIZE, 2, 3))
    figures: dict[str, float] = {}
    print(f"    JSON batches, {CLIENTS} clients, {SECONDS:g} s ...", flush=True)
    figures["json_batch"] = asyncio.run(capacity(base, as_json, BATCH_SIZE, CLIENTS, SECONDS))
    print(f"    InfluxDB line protocol (/api/v2/write), {CLIENTS} clients ...", flush=True)
    figures["line_protocol"] = asyncio.run(
        capacity(base, as_lines, BATCH_SIZE, CLIENTS, SECONDS, path="/api/v2/write", ok=204)
    )
    print(f"    StatsD timers, {STATSD_RATE:,} samples/s offered over UDP ...", flush=True)
    udp = statsd_rate(url, statsd_port, statsd_datagrams(batches), flush_s)
    figures["statsd"] = udp["stored_per_s"]
    print(f"        {udp['lost_share']:.1%} of the samples offered were lost", flush=True)
    print(f"    Prometheus remote write 1.0 (/api/v1/write), {CLIENTS} clients ...", flush=True)
    as_remote = remote_write_bodies(batches)
    figures["remote_write"] = distinct_bodies(
        url, base, f"{METRIC}_rw", as_remote, "/api/v1/write", 204, REMOTE_WRITE_HEADERS
    )
    scraped = SCRAPE_METRICS * SCRAPE_INSTANCES
    print(
        f"    remote write as Prometheus sends scrapes ({scraped:,} counter series, one sample "
        f"each a second; {CLIENTS} shards, {SCRAPE_PER_SEND} samples a request) ...",
        flush=True,
    )
    scraped_remote, scraped_json = scrape_bodies()
    figures["remote_write_scrapes"] = distinct_bodies(
        url,
        base,
        "node_scrape_%_total",
        scraped_remote,
        "/api/v1/write",
        204,
        REMOTE_WRITE_HEADERS,
        SCRAPE_PER_SEND,
    )
    print("    the same scrapes as JSON batches (their increases), the same shards ...", flush=True)
    figures["json_scrapes"] = distinct_bodies(
        url, base, "node_scrape_%_json", scraped_json, BATCH, 200, {}, SCRAPE_PER_SEND
    )
    print(f"    OTLP/HTTP protobuf (/v1/metrics), {CLIENTS} clients ...", flush=True)
    figures["otlp"] = distinct_bodies(
        url, base, f"{METRIC}_otlp", otlp_bodies(batches), "/v1/metrics", 200, OTLP_HEADERS
    )
    print("    raw binary COPY ...", flush=True)
    ids = asyncio.run(load.series_ids(url, METRIC))
    figures["raw_copy"] = asyncio.run(load.raw_copy(url, ids, 10))
    print("    VictoriaMetrics, the line-protocol bodies at its /write ...", flush=True)
    with VictoriaMetrics() as vm:
        figures["victoriametrics_line_protocol"] = asyncio.run(
            capacity(vm.base, as_lines, BATCH_SIZE, CLIENTS, SECONDS, path="/write", ok=204)
        )
        print("    VictoriaMetrics, the remote-write bodies at its /api/v1/write ...", flush=True)
        figures["victoriametrics_remote_write"] = asyncio.run(
            capacity(
                vm.base,
                as_remote,
                BATCH_SIZE,
                CLIENTS,
                SECONDS,
                "/api/v1/write",
                204,
                REMOTE_WRITE_HEADERS,
            )
        )
    reference = figures["json_batch"]
    for name, rate in figures.items():
        print(
            f"        {name:<32} {rate:>12,.0f} samples/s   {rate / reference:5.2f}x JSON batch",
            flush=True,
        )
    print(
        "        remote write as Prometheus sends scrapes: "
        f"{figures['remote_write_scrapes'] / figures['json_scrapes']:.2f}x the same as JSON",
        flush=True,
    )
    print(
        "targets: remote write and line protocol >= 0.5x the JSON batch rate and >= 100,000 "
        "samples/s"
    )
    return {
        "samples_per_s": figures,
        "statsd": udp,
        "series": SERIES,
        "batch_size": BATCH_SIZE,
    }
