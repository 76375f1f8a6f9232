"""`CoreBatcher`: concurrent HTTP requests travel to the core together, in `SendEvents` calls.

One unary gRPC call per HTTP request costs more CPU than everything else a request does. The
batcher queues each event and sends whatever has gathered as one call as soon as a call slot
is free (at most ``max_in_flight`` calls at a time, ``max_size`` events each): with no load an
event goes alone and at once; under load, events share calls and the core group-commits them.
Two calls in flight is the measured best: the core prepares one call's events while the
store writes the other's; with more, calls get smaller and their fixed cost dominates.
Each event still gets its own result, and carries its HTTP request id.

Must not import prisme_core.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import grpc
from prisme.v1 import event_service_pb2 as pb
from prisme_client import PrismeError, error_from_rpc, error_from_status

SEND_EVENTS = "/prisme.v1.EventService/SendEvents"

GATHER_TURNS = 2
"""Event-loop turns a free call slot waits before taking its batch: requests whose bytes have
arrived reach the queue within two (one to parse, one to run the handler), so calls carry the
whole burst that the previous call's answers set off, not its first few requests. Under load
this doubles the events per call and per store write."""

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
        self._call = channel.unary_unary(
            SEND_EVENTS,
            request_serializer=pb.SendEventsRequest.SerializeToString,
            response_deserializer=pb.SendEventsResponse.FromString,
        )
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout
        self._max_size = max_size
        self._slots = asyncio.Semaphore(max_in_flight)
        self._pending: list[Pending] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._calls: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="core-batcher")

    async def send(self, event: pb.Event, within: float) -> PrismeError | None:
        """The core's answer for ``event``: None when stored, else why not. Past ``within``
        seconds the answer is DEADLINE_EXCEEDED, and an event still queued is not sent."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[PrismeError | None] = loop.create_future()
        entry = (event, done)
        self._pending.append(entry)
        self._arrived.set()
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
        message = f"the core did not answer within {within:g}s"
        entry[1].set_result(
            PrismeError(grpc.StatusCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED", message)
        )

    async def _run(self) -> None:
        while True:
            await self._arrived.wait()
            await self._slots.acquire()
            for _ in range(GATHER_TURNS):
                await asyncio.sleep(0)
            batch, self._pending = self._pending[: self._max_size], self._pending[self._max_size :]
            if not self._pending:
                self._arrived.clear()
            if not batch:
                self._slots.release()
                continue
            call = asyncio.create_task(self._send(batch))
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)

    async def _send(self, batch: Sequence[Pending]) -> None:
        try:
            request = pb.SendEventsRequest(events=[event for event, _ in batch])
            try:
                response = await self._call(request, metadata=self._metadata, timeout=self._timeout)
            except grpc.aio.AioRpcError as exc:
                failure = error_from_rpc(exc)
                results: list[PrismeError | None] = [failure] * len(batch)
            else:
                results = [error_from_status(status) for status in response.results]
            for (_, done), result in zip(batch, results, strict=True):
                if not done.done():
                    done.set_result(result)
        finally:
            self._slots.release()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._calls:
            await asyncio.gather(*self._calls, return_exceptions=True)
