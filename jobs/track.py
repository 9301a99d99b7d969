"""Batch tracking: materialise user, agent and platform analytics per UTC calendar period.

The figures are those of analytics.user_figures, agent_figures and platform_figures, the same
functions the API reads raw events with; tracking stores their rows in analytics.user_analytics,
agent_analytics and platform_metrics. Upserts write only rows whose figures changed and delete
rows of entities no longer in the period, so tracking a period twice leaves the same rows.

analytics.tracked_periods says which (kind, period) is materialised and whether it is dirty.
Every committed batch of platform events lists its hours in _analytics.event_invalidations;
the track job (scheduled, or `python -m jobs track`):

1. turns the invalidation rows its snapshot sees into dirty periods (every scheduled kind and
   period type containing each hour, and any period tracked before), deleting exactly those rows;
2. tracks the dirty periods that closed at least TRACK_GRACE ago, oldest first.

So late events correct past periods at the next run, and reads never take a period for clean
while an invalidation inside it waits. `batch_track` (POST /batch-track, `track --start --end`)
tracks every closed period of a range, whatever its state. All of it holds TRACK_LOCK per
transaction, so concurrent runs never undo each other's marks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql as pgsql

import sql
from core.db import connect_sync
from core.periods import previous_start, spanning

TRACK_LOCK = 0x61737472_7472616B  # "astr" "trak"
# A period is tracked this long after it closes: a writer's transaction has long committed.
TRACK_GRACE = timedelta(minutes=15)
MAX_INVALIDATIONS = 100_000  # read per run; the rest waits for the next run
MAX_PERIODS_PER_RUN = 2_000
TRACK_BUDGET_S = 30.0  # per scheduled run: health checks and alerts wait behind it

KINDS = ("user", "agent", "platform")
# What the scheduled job keeps materialised. Users and agents per hour are cheap to compute
# from their own events on demand, and would be millions of rows a day; POST /batch-track can
# still materialise them.
SCHEDULED: dict[str, tuple[str, ...]] = {
    "user": ("day", "week", "month"),
    "agent": ("day", "week", "month"),
    "platform": ("hour", "day", "week", "month"),
}
TABLES = {
    "user": ("user_analytics", "user_id"),
    "agent": ("agent_analytics", "agent_id"),
    "platform": ("platform_metrics", None),
}


@dataclass
class TrackReport:
    periods: int = 0  # periods tracked (all kinds of one period count once)
    open_periods_skipped: int = 0
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    rows_changed: int = 0  # inserted, updated or deleted
    invalidations: int = 0

    def body(self) -> dict[str, object]:
        return {
            "periods": self.periods,
            "open_periods_skipped": self.open_periods_skipped,
            "users": self.rows["user"],
            "agents": self.rows["agent"],
            "platform": self.rows["platform"],
            "rows_changed": self.rows_changed,
        }


def _figures_sql(kind: str) -> pgsql.SQL:
    if kind == "user":
        return pgsql.SQL("analytics.user_figures(%(start)s, %(end)s)")
    if kind == "agent":
        return pgsql.SQL("analytics.agent_figures(%(start)s, %(end)s, %(end)s)")
    return pgsql.SQL("analytics.platform_figures(%(start)s, %(end)s, %(before)s)")


def _upsert(conn: psycopg.Connection, kind: str) -> pgsql.Composed:
    """One statement: compute the period's rows, upsert the changed ones, delete the gone ones;
    returns (rows, changed)."""
    # A dynamic builder (see sql/README.md): the table and id column are identifiers from the
    # fixed TABLES map (keyed by KINDS), the other columns those the table itself has (read
    # below), the figures function one of _figures_sql's three fixed texts; values are bind
    # parameters.
    table, id_column = TABLES[kind]
    cur = conn.execute(
        pgsql.SQL("SELECT * FROM analytics.{} LIMIT 0").format(pgsql.Identifier(table))
    )
    columns = [c.name for c in cur.description or ()]
    keys = ["period_type", "period_start"] + ([id_column] if id_column else [])
    figures = [c for c in columns if c not in keys and c != "period_end"]
    ident = pgsql.Identifier
    names = pgsql.SQL(", ").join(map(ident, columns))
    mine = pgsql.SQL(", ").join(pgsql.SQL("t.{}").format(ident(c)) for c in figures)
    theirs = pgsql.SQL(", ").join(pgsql.SQL("excluded.{}").format(ident(c)) for c in figures)
    # Rows of entities no longer in the period (their events were deleted); the platform
    # always has its one row.
    deleted = (
        pgsql.SQL(
            """DELETE FROM analytics.{table} t
            WHERE t.period_type = %(period_type)s AND t.period_start = %(start)s
              AND NOT EXISTS (SELECT 1 FROM computed c WHERE c.{id} = t.{id})
            RETURNING 1"""
        ).format(table=ident(table), id=ident(id_column))
        if id_column
        else pgsql.SQL("SELECT 1 WHERE false")
    )
    return pgsql.SQL(
        """
        WITH computed AS (
            SELECT %(period_type)s::text AS period_type, %(start)s::timestamptz AS period_start,
                   %(end)s::timestamptz AS period_end, f.*
            FROM {figures} f
        ), upserted AS (
            INSERT INTO analytics.{table} AS t ({names})
            SELECT {names} FROM computed
            ON CONFLICT ({keys}) DO UPDATE SET {assignments}
            WHERE ({mine}) IS DISTINCT FROM ({theirs})
            RETURNING 1
        ), deleted AS (
            {deleted}
        )
        SELECT (SELECT count(*) FROM computed),
               (SELECT count(*) FROM upserted) + (SELECT count(*) FROM deleted)
        """
    ).format(
        figures=_figures_sql(kind),
        table=ident(table),
        names=names,
        keys=pgsql.SQL(", ").join(map(ident, keys)),
        assignments=pgsql.SQL(", ").join(
            pgsql.SQL("{c} = excluded.{c}").format(c=ident(c)) for c in figures
        ),
        mine=mine,
        theirs=theirs,
        deleted=deleted,
    )


class Tracker:
    """Tracks periods over one connection (autocommit; one transaction per period)."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.statements = {kind: _upsert(conn, kind) for kind in KINDS}

    def lock(self) -> None:
        self.conn.execute(sql.query("advisory_xact_lock"), {"key": TRACK_LOCK})

    def claim(self, report: TrackReport) -> None:
        """Step 1: the invalidations this snapshot sees become dirty periods."""
        with self.conn.transaction():
            self.lock()
            rows = self.conn.execute(
                sql.query("event_invalidations_read"), {"limit": MAX_INVALIDATIONS}
            ).fetchall()
            if not rows:
                return
            ids = [row[0] for row in rows]
            flags: dict[datetime, tuple[bool, bool]] = {}
            for _, hour, totals, states in rows:
                before = flags.get(hour, (False, False))
                flags[hour] = (before[0] or totals, before[1] or states)
            hours = sorted(flags)
            kinds = [kind for kind, types in SCHEDULED.items() for _ in types]
            types = [t for _, ts in SCHEDULED.items() for t in ts]
            self.conn.execute(
                sql.query("tracked_periods_dirty"),
                {"hours": hours, "kinds": kinds, "types": types},
            )
            self.conn.execute(
                sql.query("tracked_periods_redirty"),
                {
                    "hours": hours,
                    "totals": [flags[h][0] for h in hours],
                    "states": [flags[h][1] for h in hours],
                },
            )
            self.conn.execute(sql.query("event_invalidations_delete"), {"ids": ids})
            report.invalidations += len(ids)

    def track(
        self, kind: str, period_type: str, start: datetime, end: datetime, report: TrackReport
    ) -> None:
        """Materialise one kind for one period (inside the caller's transaction)."""
        row = self.conn.execute(
            self.statements[kind],
            {
                "period_type": period_type,
                "start": start,
                "end": end,
                "before": previous_start(period_type, start),
            },
        ).fetchone()
        assert row is not None
        report.rows[kind] += row[0]
        report.rows_changed += row[1]
        self.conn.execute(
            sql.query("tracked_period_clean"),
            {"kind": kind, "period_type": period_type, "start": start, "end": end},
        )

    def dirty(self, limit: int) -> list[tuple[str, str, datetime, datetime]]:
        rows = self.conn.execute(
            sql.query("tracked_periods_due"), {"grace": TRACK_GRACE, "limit": limit}
        ).fetchall()
        return [(kind, period_type, start, end) for kind, period_type, start, end in rows]


def track_invalidated(
    url: str, progress: Callable[[int], None] = lambda _: None, budget_s: float = TRACK_BUDGET_S
) -> TrackReport:
    """The scheduled job: claim invalidations, then track the closed dirty periods, oldest
    first, for at most `budget_s` (the scheduler runs its jobs one after the other)."""
    report = TrackReport()
    with connect_sync(url, "astraeus-track", autocommit=True) as conn:
        tracker = Tracker(conn)
        tracker.claim(report)
        seen: set[tuple[str, datetime]] = set()
        deadline = time.monotonic() + budget_s
        for kind, period_type, start, end in tracker.dirty(MAX_PERIODS_PER_RUN):
            if time.monotonic() > deadline:
                break  # the rest stays dirty for the next run; other jobs wait meanwhile
            with conn.transaction():
                tracker.lock()
                tracker.track(kind, period_type, start, end, report)
            seen.add((period_type, start))
            progress(1)
        report.periods = len(seen)
    return report


def batch_track(
    url: str,
    period_type: str,
    start: datetime,
    end: datetime,
    progress: Callable[[int], None] = lambda _: None,
    **connect: Any,
) -> TrackReport:
    """Track every kind for every period of `period_type` overlapping [start, end) that closed
    at least TRACK_GRACE ago; periods still open (or within the grace) are counted, not
    tracked: the API computes them from raw events. `connect`: connect_sync's options (an API
    request's bound)."""
    report = TrackReport()
    with connect_sync(url, "astraeus-track", autocommit=True, **connect) as conn:
        tracker = Tracker(conn)
        tracker.claim(report)
        (now,) = conn.execute(sql.query("database_now")).fetchone() or (datetime.now(UTC),)
        for lo, hi in spanning(period_type, start, end):
            if hi + TRACK_GRACE > now:
                report.open_periods_skipped += 1
                continue
            with conn.transaction():
                tracker.lock()
                for kind in KINDS:
                    tracker.track(kind, period_type, lo, hi, report)
            report.periods += 1
            progress(1)
    return report


def periods_in(period_type: str, start: datetime, end: datetime) -> int:
    return len(spanning(period_type, start, end))
