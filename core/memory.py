"""Memory handed back to the operating system once a burst of ingest is over.

Under overload ingest holds a full bytes budget of bodies and their decoded events at once
(INGEST_QUEUE_MAX_BYTES of bodies, about three times that in Python objects). Freed, it does
not go back to the system by itself. Measured after a 2x overload (RSS 73 MB before, 169 MB
after and 10 s later):

- glibc's main heap: 61 MB, of which 49 MB free. glibc raises its mmap threshold the first time
  a large block is freed, so request bodies (about 1 MB a batch) land in the heap, which glibc
  trims only from its top (2 KB free there). `configure_malloc` pins the threshold, so bodies
  get pages of their own, unmapped when freed (heap 27 MB after the burst, 15 MB free), and
  `release_free_memory` (malloc_trim) hands the rest back, page by page, in every arena;
- the interpreter's small-object arenas: 86 against 31 before, for the same 23.8 MB of live
  objects. An arena (1 MiB) is freed only once empty, and a few long-lived objects created
  during the burst (timers, a new connection, response headers) keep most from emptying.
  Nothing short of PYTHONMALLOC=malloc gets that back (docs/ingest.md, "Memory after a burst").
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import threading
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


# mallopt parameters (malloc.h).
M_MMAP_THRESHOLD = -3
# Allocations from this size on get pages of their own, unmapped when freed: request bodies
# (a batch of 5,000 events is about 1 MB) and their chunk lists never sit in the heap.
# Setting it also stops glibc from raising it on its own (to 32 MiB), which it does the first
# time such a block is freed, after which every body landed in the heap and stayed there.
MMAP_THRESHOLD = 256 * 1024


def configure_malloc() -> bool:
    """Sets glibc's mmap threshold (MMAP_THRESHOLD) for the process; False where not glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def release_free_memory() -> bool:
    """Hands the free pages of every malloc arena back to the system (malloc_trim); False where
    malloc_trim is missing (not glibc). Takes up to a few hundred milliseconds with a large,
    fragmented heap, during which the arena being trimmed is locked: run it off the event loop.
    """
    if _trim is None:
        return False
    _trim(0)
    return True


class AfterBursts:
    """`release_free_memory` once a burst has drained, at most every RELEASE_EVERY_S, in a
    thread started as the request that ended the burst gives back its share of the budget."""

    def __init__(self, every_s: float = RELEASE_EVERY_S) -> None:
        self.every_s = every_s
        self.releases = 0
        self._last = -math.inf

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last < self.every_s:
            return
        self._last = now
        # In a thread of its own: the loop goes on answering (ctypes releases the GIL), though
        # its own larger allocations wait for the main arena's lock while it is trimmed (~4 ms).
        threading.Thread(target=self.release, name="release-memory", daemon=True).start()

    def release(self) -> None:
        before = resident_bytes()
        started = time.perf_counter()
        if release_free_memory():
            self.releases += 1
            log.info(
                "ingest burst over: free memory handed back to the system, RSS %.0f -> %.0f MB "
                "in %.1f ms",
                before / 2**20,
                resident_bytes() / 2**20,
                (time.perf_counter() - started) * 1e3,
            )
