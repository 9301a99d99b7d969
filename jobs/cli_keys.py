"""`python -m jobs keys create|list|revoke`: API keys (auth/keys.py), from the command line."""

from __future__ import annotations

import click

from auth import keys
from jobs.cli_common import database_errors, database_url, fail


@click.group("keys")
def keys_group() -> None:
    """API keys: create, list, revoke. A key is shown once, when it is created."""


@keys_group.command("create")
@database_url
@click.option("--name", required=True, help="What the key is for (unique among live keys).")
@click.option(
    "--scopes",
    required=True,
    help="Comma-separated: ingest (write events), read (queries), admin (everything else).",
)
def keys_create(database_url: str, name: str, scopes: str) -> None:
    """Create a key; the key itself is printed alone on the last line."""
    with database_errors(database_url):
        try:
            record, key = keys.create(database_url, name, [s.strip() for s in scopes.split(",")])
        except keys.KeyRefused as exc:
            raise click.UsageError(str(exc)) from None
    click.echo(f"key {record.id} {record.name!r}, scopes {','.join(record.scopes)}:")
    click.echo(key)


@keys_group.command("list")
@database_url
def keys_list(database_url: str) -> None:
    """Every key (revoked ones too) by id, name, prefix and scopes; never the keys."""
    with database_errors(database_url):
        found = keys.listing(database_url)
    click.echo(
        f"{'id':>4}  {'name':<24} {'prefix':<12} {'scopes':<18} {'created (UTC)':<19}  revoked"
    )
    for k in found:
        revoked = f"{k.revoked_at:%Y-%m-%d %H:%M:%S}" if k.revoked_at else ""
        click.echo(
            f"{k.id:>4}  {k.name:<24} {k.prefix:<12} {','.join(k.scopes):<18} "
            f"{k.created_at:%Y-%m-%d %H:%M:%S}  {revoked}"
        )


@keys_group.command("revoke")
@database_url
@click.argument("key")
def keys_revoke(database_url: str, key: str) -> None:
    """Revoke the live key with this id or name (servers stop taking it within AUTH_CACHE_S)."""
    with database_errors(database_url):
        try:
            record = keys.revoke(database_url, key)
        except keys.NoSuchKey as exc:
            fail(str(exc))
    click.echo(f"key {record.id} {record.name!r} revoked")
