"""Compression, on by default on the Community edition: raw events and every rollup tier
compressed by the migrations' policies, and late events into compressed chunks stored and
counted. On the Apache edition (no compression) these tests skip; the rest of the suite
covers both."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from jobs.compact import compact
from tests.support import assert_tiers_equal_raw

pytestmark = pytest.mark.community

COMPRESSED = {
    "metric_event_store": ("series_id", "time", timedelta(days=7)),
    "distribution_store": ("series_id", "time", timedelta(days=7)),
    "series_1h": ("series_id", "bucket", timedelta(days=7)),
    "metric_1h": ("metric_id", "bucket", timedelta(days=7)),
    "series_1d": ("series_id", "bucket", timedelta(days=30)),
    "metric_1d": ("metric_id", "bucket", timedelta(days=30)),
    "series_1m": ("series_id", "bucket", timedelta(hours=2)),
    "metric_1m": ("metric_id", "bucket", timedelta(hours=2)),
}


@pytest.fixture(autouse=True)
def community(db: psycopg.Connection[Any]) -> None:
    found = db.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
    if found != ("timescale",):
        pytest.skip(
            "compression exists on the Community edition only (timescaledb.license = "
            f"'timescale'); this server runs {found[0] if found else 'no'!r}"
        )


def test_the_migrations_compress_raw_events_and_every_tier(
    db: psycopg.Connection[Any],
) -> None:
    enabled = dict(
        db.execute(
            "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables "
            "WHERE hypertable_schema = 'analytics'"
        ).fetchall()
    )
    settings = {
        (row[0], row[1]): row[2:]
        for row in db.execute(
            "SELECT hypertable_name, attname, segmentby_column_index, orderby_asc "
            "FROM timescaledb_information.compression_settings "
            "WHERE hypertable_schema = 'analytics'"
        ).fetchall()
    }
    policies = dict(
        db.execute(
            "SELECT hypertable_name, (config ->> 'compress_after')::interval "
            "FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression'"
        ).fetchall()
    )

    assert {name for name, on in enabled.items() if on} == set(COMPRESSED)
    for relation, (segment_by, time_column, after) in COMPRESSED.items():
        assert settings[(relation, segment_by)][0] == 1  # the only segment column
        assert settings[(relation, time_column)][1] is False  # newest first
        assert policies[relation] == after


def _events(
    rng: random.Random, count: int, around: datetime, spread_s: float = 7200
) -> list[dict[str, Any]]:
    return [
        {
            "metric_name": f"m{rng.randrange(2)}",
            "metric_type": "gauge",
            "value": round(rng.lognormvariate(3, 1), 3),
            "tags": {"pod": str(rng.randrange(5))},
            "timestamp": (around - timedelta(seconds=rng.uniform(0, spread_s))).isoformat(),
        }
        for _ in range(count)
    ]


def _post(client: TestClient, batch: list[dict[str, Any]]) -> None:
    response = client.post("/api/v1/analytics/metrics/batch", json=batch)
    assert response.status_code == 200, response.text


def test_late_events_into_compressed_chunks_are_stored_and_counted(
    client: TestClient, db: psycopg.Connection[Any], db_url: str
) -> None:
    rng = random.Random(4)
    now = datetime.now(UTC)
    ten_days_ago, forty_days_ago = now - timedelta(days=10), now - timedelta(days=40)
    # minutes in chunks ended 2 hours ago or more: series' 1-hour chunks, metrics' 6-hour ones
    series_minutes, metric_minutes = now - timedelta(hours=3.5), now - timedelta(hours=9)

    def cohort(scale: int) -> list[dict[str, Any]]:
        return (
            _events(rng, 6 * scale, ten_days_ago)
            + _events(rng, 3 * scale, forty_days_ago)
            + _events(rng, 2 * scale, series_minutes, spread_s=1800)
            + _events(rng, 2 * scale, metric_minutes, spread_s=1800)
        )

    first = cohort(100)
    _post(client, first)
    compact(db_url)
    for relation in COMPRESSED:  # what the policies do once the chunks are old enough
        db.execute(
            "SELECT compress_chunk(c, if_not_compressed => true) "
            "FROM show_chunks(%s::regclass, older_than => INTERVAL '2 hours') AS c",
            (f"analytics.{relation}",),
        )
    compressed = db.execute(
        "SELECT hypertable_name, count(*) FROM timescaledb_information.chunks "
        "WHERE hypertable_schema = 'analytics' AND is_compressed GROUP BY 1"
    ).fetchall()
    no_histograms_here = set(COMPRESSED) - {"distribution_store"}
    assert {name for name, _ in compressed} == no_histograms_here
    window = {
        "start": (forty_days_ago - timedelta(hours=3)).isoformat(),
        "end": datetime.now(UTC).isoformat(),
    }
    before = client.get("/api/v1/analytics/metrics/m0/statistics", params=window).json()

    late = cohort(60)
    _post(client, late)  # into the same compressed chunks: raw, minute, hourly and daily
    pending = client.get("/api/v1/analytics/metrics/m0/statistics", params=window).json()
    compact(db_url)
    after = client.get("/api/v1/analytics/metrics/m0/statistics", params=window).json()
    exact = client.get(
        "/api/v1/analytics/metrics/m0/statistics", params={**window, "exact": "true"}
    ).json()

    m0 = sum(1 for event in first + late if event["metric_name"] == "m0")
    assert exact["count"] == pending["count"] == after["count"] == m0 > before["count"]
    assert after["max"] == exact["max"] and after["min"] == exact["min"]
    assert after["p95"] == pending["p95"]
    assert_tiers_equal_raw(db, db_url)  # a rebuild over the compressed chunks agrees
