"""How long each request may wait for the database: declared with its route
(core/http.Endpoint `budget`), applied before routing (service/front.py).

A request's budget counts from its first database access (the key check's reload included) and
covers all of its database work, whatever the database does; past it, 503 with Retry-After:

- `/readyz`: READY_S (`ready`);
- `POST /batch-track`: BATCH_TRACK_TIMEOUT_S (`batch_track`);
- event ingest (POST of metric and platform events): INGEST_COMMIT_TIMEOUT_S (`ingest`), the
  Idempotency-Key lookup included;
- everything else, and a request no route matches: STATEMENT_TIMEOUT_MS + STATEMENT_MARGIN_S
  (the server cancels a statement at STATEMENT_TIMEOUT_MS and answers 422; the margin is for
  that answer to arrive).
"""

from __future__ import annotations

from core import db
from core.http import Endpoint
from core.settings import Settings

READY_S = 2.0


def ready(settings: Settings) -> float:
    return READY_S


def batch_track(settings: Settings) -> float:
    return float(settings.batch_track_timeout_s)


def ingest(settings: Settings) -> float:
    return float(settings.ingest.commit_timeout_s)


def budget_s(route: Endpoint | None, settings: Settings) -> float:
    """The seconds of database work a request for `route` may take (None: it matches none)."""
    if route is None or route.budget is None:
        return db.statement_bound_s(settings)
    return route.budget(settings)
