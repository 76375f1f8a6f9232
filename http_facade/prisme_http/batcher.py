"""`CoreBatcher`: concurrent HTTP requests travel to the core together, in batches over the
`CoreLink` stream (each handled as a `SendEvents` call would be).

One unary gRPC call per HTTP request costs more CPU than everything else a request does. The
batcher queues each event and sends queued events as one batch as soon as a slot is free (at
most ``max_in_flight`` batches unanswered, ``max_size`` events each): with no load an event
goes alone and at once; under load, events share batches and the core group-commits them.

A batch carries its share of the events in flight (queued or in batches): half of them, with
two slots. The core writes one batch's events while the other batch's answers travel and its
callers' next requests arrive, so the store does not wait for either; one batch carrying
everything would keep all requests in step, and the store idle while they travel. Two slots
is the measured best; with three, batches get smaller, their fixed costs add 10 % of CPU per
event, and p99 is 5 ms worse. Each event still gets its own result, and carries its HTTP
request id.

Must not import prisme_core.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import grpc
from prisme.v1 import event_service_pb2 as pb
from prisme_client import PrismeError

from prisme_http.link import CoreLink, core_late

GATHER_WAIT = 0.003
"""Longest a free slot waits for its share to be queued. The answers to one batch set off
their callers' next requests, which arrive over a few milliseconds: a batch that left with the
first of them would leave the others waiting for a slot (20 ms at p90 under the bench load,
against 3 ms with the wait)."""

Pending = tuple[pb.Event, asyncio.Future[PrismeError | None]]


class CoreBatcher:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        token: str | None,
        timeout: float,
        max_size: int = 256,
        max_in_flight: int = 2,
    ) -> None:
        self._link = CoreLink(channel, (("authorization", f"Bearer {token}"),) if token else ())
        self._timeout = timeout
        self._max_size = max_size
        self._max_in_flight = max_in_flight
        self._slots = asyncio.Semaphore(max_in_flight)
        self._pending: list[Pending] = []
        self._in_batches = 0
        self._arrived = asyncio.Event()
        self._share = 0
        self._gathered = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sending: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="core-batcher")

    async def send(self, event: pb.Event, within: float) -> PrismeError | None:
        """The core's answer for ``event``: None when stored, else why not. Past ``within``
        seconds the answer is DEADLINE_EXCEEDED, and an event still queued is not sent."""
        loop = self._loop or asyncio.get_running_loop()  # which calls getpid() each time
        done: asyncio.Future[PrismeError | None] = loop.create_future()
        entry = (event, done)
        self._pending.append(entry)
        self._arrived.set()
        if self._share and len(self._pending) >= self._share:
            self._gathered.set()
        timer = loop.call_later(within, self._expire, entry, within)
        try:
            return await done
        finally:
            timer.cancel()

    def _expire(self, entry: Pending, within: float) -> None:
        if entry[1].done():
            return
        if entry in self._pending:
            self._pending.remove(entry)
        entry[1].set_result(core_late(within))

    async def _run(self) -> None:
        while True:
            await self._arrived.wait()
            await self._slots.acquire()
            share = await self._gather()
            batch, self._pending = self._pending[:share], self._pending[share:]
            self._in_batches += len(batch)
            if not self._pending:
                self._arrived.clear()
            if not batch:
                self._slots.release()
                continue
            sending = asyncio.create_task(self._send(batch))
            self._sending.add(sending)
            sending.add_done_callback(self._sending.discard)

    async def _gather(self) -> int:
        """This batch's share of the events in flight, once queued or after `GATHER_WAIT`.
        Counted again after the wait: the events that arrived meanwhile are in flight too."""
        share = self._share_now()
        if len(self._pending) < share:
            self._share = share
            self._gathered.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._gathered.wait(), GATHER_WAIT)
            self._share = 0
        return self._share_now()

    def _share_now(self) -> int:
        """Half the events in flight (with two slots), at most ``max_size``."""
        in_flight = len(self._pending) + self._in_batches
        return min(-(-in_flight // self._max_in_flight), self._max_size)

    async def _send(self, batch: Sequence[Pending]) -> None:
        try:
            results = await self._link.exchange([event for event, _ in batch], self._timeout)
            for (_, done), result in zip(batch, results, strict=True):
                if not done.done():
                    done.set_result(result)
        finally:
            self._in_batches -= len(batch)
            self._slots.release()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        await self._link.close()
