"""Retention: drop whole chunks older than each relation's retention, with drop_chunks.

Raw events are kept RETENTION_DAYS; the minute tiers RETENTION_SERIES_MINUTE_HOURS (per series)
and RETENTION_MINUTE_HOURS (per metric), never a minute of an hour not folded yet nor past the
tier's own horizon mark (query/plan.py reads minutes from there on); the hourly tiers
RETENTION_HOURLY_DAYS and the daily ones RETENTION_DAILY_DAYS (0: forever), so
statistics over old windows still come from them after their raw events are gone. Only chunks
entirely older than the cut-off are dropped, the same way on both editions. Expired
Idempotency-Keys and old job runs are pruned too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg

import sql
from core.db import connect_sync

JOB_RUNS_KEPT = timedelta(days=30)


@dataclass(frozen=True)
class Policy:
    raw_days: int
    hourly_days: int
    daily_days: int  # 0: keep forever
    idempotency_ttl: timedelta = timedelta(hours=24)
    series_minute_hours: int = 6
    metric_minute_hours: int = 48


@dataclass
class RetentionReport:
    dry_run: bool
    chunks: list[tuple[str, str]] = field(default_factory=list)  # (relation, chunk)
    keys_pruned: int = 0
    runs_pruned: int = 0


def targets(conn: psycopg.Connection, policy: Policy) -> list[tuple[str, timedelta | datetime]]:
    """Each relation with retention, and what drop_chunks drops chunks older than."""
    found: list[tuple[str, timedelta | datetime]] = []
    days = {
        "analytics.metric_event_store": policy.raw_days,
        "analytics.distribution_store": policy.raw_days,
        "analytics.series_1h": policy.hourly_days,
        "analytics.metric_1h": policy.hourly_days,
        "analytics.series_1d": policy.daily_days,
        "analytics.metric_1d": policy.daily_days,
    }
    found.extend((relation, timedelta(days=n)) for relation, n in days.items() if n > 0)
    row = conn.execute(
        sql.query("minute_tier_cutoffs"),
        {
            "series": timedelta(hours=policy.series_minute_hours),
            "metric": timedelta(hours=policy.metric_minute_hours),
        },
    ).fetchone()
    assert row is not None
    found += [("analytics.series_1m", row[0]), ("analytics.metric_1m", row[1])]
    return found


def apply(url: str, policy: Policy, dry_run: bool = False) -> RetentionReport:
    report = RetentionReport(dry_run)
    with connect_sync(url, "astraeus-retention", autocommit=True) as conn:
        for relation, cutoff in targets(conn, policy):
            # A dynamic builder (see sql/README.md): the function is one of the fixed pair
            # show_chunks / drop_chunks; the relation (from `targets`) and the cut-off are bind
            # parameters, the cut-off an interval or a timestamptz as the relation needs.
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
