"""The CPU-heavy steps of big batches (decoding, validation, partial aggregates) on a thread of
their own, so that the event loop keeps answering queries and small requests meanwhile.

Each step holds the GIL as it runs, 5 to 12 ms for a batch of 5,000 events. On the event
loop, a query waited behind every such step queued before its own turn (at 80% of ingest
capacity, 24-hour statistics answered in 100 ms at the median, of which 5 ms in the database).
On a thread, the steps take the same CPU, but the loop gets the GIL back every
`sys.getswitchinterval()` (set to 1 ms by `python -m service`; Python's default is 5). One
thread: Python runs on one core whatever the number of threads, so more would add contention,
not throughput. Small batches run inline (a hop to the thread and back costs about 0.1 ms).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import ParamSpec, TypeVar

EVENTS = 500  # batches of fewer events are handled on the event loop
BODY_BYTES = 64 * 1024  # likewise bodies of fewer bytes, for decoding

_P = ParamSpec("_P")
_T = TypeVar("_T")
_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="astraeus-ingest")


async def run(big: bool, function: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """`function(*args, **kwargs)`: on the ingest thread, awaited from the event loop, when the
    work is `big` (past EVENTS or BODY_BYTES); inline otherwise."""
    if not big:
        return function(*args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(
        _thread, partial(function, *args, **kwargs)
    )
