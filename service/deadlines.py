"""How long each request may wait for the database: one table, applied before routing
(service/front.py).

A request's budget counts from its first database access (the key check's reload included) and
covers all of its database work, whatever the database does; past it, 503 with Retry-After:

- `/readyz`: READY_S;
- `POST /batch-track`: BATCH_TRACK_TIMEOUT_S;
- event ingest (POST of metric and platform events): INGEST_COMMIT_TIMEOUT_S, the
  Idempotency-Key lookup included;
- everything else: STATEMENT_TIMEOUT_MS + STATEMENT_MARGIN_S (the server cancels a statement at
  STATEMENT_TIMEOUT_MS and answers 422; the margin is for that answer to arrive).
"""

from __future__ import annotations

from service import db
from service.auth import API, INGEST
from service.settings import Settings

READY_S = 2.0
BATCH_TRACK = f"{API}/batch-track"


def budget_s(method: str, path: str, settings: Settings) -> float:
    """The seconds of database work a request may take."""
    if path == "/readyz":
        return READY_S
    if method == "POST" and INGEST.match(path):
        return float(settings.ingest.commit_timeout_s)
    if method == "POST" and path == BATCH_TRACK:
        return float(settings.batch_track_timeout_s)
    return db.statement_bound_s(settings)
