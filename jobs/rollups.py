"""The rollup job: (re)materialise rollups for the hours new or late events touched.

Every committed batch appends the hours it touched to _analytics.rollup_invalidations. A run
takes the hours listed there that closed at least ROLLUP_GRACE ago (younger ones keep being
written; queries read them from raw), merges them into contiguous ranges of at most a day, and
for each range:

- Apache edition: in one transaction, deletes the range's invalidation rows it read, recomputes
  the hourly rollups for the range and the daily rollups for the days it touches, from the
  definitions in _analytics.rollups;
- Community edition: refresh_continuous_aggregate for the hourly aggregates, then the daily
  ones (it cannot run inside a transaction), then deletes the invalidation rows it read.

Either way an invalidation is deleted only after its hours are recomputed, and only the rows
the job saw: a batch committing meanwhile leaves its own rows for the next run. Late events days
old are corrected like fresh ones, whatever a refresh policy's window is.

A range refresh (refresh_range, `python -m jobs refresh --start --end`) consumes the
invalidations of its range the same way, a day at a time: it reads the range's rows (of hours
closed ROLLUP_GRACE ago) before recomputing and deletes exactly those after, so its hours are
read from the rollups at once; invalidations outside the range stay for the periodic run. With
`only` one rollup it consumes none: an invalidation stands for all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql as pgsql

import sql
from jobs.migrate import edition
from service.db import connect_sync

log = logging.getLogger("astraeus.rollups")

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
MAX_RANGE = DAY  # hours recomputed per transaction (or per refresh call)
MAX_INVALIDATIONS = 100_000  # read per run; the rest waits for the next run
# An hour is recomputed only this long after it closes: longer than an ingest transaction can
# last (its statements are cut at STATEMENT_TIMEOUT_MS), see GroupCommitter._marks_needed.
ROLLUP_GRACE = timedelta(minutes=15)


@dataclass(frozen=True)
class Rollup:
    name: str
    width: timedelta
    definition: str


@dataclass
class RefreshReport:
    ranges: list[tuple[datetime, datetime]] = field(default_factory=list)
    hours: int = 0
    invalidations: int = 0


def rollups(conn: psycopg.Connection) -> list[Rollup]:
    rows = conn.execute(
        "SELECT name, width, definition FROM _analytics.rollups ORDER BY position"
    ).fetchall()
    return [Rollup(name, width, definition) for name, width, definition in rows]


def hour_ranges(
    hours: Iterable[datetime], longest: timedelta = MAX_RANGE
) -> list[tuple[datetime, datetime]]:
    """Contiguous [start, end) ranges covering `hours` (hour starts), none over `longest`."""
    ranges: list[tuple[datetime, datetime]] = []
    for hour in sorted(set(hours)):
        if ranges and ranges[-1][1] == hour and hour + HOUR - ranges[-1][0] <= longest:
            ranges[-1] = (ranges[-1][0], hour + HOUR)
        else:
            ranges.append((hour, hour + HOUR))
    return ranges


def covering(start: datetime, end: datetime, width: timedelta) -> tuple[datetime, datetime]:
    """[start, end) widened to whole buckets of `width` (UTC-aligned, as time_bucket aligns)."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    first = epoch + ((start - epoch) // width) * width
    last = epoch + -((epoch - end) // width) * width
    return first, last


def _recompute_apache(
    conn: psycopg.Connection, rollup: Rollup, start: datetime, end: datetime
) -> None:
    target = pgsql.Identifier("analytics", rollup.name)
    conn.execute(
        pgsql.SQL("DELETE FROM {} WHERE bucket >= %s AND bucket < %s").format(target),
        (start, end),
    )
    # The stored definition is our own SQL, from the migration: never user input.
    conn.execute(
        pgsql.SQL(
            "INSERT INTO {} SELECT * FROM ({}) AS d WHERE bucket >= %s AND bucket < %s"
        ).format(
            target,
            pgsql.SQL(rollup.definition),
        ),
        (start, end),
    )


class UnknownRollup(ValueError):
    pass


def materialise(
    conn: psycopg.Connection, start: datetime, end: datetime, only: str | None = None
) -> None:
    """Recompute every rollup (or `only` that one) over [start, end), hourly ones first."""
    apache = edition(conn) != "timescale"
    for rollup in rollups(conn):
        if only is not None and rollup.name != only:
            continue
        first, last = covering(start, end, rollup.width)
        if apache:
            _recompute_apache(conn, rollup, first, last)
        else:
            conn.execute(
                "CALL refresh_continuous_aggregate(%s, %s, %s)",
                (f"analytics.{rollup.name}", first, last),
            )


def oldest_raw(conn: psycopg.Connection) -> datetime | None:
    """Where raw events begin. Rollups before it are final: recomputing them from raw events
    that retention has dropped would empty them, on either edition."""
    row = conn.execute(sql.query("oldest_raw_time")).fetchone()
    return row[0] if row else None


def refresh_invalidated(
    url: str,
    *,
    now: datetime | None = None,
    grace: timedelta = ROLLUP_GRACE,
    progress: Callable[[str], None] = log.info,
) -> RefreshReport:
    """One run of the rollup job over what ingest has invalidated."""
    report = RefreshReport()
    with connect_sync(url, "astraeus-rollups", autocommit=True) as conn:
        apache = edition(conn) != "timescale"
        rows = conn.execute(
            "SELECT id, bucket FROM _analytics.rollup_invalidations "
            "WHERE bucket < date_trunc('hour', coalesce(%s, now()) - %s::interval) "
            "ORDER BY bucket LIMIT %s",
            (now, grace, MAX_INVALIDATIONS),
        ).fetchall()
        # After the invalidations, never before: a batch committing in between may have made
        # an older chunk, and its invalidation must not look moot.
        oldest = oldest_raw(conn)
        by_hour: dict[datetime, list[int]] = {}
        moot = []
        for row_id, bucket in rows:
            if oldest is None or bucket < oldest:
                moot.append(row_id)  # its raw events are gone: the rollups stay as they are
            else:
                by_hour.setdefault(bucket, []).append(row_id)
        if moot:
            _forget(conn, moot)
        for start, end in hour_ranges(by_hour):
            ids = [i for hour, hour_ids in by_hour.items() if start <= hour < end for i in hour_ids]
            if apache:
                with conn.transaction():
                    materialise(conn, start, end)
                    _forget(conn, ids)
            else:
                materialise(conn, start, end)
                _forget(conn, ids)
            report.ranges.append((start, end))
            report.hours += int((end - start) / HOUR)
            report.invalidations += len(ids)
            progress(f"refreshed {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC")
    return report


def check_rollup(conn: psycopg.Connection, only: str | None) -> None:
    names = [rollup.name for rollup in rollups(conn)]
    if only is not None and only not in names:
        raise UnknownRollup(f"no rollup named {only!r}; there are: {', '.join(names)}")


def refresh_range(
    url: str,
    start: datetime,
    end: datetime,
    *,
    only: str | None = None,
    now: datetime | None = None,
    grace: timedelta = ROLLUP_GRACE,
    on_range: Callable[[datetime, datetime, int, int], None] | None = None,
    progress: Callable[[str], None] = log.info,
) -> RefreshReport:
    """Recompute the rollups (or `only` one) over [start, end), a day per transaction, and
    (all of them only) consume the range's invalidations of hours closed `grace` ago.

    Safe to interrupt and re-run. Clamped to where raw events begin (see oldest_raw).
    """
    report = RefreshReport()
    first, last = covering(start, end, HOUR)
    window = {"now": now, "grace": grace}
    with connect_sync(url, "astraeus-rollups", autocommit=True) as conn:
        check_rollup(conn, only)
        apache = edition(conn) != "timescale"
        if only is None:
            moot = conn.execute(
                sql.query("rollup_invalidations_moot_delete"),
                {"start": first, "end": last, **window},
            )
            report.invalidations += moot.rowcount
        oldest = oldest_raw(conn)
        if oldest is None:
            return report
        first = max(first, oldest)
        steps = []
        cursor = first
        while cursor < last:
            steps.append((cursor, min(cursor + MAX_RANGE, last)))
            cursor = steps[-1][1]
        for done, (lo, hi) in enumerate(steps, start=1):
            ids = (
                [
                    row[0]
                    for row in conn.execute(
                        sql.query("rollup_invalidations_in_range"),
                        {"start": lo, "end": hi, **window},
                    )
                ]
                if only is None
                else []
            )
            if apache:
                with conn.transaction():
                    materialise(conn, lo, hi, only)
                    _forget(conn, ids)
            else:
                materialise(conn, lo, hi, only)
                _forget(conn, ids)
            report.invalidations += len(ids)
            report.ranges.append((lo, hi))
            report.hours += int((hi - lo) / HOUR)
            if on_range is not None:
                on_range(lo, hi, done, len(steps))
            else:
                progress(f"refreshed {lo:%Y-%m-%d %H:%M} to {hi:%Y-%m-%d %H:%M} UTC")
    return report


def _forget(conn: psycopg.Connection, ids: list[int]) -> None:
    conn.execute("DELETE FROM _analytics.rollup_invalidations WHERE id = ANY(%s)", (ids,))
