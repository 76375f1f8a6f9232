"""Safe retries: an event id is stored once, through HTTP, through gRPC, and across instances."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
import pytest
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import event_service_pb2_grpc as pb_grpc
from prisme_core.server import create_server
from prisme_core.settings import Settings
from pymongo.asynchronous.database import AsyncDatabase

from tests.conftest import core_deps
from tests.support import Document, HttpClient
from tests.transports import TRUSTED, Custom, Visit, send_custom_http, send_http


async def test_retried_pageview_over_http_is_stored_once(
    http: HttpClient, mongo: AsyncDatabase[Document]
) -> None:
    event_id = str(uuid.uuid4())
    visit = Visit(extra_headers={"X-Prisme-Event-Id": event_id})
    answers = await asyncio.gather(*(send_http(http, visit) for _ in range(3)))
    assert all(answer.ok for answer in answers)
    assert (await send_http(http, visit)).ok
    stored = await mongo.pageviews.find({}).to_list()
    assert [str(doc["event_id"]) for doc in stored] == [event_id]
    assert await mongo.sessions.count_documents({}) == 1


async def test_retried_custom_event_is_stored_once(
    http: HttpClient, mongo: AsyncDatabase[Document]
) -> None:
    assert (await send_http(http, Visit())).ok
    event_id = str(uuid.uuid4())
    event = Custom("click", b"{}", visit=Visit(extra_headers={"X-Prisme-Event-Id": event_id}))
    for _ in range(2):
        assert (await send_custom_http(http, event)).ok
    assert await mongo.events_custom.count_documents({"event_id": uuid.UUID(event_id)}) == 1


async def test_invalid_event_id_is_refused(http: HttpClient) -> None:
    answer = await send_http(http, Visit(extra_headers={"X-Prisme-Event-Id": "not-a-uuid"}))
    assert (answer.http_status, answer.error) == (400, "invalid event id")


async def test_retry_through_another_instance_is_stored_once(
    settings: Settings, user_agents: Any, core_target: str, mongo: AsyncDatabase[Document]
) -> None:
    other = create_server(settings, core_deps(settings, user_agents), address="127.0.0.1:0")
    await other.start()
    event_id = str(uuid.uuid4())
    request = pb.SendPageViewRequest(context=Visit().context(), event_id=event_id)
    try:
        for target in (core_target, f"127.0.0.1:{other.port}"):
            async with grpc.aio.insecure_channel(target) as channel:
                await pb_grpc.EventServiceStub(channel).SendPageView(request, metadata=TRUSTED)
    finally:
        await other.stop(grace=0)
    assert await mongo.pageviews.count_documents({"event_id": uuid.UUID(event_id)}) == 1


@pytest.mark.parametrize("count", [1, 5])
async def test_distinct_event_ids_are_all_stored(
    http: HttpClient, mongo: AsyncDatabase[Document], count: int
) -> None:
    visits = [Visit(extra_headers={"X-Prisme-Event-Id": str(uuid.uuid4())}) for _ in range(count)]
    assert all(a.ok for a in await asyncio.gather(*(send_http(http, v) for v in visits)))
    assert await mongo.pageviews.count_documents({}) == count
