"""Counting events, and logging refusals without one line each.

Every event is counted in ``prisme_events_total{kind,outcome}``. A refusal is also logged,
sampled: the first of each kind and reason in a `WINDOW` is logged with its message, and the
others of that window are summed up in one line when it closes. A flood of refusals costs a
counter increment each, and a few lines per window.

Must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter as Tally
from collections.abc import Callable
from typing import Final

from prometheus_client import Counter

from prisme_core.errors import CoreError
from prisme_core.metrics import EVENTS

logger = logging.getLogger(__name__)

WINDOW: Final = 10.0
"""Seconds of one sampling window."""
MAX_MESSAGE: Final = 200
"""Longest message logged; an echoed value may be anything a client sent."""


class RefusalLog:
    def __init__(self, window: float = WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._clock = clock
        self._opened = -window
        self._suppressed: Tally[tuple[str, str]] = Tally()
        self._seen: set[tuple[str, str]] = set()
        self._closing: asyncio.TimerHandle | None = None

    def note(self, kind: str, error: CoreError) -> None:
        if self._clock() - self._opened >= self._window:
            self.close_window()
        key = (kind, error.reason.value)
        if key in self._seen:
            self._suppressed[key] += 1
            return
        self._seen.add(key)
        logger.info("%s refused: %s (%s)", kind, error.reason, error.message[:MAX_MESSAGE])
        if self._closing is None:  # the summary is logged when the window closes
            loop = asyncio.get_running_loop()
            self._closing = loop.call_later(self._window, self.close_window)

    def close_window(self) -> None:
        """Logs what the window suppressed, and opens the next."""
        if self._closing is not None:
            self._closing.cancel()
            self._closing = None
        self._opened = self._clock()
        if self._suppressed:
            summary = ", ".join(f"{k}/{r}={n}" for (k, r), n in sorted(self._suppressed.items()))
            logger.info("also refused in the last %gs: %s", self._window, summary)
        self._suppressed.clear()
        self._seen.clear()


REFUSALS: Final = RefusalLog()


def count_event(kind: str, error: CoreError | None) -> None:
    """Counts one event of ``kind``: accepted when ``error`` is None, else refused."""
    if error is None:
        _events(kind, "accepted").inc()
        return
    _events(kind, error.reason.lower()).inc()
    REFUSALS.note(kind, error)


@functools.cache
def _events(kind: str, outcome: str) -> Counter:
    """The series of one kind and outcome (a bounded set: both are ours)."""
    return EVENTS.labels(kind, outcome)
