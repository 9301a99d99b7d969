"""The API keys endpoints: POST/GET /api/v1/analytics/keys, DELETE .../keys/{key}.

The key store is psycopg code (auth/keys.py, shared with `python -m jobs keys`), run in a
thread with a request's bounds."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import psycopg
from starlette.requests import Request

from auth import keys
from core.db import bounded, in_thread, statement_bound_s
from core.errors import Conflict, DatabaseUnavailable, NotFound, ValidationFailed, field_error
from core.http import JSON, Endpoint, json_body
from core.settings import Settings


def keys_call(settings: Settings) -> tuple[float, dict[str, Any]]:
    """The bound of a keys request and its connection options: a read's, STATEMENT_TIMEOUT_MS
    + 1 s, its statements under STATEMENT_TIMEOUT_MS."""
    options = bounded(settings, statement_bound_s(settings))
    options["statement_timeout_ms"] = settings.statement_timeout_ms
    return statement_bound_s(settings), options


class KeyIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    scopes: Annotated[list[str], msgspec.Meta(min_length=1, max_length=3)]


_key_in = msgspec.json.Decoder(KeyIn)


async def create_key(request: Request) -> JSON:
    """POST /api/v1/analytics/keys: a new key, shown in this answer only."""
    wanted: KeyIn = await json_body(request, _key_in, 4096)
    settings = request.app.state.settings
    bound_s, options = keys_call(settings)
    url = settings.require_database_url()
    try:
        record, key = await in_thread(
            bound_s, keys.create, url, wanted.name, wanted.scopes, **options
        )
    except keys.KeyTaken as exc:
        raise Conflict(str(exc), details=[field_error("name", "already in use")]) from None
    except keys.KeyRefused as exc:
        raise ValidationFailed.of(exc.field, exc.reason) from None
    except psycopg.OperationalError:
        raise DatabaseUnavailable() from None
    await request.app.state.keys.reload(request.app.state.pool)  # usable here at once
    return JSON({**record.body(), "key": key}, 201)


async def list_keys(request: Request) -> JSON:
    """GET /api/v1/analytics/keys: every key, revoked ones too, never the keys themselves."""
    settings = request.app.state.settings
    bound_s, options = keys_call(settings)
    try:
        found = await in_thread(bound_s, keys.listing, settings.require_database_url(), **options)
    except psycopg.OperationalError:
        raise DatabaseUnavailable() from None
    return JSON({"keys": [k.body() for k in found]})


async def revoke_key(request: Request) -> JSON:
    """DELETE /api/v1/analytics/keys/{key}: revoke the live key with this id or name."""
    settings = request.app.state.settings
    bound_s, options = keys_call(settings)
    url = settings.require_database_url()
    try:
        record = await in_thread(bound_s, keys.revoke, url, request.path_params["key"], **options)
    except keys.NoSuchKey as exc:
        raise NotFound(str(exc)) from None
    except psycopg.OperationalError:
        raise DatabaseUnavailable() from None
    await request.app.state.keys.reload(request.app.state.pool)  # refused here at once
    return JSON(record.body())


routes = [
    Endpoint("POST", "/api/v1/analytics/keys", create_key, "admin"),
    Endpoint("GET", "/api/v1/analytics/keys", list_keys, "admin"),
    Endpoint("DELETE", "/api/v1/analytics/keys/{key}", revoke_key, "admin"),
]
