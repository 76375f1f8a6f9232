"""`make bench-stats`: every stats route timed over 100,000 page views on the embedded store.

    .venv/bin/python bench/stats.py [--pageviews N]

Loads realistic traffic straight into the store (sessions of 1 to 8 page views over 30 days
on two domains, with referrers, UTM tags, countries, browsers, custom events, outbound links,
downloads and engagement reports), starts the core in this process and asks every route
through the typed client, for the last 7 and 30 days of one domain (the dashboard's queries)
and of all domains. Prints a Markdown table of the times (the median of three calls after a first one,
in ms, once the hours that first call set counting in the background are counted; the first
too where it took much longer) and ends with
``bench-stats: routes=N slowest_ms=... over_2s=...``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prisme_cli.embedded import EmbeddedStore
from prisme_client import PrismeClient
from prisme_client.client import ENGAGEMENT, TIMESERIES, TOP
from prisme_core.adapters.mongo import (
    ENGAGEMENTS,
    EVENTS_CUSTOM,
    FILE_DOWNLOADS,
    HOURS_DONE,
    OUTBOUND_LINK_CLICKS,
    PAGEVIEWS,
    SESSIONS,
    MongoEventStore,
    click_document,
    custom_event_document,
    engagement_document,
    pageview_document,
    session_document,
)
from prisme_core.enrich import uuid7
from prisme_core.model import (
    Click,
    CustomEvent,
    Engagement,
    PageView,
    SessionAttributes,
    SessionStart,
)
from prisme_core.server import CoreDeps, CoreServer, create_server
from prisme_core.settings import GrpcSettings, Settings, StatsSettings, StoreSettings

DOMAINS = ("shop.example", "blog.example")
PAGES = ("/", "/pricing", "/blog", "/blog/launch", "/docs", "/docs/install", "/about", "/contact")
REFERRERS = ("direct", "direct", "direct", "www.google.com", "news.ycombinator.com", "t.co")
UTM = ("", "", "", "", "newsletter", "ads")
COUNTRIES = ("US", "DE", "FR", "GB", "IN", "BR", "XX")
SYSTEMS = (("Windows", "Chrome"), ("Mac OS X", "Safari"), ("Linux", "Firefox"),
           ("Android", "Chrome Mobile"), ("iOS", "Mobile Safari"))  # fmt: skip
TOKEN = "bench-stats-token"
GOAL_MS = 2000


def traffic(pageviews: int, now: datetime) -> dict[str, list[dict[str, object]]]:
    """Documents for about ``pageviews`` page views, by collection."""
    rng = random.Random(7)
    docs: dict[str, list[dict[str, object]]] = {
        SESSIONS: [], PAGEVIEWS: [], EVENTS_CUSTOM: [], OUTBOUND_LINK_CLICKS: [], FILE_DOWNLOADS: [],
        ENGAGEMENTS: [],
    }  # fmt: skip
    visitors = [f"prisme_{rng.getrandbits(64):016X}" for _ in range(pageviews // 5)]
    while len(docs[PAGEVIEWS]) < pageviews:
        start = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
        system, browser = rng.choice(SYSTEMS)
        domain = DOMAINS[0] if rng.random() < 0.7 else DOMAINS[1]
        attributes = SessionAttributes(
            domain=domain, visitor_id=rng.choice(visitors), session_uuid=uuid7(start),
            operating_system=system, browser_family=browser, device="Other",
            referrer_domain=rng.choice(REFERRERS), country_code=rng.choice(COUNTRIES),
            utm_source=rng.choice(UTM), utm_medium="", utm_campaign="", utm_term="",
            utm_content="",
        )  # fmt: skip
        views = [(start, rng.choice(PAGES))]
        for _ in range(rng.choice((0, 0, 0, 1, 1, 2, 3, 5, 7))):
            views.append((views[-1][0] + timedelta(seconds=rng.uniform(5, 300)), rng.choice(PAGES)))
        entry = SessionStart(f"D{uuid.uuid4().hex[:16]}", views[0][1], views[0][0], attributes)
        session = session_document(entry)
        session |= {"exit_path": views[-1][1], "exit_timestamp": views[-1][0],
                    "pageviews": len(views)}  # fmt: skip
        docs[SESSIONS].append(session)
        for at, path in views:
            docs[PAGEVIEWS].append(pageview_document(PageView(at, path, attributes)))
            docs[ENGAGEMENTS].extend(reports(rng, at, path, attributes))
        at, path = views[-1]
        if rng.random() < 0.3:
            event = CustomEvent(at, path, attributes, rng.choice(("signup", "buy", "share")), {})
            docs[EVENTS_CUSTOM].append(custom_event_document(event))
        if rng.random() < 0.1:
            click = Click(at, path, attributes, f"https://{rng.choice(REFERRERS)}.example/")
            docs[OUTBOUND_LINK_CLICKS].append(click_document(click, "link"))
        if rng.random() < 0.05:
            click = Click(at, path, attributes, f"https://{domain}/files/report.pdf")
            docs[FILE_DOWNLOADS].append(click_document(click, "url"))
    return docs


def reports(
    rng: random.Random, at: datetime, path: str, attributes: SessionAttributes
) -> list[dict[str, object]]:
    """A page view's engagement reports: none (no tracker, or left at once) to three (hidden and
    shown again), each after some engaged time, the scroll only ever deeper."""
    pageview_id, depth, found = uuid.uuid4(), 0, []
    for _ in range(rng.choice((0, 1, 1, 1, 2, 3))):
        at += timedelta(seconds=rng.uniform(2, 120))
        depth = min(100, depth + rng.choice((0, 10, 25, 50, 100)))
        report = Engagement(at, path, attributes, pageview_id, rng.randrange(500, 90_000), depth)
        found.append(engagement_document(report))
    return found


async def load(store: MongoEventStore, docs: dict[str, list[dict[str, object]]]) -> None:
    await store.ensure_schema()
    for collection, documents in docs.items():
        for first in range(0, len(documents), 1000):
            await store.database[collection].insert_many(documents[first : first + 1000])


async def timed(
    client: PrismeClient, route: str, days: int, domain: str | None, counted: Counted
) -> tuple[float, float]:
    """The first call's time and the median of three more, in ms, once the hours the first
    had counted in the background (the page-view routes' of a domain) are counted."""
    times = []
    for call in range(4):
        started = time.perf_counter()
        if domain is None:
            await client.stats(route, f"now-{days}d", "now")
        else:
            await client.stats(route, f"now-{days}d", "now", domain=domain)
        times.append((time.perf_counter() - started) * 1000)
        if call == 0:
            await settled(counted)
    return times[0], statistics.median(times[1:])


Counted = Callable[[], Awaitable[int]]


async def settled(counted: Counted) -> None:
    """Returns once the count of counted hours stops growing."""
    before = -1
    while (now := await counted()) != before:
        before = now
        await asyncio.sleep(1.0)


@contextlib.asynccontextmanager
async def serving(
    pageviews: int, work: Path, stats_timeout: float
) -> AsyncIterator[tuple[Settings, MongoEventStore, CoreServer]]:
    """The embedded store in ``work`` loaded with `traffic`, and the core serving it."""
    embedded = EmbeddedStore(work / "store", cache_size="512M")
    uri = embedded.start()
    try:
        settings = Settings(
            grpc=GrpcSettings(token="bench"),
            store=StoreSettings(mongodb_uri=uri, database="bench", timeout=30.0),
            stats=StatsSettings(token=TOKEN, timeout=stats_timeout),
        )
        deps = CoreDeps.from_settings(settings)
        assert isinstance(deps.store, MongoEventStore)
        docs = traffic(pageviews, datetime.now(UTC))
        started = time.perf_counter()
        await load(deps.store, docs)
        counts = ", ".join(f"{len(v):,} {k}" for k, v in docs.items())
        print(f"loaded {counts} in {time.perf_counter() - started:.1f}s")
        server = create_server(settings, deps, address="127.0.0.1:0")
        await server.start()
        try:
            yield settings, deps.store, server
        finally:
            await server.stop(grace=1)
    finally:
        embedded.stop()


async def main(pageviews: int) -> None:
    with tempfile.TemporaryDirectory(prefix="prisme-bench-stats-") as work:
        async with serving(pageviews, Path(work), stats_timeout=60.0) as (_, store, server):
            done = store.database[HOURS_DONE]
            await report(f"127.0.0.1:{server.port}", lambda: done.count_documents({}))


def _cell(first: float, warm: float) -> str:
    if first > 2 * warm and first - warm > 200:
        return f"{warm:,.0f} ms (first {first:,.0f} ms)"
    return f"{warm:,.0f} ms"


async def report(target: str, counted: Counted) -> None:
    print("\n| route | 7 days, one domain | 30 days, one domain | 30 days, all domains |")
    print("|---|---|---|---|")
    slowest, over = 0.0, []
    async with PrismeClient(target, stats_token=TOKEN, timeout=120.0) as client:
        for route in [*sorted(TIMESERIES), *sorted(TOP), *sorted(ENGAGEMENT)]:
            row = [
                await timed(client, route, 7, DOMAINS[0], counted),
                await timed(client, route, 30, DOMAINS[0], counted),
                await timed(client, route, 30, None, counted),
            ]
            slowest = max(slowest, *(warm for _, warm in row))
            if max(warm for _, warm in row) > GOAL_MS:
                over.append(route)
            print(f"| `{route}` | " + " | ".join(_cell(*times) for times in row) + " |", flush=True)
    routes = len(TIMESERIES) + len(TOP) + len(ENGAGEMENT)
    print(f"\nbench-stats: routes={routes} slowest_ms={slowest:.0f} over_2s={','.join(over) or 0}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pageviews", type=int, default=100_000)
    asyncio.run(main(parser.parse_args().pageviews))
