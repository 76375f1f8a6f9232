"""Outbound-link clicks and file downloads (DESIGN §11), through both doors and in
`SendEvents`, against the real store."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import event_service_pb2_grpc as pb_grpc
from prisme_client import error_from_status
from prisme_core.server import CoreServer
from pymongo.asynchronous.database import AsyncDatabase

from tests.support import Document, HttpClient
from tests.transports import (
    TRUSTED,
    Answer,
    Click,
    Visit,
    send_click_grpc,
    send_click_http,
    send_http,
)

COLLECTION = {"outbound-links": ("outbound_link_clicks", "link"),
              "file-downloads": ("file_downloads", "url")}  # fmt: skip


@pytest.fixture(params=["http", "grpc"])
def click(
    request: pytest.FixtureRequest, http: HttpClient, stub: pb_grpc.EventServiceAsyncStub
) -> Any:
    if request.param == "http":
        return lambda event: send_click_http(http, event)
    return lambda event: send_click_grpc(stub, event)


@pytest.fixture
async def session(http: HttpClient, mongo: AsyncDatabase[Document]) -> Document:
    assert (await send_http(http, Visit(page_url="http://localhost/docs"))).ok
    found = await mongo.sessions.find_one({})
    assert found is not None
    return found


def assert_refused(answer: Answer, error: str, reason: str) -> None:
    if answer.http_status is not None:
        assert (answer.http_status, answer.error) == (400, error)
    else:
        assert (answer.grpc_code, answer.reason) == (grpc.StatusCode.INVALID_ARGUMENT, reason)


@pytest.mark.parametrize("kind", ["outbound-links", "file-downloads"])
async def test_a_click_joins_the_session_and_stores_the_normalised_target(
    click: Any, session: Document, core: CoreServer, mongo: AsyncDatabase[Document], kind: str
) -> None:
    visit = Visit(page_url="http://localhost/docs/page")
    target = "HTTPS://Files.Example.COM:8443/a//b/../report.pdf?v=2#p3"
    assert (await click(Click(target, kind, visit))).ok
    collection, field = COLLECTION[kind]
    [stored] = await mongo[collection].find({}, {"_id": 0}).to_list()
    assert stored == {
        "timestamp": stored["timestamp"],
        "domain": "localhost",
        "path": "/docs/page",
        "visitor_id": session["visitor_id"],
        "session_uuid": session["session_uuid"],
        field: "https://files.example.com:8443/a/report.pdf?v=2#p3",
    }
    await core.flush()
    after = await mongo.sessions.find_one({})
    assert after is not None
    assert (after["pageviews"], after["exit_path"]) == (1, "/docs")  # the session is unchanged


async def test_an_outbound_link_to_the_pages_own_host_is_refused(
    click: Any, session: Document, mongo: AsyncDatabase[Document]
) -> None:
    answer = await click(Click("http://localhost/elsewhere"))
    assert_refused(answer, "internal link", "INTERNAL_LINK")
    assert await mongo.outbound_link_clicks.count_documents({}) == 0


async def test_a_download_from_the_pages_own_host_is_recorded(
    click: Any, session: Document, mongo: AsyncDatabase[Document]
) -> None:
    assert (await click(Click("http://localhost/report.pdf", "file-downloads"))).ok
    [stored] = await mongo.file_downloads.find({}).to_list()
    assert stored["url"] == "http://localhost/report.pdf"


@pytest.mark.parametrize("kind", ["outbound-links", "file-downloads"])
@pytest.mark.parametrize("target", ["", "/relative", "not a url", "mailto:a@b.example"])
async def test_a_target_that_is_not_an_absolute_url_is_refused(
    click: Any, session: Document, mongo: AsyncDatabase[Document], kind: str, target: str
) -> None:
    assert_refused(await click(Click(target, kind)), "invalid link", "INVALID_LINK")
    collection, _ = COLLECTION[kind]
    assert await mongo[collection].count_documents({}) == 0


@pytest.mark.parametrize("kind", ["outbound-links", "file-downloads"])
async def test_a_ping_names_the_page_and_the_target(
    click: Any, session: Document, mongo: AsyncDatabase[Document], kind: str
) -> None:
    ping = Click("PING", kind, ping_from="http://localhost/docs", ping_to="https://x.example/f")
    assert (await click(ping)).ok
    collection, field = COLLECTION[kind]
    [stored] = await mongo[collection].find({}).to_list()
    assert (stored["path"], stored[field]) == ("/docs", "https://x.example/f")


async def test_a_ping_without_ping_from_is_from_the_origins_root(
    click: Any, session: Document, mongo: AsyncDatabase[Document]
) -> None:
    """An HTTPS page's cross-origin ping carries no Ping-From (nor Referer)."""
    ping = Click("PING", visit=Visit(page_url=""), ping_to="https://x.example/")
    started = time.monotonic()
    assert (await click(ping)).ok
    assert time.monotonic() - started < 0.4  # found at once, without the session wait
    [stored] = await mongo.outbound_link_clicks.find({}).to_list()
    assert (stored["path"], stored["session_uuid"]) == ("/", session["session_uuid"])


async def test_a_click_without_a_session_is_refused_after_the_wait(
    click: Any, mongo: AsyncDatabase[Document]
) -> None:
    started = time.monotonic()
    answer = await click(Click())
    if answer.http_status is not None:
        assert (answer.http_status, answer.error) == (400, "session not found")
    else:
        assert answer.reason == "SESSION_NOT_FOUND"
    assert time.monotonic() - started >= 0.45  # PRISME_API_EVENTS_TIMEOUT is 0.5 s here
    assert await mongo.outbound_link_clicks.count_documents({}) == 0


async def test_a_bot_click_is_refused(click: Any, session: Document) -> None:
    assert_refused(await click(Click(visit=Visit(user_agent="curl/8.5.0"))), "bot", "BOT")


async def test_clicks_travel_in_send_events_with_a_result_each(
    stub: pb_grpc.EventServiceAsyncStub, session: Document, mongo: AsyncDatabase[Document]
) -> None:
    context = Visit().context()
    events = [
        pb.Event(outbound_link=pb.SendOutboundLinkRequest(context=context, link="https://a.example/")),
        pb.Event(file_download=pb.SendFileDownloadRequest(context=context, url="https://b.example/f.zip")),
        pb.Event(outbound_link=pb.SendOutboundLinkRequest(context=context, link="http://localhost/x")),
    ]  # fmt: skip
    response = await stub.SendEvents(pb.SendEventsRequest(events=events), metadata=TRUSTED)
    reasons = [error_from_status(s).reason if s.code else None for s in response.results]  # type: ignore[union-attr]
    assert reasons == [None, None, "INTERNAL_LINK"]
    assert await mongo.outbound_link_clicks.count_documents({}) == 1
    assert await mongo.file_downloads.count_documents({}) == 1
