"""The one bridge from trio handlers to the blocking client library.

pyfuse3 runs every handler as a trio task in one thread: a blocking gRPC call there would stall
the whole mount. Calls go to worker threads instead; the client library bounds every wait, so a
thread never hangs forever.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import trio

T = TypeVar("T")

# Enough for a few uploads, reads and metadata calls at once, bounded so a stuck cluster cannot
# pile up threads.
_LIMITER = trio.CapacityLimiter(32)


async def run(fn: Callable[..., T], *args: object) -> T:
    return await trio.to_thread.run_sync(fn, *args, limiter=_LIMITER)
