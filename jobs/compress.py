"""Compression of raw events, on the Community edition (the Apache edition has none).

Chunks older than COMPRESS_AFTER_DAYS are compressed by TimescaleDB's own policy, segmented by
series (every query reads whole series over time ranges) and ordered by time. Ingest still
accepts late events into compressed chunks, and the rollups still read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg

from jobs.migrate import edition
from service.db import connect_sync


@dataclass
class CompressReport:
    edition: str
    available: bool
    enabled_now: bool = False
    policy: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


def setup(url: str, after_days: int) -> CompressReport:
    with connect_sync(url, "astraeus-compress", autocommit=True) as conn:
        found = edition(conn)
        if found != "timescale":
            return CompressReport(found, available=False)
        report = CompressReport(found, available=True)
        enabled = conn.execute(
            "SELECT compression_enabled FROM timescaledb_information.hypertables "
            "WHERE hypertable_schema = 'analytics' AND hypertable_name = 'metric_events'"
        ).fetchone()
        if not enabled or not enabled[0]:
            conn.execute(
                "ALTER TABLE analytics.metric_events SET (timescaledb.compress, "
                "timescaledb.compress_segmentby = 'series_id', "
                "timescaledb.compress_orderby = 'time DESC')"
            )
            report.enabled_now = True
        conn.execute(
            "SELECT add_compression_policy('analytics.metric_events', compress_after => %s, "
            "if_not_exists => true)",
            (timedelta(days=after_days),),
        )
        with conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
            policy = cursor.execute(
                "SELECT job_id, schedule_interval, config FROM timescaledb_information.jobs "
                "WHERE proc_name = 'policy_compression' AND hypertable_name = 'metric_events'"
            ).fetchone()
            report.policy = dict(policy or {})
            stats = cursor.execute(
                "SELECT total_chunks, number_compressed_chunks, before_compression_total_bytes, "
                "after_compression_total_bytes "
                "FROM hypertable_compression_stats('analytics.metric_events')"
            ).fetchone()
            report.stats = dict(stats or {})
        return report
