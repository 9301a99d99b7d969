"""Notifications through real peers: an SMTP server and HTTP receivers started by the tests."""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
import pytest
from starlette.testclient import TestClient

from core.settings import Settings, load
from jobs.alerts import evaluate
from jobs.notify import deliver
from tests.peers import Mailbox, Receiver, http_receiver, smtp_server

ALERTS = "/api/v1/analytics/alerts"
SECRET = "a-webhook-secret-of-some-length"
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=40)


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as box:
        yield box


@pytest.fixture
def webhook() -> Iterator[Receiver]:
    with http_receiver() as receiver:
        yield receiver


@pytest.fixture
def slack() -> Iterator[Receiver]:
    with http_receiver() as receiver:
        yield receiver


def notify_settings(mailbox: Mailbox, **extra: str) -> Settings:
    return load(
        {
            "SMTP_HOST": mailbox.host,
            "SMTP_PORT": str(mailbox.port),
            "NOTIFY_RETRY_BASE_S": "0",
            **extra,
        }
    )


def record(client: TestClient, value: float, at: datetime) -> None:
    event = {
        "metric_name": "queue.depth",
        "value": value,
        "metric_type": "gauge",
        "timestamp": at.isoformat(),
    }
    assert client.post("/api/v1/analytics/metrics/record", json=event).status_code == 200


def channel(client: TestClient, **body: Any) -> int:
    response = client.post(f"{ALERTS}/channels", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def all_channels(
    client: TestClient, mailbox: Mailbox, webhook: Receiver, slack: Receiver
) -> list[int]:
    return [
        channel(
            client, name="ops mail", type="email", to=["ops@example.com", "oncall@example.com"]
        ),
        channel(client, name="ops slack", type="slack", url=f"{slack.url}/hooks/T1"),
        channel(client, name="pager", type="webhook", url=f"{webhook.url}/alert", secret=SECRET),
    ]


def rule(client: TestClient, channels: list[int], **fields: Any) -> int:
    body = {
        "name": "deep queue",
        "metric_name": "queue.depth",
        "condition_operator": "gt",
        "threshold": 100,
        "severity": "error",
        "duration_seconds": 60,
        "channels": channels,
        **fields,
    }
    response = client.post(f"{ALERTS}/rules", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def fire(client: TestClient, db_url: str, value: float = 150.0) -> None:
    record(client, value, BASE - timedelta(seconds=5))
    evaluate(db_url, now=BASE)
    record(client, value, BASE + timedelta(seconds=55))
    evaluate(db_url, now=BASE + timedelta(seconds=60))


def test_a_rule_notifies_every_channel_once_on_firing_and_on_resolve(
    client: TestClient, db_url: str, mailbox: Mailbox, webhook: Receiver, slack: Receiver
) -> None:
    record(client, 1.0, BASE - timedelta(minutes=5))
    rule(client, all_channels(client, mailbox, webhook, slack))
    settings = notify_settings(mailbox)

    fire(client, db_url)
    first = deliver(db_url, settings)
    again = deliver(db_url, settings)
    incident = client.get(f"{ALERTS}/incidents").json()["incidents"][0]
    client.post(f"{ALERTS}/incidents/{incident['id']}/acknowledge", json={"who": "dana"})
    record(client, 10.0, BASE + timedelta(seconds=115))
    evaluate(db_url, now=BASE + timedelta(seconds=120))
    resolved = deliver(db_url, settings)

    assert (first.sent, again.sent, resolved.sent) == (3, 0, 3)
    subjects = [m["Subject"] for m in mailbox.messages]
    assert subjects[0].startswith("[ERROR] FIRING: deep queue - queue.depth = 150 (gt 100)")
    assert subjects[1].startswith("[ERROR] RESOLVED: deep queue")
    assert mailbox.messages[0]["To"] == "ops@example.com, oncall@example.com"
    texts = [msgspec.json.decode(r.body)["text"] for r in slack.requests]
    assert [t.split(":")[0] for t in texts] == ["[ERROR] FIRING", "[ERROR] RESOLVED"]
    assert [r.path for r in slack.requests] == ["/hooks/T1", "/hooks/T1"]
    events = [msgspec.json.decode(r.body) for r in webhook.requests]
    assert [e["event"] for e in events] == ["firing", "resolved"]
    assert events[0]["incident"]["rule_name"] == "deep queue"
    assert events[0]["incident"]["metric_value"] == 150.0
    for request in webhook.requests:
        expected = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
        assert request.headers["x-signature"] == f"sha256={expected}"
    log = client.get(f"{ALERTS}/incidents/{incident['id']}").json()["deliveries"]
    assert sorted((d["kind"], d["channel"], d["status"]) for d in log) == sorted(
        (kind, name, "sent")
        for kind in ("firing", "resolved")
        for name in ("ops mail", "ops slack", "pager")
    )


def test_a_failing_receiver_is_retried_and_every_attempt_is_logged(
    client: TestClient, db_url: str, mailbox: Mailbox, webhook: Receiver
) -> None:
    record(client, 1.0, BASE - timedelta(minutes=5))
    pager = channel(client, name="pager", type="webhook", url=webhook.url, secret=SECRET)
    rule(client, [pager])
    webhook.fail_next = 2

    fire(client, db_url)
    report = deliver(db_url, notify_settings(mailbox))

    assert (report.sent, report.failed_attempts) == (1, 2)
    assert len(webhook.requests) == 1
    incident = client.get(f"{ALERTS}/incidents").json()["incidents"][0]
    log = client.get(f"{ALERTS}/incidents/{incident['id']}").json()["deliveries"][0]
    assert log["status"] == "sent" and log["attempts"] == 3
    assert [(a["ok"], a["detail"]) for a in log["attempts_log"]] == [
        (False, "HTTP 500"),
        (False, "HTTP 500"),
        (True, "HTTP 200"),
    ]


def test_a_receiver_that_never_answers_is_given_up_after_the_last_attempt(
    client: TestClient, db_url: str, mailbox: Mailbox
) -> None:
    record(client, 1.0, BASE - timedelta(minutes=5))
    dead = channel(client, name="dead", type="slack", url="http://127.0.0.1:9/nowhere")
    rule(client, [dead])

    fire(client, db_url)
    report = deliver(db_url, notify_settings(mailbox, NOTIFY_MAX_ATTEMPTS="3"))

    assert (report.sent, report.failed_attempts) == (0, 3)
    incident = client.get(f"{ALERTS}/incidents").json()["incidents"][0]
    log = client.get(f"{ALERTS}/incidents/{incident['id']}").json()["deliveries"][0]
    assert log["status"] == "failed" and len(log["attempts_log"]) == 3


def test_a_silence_suppresses_until_it_ends(
    client: TestClient, db_url: str, mailbox: Mailbox, webhook: Receiver
) -> None:
    record(client, 1.0, BASE - timedelta(minutes=5))
    pager = channel(client, name="pager", type="webhook", url=webhook.url, secret=SECRET)
    rule_id = rule(client, [pager])
    silence = client.post(
        f"{ALERTS}/silences",
        json={
            "matchers": {"metric_name": "queue.depth"},
            "starts_at": (BASE - timedelta(hours=1)).isoformat(),
            "ends_at": (BASE + timedelta(seconds=90)).isoformat(),
            "created_by": "erin",
            "comment": "maintenance",
        },
    )

    fire(client, db_url)
    during = deliver(db_url, notify_settings(mailbox))
    assert client.get(f"{ALERTS}/incidents").json()["incidents"][0]["silenced"] is False  # ended
    record(client, 10.0, BASE + timedelta(seconds=115))
    evaluate(db_url, now=BASE + timedelta(seconds=120))  # recovers after the silence ended
    after = deliver(db_url, notify_settings(mailbox))

    assert silence.status_code == 201
    assert silence.json()["matchers"] == {"metric_name": "queue.depth"}
    assert (during.sent, after.sent) == (0, 1)
    assert [msgspec.json.decode(r.body)["event"] for r in webhook.requests] == ["resolved"]
    assert client.get(f"{ALERTS}/rules/{rule_id}").json()["trigger_count"] == 1


def test_an_open_incident_is_notified_again_at_the_repeat_interval(
    client: TestClient, db_url: str, mailbox: Mailbox, webhook: Receiver
) -> None:
    record(client, 1.0, BASE - timedelta(minutes=5))
    pager = channel(client, name="pager", type="webhook", url=webhook.url, secret=SECRET)
    rule(client, [pager])
    fire(client, db_url)

    for minutes in (2, 3, 7, 8):
        at = BASE + timedelta(minutes=minutes)
        record(client, 150.0, at - timedelta(seconds=5))
        evaluate(db_url, now=at, repeat=timedelta(minutes=5))
    deliver(db_url, notify_settings(mailbox))

    assert [msgspec.json.decode(r.body)["event"] for r in webhook.requests] == ["firing", "repeat"]


def test_two_deliverers_at_once_send_each_notification_once(
    client: TestClient, db_url: str, mailbox: Mailbox, webhook: Receiver
) -> None:
    record(client, 1.0, BASE - timedelta(minutes=5))
    hooks = [
        channel(client, name=f"hook {i}", type="webhook", url=f"{webhook.url}/{i}", secret=SECRET)
        for i in range(6)
    ]
    rule(client, hooks)
    fire(client, db_url)
    settings = notify_settings(mailbox)

    threads = [threading.Thread(target=deliver, args=(db_url, settings)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(r.path for r in webhook.requests) == [f"/{i}" for i in range(6)]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "m", "type": "email"}, "to"),
        ({"name": "m", "type": "email", "to": ["not-an-address"]}, "to[0]"),
        ({"name": "s", "type": "slack", "url": "ftp://x"}, "url"),
        (
            {"name": "w", "type": "webhook", "url": "http://x.example/h", "secret": "short"},
            "secret",
        ),
        ({"name": "p", "type": "pigeon"}, "type"),
    ],
)
def test_invalid_channels_are_refused(client: TestClient, body: dict[str, Any], field: str) -> None:
    response = client.post(f"{ALERTS}/channels", json=body)

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == field


def test_webhook_secrets_are_never_shown_again(client: TestClient) -> None:
    created = channel(client, name="w", type="webhook", url="http://x.example/h", secret=SECRET)

    shown = client.get(f"{ALERTS}/channels/{created}").json()

    assert shown["config"] == {"url": "http://x.example/h", "secret": "********"}
    assert SECRET not in client.get(f"{ALERTS}/channels").text


def test_a_rule_naming_a_missing_channel_is_refused(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    record(client, 1.0, BASE)

    response = client.post(
        f"{ALERTS}/rules",
        json={
            "name": "r",
            "metric_name": "queue.depth",
            "condition_operator": "gt",
            "threshold": 1,
            "channels": [4242],
        },
    )

    assert response.status_code == 422
    assert response.json()["details"] == [
        {"field": "channels", "reason": "no channel with id 4242"}
    ]


def test_silences_are_listed_and_deleted(client: TestClient) -> None:
    record(client, 1.0, BASE)
    bad = client.post(f"{ALERTS}/silences", json={"created_by": "x", "duration_seconds": 60})
    made = client.post(
        f"{ALERTS}/silences",
        json={"matchers": {"region": "eu"}, "duration_seconds": 600, "created_by": "x"},
    )

    listed = client.get(f"{ALERTS}/silences").json()["silences"]
    removed = client.delete(f"{ALERTS}/silences/{made.json()['id']}")

    assert bad.status_code == 422 and bad.json()["details"][0]["field"] == "rule_id"
    assert [s["id"] for s in listed] == [made.json()["id"]] and listed[0]["active"] is True
    assert removed.status_code == 204
    assert client.get(f"{ALERTS}/silences").json()["silences"] == []


def test_an_incident_under_a_silence_in_force_says_so(client: TestClient, db_url: str) -> None:
    record(client, 1.0, BASE - timedelta(minutes=5))
    rule_id = rule(client, [], duration_seconds=0)
    record(client, 150.0, BASE - timedelta(seconds=5))
    evaluate(db_url, now=BASE)
    client.post(
        f"{ALERTS}/silences",
        json={"rule_id": rule_id, "duration_seconds": 600, "created_by": "fay"},
    )

    assert client.get(f"{ALERTS}/incidents").json()["incidents"][0]["silenced"] is True


def test_the_scheduled_alerts_job_evaluates_and_delivers(
    client: TestClient, db_url: str, mailbox: Mailbox, webhook: Receiver
) -> None:
    from jobs.periodic import periodic_jobs
    from jobs.scheduler import Scheduler

    now = datetime.now(UTC)
    record(client, 1.0, now - timedelta(minutes=5))
    pager = channel(client, name="pager", type="webhook", url=webhook.url, secret=SECRET)
    rule(client, [pager], duration_seconds=0)
    record(client, 150.0, now - timedelta(seconds=5))
    jobs = [j for j in periodic_jobs(notify_settings(mailbox)) if j.name == "alerts"]

    scheduler = Scheduler(db_url, jobs)
    scheduler.run_due()
    scheduler.close()

    assert [msgspec.json.decode(r.body)["event"] for r in webhook.requests] == ["firing"]


def test_a_channel_that_cannot_be_sent_to_does_not_stop_the_others(
    client: TestClient,
    db_url: str,
    db: psycopg.Connection[Any],
    mailbox: Mailbox,
    webhook: Receiver,
) -> None:
    record(client, 1.0, BASE - timedelta(minutes=5))
    good = channel(client, name="good", type="webhook", url=webhook.url, secret=SECRET)
    broken = channel(client, name="broken", type="slack", url="https://example.invalid/x")
    # A URL the HTTP client refuses to parse, as an older version might have stored.
    db.execute(
        'UPDATE analytics.alert_channels SET config = \'{"url": "https://[::1/"}\' WHERE id = %s',
        (broken,),
    )
    rule(client, [broken, good])

    fire(client, db_url)
    report = deliver(db_url, notify_settings(mailbox, NOTIFY_MAX_ATTEMPTS="2"))

    assert (report.sent, report.failed_attempts) == (1, 2)
    assert len(webhook.requests) == 1


def test_a_resolution_never_overtakes_its_firing(
    client: TestClient,
    db_url: str,
    db: psycopg.Connection[Any],
    mailbox: Mailbox,
    webhook: Receiver,
) -> None:
    record(client, 1.0, BASE - timedelta(minutes=5))
    pager = channel(client, name="pager", type="webhook", url=webhook.url, secret=SECRET)
    rule(client, [pager])
    fire(client, db_url)
    webhook.fail_next = 1
    deliver(db_url, notify_settings(mailbox, NOTIFY_RETRY_BASE_S="3600"))  # firing: backoff
    record(client, 10.0, BASE + timedelta(seconds=115))
    evaluate(db_url, now=BASE + timedelta(seconds=120))

    held = deliver(db_url, notify_settings(mailbox))
    db.execute("UPDATE analytics.notifications SET next_attempt_at = now()")
    both = deliver(db_url, notify_settings(mailbox))

    assert (held.sent, both.sent) == (0, 2)
    assert [msgspec.json.decode(r.body)["event"] for r in webhook.requests] == [
        "firing",
        "resolved",
    ]


@pytest.mark.parametrize("url", ["https://[::1/", "https://h:notaport/"])
def test_channel_urls_the_client_cannot_use_are_refused(client: TestClient, url: str) -> None:
    response = client.post(f"{ALERTS}/channels", json={"name": "s", "type": "slack", "url": url})

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "url"


def test_slack_webhook_urls_are_masked(client: TestClient) -> None:
    created = channel(
        client, name="s", type="slack", url="https://hooks.slack.com/services/T0/B0/secret"
    )

    assert client.get(f"{ALERTS}/channels/{created}").json()["config"] == {
        "url": "https://hooks.slack.com/********"
    }
