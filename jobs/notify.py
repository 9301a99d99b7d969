"""Delivering notifications: e-mail over SMTP, Slack incoming webhooks, signed webhooks.

The evaluator writes notifications to an outbox (analytics.notifications) in the transaction of
the incident change they announce. Delivery takes them one by one, oldest first, each locked
with FOR UPDATE SKIP LOCKED for as long as it is being sent, so two deliverers (two schedulers)
never send the same one. Every attempt is recorded in analytics.notification_attempts; a failed
one is retried after NOTIFY_RETRY_BASE_S, doubling each time (at most an hour), until
NOTIFY_MAX_ATTEMPTS. A process that dies between sending and recording leaves the notification
pending, and it is sent again: delivery is at least once, never twice for one committed send.

The generic webhook's body (UTF-8 JSON) is

    {"event": "firing" | "repeat" | "resolved",
     "incident": {"id", "rule_id", "rule_name", "severity", "status", "metric_name",
                  "metric_value", "threshold", "last_value", "opened_at", "resolved_at"},
     "sent_at": "<RFC 3339>"}

with the header ``X-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed with the
channel's secret>``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import smtplib
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx2
import msgspec
from psycopg.rows import dict_row

import sql
from core.db import connect_sync
from core.settings import Settings
from jobs.scheduler import one_line

log = logging.getLogger("astraeus.notify")
MAX_DELAY = timedelta(hours=1)


class DeliveryFailed(Exception):
    pass


@dataclass
class DeliveryReport:
    sent: int = 0
    failed_attempts: int = 0


def headline(n: dict[str, Any]) -> str:
    state = {"firing": "FIRING", "repeat": "STILL FIRING", "resolved": "RESOLVED"}[n["kind"]]
    value = n["last_value"] if n["kind"] != "firing" else n["metric_value"]
    return (
        f"[{n['severity'].upper()}] {state}: {n['rule_name']} - {n['metric_name']} = "
        f"{value:g} ({n['operator'] or '?'} {n['threshold']:g}), incident #{n['incident_id']}"
        if value is not None
        else f"[{n['severity'].upper()}] {state}: {n['rule_name']} - no data, incident "
        f"#{n['incident_id']}"
    )


def webhook_body(n: dict[str, Any]) -> bytes:
    incident = {
        key: n[key]
        for key in (
            "rule_id",
            "rule_name",
            "severity",
            "status",
            "metric_name",
            "metric_value",
            "threshold",
            "last_value",
            "opened_at",
            "resolved_at",
        )
    }
    return msgspec.json.encode(
        {
            "event": n["kind"],
            "incident": {"id": n["incident_id"], **incident},
            "sent_at": datetime.now(UTC),
        }
    )


def signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Sender:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.http = httpx2.Client(timeout=settings.notify_timeout_s)

    def close(self) -> None:
        self.http.close()

    def send(self, n: dict[str, Any]) -> str:
        config = n["config"]
        kind = n["channel_type"]
        if kind == "webhook":
            body = webhook_body(n)
            return self._post(
                config["url"],
                body,
                {
                    "content-type": "application/json",
                    "x-signature": signature(body, config["secret"]),
                },
            )
        if kind == "slack":
            return self._post(
                config["url"],
                msgspec.json.encode({"text": headline(n)}),
                {"content-type": "application/json"},
            )
        return self._mail(config["to"], n)

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> str:
        try:
            response = self.http.post(url, content=body, headers=headers)
        except httpx2.HTTPError as exc:
            raise DeliveryFailed(one_line(exc)) from None
        if response.status_code >= 300:
            raise DeliveryFailed(f"HTTP {response.status_code}")
        return f"HTTP {response.status_code}"

    def _mail(self, to: list[str], n: dict[str, Any]) -> str:
        s = self.settings
        message = EmailMessage()
        message["From"] = s.smtp_from
        message["To"] = ", ".join(to)
        message["Subject"] = headline(n)
        message.set_content(
            f"{headline(n)}\n\nrule: {n['rule_name']} (#{n['rule_id']})\n"
            f"metric: {n['metric_name']}\nthreshold: {n['threshold']:g}\n"
            f"opened: {n['opened_at']:%Y-%m-%d %H:%M:%S} UTC\nstatus: {n['status']}\n"
        )
        try:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.notify_timeout_s) as smtp:
                if s.smtp_starttls:
                    smtp.starttls()
                if s.smtp_username:
                    smtp.login(s.smtp_username, s.smtp_password.reveal())
                refused = smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryFailed(one_line(exc)) from None
        if refused:
            raise DeliveryFailed(f"refused recipients: {', '.join(refused)}")
        return f"mailed {len(to)} recipient(s)"


def delay(settings: Settings, attempts: int) -> timedelta:
    return min(timedelta(seconds=settings.notify_retry_base_s * 2**attempts), MAX_DELAY)


def deliver(
    url: str, settings: Settings, limit: int = 1000, budget_s: float = 30.0
) -> DeliveryReport:
    """Send what is due in the outbox, one notification per transaction, for at most
    `budget_s` (unreachable receivers must not hold up the jobs that call this)."""
    report = DeliveryReport()
    deadline = time.monotonic() + budget_s
    sender = Sender(settings)
    try:
        with connect_sync(url, "astraeus-notify") as conn:
            for _ in range(limit):
                if time.monotonic() > deadline:
                    break
                with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                    n = cur.execute(sql.query("notification_claim")).fetchone()
                    if n is None:
                        break
                    try:
                        detail = sender.send(n)
                    except Exception as exc:  # whatever the channel does, it is this attempt's
                        exc = (
                            exc
                            if isinstance(exc, DeliveryFailed)
                            else DeliveryFailed(one_line(exc))
                        )
                        report.failed_attempts += 1
                        log.warning(
                            "notification %s via %s failed: %s", n["id"], n["channel_name"], exc
                        )
                        cur.execute(
                            sql.query("notification_attempt"),
                            {"id": n["id"], "ok": False, "detail": str(exc)},
                        )
                        cur.execute(
                            sql.query("notification_retry"),
                            {
                                "id": n["id"],
                                "error": str(exc),
                                "max": settings.notify_max_attempts,
                                "delay": delay(settings, n["attempts"]),
                            },
                        )
                        continue
                    cur.execute(
                        sql.query("notification_attempt"),
                        {"id": n["id"], "ok": True, "detail": detail},
                    )
                    cur.execute(sql.query("notification_sent"), {"id": n["id"]})
                    report.sent += 1
    finally:
        sender.close()
    return report
