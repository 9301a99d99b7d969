"""The periodic jobs and their intervals, as the scheduler runs them."""

from __future__ import annotations

from datetime import timedelta

from jobs import retention
from jobs.alerts import evaluate
from jobs.rollups import refresh_invalidated
from jobs.scheduler import Job, Outcome
from service.settings import Settings


def retention_policy(settings: Settings) -> retention.Policy:
    return retention.Policy(
        raw_days=settings.retention_days,
        hourly_days=settings.retention_hourly_days,
        daily_days=settings.retention_daily_days,
        idempotency_ttl=timedelta(hours=settings.ingest.idempotency_ttl_hours),
    )


def repeat_interval(settings: Settings) -> timedelta | None:
    return timedelta(seconds=settings.alert_repeat_s) if settings.alert_repeat_s else None


def periodic_jobs(settings: Settings) -> list[Job]:
    def rollups(url: str) -> Outcome:
        report = refresh_invalidated(url, progress=lambda _: None)
        return Outcome(report.invalidations, f"{report.hours} hour(s) refreshed")

    def retain(url: str) -> Outcome:
        report = retention.apply(url, retention_policy(settings))
        return Outcome(len(report.chunks), f"{len(report.chunks)} chunk(s) dropped")

    def alerts(url: str) -> Outcome:
        report = evaluate(url)
        return Outcome(
            report.rules,
            f"{report.rules} rule(s): {len(report.opened)} incident(s) "
            f"opened, {len(report.resolved)} resolved",
        )

    return [
        Job("rollups", timedelta(seconds=settings.schedule_rollups_s), rollups),
        Job("alerts", timedelta(seconds=settings.schedule_alerts_s), alerts),
        Job("retention", timedelta(seconds=settings.schedule_retention_s), retain),
    ]
