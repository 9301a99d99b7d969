"""Logging: one line per record, JSON when stderr is not a terminal (LOG_FORMAT), each with the
request id of the request it belongs to.

The request id is the client's `X-Request-ID` when it is a sane token, else a new one; it is
sent back in the response's `X-Request-ID` and kept in a context variable for the request's
task, so that every line logged while serving it carries it.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import re
import signal
import sys
import threading
import time
from contextvars import ContextVar
from datetime import UTC, datetime

import msgspec

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
SANE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
EXTRAS = ("method", "path", "status", "duration_ms")
QUEUE_LINES = 10_000
FLUSH_S = 0.05
ACCESS = "astraeus.access"
_encode_line = msgspec.json.Encoder().encode


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


class BackgroundHandler(logging.Handler):
    """Formats each record where it is logged and leaves the write to stderr to a thread.

    A write to a pipe or a terminal blocks while its reader is slow (a busy terminal, a log
    collector flushing): done on the event loop, that would hold up every request in flight.
    The thread wakes every FLUSH_S and writes all the lines waiting in one write, rather than
    being woken for each line: at thousands of access-log lines a second, a wake-up per line
    meant as many hand-overs of the GIL, and the event loop paid for each. Past QUEUE_LINES
    lines waiting, further lines are dropped and counted, then reported.
    """

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self.addFilter(RequestIdFilter())
        self.lines: collections.deque[str] = collections.deque()
        self.dropped = 0
        self.stream = sys.stderr
        self.stopping = threading.Event()
        self.writer = threading.Thread(target=self._write_forever, name="log-writer", daemon=True)
        self.writer.start()
        atexit.register(self.stop)  # runs before logging's own shutdown: lines kept

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.put(line)

    def put(self, line: str) -> None:
        """Queue a formatted line for the thread to write."""
        if len(self.lines) >= QUEUE_LINES:
            self.dropped += 1
            return
        if self.dropped:
            line = f"{line}\n({self.dropped} log line(s) dropped: stderr was not read fast enough)"
            self.dropped = 0
        self.lines.append(line)  # deque appends and pops are atomic: no lock, no wake-up

    def _write_forever(self) -> None:
        while not self.stopping.wait(FLUSH_S):
            self._write_waiting()
        self._write_waiting()

    def _write_waiting(self) -> None:
        chunk = []
        while self.lines:
            chunk.append(self.lines.popleft())
        if chunk:
            with contextlib.suppress(OSError, ValueError):  # stderr closed: nowhere to say it
                self.stream.write("\n".join(chunk) + "\n")
                self.stream.flush()

    def stop(self) -> None:
        """Write out the lines waiting and end the thread (at most once)."""
        if not self.stopping.is_set():
            self.stopping.set()
            self.writer.join(5)


class AccessLog:
    """The access line of each request (logger astraeus.access, at info), made cheaply.

    Through `logging`, a line is a LogRecord, a caller lookup, a filter and a formatter: about
    35 us, a tenth of a single-event record request. When the line would only go to our own
    handler as JSON (a server not on a terminal, the usual case), it is made here directly:
    the same JSON, in a few microseconds. In any other set-up (a terminal, a handler or filter
    added, as pytest's caplog does), it goes through `logging` as any line does.
    """

    def __init__(self) -> None:
        self.logger = logging.getLogger(ACCESS)
        self.second = -1
        self.stamp = ""

    def __call__(self, method: str, path: str, status: int, ms: float, rid: str) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        shown = path.encode("unicode_escape").decode("ascii")  # one line, always
        fields = {  # in JsonFormatter's order: request_id, then EXTRAS
            "request_id": rid,
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round(ms, 3),
        }
        handler = self._direct()
        if handler is None:
            self.logger.info("%s %s %d %.1f ms", method, shown, status, ms, extra=fields)
            return
        line = _encode_line(
            {
                "time": self._time(),
                "level": "info",
                "logger": ACCESS,
                "message": f"{method} {shown} {status} {ms:.1f} ms",
                **fields,
            }
        ).decode()
        handler.acquire()  # as logging holds it around emit: the dropped count is shared
        try:
            handler.put(line)
        finally:
            handler.release()

    def _direct(self) -> BackgroundHandler | None:
        """Our JSON handler, when it is the only place the line would go."""
        logger = self.logger
        if logger.handlers or logger.filters or not logger.propagate:
            return None
        parent = logger.parent
        while parent is not None and parent is not logging.root:
            if parent.handlers or not parent.propagate:
                return None
            parent = parent.parent
        handlers = logging.root.handlers
        if len(handlers) != 1 or logging.root.filters:
            return None
        handler = handlers[0]
        if type(handler) is not BackgroundHandler or len(handler.filters) != 1:
            return None
        if type(handler.filters[0]) is not RequestIdFilter:  # a redaction filter, say
            return None
        if type(handler.formatter) is not JsonFormatter or handler.level > logging.INFO:
            return None
        return handler

    def _time(self) -> str:
        """Now as JsonFormatter writes it (UTC, milliseconds), the date part made once a second."""
        micros = round(time.time() * 1e6)  # datetime rounds to the microsecond, then truncates
        second, within = divmod(micros, 1_000_000)
        if second != self.second:
            self.second = second
            self.stamp = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self.stamp}.{within // 1000:03d}+00:00"


def configure(level: str, log_format: str = "auto") -> None:
    """Route every logger (uvicorn's too) through one handler on stderr, written by a thread."""
    json_lines = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    formatter = (
        JsonFormatter()
        if json_lines
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s")
    )
    root = logging.getLogger()
    for previous in root.handlers:
        if isinstance(previous, BackgroundHandler):
            previous.stop()
    root.handlers[:] = [BackgroundHandler(formatter)]
    root.setLevel(level.upper())


def flush() -> None:
    """Write out every line still waiting in the queue (and stop its thread)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, BackgroundHandler):
            handler.stop()


def flush_before_termination() -> None:
    """Keep the last lines on SIGTERM too.

    uvicorn shuts down gracefully on SIGTERM, then restores the handler it found and raises the
    signal again. With the default handler the process dies at once, atexit never runs, and the
    lines still queued for the writing thread ("Application shutdown complete", say) are lost.
    This handler is the one uvicorn finds: it writes them out, then dies of the signal as before.
    """

    def write_out_then_die(signum: int, frame: object) -> None:
        flush()
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    signal.signal(signal.SIGTERM, write_out_then_die)
