"""Raw values stored as exact decimals (ingest/decimals.py, 0020_decimal_values.sql): every
value reads back bit for bit, whichever form it was stored in and whichever path wrote it."""

from __future__ import annotations

import math
import random
import struct
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from ingest import decimals

RECORD = "/api/v1/analytics/metrics/record"
BATCH = "/api/v1/analytics/metrics/batch"

AWKWARD = [
    33.125,
    0.1 + 0.2,  # 17 significant digits: stays a float
    -0.0,  # stays a float: digits would lose the sign
    0.0,
    -12.5,
    1e-15,
    1.5e-16,  # 16 decimals: a float
    2.0**53,
    2.0**53 + 2,  # an integer past 2^53: a float
    1e300,
    -5e-324,
    math.pi,
    123456789.123,
]


def bits(value: float) -> bytes:
    return struct.pack("<d", value)


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=600))
def test_both_ways_give_the_same_columns_and_each_is_exact(values: list[float]) -> None:
    stored, scales, digits = decimals.columns(values)
    one_by_one = [decimals.decimal(v) for v in values]
    for value, kept, scale, digit, alone in zip(
        values, stored, scales, digits, one_by_one, strict=True
    ):
        if kept is not None:
            assert alone is None and scale is None and digit is None and bits(kept) == bits(value)
        else:
            assert (scale, digit) == alone
            assert scale is not None and digit is not None
            assert abs(digit) <= decimals.EXACT and bits(digit / 10.0**scale) == bits(value)


def test_a_three_decimal_value_is_stored_as_digits_and_a_long_float_as_itself(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    for value in (33.125, 0.1 + 0.2):
        response = client.post(
            RECORD, json={"metric_name": "latency", "metric_type": "gauge", "value": value}
        )
        assert response.status_code == 200, response.text

    rows = db.execute(
        "SELECT value, decimals, digits FROM analytics.metric_event_store ORDER BY time"
    ).fetchall()

    assert rows == [(None, 3, 33125), (0.1 + 0.2, None, None)]


def test_every_value_reads_back_bit_for_bit_from_both_paths(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    rng = random.Random(7)
    many = AWKWARD + [round(rng.lognormvariate(3, 1), rng.randrange(0, 7)) for _ in range(600)]
    many += [rng.uniform(-1e6, 1e6) for _ in range(100)]
    many += [round(rng.uniform(-1, 1), places) for places in range(16) for _ in range(5)]
    response = client.post(
        BATCH, json=[{"metric_name": "big", "metric_type": "gauge", "value": v} for v in many]
    )
    assert response.status_code == 200, response.text
    for value in AWKWARD:  # one event a request: the record path's plain-Python way
        response = client.post(
            RECORD, json={"metric_name": "small", "metric_type": "gauge", "value": value}
        )
        assert response.status_code == 200, response.text

    for metric, sent in (("big", many), ("small", AWKWARD)):
        read = db.execute(
            "SELECT e.value FROM analytics.metric_events AS e "
            "JOIN analytics.series AS s ON s.id = e.series_id "
            "JOIN analytics.metrics AS m ON m.id = s.metric_id WHERE m.name = %s",
            (metric,),
            binary=True,  # float8 as its 8 bytes, no text round trip
        ).fetchall()
        assert sorted(bits(v) for (v,) in read) == sorted(bits(v) for v in sent)
    compact = db.execute(
        "SELECT count(*) FILTER (WHERE digits IS NOT NULL), count(*) "
        "FROM analytics.metric_event_store"
    ).fetchone()
    assert compact is not None and compact[0] > 0.8 * compact[1]


def test_rows_inserted_into_the_view_keep_their_float(db: psycopg.Connection[Any]) -> None:
    series = db.execute(
        "WITH m AS (INSERT INTO analytics.metrics (name, metric_type) VALUES ('dba', 'gauge') "
        "RETURNING id) INSERT INTO analytics.series (metric_id) SELECT id FROM m RETURNING id"
    ).fetchone()
    assert series is not None
    db.execute(
        "INSERT INTO analytics.metric_events (time, series_id, value) VALUES (now(), %s, 2.5)",
        (series[0],),
    )

    assert db.execute(
        "SELECT value, decimals, digits FROM analytics.metric_event_store"
    ).fetchall() == [(2.5, None, None)]
    assert db.execute("SELECT value FROM analytics.metric_events").fetchall() == [(2.5,)]
    with pytest.raises(psycopg.errors.NotNullViolation, match="value"):
        db.execute(
            "INSERT INTO analytics.metric_events (time, series_id, value) VALUES (now(), %s, NULL)",
            (series[0],),
        )
    db.execute("DELETE FROM analytics.metric_events WHERE value = 2.5")
    assert db.execute("SELECT count(*) FROM analytics.metric_event_store").fetchone() == (0,)
