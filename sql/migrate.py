"""The schema migration runner.

Run-once files in sql/migrations/ are applied in order, each once, each inside a transaction
(unless its first line is ``-- migrate: no-transaction``), and recorded in
``_analytics.schema_migrations`` in that same transaction. Then every file in sql/idempotent/ is
re-applied. A session advisory lock makes concurrent runners wait for each other, so the second
finds nothing left to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import sqlparse

import sql

log = logging.getLogger("astraeus.migrate")

MIN_TIMESCALEDB = (2, 13, 0)
# pg_advisory_lock key: ASCII "astr" + "migr", so a DBA can recognise it in pg_locks.
LOCK_KEY = 0x61737472_6D696772
NO_TRANSACTION = "-- migrate: no-transaction"
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    """Migrating cannot go on; the message says what to do about it."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path
    text: str
    checksum: str
    transactional: bool


@dataclass
class Report:
    timescaledb_version: str = ""
    edition: str = ""
    applied: list[str] = field(default_factory=list)
    already_applied: int = 0
    idempotent_files: int = 0


def read_migrations(directory: Path = sql.MIGRATIONS) -> list[Migration]:
    found: list[Migration] = []
    versions: set[str] = set()
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_lowercase_name.sql")
        version, name = match.groups()
        if version in versions:
            raise MigrationError(f"{path.name}: version {version} is used by two files")
        versions.add(version)
        text = path.read_text()
        found.append(
            Migration(
                version=version,
                name=name,
                path=path,
                text=text,
                checksum=hashlib.sha256(text.encode()).hexdigest(),
                transactional=not text.lstrip().startswith(NO_TRANSACTION),
            )
        )
    return found


def split_statements(text: str) -> list[tuple[int, str]]:
    """The statements of a file with the line each starts on (1-based)."""
    statements: list[tuple[int, str]] = []
    position = 0
    for statement in sqlparse.split(text):
        body = sqlparse.format(statement, strip_comments=True).strip().rstrip(";").strip()
        if not body:
            continue
        start = text.find(statement, position)
        position = start + len(statement)
        first_code = start + statement.find(body.splitlines()[0]) if start >= 0 else -1
        line = text.count("\n", 0, first_code) + 1 if first_code >= 0 else 0
        statements.append((line, statement))
    return statements


def parse_version(text: str) -> tuple[int, ...]:
    numbers = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not numbers:
        raise MigrationError(f"cannot read the TimescaleDB version {text!r}")
    return tuple(int(n or 0) for n in numbers.groups())


def check_timescaledb(conn: psycopg.Connection, minimum: tuple[int, ...]) -> str:
    """The TimescaleDB version this database has or will get; refuses a missing or old one."""
    row = conn.execute(sql.query("timescaledb_available")).fetchone()
    if row is None:
        raise MigrationError(
            "TimescaleDB is not installed on this PostgreSQL server: install the timescaledb "
            "extension and add it to shared_preload_libraries (or use `make run`, which builds "
            "one)"
        )
    version: str = row[0]
    if parse_version(version) < minimum:
        wanted = ".".join(map(str, minimum))
        raise MigrationError(
            f"TimescaleDB {version} is too old: astraeus-analytics needs "
            f"{wanted} or newer (ALTER EXTENSION timescaledb UPDATE)"
        )
    return version


def edition(conn: psycopg.Connection) -> str:
    """'timescale' (Community: continuous aggregates, policies) or 'apache'."""
    row = conn.execute(sql.query("timescaledb_license")).fetchone()
    return (row[0] if row else None) or "unknown"


def _run_statements(conn: psycopg.Connection, source: str, text: str) -> None:
    statements = split_statements(text)
    for number, (line, statement) in enumerate(statements, start=1):
        try:
            conn.execute(statement.encode())
        except psycopg.Error as exc:
            first_line = statement.strip().splitlines()[0][:120]
            reason = (exc.diag.message_primary or str(exc)).strip()
            raise MigrationError(
                f"{source}: statement {number} of {len(statements)} (line {line}) failed: "
                f"{reason}\n    {first_line}"
            ) from exc


def _apply(conn: psycopg.Connection, migration: Migration) -> None:
    record = sql.query("schema_migration_record")
    fields = {"version": migration.version, "name": migration.name, "checksum": migration.checksum}
    started = time.monotonic()
    if migration.transactional:
        with conn.transaction():
            _run_statements(conn, migration.path.name, migration.text)
            elapsed = int((time.monotonic() - started) * 1000)
            conn.execute(record, {**fields, "duration_ms": elapsed})
    else:
        # Statements that PostgreSQL refuses inside a transaction (CREATE INDEX CONCURRENTLY,
        # continuous aggregates WITH DATA): each runs on its own, so such a file must be
        # written to be re-runnable (IF NOT EXISTS) in case it stops half-way.
        _run_statements(conn, migration.path.name, migration.text)
        elapsed = int((time.monotonic() - started) * 1000)
        conn.execute(record, {**fields, "duration_ms": elapsed})


def applied_versions(conn: psycopg.Connection) -> dict[str, str]:
    exists = conn.execute(sql.query("schema_migrations_exists")).fetchone()
    if not exists or exists[0] is None:
        return {}
    rows = conn.execute(sql.query("schema_migrations_applied")).fetchall()
    return {version: checksum for version, checksum in rows}


def migrate(
    url: str,
    *,
    migrations: Iterable[Migration] | None = None,
    idempotent_dir: Path = sql.IDEMPOTENT,
    minimum: tuple[int, ...] = MIN_TIMESCALEDB,
    progress: Callable[[str], None] = log.info,
) -> Report:
    """Bring the database at `url` up to date. Safe to call from several processes at once."""
    todo = list(read_migrations() if migrations is None else migrations)
    report = Report()
    try:
        conn = psycopg.connect(url, autocommit=True, application_name="astraeus-migrate")
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split())
        raise MigrationError(f"cannot connect to the database: {reason}") from exc
    with conn:
        report.timescaledb_version = check_timescaledb(conn, minimum)
        conn.execute(sql.query("advisory_lock"), {"key": LOCK_KEY})
        try:
            conn.execute(sql.query("schema_migrations_bookkeeping").encode())
            done = applied_versions(conn)
            for migration in todo:
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"{migration.path.name} was changed after it was applied; "
                            "migrations are never edited: add a new one instead"
                        )
                    report.already_applied += 1
                    continue
                progress(f"applying {migration.path.name}")
                _apply(conn, migration)
                report.applied.append(migration.path.name)
            for path in sorted(idempotent_dir.glob("*.sql")):
                with conn.transaction():
                    _run_statements(conn, f"idempotent/{path.name}", path.read_text())
                report.idempotent_files += 1
        finally:
            # Closing the session releases the lock too; unlocking early lets waiters go on.
            with contextlib.suppress(psycopg.Error):
                conn.execute(sql.query("advisory_unlock"), {"key": LOCK_KEY})
        report.edition = edition(conn)
        installed = conn.execute(sql.query("timescaledb_installed")).fetchone()
        if installed:
            report.timescaledb_version = installed[0]
    return report


def pending(applied: Iterable[str], migrations: Iterable[Migration] | None = None) -> list[str]:
    """Names of the migration files not yet applied, given the applied versions."""
    done = set(applied)
    return [
        m.path.name
        for m in (read_migrations() if migrations is None else migrations)
        if m.version not in done
    ]
