"""The noscript routes (DESIGN §11): pixels for page views and custom events, a redirecting
outbound link, against the real store; and `query_properties` over gRPC."""

from __future__ import annotations

import time
from typing import Any

import pytest
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import event_service_pb2_grpc as pb_grpc
from prisme_core.server import create_server
from prisme_core.settings import Settings
from prisme_http.app import create_app
from prisme_http.noscript import GIF, NO_STORE
from pymongo.asynchronous.database import AsyncDatabase

from tests.conftest import changed, core_deps, facade_config
from tests.support import FIREFOX, AiohttpClient, Document, HttpClient
from tests.transports import TRUSTED, Visit, send_grpc, send_http

PIXEL = "/api/v1/noscript/events/pageviews"
BROWSER = {"User-Agent": FIREFOX, "X-Forwarded-For": "84.200.69.80"}
"""An ``<img>`` or a link: no Origin, no X-Prisme-* headers."""


def _page(**params: str) -> dict[str, str]:
    return {"referrer": "http://localhost/a"} | params


async def test_a_pixel_records_the_page_view_and_answers_a_gif(
    http: HttpClient, mongo: AsyncDatabase[Document]
) -> None:
    headers = BROWSER | {"Origin": "http://localhost"}
    params = _page(status="404", **{"visitor-id": "v-1"})
    response = await http.get(PIXEL, params=params, headers=headers)
    assert response.status == 200
    assert response.headers["Content-Type"] == "image/gif"
    assert response.headers["Cache-Control"] == NO_STORE
    assert await response.read() == GIF
    assert len(GIF) == 35
    assert GIF.startswith(b"GIF89a")
    [pageview] = await mongo.pageviews.find({}).to_list()
    assert (pageview["path"], pageview["status"], pageview["visitor_id"]) == ("/a", 404, "v-1")


async def test_a_pixel_without_origin_takes_it_from_the_referer(
    http: HttpClient, mongo: AsyncDatabase[Document]
) -> None:
    """A plain <img src> sends no Origin: Prisme at HEAD refuses every one of them."""
    response = await http.get(PIXEL, headers=BROWSER | {"Referer": "http://localhost:8080/p?x=1"})
    assert response.status == 200
    [pageview] = await mongo.pageviews.find({}).to_list()
    assert (pageview["domain"], pageview["path"]) == ("localhost:8080", "/p")


async def test_a_pixel_with_neither_origin_nor_referer_is_refused_uncached(
    http: HttpClient, mongo: AsyncDatabase[Document]
) -> None:
    response = await http.get(PIXEL, params=_page(), headers=BROWSER)
    assert response.status == 400
    assert (await response.json())["error"] == "origin not registered"
    assert response.headers["Cache-Control"] == NO_STORE
    assert await mongo.pageviews.count_documents({}) == 0


async def test_the_document_referrer_parameter_continues_the_session(
    http: HttpClient, mongo: AsyncDatabase[Document]
) -> None:
    origin = BROWSER | {"Origin": "http://localhost"}
    assert (await http.get(PIXEL, params=_page(), headers=origin)).status == 200
    later = {"referrer": "http://localhost/b", "document-referrer": "http://localhost/a"}
    assert (await http.get(PIXEL, params=later, headers=origin)).status == 200
    sessions = {p["session_uuid"] for p in await mongo.pageviews.find({}).to_list()}
    assert len(sessions) == 1


async def test_head_on_a_pixel_records_nothing(
    http: HttpClient, mongo: AsyncDatabase[Document]
) -> None:
    response = await http.head(
        PIXEL, params=_page(), headers=BROWSER | {"Origin": "http://localhost"}
    )
    assert response.status == 405
    assert await mongo.pageviews.count_documents({}) == 0


@pytest.fixture
async def session(http: HttpClient, mongo: AsyncDatabase[Document]) -> Document:
    assert (await send_http(http, Visit(page_url="http://localhost/a"))).ok
    found = await mongo.sessions.find_one({})
    assert found is not None
    return found


async def test_a_custom_pixel_takes_its_properties_from_prop_parameters(
    http: HttpClient, session: Document, mongo: AsyncDatabase[Document]
) -> None:
    params = _page(**{"prop-plan": '"pro"', "prop-seats": "3", "prop-trial": "true",
                      "prop-": "1", "other": "x"})  # fmt: skip
    response = await http.get("/api/v1/noscript/events/custom/signup", params=params,
                              headers=BROWSER | {"Origin": "http://localhost"})  # fmt: skip
    assert (response.status, response.headers["Content-Type"]) == (200, "image/gif")
    [event] = await mongo.events_custom.find({}).to_list()
    assert (event["name"], event["path"]) == ("signup", "/a")
    assert event["properties"] == {"plan": "pro", "seats": 3, "trial": True}
    assert event["session_uuid"] == session["session_uuid"]


@pytest.mark.parametrize("bad", ["pro", "{", '1, "x": 2', "NaN"])
async def test_one_invalid_prop_refuses_the_whole_event(
    http: HttpClient, session: Document, mongo: AsyncDatabase[Document], bad: str
) -> None:
    params = _page(**{"prop-ok": "1", "prop-bad": bad})
    response = await http.get("/api/v1/noscript/events/custom/signup", params=params,
                              headers=BROWSER | {"Origin": "http://localhost"})  # fmt: skip
    assert response.status == 400
    assert (await response.json())["error"] == "invalid json"
    assert await mongo.events_custom.count_documents({}) == 0


async def test_query_properties_over_grpc(
    stub: pb_grpc.EventServiceAsyncStub, session: Document, mongo: AsyncDatabase[Document]
) -> None:
    request = pb.SendCustomEventRequest(context=Visit(page_url="http://localhost/a").context(),
                                        name="n", query_properties={"k": "[1, 2]"})  # fmt: skip
    await stub.SendCustomEvent(request, metadata=TRUSTED)
    [event] = await mongo.events_custom.find({}).to_list()
    assert event["properties"] == {"k": [1, 2]}


OUTBOUND = "/api/v1/noscript/events/outbound-links"
LINK_PAGE = BROWSER | {"Referer": "http://localhost/a"}
"""A click on a link: the browser sends the page as Referer, no Origin."""


async def test_a_noscript_link_records_the_click_and_redirects(
    http: HttpClient, session: Document, mongo: AsyncDatabase[Document]
) -> None:
    target = "https://GitHub.com/prismelabs/analytics?tab=readme#top"
    response = await http.get(OUTBOUND, params={"url": target}, headers=LINK_PAGE,
                              allow_redirects=False)  # fmt: skip
    assert response.status == 302
    assert response.headers["Location"] == target
    assert response.headers["Cache-Control"] == NO_STORE
    [click] = await mongo.outbound_link_clicks.find({}).to_list()
    assert click["link"] == "https://github.com/prismelabs/analytics?tab=readme#top"
    assert (click["path"], click["session_uuid"]) == ("/a", session["session_uuid"])


@pytest.mark.parametrize(
    ("headers", "target"),
    [
        pytest.param(LINK_PAGE, "https://example.org/", id="no-session"),
        pytest.param(LINK_PAGE, "http://localhost/own", id="internal-link"),
        pytest.param(LINK_PAGE | {"User-Agent": "curl/8.5.0"}, "https://example.org/", id="bot"),
        pytest.param(
            {**BROWSER, "Origin": "http://localhost", "Referer": "not a url"},
            "https://example.org/",
            id="bad-page-url",
        ),
    ],
)
async def test_a_noscript_link_redirects_even_when_the_click_is_not_recorded(
    http: HttpClient, mongo: AsyncDatabase[Document], headers: dict[str, str], target: str
) -> None:
    started = time.monotonic()
    response = await http.get(OUTBOUND, params={"url": target}, headers=headers,
                              allow_redirects=False)  # fmt: skip
    assert (response.status, response.headers["Location"]) == (302, target)
    assert time.monotonic() - started < 2.0  # at most the session wait (0.5 s here)
    assert await mongo.outbound_link_clicks.count_documents({}) == 0


@pytest.mark.parametrize(
    "target", ["javascript:alert(1)", "ftp://example.org/f", "/relative", "//example.org/", ""]
)
async def test_a_noscript_link_follows_only_absolute_http_urls(
    http: HttpClient, session: Document, mongo: AsyncDatabase[Document], target: str
) -> None:
    response = await http.get(OUTBOUND, params={"url": target}, headers=LINK_PAGE,
                              allow_redirects=False)  # fmt: skip
    assert response.status == 400
    assert "Location" not in response.headers
    assert (await response.json())["error"] == "invalid link"
    assert await mongo.outbound_link_clicks.count_documents({}) == 0


async def test_a_noscript_link_from_an_unregistered_origin_is_not_an_open_redirect(
    http: HttpClient,
) -> None:
    headers = BROWSER | {"Referer": "https://evil.example/"}
    response = await http.get(OUTBOUND, params={"url": "https://phishing.example/"},
                              headers=headers, allow_redirects=False)  # fmt: skip
    assert response.status == 400
    assert "Location" not in response.headers


@pytest.fixture
async def limited(settings: Settings, user_agents: Any, aiohttp_client: AiohttpClient) -> Any:
    two = changed(settings, "limits", rate_limit_per_minute=2)
    core = create_server(two, core_deps(two, user_agents), address="127.0.0.1:0")
    await core.start()
    yield await aiohttp_client(create_app(facade_config(f"127.0.0.1:{core.port}")))
    await core.stop(grace=1)


async def test_script_and_noscript_share_one_rate_limit_and_a_limited_link_does_not_redirect(
    limited: HttpClient,
) -> None:
    assert (await send_http(limited, Visit(page_url="http://localhost/a"))).ok
    pixel = await limited.get(
        PIXEL, params=_page(), headers=BROWSER | {"Origin": "http://localhost"}
    )
    assert pixel.status == 200
    response = await limited.get(OUTBOUND, params={"url": "https://example.org/"},
                                 headers=LINK_PAGE, allow_redirects=False)  # fmt: skip
    assert response.status == 429
    assert "Location" not in response.headers


async def test_grpc_page_views_do_not_read_query_names(
    stub: pb_grpc.EventServiceAsyncStub, mongo: AsyncDatabase[Document]
) -> None:
    """The noscript parameters are HTTP spellings of the same fields."""
    assert (await send_grpc(stub, Visit(status="301", visitor_id="v"))).ok
    [pageview] = await mongo.pageviews.find({}).to_list()
    assert (pageview["status"], pageview["visitor_id"]) == (301, "v")
