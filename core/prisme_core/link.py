"""`FacadeLinkServicer`: the core's end of the façade's long-lived stream of event batches.

Each batch is handled as a `SendEvents` call would be (`EventServicer.send_all`), in a task of
its own, and answered as soon as it is done: a batch waiting for the store does not hold back
the next one. On `close` (the core is stopping), every stream stops taking batches, answers
those it took, and ends; the façade fails what it sent after that as unavailable (not stored)
and opens a new stream for its next batch.

Must not import aiohttp or pymongo.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from prisme.v1 import facade_link_pb2 as pb
from prisme.v1 import facade_link_pb2_grpc as pb_grpc

from prisme_core.servicer import Caller, EventServicer, too_many_events
from prisme_core.status import rich_status

Context = grpc.aio.ServicerContext[pb.ExchangeRequest, pb.ExchangeResponse]
Answers = asyncio.Queue[pb.ExchangeResponse | Exception | None]


class FacadeLinkServicer(pb_grpc.FacadeLinkServiceServicer):
    def __init__(self, events: EventServicer) -> None:
        self._events = events
        self._readers: set[asyncio.Task[None]] = set()
        self._closing = False

    async def Exchange(
        self, request_iterator: AsyncIterator[pb.ExchangeRequest], context: Context
    ) -> AsyncIterator[pb.ExchangeResponse]:
        caller = await self._events.identify(context)
        if self._closing:
            return
        answers: Answers = asyncio.Queue()
        batches: set[asyncio.Task[None]] = set()
        reader = asyncio.create_task(self._read(request_iterator, caller, answers, batches))
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)
        try:
            while (answer := await answers.get()) is not None:
                if isinstance(answer, Exception):
                    raise answer  # a defect: the stream fails as a whole, as a call would
                yield answer
        finally:  # the stream is over, or was cancelled: nobody is left to answer
            reader.cancel()
            for batch in batches:
                batch.cancel()

    def close(self) -> None:
        """Stops every stream from taking batches; each ends once it answered its own."""
        self._closing = True
        for reader in self._readers:
            reader.cancel()

    async def _read(
        self,
        requests: AsyncIterator[pb.ExchangeRequest],
        caller: Caller,
        answers: Answers,
        batches: set[asyncio.Task[None]],
    ) -> None:
        try:
            async for request in requests:
                batch = asyncio.create_task(self._answer(request, caller, answers))
                batches.add(batch)
                batch.add_done_callback(batches.discard)
        except asyncio.CancelledError:
            if not self._closing:
                raise
        except Exception as broken:  # the stream fails, with the batches it still has
            answers.put_nowait(broken)
            return
        while batches:  # `close` may come while these are awaited: they are answered all the same
            try:
                await asyncio.wait(batches)
            except asyncio.CancelledError:
                if not self._closing:
                    raise
        answers.put_nowait(None)

    async def _answer(self, request: pb.ExchangeRequest, caller: Caller, answers: Answers) -> None:
        if (error := too_many_events(request.events, "batch")) is not None:
            results = [rich_status(error)] * len(request.events)
        else:
            try:
                results = await self._events.send_all(request.events, caller)
            except Exception as defect:
                answers.put_nowait(defect)
                return
        answers.put_nowait(pb.ExchangeResponse(batch_id=request.batch_id, results=results))
