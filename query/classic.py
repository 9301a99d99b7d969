"""Prometheus classic histograms as distributions: the statistics and time series of a family
`x` whose `x_bucket{le="..."}` counters (and `x_sum`) arrived by remote write.

A classic histogram is not one series but one counter per bucket, each counting the
observations at or below its bound `le`, in requests of their own (a sender's shards split
them). Stored as counters (their increases, ingest/totals.py), they are put together when
asked for: the increase of each bucket over the window (or each time bucket) from the same
tiers as any counter's sum, summed over the series selected by bound (and by group_by), gives
the window's cumulative bucket counts; from those:

- `count` is the observations: the `+Inf` bucket's increase;
- `sum` the increase of `x_sum` over the same series, `avg` that over the count;
- p50/p95/p99 are Prometheus' `histogram_quantile` of the counts (linear within the bucket the
  rank falls in, the lowest bucket starting at 0, a rank in the `+Inf` bucket answered with the
  highest finite bound): what `histogram_quantile(0.95, sum by (le) (increase(x_bucket[w])))`
  gives, but over the increase stored, not extrapolated to the window's edges. The error is
  bounded by the width of the bucket the percentile falls in: the true value lies in it;
- `min` and `max` are null: buckets do not keep them.

`le` is the bound, not a selection: a `tag.le` filter or `group_by=le` is refused (400; one
bucket is its `_bucket` metric's, as a counter). `x_sum` is read series by series like the
buckets, so both answer the same window.

Asked for `x` itself, these answer when there is no metric named `x` but `x_bucket` is one;
`x_bucket` stays a counter of its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import asyncpg
import msgspec

from core.errors import NotFound
from core.params import Interval, Window, bad
from query.plan import Marks
from query.statistics import Owners, Selection, grouped, metric_and_marks, series
from query.statistics import answer as statistics_answer
from query.timeseries import PERCENTILES, check_points, series_rows
from query.timeseries import answer as series_answer

BUCKET, SUM, LE = "_bucket", "_sum", "le"
AGGREGATIONS = ("count", "rate", "sum", "avg", "p50", "p95", "p99")

Group = str | None
_group = msgspec.json.Decoder(tuple[str | None, str])


async def family(conn: asyncpg.Connection, name: str) -> tuple[asyncpg.Record, Marks]:
    """The `name_bucket` metric (and the tier marks) of the classic histogram family `name`;
    404 for `name` when there is none."""
    if not name.endswith(BUCKET):
        try:
            found, marks = await metric_and_marks(conn, name + BUCKET)
        except NotFound:
            pass
        else:
            if found["metric_type"] == "counter":
                return found, marks
    raise NotFound(f"No metric named {name!r} has been recorded.")


async def _buckets(
    conn: asyncpg.Connection, metric_id: int, selection: Selection
) -> tuple[Owners, dict[str, float]]:
    """The bucket series selected, each in the group (its group_by value, its `le`) that
    names it, and each `le` text's bound. Series whose `le` is no number are left out."""
    if LE in selection.filters or selection.group_by == LE:
        raise bad(
            "tag.le" if LE in selection.filters else "group_by",
            "le is a classic histogram's bucket bound: ask its _bucket metric for one bucket",
        )
    ids, les = await series(conn, metric_id, Selection(selection.filters, LE))
    group_of: dict[int, Group] = {}
    if selection.group_by is not None:  # by id: a series created since is in one list only
        group_of = dict(zip(*await series(conn, metric_id, selection), strict=True))
    bounds: dict[str, float] = {}
    kept: list[int] = []
    names: list[str | None] = []
    for series_id, le in zip(ids, les, strict=True):
        bound = _bound(le)
        if bound is None or le is None:
            continue
        if selection.group_by is not None and series_id not in group_of:
            continue
        group = group_of.get(series_id)
        bounds[le] = bound
        kept.append(series_id)
        names.append(msgspec.json.encode([group, le]).decode())
    return Owners("series", kept, names), bounds


def _bound(le: str | None) -> float | None:
    try:
        bound = float(le) if le is not None else math.nan
    except ValueError:
        return None
    return None if math.isnan(bound) else bound


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile (2.42, bucketQuantile) of (bound, cumulative count)
    pairs, or None where it answers NaN (no +Inf bucket, fewer than two, no observations)."""
    merged: dict[float, float] = {}
    for bound, count in buckets:
        merged[bound] = merged.get(bound, 0.0) + count
    ordered = sorted(merged.items())
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return None
    counts, highest = [], 0.0
    for _, count in ordered:  # a later bucket never counts fewer (sums of separate increases)
        highest = max(highest, count)
        counts.append(highest)
    observations = counts[-1]
    if observations == 0:
        return None
    rank = q * observations
    b = next(i for i, count in enumerate([*counts[:-1], math.inf]) if count >= rank)
    if b == len(ordered) - 1:
        return ordered[-2][0]
    if b == 0 and ordered[0][0] <= 0:
        return ordered[0][0]
    start, end, count = 0.0, ordered[b][0], counts[b]
    if b > 0:
        start = ordered[b - 1][0]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    return start + (end - start) * (rank / count)


def _distribution(
    buckets: list[tuple[float, float]], total: float | None, texts: dict[float, str] | None
) -> dict[str, Any]:
    """The statistics figures of one group's cumulative bucket counts (and x_sum's sum)."""
    infinite = [count for bound, count in buckets if math.isinf(bound) and bound > 0]
    count = int(sum(infinite)) if infinite else 0
    figures: dict[str, Any] = {
        "count": count,
        "avg": total / count if total is not None and count else None,
        "min": None,
        "max": None,
        "sum": total if count else None,
    }
    for name, q in PERCENTILES.items():
        figures[name] = quantile(q, buckets)
    if texts is not None:
        merged: dict[float, float] = {}
        for bound, n in buckets:
            merged[bound] = merged.get(bound, 0.0) + n
        figures["buckets"] = [{"le": texts[b], "count": int(n)} for b, n in sorted(merged.items())]
    return figures


def _by_group(
    rows: Iterable[asyncpg.Record], bounds: dict[str, float], figure: str
) -> dict[Group, list[tuple[float, float]]]:
    """(bound, figure) of each bucket row, by group_by value."""
    found: dict[Group, list[tuple[float, float]]] = {}
    for row in rows:
        group, le = _group.decode(row["grp"])
        found.setdefault(group, []).append((bounds[le], float(row[figure] or 0)))
    return found


async def _sums(
    conn: asyncpg.Connection, name: str, selection: Selection
) -> tuple[asyncpg.Record, Marks, Owners] | None:
    """The `x_sum` metric of the family, its marks and the series selected; None if none.
    Read series by series, as the buckets are: the same tiers, so the same window."""
    try:
        found, marks = await metric_and_marks(conn, name + SUM)
    except NotFound:
        return None
    return found, marks, Owners("series", *await series(conn, found["id"], selection))


async def statistics(
    conn: asyncpg.Connection,
    name: str,
    window: Window,
    selection: Selection,
    exact: bool,
    max_raw_rows: int | None = None,
) -> dict[str, Any]:
    """What query/statistics.py answers of a metric, for the classic histogram `name`, with
    each group's cumulative bucket counts (`buckets`, by `le` as sent)."""
    found, marks = await family(conn, name)
    read, bounds = await _buckets(conn, found["id"], selection)
    rows, answered = await grouped(
        conn, found["id"], marks, read, selection, window, exact, max_raw_rows
    )
    counts = _by_group(rows, bounds, "sum")
    totals: dict[Group, float] = {}
    sums = await _sums(conn, name, selection)
    if sums is not None:
        sum_metric, sum_marks, sum_read = sums
        for row in (
            await grouped(
                conn, sum_metric["id"], sum_marks, sum_read, selection, window, exact, max_raw_rows
            )
        )[0]:
            if row["count"]:
                totals[row["grp"]] = float(row["sum"])
    texts = {bound: le for le, bound in bounds.items()}
    by_group = {
        group: _distribution(buckets, totals.get(group), texts)
        for group, buckets in sorted(counts.items(), key=lambda item: str(item[0]))
    }
    empty = _distribution([], None, texts)
    return statistics_answer(name, selection, by_group, empty, answered, exact, histogram="classic")


async def time_series(
    conn: asyncpg.Connection,
    name: str,
    window: Window,
    selection: Selection,
    width: Interval,
    agg: str,
    max_raw_rows: int | None = None,
) -> dict[str, Any]:
    """What query/timeseries.py answers of a metric, for the classic histogram `name`: per
    time bucket, the observations (`count`, `rate` a second), `sum` and `avg` (of `x_sum`),
    or a percentile of that bucket's counts."""
    found, marks = await family(conn, name)
    if agg not in AGGREGATIONS:
        raise bad("agg", f"a classic histogram answers {', '.join(AGGREGATIONS)}; not {agg!r}")
    check_points(window, width)
    read, bounds = await _buckets(conn, found["id"], selection)
    rows, resolution, answered = await series_rows(
        conn, found["id"], marks, read, selection, window, width, "sum", max_raw_rows
    )
    cells: dict[tuple[Group, Any], list[tuple[float, float]]] = {}
    rates: dict[tuple[Group, Any], float] = {}
    for row in rows:
        group, le = _group.decode(row["grp"])
        bound = bounds[le]
        cells.setdefault((group, row["bucket"]), []).append((bound, float(row["sum"] or 0)))
        if math.isinf(bound) and bound > 0:
            rate = float(row["rate"] or 0) if row["count"] else 0.0
            rates[group, row["bucket"]] = rates.get((group, row["bucket"]), 0.0) + rate
    totals: dict[tuple[Group, Any], float | None] = {}
    if agg in ("sum", "avg") and (sums := await _sums(conn, name, selection)) is not None:
        sum_metric, sum_marks, sum_read = sums
        for row in (
            await series_rows(
                conn,
                sum_metric["id"],
                sum_marks,
                sum_read,
                selection,
                window,
                width,
                "sum",
                max_raw_rows,
            )
        )[0]:
            totals[row["grp"], row["bucket"]] = float(row["sum"]) if row["count"] else None
    by_group: dict[Group, list[dict[str, Any]]] = {}
    for (group, when), buckets in sorted(
        cells.items(), key=lambda item: (str(item[0][0]), item[0][1])
    ):
        if agg == "rate":
            point: Any = rates.get((group, when), 0.0)
        elif agg in PERCENTILES:
            point = quantile(PERCENTILES[agg], buckets)
        else:
            figures = _distribution(buckets, totals.get((group, when)), None)
            point = figures[agg]
        by_group.setdefault(group, []).append({"time": when, "value": point})
    return series_answer(
        name, selection, width, agg, resolution, answered, by_group, histogram="classic"
    )
