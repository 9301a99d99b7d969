"""The route table of the whole API, in the order the router tries it (the hot ingest paths
first): the application's own endpoints here, every other package's from its routes module.

Each entry is a core/http.Endpoint, declaring the API-key scope it needs: this list is also
what service/front.py checks keys against, and what the OpenAPI document (service/openapi.py)
states. Nothing else in the code base defines a route (tests/service/test_architecture.py)."""

from __future__ import annotations

import alerts.routes
import auth.routes
import ingest.routes
import monitoring.routes
import query.routes
from core import deadlines
from core.http import Endpoint
from core.metrics import exposition
from service import background, health, openapi

OWN = [
    Endpoint("GET", "/healthz", health.healthz, None),
    Endpoint("GET", "/readyz", health.readyz, None, budget=deadlines.ready),
    Endpoint("GET", "/metrics", exposition, "read", optional=True),
    Endpoint("GET", "/openapi.json", openapi.openapi, None),
    Endpoint("GET", "/docs", openapi.docs, None),
]

BACKGROUND = [
    Endpoint("GET", "/api/v1/analytics/jobs", background.job_runs, "read"),
    Endpoint(
        "POST",
        "/api/v1/analytics/batch-track",
        background.post_batch_track,
        "admin",
        budget=deadlines.batch_track,
    ),
]

ROUTES: list[Endpoint] = [
    *ingest.routes.routes,
    *OWN,
    *query.routes.routes,
    *alerts.routes.routes,
    *monitoring.routes.routes,
    *auth.routes.routes,
    *BACKGROUND,
]
