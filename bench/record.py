"""Record-path benchmark with a standard load generator: `wrk` POSTing the seed's "Record Custom
Metric" example to /metrics/record, with an API key, at 10 and 50 connections (one thread).

The server runs with its defaults as users run it (LOG_LEVEL=info: an access log line per
request, written to a file; RUN_SCHEDULER on), against a durable database (see bench/durable.py).

Two references run in the same pass, at the same connection counts, so that the figures read as
ratios on a noisy machine:
- the raw database: pgbench (asyncpg clients where it is missing) with as many clients, each
  committing one single-row INSERT per transaction into a table of the same columns: what one
  durable event per request costs with nothing in front;
- the framework's floor: bench/noop.py, a Starlette route that decodes the body and stores
  nothing, under wrk the same way.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx2

from bench import HEADERS

RECORD = "/api/v1/analytics/metrics/record"
# The seed document's example, verbatim.
SEED_EXAMPLE = (
    '{"metric_name": "api.response_time", "value": 125.5, "metric_type": "timer", '
    '"unit": "ms", "tags": {"endpoint": "/api/agents", "method": "GET"}}'
)
INSTALL_HINT = "wrk is not installed: `apt-get install -y wrk` (Debian, Ubuntu) or bin/ensure-tools"

# `done` prints what the summary lacks (p99.9, errors) as key=value lines.
SCRIPT = """
wrk.method = "POST"
wrk.body = [[{body}]]
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d p999_us=%d "
    .. "max_us=%d status_errors=%d socket_errors=%d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), latency.max, e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit(INSTALL_HINT)
    return path


def script_text() -> str:
    headers = {"Content-Type": "application/json", **HEADERS}
    lines = "\n".join(f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items())
    return SCRIPT.format(body=SEED_EXAMPLE, headers=lines)


def parse(output: str) -> dict[str, float]:
    match = re.search(r"^RESULT (.*)$", output, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{output}")
    raw = dict(pair.split("=") for pair in match.group(1).split())
    seconds = int(raw["duration_us"]) / 1e6
    return {
        "requests_per_s": int(raw["requests"]) / seconds,
        "requests": int(raw["requests"]),
        "p50_ms": int(raw["p50_us"]) / 1e3,
        "p99_ms": int(raw["p99_us"]) / 1e3,
        "p99_9_ms": int(raw["p999_us"]) / 1e3,
        "max_ms": int(raw["max_us"]) / 1e3,
        "errors": int(raw["status_errors"]) + int(raw["socket_errors"]),
    }


def wrk_run(script: Path, base: str, connections: int, seconds: int) -> dict[str, float]:
    done = subprocess.run(
        [wrk_path(), "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), base + RECORD],
        check=True,
        capture_output=True,
        text=True,
    )
    return parse(done.stdout)


def show(label: str, figures: dict[str, float]) -> None:
    print(
        f"    {label:<22} {figures['requests_per_s']:>7,.0f} req/s, p50 {figures['p50_ms']:.1f} "
        f"ms, p99 {figures['p99_ms']:.1f} ms, p99.9 {figures['p99_9_ms']:.1f} ms, "
        f"max {figures['max_ms']:.0f} ms, {figures.get('errors', 0):.0f} errors",
        flush=True,
    )


RAW_TABLE = (
    "CREATE TABLE IF NOT EXISTS bench_raw_commits "
    "(time timestamptz NOT NULL, series_id integer NOT NULL, value double precision)"
)
RAW_INSERT = "INSERT INTO bench_raw_commits VALUES (now(), 1, 125.5)"


def summary(latencies_s: list[float], elapsed: float) -> dict[str, float]:
    ordered = sorted(latencies_s)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1e3

    return {
        "requests_per_s": len(ordered) / elapsed,
        "requests": len(ordered),
        "p50_ms": at(0.5),
        "p99_ms": at(0.99),
        "p99_9_ms": at(0.999),
        "max_ms": ordered[-1] * 1e3,
    }


def raw_commits(url: str, connections: int, seconds: int) -> tuple[str, dict[str, float]]:
    """`connections` clients, each committing one single-row INSERT at a time, for `seconds`:
    with PostgreSQL's own load generator, pgbench (one thread, prepared statements, every
    transaction's latency logged), or where it is not installed with asyncpg clients."""
    pgbench = shutil.which("pgbench")
    if pgbench is None:
        return "raw database (asyncpg)", asyncio.run(raw_commits_asyncpg(url, connections, seconds))
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "insert.sql"
        script.write_text(RAW_INSERT + ";\n")
        subprocess.run(["psql", "-qX", "-c", RAW_TABLE, url], check=True, capture_output=True)
        try:
            subprocess.run(
                [
                    pgbench,
                    "-n",
                    f"-c{connections}",
                    "-j1",
                    f"-T{seconds}",
                    "-Mprepared",
                    "-f",
                    str(script),
                    "-l",
                    f"--log-prefix={scratch}/tx",
                    url,
                ],
                check=True,
                capture_output=True,
                text=True,
            )
        finally:
            subprocess.run(
                ["psql", "-qX", "-c", "DROP TABLE bench_raw_commits", url], capture_output=True
            )
        # Each line: client, transaction, latency (us), script, epoch seconds, microseconds.
        latencies, first, last = [], float("inf"), 0.0
        for log in Path(scratch).glob("tx*"):
            for line in log.read_text().splitlines():
                fields = line.split()
                latencies.append(int(fields[2]) / 1e6)
                ended = int(fields[4]) + int(fields[5]) / 1e6
                first, last = min(first, ended - latencies[-1]), max(last, ended)
    return "raw database (pgbench)", summary(latencies, last - first)


async def raw_commits_asyncpg(url: str, connections: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    setup = await asyncpg.connect(url)
    await setup.execute(RAW_TABLE)
    clients: list[asyncpg.Connection] = []

    async def client(conn: asyncpg.Connection) -> None:
        while time.perf_counter() < end:
            started = time.perf_counter()
            await conn.execute(RAW_INSERT)
            latencies.append(time.perf_counter() - started)

    try:
        clients.extend([await asyncpg.connect(url) for _ in range(connections)])
        began = time.perf_counter()
        end = began + seconds
        await asyncio.gather(*(client(conn) for conn in clients))
        elapsed = time.perf_counter() - began
    finally:
        for conn in clients:
            await conn.close()
        await setup.execute("DROP TABLE bench_raw_commits")
        await setup.close()
    return summary(latencies, elapsed)


class NoOp:
    """bench/noop.py as its own process."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.process = subprocess.Popen([sys.executable, "-m", "bench.noop", str(port)])
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx2.post(self.base + RECORD, content=SEED_EXAMPLE, timeout=1)
                return
            except httpx2.TransportError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError("bench/noop.py did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def run(base: str, url: str, connections: tuple[int, ...], seconds: int) -> dict[str, Any]:
    """Ours, the raw database and the framework's floor, one after the other at each count."""
    results: dict[str, Any] = {"body": SEED_EXAMPLE, "seconds": seconds}
    noop = NoOp()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            script = Path(scratch) / "record.lua"
            script.write_text(script_text())
            # A few seconds first: the series is created and every connection opened.
            wrk_run(script, base, 10, 3)
            wrk_run(script, noop.base, 10, 3)
            for count in connections:
                print(f"    {count} connections, {seconds} s each:", flush=True)
                ours = results[f"c{count}"] = wrk_run(script, base, count, seconds)
                show("ours (wrk)", ours)
                label, raw = raw_commits(url, count, seconds)
                results[f"raw_c{count}"] = {**raw, "client": label}
                show(label, raw)
                floor = results[f"noop_c{count}"] = wrk_run(script, noop.base, count, seconds)
                show("Starlette no-op (wrk)", floor)
                print(
                    f"    p99 ours / raw database {ours['p99_ms'] / raw['p99_ms']:.2f}, "
                    f"ours / no-op {ours['p99_ms'] / floor['p99_ms']:.2f}; req/s ours / raw "
                    f"{ours['requests_per_s'] / raw['requests_per_s']:.2f}",
                    flush=True,
                )
    finally:
        noop.stop()
    return results
