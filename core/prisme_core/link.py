"""`FacadeLinkServicer`: the core's end of the façade's long-lived stream of event batches.

Each event of a batch is started as `SendEvents` would start it (`EventServicer.start`) and
answered on its own as soon as its outcome is known: the answers decided in one turn of the
event loop travel together in one message, and an event that waits (for its session, a key, a
retried id) holds up nothing but itself. Page views on their way to the store are withdrawn
at the store deadline, as in `SendEvents`.

Only the service token opens a stream. The stream reads at most `MAX_BATCHES_IN_FLIGHT`
batches ahead of their answers, so a sender that pipelines without reading is held back by
gRPC's flow control instead of growing the core's memory.

On `close` (the core is stopping), every stream stops taking batches, answers the events it
took, and ends; the façade fails what it sent after that as unavailable (not stored) and opens
a new stream for its next batch.

Must not import aiohttp or pymongo.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Final

import google.rpc.status_pb2 as status_pb2
import grpc
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import facade_link_pb2 as link_pb
from prisme.v1 import facade_link_pb2_grpc as link_grpc
from prometheus_client import Gauge

from prisme_core.errors import CoreError, Unauthenticated
from prisme_core.outcomes import Outcome, PendingEvent
from prisme_core.servicer import Caller, EventServicer, refuse, too_many_events
from prisme_core.status import rich_status

Context = grpc.aio.ServicerContext[link_pb.ExchangeRequest, link_pb.ExchangeResponse]
Answers = asyncio.Queue[link_pb.ExchangeResponse | Exception | None]

MAX_BATCHES_IN_FLIGHT: Final = 64
"""Batches one stream may have with events still unanswered before it reads no more."""
IN_FLIGHT: Final = Gauge(
    "prisme_link_batches_in_flight", "Batches of the façade's link with events still unanswered."
)


class _Stream:
    """One open stream: the batches it took, and the answers it owes."""

    def __init__(self, events: EventServicer, caller: Caller, deadline: float) -> None:
        self._events = events
        self._caller = caller
        self._deadline = deadline
        self._loop = asyncio.get_running_loop()
        self.answers: Answers = asyncio.Queue()
        self.room = asyncio.Semaphore(MAX_BATCHES_IN_FLIGHT)
        self._in_flight = 0
        self._ids: list[int] = []
        self._results: list[status_pb2.Status] = []
        self._send_scheduled = False
        self._drained = asyncio.Event()
        self._drained.set()
        self._deciding: set[PendingEvent] = set()
        self._abandoned = False

    def take(self, request: link_pb.ExchangeRequest) -> None:
        """Starts every event of ``request``; the batch holds its room until all are answered."""
        self._in_flight += 1
        IN_FLIGHT.inc()
        self._drained.clear()
        events, first = request.events, request.first_id
        if (refused := too_many_events(events, "batch")) is not None:
            for index in range(len(events)):
                self._answer(first + index, rich_status(refused))
            self._batch_done()
            return
        batch = _Batch(len(events), self._batch_done)
        queued: list[PendingEvent] = []
        for index, event in enumerate(events):
            outcome = self._events.start(event, self._caller)
            if isinstance(outcome, CoreError):
                self._answer(first + index, self._events.answer(event, outcome))
                batch.answered()
                continue
            if outcome.keeps_own_deadline:
                self._decide(outcome)
            else:
                queued.append(outcome)
            known = self._when_known(first + index, event, outcome, batch.answered)
            outcome.future.add_done_callback(known)
        if queued:  # past the store deadline, what is still queued is withdrawn: a 503
            batch.timer = self._loop.call_later(self._deadline, _withdraw_late, queued)
        if not events:
            self._batch_done()

    def _decide(self, outcome: PendingEvent) -> None:
        """Keeps an event deciding in its own task, to withdraw if the stream ends first."""
        self._deciding.add(outcome)
        outcome.future.add_done_callback(lambda _: self._deciding.discard(outcome))

    def _when_known(
        self, event_id: int, event: pb.Event, outcome: Outcome, done: Callable[[], None]
    ) -> Callable[[asyncio.Future[None]], None]:
        def known(_: asyncio.Future[None]) -> None:
            try:
                status = self._events.answer(event, outcome)
            except Exception as defect:  # the stream fails, as a call would
                self.answers.put_nowait(defect)
                return
            self._answer(event_id, status)
            done()

        return known

    def _answer(self, event_id: int, status: status_pb2.Status) -> None:
        self._ids.append(event_id)
        self._results.append(status)
        if not self._send_scheduled:  # the answers of this loop turn travel together
            self._send_scheduled = True
            self._loop.call_soon(self._send)

    def _send(self) -> None:
        self._send_scheduled = False
        if self._ids:
            response = link_pb.ExchangeResponse(ids=self._ids, results=self._results)
            self._ids, self._results = [], []
            self.answers.put_nowait(response)
        if self._in_flight == 0:
            self._drained.set()

    def _batch_done(self) -> None:
        if self._abandoned:
            return
        self._in_flight -= 1
        IN_FLIGHT.dec()
        self.room.release()
        if self._in_flight == 0 and not self._send_scheduled:
            self._drained.set()

    async def drained(self) -> None:
        """Returns once every event taken is answered (and its answer queued)."""
        await self._drained.wait()

    def abandon(self) -> None:
        """Nobody is left to answer: the events still deciding stop."""
        self._abandoned = True
        for event in list(self._deciding):
            event.withdraw()
        IN_FLIGHT.dec(self._in_flight)
        self._in_flight = 0


class _Batch:
    """One message's events, until each is answered: then its room is given back, and its
    store deadline's timer let go (it holds the events' outcomes, which would otherwise stay
    alive, and be scanned by the garbage collector, for the whole deadline)."""

    __slots__ = ("_done", "_remaining", "timer")

    def __init__(self, events: int, done: Callable[[], None]) -> None:
        self._remaining = events
        self._done = done
        self.timer: asyncio.TimerHandle | None = None

    def answered(self) -> None:
        self._remaining -= 1
        if self._remaining == 0:
            if self.timer is not None:
                self.timer.cancel()
            self._done()


def _withdraw_late(pending: list[PendingEvent]) -> None:
    for event in pending:
        if not event.future.done():
            event.withdraw()


class FacadeLinkServicer(link_grpc.FacadeLinkServiceServicer):
    def __init__(self, events: EventServicer, store_deadline: float) -> None:
        self._events = events
        self._deadline = store_deadline
        self._readers: set[asyncio.Task[None]] = set()
        self._closing = False

    async def Exchange(
        self, request_iterator: AsyncIterator[link_pb.ExchangeRequest], context: Context
    ) -> AsyncIterator[link_pb.ExchangeResponse]:
        try:
            caller = self._events.identify(context)
            if not caller.trusted:
                raise Unauthenticated()
        except CoreError as error:
            refuse(context, rich_status(error))
            return
        if self._closing:
            return
        stream = _Stream(self._events, caller, self._deadline)
        reader = asyncio.create_task(self._read(request_iterator, stream))
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)
        try:
            while (answer := await stream.answers.get()) is not None:
                if isinstance(answer, Exception):
                    raise answer  # a defect: the stream fails as a whole, as a call would
                yield answer
        finally:  # the stream is over, or was cancelled: nobody is left to answer
            reader.cancel()
            stream.abandon()

    @property
    def closing(self) -> bool:
        """Whether `close` was called: streams take no more batches."""
        return self._closing

    def close(self) -> None:
        """Stops every stream from taking batches; each ends once it answered its own."""
        self._closing = True
        for reader in self._readers:
            reader.cancel()

    async def _read(
        self, requests: AsyncIterator[link_pb.ExchangeRequest], stream: _Stream
    ) -> None:
        try:
            while True:
                await stream.room.acquire()  # at most MAX_BATCHES_IN_FLIGHT read ahead
                request = await anext(requests, None)
                if request is None:
                    stream.room.release()
                    break
                stream.take(request)
        except asyncio.CancelledError:
            if not self._closing:
                raise
        except Exception as broken:  # the stream fails, with the batches it still has
            stream.answers.put_nowait(broken)
            return
        while True:  # `close` may come meanwhile: what was taken is answered all the same
            try:
                await stream.drained()
                break
            except asyncio.CancelledError:
                if not self._closing:
                    raise
        stream.answers.put_nowait(None)
