"""Structured logs and request ids."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
from starlette.testclient import TestClient

from core.logs import AccessLog, JsonFormatter, RequestIdFilter, request_id


def test_every_response_carries_a_request_id(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="astraeus.access"):
        given = client.get("/healthz", headers={"X-Request-ID": "trace-42"})
        fresh = client.get("/healthz")
        hostile = client.get("/healthz", headers={"X-Request-ID": 'a b"{}'})

    assert given.headers["x-request-id"] == "trace-42"
    assert len(fresh.headers["x-request-id"]) == 32
    assert hostile.headers["x-request-id"] != 'a b"{}'  # not echoed: a new id instead
    first = next(r for r in caplog.records if r.name == "astraeus.access")
    assert (first.request_id, first.status, first.path) == ("trace-42", 200, "/healthz")  # type: ignore[attr-defined]


def test_json_lines_hold_the_request_id_and_the_exception() -> None:
    record = logging.LogRecord(
        "astraeus.x", logging.ERROR, __file__, 1, "failed %s", ("here",), None
    )
    token = request_id.set("r-1")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id.reset(token)
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()

    line = json.loads(JsonFormatter().format(record))

    assert (line["level"], line["logger"], line["message"], line["request_id"]) == (
        "error",
        "astraeus.x",
        "failed here",
        "r-1",
    )
    assert "ValueError: boom" in line["exception"]


def test_the_server_logs_json_when_not_on_a_terminal() -> None:
    code = (
        "import logging; from core import logs; logs.configure('info'); "
        "logging.getLogger('astraeus.t').info('hello')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    assert json.loads(done.stderr.strip())["message"] == "hello"


def test_the_access_line_is_the_same_json_whichever_way_it_is_made() -> None:
    # The direct path (only our JSON handler listening) and logging's own path (a filter added,
    # as any extra set-up does) must write the same line, newline in the path included.
    code = (
        "import logging; from core import logs; logs.configure('info', 'json'); "
        "a = logs.AccessLog(); a('POST', '/a\\nb', 201, 1.23456, 'rid-1'); "
        "logging.getLogger('astraeus.access').addFilter(lambda r: True); "
        "a('POST', '/a\\nb', 201, 1.23456, 'rid-1'); logs.flush()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    direct, through_logging = (json.loads(line) for line in done.stderr.splitlines())
    assert direct["time"][:16] == through_logging["time"][:16]  # same minute, same format
    assert len(direct["time"]) == len(through_logging["time"])
    del direct["time"], through_logging["time"]
    assert (
        direct
        == through_logging
        == {
            "level": "info",
            "logger": "astraeus.access",
            "message": "POST /a\\nb 201 1.2 ms",
            "request_id": "rid-1",
            "method": "POST",
            "path": "/a\nb",
            "status": 201,
            "duration_ms": 1.235,
        }
    )


@pytest.mark.parametrize("now", [1_700_000_000.9999996, 1_700_000_000.0009996, 1_700_000_000.25])
def test_the_access_line_time_is_the_formatters_to_the_millisecond(
    now: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = logging.LogRecord("astraeus.access", logging.INFO, __file__, 1, "x", (), None)
    record.created = now
    expected = json.loads(JsonFormatter().format(record))["time"]
    monkeypatch.setattr("core.logs.time.time", lambda: now)

    assert AccessLog()._time() == expected
