"""The bytes budget of ingest: request bodies admitted and not yet answered, per process.

Every ingest request (metric records and batches, platform events) takes its share of
INGEST_QUEUE_MAX_BYTES from its declared Content-Length before its body is read, and gives it
back once answered; a request whose declared size does not fit is answered 429 at once, so a
refusal under overload costs a header check, not a read and a decode, and what ingest holds in
memory stays bounded whatever the clients send. Into an empty budget any size is let in (the
body limits bound it), so that no request is refused for ever.

When the budget empties after a burst that filled at least half of it, `on_drained` is called:
the server then hands the burst's memory back to the system (core/memory.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from core.errors import ApiError

log = logging.getLogger("astraeus.ingest")


class QueueFull(ApiError):
    status = 429
    code = "ingest_queue_full"
    default_message = "The server is taking in more events than it can store; retry shortly."


class Ticket:
    """A request's share of the budget, held from admission until it is answered."""

    def __init__(self, budget: ByteBudget, size: int) -> None:
        self.budget = budget
        self.size = size
        budget._add(size)

    def resize(self, size: int) -> None:
        """The real size, once the body is read (a chunked body declares none; gzip inflates)."""
        self.budget._add(size - self.size)
        self.size = size

    def release(self) -> None:
        self.budget._add(-self.size)
        self.size = 0

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class ByteBudget:
    def __init__(self, max_bytes: int, on_drained: Callable[[], None] = lambda: None) -> None:
        self.max_bytes = max_bytes
        self.on_drained = on_drained
        self._held = 0
        self._peak = 0  # the most held since the budget was last empty

    @property
    def held(self) -> int:
        return self._held

    def fits(self, declared: int | None) -> bool:
        return not self._held or self._held + (declared or 0) <= self.max_bytes

    def admit(self, declared: int | None) -> Ticket:
        """A ticket for `declared` bytes (None: counted once read), or 429 at once."""
        if not self.fits(declared):
            raise QueueFull(headers={"Retry-After": "1"})
        return Ticket(self, declared or 0)

    def _add(self, delta: int) -> None:
        self._held += delta
        if self._held > self._peak:
            self._peak = self._held
        elif self._held == 0:
            drained, self._peak = 2 * self._peak >= self.max_bytes, 0
            if drained:
                try:
                    self.on_drained()
                except Exception:  # housekeeping: never the answer of the request that ended it
                    log.exception("the after-burst callback failed")
