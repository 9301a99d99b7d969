from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from jobs.scheduler import Job, Outcome, Scheduler, lock_key, manual_run
from tests.support import jobs_cli, make_client


def runs(db: psycopg.Connection[Any], job: str | None = None) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT job, outcome, error FROM _analytics.job_runs "
        "WHERE %(job)s::text IS NULL OR job = %(job)s ORDER BY id",
        {"job": job},
    ).fetchall()


def slow(seconds: float, calls: list[str], name: str) -> Job:
    def run(url: str) -> Outcome:
        calls.append(name)
        time.sleep(seconds)
        return Outcome(1, "done")

    return Job(name, timedelta(minutes=10), run)


def test_two_schedulers_started_together_run_each_job_once(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    calls: list[str] = []
    jobs = [slow(0.3, calls, "first"), slow(0.3, calls, "second")]
    replicas = [Scheduler(db_url, jobs), Scheduler(db_url, jobs)]
    barrier = threading.Barrier(2)

    def tick(scheduler: Scheduler) -> None:
        barrier.wait()
        scheduler.run_due()

    threads = [threading.Thread(target=tick, args=(s,)) for s in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    again = [s.run_due() for s in replicas]
    for scheduler in replicas:
        scheduler.close()

    assert sorted(calls) == ["first", "second"]
    assert again == [[], []]
    assert runs(db) == [("first", "ok", None), ("second", "ok", None)] or runs(db) == [
        ("second", "ok", None),
        ("first", "ok", None),
    ]


def test_a_failing_job_is_recorded_and_the_others_still_run(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    calls: list[str] = []

    def broken(url: str) -> Outcome:
        raise RuntimeError("disk on fire\nsecond line")

    scheduler = Scheduler(
        db_url, [Job("broken", timedelta(seconds=1), broken), slow(0, calls, "fine")]
    )
    first = scheduler.run_due()
    time.sleep(1.1)
    second = scheduler.run_due()
    scheduler.close()

    assert first == ["broken", "fine"]
    assert second == ["broken"]  # retried at its next interval; "fine" is not due yet
    failed = runs(db, "broken")
    assert [outcome for _, outcome, _ in failed] == ["failed", "failed"]
    assert failed[0][2] == "RuntimeError: disk on fire second line"


KILLABLE = textwrap.dedent("""
    import sys, time
    from datetime import timedelta
    from jobs.scheduler import Job, Outcome, Scheduler

    def forever(url):
        print("started", flush=True)
        time.sleep(600)
        return Outcome()

    Scheduler(sys.argv[1], [Job("long", timedelta(seconds=1), forever)]).run_due()
""")


def test_a_job_killed_mid_run_is_picked_up_again(db_url: str, db: psycopg.Connection[Any]) -> None:
    victim = subprocess.Popen(
        [sys.executable, "-c", KILLABLE, db_url], stdout=subprocess.PIPE, text=True
    )
    assert victim.stdout is not None and victim.stdout.readline().strip() == "started"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    victim.stdout.close()
    calls: list[str] = []
    successor = Scheduler(
        db_url, [Job("long", timedelta(seconds=1), lambda url: calls.append("long") or Outcome())]
    )

    deadline = time.monotonic() + 60
    while not calls and time.monotonic() < deadline:
        successor.run_due()  # the dead process's lock goes with its connection
        time.sleep(0.2)
    successor.close()

    assert calls == ["long"]
    assert [outcome for _, outcome, _ in runs(db, "long")] == ["interrupted", "ok"]


def insert_raw(db: psycopg.Connection[Any], when: list[datetime], metric: str = "m") -> None:
    """Events written straight into raw storage: no invalidation recorded, as a bulk load."""
    metric_id = db.execute(
        "INSERT INTO analytics.metrics (name, metric_type) VALUES (%s, 'gauge') "
        "ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id",
        (metric,),
    ).fetchone()
    series = db.execute(
        "INSERT INTO analytics.series (metric_id, tags) VALUES (%s, '{}') "
        "ON CONFLICT (metric_id, tags) DO UPDATE SET tags = excluded.tags RETURNING id",
        (metric_id[0] if metric_id else None,),
    ).fetchone()
    with db.cursor().copy(
        "COPY analytics.metric_events (time, series_id, value) FROM STDIN"
    ) as copy:
        for i, moment in enumerate(when):
            copy.write_row((moment, series[0] if series else None, float(i)))


def test_refresh_over_a_range_fixes_rollups_after_late_data(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)
    insert_raw(db, [day + timedelta(hours=h, minutes=10) for h in range(30)])
    assert (
        jobs_cli(
            "refresh",
            "--start",
            day.isoformat(),
            "--end",
            (day + timedelta(days=2)).isoformat(),
            url=db_url,
        ).returncode
        == 0
    )
    insert_raw(db, [day + timedelta(hours=5, minutes=30), day + timedelta(hours=26)])

    result = jobs_cli(
        "refresh",
        "--start",
        day.isoformat(),
        "--end",
        (day + timedelta(days=2)).isoformat(),
        url=db_url,
    )

    assert result.returncode == 0, result.stderr
    assert "30 series-hour(s) rebuilt over 2 day(s)" in result.stdout
    hourly = db.execute("SELECT sum(count), max(max) FROM analytics.series_1h").fetchone()
    assert hourly == (32, 29.0)


def refresh_since(db_url: str, start: datetime) -> subprocess.CompletedProcess[str]:
    return jobs_cli(
        "refresh", "--start", start.isoformat(), "--end", datetime.now(UTC).isoformat(), url=db_url
    )


def chunks(db: psycopg.Connection[Any], relation: str) -> int:
    row = db.execute("SELECT count(*) FROM show_chunks(%s::regclass)", (relation,)).fetchone()
    return int(row[0]) if row else 0


def test_retention_dry_run_lists_and_drops_nothing_then_drops_keeping_rollups(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    old = datetime.now(UTC) - timedelta(days=120)
    insert_raw(db, [old, old + timedelta(days=1), datetime.now(UTC) - timedelta(hours=2)])
    assert refresh_since(db_url, old - timedelta(days=1)).returncode == 0
    before = chunks(db, "analytics.metric_event_store")
    hourly_before = db.execute("SELECT count(*) FROM analytics.series_1h").fetchone()

    dry = jobs_cli("retention", "--dry-run", url=db_url)
    assert dry.returncode == 0, dry.stderr
    assert "2 chunk(s) would drop" in dry.stdout
    assert dry.stdout.count("would drop _timescaledb_internal.") == 2
    assert chunks(db, "analytics.metric_event_store") == before

    real = jobs_cli("retention", url=db_url)
    assert real.returncode == 0, real.stderr
    assert chunks(db, "analytics.metric_event_store") == before - 2
    # The tiers outlive the raw events, and a rebuild over the dropped range keeps them.
    assert refresh_since(db_url, old - timedelta(days=1)).returncode == 0
    assert db.execute("SELECT count(*) FROM analytics.series_1h").fetchone() == (hourly_before)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("refresh", "--start", "yesterday", "--end", "2026-01-01T00:00:00Z"), "--start"),
        (("refresh", "--start", "2026-01-01T00:00:00Z"), "give both --start and --end"),
        (
            ("refresh", "--start", "2026-01-02T00:00:00Z", "--end", "2026-01-01T00:00:00Z"),
            "--end must be later",
        ),
        (("retention", "--days", "-1"), "--days"),
        (("status", "--limit", "0"), "--limit"),
        (("compress", "--after-days", "x"), "--after-days"),
        (("frobnicate",), "No such command"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    db_url: str, args: tuple[str, ...], words: str
) -> None:
    result = jobs_cli(*args, url=db_url)

    assert result.returncode == 2
    assert words in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["status", "retention", "refresh", "compress"])
def test_an_unreachable_database_is_one_line_and_exit_1(command: str) -> None:
    result = jobs_cli(command, url="postgresql://nobody:pw@127.0.0.1:1/none")

    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot reach the database")
    assert len(result.stderr.strip().splitlines()) == 1
    assert ":pw@" not in result.stderr


def test_every_command_explains_itself() -> None:
    for command in ["migrate", "refresh", "retention", "compress", "run", "status"]:
        result = jobs_cli(command, "--help")
        assert result.returncode == 0
        assert "DATABASE_URL" in result.stdout


def test_compress_reports_what_the_edition_allows(db_url: str, db: psycopg.Connection[Any]) -> None:
    edition = db.execute("SELECT current_setting('timescaledb.license', true)").fetchone()

    result = jobs_cli("compress", url=db_url)

    assert result.returncode == 0, result.stderr
    if edition == ("timescale",):
        assert "policy: compress chunks older than 7 day(s)" in result.stdout
    else:
        assert "compression is unavailable on the apache edition" in result.stdout


def test_the_api_server_runs_the_scheduler_and_lists_the_runs(db_url: str) -> None:
    with make_client(db_url, RUN_SCHEDULER="true") as client:
        deadline = time.monotonic() + 60
        answer: dict[str, Any] = {}
        while time.monotonic() < deadline:
            answer = client.get("/api/v1/analytics/jobs").json()
            # Wait for what the assertion checks: every job's run has *finished*. A job that has
            # only started is listed as 'running' (this loop once ended on that and flaked).
            finished = {run["job"] for run in answer["runs"] if run["outcome"] != "running"}
            if finished >= {"track", "health", "alerts", "retention"}:
                break
            time.sleep(0.2)

    assert answer["scheduler_in_this_process"] is True
    assert [job["name"] for job in answer["jobs"]] == [
        "health",
        "alerts",
        "track",
        "retention",
    ]
    assert {(run["job"], run["outcome"]) for run in answer["runs"]} == {
        ("health", "ok"),
        ("alerts", "ok"),
        ("retention", "ok"),
        ("track", "ok"),
    }


def test_status_shows_recent_runs(db_url: str) -> None:
    scheduler = Scheduler(
        db_url, [Job("tiny", timedelta(hours=1), lambda url: Outcome(7, "seven"))]
    )
    scheduler.run_due()
    scheduler.close()

    result = jobs_cli("status", url=db_url)

    assert result.returncode == 0
    assert "tiny" in result.stdout and "ok" in result.stdout and "seven" in result.stdout


def test_a_manual_refresh_is_listed_right_after_it(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)
    insert_raw(db, [day + timedelta(hours=h, minutes=10) for h in range(30)])
    refreshed = jobs_cli(
        "refresh",
        "--start",
        day.isoformat(),
        "--end",
        (day + timedelta(days=2)).isoformat(),
        url=db_url,
    )
    assert refreshed.returncode == 0, refreshed.stderr

    status = jobs_cli("status", url=db_url)
    with make_client(db_url) as client:
        answer = client.get("/api/v1/analytics/jobs").json()

    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].split()[:2] == ["job", "trigger"]
    assert lines[1].split()[:2] == ["rollups", "manual"]
    assert "ok" in lines[1] and "tiers rebuilt from" in lines[1]
    [run] = answer["runs"]
    assert (run["job"], run["trigger"], run["outcome"]) == ("rollups", "manual", "ok")
    assert run["finished_at"] is not None


@pytest.mark.parametrize("command", [["refresh"], ["retention"], ["track"], ["alerts"], ["health"]])
def test_every_manual_run_is_recorded(
    command: list[str], db_url: str, db: psycopg.Connection[Any]
) -> None:
    result = jobs_cli(*command, url=db_url)

    assert result.returncode == 0, result.stderr
    job = {"refresh": "rollups"}.get(command[0], command[0])
    recorded = db.execute("SELECT job, trigger, outcome FROM _analytics.job_runs").fetchall()
    assert recorded == [(job, "manual", "ok")]


def test_a_failed_manual_run_is_recorded_as_failed(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    db.execute("ALTER TABLE _analytics.series_deltas RENAME TO gone")

    result = jobs_cli("refresh", url=db_url)

    assert result.returncode == 1
    [(outcome, error, trigger)] = db.execute(
        "SELECT outcome, error, trigger FROM _analytics.job_runs WHERE job = 'rollups'"
    ).fetchall()
    assert (outcome, trigger) == ("failed", "manual")
    assert "series_deltas" in error


def test_a_dry_run_is_not_a_run(db_url: str, db: psycopg.Connection[Any]) -> None:
    assert jobs_cli("retention", "--dry-run", url=db_url).returncode == 0

    assert runs(db) == []


def test_a_manual_run_neither_runs_beside_nor_postpones_the_scheduled_one(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    calls: list[str] = []
    scheduler = Scheduler(db_url, [slow(0, calls, "tiny")])
    try:
        with manual_run(db_url, "tiny") as run:
            during = scheduler.run_due()  # the lock is held: not run, nothing marked interrupted
            assert runs(db) == [("tiny", "running", None)]
            run.outcome = Outcome(3, "by hand")
        after = scheduler.run_due()  # due all the same: the manual run does not count
    finally:
        scheduler.close()

    assert during == [] and after == ["tiny"] and calls == ["tiny"]
    recorded = db.execute(
        "SELECT trigger, outcome, rows_affected, detail FROM _analytics.job_runs ORDER BY id"
    ).fetchall()
    assert recorded == [("manual", "ok", 3, "by hand"), ("schedule", "ok", 1, "done")]


def awaited(db_url: str, job: str, timeout: float = 60) -> threading.Event:
    """An Event set once a session of this test's database waits for the advisory lock of
    `job` (an ungranted lock in pg_locks), watched on a connection of its own for `timeout` s."""
    key = lock_key(job) & 0xFFFF_FFFF_FFFF_FFFF
    seen = threading.Event()

    def watch() -> None:
        with psycopg.connect(db_url, autocommit=True) as conn:
            deadline = time.monotonic() + timeout
            while not seen.is_set() and time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND database = (SELECT oid FROM pg_database"
                    "                 WHERE datname = current_database())"
                    " AND classid = %s::oid AND objid = %s::oid AND objsubid = 1",
                    (key >> 32, key & 0xFFFF_FFFF),
                ).fetchone()
                if row and row[0]:
                    seen.set()
                time.sleep(0.02)

    threading.Thread(target=watch, daemon=True).start()
    return seen


def test_a_manual_run_waits_for_the_scheduled_one_in_flight(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    calls: list[str] = []
    manual_waits = awaited(db_url, "tiny")

    def in_flight(url: str) -> Outcome:
        # Until the manual run waits for the lock, however long it takes to get there (a fixed
        # sleep here was sometimes over before the manual run had connected).
        calls.append("tiny")
        manual_waits.wait(60)
        return Outcome(1, "done")

    scheduler = Scheduler(db_url, [Job("tiny", timedelta(minutes=10), in_flight)])
    scheduled = threading.Thread(target=scheduler.run_due)
    scheduled.start()
    deadline = time.monotonic() + 60
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    messages: list[str] = []
    with manual_run(db_url, "tiny", waiting=messages.append):
        during = runs(db)
    scheduled.join()
    scheduler.close()

    assert manual_waits.is_set()
    assert messages == ["waiting for the run of tiny in flight to finish"]
    assert during == [("tiny", "ok", None), ("tiny", "running", None)]


def test_shutdown_waits_for_the_job_in_flight_a_bounded_time(
    db_url: str, db: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    import service.app
    from jobs.scheduler import start_in_thread

    monkeypatch.setattr(service.app, "SCHEDULER_STOP_WAIT_S", 0.5)
    release = threading.Event()
    started = threading.Event()

    def long_rollup(url: str) -> Outcome:
        started.set()
        release.wait(60)  # a rollup over a large backlog
        return Outcome()

    scheduler = Scheduler(db_url, [Job("long", timedelta(seconds=1), long_rollup)])
    thread = start_in_thread(scheduler)
    assert started.wait(30)
    began = time.monotonic()
    asyncio.run(service.app.stop_scheduler(scheduler, thread))
    waited = time.monotonic() - began

    assert waited < 10  # not the job's 60 s
    assert thread.is_alive()
    release.set()
    thread.join(30)
    scheduler.close()
    # In a server the process then exits and the run is marked interrupted by the next claimer
    # (test_a_job_killed_mid_run_is_picked_up_again); here the thread lives on and finishes.
    assert [outcome for _, outcome, _ in runs(db, "long")] == ["ok"]
