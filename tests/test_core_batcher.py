"""`CoreBatcher` against a real gRPC server whose `SendEvents` answers after a while: how the
façade splits the events in flight between its call slots."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import status_pb2
from prisme.v1 import event_service_pb2 as pb
from prisme_http.batcher import CoreBatcher


class SlowCore:
    """Stores nothing: records each call's size and answers every event OK after ``delay``."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls: list[int] = []

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            "prisme.v1.EventService",
            {
                "SendEvents": grpc.unary_unary_rpc_method_handler(
                    self.send_events,
                    request_deserializer=pb.SendEventsRequest.FromString,
                    response_serializer=pb.SendEventsResponse.SerializeToString,
                )
            },
        )

    async def send_events(
        self, request: pb.SendEventsRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.SendEventsResponse:
        self.calls.append(len(request.events))
        await asyncio.sleep(self.delay)
        return pb.SendEventsResponse(results=[status_pb2.Status()] * len(request.events))


@pytest.fixture
async def core() -> AsyncIterator[tuple[SlowCore, grpc.aio.Channel]]:
    servicer = SlowCore(delay=0.05)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((servicer.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
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
