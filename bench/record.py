"""Record-path benchmark with a standard load generator: `wrk` POSTing the seed's "Record Custom
Metric" example to /metrics/record, with an API key, at 10 and 50 connections (one thread).

The server runs with its defaults as users run it (LOG_LEVEL=info: an access log line per
request, written to a file; RUN_SCHEDULER on), against a durable database (see bench/durable.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench import HEADERS

RECORD = "/api/v1/analytics/metrics/record"
# The seed document's example, verbatim.
SEED_EXAMPLE = (
    '{"metric_name": "api.response_time", "value": 125.5, "metric_type": "timer", '
    '"unit": "ms", "tags": {"endpoint": "/api/agents", "method": "GET"}}'
)
INSTALL_HINT = "wrk is not installed: `apt-get install -y wrk` (Debian, Ubuntu) or bin/ensure-wrk"

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


def run(base: str, connections: tuple[int, ...], seconds: int) -> dict[str, Any]:
    wrk = wrk_path()
    results: dict[str, Any] = {"body": SEED_EXAMPLE, "seconds": seconds}
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "record.lua"
        script.write_text(script_text())
        # A few seconds first: the series is created and every connection opened.
        subprocess.run(
            [wrk, "-t1", "-c10", "-d3s", "-s", str(script), base + RECORD],
            check=True,
            capture_output=True,
        )
        for count in connections:
            print(f"    wrk -t1 -c{count} -d{seconds}s ...", flush=True)
            done = subprocess.run(
                [wrk, "-t1", f"-c{count}", f"-d{seconds}s", "-s", str(script), base + RECORD],
                check=True,
                capture_output=True,
                text=True,
            )
            figures = parse(done.stdout)
            results[f"c{count}"] = figures
            print(
                f"    {figures['requests_per_s']:,.0f} req/s, p50 {figures['p50_ms']:.1f} ms, "
                f"p99 {figures['p99_ms']:.1f} ms, p99.9 {figures['p99_9_ms']:.1f} ms, "
                f"max {figures['max_ms']:.0f} ms, {figures['errors']} errors",
                flush=True,
            )
    return results
