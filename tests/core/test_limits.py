"""Limits against hostile or careless clients: long queries are cut with a clear 4xx while ingest
carries on, bodies are bounded after decompression, and the server refuses to start without a
secret its configuration needs."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
from typing import Any

import psycopg
import pytest

from core.settings import SettingError, load
from tests.support import make_client

BATCH = "/api/v1/analytics/metrics/batch"


def test_a_long_query_is_cut_while_ingest_carries_on(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    with make_client(db_url, STATEMENT_TIMEOUT_MS="100", QUERY_MAX_RAW_ROWS="100000000") as client:
        first = [{"metric_name": "slow", "value": 1.0, "metric_type": "gauge"}]
        assert client.post(BATCH, json=first).status_code == 200
        # Half a million raw events in the last hour: an exact percentile over them takes well
        # over 100 ms here.
        db.execute(
            "INSERT INTO analytics.metric_events (time, series_id, value) "
            "SELECT now() - random() * interval '50 minutes', s.id, random() * 1000 "
            "FROM analytics.series s, generate_series(1, 500000) "
            "WHERE s.metric_id = (SELECT id FROM analytics.metrics WHERE name = 'slow')"
        )
        answers: list[Any] = []

        def long_queries() -> None:
            for _ in range(3):
                answers.append(
                    client.get(
                        "/api/v1/analytics/metrics/slow/statistics",
                        params={"exact": "true", "hours": "1"},
                    )
                )

        reader = threading.Thread(target=long_queries)
        reader.start()
        stored = [
            client.post(BATCH, json=[{"metric_name": "fast", "value": i, "metric_type": "gauge"}])
            for i in range(20)
        ]
        reader.join()

    assert [a.status_code for a in answers] == [422, 422, 422]
    assert answers[0].json()["error"] == "query_too_expensive"
    assert "statement timeout" in answers[0].json()["message"]
    assert len(answers[0].headers["x-request-id"]) == 32  # handled inside the middleware
    assert [s.status_code for s in stored] == [200] * 20


def test_platform_events_are_bounded_after_decompression(db_url: str) -> None:
    bomb = gzip.compress(b"[" + b" " * 3_000_000 + b"]")
    with make_client(db_url, INGEST_MAX_BODY_BYTES="65536") as client:
        answer = client.post(
            "/api/v1/analytics/events",
            content=bomb,
            headers={"content-type": "application/json", "content-encoding": "gzip"},
        )

    assert len(bomb) < 4096
    assert answer.status_code == 413 and answer.json()["error"] == "payload_too_large"


def test_an_smtp_login_without_its_password_is_refused() -> None:
    with pytest.raises(SettingError, match="SMTP_PASSWORD"):
        load({"DATABASE_URL": "postgresql://x/y", "SMTP_USERNAME": "alerts"})

    started = subprocess.run(
        [sys.executable, "-m", "service"],
        env={
            "PATH": os.environ["PATH"],
            "DATABASE_URL": "postgresql://x/y",
            "SMTP_USERNAME": "alerts",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode == 2 and "SMTP_PASSWORD" in started.stderr
