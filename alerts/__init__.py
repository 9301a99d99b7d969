"""Alerting: rules (rules.py), channels (channels.py), silences (silences.py) and incidents
(incidents.py); their evaluation and notification delivery are background work in jobs/."""

# pg_advisory_xact_lock key (ASCII "astr" + "alrt"): held by the rule evaluator
# (jobs/alerts.py), by the health checks while they record results (jobs/health.py) and by a
# manual resolve (alerts/incidents.py), so that their changes to one incident never interleave.
EVALUATION_LOCK = 0x61737472_616C7274
