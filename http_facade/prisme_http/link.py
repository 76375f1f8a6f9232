"""`CoreLink`: the façade's one long-lived stream to the core (`FacadeLinkService.Exchange`).

`exchange` sends a batch of events over the stream and returns the core's result for each:
None when stored, else why not. A stream message costs both sides about half of what a
`SendEvents` call does (no call to set up, no metadata, no status), and the façade sends one
batch per handful of milliseconds under load.

The stream opens with the first batch, and again with the first batch after it ended (the core
stopped or restarted, the connection broke). Batches still unanswered when it ends get its
status, or UNAVAILABLE when it ended cleanly: they were not acknowledged, so their callers get
a 503 and retry with the same event ids (stored once).

Must not import prisme_core.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Sequence

import grpc
from google.protobuf.message import Message
from google.rpc import status_pb2
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import facade_link_pb2 as link_pb
from prisme_client import PrismeError, error_from_rpc, error_from_status

EXCHANGE = "/prisme.v1.FacadeLinkService/Exchange"
CLOSE_TIMEOUT = 5.0
"""Longest `close` waits for the core to end the stream."""

Answer = Sequence[status_pb2.Status] | PrismeError
Stream = grpc.aio.StreamStreamCall[Message, link_pb.ExchangeResponse]


class CoreLink:
    def __init__(self, channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]) -> None:
        self._exchange = channel.stream_stream(
            EXCHANGE,
            request_serializer=link_pb.ExchangeRequest.SerializeToString,
            response_deserializer=link_pb.ExchangeResponse.FromString,
        )
        self._metadata = metadata
        self._stream: Stream | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[Answer]] = {}
        self._batch_ids = itertools.count()
        self._writing = asyncio.Lock()  # one message at a time on a stream

    async def exchange(self, events: Sequence[pb.Event], within: float) -> list[PrismeError | None]:
        """One result per event; past ``within`` seconds, DEADLINE_EXCEEDED for all."""
        batch_id = next(self._batch_ids)
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting[batch_id] = answer
        try:
            async with asyncio.timeout(within):
                async with self._writing:
                    if not answer.done():  # not failed with a stream that ended meanwhile
                        await self._write(link_pb.ExchangeRequest(batch_id=batch_id, events=events))
                return _results(await answer, len(events))
        except TimeoutError:
            return [core_late(within)] * len(events)
        finally:
            del self._waiting[batch_id]

    async def close(self, within: float = CLOSE_TIMEOUT) -> None:
        """Ends the stream from this side and waits for the core to end it too (at most
        ``within`` seconds: then it is cancelled)."""
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

    async def _write(self, request: link_pb.ExchangeRequest) -> None:
        stream = self._stream
        if stream is None:
            stream = self._stream = self._exchange(metadata=self._metadata)
            self._reader = asyncio.create_task(self._read(stream), name="core-link")
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await stream.write(request)  # if the stream ended, its reader failed the batch

    async def _read(self, stream: Stream) -> None:
        try:
            async for response in stream:
                answer = self._waiting.get(response.batch_id)
                if answer is not None and not answer.done():
                    answer.set_result(response.results)
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
        for answer in self._waiting.values():
            if not answer.done():
                answer.set_result(ended)


def core_late(within: float) -> PrismeError:
    """The answer for an event the core did not answer within ``within`` seconds."""
    message = f"the core did not answer within {within:g}s"
    return PrismeError(grpc.StatusCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED", message)


def _unavailable(message: str) -> PrismeError:
    return PrismeError(grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE", message)


def _results(answer: Answer, count: int) -> list[PrismeError | None]:
    if isinstance(answer, PrismeError):
        return [answer] * count
    if len(answer) != count:
        message = f"the core answered {len(answer)} results for {count} events"
        return [PrismeError(grpc.StatusCode.INTERNAL, "INTERNAL", message)] * count
    return [error_from_status(status) for status in answer]
