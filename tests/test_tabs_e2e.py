"""Several live sessions per device (tabs), DESIGN §11, through both doors against the real
store: each tab its own session, reloads counted, events joining the tab that shows their
page. The core's clock is the test's, so the reload window passes without waiting."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from prisme.v1 import event_service_pb2_grpc as pb_grpc
from prisme_core.ports import FixedClock
from prisme_core.server import CoreServer
from prisme_core.settings import Settings
from pymongo.asynchronous.database import AsyncDatabase

from tests.support import Document, HttpClient
from tests.transports import (
    Click,
    Custom,
    Visit,
    send_click_grpc,
    send_click_http,
    send_custom_grpc,
    send_custom_http,
    send_grpc,
    send_http,
)

SITE = "http://localhost"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def core_clock(clock: FixedClock) -> FixedClock:
    """The core keeps the test's time."""
    return clock


@pytest.fixture(params=["http", "grpc"])
def doors(
    request: pytest.FixtureRequest, http: HttpClient, stub: pb_grpc.EventServiceAsyncStub
) -> Any:
    if request.param == "http":
        return send_http, send_custom_http, send_click_http, http
    return send_grpc, send_custom_grpc, send_click_grpc, stub


@pytest.fixture
def view(doors: Any, clock: FixedClock, mongo: AsyncDatabase[Document]) -> Any:
    send, _, _, client = doors

    async def view(page: str, came_from: str = "", **delay: float) -> Any:
        """A page view of ``page`` a second (or ``delay``) after the last, from ``came_from``
        (a path on the site); returns its session id, read from the store."""
        clock.advance(**(delay or {"seconds": 1}))
        referrer = SITE + came_from if came_from else ""
        answer = await send(client, Visit(page_url=SITE + page, document_referrer=referrer))
        assert answer.ok, answer
        [stored] = await mongo.pageviews.find({}).sort("timestamp", -1).limit(1).to_list()
        assert stored["path"] == page
        return stored["session_uuid"]

    return view


async def test_two_tabs_are_two_sessions_and_a_reload_one_more_page_view(
    view: Any, core: CoreServer, mongo: AsyncDatabase[Document]
) -> None:
    left = await view("/left")
    right = await view("/right")
    assert left != right
    assert await view("/right") == right  # a reload of the entry page: counted
    assert await view("/p2", "/left") == left
    assert await view("/p2", "/right") == right
    assert await view("/p2", "/right") == right  # a reload keeps the referrer: counted
    assert await view("/p3", "/p2") == right  # both show /p2: the most recently active
    await core.flush()
    sessions = {s["session_uuid"]: s async for s in mongo.sessions.find({})}
    assert set(sessions) == {left, right}
    assert (sessions[left]["pageviews"], sessions[right]["pageviews"]) == (2, 5)
    assert (sessions[left]["exit_path"], sessions[right]["exit_path"]) == ("/p2", "/p3")


async def test_a_direct_page_view_is_a_reload_only_within_the_window(
    view: Any, settings: Settings
) -> None:
    window = settings.sessions.reload_window
    first = await view("/p1")
    assert await view("/p1", seconds=window - 1) == first
    assert await view("/p1", seconds=window + 1) != first


async def test_a_fork_whose_page_no_tab_shows_begins_a_session_from_the_site(
    view: Any, mongo: AsyncDatabase[Document]
) -> None:
    first = await view("/p1")
    await view("/p2", "/p1")
    assert await view("/fork0", "/p2") == first
    fork = await view("/fork1", "/p2")
    assert fork != first
    session = await mongo.sessions.find_one({"session_uuid": fork})
    assert session is not None
    assert (session["entry_path"], session["referrer_domain"]) == ("/fork1", "localhost")


async def test_events_join_the_tab_that_shows_their_page_else_the_most_recent(
    view: Any, doors: Any, clock: FixedClock, mongo: AsyncDatabase[Document]
) -> None:
    _, send_custom, send_click, client = doors
    left = await view("/left")
    right = await view("/right")
    for page in ("/left", "/right", "/elsewhere"):
        visit = Visit(page_url=SITE + page)
        clock.advance(seconds=1)
        assert (await send_custom(client, Custom(visit=visit))).ok
        assert (await send_click(client, Click(visit=visit))).ok
        assert (await send_click(client, Click(kind="file-downloads", visit=visit))).ok
    expected = [(left, "/left"), (right, "/right"), (right, "/elsewhere")]
    for collection in ("events_custom", "outbound_link_clicks", "file_downloads"):
        stored = await mongo[collection].find({}).sort("timestamp").to_list()
        assert [(e["session_uuid"], e["path"]) for e in stored] == expected, collection
