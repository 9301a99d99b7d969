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

from auth.table import KeyTable
from core.errors import ApiError
from core.http import Endpoint

# What auth/keys.py makes, after `Bearer` or `Token` (what InfluxDB clients send).
BEARER = re.compile(r"^(?:Bearer|Token) (ak_[A-Za-z0-9_\-]{43})$")


def route_path(scope: MutableMapping[str, Any]) -> str:
    """The path the router matches: without the root path a proxy or a mount puts in front."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def matched(routes: Sequence[BaseRoute], scope: MutableMapping[str, Any]) -> Endpoint | None:
    """The route the router will run for a request: the first it fully matches."""
    path = route_path(scope)
    for route in routes:
        if (
            isinstance(route, Endpoint)
            and path.startswith(route.literal)  # cheap; most routes end here
            and route.matches(scope)[0] is Match.FULL
        ):
            return route
    return None


def required_scope(
    routes: Sequence[BaseRoute],
    route: Endpoint | None,
    scope: MutableMapping[str, Any],
    metrics_need_key: bool = False,
) -> str | None:
    """The scope a request needs (None: none): that of the route it matches; for a request no
    route matches (a 404 or 405 to come), that of the routes around it (`unmatched`)."""
    if route is None:
        return unmatched(routes, scope, metrics_need_key)
    if route.optional and not metrics_need_key:
        return None
    return route.scope


def unmatched(
    routes: Sequence[BaseRoute], scope: MutableMapping[str, Any], metrics_need_key: bool
) -> str | None:
    """A request that matches no route is refused as the routes nearest its path would refuse
    it, so that an unknown path or method tells a caller without the right key nothing:

    - a path that is served, but not with this method, and only publicly: no key (a 405);
    - a path whose nearest routes (those sharing the longest run of leading segments with it,
      a parameter matching any segment) all need `admin`: `admin`;
    - otherwise `read` for GET and HEAD, `admin` for any other method."""
    endpoints = [route for route in routes if isinstance(route, Endpoint)]
    served = [route for route in endpoints if route.matches(scope)[0] is Match.PARTIAL]
    if served and all(route.scope is None or route.optional for route in served):
        optional = any(route.optional for route in served)
        return "read" if optional and metrics_need_key else None
    parts = route_path(scope).strip("/").split("/")
    best, nearest = -1, []
    for route in endpoints:
        shared = 0
        for given, declared in zip(parts, route.segments, strict=False):
            if given != declared and not (declared.startswith("{") and given):
                break
            shared += 1
        if shared > best:
            best, nearest = shared, [route]
        elif shared == best:
            nearest.append(route)
    if nearest and all(route.scope == "admin" for route in nearest):
        return "admin"
    return "read" if scope["method"] in {"GET", "HEAD"} else "admin"


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
