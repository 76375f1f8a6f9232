"""The façade's `CoreLink` against a real gRPC server whose link answers each event after a
delay of its own: what is queued in one turn goes in one message, each event gets its own
answer as soon as the core gives it, whatever its neighbours do, and the stream fails its
events with the core and reopens."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import status_pb2
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import facade_link_pb2 as link_pb
from prisme.v1 import facade_link_pb2_grpc as link_grpc
from prisme_http.link import CoreLink


class SlowCore(link_grpc.FacadeLinkServiceServicer):
    """Stores nothing: records each batch's size and answers each event after ``delay`` (or
    ``delays[event_id]``), OK except those whose event id is in ``refused``."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.delays: dict[str, float] = {}
        self.refused: set[str] = set()
        self.calls: list[int] = []
        self._arrived = asyncio.Condition()

    async def received(self, batches: int) -> None:
        """Returns once ``batches`` batches arrived in all."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: len(self.calls) >= batches)

    async def Exchange(  # noqa: N802
        self,
        request_iterator: AsyncIterator[link_pb.ExchangeRequest],
        context: grpc.aio.ServicerContext[object, object],
    ) -> AsyncIterator[link_pb.ExchangeResponse]:
        answers: asyncio.Queue[link_pb.ExchangeResponse | None] = asyncio.Queue()
        unanswered, reading = 0, True

        def answer(response: link_pb.ExchangeResponse) -> None:
            nonlocal unanswered
            unanswered -= 1
            answers.put_nowait(response)
            if not reading and not unanswered:
                answers.put_nowait(None)

        async def read() -> None:
            nonlocal unanswered, reading
            async for request in request_iterator:
                self.calls.append(len(request.events))
                async with self._arrived:
                    self._arrived.notify_all()
                for offset, event in enumerate(request.events):
                    unanswered += 1
                    response = link_pb.ExchangeResponse(
                        ids=[request.first_id + offset], results=[self._status(event)]
                    )
                    delay = self.delays.get(event.page_view.event_id, self.delay)
                    asyncio.get_running_loop().call_later(delay, answer, response)
            reading = False
            if not unanswered:
                answers.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (response := await answers.get()) is not None:
                yield response
        finally:
            reader.cancel()

    def _status(self, event: pb.Event) -> status_pb2.Status:
        if event.page_view.event_id in self.refused:
            return status_pb2.Status(code=grpc.StatusCode.INVALID_ARGUMENT.value[0])
        return status_pb2.Status()


async def _serve(servicer: SlowCore, port: int = 0) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    link_grpc.add_FacadeLinkServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, port


@pytest.fixture
async def core() -> AsyncIterator[tuple[SlowCore, grpc.aio.Channel]]:
    servicer = SlowCore(delay=0.05)
    server, port = await _serve(servicer)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield servicer, channel
    await channel.close()
    await server.stop(None)


def _event(n: int) -> pb.Event:
    return pb.Event(page_view=pb.SendPageViewRequest(event_id=f"{n}"))


async def test_what_is_queued_in_one_turn_travels_in_one_message(
    core: tuple[SlowCore, grpc.aio.Channel],
) -> None:
    servicer, channel = core
    link = CoreLink(channel, ())
    results = await asyncio.gather(*(link.send(_event(n), within=5.0) for n in range(64)))
    await link.close()
    assert results == [None] * 64
    assert servicer.calls == [64]


async def test_a_lone_event_goes_at_once(core: tuple[SlowCore, grpc.aio.Channel]) -> None:
    servicer, channel = core
    link = CoreLink(channel, ())
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await link.send(_event(1), within=5.0) is None
    assert loop.time() - started < servicer.delay + 0.04  # no gathering wait worth the name
    await link.close()
    assert servicer.calls == [1]


def _named(event_id: str) -> pb.Event:
    return pb.Event(page_view=pb.SendPageViewRequest(event_id=event_id))


async def test_each_event_is_answered_as_soon_as_the_core_answers_it(
    core: tuple[SlowCore, grpc.aio.Channel],
) -> None:
    servicer, channel = core
    servicer.delays["slow"] = 30.0
    servicer.refused = {"refused"}
    link = CoreLink(channel, ())
    slow = asyncio.create_task(link.send(_named("slow"), within=60.0))
    fast = asyncio.create_task(link.send(_named("fast"), within=60.0))
    refused = asyncio.create_task(link.send(_named("refused"), within=60.0))
    assert await fast is None  # in the same message as the slow one, and not held by it
    error = await refused
    assert error is not None
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert not slow.done()
    assert servicer.calls == [3]
    slow.cancel()
    await link.close(within=0.1)


async def test_the_link_fails_its_events_with_the_core_and_reopens_with_the_next() -> None:
    servicer = SlowCore(delay=0.01)
    server, port = await _serve(servicer)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        link = CoreLink(channel, ())
        assert await link.send(_named("1"), within=5.0) is None
        servicer.delay = 60.0
        unanswered = asyncio.create_task(link.send(_named("2"), within=30.0))
        await servicer.received(2)  # the core has it
        await server.stop(None)
        error = await unanswered
        assert error is not None
        assert error.code == grpc.StatusCode.UNAVAILABLE
        server, _ = await _serve(SlowCore(delay=0.01), port)
        assert await link.send(_named("3"), within=5.0) is None
        await link.close()
    await server.stop(None)


async def test_an_unanswered_event_times_out(core: tuple[SlowCore, grpc.aio.Channel]) -> None:
    servicer, channel = core
    servicer.delay = 60.0
    link = CoreLink(channel, ())
    error = await link.send(_named("1"), within=0.2)
    assert error is not None
    assert error.code == grpc.StatusCode.DEADLINE_EXCEEDED
    await link.close(within=0.1)
