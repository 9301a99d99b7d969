"""The one ASGI layer every HTTP request passes before routing.

In this order, for each request:

1. its id: the client's `X-Request-ID` when sane, else a new one (core/logs.py), sent back on
   every response, errors included;
2. its database budget (core/deadlines.py), counting from its first database access;
3. its API key against the scope of the route it matches (service/auth.py): 401/403 before
   any route runs;
4. the route; an exception that escapes it is a 500 answered here, with the request id;
5. once answered: counted and timed by route template (/metrics) and logged (astraeus.access).

One layer rather than three stacked middlewares: each layer is another coroutine and another
wrapper around `send` for every request, and on the single-event record path, where a request
is a few hundred microseconds of Python, that was a measurable share of the time.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import MutableMapping, Sequence
from typing import Any

from starlette.responses import JSONResponse
from starlette.routing import BaseRoute

from auth.table import KeyTable
from core import db
from core.deadlines import budget_s
from core.http import JSON, Endpoint
from core.logs import SANE_ID, AccessLog, request_id
from core.metrics import ASGIApp, Metrics, Receive, Scope, Send
from core.settings import Settings
from service.auth import matched, refusal, required_scope

log = logging.getLogger("astraeus.http")

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def new_request_id() -> str:
    """32 random hex digits, as uuid4().hex gave, without its system call (an id to follow a
    request through the logs needs to be unique, not unguessable)."""
    return f"{random.getrandbits(128):032x}"


class Front:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        keys: KeyTable,
        settings: Settings,
        routes: Sequence[BaseRoute],
    ) -> None:
        self.app = app
        self.routes = routes  # the app's: each declares the scope it needs
        # (method, path, root path) -> the route, for routes without parameters (the hot
        # ingest paths): matching the whole table is ~2-15 us a request, this ~0.1.
        self.fixed: dict[tuple[str, str, str], Endpoint] = {}
        self.metrics = metrics
        self.keys = keys
        self.settings = settings
        self.auth = not settings.auth_disabled
        self.access = AccessLog()
        # labels() takes a lock and builds a key on every call: keep the children instead.
        self.counted: dict[tuple[str, str, int], Any] = {}
        self.timed: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # none are served: refuse before anything runs
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"").decode(
            "latin-1"
        )
        rid = given if SANE_ID.match(given) else new_request_id()
        rid_header = (b"x-request-id", rid.encode())
        method = scope["method"]
        answer = {"status": 500, "started": False}

        async def sending(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer["started"] = True
                answer["status"] = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        rid_token = request_id.set(rid)
        route = self.fixed.get((method, scope["path"], scope.get("root_path", "")))
        if route is None:
            route = matched(self.routes, scope)
            if route is not None and route.literal == route.path:  # no parameter: remember it
                self.fixed[(method, scope["path"], scope.get("root_path", ""))] = route
        budget_token = db.budget.set(db.Budget(budget_s(route, self.settings)))
        try:
            await self._serve(scope, receive, sending, route)
        except Exception:
            if answer["started"]:
                raise
            # A bug: answered here, with the request id, rather than by the server's catch-all.
            log.exception("unhandled error on %s %s", method, scope["path"])
            self.metrics.refused.labels("internal_error").inc()
            body = {
                "error": "internal_error",
                "message": "The server failed to handle the request.",
                "details": [],
            }
            await JSONResponse(body, 500)(scope, receive, sending)
        finally:
            db.budget.reset(budget_token)
            request_id.reset(rid_token)
            self._account(scope, method, int(answer["status"]), started, rid)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, route: Endpoint | None
    ) -> None:
        if self.auth:
            needed = required_scope(self.routes, route, scope, self.settings.metrics_require_key)
            if needed is not None:
                refused = await refusal(self.keys, scope, needed)
                if refused is not None:
                    self.metrics.refused.labels(refused.code).inc()
                    response = JSON(refused.body(), refused.status, headers=refused.headers)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    def _account(self, scope: Scope, method: str, status: int, started: float, rid: str) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        elapsed = time.perf_counter() - started
        method = method if method in METHODS else "OTHER"
        key = (method, template, status)
        counter = self.counted.get(key)
        if counter is None:
            counter = self.counted[key] = self.metrics.requests.labels(
                method, template, str(status)
            )
        counter.inc()
        timer = self.timed.get(template)
        if timer is None:
            timer = self.timed[template] = self.metrics.latency.labels(template)
        timer.observe(elapsed)
        self.access(method, scope["path"], status, elapsed * 1e3, rid)
