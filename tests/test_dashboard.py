"""The dashboard in headless Chromium: known traffic sent through the HTTP API, then read back
on the page (headline figures, chart, ranked lists), filtered by a click, at desktop and phone
widths; and what it says with a wrong token or the service stopped.

Screenshots go to ``$PRISME_TEST_OUTPUT/dashboard`` (default ``.build/test-output``)."""

from __future__ import annotations

import gzip
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prisme_core.adapters.useragents import UserAgentsParser
from prisme_core.server import CoreServer
from prisme_core.settings import Settings
from prisme_http.app import create_app
from prisme_http.runner import FacadeRunner

from tests.browser import Page, chromium
from tests.conftest import STATS_TOKEN, facade_config
from tests.support import FIREFOX
from tests.test_stats import stuck_core
from tests.transports import Visit

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
ORIGIN = "http://localhost"
LOADED = "document.body.dataset.loaded === 'true'"
ALERT = "!$('alert').hidden && $('alert').textContent".replace("$", "document.getElementById")
ASSETS = (
    "/dashboard/dashboard.js", "/dashboard/dashboard.css", "/dashboard/vendor/uPlot.iife.min.js",
    "/dashboard/vendor/uPlot.min.css",
)  # fmt: skip
LISTS = (
    "top-pages", "top-entry-pages", "top-exit-pages", "top-referrers", "top-utm-sources",
    "top-utm-mediums", "top-utm-campaigns", "top-countries", "top-browsers",
    "top-operating-systems", "top-devices", "top-custom-events",
)  # fmt: skip
"""The panels always shown; outbound links and downloads only where there are some."""


@dataclass(frozen=True)
class Reader:
    ip: str
    agent: str
    paths: list[str]
    referrer: str = ""
    utm: str = ""
    ago: timedelta = timedelta(minutes=40)
    events: list[str] = field(default_factory=list)


# In the last 24 hours: 4 visitors, 7 page views, 2 bounces; 30 hours ago, 2 visitors.
NOW_TRAFFIC = [
    Reader("84.200.69.80", FIREFOX, ["/", "/pricing", "/docs"], "https://search.example/q",
           utm="news", events=["signup"]),
    Reader("8.8.8.8", CHROME, ["/", "/pricing"]),
    Reader("81.2.69.160", FIREFOX, ["/"], "https://search.example/q"),
    Reader("8.8.8.7", CHROME, ["/docs"], "https://social.example/post"),
]  # fmt: skip
BEFORE_TRAFFIC = [
    Reader("84.200.69.81", FIREFOX, ["/"], ago=timedelta(hours=30)),
    Reader("8.8.8.9", CHROME, ["/blog"], ago=timedelta(hours=30)),
]


async def _send(http: aiohttp.ClientSession, reader: Reader) -> None:
    """The reader's page views (a minute apart) and events, backdated, in one batch."""
    sent_at = datetime.now(UTC)
    at, previous = sent_at - reader.ago, reader.referrer
    events: list[dict[str, Any]] = []
    for i, path in enumerate(reader.paths):
        query = f"?utm_source={reader.utm}" if reader.utm and i == 0 else ""
        url = f"{ORIGIN}{path}{query}"
        events.append({"kind": "pageview", "page_url": url, "document_referrer": previous,
                       "event_id": str(uuid.uuid4()), "timestamp": at.isoformat()})  # fmt: skip
        previous, at = url, at + timedelta(minutes=1)
    if reader.events:
        view = events[0]["event_id"]
        events.append({"kind": "engagement", "pageview_id": view, "engaged_ms": 12_000,
                       "scroll_depth": 80, "page_url": events[0]["page_url"],
                       "timestamp": at.isoformat()})  # fmt: skip
    events += [{"kind": "custom", "name": name, "page_url": previous,
                "timestamp": at.isoformat()} for name in reader.events]  # fmt: skip
    visit = Visit(origin=ORIGIN, user_agent=reader.agent, client_ip=reader.ip)
    headers = visit.headers() | {"Content-Type": "application/json"}
    body = {"sent_at": sent_at.isoformat(), "events": events}
    async with http.post("/api/v1/events/batch", json=body, headers=headers) as response:
        assert response.status == 200, await response.text()
        results = (await response.json())["results"]
    assert [r["status"] for r in results] == [200] * len(events), results


@dataclass
class Service:
    port: int
    stop: Callable[[], Awaitable[None]]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def service(facade_app: web.Application) -> AsyncIterator[Service]:
    """The façade on a real port, which a test may stop."""
    runner = FacadeRunner(facade_app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    stopped = False

    async def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            await runner.cleanup()

    yield Service(runner.addresses[0][1], stop)
    await stop()


@pytest.fixture
async def seeded(service: Service, core: CoreServer) -> Service:
    async with aiohttp.ClientSession(service.base) as http:
        for reader in NOW_TRAFFIC + BEFORE_TRAFFIC:
            await _send(http, reader)
    await core.flush()
    return service


@pytest.fixture
def output() -> Path:
    default = Path(__file__).parent.parent / ".build" / "test-output"
    return Path(os.environ.get("PRISME_TEST_OUTPUT", default)) / "dashboard"


async def _api(service: Service, route: str, **params: str) -> dict[str, Any]:
    """What the stats API answers, to compare the page with."""
    async with (
        aiohttp.ClientSession(service.base) as http,
        http.get(f"/api/v1/stats/{route}", params=params,
                 headers={"Authorization": f"Bearer {STATS_TOKEN}"}) as response,
    ):  # fmt: skip
        assert response.status == 200, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer


async def _figures(page: Page) -> dict[str, str]:
    """Each headline figure's value (raw, from ``data-value``)."""
    found: dict[str, str] = await page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('[data-figure]')].map("
        "f => [f.dataset.figure, f.querySelector('.value').dataset.value]))"
    )
    return found


async def _changes(page: Page) -> dict[str, str]:
    found: dict[str, str] = await page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('[data-figure]')].map("
        "f => [f.dataset.figure, f.querySelector('.change').textContent]))"
    )
    return found


async def _rows(page: Page, route: str) -> list[tuple[str, int]]:
    """A panel's rows: (key, count)."""
    rows: list[list[Any]] = await page.evaluate(
        f"[...document.querySelectorAll('#panel-{route} tbody tr')].map("
        "r => [r.dataset.key, Number(r.querySelector('td.n').dataset.value)])"
    )
    return [(key, count) for key, count in rows]


async def _chart(page: Page) -> tuple[int, int, int]:
    """The chart's table: its buckets, and its visitors and page views summed."""
    rows: list[list[str]] = await page.evaluate(
        "[...document.querySelectorAll('#chart-table tbody tr')].map("
        "r => [r.cells[1].textContent, r.cells[2].textContent])"
    )
    return len(rows), sum(int(v) for v, _ in rows), sum(int(p) for _, p in rows)


async def _open(page: Page, service: Service, query: str = "?period=24h") -> None:
    await page.resize(1280, 900)
    await page.goto(f"{service.base}/dashboard{query}#token={STATS_TOKEN}")
    await page.until(LOADED, what="the dashboard did not finish loading")


@pytest.mark.timeout(120)
async def test_the_dashboard_shows_what_was_sent_and_filters_by_a_click(
    seeded: Service, tmp_path: Path, output: Path
) -> None:
    async with chromium(tmp_path / "profile") as browser:
        page = await browser.new_page()
        await _open(page, seeded)
        assert await page.evaluate("location.hash") == ""  # the token left the address
        assert await page.evaluate("sessionStorage.getItem('prisme.statsToken')") == STATS_TOKEN
        shown = "id => document.getElementById(id).checkVisibility()"
        assert await page.evaluate(f"['token-form', 'custom', 'alert'].map({shown})") == [False] * 3
        assert await page.evaluate(f"['main', 'controls', 'live'].map({shown})") == [True] * 3

        figures = await _figures(page)
        assert (figures["visitors"], figures["sessions"], figures["pageviews"]) == ("4", "4", "7")
        assert float(figures["bounceRate"]) == 0.5
        assert float(figures["meanSeconds"]) == 12
        assert float(figures["meanScrollDepth"]) == 80
        changes = await _changes(page)
        assert "+100%" in changes["visitors"], changes  # 2 visitors the day before
        assert "+250%" in changes["pageviews"], changes  # 7 page views against 2

        assert await _rows(page, "top-pages") == [("/", 3), ("/docs", 2), ("/pricing", 2)]
        assert await _rows(page, "top-entry-pages") == [("/", 3), ("/docs", 1)]
        assert await _rows(page, "top-referrers") == [("search.example", 2), ("direct", 1),
                                                       ("social.example", 1)]  # fmt: skip
        assert await _rows(page, "top-browsers") == [("Chrome", 2), ("Firefox", 2)]
        assert await _rows(page, "top-countries") == [("US", 2), ("DE", 1), ("GB", 1)]
        assert await _rows(page, "top-custom-events") == [("signup", 1)]
        assert await _rows(page, "time-on-page") == [("/", 12)]
        assert await page.evaluate("document.getElementById('panel-top-file-downloads').hidden")
        assert await _chart(page) == (25, 4, 7)
        assert await page.evaluate("!!document.querySelector('#chart canvas')")
        sites = "[...document.getElementById('domain').options].map(o => o.value)"
        assert await page.evaluate(sites) == ["", "localhost"]  # all sites, then each
        await page.screenshot(output / "desktop.png")

        # A click on a page filters every panel: the sessions that saw /pricing.
        await page.evaluate(
            "document.querySelector('#panel-top-pages button[data-value=\"/pricing\"]').click()"
        )
        await page.until(LOADED + " && document.querySelectorAll('#filters .chip').length === 1")
        assert await page.evaluate("location.search") == "?period=24h&path=%2Fpricing"
        figures = await _figures(page)
        assert (figures["visitors"], figures["sessions"], figures["pageviews"]) == ("2", "2", "5")
        assert float(figures["bounceRate"]) == 0
        assert await _rows(page, "top-pages") == [("/", 2), ("/pricing", 2), ("/docs", 1)]
        assert await _rows(page, "top-referrers") == [("direct", 1), ("search.example", 1)]
        assert await _chart(page) == (25, 2, 5)
        last_day = {"from": "now-24h", "to": "now", "path": "/pricing", "limit": "10"}
        for route in LISTS:
            answer = await _api(seeded, route, **last_day)
            rows = list(zip(answer["keys"], answer["values"], strict=True))
            assert await _rows(page, route) == rows, route
        await page.screenshot(output / "desktop-filtered.png")

        # The chip removes the filter again.
        await page.evaluate("document.querySelector('#filters .chip').click()")
        await page.until(LOADED + " && !document.querySelector('#filters .chip')")
        assert (await _figures(page))["visitors"] == "4"

        await page.resize(390, 844, mobile=True)
        await page.goto(f"{seeded.base}/dashboard?period=24h")  # the token is kept for the tab
        await page.until(LOADED)
        assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        assert (await _figures(page))["pageviews"] == "7"
        await page.screenshot(output / "phone.png")
        assert page.errors == []


@pytest.mark.timeout(60)
async def test_live_visitors_update_by_themselves(seeded: Service, tmp_path: Path) -> None:
    async with chromium(tmp_path / "profile") as browser:
        page = await browser.new_page()
        await _open(page, seeded)
        await page.until("document.getElementById('live-count').dataset.value !== ''")
        assert await page.evaluate("document.getElementById('live-count').dataset.value") == "0"
        async with aiohttp.ClientSession(seeded.base) as http:
            await _send(http, Reader("81.2.69.161", CHROME, ["/live"], ago=timedelta(0)))
        await page.until(
            "document.getElementById('live-count').dataset.value === '1'", within=20,
            what="the live visitors did not update",
        )  # fmt: skip
        assert page.errors == []


@pytest.mark.timeout(60)
async def test_without_a_token_it_asks_for_one_and_says_when_it_is_wrong(
    service: Service, tmp_path: Path
) -> None:
    async with chromium(tmp_path / "profile") as browser:
        page = await browser.new_page()
        await page.goto(f"{service.base}/dashboard")
        await page.until("!document.getElementById('token-form').hidden")
        assert await page.evaluate("document.getElementById('main').hidden")
        await page.evaluate(
            "document.getElementById('token').value = 'not-the-token';"
            "document.getElementById('token-form').requestSubmit()"
        )
        alert = await page.until(ALERT)
        assert "token was refused" in alert
        assert not await page.evaluate("document.getElementById('token-form').hidden")
        assert await page.evaluate("sessionStorage.getItem('prisme.statsToken')") is None

        await page.evaluate(
            f"document.getElementById('token').value = '{STATS_TOKEN}';"
            "document.getElementById('token-form').requestSubmit()"
        )
        await page.until(LOADED)
        assert await page.evaluate("document.getElementById('alert').hidden")


@pytest.mark.timeout(60)
async def test_a_stopped_service_is_said_so_and_the_page_recovers_no_blank_panels(
    seeded: Service, tmp_path: Path
) -> None:
    async with chromium(tmp_path / "profile") as browser:
        page = await browser.new_page()
        await _open(page, seeded)
        await seeded.stop()
        alert = await page.until(ALERT, what="the page did not notice the service stopped")
        assert "cannot be reached" in alert
        await page.evaluate(
            "const period = document.getElementById('period'); period.value = '7d';"
            "period.dispatchEvent(new Event('change'))"
        )
        await page.until(LOADED)
        states = await page.evaluate(
            "[...document.querySelectorAll('#lists .panel:not([hidden]) .state.error')].length"
        )
        assert states >= len(LISTS)  # each panel says why, none is left blank
        assert "cannot be reached" in await page.evaluate(
            "document.getElementById('chart-state').textContent"
        )


async def test_the_page_is_static_small_and_locked_to_its_origin(service: Service) -> None:
    async with aiohttp.ClientSession(service.base, auto_decompress=False) as http:
        total = 0
        async with http.get("/dashboard", headers={"Accept-Encoding": "gzip"}) as response:
            assert response.status == 200
            assert response.headers["Content-Encoding"] == "gzip"
            policy = response.headers["Content-Security-Policy"]
            assert "script-src 'self'" in policy
            assert "connect-src 'self'" in policy
            html = gzip.decompress(await response.read()).decode()
            total += int(response.headers["Content-Length"])
            etag = response.headers["ETag"]
        assert STATS_TOKEN not in html
        assert "http" not in html.replace("http-equiv", "")
        for asset in ASSETS:
            assert asset in html
            async with http.get(asset, headers={"Accept-Encoding": "br, gzip"}) as response:
                assert response.status == 200
                assert response.headers["Content-Encoding"] == "br"
                total += int(response.headers["Content-Length"])
        assert total < 150_000, total
        async with http.get("/dashboard", headers={"If-None-Match": etag}) as response:
            assert response.status == 304
        async with http.get("/dashboard/../pyproject.toml") as response:
            assert response.status == 404
        async with http.get("/dashboard", headers={"Accept-Encoding": "identity"}) as response:
            assert "Content-Encoding" not in response.headers
            assert json.dumps(await response.text())


@pytest.mark.timeout(60)
async def test_the_buckets_follow_the_browsers_time_zone(seeded: Service, tmp_path: Path) -> None:
    async with chromium(tmp_path / "profile") as browser:
        page = await browser.new_page()
        await page.send("Emulation.setTimezoneOverride", timezoneId="Asia/Kolkata")
        await _open(page, seeded)
        asked = await page.evaluate(
            "performance.getEntriesByType('resource').map(e => e.name)"
            ".filter(n => n.includes('/api/v1/stats/visitors?'))"
        )
        assert asked
        zone = "Asia/Calcutta" if "Calcutta" in asked[0] else "Asia/Kolkata"  # ICU's older name
        assert all(f"interval=hour&tz={zone.replace('/', '%2F')}" in url for url in asked)
        # Hours start at :30 UTC there: buckets the API did not shift would add rows.
        assert await _chart(page) == (25, 4, 7)
        assert f"({zone})" in await page.evaluate(
            "document.getElementById('period-text').textContent"
        )
        assert page.errors == []


@pytest.mark.timeout(90)
async def test_a_query_over_the_stats_timeout_is_said_so_in_its_panel(
    settings: Settings, user_agents: UserAgentsParser, tmp_path: Path
) -> None:
    async with stuck_core(settings, user_agents, stats_timeout=0.1) as (target, short):
        runner = FacadeRunner(create_app(facade_config(target, short)))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            base = f"http://127.0.0.1:{runner.addresses[0][1]}"
            async with chromium(tmp_path / "profile") as browser:
                page = await browser.new_page()
                await page.goto(f"{base}/dashboard#token={STATS_TOKEN}")
                await page.until(LOADED, within=60)
                said = await page.evaluate(
                    "[...document.querySelectorAll('#lists .panel .state.error')]"
                    ".map(p => p.textContent)"
                )
                assert len(said) >= len(LISTS)
                assert all("took longer than the service allows" in text for text in said), said
                assert "took longer" in await page.evaluate(
                    "document.getElementById('chart-state').textContent"
                )
                figure = "document.querySelector('[data-figure=visitors] .change').textContent"
                assert "took longer" in await page.evaluate(figure)
        finally:
            await runner.cleanup()
