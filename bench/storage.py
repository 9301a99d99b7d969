"""Storage and short ranges (`--only storage`): bytes per event on disk, ours per relation next
to a local VictoriaMetrics' on the same events, and 24-hour queries on both, one run.

Two data sets, as users send them (values lognormal, three decimals; timestamps in whole
milliseconds, the finest VictoriaMetrics keeps):
- sparse: 20 series over 30 days, 1,200,000 events (one per series every 43 s or so);
- dense: 1,000 series at 10 events/s for 5 minutes, 3,000,000 events.

Ours: each set in a scratch database by binary COPY (around the API: the disk figures do not
depend on the way in), the rollup tiers built by a rebuild (`python -m jobs refresh --start
--end`), then what the scheduler would do: the retention job (minute tiers kept for their
horizons only) and, where the edition compresses, every chunk compressed. After VACUUM, each
relation's size with its indexes and TOAST (`hypertable_size`, `pg_total_relation_size`).

VictoriaMetrics: Debian's `victoria-metrics` (installed by bin/ensure-tools),
started on a scratch directory, the same events sent through its JSON line import; after a
forced flush and merge, the size of the directory once it stops changing. Its queries are
`quantile_over_time` and `count_over_time` over 24 hours for one series and for every series
of the metric; ours, GET .../statistics?hours=24 for one series and for the whole metric.
"""

from __future__ import annotations

import asyncio
import math
import random
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx2
import msgspec
import psycopg

from bench import HEADERS, copy_events, new_metric
from jobs import retention
from jobs.compact import rebuild
from sql.migrate import edition

METRIC = "storage.latency"
PROMETHEUS_NAME = "storage_latency"
REPEAT = 30


@dataclass(frozen=True)
class DataSet:
    name: str
    series: int
    span: timedelta
    events: int

    def rows(self, ids: list[int], end: datetime) -> Iterator[tuple[datetime, int, float]]:
        """(time, series index, value), in time order; the same for both stores."""
        rng = random.Random(self.series)
        start_ms = int((end - self.span).timestamp() * 1000)
        span_ms = int(self.span.total_seconds() * 1000)
        for i in range(self.events):
            stamp = start_ms + span_ms * i // self.events
            yield (
                datetime.fromtimestamp(stamp / 1000, UTC),
                ids[rng.randrange(len(ids))],
                round(rng.lognormvariate(3.5, 0.8), 3),
            )


SETS = (
    DataSet("sparse", 20, timedelta(days=30), 1_200_000),
    DataSet("dense", 1000, timedelta(minutes=5), 3_000_000),
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class VictoriaMetrics:
    """Debian's victoria-metrics on a directory of its own, for the length of a `with`."""

    def __init__(self) -> None:
        self.data = Path(tempfile.mkdtemp(prefix="astraeus-vm-"))
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> VictoriaMetrics:
        binary = shutil.which("victoria-metrics")
        if binary is None:
            raise RuntimeError("victoria-metrics is not installed: run bin/ensure-tools")
        self.process = subprocess.Popen(
            [
                binary,
                f"-storageDataPath={self.data}",
                f"-httpListenAddr=127.0.0.1:{self.port}",
                "-retentionPeriod=100y",
                "-search.latencyOffset=0s",  # answer up to now, as our API does
                "-loggerLevel=ERROR",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx2.get(f"{self.base}/health", timeout=1).status_code == 200:
                    return self
            except httpx2.TransportError:
                time.sleep(0.1)
        raise RuntimeError("victoria-metrics did not start")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
        shutil.rmtree(self.data, ignore_errors=True)

    def load(self, rows: Iterator[tuple[datetime, int, float]], names: dict[int, str]) -> None:
        """Every event through /api/v1/import (a JSON line per series), then flushed and
        merged; returns when the directory has stopped changing."""
        per_series: dict[int, tuple[list[float], list[int]]] = {}
        for stamp, series, value in rows:
            values, stamps = per_series.setdefault(series, ([], []))
            values.append(value)
            stamps.append(round(stamp.timestamp() * 1000))
        lines = b"\n".join(
            msgspec.json.encode(
                {
                    "metric": {"__name__": PROMETHEUS_NAME, "pod": names[series]},
                    "values": values,
                    "timestamps": stamps,
                }
            )
            for series, (values, stamps) in per_series.items()
        )
        response = httpx2.post(f"{self.base}/api/v1/import", content=lines, timeout=600)
        response.raise_for_status()
        httpx2.get(f"{self.base}/internal/force_flush", timeout=600).raise_for_status()
        for month in sorted(set(self._months(per_series))):
            httpx2.get(
                f"{self.base}/internal/force_merge",
                params={"partition_prefix": month},
                timeout=600,
            )
        self._settle()

    @staticmethod
    def _months(per_series: dict[int, tuple[list[float], list[int]]]) -> Iterator[str]:
        for _, stamps in per_series.values():
            for stamp in (stamps[0], stamps[-1]):
                yield datetime.fromtimestamp(stamp / 1000, UTC).strftime("%Y_%m")

    def _settle(self) -> None:
        last, stable_since = -1, time.monotonic()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            size = _directory_bytes(self.data)
            if size != last:
                last, stable_since = size, time.monotonic()
            elif time.monotonic() - stable_since >= 5:
                return
            time.sleep(0.5)

    def size(self) -> int:
        return _directory_bytes(self.data)

    def query(self, expression: str, at: datetime) -> Any:
        response = httpx2.get(
            f"{self.base}/api/v1/query",
            params={"query": expression, "time": f"{at.timestamp():.3f}", "nocache": "1"},
            timeout=60,
        )
        response.raise_for_status()
        return response.json()["data"]["result"]


async def _load_ours(url: str, data: DataSet, end: datetime) -> tuple[list[int], dict[int, str]]:
    conn = await asyncpg.connect(url)
    try:
        pods = [f"p{i}" for i in range(data.series)]
        tags = [msgspec.json.encode({"pod": pod}).decode() for pod in pods]
        ids = await new_metric(conn, METRIC, tags)
        await copy_events(conn, data.rows(ids, end))
        return ids, dict(zip(ids, pods, strict=True))
    finally:
        await conn.close()


SIZES = """
SELECT format('%I.%I', hypertable_schema, hypertable_name) AS relation,
       hypertable_size(format('%I.%I', hypertable_schema, hypertable_name)::regclass) AS bytes
FROM timescaledb_information.hypertables
WHERE hypertable_schema = 'analytics'
UNION ALL
SELECT format('%I.%I', n.nspname, c.relname), pg_total_relation_size(c.oid)
FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname IN ('analytics', '_analytics') AND c.relkind = 'r'
  AND c.relname IN ('series', 'metrics', 'series_deltas', 'metric_deltas')
"""
TIERS = ("series_1m", "series_1h", "series_1d", "metric_1m", "metric_1h", "metric_1d")


def _settle_ours(url: str, policy: retention.Policy) -> tuple[str, dict[str, int]]:
    """Retention as the scheduler runs it, compression where the edition has it, VACUUM;
    then the bytes of every relation that holds events or their rollups."""
    retention.apply(url, policy)
    with psycopg.connect(url, autocommit=True) as conn:
        found = edition(conn)
        if found == "timescale":
            compressible = conn.execute(
                "SELECT format('%I.%I', hypertable_schema, hypertable_name) "
                "FROM timescaledb_information.hypertables "
                "WHERE hypertable_schema = 'analytics' AND compression_enabled"
            ).fetchall()
            for (relation,) in compressible:
                conn.execute(
                    "SELECT compress_chunk(c, if_not_compressed => true) "
                    "FROM show_chunks(%s::regclass) AS c",
                    (relation,),
                )
        conn.execute("VACUUM ANALYZE")
        sizes = {str(row[0]): int(row[1] or 0) for row in conn.execute(SIZES).fetchall()}
    return found, sizes


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    latencies = []
    answer = None
    for _ in range(REPEAT):
        started = time.perf_counter()
        answer = call()
        latencies.append(time.perf_counter() - started)
    return statistics.median(latencies) * 1e3, answer


def _short_ranges(base: str, vm: VictoriaMetrics, pod: str, end: datetime) -> dict[str, Any]:
    client = httpx2.Client(base_url=base, headers=HEADERS, timeout=60)
    path = f"/api/v1/analytics/metrics/{METRIC}/statistics"
    one = f'{PROMETHEUS_NAME}{{pod="{pod}"}}'
    figures: dict[str, Any] = {}
    try:
        for label, params, selector in (
            ("one_series", {"hours": "24", "tag.pod": pod}, one),
            ("whole_metric", {"hours": "24"}, PROMETHEUS_NAME),
        ):
            ours_ms, answer = _timed(lambda p=params: client.get(path, params=p).json())
            vm_ms, _ = _timed(
                lambda s=selector: (
                    vm.query(f"quantile_over_time(0.95, {s}[24h])", end),
                    vm.query(f"sum(count_over_time({s}[24h]))", end),
                )
            )
            figures[label] = {
                "ours_p50_ms": ours_ms,
                "victoria_metrics_p50_ms": vm_ms,
                "ratio": ours_ms / vm_ms,
                "count": answer["count"],
            }
    finally:
        client.close()
    return figures


def run(
    url_for: Callable[[str], Any],
    server_for: Callable[[str], Any],
    policy: retention.Policy,
) -> dict[str, Any]:
    """`url_for(name)`: a context giving a scratch database; `server_for(url)`: a context
    giving our API server's base URL on it."""
    results: dict[str, Any] = {}
    for data in SETS:
        print(f"    {data.name}: {data.series:,} series, {data.events:,} events ...", flush=True)
        end = datetime.now(UTC).replace(microsecond=0)
        with url_for(data.name) as url, VictoriaMetrics() as vm:
            ids, names = asyncio.run(_load_ours(url, data, end))
            rebuild(url, end - data.span - timedelta(days=1), end + timedelta(hours=1))
            found, sizes = _settle_ours(url, policy)
            vm.load(data.rows(ids, end), names)
            vm_bytes = vm.size()
            with server_for(url) as base:
                short = _short_ranges(base, vm, names[ids[0]], end)
        raw = sizes["analytics.metric_event_store"]
        tiers = {tier: sizes.get(f"analytics.{tier}", 0) for tier in TIERS}
        rollups = sum(tiers.values())
        other = sum(
            v for k, v in sizes.items() if k.split(".")[1] not in (*TIERS, "metric_event_store")
        )
        total = raw + rollups + other
        figures = {
            "edition": found,
            "events": data.events,
            "series": data.series,
            "bytes": sizes,
            "bytes_per_event": {
                "raw": raw / data.events,
                **{tier: size / data.events for tier, size in tiers.items()},
                "rollups": rollups / data.events,
                "total": total / data.events,
                "victoria_metrics": vm_bytes / data.events,
            },
            "rollups_to_raw": rollups / raw,
            "total_to_victoria_metrics": total / vm_bytes,
            "short_ranges": short,
        }
        results[data.name] = figures
        per = figures["bytes_per_event"]
        print(
            f"        {found} edition: raw {per['raw']:.1f} B/event, rollups "
            f"{per['rollups']:.1f} ({figures['rollups_to_raw']:.0%} of raw: "
            + ", ".join(f"{t} {per[t]:.2f}" for t in TIERS)
            + f"), total {per['total']:.1f}; VictoriaMetrics {per['victoria_metrics']:.2f} "
            f"B/event: ours {figures['total_to_victoria_metrics']:.1f}x",
            flush=True,
        )
        for label, row in short.items():
            print(
                f"        24 h statistics, {label.replace('_', ' ')}: ours p50 "
                f"{row['ours_p50_ms']:.1f} ms, VictoriaMetrics quantile_over_time + "
                f"count_over_time {row['victoria_metrics_p50_ms']:.1f} ms "
                f"({row['ratio']:.2f}x), {row['count']:,} events",
                flush=True,
            )
        if not math.isfinite(figures["total_to_victoria_metrics"]):
            raise RuntimeError("VictoriaMetrics stored nothing")
    return results
