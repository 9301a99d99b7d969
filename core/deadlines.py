"""How long each request may wait for the database, by the route it matches: one table,
applied before routing (service/front.py).

A request's budget counts from its first database access (the key check's reload included) and
covers all of its database work, whatever the database does; past it, 503 with Retry-After:

- `/readyz`: READY_S;
- `POST /batch-track`: BATCH_TRACK_TIMEOUT_S;
- event ingest (the routes of scope `ingest`: POST of metric and platform events):
  INGEST_COMMIT_TIMEOUT_S, the Idempotency-Key lookup included;
- everything else: STATEMENT_TIMEOUT_MS + STATEMENT_MARGIN_S (the server cancels a statement at
  STATEMENT_TIMEOUT_MS and answers 422; the margin is for that answer to arrive).
"""

from __future__ import annotations

from core import db
from core.http import Endpoint
from core.settings import Settings

READY_S = 2.0
BATCH_TRACK = "/api/v1/analytics/batch-track"


def budget_s(route: Endpoint | None, settings: Settings) -> float:
    """The seconds of database work a request for `route` may take (None: it matches none)."""
    if route is None:
        return db.statement_bound_s(settings)
    if route.path == "/readyz":
        return READY_S
    if route.scope == "ingest":
        return float(settings.ingest.commit_timeout_s)
    if route.path == BATCH_TRACK:
        return float(settings.batch_track_timeout_s)
    return db.statement_bound_s(settings)
