"""Memory after a burst: what ingest held is let go once answered, and handed back to the OS."""

from __future__ import annotations

import gc
import sys
from typing import Any

import msgspec
import psycopg
import pytest

from core.memory import configure_malloc, release_free_memory, resident_bytes
from ingest.budget import ByteBudget, QueueFull
from ingest.validate import Batch
from tests.support import BATCH, count, event, make_client, wait_for


def live_batches() -> int:
    return sum(isinstance(o, Batch) for o in gc.get_objects())


def test_a_committed_batch_is_not_kept_once_answered(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    body = msgspec.json.encode([event(i, tags={"pad": "z" * 100}) for i in range(2000)])
    with make_client(db_url, INGEST_WRITERS="1") as client:
        response = client.post(BATCH, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 200
        # Nothing else arrives: the writer waits for more, and must not wait holding this one
        # (2,000 decoded events and, through their tags, the whole body).
        wait_for(lambda: live_batches() == 0, timeout=5)
    assert count(db) == 2000


def test_the_burst_is_handed_back_once_the_budget_drains() -> None:
    """The release runs when a burst that filled at least half the budget is over, not after
    every small request, and not while anything is still held."""
    drained: list[int] = []
    budget = ByteBudget(1000, on_drained=lambda: drained.append(budget.held))
    with budget.admit(100), budget.admit(200):
        pass
    assert drained == []  # a small burst: nothing to hand back
    first, second = budget.admit(400), budget.admit(None)
    second.resize(300)  # a chunked body, counted once read
    first.release()
    assert drained == []  # still holding the second
    second.release()
    assert drained == [0]
    with pytest.raises(QueueFull), budget.admit(900), budget.admit(200):
        pass
    assert drained == [0, 0]  # the refused request held nothing; the burst's end still counts


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or release_free_memory() is False,
    reason="malloc_trim is glibc's",
)
def test_releasing_free_memory_lowers_the_resident_size() -> None:
    """What a burst freed in glibc's heap goes back to the system, even with a few live
    allocations above it (which keep glibc from trimming the heap by itself)."""
    release_free_memory()
    kept, burst = [], [bytes(2000) for _ in range(40_000)]  # 80 MB, in the heap (< mmap size)
    for i in range(0, len(burst), 1000):
        kept.append(burst[i])
    before = resident_bytes()
    del burst
    freed = resident_bytes()
    assert release_free_memory()
    after = resident_bytes()
    assert before - freed < 20 * 2**20  # freed, but kept by the process
    assert freed - after > 50 * 2**20  # handed back
    assert len(kept) == 40


@pytest.mark.skipif(not configure_malloc(), reason="mallopt is glibc's")
def test_request_sized_blocks_go_back_to_the_system_when_freed() -> None:
    """Blocks the size of request bodies get pages of their own, returned as soon as they are
    freed, instead of staying in the heap once glibc has raised its threshold past them."""
    first = bytearray(2 * 1024 * 1024)
    del first  # one freed already, as after a server's first large request
    pinned, bodies = [], []
    for _ in range(60):
        bodies.append(bytearray(1024 * 1024))  # touched: resident
        pinned.append(bytes(3000))  # small blocks after each, in the heap
    held = resident_bytes()
    del bodies
    assert held - resident_bytes() > 50 * 2**20
    assert len(pinned) == 60
