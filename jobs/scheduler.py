"""The scheduler: every periodic job at its interval, once per interval across all replicas.

Any number of processes may run it (`python -m jobs run`, or the API server with
RUN_SCHEDULER=true). On each tick a process tries each job: it takes the job's PostgreSQL
advisory lock without waiting (pg_try_advisory_lock), and holding it, checks in
_analytics.job_runs whether the job last started at least one interval ago (by the database's
clock, so replicas' clocks do not matter). Only then does it run the job, recording the run.
A process that dies mid-job loses its session and so the lock; its run stays 'running' until
the next process to claim the job marks it 'interrupted' and runs the job again. A failed job
is recorded and tried again at its next interval; it does not stop the others.

A run started by hand (`python -m jobs refresh`, ...) goes through manual_run: recorded the same
way, marked 'manual', holding the same lock (waiting for a scheduled run in flight to finish).
Only scheduled runs count for "due", so a manual one never postpones the periodic run.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta

import psycopg

import sql
from core.db import connect_sync

log = logging.getLogger("astraeus.scheduler")


@dataclass(frozen=True)
class Outcome:
    rows: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class Job:
    name: str
    interval: timedelta
    run: Callable[[str], Outcome]  # given the database URL

    @property
    def lock_key(self) -> int:
        return lock_key(self.name)


def lock_key(job: str) -> int:
    """The job's advisory lock: held by whichever process runs it, scheduled or manual."""
    digest = hashlib.sha256(f"astraeus-job:{job}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:1000]


class Scheduler:
    def __init__(self, url: str, jobs: Sequence[Job], stop: threading.Event | None = None):
        self.url = url
        self.jobs = list(jobs)
        self.stop = stop or threading.Event()
        self.host = socket.gethostname()
        self._conn: psycopg.Connection | None = None

    def _session(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect_sync(self.url, "astraeus-scheduler", autocommit=True)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def run_due(self) -> list[str]:
        """One pass: run every job that is due and not running elsewhere. Returns their names."""
        ran = []
        for job in self.jobs:
            if self.stop.is_set():
                break
            try:
                if self._try(job):
                    ran.append(job.name)
            except psycopg.OperationalError as exc:
                log.warning("scheduler cannot reach the database: %s", one_line(exc))
                self.close()
                break
            except Exception as exc:  # (a standby after failover, a schema not migrated yet)
                log.warning("scheduler could not claim %s: %s", job.name, one_line(exc))
                self.close()
                break
        return ran

    def _try(self, job: Job) -> bool:
        conn = self._session()
        locked = conn.execute(sql.query("advisory_lock_try"), {"key": job.lock_key}).fetchone()
        if not locked or not locked[0]:
            return False  # another process is running it right now
        try:
            due = conn.execute(
                sql.query("job_due"), {"interval": job.interval, "job": job.name}
            ).fetchone()
            if not due or not due[0]:
                return False
            conn.execute(sql.query("job_mark_interrupted"), {"job": job.name})
            run = conn.execute(
                sql.query("job_start"),
                {"job": job.name, "host": self.host, "pid": os.getpid(), "trigger": "schedule"},
            ).fetchone()
            assert run is not None
            self._execute(conn, job, run[0])
            return True
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.execute(sql.query("advisory_unlock"), {"key": job.lock_key})

    def _execute(self, conn: psycopg.Connection, job: Job, run_id: int) -> None:
        log.info("running %s", job.name)
        finish = {"id": run_id, "rows": None, "error": None, "detail": None}
        try:
            outcome = job.run(self.url)
        except Exception as exc:  # a failing job is recorded and retried next interval
            log.warning("%s failed: %s", job.name, one_line(exc))
            conn.execute(
                sql.query("job_finish"), {**finish, "outcome": "failed", "error": one_line(exc)}
            )
            return
        conn.execute(
            sql.query("job_finish"),
            {**finish, "outcome": "ok", "rows": outcome.rows, "detail": outcome.detail or None},
        )
        log.info("%s done: %s", job.name, outcome.detail or f"{outcome.rows} rows")

    def serve(self, tick_s: float = 1.0) -> None:
        """Run due jobs every `tick_s` until `stop` is set; a job in flight is finished."""
        log.info(
            "scheduler started: %s",
            ", ".join(f"{job.name} every {job.interval.total_seconds():g} s" for job in self.jobs),
        )
        try:
            while not self.stop.is_set():
                self.run_due()
                self.stop.wait(tick_s)
        finally:
            self.close()
            log.info("scheduler stopped")


def start_in_thread(scheduler: Scheduler) -> threading.Thread:
    thread = threading.Thread(target=scheduler.serve, name="astraeus-scheduler", daemon=True)
    thread.start()
    return thread


class ManualRun:
    """A run started by hand; the caller sets `outcome` once the job is done."""

    def __init__(self) -> None:
        self.outcome = Outcome()


@contextlib.contextmanager
def manual_run(
    url: str, job: str, waiting: Callable[[str], None] = log.info
) -> Iterator[ManualRun]:
    """Record the block as a manual run of `job` in _analytics.job_runs: 'ok' with the outcome
    set on the ManualRun, 'failed' with the error if it raises, 'interrupted' on Ctrl-C.

    Holds the job's advisory lock for the run, on a session of its own, as the scheduler does:
    a scheduled run in flight is waited for (`waiting` says so), none starts meanwhile, and if
    this process dies the next claimant marks its run 'interrupted'.
    """
    key = lock_key(job)
    with connect_sync(url, "astraeus-jobs", autocommit=True) as conn:
        locked = conn.execute(sql.query("advisory_lock_try"), {"key": key}).fetchone()
        if not locked or not locked[0]:
            waiting(f"waiting for the run of {job} in flight to finish")
            conn.execute(sql.query("advisory_lock"), {"key": key})
        try:
            conn.execute(sql.query("job_mark_interrupted"), {"job": job})
            started = conn.execute(
                sql.query("job_start"),
                {"job": job, "host": socket.gethostname(), "pid": os.getpid(), "trigger": "manual"},
            ).fetchone()
            assert started is not None
            finish = {"id": started[0], "rows": None, "error": None, "detail": None}
            run = ManualRun()
            try:
                yield run
            except BaseException as exc:
                failed = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                with contextlib.suppress(psycopg.Error):
                    conn.execute(
                        sql.query("job_finish"),
                        {**finish, "outcome": failed, "error": one_line(exc)},
                    )
                raise
            conn.execute(
                sql.query("job_finish"),
                {
                    **finish,
                    "outcome": "ok",
                    "rows": run.outcome.rows,
                    "detail": run.outcome.detail or None,
                },
            )
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.execute(sql.query("advisory_unlock"), {"key": key})
