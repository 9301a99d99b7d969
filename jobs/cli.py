"""`python -m jobs`: the command line for DBAs and for schedulers.

Exit codes: 0 done, 1 the job failed (the message says why), 2 bad usage.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import click
import psycopg

from jobs.migrate import MigrationError, migrate
from jobs.rollups import refresh_invalidated, refresh_range
from service.settings import redact_url


def fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Jobs of astraeus-analytics: schema migrations and (soon) rollups, retention, alerts."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")


database_url = click.option(
    "--database-url",
    envvar="DATABASE_URL",
    required=True,
    show_envvar=True,
    help="PostgreSQL URL of the database (with TimescaleDB).",
)


@main.command("migrate")
@database_url
def migrate_command(database_url: str) -> None:
    """Apply the schema migrations that are not applied yet, then the idempotent definitions.

    Safe to run from several processes at once and to re-run: each migration is applied once.
    """
    try:
        report = migrate(database_url, progress=lambda line: click.echo(line))
    except MigrationError as exc:
        fail(f"{exc} ({redact_url(database_url)})" if "connect" in str(exc) else str(exc))
        return
    click.echo(
        f"TimescaleDB {report.timescaledb_version} ({report.edition} edition): "
        f"{len(report.applied)} migration(s) applied, {report.already_applied} already applied, "
        f"{report.idempotent_files} definition file(s) re-applied"
    )


def _moment(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            "expected an RFC 3339 time such as 2024-10-30T00:00:00Z", param_hint=option
        ) from None
    if moment.tzinfo is None:
        raise click.BadParameter("the time needs a UTC offset, such as Z", param_hint=option)
    return moment.astimezone(UTC)


@main.command("refresh")
@database_url
@click.option("--start", help="Recompute from this time (RFC 3339); with --end.")
@click.option("--end", help="Recompute up to this time (RFC 3339); with --start.")
def refresh_command(database_url: str, start: str | None, end: str | None) -> None:
    """Bring the rollups up to date.

    Without --start/--end: recompute the hours that new or late events touched (listed by the
    ingest path), as the scheduled job does. With them: recompute every rollup over the range,
    a day at a time. Safe to interrupt and re-run.
    """
    first, last = _moment(start, "--start"), _moment(end, "--end")
    if (first is None) != (last is None):
        raise click.UsageError("give both --start and --end, or neither")
    try:
        if first is not None and last is not None:
            if last <= first:
                raise click.UsageError("--end must be later than --start")
            report = refresh_range(database_url, first, last, progress=click.echo)
        else:
            report = refresh_invalidated(database_url, progress=click.echo)
    except psycopg.OperationalError as exc:
        fail(f"cannot reach the database: {' '.join(str(exc).split())}")
        return
    click.echo(f"{report.hours} hour(s) in {len(report.ranges)} range(s) refreshed")
