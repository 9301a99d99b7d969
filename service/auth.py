"""API keys on every request: `Authorization: Bearer <key>`, checked before routing
by service/front.py.

What a request needs is the scope declared with the route it matches (core/http.Endpoint, in
each package's routes module), so that the route table is the scope table:

- public: `/healthz`, `/readyz`, `/openapi.json`, `/docs`, and `/metrics` (unless
  METRICS_REQUIRE_KEY, then `read`);
- `ingest`: POST of metric events and platform events;
- `admin`: alert rules, channels, silences, incidents, services, batch tracking, keys;
- `read`: everything else (queries, analytics, the dashboard, health, jobs).

A request that matches no route (a 404 or 405 to come) needs `read` for GET and HEAD and `admin`
for anything else, so that an unknown path says nothing to a caller without a key.
A missing, malformed, unknown or revoked key is a 401 with one message whatever the case (so it
says nothing of which keys exist); a key without the scope a 403 naming the scope. Verified
keys (and refused ones) are remembered for AUTH_CACHE_S seconds (auth/table.py), so a
revocation takes up to that long to reach every server, and the hot ingest path does not query
for every request.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping, Sequence
from typing import Any

from starlette.routing import BaseRoute, Match

from auth.table import KeyTable as KeyTable
from core.errors import ApiError
from core.http import Endpoint

BEARER = re.compile(r"^Bearer (ak_[A-Za-z0-9_\-]{43})$")  # what auth/keys.py makes


def matched(routes: Sequence[BaseRoute], scope: MutableMapping[str, Any]) -> Endpoint | None:
    """The route the router will run for a request: the first it fully matches."""
    for route in routes:
        if isinstance(route, Endpoint) and route.matches(scope)[0] is Match.FULL:
            return route
    return None


def required_scope(
    route: Endpoint | None, method: str, metrics_need_key: bool = False
) -> str | None:
    """The scope a request for `route` needs (None: none)."""
    if route is None:
        return "read" if method in {"GET", "HEAD"} else "admin"
    if route.optional and not metrics_need_key:
        return None
    return route.scope


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"
    default_message = "A valid API key is required: send `Authorization: Bearer <key>`."

    def __init__(self) -> None:
        super().__init__(headers={"WWW-Authenticate": 'Bearer realm="astraeus"'})


class Forbidden(ApiError):
    status = 403
    code = "forbidden"

    def __init__(self, scope: str) -> None:
        super().__init__(
            f"This key does not have the {scope!r} scope.",
            details=[{"field": "scope", "reason": f"needs {scope}"}],
        )


async def refusal(keys: KeyTable, scope: MutableMapping[str, Any], needed: str) -> ApiError | None:
    """Why a request whose path needs `needed` is refused (None: it is let through)."""
    header = ""
    for name, value in scope["headers"]:
        if name == b"authorization":
            header = value.decode("latin-1")
            break
    match = BEARER.match(header)
    if match is None:
        return Unauthorized()
    scopes = await keys.scopes(scope["app"].state.pool, match.group(1))
    if scopes is None:
        return Unauthorized()
    if needed not in scopes:
        return Forbidden(needed)
    return None
