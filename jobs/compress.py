"""Compression, on the Community edition (the Apache edition has none).

Migrations 0017 and 0019 turn it on for raw events and every rollup tier, each with a policy of
TimescaleDB's own (segmented by series or metric, ordered by time; raw chunks compressed after
7 days, minute tiers after 2 hours, hourly after 7 days, daily after 30); late events into
compressed chunks are stored and counted like any other. `python -m jobs compress` sets the raw
events' policy to COMPRESS_AFTER_DAYS (or `--after-days`) and reports what each relation holds
compressed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import sql
from core.db import connect_sync
from sql.migrate import edition

RELATIONS = (
    "metric_event_store",
    "series_1m",
    "metric_1m",
    "series_1h",
    "metric_1h",
    "series_1d",
    "metric_1d",
)


@dataclass(frozen=True)
class Relation:
    name: str
    compress_after: timedelta | None  # None: no policy
    job_id: int | None
    schedule_interval: timedelta | None
    chunks: int
    compressed_chunks: int
    bytes_before: int
    bytes_after: int


@dataclass
class CompressReport:
    edition: str
    available: bool
    raw_policy_changed: bool = False
    relations: list[Relation] = field(default_factory=list)


def setup(url: str, after_days: int) -> CompressReport:
    with connect_sync(url, "astraeus-compress", autocommit=True) as conn:
        found = edition(conn)
        if found != "timescale":
            return CompressReport(found, available=False)
        report = CompressReport(found, available=True)
        wanted = timedelta(days=after_days)
        row = conn.execute(sql.query("compression_policy"), {"relation": "metric_event_store"})
        current = row.fetchone()
        if current is None or current[0] != wanted:
            conn.execute(sql.query("compression_policy_replace"), {"after": wanted})
            report.raw_policy_changed = True
        for name in RELATIONS:
            policy = conn.execute(sql.query("compression_policy"), {"relation": name}).fetchone()
            stats = conn.execute(
                sql.query("compression_stats"), {"relation": f"analytics.{name}"}
            ).fetchone() or (0, 0, 0, 0)  # (no row while the hypertable has no chunk)
            report.relations.append(
                Relation(
                    name,
                    policy[0] if policy else None,
                    policy[1] if policy else None,
                    policy[2] if policy else None,
                    int(stats[0] or 0),
                    int(stats[1] or 0),
                    int(stats[2] or 0),
                    int(stats[3] or 0),
                )
            )
        return report
