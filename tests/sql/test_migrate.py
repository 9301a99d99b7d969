from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

import sql
from sql.migrate import MigrationError, Report, migrate, read_migrations, split_statements
from tests.support import at, post, stored, track, utc_today


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT schemaname || '.' || tablename FROM pg_tables "
            "WHERE schemaname IN ('analytics', '_analytics')"
        ).fetchall()
    return {row[0] for row in rows}


def recorded(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT version, name FROM _analytics.schema_migrations ORDER BY version"
        ).fetchall()


def test_a_fresh_database_gets_the_whole_schema(empty_db_url: str) -> None:
    report = migrate(empty_db_url)

    assert report.applied == [m.path.name for m in read_migrations()]
    assert report.edition in {"apache", "timescale"}
    assert {
        "analytics.metrics",
        "analytics.series",
        "analytics.metric_event_store",
        "_analytics.schema_migrations",
    } <= tables(empty_db_url)
    with psycopg.connect(empty_db_url) as conn:
        hypertables = conn.execute(
            "SELECT hypertable_schema, hypertable_name FROM timescaledb_information.hypertables"
        ).fetchall()
    assert ("analytics", "metric_event_store") in hypertables


def test_running_again_applies_nothing(empty_db_url: str) -> None:
    migrate(empty_db_url)
    before = recorded(empty_db_url)

    again = migrate(empty_db_url)

    assert again.applied == []
    assert again.already_applied == len(read_migrations())
    assert recorded(empty_db_url) == before


def test_concurrent_runners_apply_each_migration_once(empty_db_url: str) -> None:
    reports: list[Report] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        try:
            reports.append(migrate(empty_db_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    applied = [name for report in reports for name in report.applied]
    assert sorted(applied) == [m.path.name for m in read_migrations()]
    assert len(recorded(empty_db_url)) == len(read_migrations())


@pytest.fixture
def migrations_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "migrations"
    shutil.copytree(sql.MIGRATIONS, directory)
    return directory


def test_a_failing_migration_names_file_statement_and_line_and_changes_nothing(
    empty_db_url: str, migrations_dir: Path
) -> None:
    migrate(empty_db_url)
    (migrations_dir / "0900_broken.sql").write_text(
        "-- adds a table, then fails\n"
        "CREATE TABLE analytics.half_done (id integer);\n"
        "\n"
        "INSERT INTO analytics.half_done VALUES (1);\n"
        "SELECT no_such_function();\n"
    )

    with pytest.raises(MigrationError) as failure:
        migrate(empty_db_url, migrations=read_migrations(migrations_dir))

    message = str(failure.value)
    assert "0900_broken.sql" in message
    assert "statement 3 of 3 (line 5)" in message
    assert "no_such_function" in message
    assert "analytics.half_done" not in tables(empty_db_url)
    assert "0900" not in [version for version, _ in recorded(empty_db_url)]


def test_an_edited_migration_is_refused(empty_db_url: str, migrations_dir: Path) -> None:
    migrate(empty_db_url)
    first = sorted(migrations_dir.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited afterwards\n")

    with pytest.raises(MigrationError, match="was changed after it was applied"):
        migrate(empty_db_url, migrations=read_migrations(migrations_dir))


def test_a_too_old_timescaledb_is_refused_before_anything_runs(empty_db_url: str) -> None:
    with pytest.raises(MigrationError, match=r"too old: astraeus-analytics needs 99\.0\.0"):
        migrate(empty_db_url, minimum=(99, 0, 0))

    assert tables(empty_db_url) == set()


def test_statements_split_with_their_lines() -> None:
    text = (
        "-- header\n"
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$\n"
        "BEGIN RETURN 1; END; $$;\n"
        "\n"
        "-- why\n"
        "SELECT ';' AS semicolon;\n"
    )

    assert [line for line, _ in split_statements(text)] == [2, 6]


def jobs(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobs", *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        check=False,
    )


def test_cli_migrates_and_reports(empty_db_url: str) -> None:
    first = jobs("migrate", "--database-url", empty_db_url)
    second = jobs("migrate", env={"DATABASE_URL": empty_db_url})

    assert first.returncode == 0, first.stderr
    assert "applying 0001_core.sql" in first.stdout
    assert second.returncode == 0
    assert "0 migration(s) applied" in second.stdout


def test_cli_unreachable_database_is_one_line_and_exit_1() -> None:
    result = jobs("migrate", "--database-url", "postgresql://nobody:secret@127.0.0.1:1/none")

    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot connect to the database")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "secret" not in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_without_a_database_url_is_a_usage_error() -> None:
    result = jobs("migrate")

    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr


# The definition of the four entity totals before migration 0012: signups and registrations.
OLD_TOTALS = """
UPDATE analytics.platform_metrics m SET
    users_total = (SELECT count(DISTINCT e.user_id) FROM analytics.platform_events e
                   WHERE e.event_type = 'user_signup' AND e.time < m.period_end),
    users_new = (SELECT count(*) FROM analytics.platform_events e
                 WHERE e.event_type = 'user_signup'
                   AND e.time >= m.period_start AND e.time < m.period_end),
    agents_total = (SELECT count(DISTINCT e.agent_id) FROM analytics.platform_events e
                    WHERE e.event_type = 'agent_registered' AND e.time < m.period_end),
    agents_new = (SELECT count(*) FROM analytics.platform_events e
                  WHERE e.event_type = 'agent_registered'
                    AND e.time >= m.period_start AND e.time < m.period_end)
"""


def test_0012_recomputes_the_totals_of_tracked_periods_and_leaves_them_clean(
    client: TestClient, db: psycopg.Connection[Any], db_url: str
) -> None:
    """Periods tracked with signup-only totals get the first-seen totals re-tracking would give
    them, and stay clean: not all read from raw events until the track job got round to them."""
    d1 = utc_today() - timedelta(days=10)
    d2 = d1 + timedelta(days=1)
    post(
        client,
        [
            {"event_type": "user_signup", "user_id": "u1", "timestamp": at(d1, 1)},
            {"event_type": "page_view", "user_id": "u2", "timestamp": at(d1, 2)},
            {"event_type": "agent_registered", "agent_id": "a1", "timestamp": at(d1, 3)},
            {"event_type": "page_view", "user_id": "u4", "timestamp": at(d2, 0)},  # a boundary
            {"event_type": "page_view", "user_id": "u1", "timestamp": at(d2, 1)},
            {"event_type": "session_start", "user_id": "u3", "timestamp": at(d2, 2)},
            {
                "event_type": "agent_call",
                "user_id": "u3",
                "agent_id": "a2",
                "success": True,
                "duration_ms": 5,
                "timestamp": at(d2, 3),
            },
        ],
    )
    ranges = [
        (d1 - timedelta(days=1), d2 + timedelta(days=1), "day"),
        (d1, d2 + timedelta(days=1), "hour"),
        (d1 - timedelta(days=7), d2 + timedelta(days=1), "week"),
    ]
    periods = sum(track(client, start, end, kind)["periods"] for start, end, kind in ranges)
    # Back to the schema before 0012, with the periods as the old definition tracked them.
    db.execute(OLD_TOTALS)
    db.execute("DROP TABLE analytics.users_seen, analytics.agents_seen")
    db.execute(
        "CREATE INDEX platform_events_signup_idx ON analytics.platform_events (time) "
        "INCLUDE (user_id) WHERE event_type = 'user_signup'"
    )
    db.execute(
        "CREATE INDEX platform_events_registered_idx ON analytics.platform_events (time) "
        "INCLUDE (agent_id) WHERE event_type = 'agent_registered'"
    )
    db.execute("DELETE FROM _analytics.schema_migrations WHERE version = '0012'")
    dirty = "SELECT kind, period_type, period_start FROM analytics.tracked_periods WHERE dirty"
    dirty_before = db.execute(dirty).fetchall()
    day_totals = (
        "SELECT period_start, users_total, users_new, agents_total, agents_new "
        "FROM analytics.platform_metrics WHERE period_type = 'day' AND period_start IN (%s, %s) "
        "ORDER BY 1"
    )
    assert db.execute(day_totals, (d1, d2)).fetchall() == [(d1, 1, 1, 1, 1), (d2, 1, 0, 1, 0)]

    assert migrate(db_url).applied == ["0012_entities_seen.sql"]

    assert db.execute(dirty).fetchall() == dirty_before
    assert db.execute(  # every platform period tracked above (days, hours, weeks) is clean
        "SELECT count(*) FILTER (WHERE NOT p.dirty), count(*) FROM analytics.platform_metrics m "
        "JOIN analytics.tracked_periods p ON p.kind = 'platform' "
        "AND (p.period_type, p.period_start) = (m.period_type, m.period_start)"
    ).fetchone() == (periods, periods)
    assert db.execute(day_totals, (d1, d2)).fetchall() == [(d1, 2, 2, 1, 1), (d2, 4, 2, 2, 1)]
    migrated = stored(db)
    for start, end, kind in ranges:  # re-tracking finds nothing to change
        assert track(client, start, end, kind)["rows_changed"] == 0
    assert stored(db) == migrated
