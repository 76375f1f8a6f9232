"""The tracker's engagement in headless Chromium: time visible and focused, the deepest
scroll, reported as increments when the page is hidden and before an SPA navigation. A
minimised window is what hides a page here (headless tabs are always visible)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prisme_core.server import CoreServer
from pymongo.asynchronous.database import AsyncDatabase

from tests.browser import Browser, Page, chromium
from tests.support import Document, serving_pages

ARTICLE = """<!doctype html>
<html><head><title>article</title>
<script defer src="{service}/static/wa.js" {attributes}></script>
</head><body><h1>a long article</h1><div style="height: 6000px"></div><p>the end</p></body></html>
"""


@pytest.fixture
async def article(facade_port: int) -> AsyncIterator[str]:
    async def page(request: web.Request) -> web.Response:
        attributes = 'data-engagement="false"' if request.path == "/quiet" else ""
        body = ARTICLE.format(service=f"http://127.0.0.1:{facade_port}", attributes=attributes)
        return web.Response(text=body, content_type="text/html")

    async with serving_pages(page) as port:
        yield f"http://localhost:{port}"


async def _window(browser: Browser) -> tuple[Page, int]:
    """A page in a window of its own, and the window's id."""
    target = await browser.send("Target.createTarget", {"url": "about:blank", "newWindow": True})
    attached = await browser.send(
        "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
    )
    page = Page(browser, attached["sessionId"])
    await page.send("Page.enable")
    await page.send("Runtime.enable")
    window = await browser.send("Browser.getWindowForTarget", {"targetId": target["targetId"]})
    return page, window["windowId"]


async def _show(browser: Browser, window: int, page: Page, shown: bool) -> None:
    state = "normal" if shown else "minimized"
    await browser.send("Browser.setWindowBounds", {"windowId": window,
                                                   "bounds": {"windowState": state}})  # fmt: skip
    wanted, deadline = "visible" if shown else "hidden", time.monotonic() + 10
    while await page.evaluate("document.visibilityState") != wanted:
        assert time.monotonic() < deadline, f"the page is not {wanted}"
        await asyncio.sleep(0.02)


async def _documents(
    mongo: AsyncDatabase[Document], collection: str, count: int
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while (
        (found := await mongo[collection].find({}).sort("timestamp").to_list())
        and len(found) < count
    ) or not found:
        assert time.monotonic() < deadline, f"{collection}: {len(found)}, not {count}"
        await asyncio.sleep(0.05)
    return found


@pytest.mark.timeout(90)
async def test_engaged_time_and_scroll_depth_are_reported_honestly(
    article: str, core: CoreServer, mongo: AsyncDatabase[Document], tmp_path: Path
) -> None:
    async with chromium(tmp_path / "profile") as browser:
        page, window = await _window(browser)
        await page.goto(f"{article}/article")
        (first,) = await _documents(mongo, "pageviews", 1)
        await asyncio.sleep(3)  # the visitor reads for three seconds
        await page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        await _show(browser, window, page, shown=False)  # then switches away
        (read,) = await _documents(mongo, "engagements", 1)

        await asyncio.sleep(5)  # five seconds in the background
        await _show(browser, window, page, shown=True)
        await page.evaluate("history.pushState({}, '', '/next')")  # an SPA navigation
        views = await _documents(mongo, "pageviews", 2)
        reports = await _documents(mongo, "engagements", 2)

        quiet, quiet_window = await _window(browser)  # data-engagement="false"
        await quiet.goto(f"{article}/quiet")
        await _documents(mongo, "pageviews", 3)
        await quiet.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        await _show(browser, quiet_window, quiet, shown=False)
        await _show(browser, quiet_window, quiet, shown=True)
        await quiet.evaluate("history.pushState({}, '', '/quiet-next')")
        await _documents(mongo, "pageviews", 4)  # sent after any report would have been
    # The first window's /next may report (hidden behind the new one); the quiet page never.
    assert await mongo.engagements.count_documents({"path": {"$regex": "^/quiet"}}) == 0

    assert read["pageview_id"] == first["_id"]
    assert 2500 <= read["engaged_ms"] <= 4000
    assert read["scroll_depth"] == 100
    assert (read["path"], read["session_uuid"]) == ("/article", first["session_uuid"])
    background = reports[1]  # what the first page reported before the second page view
    assert background["pageview_id"] == first["_id"]
    assert background["engaged_ms"] < 1000  # not the five seconds it spent hidden
    assert background["timestamp"] <= views[1]["timestamp"]
    assert views[1]["path"] == "/next"
