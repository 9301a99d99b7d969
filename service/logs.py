"""Logging: one line per record, JSON when stderr is not a terminal (LOG_FORMAT), each with the
request id of the request it belongs to.

The request id is the client's `X-Request-ID` when it is a sane token, else a new one; it is
sent back in the response's `X-Request-ID` and kept in a context variable for the request's
task, so that every line logged while serving it carries it.
"""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

import msgspec

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
SANE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
EXTRAS = ("method", "path", "status", "duration_ms")


class RequestIdFilter(logging.Filter):
    """Puts the current request id (or None) on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = getattr(record, "request_id", None) or request_id.get()
        record.request_id = rid
        record.request_tag = f" [{rid}]" if rid else ""
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            body["request_id"] = rid
        for name in EXTRAS:
            if hasattr(record, name):
                body[name] = getattr(record, name)
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return msgspec.json.encode(body).decode()


def configure(level: str, log_format: str = "auto") -> None:
    """Route every logger (uvicorn's too) through one handler on stderr."""
    json_lines = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        JsonFormatter()
        if json_lines
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
