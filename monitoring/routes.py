"""Routes of the monitoring API."""

from __future__ import annotations

from core.http import Endpoint
from monitoring import services, status

PREFIX = "/api/v1/analytics/monitoring"

routes = [
    Endpoint("GET", f"{PREFIX}/services", services.listing, "admin"),
    Endpoint("POST", f"{PREFIX}/services", services.create, "admin"),
    Endpoint("GET", f"{PREFIX}/services/{{name}}", services.one, "admin"),
    Endpoint("PUT", f"{PREFIX}/services/{{name}}", services.replace, "admin"),
    Endpoint("DELETE", f"{PREFIX}/services/{{name}}", services.remove, "admin"),
    Endpoint("GET", f"{PREFIX}/health", status.summary, "read"),
    Endpoint("GET", f"{PREFIX}/health/{{service}}", status.service_health, "read"),
    Endpoint("GET", f"{PREFIX}/sla/{{service}}", status.sla, "read"),
]
