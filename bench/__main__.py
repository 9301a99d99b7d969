"""`python -m bench` (make bench): benchmarks against a throwaway database on DATABASE_URL's server.

Prints each figure and the ratios, and writes them as JSON under bench-results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx2
import psycopg
from psycopg import sql as pgsql

from auth import keys
from bench import (
    HEADERS,
    alerts,
    analytics,
    cardinality,
    durable,
    health,
    ingest,
    load,
    overload,
    protocols,
    queries,
    storage,
)
from bench import record as record_path
from core.settings import load as load_settings
from jobs.periodic import retention_policy
from sql.migrate import migrate

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def database_url(server_url: str, name: str) -> str:
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


KEYS: dict[str, str] = {}  # database URL -> the run's API key there


class Server:
    """The API server as its own process, as in production."""

    def __init__(self, url: str, log: Path | None = None, **extra: str) -> None:
        """With `log`, the server keeps its default logging (the access log) and writes it
        there; without, it logs warnings only, to this terminal."""
        self.port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "PORT": str(self.port),
            **({} if log else {"LOG_LEVEL": "warning"}),
            **extra,
        }
        self.log = open(log, "ab") if log else None  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service"], env=env, stderr=self.log, stdout=self.log
        )
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx2.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    if url not in KEYS:  # one key per database, for every server on it
                        KEYS[url] = keys.create(url, "bench", list(keys.SCOPES))[1]
                    HEADERS["Authorization"] = f"Bearer {KEYS[url]}"
                    return
            except httpx2.TransportError:
                time.sleep(0.1)
        raise RuntimeError("the API server did not become ready")

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        if self.log is not None:
            self.log.close()


RESULTS = ROOT / "bench-results"


def run_record(url: str, seconds: int) -> dict[str, object]:
    """The record path under wrk, against a server with its default settings and logging."""
    record_path.wrk_path()  # before anything starts: say how to install it
    RESULTS.mkdir(exist_ok=True)
    log = RESULTS / f"server-record-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.log"
    with Server(url, log=log) as server:
        figures = record_path.run(server.base, url, (10, 50), seconds)
    print("target: p99 < 10 ms at 10 and 50 connections")
    return {**figures, "server_log": str(log)}


def run_overload(url: str, workload: overload.OverloadWorkload) -> dict[str, object]:
    with Server(url) as server:
        figures = overload.run(server.base, server.process.pid, workload)
    print(
        "targets at 2x: acknowledged >= 90% of capacity, accepted p99 < "
        "INGEST_COMMIT_TIMEOUT_S, RSS back near its baseline (before the overload)"
    )
    return figures


def run_ingest(url: str, workload: ingest.Workload) -> dict[str, object]:
    print(f"generating {workload.events:,} events ...", flush=True)
    events = ingest.make_events(workload.events)
    records = ingest.make_events(workload.records, seed=11)
    # The workload is built once and never freed: keep the collector from walking it, or its
    # pauses in this load generator show up as request latency.
    gc.collect()
    gc.freeze()
    with Server(url) as server:
        # Registers every series first, so that the raw path can resolve its ids up front.
        asyncio.run(ingest.http_batches(server.base, events[:20_000], 2_000, 2))
        print("1/3 raw binary COPY ...", flush=True)
        raw = asyncio.run(ingest.raw_copy(url, events, workload.batch_size))
        print(f"    {raw:,.0f} events/s", flush=True)
        print(
            f"2/3 HTTP batches of {workload.batch_size:,}, {workload.batch_clients} clients ...",
            flush=True,
        )
        batch = asyncio.run(
            ingest.http_batches(server.base, events, workload.batch_size, workload.batch_clients)
        )
        print(f"    {batch:,.0f} events/s", flush=True)
        print(f"3/3 single-event record, {workload.record_clients} clients ...", flush=True)
        record = asyncio.run(ingest.http_records(server.base, records, workload.record_clients))
        print(
            f"    {record['events_per_s']:,.0f} events/s, p50 {record['p50_ms']:.1f} ms, "
            f"p99 {record['p99_ms']:.1f} ms",
            flush=True,
        )
    print(f"raw COPY        {raw:>12,.0f} events/s")
    print(f"HTTP batch      {batch:>12,.0f} events/s")
    print(f"ratio batch/raw {batch / raw:>12.2f}   (target >= 0.6)")
    print(f"record p99      {record['p99_ms']:>12.1f} ms       (target < 10 ms)")
    return {
        "workload": workload.__dict__,
        "raw_copy_events_per_s": raw,
        "http_batch_events_per_s": batch,
        "batch_to_raw_ratio": batch / raw,
        "record": record,
    }


@contextlib.contextmanager
def scratch_database(server_url: str, suite: str) -> Iterator[str]:
    """A migrated database of its own for one suite, dropped afterwards."""
    name = f"astraeus_bench_{suite}_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    url = database_url(server_url, name)
    try:
        migrate(url)
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(
                pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name))
            )


def run_queries(args: argparse.Namespace, url: str) -> dict[str, object]:
    with Server(url) as server:
        figures = queries.run(url, server.base, args.query_events)
    print("targets: API p95 < 50 ms per query, >= 50x faster than raw at 30 days, errors <= 1%")
    return figures


def run_load(args: argparse.Namespace, url: str) -> dict[str, object]:
    """Queries while ingest runs at 80% of its capacity, against a server with its defaults
    (access log on, the compactor running)."""
    RESULTS.mkdir(exist_ok=True)
    log = RESULTS / f"server-load-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.log"
    with Server(url, log=log) as server:
        figures = load.run(url, server.base, args.load_seconds, args.load_history_events)
    print(
        "targets: each query p95 < 100 ms and acknowledged -> visible < 1 s while ingest runs "
        "at 80% of its capacity; capacity >= 0.7x raw COPY"
    )
    return {**figures, "server_log": str(log)}


@contextlib.contextmanager
def api_server(url: str) -> Iterator[str]:
    with Server(url) as server:
        yield server.base


def run_storage(args: argparse.Namespace, server_url: str) -> dict[str, object]:
    """Bytes per event, ours and a local VictoriaMetrics', and 24-hour queries on both."""
    policy = retention_policy(load_settings({"DATABASE_URL": server_url}))
    figures = storage.run(
        lambda name: scratch_database(server_url, f"storage_{name}"), api_server, policy
    )
    print(
        "targets: rollups <= 20% of raw on both editions, total <= 3x VictoriaMetrics on the "
        "Community edition; 24-hour statistics no slower than VictoriaMetrics'"
    )
    return figures


def run_range_refresh(args: argparse.Namespace, url: str) -> dict[str, object]:
    # No compactor: the suite runs it by hand.
    with Server(url, RUN_SCHEDULER="false") as server:
        figures = queries.range_refresh(url, server.base, args.refresh_events)
    print("target: 30-day statistics after a rebuild as fast as after a compactor round")
    return figures


def run_protocols(args: argparse.Namespace, url: str) -> dict[str, object]:
    port = free_port()
    flush_ms = 1000
    with Server(url, STATSD_ADDR=str(port), STATSD_FLUSH_MS=str(flush_ms)) as server:
        return protocols.run(url, server.base, port, flush_ms / 1000)


def run_cardinality(args: argparse.Namespace, url: str) -> dict[str, object]:
    figures = cardinality.run(url, api_server, args.cardinality_series)
    print(
        "targets: whole-metric statistics and the daily time series < 100 ms, one series "
        "< 50 ms, the tag listing < 100 ms"
    )
    return figures


def run_analytics(args: argparse.Namespace, url: str) -> dict[str, object]:
    with Server(url) as server, Server(url, DASHBOARD_CACHE_S="0") as uncached:
        figures = analytics.run(url, server.base, uncached.base, args.analytics_events)
    print(
        "targets: one user's or agent's analytics p95 < 50 ms, batch tracking a day < 10 s, "
        "dashboard p95 < 200 ms"
    )
    return figures


@dataclass(frozen=True)
class Suite:
    name: str  # --only NAME, the key in the results, the scratch database's suffix
    title: str
    run: Callable[[argparse.Namespace, str], dict[str, object]]  # (args, database URL)
    own_database: bool = True  # else it gets the server's URL and makes its own databases


SUITES = [
    Suite(
        "ingest",
        "ingest",
        lambda args, url: run_ingest(
            url,
            ingest.Workload(
                events=args.events,
                batch_size=args.batch_size,
                batch_clients=args.batch_clients,
                record_clients=args.record_clients,
                records=args.records,
            ),
        ),
    ),
    Suite("record", "record path, wrk", lambda args, url: run_record(url, args.record_seconds)),
    Suite(
        "overload",
        "overload",
        lambda args, url: run_overload(
            url, overload.OverloadWorkload(overload_seconds=args.overload_seconds)
        ),
    ),
    Suite("protocols", "the emitters' protocols", run_protocols),
    Suite("load", "queries under load", run_load),
    Suite("queries", "queries", run_queries),
    Suite("refresh", "range refresh", run_range_refresh),
    Suite("storage", "storage and short ranges", run_storage, own_database=False),
    Suite("cardinality", "cardinality", run_cardinality),
    Suite("analytics", "analytics", run_analytics),
    Suite("alerts", "alerts", lambda args, url: alerts.run(url)),
    Suite("health", "health", lambda args, url: health.run(url)),
]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", choices=[s.name for s in SUITES], help="run one suite")
    parser.add_argument(
        "--record-seconds", type=int, default=30, help="length of each wrk run (default 30)"
    )
    parser.add_argument(
        "--overload-seconds",
        type=float,
        default=overload.OverloadWorkload.overload_seconds,
        help="length of the overload (default 30)",
    )
    parser.add_argument(
        "--load-seconds", type=float, default=300, help="length of the load (default 300)"
    )
    parser.add_argument(
        "--load-history-events",
        type=int,
        default=2_000_000,
        help="events of the day before, for the load suite's 24-hour windows (default 2 million)",
    )
    parser.add_argument(
        "--cardinality-series",
        type=int,
        default=100_000,
        help="series of the cardinality suite's metric (default 100,000)",
    )
    parser.add_argument("--events", type=int, default=ingest.Workload.events)
    parser.add_argument("--records", type=int, default=ingest.Workload.records)
    parser.add_argument("--batch-size", type=int, default=ingest.Workload.batch_size)
    parser.add_argument("--batch-clients", type=int, default=ingest.Workload.batch_clients)
    parser.add_argument("--record-clients", type=int, default=ingest.Workload.record_clients)
    parser.add_argument(
        "--query-events",
        type=int,
        default=10_000_000,
        help="events loaded for the query suite (default 10 million)",
    )
    parser.add_argument(
        "--refresh-events",
        type=int,
        default=300_000,
        help="events sent through the API for the range refresh suite (default 300,000)",
    )
    parser.add_argument(
        "--analytics-events",
        type=int,
        default=10_000_000,
        help="platform events loaded for the analytics suite (default 10 million)",
    )
    args = parser.parse_args()
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        parser.error("DATABASE_URL is not set (make bench starts a local database)")
    if args.only in (None, "record"):
        record_path.wrk_path()  # fails at once, saying how to install it
    results: dict[str, object] = {"database": durable.check(server_url)}
    for suite in SUITES:
        if args.only not in (None, suite.name):
            continue
        print(f"== {suite.title} ==", flush=True)
        if suite.own_database:
            with scratch_database(server_url, suite.name) as url:
                results[suite.name] = suite.run(args, url)
        else:
            results[suite.name] = suite.run(args, server_url)
    out = RESULTS / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
