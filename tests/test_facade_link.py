"""`CoreBatcher` and its `CoreLink` against a real gRPC server whose link answers each batch
after a while: how the façade splits the events in flight between its call slots, and how the
link matches answers to batches and survives the core going away."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import status_pb2
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import facade_link_pb2 as link_pb
from prisme.v1 import facade_link_pb2_grpc as link_grpc
from prisme_http.batcher import CoreBatcher
from prisme_http.link import CoreLink


class SlowCore(link_grpc.FacadeLinkServiceServicer):
    """Stores nothing: records each batch's size and answers it after ``delay`` (or after
    ``delays[n]`` for the batch whose first event id is ``n``), every event OK except those
    whose id is in ``refused``."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.delays: dict[str, float] = {}
        self.refused: set[str] = set()
        self.calls: list[int] = []

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
                unanswered += 1
                asyncio.get_running_loop().call_later(
                    self.delays.get(request.events[0].page_view.event_id, self.delay),
                    answer,
                    link_pb.ExchangeResponse(
                        batch_id=request.batch_id,
                        results=[self._status(event) for event in request.events],
                    ),
                )
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


async def test_a_burst_is_split_evenly_between_the_call_slots(
    core: tuple[SlowCore, grpc.aio.Channel],
) -> None:
    servicer, channel = core
    batcher = CoreBatcher(channel, token=None, timeout=5.0, max_in_flight=2)
    batcher.start()
    results = await asyncio.gather(*(batcher.send(_event(n), within=5.0) for n in range(64)))
    await batcher.close()
    assert results == [None] * 64
    # One call of 64 would be written in one piece, then answered all at once: the store
    # would idle while all 64 callers come back.
    assert servicer.calls == [32, 32]


async def test_a_lone_event_goes_at_once(core: tuple[SlowCore, grpc.aio.Channel]) -> None:
    servicer, channel = core
    batcher = CoreBatcher(channel, token=None, timeout=5.0)
    batcher.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await batcher.send(_event(1), within=5.0) is None
    assert loop.time() - started < servicer.delay + 0.04  # no gathering wait worth the name
    await batcher.close()
    assert servicer.calls == [1]


def _named(event_id: str) -> pb.Event:
    return pb.Event(page_view=pb.SendPageViewRequest(event_id=event_id))


async def test_answers_reach_their_batches_in_any_order(
    core: tuple[SlowCore, grpc.aio.Channel],
) -> None:
    servicer, channel = core
    servicer.delays["slow"] = 0.3
    servicer.refused = {"b2"}
    link = CoreLink(channel, ())
    first = asyncio.create_task(link.exchange([_named("slow"), _named("a2")], within=5.0))
    await asyncio.sleep(0.05)
    second = await link.exchange([_named("b1"), _named("b2")], within=5.0)
    assert not first.done()  # answered after the batch sent behind it
    assert second[0] is None
    assert second[1] is not None
    assert second[1].code == grpc.StatusCode.INVALID_ARGUMENT
    assert await first == [None, None]
    await link.close()
    assert servicer.calls == [2, 2]  # one stream, two messages


async def test_the_link_fails_its_batches_with_the_core_and_reopens_with_the_next() -> None:
    servicer = SlowCore(delay=0.01)
    server, port = await _serve(servicer)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        link = CoreLink(channel, ())
        assert await link.exchange([_named("1")], within=5.0) == [None]
        servicer.delay = 60.0
        unanswered = asyncio.create_task(link.exchange([_named("2")], within=30.0))
        await asyncio.sleep(0.1)
        await server.stop(None)
        [error] = await unanswered
        assert error is not None
        assert error.code == grpc.StatusCode.UNAVAILABLE
        server, _ = await _serve(SlowCore(delay=0.01), port)
        assert await link.exchange([_named("3")], within=5.0) == [None]
        await link.close()
    await server.stop(None)


async def test_an_unanswered_batch_times_out(core: tuple[SlowCore, grpc.aio.Channel]) -> None:
    servicer, channel = core
    servicer.delay = 60.0
    link = CoreLink(channel, ())
    [error] = await link.exchange([_named("1")], within=0.2)
    assert error is not None
    assert error.code == grpc.StatusCode.DEADLINE_EXCEEDED
    await link.close(within=0.1)
