"""Routes of the monitoring API."""

from __future__ import annotations

from starlette.routing import Route

from monitoring import services, status

PREFIX = "/api/v1/analytics/monitoring"

routes = [
    Route(f"{PREFIX}/services", services.listing, methods=["GET"]),
    Route(f"{PREFIX}/services", services.create, methods=["POST"]),
    Route(f"{PREFIX}/services/{{name}}", services.one, methods=["GET"]),
    Route(f"{PREFIX}/services/{{name}}", services.replace, methods=["PUT"]),
    Route(f"{PREFIX}/services/{{name}}", services.remove, methods=["DELETE"]),
    Route(f"{PREFIX}/health", status.summary, methods=["GET"]),
    Route(f"{PREFIX}/health/{{service}}", status.service_health, methods=["GET"]),
    Route(f"{PREFIX}/sla/{{service}}", status.sla, methods=["GET"]),
]
