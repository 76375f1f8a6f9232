"""What current Prisme clients send (DESIGN §11), through both doors against the real store:
the page's status, the site's own visitor id, client hints, wildcard origins, HTTP tools."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from prisme.v1 import event_service_pb2_grpc as pb_grpc
from prisme_core.server import CoreServer, create_server
from prisme_core.settings import Settings, SettingsError
from prisme_http.app import create_app
from pymongo.asynchronous.database import AsyncDatabase

from tests.conftest import changed, core_deps, facade_config
from tests.support import AiohttpClient, Document, HttpClient
from tests.transports import (
    Answer,
    Custom,
    Visit,
    send_custom_grpc,
    send_custom_http,
    send_grpc,
    send_http,
)

BAD = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(params=["http", "grpc"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def send(transport: str, http: HttpClient, stub: pb_grpc.EventServiceAsyncStub) -> Any:
    if transport == "http":
        return lambda visit: send_http(http, visit)
    return lambda visit: send_grpc(stub, visit)


@pytest.fixture
def send_custom(transport: str, http: HttpClient, stub: pb_grpc.EventServiceAsyncStub) -> Any:
    if transport == "http":
        return lambda event: send_custom_http(http, event)
    return lambda event: send_custom_grpc(stub, event)


def assert_refused(answer: Answer, error: str, reason: str) -> None:
    if answer.http_status is not None:
        assert (answer.http_status, answer.error) == (400, error)
    else:
        assert (answer.grpc_code, answer.reason) == (BAD, reason)


# --- the page's status --------------------------------------------------------------------


@pytest.mark.parametrize(("sent", "stored"), [("", 200), ("404", 404), ("100", 100), ("599", 599)])
async def test_the_status_is_stored_with_the_page_view(
    send: Any, mongo: AsyncDatabase[Document], sent: str, stored: int
) -> None:
    assert (await send(Visit(status=sent))).ok
    [pageview] = await mongo.pageviews.find({}).to_list()
    assert pageview["status"] == stored


@pytest.mark.parametrize("sent", ["99", "600", "65535", "0", "abc", "2OO", "-200", "20.0", "1e2"])
async def test_a_status_that_is_not_an_http_status_is_refused(
    send: Any, mongo: AsyncDatabase[Document], sent: str
) -> None:
    assert_refused(await send(Visit(status=sent)), "invalid status", "INVALID_STATUS")
    assert await mongo.pageviews.count_documents({}) == 0


# --- the site's own visitor id ------------------------------------------------------------


async def test_a_given_visitor_id_names_the_new_session(
    send: Any, mongo: AsyncDatabase[Document]
) -> None:
    assert (await send(Visit(visitor_id="user-42"))).ok
    [pageview] = await mongo.pageviews.find({}).to_list()
    [session] = await mongo.sessions.find({}).to_list()
    assert pageview["visitor_id"] == session["visitor_id"] == "user-42"


async def test_another_visitor_id_on_a_continued_session_replaces_it_from_then_on(
    send: Any, send_custom: Any, core: CoreServer, mongo: AsyncDatabase[Document]
) -> None:
    assert (await send(Visit(page_url="http://localhost/a"))).ok
    inside = Visit(page_url="http://localhost/b", document_referrer="http://localhost/a")
    assert (await send(Visit(**{**inside.__dict__, "visitor_id": "signed-in-7"}))).ok
    assert (await send_custom(Custom(visit=Visit(page_url="http://localhost/b")))).ok
    await core.flush()
    first, second = await mongo.pageviews.find({}).sort("timestamp").to_list()
    [event] = await mongo.events_custom.find({}).to_list()
    [session] = await mongo.sessions.find({}).to_list()
    assert first["session_uuid"] == second["session_uuid"] == session["session_uuid"]
    assert first["visitor_id"].startswith("prisme_")  # earlier events keep the old id
    assert second["visitor_id"] == event["visitor_id"] == session["visitor_id"] == "signed-in-7"


@pytest.mark.parametrize(
    "sent",
    ["a" * 129, "tab\tinside", "é", "new\nline"],
    ids=["long", "tab", "non-ascii", "newline"],
)
async def test_a_visitor_id_that_is_not_printable_ascii_is_refused(
    send: Any, transport: str, mongo: AsyncDatabase[Document], sent: str
) -> None:
    if transport == "http" and sent in {"é", "new\nline"}:
        pytest.skip("not an HTTP header value")
    assert_refused(await send(Visit(visitor_id=sent)), "invalid visitor id", "INVALID_VISITOR_ID")
    assert await mongo.pageviews.count_documents({}) == 0


async def test_the_longest_visitor_id_is_taken(send: Any, mongo: AsyncDatabase[Document]) -> None:
    assert (await send(Visit(visitor_id="~" * 128))).ok
    [session] = await mongo.sessions.find({}).to_list()
    assert session["visitor_id"] == "~" * 128


# --- client hints -------------------------------------------------------------------------

CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)


@pytest.mark.parametrize(
    ("platform", "model", "system", "device"),
    [
        pytest.param('"macOS"', "", "Mac OS X", "Mac", id="macos-named-as-the-parser-does"),
        pytest.param('"Chromium OS"', "", "Chrome OS", "Mac", id="chromium-os"),
        pytest.param('"Windows"', '"Pixel 7"', "Windows", "Pixel 7", id="model-unquoted"),
        pytest.param('"Fuchsia"', '""', "Mac OS X", "Mac", id="unknown-platform-empty-model"),
        pytest.param("macOS", "Pixel 7", "Mac OS X", "Mac", id="not-sf-strings-ignored"),
        pytest.param('"Linux"', '"a\\"b"', "Linux", 'a"b', id="escapes"),
    ],
)
async def test_client_hints_name_the_system_and_device_of_a_new_session(
    send: Any, mongo: AsyncDatabase[Document], platform: str, model: str, system: str, device: str
) -> None:
    visit = Visit(user_agent=CHROME_MAC, ch_ua_platform=platform, ch_ua_model=model)
    assert (await send(visit)).ok
    [session] = await mongo.sessions.find({}).to_list()
    [pageview] = await mongo.pageviews.find({}).to_list()
    assert (session["operating_system"], session["device"]) == (system, device)
    assert (pageview["operating_system"], pageview["device"]) == (system, device)


async def test_client_hints_do_not_change_a_continued_session(
    send: Any, mongo: AsyncDatabase[Document]
) -> None:
    assert (await send(Visit(user_agent=CHROME_MAC, page_url="http://localhost/a"))).ok
    later = Visit(user_agent=CHROME_MAC, page_url="http://localhost/b",
                  document_referrer="http://localhost/a", ch_ua_platform='"Windows"')  # fmt: skip
    assert (await send(later)).ok
    systems = {p["operating_system"] for p in await mongo.pageviews.find({}).to_list()}
    assert systems == {"Mac OS X"}


async def test_the_tracker_asks_for_exactly_the_hints_read(http: HttpClient) -> None:
    response = await http.get("/static/m.js")
    assert response.headers["Accept-CH"] == "Sec-CH-UA-Model, Sec-CH-UA-Platform"
    cached = await http.get("/static/m.js", headers={"If-None-Match": response.headers["ETag"]})
    assert (cached.status, cached.headers["Accept-CH"]) == (304, response.headers["Accept-CH"])


# --- HTTP tools ---------------------------------------------------------------------------

HTTP_LIBRARIES = [
    "curl/8.5.0",
    "Wget/1.21.4",
    "python-requests/2.32.3",
    "Python/3.11 aiohttp/3.10.5",
    "python-httpx/0.27.0",
    "Python-urllib/3.11",
    "Go-http-client/1.1",
    "okhttp/4.12.0",
    "Java/17.0.2",
    "Java-http-client/17.0.2",
    "Apache-HttpClient/4.5.14 (Java/17.0.2)",
    "axios/1.7.2",
    "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
    "node",
    "undici",
    "Deno/1.44.0",
    "Bun/1.1.13",
    "Ruby",
    "Faraday v2.9.0",
    "GuzzleHttp/7",
    "PostmanRuntime/7.39.0",
    "insomnia/2023.5.8",
    "HTTPie/3.2.2",
    "Dart/3.4 (dart:io)",
    "RestSharp/110.2.0.0",
    "libwww-perl/6.72",
]


@pytest.mark.parametrize("agent", HTTP_LIBRARIES)
async def test_every_http_library_is_a_bot(
    send: Any, mongo: AsyncDatabase[Document], agent: str
) -> None:
    assert_refused(await send(Visit(user_agent=agent)), "bot", "BOT")
    assert await mongo.pageviews.count_documents({}) == 0


# --- wildcard origins ---------------------------------------------------------------------


@pytest.fixture
async def wildcard_http(settings: Settings, user_agents: Any, aiohttp_client: AiohttpClient) -> Any:
    wild = changed(settings, "limits", origins=frozenset({"*.example.org", "localhost"}))
    core = create_server(wild, core_deps(wild, user_agents), address="127.0.0.1:0")
    await core.start()
    yield await aiohttp_client(create_app(facade_config(f"127.0.0.1:{core.port}")))
    await core.stop(grace=1)


@pytest.mark.parametrize(
    ("origin", "admitted"),
    [
        ("https://shop.example.org", True),
        ("https://a.b.example.org:8443", True),
        ("https://example.org", False),
        ("https://badexample.org", False),
        ("https://example.org.evil.com", False),
        ("http://localhost", True),
    ],
)
async def test_a_wildcard_admits_every_subdomain_and_nothing_else(
    wildcard_http: HttpClient, origin: str, admitted: bool
) -> None:
    host = origin.partition("://")[2].rpartition(":")[0] or origin.partition("://")[2]
    visit = Visit(origin=origin, page_url=f"https://{host}/")
    answer = await send_http(wildcard_http, visit)
    assert answer.ok is admitted, answer


@pytest.mark.parametrize(
    "entry", ["*.com", "*example.org", "**.example.org", "a.*.example.org", "*"]
)
def test_a_malformed_wildcard_fails_at_start(entry: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"PRISME_ORIGIN_REGISTRY_ORIGINS": f"localhost,{entry}"})
    assert refused.value.variable == "PRISME_ORIGIN_REGISTRY_ORIGINS"
