"""Alert evaluation: one pass over every enabled rule, set-based, in one transaction.

Each rule's value over its window comes from one SQL statement for all rules (alert_values).
Then, per rule, the state machine:

    ok --condition true--> pending --true for duration_seconds--> firing (an incident opens)
    pending --condition false--> ok
    firing --condition cleared--> ok (the incident resolves itself)

A firing rule clears when the value no longer meets the condition against
`recovery_threshold` when one is set (hysteresis: `gt 90` with `recovery_threshold 80` stays
firing until the value is 80 or below), against `threshold` otherwise. With no data in the
window (or on a metric not recorded yet), `no_data` decides: `ok` (the condition is false),
`alerting` (it is true) or `keep_state`. States live in analytics.alert_rule_state, so pending
and firing survive restarts; a transaction-scoped advisory lock keeps two evaluators from
interleaving.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

import sql
from alerts import EVALUATION_LOCK
from core.db import connect_sync

log = logging.getLogger("astraeus.alerts")

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "eq": operator.eq,
}


@dataclass
class EvaluationReport:
    rules: int = 0
    opened: list[int] = field(default_factory=list)  # incident ids
    resolved: list[int] = field(default_factory=list)
    transitions: list[tuple[int, str, str]] = field(default_factory=list)  # rule, from, to


def condition(rule: dict[str, Any], value: float | None, has_data: bool) -> bool | None:
    """Whether the rule's condition holds now; None: keep the state (no data, keep_state)."""
    if not has_data or value is None:
        return {"ok": False, "alerting": True}.get(rule["no_data"])
    compare = OPERATORS[rule["operator"]]
    if rule["state"] == "firing" and rule["recovery_threshold"] is not None:
        return compare(value, rule["recovery_threshold"])  # still not recovered
    return compare(value, rule["threshold"])


def evaluate(
    url: str, now: datetime | None = None, repeat: timedelta | None = None
) -> EvaluationReport:
    """One evaluation pass; returns what changed. `repeat`: re-notify an open incident this
    often while its rule keeps firing (None: never)."""
    report = EvaluationReport()
    with (
        connect_sync(url, "astraeus-alerts") as conn,
        conn.transaction(),
        conn.cursor(row_factory=dict_row) as cur,
    ):
        cur.execute(sql.query("advisory_xact_lock"), {"key": EVALUATION_LOCK})
        moment = now or cur.execute(sql.query("database_now")).fetchone()["now"]  # type: ignore[index]
        rules = cur.execute(sql.query("alert_rules_for_evaluation")).fetchall()
        values = {
            row["rule_id"]: row
            for row in cur.execute(sql.query("alert_values"), {"now": moment}).fetchall()
        }
        for rule in rules:
            found = values.get(rule["id"], {"recorded": False, "count": 0, "value": None})
            _step(cur, rule, found, moment, report, repeat)
        report.rules = len(rules)
    return report


def _notify(
    cur: psycopg.Cursor[Any],
    rule: dict[str, Any],
    incident: int,
    kind: str,
    now: datetime,
    sequence: int = 0,
) -> None:
    cur.execute(
        sql.query("notifications_enqueue"),
        {"incident": incident, "kind": kind, "sequence": sequence, "rule": rule["id"], "now": now},
    )


def _repeat(
    cur: psycopg.Cursor[Any], rule: dict[str, Any], now: datetime, every: timedelta | None
) -> None:
    if every is None:
        return
    for row in cur.execute(sql.query("notifications_last"), {"rule": rule["id"]}).fetchall():
        if row["last_at"] is not None and now - row["last_at"] >= every:
            _notify(cur, rule, row["incident"], "repeat", now, row["repeats"] + 1)


def _step(
    cur: psycopg.Cursor[Any],
    rule: dict[str, Any],
    found: dict[str, Any],
    now: datetime,
    report: EvaluationReport,
    repeat: timedelta | None = None,
) -> None:
    # A metric no event has recorded yet has no data, whatever the aggregation; once it has,
    # an empty window is data for count, sum and rate (zero), not an absence of it.
    recorded = found["recorded"]
    value = found["value"] if recorded else None
    value = float(value) if value is not None else None
    has_data = recorded and (found["count"] > 0 or rule["aggregation"] in ("count", "sum", "rate"))
    holds = condition(rule, value, has_data)
    state, since = rule["state"], rule["since"]
    new_state, new_since = state, since
    if holds is None:
        pass  # no data, keep_state
    elif state == "ok" and holds:
        new_state, new_since = "pending", now
    elif (state == "pending" and not holds) or (state == "firing" and not holds):
        new_state, new_since = "ok", now
    # Only evidence escalates: a pending rule with no data (keep_state) stays pending.
    elapsed = now - new_since >= timedelta(seconds=rule["duration_seconds"])
    if new_state == "pending" and holds and elapsed:
        new_state, new_since = "firing", now

    if new_state == "firing" and state != "firing":
        incident = cur.execute(
            sql.query("incident_open"),
            {
                "rule": rule["id"],
                "name": rule["name"],
                "severity": rule["severity"],
                "metric": rule["metric_name"],
                "value": value,
                "threshold": rule["threshold"],
            },
        ).fetchone()
        assert incident is not None
        cur.execute(
            sql.query("incident_event"),
            {
                "incident": incident["id"],
                "kind": "opened" if incident["opened"] else "updated",
                "note": f"{rule['operator']} {rule['threshold']:g}",
                "value": value,
            },
        )
        cur.execute(sql.query("rule_triggered"), {"rule": rule["id"]})
        if incident["opened"]:
            _notify(cur, rule, incident["id"], "firing", now)
        report.opened.append(incident["id"])
    elif new_state == "firing":
        if value is not None:  # no data (keep_state) keeps the last value seen
            cur.execute(sql.query("incident_update_value"), {"rule": rule["id"], "value": value})
        _repeat(cur, rule, now, repeat)
    elif state == "firing" and new_state == "ok":
        for resolved in cur.execute(
            sql.query("incident_recover"), {"rule": rule["id"], "value": value}
        ).fetchall():
            cur.execute(
                sql.query("incident_event"),
                {"incident": resolved["id"], "kind": "recovered", "note": None, "value": value},
            )
            _notify(cur, rule, resolved["id"], "resolved", now)
            report.resolved.append(resolved["id"])
    if new_state != state:
        report.transitions.append((rule["id"], state, new_state))
        log.info(
            "rule %s (%s): %s -> %s (value %s)", rule["id"], rule["name"], state, new_state, value
        )
    cur.execute(
        sql.query("alert_state_upsert"),
        {"rule": rule["id"], "state": new_state, "since": new_since, "value": value, "now": now},
    )
