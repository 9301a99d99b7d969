"""What used to hold up every request in flight on the record path: a write of a log line to a
stderr nobody was reading, and the periodic reload of the key table."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg

from tests.support import RECORD, event, make_client, wait_for

LOGGING_PROGRAM = """
import logging, sys, time
from core import logs
logs.configure("info", "json")
for n in range(20_000):
    logging.getLogger("astraeus.access").info("POST /api/v1/analytics/metrics/record %d", n)
print("logged", flush=True)
sys.stdin.readline()  # the parent reads stderr from here on
time.sleep(1)  # the waiting lines are written meanwhile
logging.getLogger("astraeus.t").info("last line")
"""


def test_a_stderr_nobody_reads_does_not_block_the_code_that_logs() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", LOGGING_PROGRAM],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        said: list[bytes] = []
        reader = threading.Thread(target=lambda: said.append(child.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(60)  # with the writes on the logging thread: at once; before, never
        logged = said == [b"logged\n"]
        _, err = child.communicate(b"go\n", timeout=60)
    finally:
        child.kill()
    assert logged, "logging blocked on a full stderr pipe"
    lines = err.decode().splitlines()
    assert lines[0].startswith('{"time"')  # what was written is whole lines
    assert '"message":"last line"' in lines[-2]
    assert "log line(s) dropped: stderr was not read fast enough" in lines[-1]


def test_a_known_key_is_served_while_the_periodic_key_reload_waits(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    with make_client(db_url, AUTH_CACHE_S="1") as client:
        assert client.post(RECORD, json=event(1)).status_code == 200
        table = client.app.state.keys  # type: ignore[attr-defined]
        with psycopg.connect(db_url) as holder, ThreadPoolExecutor(max_workers=1) as pool:
            holder.execute("LOCK TABLE analytics.api_keys IN ACCESS EXCLUSIVE MODE")
            wait_for(lambda: table.loaded_at + 1 < time.monotonic())
            answer = pool.submit(client.post, RECORD, json=event(2)).result(timeout=30)
            reload_still_waiting = table.flight is not None
            holder.rollback()

    assert answer.status_code == 200
    assert reload_still_waiting  # answered from the table it had, not after the reload
