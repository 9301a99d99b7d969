"""The real remote-write senders, Debian's Prometheus 2.42 and vmagent, scraping a target and
writing to us: what they scraped is what we store (series, labels, values, timestamps), the
counters as increases beside their totals, the metadata as type and help; Prometheus' native
histograms (scraped from a target in the protobuf exposition format) as distributions whose
count, sum and percentiles are what Prometheus itself answers.

Both are installed by the project's set-up (bin/ensure-tools, run by `make test`)."""

from __future__ import annotations

import contextlib
import math
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import psycopg
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from auth import keys
from tests.ingest.test_otlp import statistics
from tests.ingest.test_remote_write_histograms import deltas, spans
from tests.senders import exposition_pb2 as exposition
from tests.support import api_server, make_client, wait_for

PROMETHEUS = shutil.which("prometheus")
VMAGENT = shutil.which("vmagent")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Target:
    """A scrape target of our own: a counter, a gauge and a histogram."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "shop_requests", "Requests served.", ["path"], registry=self.registry
        )
        self.temperature = Gauge(
            "shop_temperature_celsius", "Room temperature.", registry=self.registry
        )
        self.latency = Histogram(
            "shop_latency_seconds", "Latency.", buckets=(0.1, 0.5, 1.0), registry=self.registry
        )
        self.server, _ = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.address = f"127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class NativeTarget:
    """A scrape target serving one native histogram in the protobuf exposition format (the only
    one in which Prometheus 2.42 scrapes them), cumulative over what was observed, of schema 3
    (the Go client's default bucket factor, 1.1)."""

    SCHEMA = 3
    MEDIA = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; "

    def __init__(self) -> None:
        self.observed: list[float] = []
        self.lock = threading.Lock()
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = served.body()
                self.send_response(200)
                self.send_header("Content-Type", served.MEDIA + "encoding=delimited")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def observe(self, values: list[float]) -> None:
        with self.lock:
            self.observed += values

    def body(self) -> bytes:
        with self.lock:
            observed = list(self.observed)
        base = 2 ** (2**-self.SCHEMA)
        found, counts = spans(dict(Tally(math.ceil(math.log(v, base)) for v in observed)))
        histogram = exposition.Histogram(
            sample_count=len(observed),
            sample_sum=sum(observed),
            schema=self.SCHEMA,
            zero_threshold=2**-128,
            positive_span=[exposition.BucketSpan(offset=o, length=n) for o, n in found or [(0, 0)]],
            positive_delta=deltas(counts),
        )
        family = exposition.MetricFamily(
            name="shop_wait_seconds",
            help="Wait.",
            type=exposition.HISTOGRAM,
            metric=[exposition.Metric(histogram=histogram)],
        ).SerializeToString()
        length = bytearray()  # the delimited format: each message after its varint length
        size = len(family)
        while size >= 0x80:
            length.append(size & 0x7F | 0x80)
            size >>= 7
        return bytes(length) + bytes([size]) + family

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def target() -> Iterator[Target]:
    served = Target()
    served.requests.labels("/a").inc(3)
    served.temperature.set(21.5)
    for seconds in (0.05, 0.2, 0.3, 0.7, 2.0):
        served.latency.observe(seconds)
    yield served
    served.close()


@contextlib.contextmanager
def running(command: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def samples(db: psycopg.Connection[Any], metric: str) -> list[tuple[Any, ...]]:
    """(time, value, total, tags) of `metric`'s stored samples, oldest first."""
    return db.execute(
        "SELECT e.time, e.value, e.total, s.tags FROM analytics.metric_events AS e "
        "JOIN analytics.series AS s ON s.id = e.series_id "
        "JOIN analytics.metrics AS m ON m.id = s.metric_id WHERE m.name = %s ORDER BY e.time",
        (metric,),
    ).fetchall()


def scraped(db: psycopg.Connection[Any], metric: str, at_least: int) -> bool:
    return len(samples(db, metric)) >= at_least


def check_counter(stored: list[tuple[Any, ...]], first_total: float) -> None:
    """Increases that add up to the totals, from a first total taken as the baseline."""
    assert stored[0][1:3] == (0, first_total)
    for (_, increase, total, _), (_, _, before, _) in zip(stored[1:], stored, strict=False):
        assert increase == total - before


def prometheus_command(
    tmp_path: Path, scraped: str, base: str, key: str, web: int, remote: str, *flags: str
) -> list[str]:
    """Debian's Prometheus scraping `scraped` each second and remote-writing to `base` with
    `key` (`remote`: one more line of its remote_write entry), its API on port `web`."""
    (tmp_path / "prometheus.yml").write_text(
        f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: shop
    static_configs: [{{targets: ["{scraped}"]}}]
remote_write:
  - url: {base}/api/v1/write
    authorization: {{credentials: {key}}}
    queue_config: {{batch_send_deadline: 500ms, min_backoff: 100ms, max_backoff: 1s}}
    {remote}
"""
    )
    assert PROMETHEUS is not None
    return [
        PROMETHEUS,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{web}",
        *flags,
    ]


LATER_LATENCIES = (0.08, 0.3, 0.4, 0.45, 0.9, 1.5)  # observed once Prometheus scrapes


def infinite_bucket(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """The stored samples of the latency histogram's +Inf bucket."""
    return [row for row in samples(db, "shop_latency_seconds_bucket") if row[3]["le"] == "+Inf"]


def latency_total(db: psycopg.Connection[Any]) -> float | None:
    """The newest stored total of the latency histogram's +Inf bucket."""
    stored = infinite_bucket(db)
    return stored[-1][2] if stored else None


@pytest.mark.skipif(PROMETHEUS is None, reason="Debian's prometheus is not installed")
def test_prometheus_scrapes_and_remote_writes_what_it_scraped(
    db_url: str, db: psycopg.Connection[Any], target: Target, tmp_path: Path
) -> None:
    assert PROMETHEUS is not None
    started = datetime.now(UTC) - timedelta(minutes=1)
    _, key = keys.create(db_url, "prometheus", ["ingest"])
    web = free_port()
    with api_server(db_url) as base:
        command = prometheus_command(
            tmp_path, target.address, base, key, web, "metadata_config: {send_interval: 1s}"
        )
        with running(command, tmp_path / "prometheus.log"):
            wait_for(lambda: scraped(db, "shop_requests_total", 2), timeout=60)
            target.requests.labels("/a").inc(4)
            target.temperature.set(19.25)
            for seconds in LATER_LATENCIES:
                target.latency.observe(seconds)
            wait_for(lambda: scraped(db, "shop_requests_total", 6), timeout=60)
            wait_for(lambda: latency_total(db) == 11, timeout=60)
            # Prometheus' own percentiles of the observations since our baseline (the first
            # scrape we stored), at the newest scrape we hold: what our statistics count.
            infinite = infinite_bucket(db)
            since, until = infinite[0][0].timestamp(), infinite[-1][0].timestamp()
            since_baseline = (
                "sum by (le) (shop_latency_seconds_bucket - shop_latency_seconds_bucket"
                f" @ {since:.3f})"
            )
            percentiles = {}
            for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
                answer = httpx2.get(
                    f"http://127.0.0.1:{web}/api/v1/query",
                    params={"query": f"histogram_quantile({q}, {since_baseline})", "time": until},
                ).json()
                [result] = answer["data"]["result"]
                percentiles[name] = float(result["value"][1])
            # What Prometheus holds for the last minute, once we hold all of it too.
            wanted = {}
            for metric in ("shop_requests_total", "shop_temperature_celsius", "up"):
                answer = httpx2.get(
                    f"http://127.0.0.1:{web}/api/v1/query",
                    params={"query": f"{metric}[1m]", "time": time.time()},
                ).json()
                [series] = answer["data"]["result"]
                wanted[metric] = (series["metric"], series["values"])
            newest = max(float(t) for t, _ in wanted["shop_requests_total"][1])
            wait_for(
                lambda: samples(db, "shop_requests_total")[-1][0].timestamp() >= newest - 1e-6,
                timeout=30,
            )
            time.sleep(1.5)  # the other series of the same scrapes
            described = db.execute(
                "SELECT name, metric_type::text, description FROM analytics.metrics "
                "WHERE name LIKE 'shop%%' ORDER BY name"
            ).fetchall()

    for metric, (labels, values) in wanted.items():
        stored = {row[0].timestamp(): row for row in samples(db, metric)}
        tags = {k: v for k, v in labels.items() if k != "__name__"}
        for stamp, text in values:
            row = stored[float(stamp)]
            assert row[3] == tags
            assert (row[2] if row[2] is not None else row[1]) == float(text), metric
    requests = samples(db, "shop_requests_total")
    check_counter(requests, 3.0)
    assert requests[-1][2] == 7.0
    assert sum(row[1] for row in requests) == 4.0  # the increase Prometheus saw
    assert {row[1] for row in samples(db, "shop_temperature_celsius")} == {21.5, 19.25}
    buckets = {row[3]["le"]: row[2] for row in samples(db, "shop_latency_seconds_bucket") if row[2]}
    assert buckets == {"0.1": 2.0, "0.5": 7.0, "1.0": 9.0, "+Inf": 11.0}
    # The classic histogram's family as a distribution: the observations since the baseline.
    latency = client_statistics(db_url, "shop_latency_seconds", started)
    assert latency["histogram"] == "classic"
    assert latency["count"] == len(LATER_LATENCIES)
    assert latency["sum"] == pytest.approx(sum(LATER_LATENCIES))
    for name, value in percentiles.items():
        assert latency[name] == pytest.approx(value, rel=1e-9), name
    kinds = {name: (kind, text) for name, kind, text in described}
    assert kinds["shop_requests_total"] == ("counter", "Requests served.")
    assert kinds["shop_temperature_celsius"] == ("gauge", "Room temperature.")
    assert kinds["shop_latency_seconds_bucket"] == ("counter", "Latency.")


@pytest.mark.skipif(VMAGENT is None, reason="Debian's victoria-metrics (vmagent) is not installed")
def test_vmagent_scrapes_and_remote_writes_what_it_scraped(
    db_url: str, db: psycopg.Connection[Any], target: Target, tmp_path: Path
) -> None:
    assert VMAGENT is not None
    _, key = keys.create(db_url, "vmagent", ["ingest"])
    started = datetime.now(UTC)
    with api_server(db_url) as base:
        (tmp_path / "scrape.yml").write_text(
            f"""
global: {{scrape_interval: 1s}}
scrape_configs:
  - job_name: shop
    static_configs: [{{targets: ["{target.address}"]}}]
"""
        )
        command = [
            VMAGENT,
            f"-promscrape.config={tmp_path / 'scrape.yml'}",
            f"-remoteWrite.url={base}/api/v1/write",
            f"-remoteWrite.bearerToken={key}",
            "-remoteWrite.flushInterval=500ms",
            f"-remoteWrite.tmpDataPath={tmp_path / 'queue'}",
            f"-httpListenAddr=127.0.0.1:{free_port()}",
        ]
        with running(command, tmp_path / "vmagent.log"):
            wait_for(lambda: scraped(db, "shop_requests_total", 2), timeout=60)
            target.requests.labels("/a").inc(2.5)
            for seconds in LATER_LATENCIES:
                target.latency.observe(seconds)
            wait_for(lambda: samples(db, "shop_requests_total")[-1][2] == 5.5, timeout=30)
            wait_for(lambda: latency_total(db) == 11, timeout=30)

    requests = samples(db, "shop_requests_total")
    check_counter(requests, 3.0)
    assert sum(row[1] for row in requests) == 2.5
    assert {row[3]["job"] for row in requests} == {"shop"}
    assert {row[3]["instance"] for row in requests} == {target.address}
    assert all(row[0] >= started.replace(microsecond=0) for row in requests)
    assert all(row[0].microsecond % 1000 == 0 for row in requests)  # milliseconds, as scraped
    assert {row[1] for row in samples(db, "shop_temperature_celsius")} == {21.5}
    assert {row[1] for row in samples(db, "up")} == {1.0}
    # Since the baseline: 1, 4, 5, 6 observations at or below 0.1, 0.5, 1.0, +Inf.
    latency = client_statistics(db_url, "shop_latency_seconds", started)
    assert latency["count"] == 6
    assert latency["sum"] == pytest.approx(sum(LATER_LATENCIES))
    assert latency["p50"] == pytest.approx(0.1 + 0.4 * 2 / 3)  # rank 3: 2 of 3 into (0.1, 0.5]
    assert latency["p95"] == latency["p99"] == 1.0  # in the +Inf bucket


def observations(db: psycopg.Connection[Any], metric: str) -> tuple[int, float]:
    """The observations and their sum in the stored histogram points of `metric`."""
    row = db.execute(
        "SELECT coalesce(sum(d.count), 0)::int, coalesce(sum(d.sum), 0) "
        "FROM analytics.distribution_store AS d JOIN analytics.series AS s ON s.id = d.series_id "
        "JOIN analytics.metrics AS m ON m.id = s.metric_id WHERE m.name = %s",
        (metric,),
    ).fetchone()
    assert row is not None
    return int(row[0]), float(row[1])


@pytest.mark.skipif(PROMETHEUS is None, reason="Debian's prometheus is not installed")
def test_prometheus_native_histograms_are_distributions_with_prometheus_own_percentiles(
    db_url: str, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    assert PROMETHEUS is not None
    _, key = keys.create(db_url, "prometheus", ["ingest"])
    web = free_port()
    target = NativeTarget()
    first = [0.01 * 1.01**k for k in range(500)]  # 10 ms .. 1.4 s
    then = [0.2 + 0.001 * k for k in range(300)]
    started = datetime.now(UTC)
    with api_server(db_url) as base:
        command = prometheus_command(
            tmp_path,
            target.address,
            base,
            key,
            web,
            "send_native_histograms: true",
            "--enable-feature=native-histograms",
        )

        def prometheus(query: str) -> float:
            answer = httpx2.get(
                f"http://127.0.0.1:{web}/api/v1/query", params={"query": query}
            ).json()
            [result] = answer["data"]["result"]
            return float(result["value"][1])

        with running(command, tmp_path / "prometheus.log"):
            # The first scrapes see no observations yet: the series' baseline.
            wait_for(lambda: scraped(db, "up", 2), timeout=60)
            target.observe(first)
            wait_for(lambda: observations(db, "shop_wait_seconds")[0] == 500, timeout=60)
            target.observe(then)
            wait_for(lambda: observations(db, "shop_wait_seconds")[0] == 800, timeout=60)
            held = {
                "count": prometheus("histogram_count(shop_wait_seconds)"),
                "sum": prometheus("histogram_sum(shop_wait_seconds)"),
                **{
                    name: prometheus(f"histogram_quantile({q}, shop_wait_seconds)")
                    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
                },
            }
    target.close()
    assert held["count"] == 800
    count, total = observations(db, "shop_wait_seconds")
    assert total == pytest.approx(held["sum"]) == pytest.approx(sum(first + then))
    figures = client_statistics(db_url, "shop_wait_seconds", started)
    assert figures["count"] == count == 800
    assert figures["sum"] == pytest.approx(held["sum"])
    exact = sorted(first + then)
    width = 2 ** (2**-NativeTarget.SCHEMA)  # a bucket's upper bound over its lower one
    for name, share in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        # Both spread a bucket's observations over it: ours within the sketch's 1% of
        # Prometheus' own answer, and both within the bucket the exact percentile is in.
        assert figures[name] == pytest.approx(held[name], rel=0.02), name
        value = exact[math.ceil(share * len(exact)) - 1]
        assert value / width / 1.01 <= figures[name] <= value * width * 1.01, name
    assert (
        db.execute(
            "SELECT metric_type::text, description FROM analytics.metrics "
            "WHERE name = 'shop_wait_seconds'"
        ).fetchone()[0]
        == "histogram"
    )


def client_statistics(db_url: str, metric: str, since: datetime) -> dict[str, Any]:
    with make_client(db_url) as client:
        return statistics(client, metric, since)
