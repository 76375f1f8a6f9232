"""The tracker script: how it is served, and what it does in a real browser on another origin."""

from __future__ import annotations

import asyncio
import gzip
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from prisme_core.server import CoreServer
from pymongo.asynchronous.database import AsyncDatabase

from tests.browser import DESKTOP_CHROME, chromium
from tests.support import Document, HttpClient, access_lines, serving_pages


@pytest.mark.parametrize("path", ["/static/wa.js", "/static/m.js"])
async def test_tracker_is_served_small_and_cacheable(http: HttpClient, path: str) -> None:
    response = await http.get(path)
    body = await response.read()
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/javascript"
    assert response.headers["Cache-Control"] == "public, max-age=3600"
    assert len(gzip.compress(body, 9)) < 3 * 1024  # minified and compressed
    assert b"/api/v1/events/pageviews" in body
    assert body == await (await http.get("/static/wa.js")).read()  # one script, two names
    head = await http.head(path)
    assert head.status == 200
    again = await http.get(path, headers={"If-None-Match": response.headers["ETag"]})
    assert again.status == 304


@pytest.fixture
def service_base(facade_port: int) -> str:
    """The façade on a real port, as a browser reaches it."""
    return f"http://127.0.0.1:{facade_port}"


PAGE = """<!doctype html>
<html><head><title>shop</title>
<script defer src="{service}/static/m.js"></script>
</head><body><h1>shop</h1></body></html>
"""


@pytest.fixture
async def site(service_base: str) -> AsyncIterator[str]:
    """A web site on another origin (``localhost`` vs the service's ``127.0.0.1``)."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE.format(service=service_base), content_type="text/html")

    async with serving_pages(page) as port:
        yield f"http://localhost:{port}"


async def _until(condition: object, mongo: AsyncDatabase[Document], within: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        pageviews = await mongo.pageviews.count_documents({})
        events = await mongo.events_custom.count_documents({})
        if (pageviews, events) == condition:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"store has {pageviews} page views and {events} events, not {condition}")


@pytest.mark.timeout(90)
async def test_tracker_in_a_real_browser_on_another_origin(
    site: str, core: CoreServer, mongo: AsyncDatabase[Document], tmp_path: Path,
    caplog: pytest.LogCaptureFixture, facade_app: web.Application,
) -> None:  # fmt: skip
    caplog.set_level(logging.INFO, logger="prisme.access")
    async with chromium(tmp_path / "profile") as browser:
        page = await browser.new_page()
        await page.goto(f"{site}/?utm_source=newsletter")
        await _until((1, 0), mongo)
        # Chromium keeps a preflight answer 5 s when it carries no Access-Control-Max-Age:
        # wait longer, so only the max-age can spare the second page view its preflight.
        await asyncio.sleep(6)
        await page.evaluate("history.pushState({}, '', '/pricing')")
        await _until((2, 0), mongo)
        await page.evaluate("prisme.trigger('signup', {plan: 'pro', seats: 3, trial: true})")
        await _until((2, 1), mongo)
    await core.flush()

    pageviews = await mongo.pageviews.find({}).sort("timestamp").to_list()
    [event] = await mongo.events_custom.find({}).to_list()
    [session] = await mongo.sessions.find({}).to_list()
    assert [p["path"] for p in pageviews] == ["/", "/pricing"]
    assert {p["session_uuid"] for p in pageviews} == {session["session_uuid"]}
    assert (session["pageviews"], session["entry_path"], session["exit_path"]) == (
        2,
        "/",
        "/pricing",
    )
    assert (session["referrer_domain"], session["utm_source"]) == ("direct", "newsletter")
    assert (session["browser_family"], session["operating_system"]) == ("Chrome", "Linux")
    assert session["domain"] == site.removeprefix("http://")
    assert (event["name"], event["path"]) == ("signup", "/pricing")
    assert event["properties"] == {"plan": "pro", "seats": 3, "trial": True}
    assert event["session_uuid"] == session["session_uuid"]
    assert all("event_id" in doc for doc in [*pageviews, event])

    requests = [
        (line["method"], line["path"])
        for line in access_lines(facade_app, caplog)
        if line["path"].startswith("/api/")
    ]
    assert requests.count(("POST", "/api/v1/events/pageviews")) == 2
    # One preflight per URL: the second page view reused the cached answer (Max-Age).
    assert requests.count(("OPTIONS", "/api/v1/events/pageviews")) == 1
    assert requests.count(("OPTIONS", "/api/v1/events/custom/signup")) == 1


def test_desktop_user_agent_is_not_headless() -> None:
    assert "Headless" not in DESKTOP_CHROME
