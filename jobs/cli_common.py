"""What every `python -m jobs` command shares: the database option, and errors as one line."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import click
import psycopg

from core.settings import redact_url
from jobs.scheduler import one_line


def fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@contextmanager
def database_errors(url: str) -> Iterator[None]:
    """A database that cannot be reached, or refuses, is one line and exit 1, not a traceback."""
    try:
        yield
    except psycopg.OperationalError as exc:
        fail(f"cannot reach the database {redact_url(url)}: {one_line(exc)}")
    except psycopg.Error as exc:
        fail(f"the database refused: {one_line(exc)}")


database_url = click.option(
    "--database-url",
    envvar="DATABASE_URL",
    required=True,
    show_envvar=True,
    help="PostgreSQL URL of the database (with TimescaleDB).",
)
