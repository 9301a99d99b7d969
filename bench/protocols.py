"""The emitters' protocols (`--only protocols`): samples/s of each next to the JSON batch path
and raw COPY, in one run on one database, and the same payloads into a local VictoriaMetrics.

The same samples each way: SERIES series of one gauge (`node_load` with a `host` tag), batches
of BATCH_SIZE samples stamped on arrival, CLIENTS senders back to back for SECONDS each:

1. JSON: POST /api/v1/analytics/metrics/batch (the reference of the ratios);
2. InfluxDB line protocol: POST /api/v2/write, `node,host=hN load=V` per sample;
3. raw binary COPY of the same rows into the hypertable (the database's own rate);
4. VictoriaMetrics 1.79 (Debian's package) taking the line-protocol bodies at its /write.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import msgspec

from bench import load
from bench.overload import capacity
from bench.storage import VictoriaMetrics

METRIC = "node_load"
TYPE = "gauge"  # what line protocol makes of a field
SERIES = 1000
BATCH_SIZE = 5_000
CLIENTS = 4
SECONDS = 15.0
BODIES = 20


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


def run(url: str, base: str) -> dict[str, Any]:
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
    print("    raw binary COPY ...", flush=True)
    ids = asyncio.run(load.series_ids(url, METRIC))
    figures["raw_copy"] = asyncio.run(load.raw_copy(url, ids, 10))
    print("    VictoriaMetrics, the line-protocol bodies at its /write ...", flush=True)
    with VictoriaMetrics() as vm:
        figures["victoriametrics_line_protocol"] = asyncio.run(
            capacity(vm.base, as_lines, BATCH_SIZE, CLIENTS, SECONDS, path="/write", ok=204)
        )
    reference = figures["json_batch"]
    for name, rate in figures.items():
        print(
            f"        {name:<32} {rate:>12,.0f} samples/s   {rate / reference:5.2f}x JSON batch",
            flush=True,
        )
    print(
        "targets: line protocol >= 0.5x the JSON batch rate and >= 100,000 samples/s "
        "(remote write, OTLP and StatsD: issue 16, to come)"
    )
    return {"samples_per_s": figures, "series": SERIES, "batch_size": BATCH_SIZE}
