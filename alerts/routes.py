"""Routes of the alerting API."""

from __future__ import annotations

from starlette.routing import Route

from alerts import channels, incidents, rules, silences

PREFIX = "/api/v1/analytics/alerts"

routes = [
    Route(f"{PREFIX}/rules", rules.listing, methods=["GET"]),
    Route(f"{PREFIX}/rules", rules.create, methods=["POST"]),
    Route(f"{PREFIX}/rules/{{rule_id}}", rules.one, methods=["GET"]),
    Route(f"{PREFIX}/rules/{{rule_id}}", rules.replace, methods=["PUT"]),
    Route(f"{PREFIX}/rules/{{rule_id}}", rules.patch, methods=["PATCH"]),
    Route(f"{PREFIX}/rules/{{rule_id}}", rules.remove, methods=["DELETE"]),
    Route(f"{PREFIX}/channels", channels.listing, methods=["GET"]),
    Route(f"{PREFIX}/channels", channels.create, methods=["POST"]),
    Route(f"{PREFIX}/channels/{{channel_id}}", channels.one, methods=["GET"]),
    Route(f"{PREFIX}/channels/{{channel_id}}", channels.replace, methods=["PUT"]),
    Route(f"{PREFIX}/channels/{{channel_id}}", channels.remove, methods=["DELETE"]),
    Route(f"{PREFIX}/silences", silences.listing, methods=["GET"]),
    Route(f"{PREFIX}/silences", silences.create, methods=["POST"]),
    Route(f"{PREFIX}/silences/{{silence_id}}", silences.remove, methods=["DELETE"]),
    Route(f"{PREFIX}/incidents", incidents.listing, methods=["GET"]),
    Route(f"{PREFIX}/incidents/{{incident_id}}", incidents.one, methods=["GET"]),
    Route(
        f"{PREFIX}/incidents/{{incident_id}}/acknowledge", incidents.acknowledge, methods=["POST"]
    ),
    Route(f"{PREFIX}/incidents/{{incident_id}}/resolve", incidents.resolve, methods=["POST"]),
]
