"""The periodic jobs and their intervals, as the scheduler runs them, and the outcome each
records (the same for a run started by hand, see jobs/cli.py); and the compactor loop that the
scheduler's host runs beside them (jobs/compact.py)."""

from __future__ import annotations

import threading
from datetime import timedelta

from core.settings import Settings
from jobs import retention
from jobs.alerts import EvaluationReport, evaluate
from jobs.compact import Compactor, Horizons
from jobs.health import HealthReport, check_services
from jobs.notify import DeliveryReport, deliver
from jobs.scheduler import Job, Outcome
from jobs.track import TrackReport, track_invalidated


def horizons(settings: Settings) -> Horizons:
    return Horizons(
        series_minutes=timedelta(hours=settings.retention_series_minute_hours),
        metric_minutes=timedelta(hours=settings.retention_minute_hours),
    )


def compactor(url: str, settings: Settings, stop: threading.Event) -> Compactor:
    """The compactor loop the scheduler's host runs beside the periodic jobs."""
    return Compactor(
        url,
        timedelta(milliseconds=settings.compact_every_ms),
        horizons(settings),
        stop,
        series_every=timedelta(milliseconds=settings.compact_series_every_ms),
    )


def retention_policy(settings: Settings) -> retention.Policy:
    return retention.Policy(
        raw_days=settings.retention_days,
        hourly_days=settings.retention_hourly_days,
        daily_days=settings.retention_daily_days,
        idempotency_ttl=timedelta(hours=settings.ingest.idempotency_ttl_hours),
        series_minute_hours=settings.retention_series_minute_hours,
        metric_minute_hours=settings.retention_minute_hours,
    )


def repeat_interval(settings: Settings) -> timedelta | None:
    return timedelta(seconds=settings.alert_repeat_s) if settings.alert_repeat_s else None


def own_api_url(settings: Settings) -> str:
    return settings.self_api_url or f"http://127.0.0.1:{settings.port}"


def tracked(report: TrackReport) -> Outcome:
    return Outcome(
        report.rows_changed,
        f"{report.periods} period(s) tracked from {report.invalidations} invalidation(s)",
    )


def retained(report: retention.RetentionReport) -> Outcome:
    return Outcome(len(report.chunks), f"{len(report.chunks)} chunk(s) dropped")


def alerted(report: EvaluationReport, delivered: DeliveryReport) -> Outcome:
    return Outcome(
        report.rules,
        f"{report.rules} rule(s): {len(report.opened)} incident(s) opened, "
        f"{len(report.resolved)} resolved; {delivered.sent} notification(s) sent, "
        f"{delivered.failed_attempts} failed attempt(s)",
    )


def checked(report: HealthReport, delivered: DeliveryReport) -> Outcome:
    down = sum(1 for r in report.results if r.status == "unhealthy")
    return Outcome(
        len(report.results),
        f"{len(report.results)} service(s) checked, {down} "
        f"unhealthy; {delivered.sent} notification(s) sent",
    )


def periodic_jobs(settings: Settings) -> list[Job]:
    def track(url: str) -> Outcome:
        return tracked(track_invalidated(url))

    def retain(url: str) -> Outcome:
        return retained(retention.apply(url, retention_policy(settings)))

    def alerts(url: str) -> Outcome:
        report = evaluate(url, repeat=repeat_interval(settings))
        return alerted(report, deliver(url, settings))

    def health(url: str) -> Outcome:
        report = check_services(
            url,
            failures_to_alert=settings.health_failures_to_alert,
            only_due=True,
            api_url=own_api_url(settings),
        )
        return checked(report, deliver(url, settings))

    return [
        Job("health", timedelta(seconds=settings.schedule_health_s), health),
        Job("alerts", timedelta(seconds=settings.schedule_alerts_s), alerts),
        Job("track", timedelta(seconds=settings.schedule_track_s), track),
        Job("retention", timedelta(seconds=settings.schedule_retention_s), retain),
    ]
