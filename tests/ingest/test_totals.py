"""Groups of running totals take turns by series (ingest/totals.py, `turn`): a group waits for
the groups taken before it that hold any of its series, and for no other. The end-to-end
effect (shards of one sender at once, every increase right) is in test_remote_write.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from ingest import totals
from ingest.validate import Batch
from ingest.wire import MetricEvent

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def running(*series: int) -> Batch:
    """A batch of one running total for each of `series` (tag set ids of one counter)."""
    events = [MetricEvent("c", 1.0, "counter") for _ in series]
    keys = [("c", "counter", tag_set) for tag_set in series]
    batch = Batch(events, [NOW] * len(events), keys, NOW, NOW)
    return totals.mark(batch, dict.fromkeys(range(len(events))))


async def _turns(groups: list[Batch]) -> list[str]:
    """Enter each group's turn in order, each held until released: what entered, in order."""
    memory = totals.RunningTotals()
    log: list[str] = []
    release = [asyncio.Event() for _ in groups]

    async def group(number: int) -> None:
        async with memory.turn([groups[number]]):
            log.append(f"in {number}")
            await release[number].wait()
            log.append(f"out {number}")

    tasks = []
    for number in range(len(groups)):
        tasks.append(asyncio.create_task(group(number)))
        await asyncio.sleep(0)  # the task takes its place in line before the next one starts
    await asyncio.sleep(0.01)
    for event in release:
        event.set()
        await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    assert memory._holders == {}  # nothing left held
    return log


def test_a_group_waits_for_an_earlier_one_holding_any_of_its_series() -> None:
    log = asyncio.run(_turns([running(1, 2), running(2, 3), running(3)]))
    assert log == ["in 0", "out 0", "in 1", "out 1", "in 2", "out 2"]


def test_groups_of_other_series_go_at_once() -> None:
    log = asyncio.run(_turns([running(1), running(2), running(3, 4)]))
    assert log[:3] == ["in 0", "in 1", "in 2"]


def test_a_group_without_running_totals_waits_for_nobody() -> None:
    plain = Batch([MetricEvent("g", 1.0, "gauge")], [NOW], [("g", "gauge", 1)], NOW, NOW)
    log = asyncio.run(_turns([running(1), plain, running(1)]))
    assert log[:2] == ["in 0", "in 1"]
    assert log.index("in 2") > log.index("out 0")
