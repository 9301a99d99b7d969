"""Routes of the alerting API."""

from __future__ import annotations

from alerts import channels, incidents, rules, silences
from core.http import Endpoint

PREFIX = "/api/v1/analytics/alerts"

routes = [
    Endpoint("GET", f"{PREFIX}/rules", rules.listing, "admin"),
    Endpoint("POST", f"{PREFIX}/rules", rules.create, "admin"),
    Endpoint("GET", f"{PREFIX}/rules/{{rule_id}}", rules.one, "admin"),
    Endpoint("PUT", f"{PREFIX}/rules/{{rule_id}}", rules.replace, "admin"),
    Endpoint("PATCH", f"{PREFIX}/rules/{{rule_id}}", rules.patch, "admin"),
    Endpoint("DELETE", f"{PREFIX}/rules/{{rule_id}}", rules.remove, "admin"),
    Endpoint("GET", f"{PREFIX}/channels", channels.listing, "admin"),
    Endpoint("POST", f"{PREFIX}/channels", channels.create, "admin"),
    Endpoint("GET", f"{PREFIX}/channels/{{channel_id}}", channels.one, "admin"),
    Endpoint("PUT", f"{PREFIX}/channels/{{channel_id}}", channels.replace, "admin"),
    Endpoint("DELETE", f"{PREFIX}/channels/{{channel_id}}", channels.remove, "admin"),
    Endpoint("GET", f"{PREFIX}/silences", silences.listing, "admin"),
    Endpoint("POST", f"{PREFIX}/silences", silences.create, "admin"),
    Endpoint("DELETE", f"{PREFIX}/silences/{{silence_id}}", silences.remove, "admin"),
    Endpoint("GET", f"{PREFIX}/incidents", incidents.listing, "admin"),
    Endpoint("GET", f"{PREFIX}/incidents/{{incident_id}}", incidents.one, "admin"),
    Endpoint(
        "POST", f"{PREFIX}/incidents/{{incident_id}}/acknowledge", incidents.acknowledge, "admin"
    ),
    Endpoint("POST", f"{PREFIX}/incidents/{{incident_id}}/resolve", incidents.resolve, "admin"),
]
