"""Memory handed back to the operating system once a burst of ingest is over.

Under overload ingest holds a full bytes budget of bodies and their decoded events at once
(INGEST_QUEUE_MAX_BYTES of bodies, about three times that in Python objects). Freed, none of it
goes back to the system by itself: glibc keeps the freed heap memory of its arenas for reuse
(it trims the heap only from its top, and a few live allocations sit above the freed ones), and
the interpreter's free lists keep blocks scattered over the small-object arenas the burst
created, so those arenas can never be released. Measured after a 2x overload: RSS 73 MB before,
169 MB after and 10 s later, of which 49 MB free in glibc's heap. `release_free_memory` clears
the free lists (a full collection, cheap with the startup objects frozen) and calls glibc's
`malloc_trim(0)`, which hands back every free page of every arena (main heap, and the
scheduler's and log writer's thread arenas).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import math
import os
import time
from collections.abc import Callable

log = logging.getLogger("astraeus.memory")

# The least time between two releases: a release costs a few milliseconds, and memory handed
# back is faulted in again by the next burst.
RELEASE_EVERY_S = 10.0


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim  # glibc only: musl and macOS have none
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_trim = _malloc_trim()


def resident_bytes() -> int:
    """This process's resident set size (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def release_free_memory() -> bool:
    """Hands the process's free memory back to the system; False where malloc_trim is missing."""
    gc.collect()
    if _trim is None:
        return False
    _trim(0)
    return True


class AfterBursts:
    """`release_free_memory` once a burst has drained, at most every RELEASE_EVERY_S, run just
    after the answer that ended the burst has been sent (from the event loop's next turn)."""

    def __init__(self, every_s: float = RELEASE_EVERY_S) -> None:
        self.every_s = every_s
        self.releases = 0
        self._last = -math.inf

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last < self.every_s:
            return
        self._last = now
        asyncio.get_running_loop().call_soon(self.release)

    def release(self) -> None:
        before = resident_bytes()
        started = time.perf_counter()
        if release_free_memory():
            self.releases += 1
            log.info(
                "ingest burst over: memory handed back to the system, RSS %.0f -> %.0f MB "
                "in %.1f ms",
                before / 2**20,
                resident_bytes() / 2**20,
                (time.perf_counter() - started) * 1e3,
            )
