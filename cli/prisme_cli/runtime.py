"""The process runtime shared by ``prisme serve`` and ``prisme core``: uvloop, a GC tuned for
a long-running server, and an allocator that gives large buffers back.

The collector's defaults suit short scripts. Here, every request allocates a few hundred
short-lived objects, and the process holds large long-lived tables (user-agent and GeoIP
data, protobuf descriptors, caches), so frequent full collections re-scan the same objects.
Once the service has started, what exists is frozen out of collection and the young
generation is collected less often: the same garbage is reclaimed, at a fraction of the cost.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")

# Young-generation threshold, and how many young (then middle) collections trigger the next
# generation's. CPython's defaults are (700, 10, 10).
GC_THRESHOLDS = (20_000, 20, 100)


M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 * 1024
"""glibc raises its mmap threshold after freeing a large block, so the buffers of large gRPC
messages (up to PRISME_GRPC_MAX_MESSAGE_BYTES each, a few copies per message) would stay in
the heap for good. A fixed threshold gives every block over 64 KiB back to the system when it
is freed, so memory after a burst of large messages returns to where it was
(docs/performance.md, "Measured choices")."""


def tune_allocator() -> None:
    """Fixes glibc's mmap threshold (no-op on other C libraries)."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def run(main: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def stop_signals() -> asyncio.Event:
    """An event set on SIGTERM or Ctrl-C, from now on (installed before a process listens, so
    a stop asked during its start is a clean stop too)."""
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    return stopped


def settle_gc() -> None:
    """Called once the service has started: freezes what exists, collects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
