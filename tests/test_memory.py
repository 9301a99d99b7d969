"""Memory after a burst: what ingest held is let go once answered, and handed back to the OS."""

from __future__ import annotations

import gc
from typing import Any

import msgspec
import psycopg

from ingest.validate import Batch
from tests.conftest import make_client
from tests.test_group_commit import BATCH, count, event, wait_for


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
