"""`GroupCommit`: concurrent writes batched into one store call, each caller awaiting its own.

A batch goes out when it holds ``max_size`` items or its first item has waited ``max_delay``;
one batch is written at a time, so under load batches grow instead of calls multiplying.
Writers that share a ``turn`` lock take turns at the store: it is fastest with one write at a
time (concurrent writes cost it more CPU per document), and each batch is taken only when its
turn comes, so it holds everything that arrived meanwhile. This is the service's one batcher:
whatever sits in front of it (the façade's link, `SendEvents`) sends as soon as it can, and
each item is answered as soon as its batch is written. The queue is bounded: past
``max_pending`` waiting items a write is refused at once with `StoreUnavailable`
(back-pressure) instead of growing memory. Withdrawing a queued item costs the same whatever
the queue holds (the queue is a dict in arrival order). `close` writes what is queued.

Must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar

from prisme_core.errors import CoreError, StoreUnavailable
from prisme_core.metrics import BATCH_SIZE, FLUSH_SECONDS

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Batcher(Protocol):
    """Makes the `GroupCommit` called ``name`` over ``write``, configured and sharing a turn
    at the store with the others."""

    def __call__(
        self, name: str, write: Callable[[Sequence[T]], Awaitable[None]]
    ) -> GroupCommit[T]: ...


class GroupCommit(Generic[T]):
    def __init__(
        self,
        name: str,
        write: Callable[[Sequence[T]], Awaitable[None]],
        max_size: int,
        max_delay: float,
        max_pending: int,
        turn: asyncio.Lock | None = None,
    ) -> None:
        self.name = name
        self._turn = turn or asyncio.Lock()
        self._write = write
        self._max_size = max_size
        self._max_delay = max_delay
        self._max_pending = max_pending
        self._pending: dict[asyncio.Future[None], T] = {}
        """Queued items by their future, in arrival order."""
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name=f"group-commit-{self.name}")

    async def write(self, item: T) -> None:
        """Returns once ``item`` is stored; raises `StoreUnavailable` when it could not be."""
        done = self.submit(item)
        try:
            await done
        except asyncio.CancelledError:
            # The caller gave up (its deadline passed): if the item is still queued, it is not
            # written, so a 503 means "not stored". A batch already in flight cannot be undone.
            self.withdraw(done)
            raise

    def submit(self, item: T) -> asyncio.Future[None]:
        """Queues ``item``; the future resolves once it is stored, or fails with
        `StoreUnavailable`. Cancelling the future withdraws an item
        still queued."""
        if self._closing or self._task is None or self._loop is None:
            raise StoreUnavailable("the service is shutting down")
        if len(self._pending) >= self._max_pending:
            raise StoreUnavailable(f"{self.name} write queue is full")
        done = self._loop.create_future()  # asyncio.get_running_loop() calls getpid() each time
        self._pending[done] = item
        self._arrived.set()
        if len(self._pending) >= self._max_size:
            self._full.set()
        return done

    def withdraw(self, done: asyncio.Future[None]) -> None:
        """Drops the item of ``done`` if it is still queued; one already written stays."""
        self._pending.pop(done, None)
        done.cancel()

    async def _run(self) -> None:
        while not (self._closing and not self._pending):
            await self._arrived.wait()
            if len(self._pending) < self._max_size and not self._closing:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self._max_delay)
            async with self._turn:  # the batch is taken once the store is ours: it is bigger
                batch = list(itertools.islice(self._pending.items(), self._max_size))
                for done, _ in batch:
                    del self._pending[done]
                if len(self._pending) < self._max_size:
                    self._full.clear()
                if not self._pending and not self._closing:
                    self._arrived.clear()
                await self._flush(batch)

    async def _flush(self, batch: list[tuple[asyncio.Future[None], T]]) -> None:
        if not batch:
            return
        BATCH_SIZE.labels(self.name).observe(len(batch))
        started = time.perf_counter()
        try:
            await self._write([item for _, item in batch])
        except CoreError as error:
            outcome: BaseException | None = error
        except Exception as error:  # an adapter bug must fail the callers, not hang them
            logger.exception("%s batch write failed", self.name)
            outcome = StoreUnavailable(f"{self.name} write failed: {error}")
        else:
            outcome = None
            FLUSH_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        for done, _ in batch:
            if done.done():
                continue
            if outcome is None:
                done.set_result(None)
            else:
                done.set_exception(outcome)
                done.exception()  # retrieved here: a caller that gave up must not log it

    async def flush(self) -> None:
        """Returns once everything queued now is written (or failed), without waiting for a
        batch to fill, and no batch is at the store."""
        queued = list(self._pending)
        if queued:
            self._full.set()
            await asyncio.wait(queued)
        async with self._turn:
            pass

    async def close(self) -> None:
        """Writes everything queued, then stops."""
        self._closing = True
        self._arrived.set()
        self._full.set()
        if self._task is not None:
            await self._task
            self._task = None
