"""Both editions keep the rollups the same way: the tiers are hypertables our own compactor
fills, with no continuous aggregate anywhere. The rest of the suite runs on either."""

from __future__ import annotations

from typing import Any

import psycopg

TIERS = {"series_1m", "series_1h", "series_1d", "metric_1m", "metric_1h", "metric_1d"}
COLUMNS = ["bucket", "count", "sum", "min", "max", "keys", "counts", "k50", "k95", "k99"]


def test_the_tiers_are_hypertables_and_nothing_is_a_continuous_aggregate(
    db: psycopg.Connection[Any],
) -> None:
    rows = db.execute(
        "SELECT hypertable_name FROM timescaledb_information.hypertables "
        "WHERE hypertable_schema = 'analytics'"
    ).fetchall()
    caggs = db.execute(
        "SELECT count(*) FROM timescaledb_information.continuous_aggregates"
    ).fetchone()

    assert {name for (name,) in rows} == TIERS | {
        "metric_event_store",
        "distribution_store",
        "health_checks",
        "platform_events",
        "user_analytics",
        "agent_analytics",
        "platform_metrics",
    }
    assert caggs == (0,)


def test_every_tier_has_the_same_columns(db: psycopg.Connection[Any]) -> None:
    columns = dict(
        db.execute(
            "SELECT c.relname, array_agg(a.attname::text ORDER BY a.attnum) "
            "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'analytics' AND a.attnum > 0 AND NOT a.attisdropped "
            "AND c.relname = ANY (%s) GROUP BY 1",
            (sorted(TIERS),),
        ).fetchall()
    )

    for tier in TIERS:
        owner = "series_id" if tier.startswith("series") else "metric_id"
        assert columns[tier] == [COLUMNS[0], owner, *COLUMNS[1:]], tier
