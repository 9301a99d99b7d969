"""`python -m jobs`: the command line for DBAs and for schedulers.

Exit codes: 0 done, 1 the job failed (one line on stderr says why), 2 bad usage. The runs of
periodic jobs started here (refresh, track, retention, alerts, health) are recorded in
_analytics.job_runs as 'manual' runs, beside the scheduler's (see jobs/scheduler.py).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta
from types import FrameType

import click

import sql
from core import logs
from core.db import connect_sync
from core.periods import PERIODS, previous_start, spanning
from core.settings import SettingError, Settings, load, redact_url
from jobs import compress, retention
from jobs.alerts import evaluate
from jobs.cli_common import database_errors, database_url, fail
from jobs.cli_keys import keys_group
from jobs.compact import compact, rebuild
from jobs.compact import start_in_thread as start_compactor
from jobs.health import check_services
from jobs.notify import deliver
from jobs.periodic import (
    alerted,
    checked,
    compactor,
    horizons,
    own_api_url,
    periodic_jobs,
    repeat_interval,
    retained,
    retention_policy,
    tracked,
)
from jobs.scheduler import Outcome, Scheduler, manual_run
from jobs.track import batch_track, track_invalidated
from sql.migrate import MigrationError, migrate


def settings() -> Settings:
    try:
        return load()
    except SettingError as exc:
        raise click.UsageError(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Jobs of astraeus-analytics: migrations, rollups, retention, compression, the scheduler."""
    logs.configure(os.environ.get("LOG_LEVEL") or "info", os.environ.get("LOG_FORMAT") or "auto")
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # not a line per health check


def _moment(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            "expected an RFC 3339 time such as 2024-10-30T00:00:00Z", param_hint=option
        ) from None
    if moment.tzinfo is None:
        raise click.BadParameter("the time needs a UTC offset, such as Z", param_hint=option)
    return moment.astimezone(UTC)


@main.command("migrate")
@database_url
def migrate_command(database_url: str) -> None:
    """Apply the schema migrations that are not applied yet, then the idempotent definitions.

    Safe to run from several processes at once and to re-run: each migration is applied once.
    """
    try:
        report = migrate(database_url, progress=click.echo)
    except MigrationError as exc:
        fail(f"{exc} ({redact_url(database_url)})" if "connect" in str(exc) else str(exc))
    click.echo(
        f"TimescaleDB {report.timescaledb_version} ({report.edition} edition): "
        f"{len(report.applied)} migration(s) applied, {report.already_applied} already applied, "
        f"{report.idempotent_files} definition file(s) re-applied"
    )


@main.command("refresh")
@database_url
@click.option("--start", help="Rebuild from this time (RFC 3339); with --end.")
@click.option("--end", help="Rebuild up to this time (RFC 3339); with --start.")
def refresh_command(database_url: str, start: str | None, end: str | None) -> None:
    """Bring the rollup tiers up to date.

    Without --start/--end: one compactor round now (merge what ingest committed into the
    tiers, fold the hours and days that closed), as the compactor loop does about once a
    second. With them: rebuild every tier over the range from raw events, a day per
    transaction, with a progress bar on a terminal and log lines otherwise; for repairs after
    raw rows were edited or deleted by hand (ingest keeps the tiers current without it).
    Never before the oldest raw events (the tiers are all that is left there). Safe to
    interrupt and re-run.
    """
    first, last = _moment(start, "--start"), _moment(end, "--end")
    if (first is None) != (last is None):
        raise click.UsageError("give both --start and --end, or neither")
    if first is not None and last is not None and last <= first:
        raise click.UsageError("--end must be later than --start")
    with (
        database_errors(database_url),
        manual_run(database_url, "rollups", waiting=_to_stderr) as run,
    ):
        if first is None or last is None:
            report = compact(database_url, horizons(settings()))
            run.outcome = Outcome(report.events, report.detail)
            click.echo(report.detail)
            return
        written = _rebuild_with_progress(database_url, first, last)
        days = -(-(last - first) // timedelta(days=1))
        scope = f"from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC"
        run.outcome = Outcome(written, f"tiers rebuilt {scope}")
    click.echo(f"{written} series-hour(s) rebuilt over {days} day(s) {scope}")


def _rebuild_with_progress(url: str, first: datetime, last: datetime) -> int:
    def said(lo: datetime, hi: datetime, rows: int) -> None:
        click.echo(f"rebuilt {lo:%Y-%m-%d %H:%M} to {hi:%Y-%m-%d %H:%M} UTC")

    if not sys.stdout.isatty():
        return rebuild(url, first, last, on_day=said)
    days = max(1, -(-(last - first) // timedelta(days=1)))
    with click.progressbar(length=days, label="rebuilding", show_pos=True) as bar:
        return rebuild(url, first, last, on_day=lambda lo, hi, rows: bar.update(1))


def _to_stderr(message: str) -> None:
    click.echo(message, err=True)


@main.command("track")
@database_url
@click.option("--start", help="Track periods from this time (RFC 3339); with --end.")
@click.option("--end", help="Track periods up to this time (RFC 3339); with --start.")
@click.option(
    "--period-type",
    type=click.Choice(PERIODS),
    default="day",
    show_default=True,
    help="With --start/--end: the periods to track.",
)
def track_command(database_url: str, start: str | None, end: str | None, period_type: str) -> None:
    """Materialise user, agent and platform analytics (batch tracking).

    Without --start/--end: track the periods that new or late platform events touched, as the
    scheduled job does. With them: track every closed period of --period-type in the range, for
    all users, agents and the platform. Idempotent: tracking twice leaves the same rows.
    """
    first, last = _moment(start, "--start"), _moment(end, "--end")
    if (first is None) != (last is None):
        raise click.UsageError("give both --start and --end, or neither")
    total = 0
    if first is not None and last is not None:
        if last <= first:
            raise click.UsageError("--end must be later than --start")
        try:
            total = len(spanning(period_type, first, last))
            previous_start(period_type, first)
        except OverflowError:
            raise click.UsageError("the range reaches past the years 1 to 9999") from None
    with database_errors(database_url), manual_run(database_url, "track", _to_stderr) as run:
        if first is None or last is None:
            report = track_invalidated(database_url)
        else:
            with click.progressbar(
                length=total, label="tracking", show_pos=True, file=sys.stderr
            ) as bar:
                report = batch_track(database_url, period_type, first, last, progress=bar.update)
        run.outcome = tracked(report)
    click.echo(
        f"{report.periods} period(s) tracked ({report.open_periods_skipped} still open): "
        f"{report.rows['user']} user row(s), {report.rows['agent']} agent row(s), "
        f"{report.rows['platform']} platform row(s); {report.rows_changed} changed"
    )


@main.command("refresh-entities")
@database_url
def refresh_entities_command(database_url: str) -> None:
    """Recompute the users and agents seen (analytics.users_seen, agents_seen) from the events.

    Run it once after upgrading to platform totals by first seen (migration 0012), when every
    server runs the new version: events that servers still on the old version stored meanwhile
    are counted then. Also after deleting platform events by hand. Ingest waits while it runs;
    the periods whose totals it changes are tracked again by the next track run. Safe to re-run.
    """
    with database_errors(database_url), connect_sync(database_url, "astraeus-jobs") as conn:
        row = conn.execute(sql.query("entities_seen_refresh")).fetchone()
        conn.commit()
    changed = row[0] if row else 0
    click.echo(f"{changed} user(s) and agent(s) added, changed or removed")


@main.command("retention")
@database_url
@click.option(
    "--days",
    type=click.IntRange(min=1),
    help="Keep raw events this many days (default: RETENTION_DAYS, 90).",
)
@click.option("--dry-run", is_flag=True, help="List the chunks that would be dropped; drop none.")
def retention_command(database_url: str, days: int | None, dry_run: bool) -> None:
    """Drop raw event chunks older than --days, and rollup chunks older than their own retention.

    Rollups outlive raw events (RETENTION_HOURLY_DAYS, RETENTION_DAILY_DAYS), so statistics over
    old windows keep working. Only chunks entirely older than the cut-off go.
    """
    policy = retention_policy(settings())
    if days is not None:
        policy = dataclasses.replace(policy, raw_days=days)
    with database_errors(database_url):
        if dry_run:  # not a run of the job: it changes nothing
            report = retention.apply(database_url, policy, dry_run=True)
        else:
            with manual_run(database_url, "retention", _to_stderr) as run:
                report = retention.apply(database_url, policy)
                run.outcome = retained(report)
    verb = "would drop" if dry_run else "dropped"
    for relation, chunk in report.chunks:
        click.echo(f"{verb} {chunk} ({relation})")
    click.echo(
        f"{len(report.chunks)} chunk(s) {verb}"
        + (
            ""
            if dry_run
            else f"; {report.keys_pruned} expired idempotency key(s) and "
            f"{report.runs_pruned} old job run(s) pruned"
        )
    )


@main.command("compress")
@database_url
@click.option(
    "--after-days",
    type=click.IntRange(min=1),
    help="Compress chunks older than this (default: COMPRESS_AFTER_DAYS, 7).",
)
def compress_command(database_url: str, after_days: int | None) -> None:
    """Set the raw events' compression policy and report compression (Community edition).

    The migrations turn compression on for raw events and every rollup tier; this
    sets how old a raw chunk is when it is compressed, and lists each relation's policy,
    chunks and bytes. On the Apache edition compression does not exist: the command says so
    and exits 0.
    """
    days = after_days or settings().compress_after_days
    with database_errors(database_url):
        report = compress.setup(database_url, days)
    if not report.available:
        click.echo(
            f"compression is unavailable on the {report.edition} edition of TimescaleDB; "
            "nothing to do"
        )
        return
    click.echo(
        ("policy changed; " if report.raw_policy_changed else "")
        + f"policy: compress chunks older than {days} day(s) of analytics.metric_event_store"
    )
    for relation in report.relations:
        policy = (
            f"compressed after {_span(relation.compress_after)} (job {relation.job_id}, "
            f"every {_span(relation.schedule_interval)})"
            if relation.compress_after is not None
            else "no policy"
        )
        click.echo(
            f"  analytics.{relation.name}: {policy}; {relation.compressed_chunks} of "
            f"{relation.chunks} chunk(s) compressed, {relation.bytes_before:,} -> "
            f"{relation.bytes_after:,} bytes"
        )


def _span(value: timedelta | None) -> str:
    if value is None:
        return "-"
    if value % timedelta(days=1) == timedelta(0):
        return f"{value.days} day(s)"
    return f"{value.total_seconds() / 3600:g} hour(s)"


@main.command("alerts")
@database_url
def alerts_command(database_url: str) -> None:
    """Evaluate every enabled alert rule once, deliver what that produced, then exit.

    Rules move ok -> pending -> firing (an incident opens) -> ok (it resolves itself); the
    same pass the scheduler runs every SCHEDULE_ALERTS_S.
    """
    config = settings()
    with database_errors(database_url), manual_run(database_url, "alerts", _to_stderr) as run:
        report = evaluate(database_url, repeat=repeat_interval(config))
        delivered = deliver(database_url, config)
        run.outcome = alerted(report, delivered)
    for rule, before, after in report.transitions:
        click.echo(f"rule {rule}: {before} -> {after}")
    click.echo(
        f"{report.rules} rule(s) evaluated: {len(report.opened)} incident(s) opened, "
        f"{len(report.resolved)} resolved; {delivered.sent} notification(s) sent, "
        f"{delivered.failed_attempts} failed attempt(s)"
    )


@main.command("health")
@database_url
def health_command(database_url: str) -> None:
    """Check every enabled service once, record the results, open or resolve incidents, deliver
    the notifications that produced, and exit."""
    config = settings()
    with database_errors(database_url), manual_run(database_url, "health", _to_stderr) as run:
        report = check_services(
            database_url,
            failures_to_alert=config.health_failures_to_alert,
            api_url=own_api_url(config),
        )
        delivered = deliver(database_url, config)
        run.outcome = checked(report, delivered)
    for result in report.results:
        took = f"{result.response_time_ms:.0f} ms" if result.response_time_ms is not None else "-"
        click.echo(f"{result.name:<24} {result.status:<10} {took:>9}  {result.error or ''}")
    click.echo(
        f"{len(report.results)} service(s) checked: {len(report.opened)} incident(s) "
        f"opened, {len(report.resolved)} resolved; {delivered.sent} notification(s) sent"
    )


@main.command("run")
@database_url
@click.option(
    "--tick",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    help="Seconds between looks for due jobs.",
)
def run_command(database_url: str, tick: float) -> None:
    """The scheduler: run every periodic job at its interval until SIGTERM or Ctrl-C.

    Any number of these (and API servers with RUN_SCHEDULER=true) may run at once: each job
    runs once per interval across all of them. A job in flight is finished before stopping.
    """
    stop = threading.Event()

    def stop_gracefully(signum: int, frame: FrameType | None) -> None:
        click.echo(
            f"{signal.Signals(signum).name}: finishing the job in flight, then stopping", err=True
        )
        stop.set()

    signal.signal(signal.SIGTERM, stop_gracefully)
    signal.signal(signal.SIGINT, stop_gracefully)
    scheduler = Scheduler(database_url, periodic_jobs(settings()), stop)
    compacting = start_compactor(compactor(database_url, settings(), stop))
    with database_errors(database_url):
        scheduler.serve(tick)
    compacting.join()


@main.command("status")
@database_url
@click.option("--job", help="Only this job's runs.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
def status_command(database_url: str, job: str | None, limit: int) -> None:
    """Recent runs of the periodic jobs, scheduled and manual: trigger, start, duration, rows
    affected, outcome, error."""
    with database_errors(database_url), connect_sync(database_url, "astraeus-jobs") as conn:
        rows = conn.execute(sql.query("job_runs_recent"), {"job": job, "limit": limit})
        runs = rows.fetchall()
    if not runs:
        click.echo("no job runs recorded yet")
        return
    click.echo(
        f"{'job':<12} {'trigger':<9} {'started (UTC)':<20} {'duration':>10} {'rows':>8}  "
        f"{'outcome':<11} detail"
    )
    for run in runs:
        _, name, started, _, duration_ms, rows_affected, outcome, error, detail, *_ = run
        trigger = run[-1]
        took = f"{duration_ms / 1000:.1f} s" if duration_ms is not None else "-"
        click.echo(
            f"{name:<12} {trigger:<9} {started:%Y-%m-%d %H:%M:%S} {took:>10} "
            f"{rows_affected if rows_affected is not None else '-':>8}  {outcome:<11} "
            f"{error or detail or ''}"
        )


main.add_command(keys_group)
