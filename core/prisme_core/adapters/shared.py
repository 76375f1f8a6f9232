"""`Shared`: an answer computed once for every caller that asks for it while it runs, and kept
for a moment while nothing was written.

A dashboard asks several routes that one pass over the store answers, and asks again a query
that ran past its deadline. The computation goes on when the caller that started it stops
waiting (its deadline): the next caller gets it, or the same answer as long as the store's
write count has not moved. Without a write count, only running computations are shared.

Must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar, cast

T = TypeVar("T")


class Shared:
    def __init__(
        self, writes: Callable[[], int] | None, kept_for: float = 10.0, kept: int = 32
    ) -> None:
        self._writes = writes
        self._kept_for = kept_for
        self._most = kept
        self._kept: dict[Hashable, tuple[float, int, Any]] = {}
        """Finished answers: when, the write count before they began, the answer."""
        self._running: dict[Hashable, asyncio.Future[Any]] = {}

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
        kept = self._kept.get(key)
        if (
            kept is not None
            and self._writes is not None
            and kept[1] == self._writes()
            and time.monotonic() - kept[0] < self._kept_for
        ):
            return cast(T, kept[2])
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(self._run(key, compute))
            self._running[key] = running
            running.add_done_callback(functools.partial(self._done, key))
        return cast(T, await asyncio.shield(running))

    async def _run(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
        written = self._writes() if self._writes is not None else 0
        answer = await compute()
        self._kept[key] = (time.monotonic(), written, answer)
        while len(self._kept) > self._most:
            self._kept.pop(next(iter(self._kept)))
        return answer

    def _done(self, key: Hashable, done: asyncio.Future[Any]) -> None:
        self._running.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved: a failure is its callers' to report, not the loop's
