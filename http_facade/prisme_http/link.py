"""`CoreLink`: the façade's one long-lived stream to the core (`FacadeLinkService.Exchange`).

One unary gRPC call per HTTP request costs more CPU than everything else a request does, so
events travel over one stream instead. `send` queues an event and the link sends what is
queued as soon as it can: a few loop turns after the first event (`GATHER_TURNS`), or once
the write before it is done. It keeps no timing of its own: when events are written is for
the core's group commit to decide. The core answers each event on its own, as soon as its outcome is
known, so an event that waits (a custom event for its session) holds up no other.

The stream opens with the first batch, and again with the first batch after it ended (the core
stopped or restarted, the connection broke). Events still unanswered when it ends get its
status, or UNAVAILABLE when it ended cleanly: they were not acknowledged, so their callers get
a 503 and retry with the same event ids (stored once).

Must not import prisme_core.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Final

import grpc
from google.protobuf.message import Message
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import facade_link_pb2 as link_pb
from prisme_client import PrismeError, error_from_rpc, error_from_status

EXCHANGE: Final = "/prisme.v1.FacadeLinkService/Exchange"
MAX_BATCH: Final = 1000
"""Events per message: the most the core takes in one batch."""
GATHER_TURNS: Final = 3
"""Event-loop turns a write lets pass before it takes the queue. One message of answers wakes
many handlers at once, and their clients' next requests arrive over the next few turns: taking
them together makes fewer, larger messages, which costs less CPU per event (measured in
docs/performance.md, "Measured choices"). Turns, not time: an idle service sends at once. A
façade with several cores waits this many turns per core (`prisme_http.app`): each link gets
that share of the requests, and the same size of message is worth the same wait ("Every core"
in docs/performance.md)."""
CLOSE_TIMEOUT: Final = 5.0
"""Longest `close` waits for the core to end the stream."""

Answer = asyncio.Future[PrismeError | None]
Stream = grpc.aio.StreamStreamCall[Message, link_pb.ExchangeResponse]


class CoreLink:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        metadata: tuple[tuple[str, str], ...],
        gather_turns: int = GATHER_TURNS,
    ) -> None:
        self._exchange = channel.stream_stream(
            EXCHANGE,
            request_serializer=link_pb.ExchangeRequest.SerializeToString,
            response_deserializer=link_pb.ExchangeResponse.FromString,
        )
        self._metadata = metadata
        self._gather_turns = gather_turns
        self._stream: Stream | None = None
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._queued: list[tuple[pb.Event, Answer]] = []
        self._waiting: dict[int, Answer] = {}
        self._next_id = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    async def send(self, event: pb.Event, within: float) -> PrismeError | None:
        """The core's answer for ``event``: None when stored, else why not. Past ``within``
        seconds the answer is DEADLINE_EXCEEDED, and an event still queued is not sent."""
        loop = self._loop = self._loop or asyncio.get_running_loop()  # which calls getpid()
        answer: Answer = loop.create_future()
        self._queued.append((event, answer))
        if self._writer is None:  # it runs after this turn's other requests queued theirs
            self._writer = loop.create_task(self._write_queued(), name="core-link-writer")
        timer = loop.call_later(within, _expire, answer, within)
        try:
            return await answer
        finally:
            timer.cancel()

    async def _write_queued(self) -> None:
        try:
            while self._queued:
                for _ in range(self._gather_turns):
                    await asyncio.sleep(0)
                batch = [entry for entry in self._queued[:MAX_BATCH] if not entry[1].done()]
                del self._queued[:MAX_BATCH]
                if batch:
                    await self._write(batch)
        finally:
            self._writer = None

    async def _write(self, batch: list[tuple[pb.Event, Answer]]) -> None:
        first = self._next_id
        self._next_id += len(batch)
        for offset, (_, answer) in enumerate(batch):
            self._waiting[first + offset] = answer
        request = link_pb.ExchangeRequest(first_id=first, events=[event for event, _ in batch])
        stream = self._stream
        if stream is None:
            stream = self._stream = self._exchange(metadata=self._metadata)
            self._reader = asyncio.create_task(self._read(stream), name="core-link-reader")
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await stream.write(request)  # if the stream ended, its reader failed the batch
        if self._stream is not stream:  # ended while writing: nobody will answer these
            _fail(self._take_waiting(range(first, first + len(batch))), _unavailable("link ended"))

    async def _read(self, stream: Stream) -> None:
        try:
            async for response in stream:
                self._answer(response)
            ended = _unavailable("the core ended the link")
        except grpc.aio.AioRpcError as exc:
            # A core shutting down cancels the streams it still has: for the callers, the
            # core is unavailable (a 503), they did not cancel anything.
            if exc.code() == grpc.StatusCode.CANCELLED:
                ended = _unavailable("the core cancelled the link")
            else:
                ended = error_from_rpc(exc)
        except asyncio.CancelledError:
            ended = _unavailable("the link was closed")
        # No suspension from here on: a batch sent after this finds no stream and opens one.
        if self._stream is stream:
            self._stream = None
            _fail(list(self._waiting.values()), ended)
            self._waiting.clear()

    def _answer(self, response: link_pb.ExchangeResponse) -> None:
        if len(response.ids) != len(response.results):
            message = f"the core answered {len(response.results)} results for {len(response.ids)}"
            failure = PrismeError(grpc.StatusCode.INTERNAL, "INTERNAL", message)
            _fail(self._take_waiting(response.ids), failure)
            return
        for event_id, status in zip(response.ids, response.results, strict=True):
            answer = self._waiting.pop(event_id, None)
            if answer is not None and not answer.done():
                answer.set_result(error_from_status(status))

    def _take_waiting(self, ids: Iterable[int]) -> list[Answer]:
        return [a for i in ids if (a := self._waiting.pop(i, None)) is not None]

    async def close(self, within: float = CLOSE_TIMEOUT) -> None:
        """Sends what is queued, ends the stream from this side and waits for the core to end
        it too (at most ``within`` seconds: then it is cancelled)."""
        if self._writer is not None:
            await self._writer
        stream, reader = self._stream, self._reader
        if stream is None or reader is None:
            return
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await stream.done_writing()
        try:
            async with asyncio.timeout(within):
                await asyncio.shield(reader)
        except TimeoutError:
            stream.cancel()
            await reader


async def count_refused(link: CoreLink, client_ip: str, within: float) -> PrismeError | None:
    """Counts an event the façade refused against its client's rate limit (every event counts
    first): the core's refusal when the client is over it, else None."""
    event = pb.Event(refused=pb.RefusedEvent(client_ip=client_ip))
    error = await link.send(event, within)
    return error if error is not None and error.reason == "RATE_LIMITED" else None


def _expire(answer: Answer, within: float) -> None:
    if not answer.done():
        answer.set_result(core_late(within))


def _fail(answers: list[Answer], error: PrismeError) -> None:
    for answer in answers:
        if not answer.done():
            answer.set_result(error)


def core_late(within: float) -> PrismeError:
    """The answer for an event the core did not answer within ``within`` seconds."""
    message = f"the core did not answer within {within:g}s"
    return PrismeError(grpc.StatusCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED", message)


def _unavailable(message: str) -> PrismeError:
    return PrismeError(grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE", message)
