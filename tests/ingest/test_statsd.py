"""StatsD and DogStatsD over UDP, with the real clients (`statsd`, `datadog`): counters and
sets aggregated per flush, gauges with deltas, timers and distributions kept as samples, tags;
malformed lines counted and dropped while the listener goes on."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx2
import psycopg
import pytest
import statsd
from datadog.dogstatsd import DogStatsd

from core.settings import load
from ingest.statsd import Aggregator, Malformed, parse
from tests.support import api_server, stored_events, wait_for


@pytest.fixture
def listening(db_url: str) -> Iterator[tuple[str, int]]:
    """A server with StatsD on a free loopback port, flushing every 200 ms: (base, port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with api_server(db_url, STATSD_ADDR=str(port), STATSD_FLUSH_MS="200") as base:
        yield base, port


def values(db: psycopg.Connection[Any], metric: str) -> list[tuple[float, Any, str]]:
    return [(value, tags, kind) for _, value, tags, kind in stored_events(db, metric)]


def total(db: psycopg.Connection[Any], metric: str) -> float:
    return sum(v for v, _, _ in values(db, metric))


def test_the_statsd_client_counts_gauges_times_and_sets(
    listening: tuple[str, int], db: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, port = listening
    client = statsd.StatsClient("127.0.0.1", port)
    for _ in range(5):
        client.incr("web.hits")
    # At @0.5 the client itself sends 1 in 2 at random: here, this one.
    monkeypatch.setattr(statsd.client.base.random, "random", lambda: 0.0)  # type: ignore[attr-defined]
    client.incr("web.hits", 10, rate=0.5)  # stands for 20
    client.gauge("queue.depth", 40)
    client.gauge("queue.depth", 2, delta=True)
    client.gauge("queue.depth", -12, delta=True)
    for ms in (12, 30, 18):
        client.timing("db.query", ms)
    with client.pipeline() as members:  # one datagram: one flush interval
        for user in ("ann", "bob", "ann"):
            members.set("users.active", user)
    with client.pipeline() as batch:  # several lines in one datagram
        batch.incr("web.hits", 3)
        batch.timing("db.query", 7)
    client.close()

    wait_for(lambda: total(db, "web.hits") == 28 and len(values(db, "db.query")) == 4)
    assert {t for _, _, t in values(db, "web.hits")} == {"counter"}
    assert values(db, "queue.depth")[-1][0] == 30.0  # 40 + 2 - 12
    assert values(db, "queue.depth")[-1][2] == "gauge"
    assert sorted(v for v, _, _ in values(db, "db.query")) == [7.0, 12.0, 18.0, 30.0]
    assert {t for _, _, t in values(db, "db.query")} == {"timer"}
    assert values(db, "users.active")[0][0] == 2.0  # distinct members of the interval


def test_dogstatsd_tags_histograms_and_distributions(
    listening: tuple[str, int], db: psycopg.Connection[Any]
) -> None:
    _, port = listening
    dog = DogStatsd(host="127.0.0.1", port=port, constant_tags=["env:test"])
    dog.increment("jobs.done", 2, tags=["queue:mail", "canary"])
    dog.histogram("payload.bytes", 512, tags=["queue:mail"])
    dog.distribution("render.ms", 41.5)
    dog.distribution("render.ms", 58.5)
    dog.gauge("workers", 4, tags=["pool:a"])
    dog.flush()
    dog.close_socket()

    wait_for(lambda: len(values(db, "render.ms")) == 2 and values(db, "workers") != [])
    ((done, tags, kind),) = values(db, "jobs.done")
    assert (done, kind) == (2.0, "counter")
    assert tags == {"env": "test", "queue": "mail", "canary": "true"}
    assert values(db, "payload.bytes") == [(512.0, {"env": "test", "queue": "mail"}, "histogram")]
    assert sorted(v for v, _, _ in values(db, "render.ms")) == [41.5, 58.5]
    assert values(db, "workers")[0][:2] == (4.0, {"env": "test", "pool": "a"})


def test_malformed_lines_are_counted_by_reason_and_the_rest_stored(
    listening: tuple[str, int], db: psycopg.Connection[Any]
) -> None:
    base, port = listening
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(
            b"ok.count:1|c\nbroken\nx:abc|c\ny:1|zz\n1bad:1|c\nz:1|c|@2\n\xff\xfe:1|c\nok.count:2|c",
            ("127.0.0.1", port),
        )
        sender.sendto(b"ok.count:4|c", ("127.0.0.1", port))

    wait_for(lambda: total(db, "ok.count") == 7)
    exposition = httpx2.get(f"{base}/metrics").text
    for outcome, count in {
        "accepted": 3,
        "malformed_syntax": 1,
        "malformed_value": 1,
        "malformed_type": 1,
        "malformed_name": 1,
        "malformed_sample_rate": 1,
        "malformed_encoding": 1,
    }.items():
        assert f'astraeus_statsd_lines_total{{outcome="{outcome}"}} {count}.0' in exposition


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("a.b", "syntax"),
        ("a.b:1", "syntax"),
        ("a.b:1|q", "type"),
        ("a b:1|c", "name"),
        ("a.b:x|g", "value"),
        ("a.b:inf|ms", "value"),
        ("a.b:1|c|@0", "sample_rate"),
        ("a.b:1|c|Tsoon", "timestamp"),
        ("a.b:+-5|g", "value"),
        ("a.b:1e999|c", "value"),
        ("_e{5,4}:title|text|#k:v", "unsupported"),
        ("_sc|redis.up|0", "unsupported"),
    ],
)
def test_a_bad_line_says_why(line: str, reason: str) -> None:
    with pytest.raises(Malformed) as bad:
        parse(line)
    assert bad.value.reason == reason


def test_dogstatsd_extras_are_tolerated() -> None:
    sample = parse("a.b:1:2:3|h|@0.5|#k:v|c:abc123|T1700000000|e:extra")
    assert (sample.numbers, sample.rate, sample.tags) == ([1.0, 2.0, 3.0], 0.5, {"k": "v"})
    assert sample.timestamp is not None and sample.timestamp.timestamp() == 1700000000


def test_the_address_is_loopback_unless_given() -> None:
    assert load({"STATSD_ADDR": "8125"}).statsd_addr == "127.0.0.1:8125"
    assert load({"STATSD_ADDR": "0.0.0.0:9125"}).statsd_addr == "0.0.0.0:9125"
    assert load({}).statsd_addr == ""


def test_a_flush_larger_than_a_batch_is_stored_whole(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    """12,000 samples in one flush interval, six times the most a batch may hold: committed as
    several batches, none refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with (
        api_server(
            db_url, STATSD_ADDR=str(port), STATSD_FLUSH_MS="3000", INGEST_MAX_BATCH_EVENTS="2000"
        ),
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
    ):
        for start in range(0, 12_000, 300):
            lines = "\n".join(f"big.ms:{i}|ms|#n:{i % 50}" for i in range(start, start + 300))
            sender.sendto(lines.encode(), ("127.0.0.1", port))
            time.sleep(0.005)
        wait_for(lambda: len(values(db, "big.ms")) == 12_000, timeout=20)


def test_a_set_member_is_the_whole_value_and_gauges_move_by_sign() -> None:
    aggregator = Aggregator()
    now = datetime.now(UTC)
    for line in ("ip:fe80::1|s", "ip:fe80::2|s", "ip:fe80::1|s", "t:10|g", "t:-3|g", "t:+1|g"):
        assert aggregator.add(parse(line), now)
    events, not_finite = aggregator.flush(now)

    assert {(e.metric_name, e.value) for e in events} == {("ip", 2.0), ("t", 8.0)}
    assert not_finite == 0


def test_an_aggregate_past_the_largest_float_is_dropped_not_stored() -> None:
    aggregator = Aggregator()
    now = datetime.now(UTC)
    for line in ("big:1e308|c", "big:1e308|c", "fine:1|c", "g:1e308|g", "g:+1e308|g"):
        aggregator.add(parse(line), now)
    events, not_finite = aggregator.flush(now)

    assert [(e.metric_name, e.value) for e in events] == [("fine", 1.0)]
    assert not_finite == 2
    aggregator.add(parse("g:+1|g"), now)  # the gauge starts again from 0
    assert [e.value for e in aggregator.flush(now)[0]] == [1.0]
