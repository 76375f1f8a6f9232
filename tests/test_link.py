"""The core's end of the façade's link (`FacadeLinkService.Exchange`): batches follow the rules
of `SendEvents`, a wrong token is refused, and a core that stops answers what it took and
ends the stream instead of holding it until its grace period runs out."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import facade_link_pb2 as link_pb
from prisme.v1 import facade_link_pb2_grpc as link_grpc
from prisme_core.adapters.memory import GatedEventStore
from prisme_core.adapters.useragents import UserAgentsParser
from prisme_core.server import CoreDeps, CoreServer, create_server
from prisme_core.servicer import EventServicer
from prisme_core.settings import Settings
from pymongo.asynchronous.database import AsyncDatabase

from tests.conftest import changed
from tests.support import FIREFOX, Document, until
from tests.transports import TRUSTED


def _view(path: str, event_id: str = "") -> pb.Event:
    context = pb.ClientContext(
        origin="http://localhost",
        page_url=f"http://localhost{path}",
        user_agent=FIREFOX,
        client_ip="81.2.3.4",
    )
    return pb.Event(page_view=pb.SendPageViewRequest(context=context, event_id=event_id))


async def test_a_batch_is_stored_with_a_result_per_event(
    core_target: str, mongo: AsyncDatabase[Document]
) -> None:
    event_id = str(uuid.uuid4())
    batch = [_view("/linked", event_id), pb.Event(page_view=pb.SendPageViewRequest())]
    async with grpc.aio.insecure_channel(core_target) as channel:
        stream = link_grpc.FacadeLinkServiceStub(channel).Exchange(metadata=TRUSTED)
        await stream.write(link_pb.ExchangeRequest(first_id=7, events=batch))
        answers = []
        await stream.done_writing()
        while (answer := await stream.read()) is not grpc.aio.EOF:
            answers.append(answer)
    results = {
        event_id: status.code
        for answer in answers
        if isinstance(answer, link_pb.ExchangeResponse)
        for event_id, status in zip(answer.ids, answer.results, strict=True)
    }
    assert results == {
        7: grpc.StatusCode.OK.value[0],
        8: grpc.StatusCode.INVALID_ARGUMENT.value[0],  # no context, as SendEvents says
    }
    stored = await mongo.pageviews.find_one({"event_id": uuid.UUID(event_id)})
    assert stored is not None
    assert stored["path"] == "/linked"


async def test_a_wrong_token_is_refused(core_target: str) -> None:
    async with grpc.aio.insecure_channel(core_target) as channel:
        stream = link_grpc.FacadeLinkServiceStub(channel).Exchange(
            metadata=(("authorization", "Bearer wrong"),)
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stream.read()
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.fixture
async def gated(
    settings: Settings, user_agents: UserAgentsParser
) -> AsyncIterator[tuple[CoreServer, GatedEventStore]]:
    store = GatedEventStore()
    settings = changed(settings, "store", timeout=5.0)
    server = create_server(settings, CoreDeps(store=store, agents=user_agents), "127.0.0.1:0")
    await server.start()
    yield server, store
    store.gate.set()


async def test_a_stopping_core_answers_the_batches_it_took_and_ends_the_stream(
    gated: tuple[CoreServer, GatedEventStore],
) -> None:
    server, store = gated
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stream = link_grpc.FacadeLinkServiceStub(channel).Exchange(metadata=TRUSTED)
        await stream.write(link_pb.ExchangeRequest(first_id=1, events=[_view("/warm")]))
        assert isinstance(await stream.read(), link_pb.ExchangeResponse)
        store.gate.clear()
        await stream.write(link_pb.ExchangeRequest(first_id=2, events=[_view("/taken")]))
        await store.held()  # taken, and waiting for the store
        answer, stopped_in = await _stop_while_stored(server, store, stream)
    assert list(answer.ids) == [2]
    assert [status.code for status in answer.results] == [grpc.StatusCode.OK.value[0]]
    assert stopped_in < 3  # not the grace period: the core ended the stream the façade kept open
    assert [p.path for p in store.pageviews] == ["/warm", "/taken"]


async def test_a_stopping_core_ends_a_stream_the_facade_already_closed(
    gated: tuple[CoreServer, GatedEventStore],
) -> None:
    server, store = gated
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stream = link_grpc.FacadeLinkServiceStub(channel).Exchange(metadata=TRUSTED)
        store.gate.clear()
        await stream.write(link_pb.ExchangeRequest(first_id=1, events=[_view("/last")]))
        await stream.done_writing()
        await store.held()  # taken, waiting for the store, and no more to read
        answer, stopped_in = await _stop_while_stored(server, store, stream)
    assert list(answer.ids) == [1]
    assert stopped_in < 3
    assert [p.path for p in store.pageviews] == ["/last"]


async def _stop_while_stored(
    server: CoreServer,
    store: GatedEventStore,
    stream: grpc.aio.StreamStreamCall[link_pb.ExchangeRequest, link_pb.ExchangeResponse],
) -> tuple[link_pb.ExchangeResponse, float]:
    """Stops the core while the batch it took waits for the store, then lets the store go: the
    batch's answer, and how long stopping took. The core must have ended the stream."""
    started = time.monotonic()
    stopping = asyncio.create_task(server.stop(grace=10))
    await until(lambda: server.link.closing, what="the core is stopping")
    store.gate.set()
    answer = await stream.read()
    assert isinstance(answer, link_pb.ExchangeResponse)
    assert await stream.read() is grpc.aio.EOF
    await stopping
    return answer, time.monotonic() - started


async def test_a_defect_fails_the_stream_instead_of_leaving_its_batch_unanswered(
    core_target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> object:
        raise RuntimeError("a defect")

    monkeypatch.setattr(EventServicer, "start", broken)
    async with grpc.aio.insecure_channel(core_target) as channel:
        stream = link_grpc.FacadeLinkServiceStub(channel).Exchange(metadata=TRUSTED)
        await stream.write(link_pb.ExchangeRequest(first_id=1, events=[_view("/x")]))
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await asyncio.wait_for(stream.read(), 5)
    assert failed.value.code() == grpc.StatusCode.UNKNOWN


async def test_a_malformed_batch_fails_the_stream(core_target: str) -> None:
    async with grpc.aio.insecure_channel(core_target) as channel:
        raw: grpc.aio.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(
            "/prisme.v1.FacadeLinkService/Exchange"
        )
        stream = raw(metadata=TRUSTED)
        await stream.write(b"\xff\xff\xff\xff")
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await asyncio.wait_for(stream.read(), 5)
    assert failed.value.code() == grpc.StatusCode.UNKNOWN
