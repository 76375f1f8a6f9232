"""Custom events and caller trust, end to end: HTTP façade → gRPC core → store, and gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import event_service_pb2_grpc as pb_grpc
from prisme_client import PrismeError, error_from_rpc
from pymongo.asynchronous.database import AsyncDatabase

from tests.support import BROWSER_HEADERS, Document, HttpClient
from tests.transports import TOKEN


@pytest.fixture
async def stub(core_target: str) -> AsyncIterator[pb_grpc.EventServiceAsyncStub]:
    async with grpc.aio.insecure_channel(core_target) as channel:
        yield pb_grpc.EventServiceStub(channel)


def _context(**overrides: str) -> pb.ClientContext:
    fields = {
        "origin": "http://localhost",
        "page_url": "http://localhost/hello",
        "user_agent": BROWSER_HEADERS["User-Agent"],
    }
    return pb.ClientContext(**(fields | overrides))


async def _grpc_error(call: object) -> PrismeError:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return error_from_rpc(exc)
    raise AssertionError("the call succeeded")


async def test_custom_event_over_http_is_stored(
    http: HttpClient, mongo: AsyncDatabase[Document]
) -> None:
    headers = BROWSER_HEADERS | {"Content-Type": "application/json"}
    response = await http.post(
        "/api/v1/events/custom/sign_up", headers=headers, data=b'{"plan": "pro", "seats": 3}'
    )
    assert response.status == 200
    event = await mongo.events_custom.find_one({}, {"_id": 0})
    assert event is not None
    assert (event["name"], event["properties"]) == ("sign_up", {"plan": "pro", "seats": 3})


async def test_custom_event_over_grpc_is_stored(
    stub: pb_grpc.EventServiceAsyncStub, mongo: AsyncDatabase[Document]
) -> None:
    request = pb.SendCustomEventRequest(context=_context(), name="click")
    request.body.content_type = "application/json"
    request.body.data = b'{"x": 1}'
    await stub.SendCustomEvent(request)
    event = await mongo.events_custom.find_one({"name": "click"})
    assert event is not None
    assert event["properties"] == {"x": 1}


async def test_missing_context_is_invalid_argument(stub: pb_grpc.EventServiceAsyncStub) -> None:
    error = await _grpc_error(stub.SendPageView(pb.SendPageViewRequest()))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "MISSING_CONTEXT"


async def test_wrong_token_is_unauthenticated(stub: pb_grpc.EventServiceAsyncStub) -> None:
    error = await _grpc_error(
        stub.SendPageView(
            pb.SendPageViewRequest(context=_context()),
            metadata=(("authorization", f"Bearer {TOKEN}x"),),
        )
    )
    assert error.code == grpc.StatusCode.UNAUTHENTICATED


async def test_right_token_is_accepted(
    stub: pb_grpc.EventServiceAsyncStub, mongo: AsyncDatabase[Document]
) -> None:
    await stub.SendPageView(
        pb.SendPageViewRequest(context=_context(client_ip="203.0.113.9")),
        metadata=(("authorization", f"Bearer {TOKEN}"),),
    )
    assert await mongo.pageviews.count_documents({}) == 1
