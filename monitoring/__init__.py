"""Monitored services (services.py: their definitions, the endpoints' bodies, SERVICES_FILE)
and what their checks found (status.py: health and SLA); the checks themselves run in
jobs/health.py; the endpoints (routes.py)."""
