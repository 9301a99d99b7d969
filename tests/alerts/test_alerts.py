from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from jobs.alerts import evaluate
from tests.support import BASE, RULES, SEED_RULE, record, rule

INCIDENTS = "/api/v1/analytics/alerts/incidents"


def incidents(client: TestClient, **params: str) -> list[dict[str, Any]]:
    return list(client.get(INCIDENTS, params=params).json()["incidents"])


def test_the_seed_rule_is_created_with_defaults(client: TestClient) -> None:
    record(client, 1.0, BASE)

    created = rule(client)

    assert created["id"] > 0
    assert created["name"] == "high_error_rate"
    assert (created["aggregation"], created["window_seconds"], created["no_data"]) == (
        "avg",
        60,
        "keep_state",
    )
    assert created["enabled"] is True and created["trigger_count"] == 0
    assert created["state"]["state"] == "ok"
    assert created.pop("warnings") == []
    assert client.get(f"{RULES}/{created['id']}").json() == created


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"condition_operator": "above"}, "condition_operator"),
        ({"severity": "catastrophic"}, "severity"),
        ({"threshold": "five"}, "threshold"),
        ({"duration_seconds": -1}, "duration_seconds"),
        ({"window_seconds": 5}, "window_seconds"),
        ({"aggregation": "median"}, "aggregation"),
        ({"no_data": "panic"}, "no_data"),
        ({"recovery_threshold": 9.0}, "recovery_threshold"),
        ({"condition_operator": "lt", "recovery_threshold": 1.0}, "recovery_threshold"),
        ({"aggregation": "rate"}, "aggregation"),
        ({"colour": "red"}, "colour"),
        ({"metric_name": "bad name"}, "metric_name"),
        ({"name": ""}, "name"),
    ],
)
def test_invalid_rules_are_refused_naming_the_field(
    client: TestClient, fields: dict[str, Any], field: str
) -> None:
    record(client, 1.0, BASE)

    response = client.post(RULES, json={**SEED_RULE, **fields})

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == field
    assert client.get(RULES).json()["rules"] == []


def test_the_seed_rule_is_accepted_before_its_metric_is_recorded_with_a_warning(
    client: TestClient,
) -> None:
    created = client.post(RULES, json=SEED_RULE)

    assert created.status_code == 201, created.text
    assert created.json()["metric_name"] == "api.error_rate"
    [warning] = created.json()["warnings"]
    assert "'api.error_rate'" in warning and "no_data: keep_state" in warning
    assert client.get(RULES).json()["rules"][0]["id"] == created.json()["id"]


def test_allow_unknown_metric_silences_the_warning(client: TestClient) -> None:
    created = rule(client, metric_name="not.yet", allow_unknown_metric=True)

    assert created["metric_name"] == "not.yet"
    assert created["warnings"] == []


def test_a_rate_rule_on_an_unrecorded_metric_warns_it_must_be_a_counter(
    client: TestClient,
) -> None:
    created = rule(client, aggregation="rate", allow_unknown_metric=True)

    [warning] = created["warnings"]
    assert "counter" in warning and "'api.error_rate'" in warning


def test_changing_a_rule_to_an_unrecorded_metric_warns(client: TestClient) -> None:
    record(client, 1.0, BASE)
    path = f"{RULES}/{rule(client)['id']}"

    put = client.put(path, json={**SEED_RULE, "metric_name": "queue.depth"})
    patched = client.patch(path, json={"threshold": 9.0})
    back = client.patch(path, json={"metric_name": "api.error_rate"})
    quiet = client.patch(path, json={"metric_name": "other", "allow_unknown_metric": True})

    assert put.status_code == 200 and put.json()["metric_name"] == "queue.depth"
    assert any("'queue.depth'" in w for w in put.json()["warnings"])
    assert any("'queue.depth'" in w for w in patched.json()["warnings"])
    assert back.json()["warnings"] == []
    assert quiet.status_code == 200 and quiet.json()["warnings"] == []


@pytest.mark.parametrize("aggregation", ["avg", "count"])
@pytest.mark.parametrize(
    ("policy", "state"), [("ok", "ok"), ("alerting", "pending"), ("keep_state", "ok")]
)
def test_a_rule_on_an_unrecorded_metric_follows_no_data_until_events_arrive(
    client: TestClient, db_url: str, aggregation: str, policy: str, state: str
) -> None:
    # count < 1 would hold on an empty window of a recorded metric: here, until the metric
    # exists, only no_data decides.
    created = rule(
        client, condition_operator="lt", threshold=1.0, aggregation=aggregation, no_data=policy
    )
    path = f"{RULES}/{created['id']}"

    before = evaluate(db_url, now=BASE)
    after_a_while = evaluate(db_url, now=BASE + timedelta(minutes=1))
    still = client.get(path).json()["state"]
    record(client, 0.0, BASE + timedelta(minutes=2))
    evaluate(db_url, now=BASE + timedelta(minutes=2, seconds=5))

    assert before.rules == after_a_while.rules == 1
    assert (still["state"], still["last_value"]) == (state, None)
    assert incidents(client) == []
    # Evidence now: avg 0 < 1 holds (pending), a count of 1 does not (ok).
    expected = "pending" if aggregation == "avg" else "ok"
    assert client.get(path).json()["state"]["state"] == expected


def test_rules_can_be_replaced_patched_and_deleted(client: TestClient) -> None:
    record(client, 1.0, BASE)
    created = rule(client)
    path = f"{RULES}/{created['id']}"

    replaced = client.put(path, json={**SEED_RULE, "threshold": 7.5, "tags": {"env": "prod"}})
    patched = client.patch(path, json={"severity": "info", "enabled": False})
    duplicate = client.post(RULES, json=SEED_RULE)
    deleted = client.delete(path)

    assert replaced.json()["threshold"] == 7.5
    assert replaced.json()["tags"] == {"env": ["prod"]}
    assert (patched.json()["severity"], patched.json()["enabled"], patched.json()["threshold"]) == (
        "info",
        False,
        7.5,
    )
    assert duplicate.status_code == 409
    assert deleted.status_code == 204
    assert client.get(path).status_code == 404
    assert client.patch(path, json={"threshold": 1}).status_code == 404


def test_a_rule_goes_pending_fires_is_acknowledged_and_recovers(
    client: TestClient, db_url: str
) -> None:
    record(client, 1.0, BASE - timedelta(minutes=1))
    created = rule(client, duration_seconds=120)
    path = f"{INCIDENTS}"

    record(client, 8.0, BASE - timedelta(seconds=10))
    first = evaluate(db_url, now=BASE)
    record(client, 9.0, BASE + timedelta(seconds=50))
    still_pending = evaluate(db_url, now=BASE + timedelta(seconds=60))
    record(client, 10.0, BASE + timedelta(seconds=110))
    fired = evaluate(db_url, now=BASE + timedelta(seconds=120))
    record(client, 12.0, BASE + timedelta(seconds=170))
    again = evaluate(db_url, now=BASE + timedelta(seconds=180))

    assert first.transitions == [(created["id"], "ok", "pending")]
    assert still_pending.transitions == [] and still_pending.opened == []
    assert fired.transitions == [(created["id"], "pending", "firing")]
    assert again.opened == [] and again.transitions == []
    open_now = incidents(client)
    assert len(open_now) == 1
    incident = open_now[0]
    assert (incident["rule_id"], incident["rule_name"], incident["severity"]) == (
        created["id"],
        "high_error_rate",
        "critical",
    )
    assert (incident["metric_value"], incident["threshold"], incident["last_value"]) == (
        10.0,
        5.0,
        12.0,
    )
    assert client.get(f"{RULES}/{created['id']}").json()["trigger_count"] == 1

    acked = client.post(
        f"{path}/{incident['id']}/acknowledge", json={"who": "alice", "note": "looking"}
    )
    acked_again = client.post(f"{path}/{incident['id']}/acknowledge", json={"who": "bob"})
    assert acked.json()["status"] == "acknowledged"
    assert acked.json()["acknowledged_by"] == "alice"
    assert acked_again.status_code == 409
    assert "acknowledged" in acked_again.json()["message"]

    record(client, 1.0, BASE + timedelta(seconds=230))
    recovered = evaluate(db_url, now=BASE + timedelta(seconds=240))
    assert recovered.resolved == [incident["id"]]
    final = client.get(f"{path}/{incident['id']}").json()
    assert final["status"] == "resolved" and final["resolved_by"] is None
    assert [event["kind"] for event in final["timeline"]] == ["opened", "acknowledged", "recovered"]
    assert client.post(f"{path}/{incident['id']}/resolve", json={"who": "bob"}).status_code == 409
    assert incidents(client) == []


def test_hysteresis_keeps_an_oscillating_value_from_flapping(
    client: TestClient, db_url: str
) -> None:
    record(client, 1.0, BASE - timedelta(minutes=5))
    rule(client, name="with", threshold=90, recovery_threshold=80, duration_seconds=0)
    rule(client, name="without", threshold=90, duration_seconds=0)

    for step, value in enumerate([95, 85, 95, 85, 95, 79]):
        at = BASE + timedelta(minutes=step)
        record(client, value, at - timedelta(seconds=1))
        evaluate(db_url, now=at)

    everything = incidents(client, status="resolved") + incidents(client)
    opened = {
        name: sum(1 for i in everything if i["rule_name"] == name) for name in ("with", "without")
    }
    assert opened == {"with": 1, "without": 3}


@pytest.mark.parametrize(
    ("policy", "state"), [("ok", "ok"), ("alerting", "firing"), ("keep_state", "pending")]
)
def test_no_data_follows_the_policy(
    client: TestClient, db_url: str, policy: str, state: str
) -> None:
    record(client, 50.0, BASE - timedelta(seconds=5))
    created = rule(client, no_data=policy, duration_seconds=60)
    evaluate(db_url, now=BASE)  # pending: 50 > 5

    evaluate(db_url, now=BASE + timedelta(minutes=5))  # nothing in the window

    assert client.get(f"{RULES}/{created['id']}").json()["state"]["state"] == state


def test_a_manual_resolve_starts_the_rule_over(client: TestClient, db_url: str) -> None:
    record(client, 1.0, BASE - timedelta(minutes=5))
    rule(client, duration_seconds=0)
    record(client, 50.0, BASE - timedelta(seconds=5))
    evaluate(db_url, now=BASE)
    incident = incidents(client)[0]

    resolved = client.post(
        f"{INCIDENTS}/{incident['id']}/resolve", json={"who": "carol", "note": "restarted the pods"}
    )
    record(client, 60.0, BASE + timedelta(seconds=55))
    evaluate(db_url, now=BASE + timedelta(seconds=60))

    assert resolved.json()["resolution_note"] == "restarted the pods"
    reopened = incidents(client)
    assert len(reopened) == 1 and reopened[0]["id"] != incident["id"]


def test_incident_filters_and_bad_parameters(client: TestClient, db_url: str) -> None:
    record(client, 1.0, BASE - timedelta(minutes=5))
    rule(client, duration_seconds=0, severity="warning")
    record(client, 50.0, BASE - timedelta(seconds=5))
    evaluate(db_url, now=BASE)

    assert len(incidents(client, severity="warning")) == 1
    assert incidents(client, severity="critical") == []
    assert incidents(client, since=(datetime.now(UTC) + timedelta(hours=1)).isoformat()) == []
    assert client.get(INCIDENTS, params={"status": "burning"}).status_code == 400
    assert client.get(f"{INCIDENTS}/999999").status_code == 404
    assert client.post(f"{INCIDENTS}/999999/resolve", json={"who": "x"}).status_code == 404
    assert client.post(f"{INCIDENTS}/1/resolve", json={}).status_code == 422


def test_the_alerts_command_evaluates_once(client: TestClient, db_url: str) -> None:
    record(client, 1.0, datetime.now(UTC) - timedelta(minutes=5))
    rule(client, duration_seconds=0)
    record(client, 50.0, datetime.now(UTC) - timedelta(seconds=5))

    result = subprocess.run(
        [sys.executable, "-m", "jobs", "alerts", "--database-url", db_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "ok -> firing" in result.stdout
    assert "1 rule(s) evaluated: 1 incident(s) opened, 0 resolved" in result.stdout


def test_a_resolve_waits_for_an_evaluation_in_flight(
    client: TestClient, db_url: str, db: Any
) -> None:
    import threading

    import psycopg

    from alerts import EVALUATION_LOCK

    record(client, 1.0, BASE - timedelta(minutes=5))
    rule(client, duration_seconds=0)
    record(client, 50.0, BASE - timedelta(seconds=5))
    evaluate(db_url, now=BASE)
    incident = incidents(client)[0]
    answers: list[int] = []
    with psycopg.connect(db_url) as evaluator:
        evaluator.execute("SELECT pg_advisory_xact_lock(%s)", (EVALUATION_LOCK,))
        resolver = threading.Thread(
            target=lambda: answers.append(
                client.post(
                    f"{INCIDENTS}/{incident['id']}/resolve", json={"who": "gil"}
                ).status_code
            )
        )
        resolver.start()
        time.sleep(0.5)
        assert answers == []  # waiting for the pass to commit
        evaluator.commit()
    resolver.join()

    assert answers == [200]


def test_a_count_rule_fires_on_an_empty_window(client: TestClient, db_url: str) -> None:
    record(client, 1.0, BASE - timedelta(minutes=5))
    created = rule(
        client, aggregation="count", condition_operator="lt", threshold=1, duration_seconds=0
    )

    evaluate(db_url, now=BASE)

    assert client.get(f"{RULES}/{created['id']}").json()["state"]["state"] == "firing"


@pytest.mark.parametrize("aggregation", ["p50", "p95", "p99"])
def test_a_percentile_rule_sees_the_value_recorded(
    client: TestClient, db_url: str, aggregation: str
) -> None:
    # A percentile never lies outside the data: one 125.5 is not above 125.55.
    record(client, 125.5, BASE - timedelta(seconds=5))
    created = rule(client, aggregation=aggregation, threshold=125.55, duration_seconds=0)

    evaluate(db_url, now=BASE)

    state = client.get(f"{RULES}/{created['id']}").json()["state"]
    assert (state["state"], state["last_value"]) == ("ok", 125.5)


def test_disabling_a_firing_rule_closes_its_incident(client: TestClient, db_url: str) -> None:
    record(client, 1.0, BASE - timedelta(minutes=5))
    created = rule(client, duration_seconds=0)
    record(client, 50.0, BASE - timedelta(seconds=5))
    evaluate(db_url, now=BASE)

    client.patch(f"{RULES}/{created['id']}", json={"enabled": False})

    assert incidents(client) == []
    closed = incidents(client, status="resolved")[0]
    assert closed["resolution_note"] == "rule disabled"


@pytest.mark.parametrize(
    "path", [f"{RULES}/%C2%B2", f"{INCIDENTS}/%C2%B2", "/api/v1/analytics/alerts/channels/%C2%B2"]
)
def test_unicode_digits_in_ids_are_a_404(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_a_rule_name_with_a_line_break_is_refused(client: TestClient) -> None:
    record(client, 1.0, BASE)

    response = client.post(RULES, json={**SEED_RULE, "name": "evil\r\nBcc: everyone"})

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "name"
