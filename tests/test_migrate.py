from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

import sql
from jobs.migrate import MigrationError, Report, migrate, read_migrations, split_statements


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
        "analytics.metric_events",
        "_analytics.schema_migrations",
    } <= tables(empty_db_url)
    with psycopg.connect(empty_db_url) as conn:
        hypertables = conn.execute(
            "SELECT hypertable_schema, hypertable_name FROM timescaledb_information.hypertables"
        ).fetchall()
    assert ("analytics", "metric_events") in hypertables


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
