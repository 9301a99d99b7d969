"""`python -m jobs`: the command line for DBAs and for schedulers.

Exit codes: 0 done, 1 the job failed (the message says why), 2 bad usage.
"""

from __future__ import annotations

import logging
import sys

import click

from jobs.migrate import MigrationError, migrate
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
