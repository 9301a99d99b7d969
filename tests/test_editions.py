"""How each edition materialises the same rollups. The rest of the suite runs on either."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

ROLLUPS = {
    "metric_rollup_1h",
    "metric_rollup_1d",
    "metric_sketch_1h",
    "metric_sketch_1d",
    "metric_totals_1h",
    "metric_totals_1d",
    "metric_totals_sketch_1h",
    "metric_totals_sketch_1d",
}


def license_of(db: psycopg.Connection[Any]) -> str:
    row = db.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
    return str(row[0]) if row else "unknown"


@pytest.mark.community
def test_on_community_the_rollups_are_continuous_aggregates_without_real_time(
    db: psycopg.Connection[Any],
) -> None:
    edition = license_of(db)
    if edition != "timescale":
        pytest.skip(
            f"needs the Community edition (timescaledb.license = timescale); this server "
            f"says {edition}"
        )
    rows = db.execute(
        "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates "
        "WHERE view_schema = 'analytics'"
    ).fetchall()
    policies = db.execute(
        "SELECT count(*) FROM timescaledb_information.jobs "
        "WHERE proc_name = 'policy_refresh_continuous_aggregate'"
    ).fetchone()

    assert {name for name, _ in rows} == ROLLUPS
    assert all(materialized_only for _, materialized_only in rows)
    assert policies == (len(ROLLUPS),)


def test_on_apache_the_rollups_are_hypertables_kept_by_the_job(
    db: psycopg.Connection[Any],
) -> None:
    edition = license_of(db)
    if edition == "timescale":
        pytest.skip("the Community edition materialises rollups as continuous aggregates")
    rows = db.execute(
        "SELECT hypertable_name FROM timescaledb_information.hypertables "
        "WHERE hypertable_schema = 'analytics'"
    ).fetchall()

    assert {name for (name,) in rows} == ROLLUPS | {
        "metric_events",
        "health_checks",
        "platform_events",
        "user_analytics",
        "agent_analytics",
        "platform_metrics",
    }


def test_both_expose_the_same_columns(db: psycopg.Connection[Any]) -> None:
    columns = db.execute(
        "SELECT c.relname, array_agg(a.attname::text ORDER BY a.attnum) "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'analytics' AND a.attnum > 0 AND NOT a.attisdropped "
        "AND c.relname LIKE 'metric\\_%%\\_1_' GROUP BY 1"
    ).fetchall()

    found = dict(columns)
    assert found["metric_rollup_1h"] == [
        "bucket",
        "series_id",
        "count",
        "sum",
        "min",
        "max",
        "last",
    ]
    assert found["metric_sketch_1d"] == ["bucket", "series_id", "key", "n"]
    assert found["metric_totals_1d"] == ["bucket", "metric_id", "count", "sum", "min", "max"]
    assert found["metric_totals_sketch_1h"] == ["bucket", "metric_id", "key", "n"]
