"""Retention: drop whole chunks older than each relation's retention, with drop_chunks.

Raw events are kept RETENTION_DAYS; the hourly rollups RETENTION_HOURLY_DAYS and the daily ones
RETENTION_DAILY_DAYS (0: forever), so statistics over old windows still come from the rollups
after their raw events are gone. Only chunks entirely older than the cut-off are dropped. The
same works on both editions (on the Community edition drop_chunks takes the continuous
aggregates by name). Expired Idempotency-Keys and old job runs are pruned too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import psycopg

import sql
from jobs.rollups import rollups
from service.db import connect_sync

JOB_RUNS_KEPT = timedelta(days=30)


@dataclass(frozen=True)
class Policy:
    raw_days: int
    hourly_days: int
    daily_days: int  # 0: keep forever
    idempotency_ttl: timedelta = timedelta(hours=24)


@dataclass
class RetentionReport:
    dry_run: bool
    chunks: list[tuple[str, str]] = field(default_factory=list)  # (relation, chunk)
    keys_pruned: int = 0
    runs_pruned: int = 0


def targets(conn: psycopg.Connection, policy: Policy) -> list[tuple[str, int]]:
    found = [("analytics.metric_events", policy.raw_days)]
    for rollup in rollups(conn):
        days = policy.hourly_days if rollup.width < timedelta(days=1) else policy.daily_days
        found.append((f"analytics.{rollup.name}", days))
    return [(relation, days) for relation, days in found if days > 0]


def apply(url: str, policy: Policy, dry_run: bool = False) -> RetentionReport:
    report = RetentionReport(dry_run)
    with connect_sync(url, "astraeus-retention", autocommit=True) as conn:
        for relation, days in targets(conn, policy):
            cutoff = timedelta(days=days)
            verb = "show_chunks" if dry_run else "drop_chunks"
            rows = conn.execute(
                f"SELECT {verb}(%s::regclass, older_than => %s)", (relation, cutoff)
            ).fetchall()
            report.chunks.extend((relation, str(row[0])) for row in rows)
        if not dry_run:
            pruned = conn.execute(
                sql.query("idempotency_keys_prune"), {"ttl": policy.idempotency_ttl}
            )
            report.keys_pruned = pruned.rowcount
            runs = conn.execute(sql.query("job_runs_prune"), {"keep": JOB_RUNS_KEPT})
            report.runs_pruned = runs.rowcount
    return report
