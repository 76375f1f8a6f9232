"""Custom events end to end, through the HTTP façade and through gRPC, against the real store;
and caller trust."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import event_service_pb2_grpc as pb_grpc
from prisme_client import PrismeError, error_from_rpc
from prisme_core.server import CoreServer, create_server
from prisme_core.settings import Settings
from pymongo.asynchronous.database import AsyncDatabase

from tests.conftest import core_deps
from tests.support import Document, HttpClient, awaiting_session, until
from tests.transports import (
    TOKEN,
    Answer,
    Custom,
    Visit,
    send_custom_grpc,
    send_custom_http,
    send_grpc,
    send_http,
)

Send = Callable[[Custom], Awaitable[Answer]]
BAD = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(params=["http", "grpc"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def send(transport: str, http: HttpClient, stub: pb_grpc.EventServiceAsyncStub) -> Send:
    if transport == "http":
        return lambda event: send_custom_http(http, event)
    return lambda event: send_custom_grpc(stub, event)


@pytest.fixture
async def session(http: HttpClient, mongo: AsyncDatabase[Document]) -> Document:
    """The live session of the default visitor, begun by a page view."""
    assert (await send_http(http, Visit(page_url="http://localhost/landing"))).ok
    found = await mongo.sessions.find_one({})
    assert found is not None
    return found


def assert_refused(
    answer: Answer, http: tuple[int, str], code: grpc.StatusCode, reason: str
) -> None:
    if answer.http_status is not None:
        assert (answer.http_status, answer.error) == http
    else:
        assert (answer.grpc_code, answer.reason) == (code, reason)


async def _stored(mongo: AsyncDatabase[Document]) -> list[Document]:
    return await mongo.events_custom.find({}, {"_id": 0}).to_list()


async def test_event_joins_the_session_and_is_stored_exactly(
    send: Send, session: Document, mongo: AsyncDatabase[Document]
) -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    body = b'{"plan": "pro", "seats": 3, "price": 12.5, "trial": false, "coupon": null}'
    visit = Visit(page_url="http://localhost/checkout/?step=2")
    assert (await send(Custom("purchase", body, visit=visit))).ok
    [event] = await _stored(mongo)
    assert event == {
        "timestamp": event["timestamp"],
        "domain": "localhost",
        "path": "/checkout",
        "visitor_id": session["visitor_id"],
        "session_uuid": session["session_uuid"],
        "name": "purchase",
        "properties": {"plan": "pro", "seats": 3, "price": 12.5, "trial": False, "coupon": None},
    }
    assert before <= event["timestamp"] <= datetime.now(UTC)
    assert type(event["properties"]["seats"]) is int
    assert type(event["properties"]["price"]) is float


@pytest.mark.usefixtures("session")
@pytest.mark.parametrize(
    ("body", "content_type", "properties"),
    [
        pytest.param(b"", "", {}, id="empty-body-no-content-type"),
        pytest.param(b"", "text/plain", {}, id="empty-body-any-content-type"),
        pytest.param(b"{}", "application/json; charset=utf-8", {}, id="charset-parameter"),
        pytest.param(b"{}", "Application/JSON", {}, id="media-type-case"),
        pytest.param(
            b'{"big": 9223372036854775807, "bigger": 9223372036854775808, '
            b'"neg": -9223372036854775808}',
            "application/json",
            {"big": 2**63 - 1, "bigger": float(2**63), "neg": -(2**63)},
            id="int64-bounds",
        ),
        pytest.param(b'{"x": 1e300, "y": -0.0, "z": 1.50}', "application/json",
                     {"x": 1e300, "y": -0.0, "z": 1.5}, id="doubles"),
        pytest.param('{"é": "ü\\u00e9", "emoji": "\\ud83d\\ude00"}'.encode(), "application/json",
                     {"é": "üé", "emoji": "😀"}, id="unicode"),
        pytest.param(b'{"n": {"a": [1, {"b": [true, null]}]}}', "application/json",
                     {"n": {"a": [1, {"b": [True, None]}]}}, id="nested"),
    ],
)  # fmt: skip
async def test_properties_are_stored_as_sent(
    send: Send, mongo: AsyncDatabase[Document], body: bytes, content_type: str,
    properties: dict[str, Any],
) -> None:  # fmt: skip
    assert (await send(Custom("e", body, content_type))).ok
    [event] = await _stored(mongo)
    assert event["properties"] == properties
    assert [_kind(v) for v in event["properties"].values()] == [
        _kind(v) for v in properties.values()
    ]


def _kind(value: object) -> type:
    """The JSON type of a stored value (PyMongo reads 64-bit integers as an int subclass)."""
    return int if isinstance(value, int) and not isinstance(value, bool) else type(value)


def _deep(depth: int) -> bytes:
    return ('{"a":' * depth + "1" + "}" * depth).encode()


@pytest.mark.usefixtures("session")
@pytest.mark.parametrize(
    ("body", "content_type", "expected_http", "reason"),
    [
        pytest.param(b"{}", "text/plain", (400, "invalid content type"), "INVALID_CONTENT_TYPE",
                     id="content-type"),
        pytest.param(b"{}", "", (400, "invalid content type"), "INVALID_CONTENT_TYPE",
                     id="content-type-missing"),
        pytest.param(b'{"a": ', "application/json", (400, "invalid json"), "INVALID_JSON",
                     id="malformed"),
        pytest.param(b"[1, 2]", "application/json", (400, "invalid json"), "INVALID_JSON",
                     id="array"),
        pytest.param(b'"text"', "application/json", (400, "invalid json"), "INVALID_JSON",
                     id="string"),
        pytest.param(b"null", "application/json", (400, "invalid json"), "INVALID_JSON",
                     id="null"),
        pytest.param(b'{"a": NaN}', "application/json", (400, "invalid json"), "INVALID_JSON",
                     id="nan"),
        pytest.param(b'{"a": "\xff"}', "application/json", (400, "invalid json"), "INVALID_JSON",
                     id="not-utf8"),
        pytest.param(b'{"a": "\\ud800"}', "application/json", (400, "invalid json"),
                     "INVALID_JSON", id="lone-surrogate"),
        pytest.param(_deep(17), "application/json", (400, "properties too deep"),
                     "PROPERTIES_TOO_DEEP", id="depth-17"),
        pytest.param(b"[" * 30000 + b"]" * 30000, "application/json",
                     (400, "properties too deep"), "PROPERTIES_TOO_DEEP", id="depth-30000"),
        pytest.param(json.dumps({f"k{i}": i for i in range(513)}).encode(), "application/json",
                     (400, "too many properties"), "TOO_MANY_PROPERTIES", id="513-keys"),
        pytest.param(json.dumps({"k" * 257: 1}).encode(), "application/json",
                     (400, "invalid property key"), "INVALID_PROPERTY_KEY", id="key-too-long"),
        pytest.param(b'{"$where": 1}', "application/json", (400, "invalid property key"),
                     "INVALID_PROPERTY_KEY", id="dollar-key"),
        pytest.param(b'{"a": {"b.c": 1}}', "application/json", (400, "invalid property key"),
                     "INVALID_PROPERTY_KEY", id="dotted-nested-key"),
        pytest.param(b'{"a\\u0000": 1}', "application/json", (400, "invalid property key"),
                     "INVALID_PROPERTY_KEY", id="nul-key"),
        pytest.param(b'{"": 1}', "application/json", (400, "invalid property key"),
                     "INVALID_PROPERTY_KEY", id="empty-key"),
        pytest.param(b'{"a": "' + b"x" * 70000 + b'"}', "application/json",
                     (413, "body too large"), "BODY_TOO_LARGE", id="over-64-kib"),
    ],
)  # fmt: skip
async def test_invalid_bodies_are_refused(
    send: Send, mongo: AsyncDatabase[Document], body: bytes, content_type: str,
    expected_http: tuple[int, str], reason: str,
) -> None:  # fmt: skip
    assert_refused(await send(Custom("e", body, content_type)), expected_http, BAD, reason)
    assert await _stored(mongo) == []


@pytest.mark.usefixtures("session")
async def test_name_is_percent_decoded(send: Send, mongo: AsyncDatabase[Document]) -> None:
    assert (await send(Custom("sign%20up%C3%A9"))).ok
    [event] = await _stored(mongo)
    assert event["name"] == "sign upé"


@pytest.mark.usefixtures("session")
@pytest.mark.parametrize(
    "name",
    [pytest.param("x" * 257, id="too-long"), pytest.param("a%0Ab", id="control-character")],
)
async def test_bad_names_are_refused(send: Send, mongo: AsyncDatabase[Document], name: str) -> None:
    assert_refused(await send(Custom(name)), (400, "invalid event name"), BAD, "INVALID_EVENT_NAME")
    assert await _stored(mongo) == []


async def test_empty_name_is_404_over_http_and_invalid_over_grpc(
    http: HttpClient, stub: pb_grpc.EventServiceAsyncStub
) -> None:
    response = await http.post("/api/v1/events/custom/", headers=Visit().headers())
    assert response.status == 404
    answer = await send_custom_grpc(stub, Custom(""))
    assert (answer.grpc_code, answer.reason) == (BAD, "INVALID_EVENT_NAME")


async def test_no_session_is_refused_after_waiting(
    send: Send, mongo: AsyncDatabase[Document]
) -> None:
    started = time.monotonic()
    answer = await send(Custom("click"))
    waited = time.monotonic() - started
    assert_refused(answer, (400, "session not found"), grpc.StatusCode.FAILED_PRECONDITION,
                   "SESSION_NOT_FOUND")  # fmt: skip
    assert 0.45 <= waited < 2.0  # PRISME_API_EVENTS_TIMEOUT is 0.5 s in these tests
    assert await _stored(mongo) == []


async def test_event_on_another_host_has_no_session(
    send: Send, session: Document, mongo: AsyncDatabase[Document]
) -> None:
    visit = Visit(origin="https://example.com", page_url="https://example.com/")
    answer = await send(Custom("click", visit=visit))
    assert_refused(answer, (400, "session not found"), grpc.StatusCode.FAILED_PRECONDITION,
                   "SESSION_NOT_FOUND")  # fmt: skip
    assert await _stored(mongo) == []
    [only] = await mongo.sessions.find({}).to_list()  # the other host's session is untouched
    assert (only["_id"], only["domain"], only["pageviews"]) == (session["_id"], "localhost", 1)


async def test_event_ignores_the_document_referrer_and_leaves_the_session_alone(
    send: Send, session: Document, core: CoreServer, mongo: AsyncDatabase[Document]
) -> None:
    visit = Visit(page_url="http://localhost/other", document_referrer="https://elsewhere.example/")
    assert (await send(Custom("click", visit=visit))).ok
    [event] = await _stored(mongo)
    assert event["session_uuid"] == session["session_uuid"]
    await core.flush()
    after = await mongo.sessions.find_one({"session_uuid": session["session_uuid"]})
    assert after is not None
    assert (after["pageviews"], after["exit_path"]) == (1, "/landing")
    assert await mongo.sessions.count_documents({}) == 1


@pytest.mark.parametrize(
    ("visit", "expected_http", "code", "reason"),
    [
        pytest.param(Visit(origin="https://evil.example"), (400, "origin not registered"),
                     grpc.StatusCode.PERMISSION_DENIED, "ORIGIN_NOT_REGISTERED", id="origin"),
        pytest.param(Visit(page_url="/relative"), (400, "invalid page url"), BAD,
                     "INVALID_PAGE_URL", id="page-url"),
        pytest.param(Visit(user_agent="curl/8.5.0"), (400, "bot"), BAD, "BOT", id="bot"),
    ],
)  # fmt: skip
@pytest.mark.usefixtures("session")
async def test_page_view_rules_apply(
    send: Send, mongo: AsyncDatabase[Document], visit: Visit, expected_http: tuple[int, str],
    code: grpc.StatusCode, reason: str,
) -> None:  # fmt: skip
    assert_refused(await send(Custom("click", b"{}", visit=visit)), expected_http, code, reason)
    assert await _stored(mongo) == []


async def test_event_sent_with_the_first_page_view_is_stored(
    send: Send, transport: str, http: HttpClient, stub: pb_grpc.EventServiceAsyncStub,
    mongo: AsyncDatabase[Document],
) -> None:  # fmt: skip
    before = awaiting_session()

    async def pageview_a_little_later() -> Answer:
        await until(lambda: awaiting_session() > before, what="the event waits for its session")
        if transport == "http":
            return await send_http(http, Visit())
        return await send_grpc(stub, Visit())

    event, pageview = await asyncio.gather(
        send(Custom("click", b'{"first": true}')), pageview_a_little_later()
    )
    assert event.ok
    assert pageview.ok
    [stored] = await _stored(mongo)
    session = await mongo.sessions.find_one({})
    assert session is not None
    assert stored["session_uuid"] == session["session_uuid"]


async def test_event_finds_a_session_begun_by_another_instance(
    settings: Settings, user_agents: Any, http: HttpClient, mongo: AsyncDatabase[Document]
) -> None:
    other = create_server(settings, core_deps(settings, user_agents), address="127.0.0.1:0")
    await other.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{other.port}") as channel:
            other_stub = pb_grpc.EventServiceStub(channel)
            before = awaiting_session()
            waiting = asyncio.create_task(send_custom_http(http, Custom("click")))
            await until(lambda: awaiting_session() > before, what="the event waits")
            assert (await send_grpc(other_stub, Visit())).ok
            assert (await waiting).ok
    finally:
        await other.stop(grace=0)
    [event] = await _stored(mongo)
    session = await mongo.sessions.find_one({})
    assert session is not None
    assert event["session_uuid"] == session["session_uuid"]


async def _grpc_error(call: Awaitable[object]) -> PrismeError:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return error_from_rpc(exc)
    raise AssertionError("the call succeeded")


async def test_missing_context_is_invalid_argument(stub: pb_grpc.EventServiceAsyncStub) -> None:
    error = await _grpc_error(stub.SendPageView(pb.SendPageViewRequest()))
    assert (error.code, error.reason) == (BAD, "MISSING_CONTEXT")


async def test_wrong_token_is_unauthenticated(stub: pb_grpc.EventServiceAsyncStub) -> None:
    error = await _grpc_error(
        stub.SendPageView(
            pb.SendPageViewRequest(context=Visit().context()),
            metadata=(("authorization", f"Bearer {TOKEN}x"),),
        )
    )
    assert error.code == grpc.StatusCode.UNAUTHENTICATED
