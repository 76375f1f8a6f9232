"""`make bench-dashboard`: the dashboard over 30 days of 100,000 page views on the embedded
store, in headless Chromium, against the stats API's own time for the same queries.

    .venv/bin/python bench/dashboard.py [--pageviews N]

Loads the traffic of `make bench-stats`, starts the core and the façade in this process (the
stats timeout at its default), opens the dashboard for the last 30 days (one domain, then all
domains), then asks the page's queries itself one by one (the stats API's own time), then opens
the page again. It reports, per load: the time until every panel is drawn, the page's stats
queries (how many, their summed time as the browser measured them, which overlaps for the
lists asked together, the slowest) and which panels show an error. Ends with
``bench-dashboard: pageviews=N first_load_kb=... slowest_ready_s=... errors=N``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from aiohttp import web
from prisme_cli.serve import facade_config
from prisme_core.settings import StatsSettings
from prisme_http.app import create_app
from prisme_http.runner import FacadeRunner

from bench.stats import DOMAINS, TOKEN, serving
from tests.browser import chromium

READY = "document.body.dataset.loaded === 'true'"
MEASURED = """(() => {
  const asked = performance.getEntriesByType('resource')
    .filter(e => e.name.includes('/api/v1/stats/') && !e.name.includes('live-visitors'));
  const errors = [...document.querySelectorAll('.state.error')].map(e => e.textContent);
  const route = e => e.name.split('/api/v1/stats/')[1].split('?')[0];
  const slowest = [...asked].sort((a, b) => b.duration - a.duration).slice(0, 4)
    .map(e => `${route(e)} ${(e.duration / 1000).toFixed(1)} s`);
  return {queries: asked.length, sum: asked.reduce((n, e) => n + e.duration, 0),
          longest: Math.max(0, ...asked.map(e => e.duration)), slowest, errors};
})()"""
FIRST_LOAD = (
    "/dashboard", "/dashboard/dashboard.js", "/dashboard/dashboard.css",
    "/dashboard/vendor/uPlot.iife.min.js", "/dashboard/vendor/uPlot.min.css",
)  # fmt: skip


SESSION_LISTS = (
    "top-entry-pages", "top-exit-pages", "top-referrers", "top-utm-sources", "top-utm-mediums",
    "top-utm-campaigns", "top-countries", "top-browsers", "top-operating-systems", "top-devices",
)  # fmt: skip


def dashboard_queries(domain: str) -> list[tuple[str, dict[str, str]]]:
    """What the page asks for the last 30 days of ``domain`` (in UTC), in its order."""
    now = datetime.now(UTC)
    start = (now - timedelta(days=29)).replace(hour=0, minute=0, second=0, microsecond=0)
    at = {"from": start.isoformat(), "to": now.isoformat(), "domain": domain}
    before = {"from": (start - timedelta(days=30)).isoformat(),
              "to": (now - timedelta(days=30)).isoformat(), "domain": domain}  # fmt: skip
    series = {"interval": "day", "tz": "UTC"}
    return [
        ("visitors", at | series | {"totals": "true"}),
        ("pageviews", at | series),
        *((route, at | {"limit": "10"}) for route in SESSION_LISTS),
        ("top-pages", at | {"limit": "10"}),
        *((route, at | {"limit": "1000"})
          for route in ("top-custom-events", "top-outbound-links", "top-file-downloads")),
        ("top-pages", before | {"limit": "0", "totals": "true"}),
        ("time-on-page", at | {"limit": "10"}),
        ("time-on-page", before | {"limit": "0"}),
        ("top-domains", {"from": at["from"], "to": at["to"], "limit": "100"}),
    ]  # fmt: skip


async def api_time(base: str, domain: str) -> tuple[float, int]:
    """The same queries asked one after another by a plain client, each asked again while it
    is answered `query timeout` (as the page does): the time, and how many timeouts."""
    timeouts, started = 0, time.perf_counter()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(base, headers=headers) as http:
        for route, params in dashboard_queries(domain):
            while True:
                async with http.get(f"/api/v1/stats/{route}", params=params) as response:
                    await response.read()
                if response.status != 503:
                    assert response.status == 200, (route, response.status)
                    break
                timeouts += 1
    return time.perf_counter() - started, timeouts


async def first_load_bytes(base: str) -> int:
    """What the page's first load transfers, gzip-compressed as a browser asks."""
    total = 0
    async with aiohttp.ClientSession(base, auto_decompress=False) as http:
        for path in FIRST_LOAD:
            async with http.get(path, headers={"Accept-Encoding": "gzip"}) as response:
                total += len(await response.read())
    return total


async def main(pageviews: int) -> None:
    with tempfile.TemporaryDirectory(prefix="prisme-bench-dashboard-") as work:
        async with serving(pageviews, Path(work), StatsSettings().timeout) as (settings, _, core):
            print(f"stats timeout {settings.stats.timeout:g}s")
            config = facade_config(settings, f"127.0.0.1:{core.port}")
            runner = FacadeRunner(create_app(config), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            try:
                await measure(f"http://127.0.0.1:{runner.addresses[0][1]}", Path(work), pageviews)
            finally:
                await runner.cleanup()


async def measure(base: str, work: Path, pageviews: int) -> None:
    size = await first_load_bytes(base)
    print(f"first load: {size:,} B gzip-compressed\n")
    print("| view | load | ready | stats queries | their summed time | slowest | errors |")
    print("|---|---|---|---|---|---|---|")
    slowest, errors = 0.0, 0
    async with chromium(work / "profile") as browser:
        for view, query in (("30 days, one domain", f"?period=30d&domain={DOMAINS[0]}"),
                            ("30 days, all domains", "?period=30d")):  # fmt: skip
            for load_name in ("first", "again"):
                if load_name == "again":
                    took, timeouts = await api_time(base, DOMAINS[0] if "one" in view else "")
                    print(
                        f"| {view} | the same queries, asked by a client one by one | "
                        f"{took:.1f} s | | | | {timeouts} timeouts asked again |",
                        flush=True,
                    )
                page = await browser.new_page()
                await page.resize(1280, 900)
                started = time.perf_counter()
                await page.goto(f"{base}/dashboard{query}#token={TOKEN}")
                await page.until(READY, within=600)
                ready = time.perf_counter() - started
                found = await page.evaluate(MEASURED)
                slowest, errors = max(slowest, ready), errors + len(found["errors"])
                print(f"| {view} | {load_name} | {ready:.1f} s | {found['queries']} | "
                      f"{found['sum'] / 1000:.1f} s | {', '.join(found['slowest'])} | "
                      f"{'; '.join(found['errors']) or 'none'} |", flush=True)  # fmt: skip
                await page.send("Page.close")
    print(f"\nbench-dashboard: pageviews={pageviews} first_load_kb={size / 1000:.1f} "
          f"slowest_ready_s={slowest:.1f} errors={errors}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pageviews", type=int, default=100_000)
    asyncio.run(main(parser.parse_args().pageviews))
