"""API keys: created, listed and revoked by `python -m jobs keys ...` and the admin endpoints.

A key is `ak_` and 43 characters of base64url (256 random bits). Only its SHA-256 is stored,
with its first characters (the prefix) to tell keys apart; the key itself is shown once, at
creation.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

import sql
from core.db import connect_sync

SCOPES = ("ingest", "read", "admin")
PREFIX_CHARS = 10


class KeyRefused(ValueError):
    """A key cannot be created or revoked as asked: `field: reason`."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


class KeyTaken(KeyRefused):
    """A live key already has the name."""


class NoSuchKey(LookupError):
    """No live key has the id or name given."""


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None

    def body(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "scopes": self.scopes,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def check(name: str, scopes: list[str]) -> list[str]:
    if not 1 <= len(name) <= 200 or not name.isprintable():
        raise KeyRefused("name", "1 to 200 printable characters")
    if name.isdigit():
        raise KeyRefused("name", "not all digits (a number names a key by its id)")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise KeyRefused("scopes", f"expected some of {', '.join(SCOPES)}")
    return sorted(set(scopes), key=SCOPES.index)


def create(url: str, name: str, scopes: list[str], **connect: Any) -> tuple[ApiKey, str]:
    """A new key: its record and the key itself (shown once). `connect`: connect_sync's
    options (an API request's bound)."""
    scopes = check(name, scopes)
    key = "ak_" + secrets.token_urlsafe(32)
    with connect_sync(url, "astraeus-keys", autocommit=True, **connect) as conn:
        try:
            row = conn.execute(
                sql.query("api_key_create"),
                {"name": name, "prefix": key[:PREFIX_CHARS], "sha": digest(key), "scopes": scopes},
            ).fetchone()
        except psycopg.errors.UniqueViolation:
            raise KeyTaken("name", f"a live key is already named {name!r}") from None
    assert row is not None
    return ApiKey(*row), key


def listing(url: str, **connect: Any) -> list[ApiKey]:
    with connect_sync(url, "astraeus-keys", autocommit=True, **connect) as conn:
        return [ApiKey(*row) for row in conn.execute(sql.query("api_keys_list"))]


def revoke(url: str, key: str, **connect: Any) -> ApiKey:
    """Revoke the live key with this id or name."""
    if not 1 <= len(key) <= 200 or not key.isprintable():
        raise NoSuchKey(f"no live key has the id or name {key[:200]!r}")
    with connect_sync(url, "astraeus-keys", autocommit=True, **connect) as conn:
        row = conn.execute(sql.query("api_key_revoke"), {"key": key}).fetchone()
    if row is None:
        raise NoSuchKey(f"no live key has the id or name {key!r}")
    return ApiKey(*row)
