"""`wa.js`, the current Prisme tracker's interface, in headless Chromium on another origin:
the site's visitor id and the page's status, clicks on outbound links and downloads (that
never hold up navigation), custom events, manual mode, the opt-out, and tabs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web
from prisme_core.server import CoreServer
from pymongo.asynchronous.database import AsyncDatabase

from tests.browser import Page, chromium
from tests.support import Document, serving_pages

SITE = """<!doctype html>
<html><head><title>shop</title>
<script defer src="{service}/static/wa.js" {attributes}></script>
</head><body>
<a id="out" href="{other}/away?utm=x#part">elsewhere</a>
<a id="file" href="/files/report.pdf?v=2" target="_blank">report</a>
<a id="named" href="/export" download>export</a>
<a id="next" href="/next-page">next</a>
</body></html>
"""


@pytest.fixture
async def site(facade_port: int) -> AsyncIterator[Callable[[str, str], str]]:
    """Pages on ``localhost`` (the service is on ``127.0.0.1``): ``url(path, attributes)``."""
    pages: dict[str, str] = {}

    async def page(request: web.Request) -> web.Response:
        if request.path.startswith(("/files/", "/export")):
            return web.Response(body=b"%PDF-1.4", content_type="application/pdf")
        attributes = pages.get(request.path, "")
        body = SITE.format(service=f"http://127.0.0.1:{facade_port}", attributes=attributes,
                           other=f"http://127.0.0.1:{port}")  # fmt: skip
        return web.Response(text=body, content_type="text/html")

    def url(path: str, attributes: str = "") -> str:
        pages[path] = attributes
        return f"http://localhost:{port}{path}"

    async with serving_pages(page) as port:
        yield url


async def _count(mongo: AsyncDatabase[Document], collection: str, expected: int) -> None:
    deadline = time.monotonic() + 15
    while (found := await mongo[collection].count_documents({})) != expected:
        assert time.monotonic() < deadline, f"{collection}: {found}, not {expected}"
        await asyncio.sleep(0.05)


async def _click(page: Page, selector: str) -> None:
    await page.evaluate(f"document.querySelector('{selector}').click()")


@pytest.mark.timeout(90)
async def test_wa_js_in_a_real_browser(
    site: Callable[[str, str], str], core: CoreServer, mongo: AsyncDatabase[Document],
    tmp_path: Path,
) -> None:  # fmt: skip
    async with chromium(tmp_path / "profile") as browser:
        page = await browser.new_page()
        await page.goto(site("/", 'data-visitor-id="user-7" data-status="404"'))
        await _count(mongo, "pageviews", 1)
        await page.evaluate("prisme.trigger('signup', {plan: 'pro'})")
        await _count(mongo, "events_custom", 1)
        await page.evaluate("history.pushState({}, '', '/next')")  # data-status was the first's
        await _count(mongo, "pageviews", 2)
        await _click(page, "#file")
        await _click(page, "#named")
        await _count(mongo, "file_downloads", 2)
        started = time.monotonic()
        await _click(page, "#out")
        while "/away" not in (await page.evaluate("location.href") or ""):
            assert time.monotonic() - started < 1.0, "the outbound click held up navigation"
            await asyncio.sleep(0.02)
        await _count(mongo, "outbound_link_clicks", 1)

        manual = await browser.new_page()
        await manual.goto(site("/manual", "data-manual"))
        await manual.evaluate("prisme.pageview({path: '/virtual', status: 201, visitorId: 'm-1'})")
        await _count(mongo, "pageviews", 3)
    await core.flush()

    first, spa, virtual = await mongo.pageviews.find({}).sort("timestamp").to_list()
    assert (first["path"], first["status"], first["visitor_id"]) == ("/", 404, "user-7")
    assert (spa["path"], spa["status"], spa["session_uuid"]) == (
        "/next",
        200,
        first["session_uuid"],
    )
    assert (virtual["path"], virtual["status"], virtual["visitor_id"]) == ("/virtual", 201, "m-1")
    [event] = await mongo.events_custom.find({}).to_list()
    assert (event["name"], event["properties"], event["session_uuid"]) == (
        "signup",
        {"plan": "pro"},
        first["session_uuid"],
    )
    downloads = sorted(d["url"] for d in await mongo.file_downloads.find({}).to_list())
    assert downloads == [site("/export", ""), site("/files/report.pdf", "")]
    [click] = await mongo.outbound_link_clicks.find({}).to_list()
    assert click["link"].endswith("/away#part")  # the query left out, the fragment kept
    assert (click["path"], click["session_uuid"]) == ("/next", first["session_uuid"])


@pytest.mark.timeout(60)
async def test_wa_js_opt_out_sends_nothing(
    site: Callable[[str, str], str], core: CoreServer, mongo: AsyncDatabase[Document],
    tmp_path: Path,
) -> None:  # fmt: skip
    async with chromium(tmp_path / "profile") as browser:
        page = await browser.new_page()
        await page.goto(site("/", ""))
        await _count(mongo, "pageviews", 1)
        await page.evaluate("localStorage.setItem('prismeAnalytics.tracking.enable', 'false')")
        await page.goto(site("/again", ""))
        await page.evaluate("prisme.trigger('ignored')")
        await page.evaluate("localStorage.removeItem('prismeAnalytics.tracking.enable')")
        await page.goto(site("/last", ""))
        await _count(mongo, "pageviews", 2)  # the opted-out page sent nothing before this one
    assert [p["path"] for p in await mongo.pageviews.find({}).sort("timestamp").to_list()] == [
        "/",
        "/last",
    ]
    assert await mongo.events_custom.count_documents({}) == 0


@pytest.mark.timeout(60)
async def test_two_tabs_are_two_sessions_and_a_reload_one_more_page_view(
    site: Callable[[str, str], str], core: CoreServer, mongo: AsyncDatabase[Document],
    tmp_path: Path,
) -> None:  # fmt: skip
    async with chromium(tmp_path / "profile") as browser:
        left, right = await browser.new_page(), await browser.new_page()
        await left.goto(site("/left", ""))
        await _count(mongo, "pageviews", 1)
        await right.goto(site("/right", ""))
        await _count(mongo, "pageviews", 2)
        await _click(left, "#next")  # the left tab moves on within the site
        await _count(mongo, "pageviews", 3)
        await right.send("Page.reload")
        await _count(mongo, "pageviews", 4)
    await core.flush()
    views = await mongo.pageviews.find({}).sort("timestamp").to_list()
    tab_of = {view["path"]: view["session_uuid"] for view in views}
    assert [view["path"] for view in views] == ["/left", "/right", "/next-page", "/right"]
    assert tab_of["/left"] != tab_of["/right"]
    assert tab_of["/next-page"] == tab_of["/left"]
    assert views[3]["session_uuid"] == tab_of["/right"]  # the reload, in its tab's session
    sessions = {s["session_uuid"]: s["pageviews"] async for s in mongo.sessions.find({})}
    assert sessions == {tab_of["/left"]: 2, tab_of["/right"]: 2}


async def _queued(page: Page, expected: int) -> None:
    """Waits until the tab's queue of unanswered events holds ``expected`` of them."""
    deadline = time.monotonic() + 15
    count = "JSON.parse(sessionStorage.getItem('prismeAnalytics.queue') || '[]').length"
    while (found := await page.evaluate(count)) != expected:
        assert time.monotonic() < deadline, f"queued: {found}, not {expected}"
        await asyncio.sleep(0.05)


@pytest.mark.timeout(90)
async def test_events_sent_offline_arrive_once_with_their_own_times(
    site: Callable[[str, str], str], core: CoreServer, mongo: AsyncDatabase[Document],
    facade_port: int, tmp_path: Path,
) -> None:  # fmt: skip
    async with chromium(tmp_path / "profile") as browser:
        page = await browser.new_page()
        await page.send("Network.enable")
        await page.goto(site("/", 'data-visitor-id="v-1"'))
        await _count(mongo, "pageviews", 1)
        offline = {"latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
        await page.send("Network.emulateNetworkConditions", offline=True, **offline)
        happened = await page.evaluate(
            "(() => { const t = Date.now(); history.pushState({}, '', '/offline');"
            " prisme.trigger('queued', {n: 1}); return t; })()"
        )
        await _click(page, "#file")
        await _queued(page, 4)  # the first page's engagement report, sent before the next view
        await asyncio.sleep(1.5)  # the visitor stays offline a while
        await page.send("Network.emulateNetworkConditions", offline=False, **offline)
        await _count(mongo, "events_custom", 1)  # the online event sent the queue
        await _count(mongo, "pageviews", 2)
        await _count(mongo, "file_downloads", 1)
        await _count(mongo, "engagements", 1)
        await _queued(page, 0)

        # A tab left with events queued sends them on its way out, and its next page again:
        # they are stored once.
        service = f"http://127.0.0.1:{facade_port}/*"
        await page.send("Network.setBlockedURLs", urls=[service])
        await page.evaluate("prisme.trigger('left-behind')")
        await _queued(page, 1)
        await page.send("Network.setBlockedURLs", urls=[])
        await page.goto(site("/after", ""))
        await _count(mongo, "pageviews", 3)
        await _queued(page, 0)  # the next page sent what was left queued, again
        await _count(mongo, "events_custom", 2)
    await core.flush()

    views = await mongo.pageviews.find({}).sort("timestamp").to_list()
    assert [v["path"] for v in views] == ["/", "/offline", "/after"]
    assert views[1]["session_uuid"] == views[0]["session_uuid"]  # its tab's session
    assert views[1]["visitor_id"] == "v-1"
    late = views[1]["timestamp"].timestamp() * 1000
    assert abs(late - happened) < 500  # when it happened, not when it arrived (1.5 s later)
    names = [e["name"] async for e in mongo.events_custom.find({}).sort("timestamp")]
    assert names == ["queued", "left-behind"]
    queued = await mongo.events_custom.find_one({"name": "queued"})
    assert queued is not None
    assert queued["properties"] == {"n": 1}
    assert queued["session_uuid"] == views[0]["session_uuid"]
    assert abs(queued["timestamp"].timestamp() * 1000 - happened) < 500
    [download] = await mongo.file_downloads.find({}).to_list()
    assert download["path"] == "/offline"
