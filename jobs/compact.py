"""The compactor: what ingest committed, merged into the rollup tiers within about a second.

Every group commit writes its partial aggregates ("deltas", ingest/deltas.py) with its rows.
A round of the compactor, holding its advisory lock (one compactor at a time across replicas):

1. takes the committed deltas of each kind due (series, metric), a step of at most STEP_LIMIT
   at a time, each step one statement and so one transaction (compact_deltas): merged into the
   minute tier, and straight into the hourly and daily tiers for hours and days already folded;
2. folds every hour that closed FOLD_GRACE ago from its minute rows into the hourly tier, and
   every whole folded day into the daily tier, moving the watermarks in the same transaction.

The metric deltas are taken every round (`COMPACT_EVERY_MS`, 1 s), the series deltas every
`COMPACT_SERIES_EVERY_MS` (10 s). A minute row is rewritten whole (its sketch merged, its rank
keys recomputed) each time deltas reach it: per round, that is one row per metric but one per
series written to, so at 1,000 busy series merging every second cost the database more than
half a core, and every tenth second costs a tenth of that. Pending series deltas are cheap to
read (a query reads those of its own series, by index, a few keys each); pending metric deltas
carry the sketch of a whole group commit, and whole-metric queries read them all.

Queries add the deltas still pending to the tiers (one statement, one snapshot), so a delta is
counted exactly once whether a round has taken it or not, and a stopped compactor makes
queries slower (more pending rows), never wrong. The scheduler's host runs the loop in a
thread of its own (`serve`), besides the periodic jobs; `python -m jobs compact` runs a round
by hand and `python -m jobs refresh --start --end` rebuilds a range from raw events (`rebuild`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

import sql
from core.db import connect_sync
from jobs.scheduler import lock_key, one_line
from query.plan import DAY, HOUR, floor

log = logging.getLogger("astraeus.compact")

LOCK = lock_key("compact")
STEP_LIMIT = 50_000  # deltas taken per statement
# An hour is folded this long after it closes: a delta of it committed later still lands in
# the hourly tier directly (correct either way), but the fold then reads it from its minute.
FOLD_GRACE = timedelta(minutes=2)


@dataclass(frozen=True)
class Horizons:
    """How far back each minute tier is kept (RETENTION_SERIES_MINUTE_HOURS and
    RETENTION_MINUTE_HOURS): older minutes go only to the hourly and daily tiers."""

    series_minutes: timedelta = timedelta(hours=6)
    metric_minutes: timedelta = timedelta(hours=48)

    def of(self, kind: str) -> timedelta:
        return self.series_minutes if kind == "series" else self.metric_minutes


@dataclass
class CompactReport:
    deltas: int = 0
    events: int = 0
    hours_folded: int = 0
    days_folded: int = 0

    @property
    def detail(self) -> str:
        return (
            f"{self.deltas} delta(s) of {self.events} event(s) compacted, "
            f"{self.hours_folded} hour(s) and {self.days_folded} day(s) folded"
        )


def compact_round(
    conn: psycopg.Connection,
    horizons: Horizons = Horizons(),
    kinds: tuple[str, ...] = tuple(sql.TIER_KINDS),
) -> CompactReport | None:
    """One round on an autocommit connection, taking the deltas of `kinds`; None when another
    process holds the lock."""
    locked = conn.execute(sql.query("advisory_lock_try"), {"key": LOCK}).fetchone()
    if not locked or not locked[0]:
        return None
    try:
        return _round(conn, horizons, kinds)
    finally:
        with contextlib.suppress(psycopg.Error):
            conn.execute(sql.query("advisory_unlock"), {"key": LOCK})


def _marks(conn: psycopg.Connection) -> tuple[datetime, datetime, datetime]:
    row = conn.execute(sql.query("tier_watermarks")).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def _round(conn: psycopg.Connection, horizons: Horizons, kinds: tuple[str, ...]) -> CompactReport:
    report = CompactReport()
    hours, days, now = _marks(conn)
    taken = dict.fromkeys(kinds, 0)
    for kind in kinds:
        moved = conn.execute(
            sql.query("tier_minutes_from"),
            {"tier": f"{kind}_1m", "horizon": now - horizons.of(kind)},
        ).fetchone()
        assert moved is not None
        step = sql.tier_query("compact_deltas", kind)
        arguments = {
            "limit": STEP_LIMIT,
            "hour_mark": hours,
            "day_mark": days,
            "minutes_from": moved[0],
        }
        while True:
            row = conn.execute(step, arguments).fetchone()
            assert row is not None
            report.deltas += row[0]
            taken[kind] += row[1]
            if row[0] < STEP_LIMIT:
                break
    report.events = max(taken.values(), default=0)  # (each event is in a delta of each kind)
    closed = floor(now - FOLD_GRACE, HOUR)
    if closed > hours:
        _fold(conn, "fold_hours", "1h", hours, closed)
        report.hours_folded = int((closed - hours) / HOUR)
        hours = closed
    whole_days = floor(hours, DAY)
    if whole_days > days:
        _fold(conn, "fold_days", "1d", days, whole_days)
        report.days_folded = int((whole_days - days) / DAY)
    return report


def _fold(
    conn: psycopg.Connection, statement: str, tier: str, start: datetime, end: datetime
) -> None:
    """[start, end) of both kinds into the coarser tier, and its watermark moved to `end`,
    in one transaction."""
    with conn.transaction():
        for kind in sql.TIER_KINDS:
            conn.execute(sql.tier_query(statement, kind), {"start": start, "end": end})
        conn.execute(sql.query("tier_watermark_move"), {"tier": tier, "mark": end})


def compact(url: str, horizons: Horizons = Horizons()) -> CompactReport:
    """One round by hand (`python -m jobs refresh`), waiting for a round in flight elsewhere."""
    with connect_sync(url, "astraeus-compact", autocommit=True) as conn:
        while True:
            report = compact_round(conn, horizons)
            if report is not None:
                return report
            time.sleep(0.05)


def rebuild(
    url: str,
    start: datetime,
    end: datetime,
    on_day: Callable[[datetime, datetime, int], None] | None = None,
) -> int:
    """Recompute every tier over [start, end) from raw events, a day per transaction (see
    _analytics.rebuild_tiers); clamped to where raw events begin, since before that the tiers
    are all that is left. Returns the hourly rows written. Safe to interrupt and re-run."""
    written = 0
    with connect_sync(url, "astraeus-rebuild", autocommit=True) as conn:
        oldest = conn.execute(sql.query("oldest_raw_time")).fetchone()
        if oldest is None or oldest[0] is None:
            return 0
        cursor = max(floor(start, DAY), oldest[0])
        while cursor < end:
            step_end = min(floor(cursor, DAY) + DAY, end)
            # The lock first, then the snapshot: a compactor round in between would leave
            # this snapshot looking at deltas and tier rows the round has already changed.
            conn.execute(sql.query("advisory_lock"), {"key": LOCK})
            try:
                with conn.transaction():
                    conn.execute(sql.query("transaction_repeatable_read"))
                    row = conn.execute(
                        sql.query("tier_rebuild"), {"start": cursor, "end": step_end}
                    ).fetchone()
            finally:
                conn.execute(sql.query("advisory_unlock"), {"key": LOCK})
            rows = int(row[0]) if row and row[0] is not None else 0
            written += rows
            if on_day is not None:
                on_day(cursor, step_end, rows)
            cursor = step_end
    return written


class Compactor:
    """The compactor's loop: a round every `every`, until `stop` is set."""

    def __init__(
        self,
        url: str,
        every: timedelta,
        horizons: Horizons = Horizons(),
        stop: threading.Event | None = None,
        series_every: timedelta | None = None,
    ) -> None:
        self.url = url
        self.every = every.total_seconds()
        self.series_every = (series_every or every).total_seconds()
        self.horizons = horizons
        self.stop = stop or threading.Event()
        self._series_due = 0.0  # (monotonic) when the series deltas are taken next

    def kinds(self, now: float) -> tuple[str, ...]:
        """The kinds of deltas a round starting at `now` takes."""
        if now < self._series_due:
            return ("metric",)
        self._series_due = now + self.series_every
        return tuple(sql.TIER_KINDS)

    def serve(self) -> None:
        conn: psycopg.Connection | None = None
        log.info(
            "compactor started: a round every %g s, series deltas every %g s",
            self.every,
            self.series_every,
        )
        try:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    if conn is None or conn.closed or conn.broken:
                        conn = connect_sync(self.url, "astraeus-compact", autocommit=True)
                    report = compact_round(conn, self.horizons, self.kinds(started))
                    if report is not None and (report.hours_folded or report.days_folded):
                        log.info("compactor: %s", report.detail)
                except Exception as exc:  # (an outage, a standby, a schema not migrated yet)
                    log.warning("compactor round failed: %s", one_line(exc))
                    if conn is not None:
                        conn.close()
                    conn = None
                self.stop.wait(max(0.0, self.every - (time.monotonic() - started)))
        finally:
            if conn is not None:
                conn.close()
            log.info("compactor stopped")


def start_in_thread(compactor: Compactor) -> threading.Thread:
    thread = threading.Thread(target=compactor.serve, name="astraeus-compactor", daemon=True)
    thread.start()
    return thread
