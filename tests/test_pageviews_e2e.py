"""Page views end to end (HTTP → gRPC → real store, and gRPC directly): the status matrix
of reference §1.7 as amended by DESIGN §9, and the stored documents of DESIGN §3."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import event_service_pb2_grpc as pb_grpc
from prisme_core.server import CoreServer, create_server
from prisme_core.settings import Settings
from prisme_http.app import create_app
from pymongo.asynchronous.database import AsyncDatabase

from tests.conftest import changed, core_deps, facade_config
from tests.support import LEAKS_REFUSED_SOCKETS, AiohttpClient, Document, HttpClient
from tests.transports import (
    Answer,
    Custom,
    Visit,
    send_custom_grpc,
    send_custom_http,
    send_grpc,
    send_http,
)

HEADLESS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/120.0.0.0 Safari/537.36"
)


@pytest.fixture(params=["http", "grpc"])
def send(
    request: pytest.FixtureRequest, http: HttpClient, stub: pb_grpc.EventServiceAsyncStub
) -> Any:
    if request.param == "http":
        return lambda visit: send_http(http, visit)
    return lambda visit: send_grpc(stub, visit)


REFUSALS = [
    pytest.param(
        Visit(origin="https://evil.example"),
        Answer(
            False,
            400,
            "origin not registered",
            grpc.StatusCode.PERMISSION_DENIED,
            "ORIGIN_NOT_REGISTERED",
        ),
        id="origin-not-registered",
    ),
    pytest.param(
        Visit(origin=""),
        Answer(
            False,
            400,
            "origin not registered",
            grpc.StatusCode.PERMISSION_DENIED,
            "ORIGIN_NOT_REGISTERED",
        ),
        id="origin-missing",
    ),
    pytest.param(
        Visit(document_referrer="not a url"),
        Answer(
            False,
            400,
            "invalid document referrer",
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_DOCUMENT_REFERRER",
        ),
        id="document-referrer-invalid",
    ),
    pytest.param(
        Visit(document_referrer="/relative"),
        Answer(
            False,
            400,
            "invalid document referrer",
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_DOCUMENT_REFERRER",
        ),
        id="document-referrer-relative",
    ),
    pytest.param(
        Visit(page_url=""),
        Answer(
            False, 400, "invalid page url", grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_URL"
        ),
        id="page-url-missing",
    ),
    pytest.param(
        Visit(page_url="/hello"),
        Answer(
            False, 400, "invalid page url", grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_URL"
        ),
        id="page-url-relative",
    ),
    pytest.param(
        Visit(page_url="http://bad host/"),
        Answer(
            False, 400, "invalid page url", grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_URL"
        ),
        id="page-url-invalid",
    ),
    pytest.param(
        Visit(
            user_agent="Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
        ),
        Answer(False, 400, "bot", grpc.StatusCode.INVALID_ARGUMENT, "BOT"),
        id="bot-crawler",
    ),
    pytest.param(
        Visit(user_agent="curl/8.5.0"),
        Answer(False, 400, "bot", grpc.StatusCode.INVALID_ARGUMENT, "BOT"),
        id="bot-http-tool",
    ),
    pytest.param(
        Visit(user_agent=HEADLESS),
        Answer(False, 400, "bot", grpc.StatusCode.INVALID_ARGUMENT, "BOT"),
        id="bot-headless-browser",
    ),
]


@pytest.mark.parametrize(("visit", "expected"), REFUSALS)
async def test_refused_pageviews_store_nothing(
    send: Any, request: pytest.FixtureRequest, visit: Visit, expected: Answer,
    mongo: AsyncDatabase[Document],
) -> None:  # fmt: skip
    answer = await send(visit)
    if answer.http_status is not None:
        assert (answer.http_status, answer.error) == (expected.http_status, expected.error)
    else:
        assert (answer.grpc_code, answer.reason) == (expected.grpc_code, expected.reason)
    assert await mongo.pageviews.count_documents({}) == 0
    assert await mongo.sessions.count_documents({}) == 0


async def test_accepted_pageview_and_its_session_are_stored_exactly(
    send: Any, mongo: AsyncDatabase[Document]
) -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    visit = Visit(
        page_url="HTTP://LocalHost:8080//blog/../Post/?utm_medium=mail&ref=newsletter#top",
        document_referrer="https://www.Search.example:443/?q=prisme",
        client_ip="8.8.8.8",
    )
    assert (await send(visit)).ok
    pageview = await mongo.pageviews.find_one({}, {"_id": 0})
    session = await mongo.sessions.find_one({}, {"_id": 0})
    assert pageview is not None
    assert session is not None
    expected_attributes = {
        "domain": "localhost:8080",
        "referrer_domain": "www.search.example:443",
        "utm_source": "newsletter",
        "utm_medium": "mail",
        "utm_campaign": "",
        "utm_term": "",
        "utm_content": "",
        "browser_family": "Firefox",
        "operating_system": "Linux",
        "device": "Other",
        "country_code": "US",
    }
    assert pageview == expected_attributes | {
        "timestamp": pageview["timestamp"],
        "path": "/Post",
        "status": 200,
        "visitor_id": pageview["visitor_id"],
        "session_uuid": pageview["session_uuid"],
    }
    assert re.fullmatch(r"prisme_[0-9A-F]{16}", pageview["visitor_id"])
    assert isinstance(pageview["session_uuid"], uuid.UUID)
    assert pageview["session_uuid"].version == 7
    assert pageview["timestamp"].tzinfo is not None
    assert before <= pageview["timestamp"] <= datetime.now(UTC)
    assert session == expected_attributes | {
        "session_uuid": pageview["session_uuid"],
        "visitor_id": pageview["visitor_id"],
        "entry_path": "/Post",
        "exit_path": "/Post",
        "entry_timestamp": pageview["timestamp"],
        "exit_timestamp": pageview["timestamp"],
        "pageviews": 1,
        "device_id": session["device_id"],
    }


async def test_internal_navigation_continues_the_session(
    send: Any, core: CoreServer, mongo: AsyncDatabase[Document]
) -> None:
    assert (await send(Visit(page_url="http://localhost/a?utm_source=ads"))).ok
    assert (
        await send(Visit(page_url="http://localhost/b", document_referrer="http://localhost/a"))
    ).ok
    assert (
        await send(Visit(page_url="http://localhost/c", document_referrer="http://localhost/b"))
    ).ok
    pageviews = await mongo.pageviews.find({}, {"_id": 0}).sort("timestamp").to_list()
    assert [p["path"] for p in pageviews] == ["/a", "/b", "/c"]
    assert len({p["session_uuid"] for p in pageviews}) == 1
    assert {p["utm_source"] for p in pageviews} == {"ads"}
    await core.flush()  # flushes the written-behind session progress
    session = await mongo.sessions.find_one({})
    assert session is not None
    assert (session["entry_path"], session["exit_path"], session["pageviews"]) == ("/a", "/c", 3)
    assert session["exit_timestamp"] == pageviews[-1]["timestamp"]


async def test_direct_visit_starts_a_new_session_with_the_same_visitor(
    send: Any, mongo: AsyncDatabase[Document]
) -> None:
    assert (await send(Visit(page_url="http://localhost/a"))).ok
    assert (await send(Visit(page_url="http://localhost/b"))).ok  # the same page is a reload
    first, second = await mongo.pageviews.find({}).sort("timestamp").to_list()
    assert first["session_uuid"] != second["session_uuid"]
    assert first["visitor_id"] == second["visitor_id"]
    assert await mongo.sessions.count_documents({}) == 2


async def test_internal_navigation_without_a_session_starts_one(
    send: Any, mongo: AsyncDatabase[Document]
) -> None:
    answer = await send(Visit(document_referrer="http://localhost/elsewhere"))
    assert answer.ok
    session = await mongo.sessions.find_one({})
    assert session is not None
    assert session["referrer_domain"] == "localhost"


async def test_untrusted_grpc_caller_cannot_choose_its_ip(
    core_target: str, mongo: AsyncDatabase[Document]
) -> None:
    async with grpc.aio.insecure_channel(core_target) as channel:
        stub = pb_grpc.EventServiceStub(channel)
        await stub.SendPageView(
            pb.SendPageViewRequest(context=Visit(client_ip="8.8.8.8").context())
        )
    session = await mongo.sessions.find_one({})
    assert session is not None
    assert session["country_code"] == "XX"  # its peer, 127.0.0.1, not the claimed 8.8.8.8


async def test_concurrent_pageviews_of_one_visitor_are_decided_one_at_a_time(
    http: HttpClient, mongo: AsyncDatabase[Document], core: CoreServer
) -> None:
    """Twenty tabs opened at once from one page: the first continues its session, each of the
    others begins one (no tab shows the page it came from any more), and none is lost."""
    assert (await send_http(http, Visit(page_url="http://localhost/start"))).ok
    answers = await asyncio.gather(
        *(
            send_http(
                http,
                Visit(
                    page_url=f"http://localhost/p{i}", document_referrer="http://localhost/start"
                ),
            )
            for i in range(20)
        )
    )
    assert all(answer.ok for answer in answers)
    await core.flush()
    sessions = await mongo.sessions.find({}).to_list()
    assert len(sessions) == 20
    assert sorted(s["pageviews"] for s in sessions) == [1] * 19 + [2]
    assert await mongo.pageviews.count_documents({}) == 21
    assert {s["referrer_domain"] for s in sessions if s["entry_path"] != "/start"} == {"localhost"}


async def test_wrong_method_is_405_with_allow(http: HttpClient) -> None:
    response = await http.get("/api/v1/events/pageviews")
    assert response.status == 405
    assert response.headers["Allow"] == "POST"


async def test_unknown_events_path_is_404(http: HttpClient) -> None:
    response = await http.post("/api/v1/events/unknown", headers=Visit().headers())
    assert response.status == 404


UNREACHABLE = "mongodb://127.0.0.1:1/?retryWrites=false"


@LEAKS_REFUSED_SOCKETS
async def test_store_down_is_503_over_http_and_unavailable_over_grpc_for_both_kinds(
    settings: Settings, user_agents: Any, aiohttp_client: AiohttpClient
) -> None:
    down = changed(settings, "store", mongodb_uri=UNREACHABLE, timeout=0.5)
    core = create_server(down, core_deps(down, user_agents), address="127.0.0.1:0")
    await core.start()
    try:
        client = await aiohttp_client(create_app(facade_config(f"127.0.0.1:{core.port}")))
        started = time.monotonic()
        for answer in (
            await send_http(client, Visit()),
            await send_custom_http(client, Custom("click")),
        ):
            assert (answer.http_status, answer.error) == (503, "store unavailable")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{core.port}") as channel:
            stub = pb_grpc.EventServiceStub(channel)
            for answer in (await send_grpc(stub, Visit()), await send_custom_grpc(stub, Custom())):
                assert (answer.grpc_code, answer.reason) == (
                    grpc.StatusCode.UNAVAILABLE,
                    "STORE_UNAVAILABLE",
                )
        assert time.monotonic() - started < 8.0  # four calls, each bounded by the 0.5 s timeout
    finally:
        await core.stop(grace=0)
        gc.collect()


@LEAKS_REFUSED_SOCKETS
async def test_facade_answers_503_at_its_own_deadline(
    settings: Settings, user_agents: Any, aiohttp_client: AiohttpClient
) -> None:
    slow = changed(settings, "store", mongodb_uri=UNREACHABLE, timeout=5.0)
    core = create_server(slow, core_deps(slow, user_agents), address="127.0.0.1:0")
    await core.start()
    try:
        config = dataclasses.replace(facade_config(f"127.0.0.1:{core.port}"), pageview_timeout=0.5)
        client = await aiohttp_client(create_app(config))
        started = time.monotonic()
        answer = await send_http(client, Visit())
        assert (answer.http_status, answer.error) == (503, "deadline exceeded")
        assert time.monotonic() - started < 1.5
    finally:
        await core.stop(grace=0)
        gc.collect()
