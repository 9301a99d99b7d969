"""Health benchmark: one pass of checks over 200 services that each answer in about 10 ms."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from typing import Any

import msgspec
import psycopg

from jobs.health import check_services

TARGET = """
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Slowish(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        time.sleep(0.01)
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass

class Server(ThreadingHTTPServer):
    request_queue_size = 1024  # 200 checks connect at once
    daemon_threads = True

server = Server(("127.0.0.1", 0), Slowish)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def run(url: str, services: int = 200, passes: int = 5) -> dict[str, Any]:
    # The target in a process of its own, so that it does not share the checker's GIL.
    target = subprocess.Popen([sys.executable, "-c", TARGET], stdout=subprocess.PIPE, text=True)
    assert target.stdout is not None
    base = f"http://127.0.0.1:{int(target.stdout.readline())}"
    try:
        with psycopg.connect(url) as conn:
            for i in range(services):
                spec = msgspec.json.encode({"kind": "http", "url": f"{base}/s{i}"}).decode()
                conn.execute(
                    "INSERT INTO analytics.services (name, service_type, check_spec) "
                    "VALUES (%s, 'api', %s::jsonb)",
                    (f"svc-{i}", spec),
                )
        durations = []
        statuses: dict[str, int] = {}
        for _ in range(passes):
            started = time.perf_counter()
            report = check_services(url)
            durations.append(time.perf_counter() - started)
            statuses = {}
            for result in report.results:
                statuses[result.status] = statuses.get(result.status, 0) + 1
    finally:
        target.terminate()
        target.wait()
        target.stdout.close()
    figures = {
        "services": services,
        "pass_p50_ms": statistics.median(durations) * 1000,
        "pass_max_ms": max(durations) * 1000,
        "statuses": statuses,
    }
    print(
        f"    one pass over {services} services: p50 {figures['pass_p50_ms']:.0f} ms, max "
        f"{figures['pass_max_ms']:.0f} ms (target < 1000 ms); {statuses}",
        flush=True,
    )
    return figures
