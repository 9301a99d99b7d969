"""Group commit, backpressure and concurrency, through the real HTTP path.

To hold the writer at a known point, a test connection locks analytics.metric_event_store: the
group's COPY then waits for the lock, and whatever arrives meanwhile queues up behind it.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import psycopg
import pytest
from psycopg import sql as pgsql
from starlette.testclient import TestClient

from tests.support import BATCH, RECORD, count, event, events_table_locked, make_client, wait_for


def post(client: TestClient, path: str, body: Any) -> httpx2.Response:
    return client.post(path, json=body)


def test_concurrent_requests_share_commits(client: TestClient, db: psycopg.Connection[Any]) -> None:
    with ThreadPoolExecutor(max_workers=50) as pool:
        futures = [pool.submit(post, client, RECORD, event(i)) for i in range(200)]
        responses = [f.result() for f in futures]

    assert [r.status_code for r in responses] == [200] * 200
    assert count(db) == 200
    stats = client.app.state.committer.stats  # type: ignore[attr-defined]
    assert stats.batches == 200
    assert stats.groups < 200


def test_a_refused_batch_does_not_fail_the_others_in_its_group(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    db.execute("INSERT INTO analytics.metrics (name, metric_type) VALUES ('typed', 'counter')")
    with (
        make_client(db_url, INGEST_WRITERS="1") as client,
        ThreadPoolExecutor(max_workers=4) as pool,
    ):
        committer = client.app.state.committer  # type: ignore[attr-defined]
        with events_table_locked(db_url) as waiting:
            blocker = pool.submit(post, client, BATCH, [event(0, "blocker")])
            wait_for(lambda: waiting() == 1)
            queued: list[Future[httpx2.Response]] = [
                pool.submit(post, client, BATCH, [event(1)]),
                pool.submit(post, client, BATCH, [event(2, "typed")]),
                pool.submit(post, client, BATCH, [event(3)]),
            ]
            wait_for(lambda: committer.queued_events == 3)
        results = [f.result() for f in [blocker, *queued]]

    assert [r.status_code for r in results] == [200, 200, 422, 200]
    assert "metric 'typed' is a counter" in results[2].json()["message"]
    assert committer.stats.groups == 2
    assert count(db) == 3
    assert count(db, "value = 2") == 0


def test_a_full_queue_answers_429_with_retry_after(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    with (
        make_client(db_url, INGEST_WRITERS="1", INGEST_QUEUE_MAX_EVENTS="5") as client,
        ThreadPoolExecutor(max_workers=8) as pool,
    ):
        committer = client.app.state.committer  # type: ignore[attr-defined]
        with events_table_locked(db_url) as waiting:
            blocker = pool.submit(post, client, RECORD, event(0))
            wait_for(lambda: waiting() == 1)
            queued = [pool.submit(post, client, RECORD, event(i)) for i in range(1, 6)]
            wait_for(lambda: committer.queued_events == 5)

            refused = post(client, BATCH, [event(99)])

        results = [f.result() for f in [blocker, *queued]]

    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"] == "ingest_queue_full"
    assert [r.status_code for r in results] == [200] * 6
    assert count(db) == 6
    assert count(db, "value = 99") == 0


def test_a_slow_commit_answers_503_within_the_timeout(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    with make_client(db_url, INGEST_COMMIT_TIMEOUT_S="1") as client:
        with events_table_locked(db_url):
            started = time.monotonic()
            response = post(client, BATCH, [event(1)])
            waited = time.monotonic() - started

        assert response.status_code == 503
        assert response.json()["error"] == "commit_timeout"
        assert "same Idempotency-Key" in response.json()["message"]
        assert response.headers["retry-after"]
        assert waited < 5


def test_an_unreachable_database_answers_503(db_url: str, databases: Any) -> None:
    name = db_url.rsplit("/", 1)[1]
    with make_client(db_url) as client:
        with databases.admin() as admin:
            admin.execute(
                pgsql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(
                    pgsql.Identifier(name)
                )
            )
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )

        response = post(client, RECORD, event(1))

    assert response.status_code == 503
    assert response.json()["error"] == "database_unavailable"
    assert response.headers["retry-after"]


@pytest.mark.parametrize("processes", [4])
def test_writers_in_several_processes_creating_one_series_get_one_id(
    db_url: str, db: psycopg.Connection[Any], processes: int
) -> None:
    # Each client is a separate app: its own pool, registry cache and committer, as a separate
    # server process would have.
    clients = [make_client(db_url) for _ in range(processes)]
    with contextlib.ExitStack() as stack:
        for client in clients:
            stack.enter_context(client)
        with ThreadPoolExecutor(max_workers=processes * 4) as pool:
            body = [event(1, "brand.new", tags={"region": "eu", "az": "b"})]
            futures = [pool.submit(post, clients[i % processes], BATCH, body) for i in range(16)]
            assert [f.result().status_code for f in futures] == [200] * 16

    series = db.execute("SELECT id FROM analytics.series").fetchall()
    metrics = db.execute("SELECT id FROM analytics.metrics").fetchall()
    assert len(series) == 1
    assert len(metrics) == 1
    assert count(db, f"series_id = {series[0][0]}") == 16


def queue_behind_a_blocker(
    db_url: str, client: TestClient, pool: ThreadPoolExecutor, bodies: list[tuple[Any, dict]]
) -> list[httpx2.Response]:
    """Sends `bodies` so that they are all committed in one group, after a blocked one."""
    committer = client.app.state.committer  # type: ignore[attr-defined]
    with events_table_locked(db_url) as waiting:
        blocker = pool.submit(post, client, BATCH, [event(0, "blocker")])
        wait_for(lambda: waiting() == 1)
        queued = [
            pool.submit(lambda b=body, h=headers: client.post(BATCH, json=b, headers=h))
            for body, headers in bodies
        ]
        wait_for(lambda: committer.queued_events == sum(len(b) for b, _ in bodies))
    assert blocker.result().status_code == 200
    return [f.result() for f in queued]


def test_a_batch_sent_twice_into_one_group_follows_its_first_copy(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    db.execute("INSERT INTO analytics.metrics (name, metric_type) VALUES ('typed', 'counter')")
    key = {"Idempotency-Key": "twice"}
    bad_key = {"Idempotency-Key": "refused-twice"}
    with (
        make_client(db_url, INGEST_WRITERS="1") as client,
        ThreadPoolExecutor(max_workers=6) as pool,
    ):
        results = queue_behind_a_blocker(
            db_url,
            client,
            pool,
            [
                ([event(1)], key),
                ([event(1)], key),
                ([event(2, "typed")], bad_key),
                ([event(2, "typed")], bad_key),
            ],
        )

    assert [r.status_code for r in results] == [200, 200, 422, 422]
    # Either copy may reach the queue first; the other is its duplicate.
    assert sorted(r.json()["duplicate"] for r in results[:2]) == [False, True]
    assert count(db, "value = 1") == 1
    assert count(db, "value = 2") == 0


def test_batches_in_one_group_creating_the_same_series_share_the_limit(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    with (
        make_client(db_url, INGEST_WRITERS="1", INGEST_MAX_SERIES_PER_METRIC="2") as client,
        ThreadPoolExecutor(max_workers=4) as pool,
    ):
        assert post(client, BATCH, [event(0, tags={"h": "a"})]).status_code == 200
        same_new = [event(1, tags={"h": "b"})]
        results = queue_behind_a_blocker(db_url, client, pool, [(same_new, {}), (same_new, {})])

    assert [r.status_code for r in results] == [200, 200]
    assert count(db, "value = 1") == 2


def test_a_late_event_of_a_known_series_counts_at_once(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    assert client.post(RECORD, json=event(1.0)).status_code == 200  # series known
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    late = (hour + timedelta(minutes=20)).isoformat()

    assert client.post(RECORD, json=event(2.0)).status_code == 200  # steady state
    assert client.post(RECORD, json=event(3.0, timestamp=late)).status_code == 200

    answer = client.get("/api/v1/analytics/metrics/queue.depth/statistics?hours=4").json()
    assert answer["count"] == 3 and answer["max"] == 3.0
    assert count(db) == 3


def test_groups_at_once_adding_series_to_one_metric_never_pass_its_limit(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    """Two writers each add a series to a metric one short of its limit: the second counts
    the first's (as Prometheus' shards, or two processes, would)."""
    with (
        make_client(db_url, INGEST_WRITERS="2", INGEST_MAX_SERIES_PER_METRIC="2") as client,
        ThreadPoolExecutor(max_workers=2) as pool,
        psycopg.connect(db_url, autocommit=True) as probe,
    ):
        assert post(client, BATCH, [event(0, tags={"h": "a"})]).status_code == 200

        def blocked() -> int:
            row = probe.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()
            return int(row[0]) if row else 0

        with events_table_locked(db_url) as waiting:
            first = pool.submit(post, client, BATCH, [event(1, tags={"h": "b"})])
            wait_for(lambda: waiting() == 1)  # its series created, its COPY waiting
            second = pool.submit(post, client, BATCH, [event(2, tags={"h": "c"})])
            wait_for(lambda: blocked() == 2)  # the second writer waits too, somewhere
        results = [first.result(), second.result()]

    assert [r.status_code for r in results] == [200, 422]
    assert "series" in results[1].json()["message"]
    series = db.execute(
        "SELECT count(*) FROM analytics.series AS s JOIN analytics.metrics AS m "
        "ON m.id = s.metric_id WHERE m.name = 'queue.depth'"
    ).fetchone()
    assert series is not None and series[0] == 2
