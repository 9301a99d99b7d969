"""Routes of the alerting API."""

from __future__ import annotations

from starlette.routing import Route

from alerts import incidents, rules

PREFIX = "/api/v1/analytics/alerts"

routes = [
    Route(f"{PREFIX}/rules", rules.listing, methods=["GET"]),
    Route(f"{PREFIX}/rules", rules.create, methods=["POST"]),
    Route(f"{PREFIX}/rules/{{rule_id}}", rules.one, methods=["GET"]),
    Route(f"{PREFIX}/rules/{{rule_id}}", rules.replace, methods=["PUT"]),
    Route(f"{PREFIX}/rules/{{rule_id}}", rules.patch, methods=["PATCH"]),
    Route(f"{PREFIX}/rules/{{rule_id}}", rules.remove, methods=["DELETE"]),
    Route(f"{PREFIX}/incidents", incidents.listing, methods=["GET"]),
    Route(f"{PREFIX}/incidents/{{incident_id}}", incidents.one, methods=["GET"]),
    Route(
        f"{PREFIX}/incidents/{{incident_id}}/acknowledge", incidents.acknowledge, methods=["POST"]
    ),
    Route(f"{PREFIX}/incidents/{{incident_id}}/resolve", incidents.resolve, methods=["POST"]),
]
