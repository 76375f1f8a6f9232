"""The stats API (DESIGN §12) over HTTP and gRPC against the real store: traffic sent through
the events API, every route's answer compared with what the test computes from what it sent,
and every refusal."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import event_service_pb2_grpc as pb_grpc
from prisme.v1 import stats_service_pb2 as stats_pb
from prisme.v1 import stats_service_pb2_grpc as stats_grpc
from prisme_client import PrismeClient, PrismeError, error_from_rpc
from prisme_core.adapters.mongo_stats import SESSION_LISTS, MongoStats
from prisme_core.adapters.useragents import UserAgentsParser
from prisme_core.ports import FixedClock
from prisme_core.server import CoreServer, create_server
from prisme_core.settings import Settings
from prisme_core.stats.figures import Reading, Totals
from prisme_core.stats.query import TIMESERIES, TOP, Query, parse_query
from prisme_http.app import create_app
from pymongo.asynchronous.database import AsyncDatabase

from tests.conftest import STATS_TOKEN, changed, core_deps, facade_config
from tests.support import FIREFOX, AiohttpClient, Document, HttpClient
from tests.transports import (
    Click,
    Custom,
    StatsAsk,
    Visit,
    send_click_http,
    send_custom_http,
    send_http,
    stats_asker,
)

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
SYSTEM = {FIREFOX: ("Linux", "Firefox"), CHROME: ("Windows", "Chrome")}
COUNTRY = {"84.200.69.80": "DE", "8.8.8.8": "US", "81.2.69.160": "GB"}
AUTH = {"Authorization": f"Bearer {STATS_TOKEN}"}
GRPC_AUTH = (("authorization", f"Bearer {STATS_TOKEN}"),)


@dataclass
class Sent:
    """One session as the test sends it: its page views (seconds after T0, path)."""

    ip: str
    agent: str
    views: list[tuple[int, str]]
    domain: str = "localhost"
    referrer: str = ""
    utm_source: str = ""
    events: list[tuple[str, str]] = field(default_factory=list)
    """(kind, name or target) sent from the session's last page."""

    @property
    def visitor(self) -> tuple[str, str, str]:
        return self.ip, self.agent, self.domain

    @property
    def entry(self) -> datetime:
        return T0 + timedelta(seconds=self.views[0][0])

    @property
    def exit(self) -> datetime:
        return T0 + timedelta(seconds=self.views[-1][0])

    @property
    def referrer_domain(self) -> str:
        return self.referrer.split("/")[2] if self.referrer else "direct"

    def attribute(self, name: str) -> str:
        return {
            "entry_path": self.views[0][1],
            "exit_path": self.views[-1][1],
            "referrer_domain": self.referrer_domain,
            "utm_source": self.utm_source,
            "country_code": COUNTRY[self.ip],
            "operating_system": SYSTEM[self.agent][0],
            "browser_family": SYSTEM[self.agent][1],
            "device": "Other",
            "domain": self.domain,
        }.get(name, "")


TRAFFIC = [
    Sent("84.200.69.80", FIREFOX, [(0, "/a"), (60, "/b"), (120, "/c")], utm_source="news",
         events=[("custom", "signup"), ("outbound-links", "https://out.example/x")]),
    Sent("8.8.8.8", CHROME, [(300, "/a")], referrer="https://search.example/q",
         events=[("custom", "click")]),
    Sent("81.2.69.160", FIREFOX, [(3600, "/pricing"), (3660, "/a")],
         events=[("custom", "signup"), ("file-downloads", "http://localhost/report.pdf")]),
    Sent("84.200.69.80", FIREFOX, [(7200, "/x")], domain="example.com"),
]  # fmt: skip


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def core_clock(clock: FixedClock) -> FixedClock:
    """The core keeps the test's time."""
    return clock


@pytest.fixture
async def stats_stub(core_target: str) -> AsyncIterator[stats_grpc.StatsServiceAsyncStub]:
    async with grpc.aio.insecure_channel(core_target) as channel:
        yield stats_grpc.StatsServiceStub(channel)


@pytest.fixture
async def seeded(http: HttpClient, clock: FixedClock, core: CoreServer) -> list[Sent]:
    """The traffic, sent through the events API at its times; progress flushed."""
    for sent in TRAFFIC:
        previous = ""
        for offset, path in sent.views:
            clock.at = T0 + timedelta(seconds=offset)
            origin = f"http://{sent.domain}"
            query = f"?utm_source={sent.utm_source}" if sent.utm_source and not previous else ""
            visit = Visit(origin=origin, page_url=f"{origin}{path}{query}",
                          document_referrer=previous or sent.referrer,
                          user_agent=sent.agent, client_ip=sent.ip)  # fmt: skip
            assert (await send_http(http, visit)).ok
            previous = f"{origin}{path}"
        for kind, what in sent.events:
            clock.at += timedelta(seconds=1)
            if kind == "custom":
                answer = await send_custom_http(http, Custom(name=what, visit=visit))
            else:
                answer = await send_click_http(http, Click(target=what, kind=kind, visit=visit))
            assert answer.ok, answer
    await core.flush()
    clock.at = T0 + timedelta(hours=3)
    return TRAFFIC


Ask = StatsAsk


@pytest.fixture(params=["http", "grpc"])
def ask(request: pytest.FixtureRequest, http: HttpClient, core_target: str) -> Ask:
    """``ask(route, **params)``: the answer's JSON (over gRPC, the same shape)."""
    return stats_asker(request.param, http, core_target, STATS_TOKEN)


FROM, TO = T0 - timedelta(hours=1), T0 + timedelta(hours=3)
RANGE = {
    "from": FROM.isoformat().replace("+00:00", "Z"),
    "to": TO.isoformat().replace("+00:00", "Z"),
}


def bucket(at: datetime, start: datetime = FROM, end: datetime = TO) -> int:
    width = max(1, int((end - start).total_seconds()) // 32) * 1000
    ms = int(at.timestamp() * 1000)
    return ms - ms % width


def series(counts: dict[int, float]) -> dict[str, list[Any]]:
    keys = sorted(counts)
    return {"keys": keys, "values": [int(counts[k]) for k in keys]}


def expected_series(route: str, traffic: list[Sent]) -> dict[str, list[Any]]:
    by: dict[int, list[Sent]] = {}
    for sent in traffic:
        by.setdefault(bucket(sent.entry), []).append(sent)
    if route == "sessions":
        return series({k: len(v) for k, v in by.items()})
    if route == "visitors":
        return series({k: len({s.visitor for s in v}) for k, v in by.items()})
    if route == "bounces":
        return series({k: n for k, v in by.items() if (n := sum(len(s.views) == 1 for s in v))})
    if route == "sessions-duration":
        means = {
            k: sum((s.exit - s.entry).total_seconds() for s in v) / len(v) for k, v in by.items()
        }
        return series({k: int(m) for k, m in means.items()})
    if route == "pageviews":
        views = Counter(bucket(T0 + timedelta(seconds=t)) for s in traffic for t, _ in s.views)
        return series(dict(views))
    raise AssertionError(route)


def expected_top(route: str, traffic: list[Sent]) -> dict[str, Any]:
    if route == "top-pages":
        counted = Counter(path for s in traffic for _, path in s.views)
    elif route in {"top-custom-events", "top-outbound-links", "top-file-downloads"}:
        kind = {"top-custom-events": "custom", "top-outbound-links": "outbound-links",
                "top-file-downloads": "file-downloads"}[route]  # fmt: skip
        counted = Counter(what for s in traffic for k, what in s.events if k == kind)
    else:
        name = {
            "top-entry-pages": "entry_path", "top-exit-pages": "exit_path",
            "top-referrers": "referrer_domain", "top-countries": "country_code",
            "top-operating-systems": "operating_system", "top-browsers": "browser_family",
            "top-devices": "device", "top-utm-sources": "utm_source", "top-domains": "domain",
        }.get(route, route.removeprefix("top-utm-").rstrip("s"))  # fmt: skip
        counted = Counter(s.attribute(name) for s in traffic)
    ranked = sorted(counted.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    return {"keys": [k for k, _ in ranked], "values": [v for _, v in ranked]}


@pytest.mark.parametrize("route", sorted(TIMESERIES - {"live-visitors"}))
async def test_each_time_series_counts_what_was_sent(
    ask: Ask, seeded: list[Sent], route: str
) -> None:
    answer = await ask(route, **RANGE)
    assert (answer["from"], answer["to"]) == (int(FROM.timestamp()), int(TO.timestamp()))
    assert {"keys": answer["keys"], "values": answer["values"]} == expected_series(route, seeded)


@pytest.mark.parametrize("route", sorted(TOP))
async def test_each_ranked_list_counts_what_was_sent(
    ask: Ask, seeded: list[Sent], route: str
) -> None:
    answer = await ask(route, **RANGE)
    assert {"keys": answer["keys"], "values": answer["values"]} == expected_top(route, seeded)


async def test_live_visitors_are_those_seen_in_the_15_minutes_before_to(
    ask: Ask, seeded: list[Sent]
) -> None:
    last = seeded[-1].exit  # the only visit within 15 minutes of this `to`
    to = last + timedelta(minutes=10)
    answer = await ask("live-visitors", **{"from": RANGE["from"], "to": to.isoformat()})
    assert answer["keys"] == [bucket(seeded[-1].entry, FROM, to)]
    assert answer["values"] == [1]


@pytest.mark.parametrize(
    ("filters", "chosen"),
    [
        ({"domain": "example.com"}, [3]),
        ({"path": "/pricing"}, [2]),
        ({"referrer": "direct,search.example"}, [0, 1, 2, 3]),
        ({"country": "DE"}, [0, 3]),
        ({"browser": "Chrome"}, [1]),
        ({"utm-source": "news", "domain": "localhost"}, [0]),
        ({"entry-path": "/a", "exit-path": "/c"}, [0]),
        ({"os": "Linux", "country": "GB,US"}, [2]),
        ({"device": "Other", "domain": "example.com"}, [3]),
        ({"device": "iPhone"}, []),
    ],
)
async def test_filters_select_sessions(
    ask: Ask, seeded: list[Sent], filters: dict[str, str], chosen: list[int]
) -> None:
    kept = [seeded[i] for i in chosen]
    for route in ("sessions", "pageviews"):
        assert (await ask(route, **RANGE, **filters))["values"] == expected_series(route, kept)[
            "values"
        ]
    for route in ("top-pages", "top-referrers", "top-custom-events"):
        answer = await ask(route, **RANGE, **filters)
        assert {"keys": answer["keys"], "values": answer["values"]} == expected_top(route, kept)


async def test_limit_and_totals(ask: Ask, seeded: list[Sent]) -> None:
    answer = await ask("top-pages", **RANGE, limit="1")
    assert (answer["keys"], answer["values"]) == (["/a"], [3])
    assert (await ask("top-pages", **RANGE, limit="0"))["keys"] == []
    totals = (await ask("sessions", **RANGE, totals="true"))["totals"]
    assert (totals["visitors"], totals["sessions"]) == (4, 4)


async def test_time_expressions_are_read_against_the_clock(ask: Ask, seeded: list[Sent]) -> None:
    answer = await ask("sessions", **{"from": "now-1d/d", "to": "now"})  # now is T0 + 3 h
    assert answer["from"] == int((T0 - timedelta(days=1)).replace(hour=0).timestamp())
    assert answer["to"] == int((T0 + timedelta(hours=3)).timestamp())
    assert sum(answer["values"]) == len(seeded)


# --- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {STATS_TOKEN}", "Bearer test-token", "Bearer "],
    ids=["none", "wrong", "scheme", "service-token", "empty"],
)
async def test_reading_needs_the_stats_token_before_anything_else(
    http: HttpClient, stats_stub: stats_grpc.StatsServiceAsyncStub, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await http.get("/api/v1/stats/visitors?from=bad&domian=x", headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert (await response.json())["error"] == "invalid stats token"
    metadata = () if authorization is None else (("authorization", authorization),)
    request = stats_pb.GetTimeseriesRequest(metric="visitors")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stats_stub.GetTimeseries(request, metadata=metadata)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("to=now", "from"),
        ("from=&to=now", "from"),
        ("from=now-7d", "to"),
        ("from=yesterday&to=now", "from"),
        ("from=now - 7d&to=now", "from"),
        ("from=now-7D&to=now", "from"),
        ("from=now/d-1d&to=now", "from"),
        ("from=2024-02-30&to=now", "from"),
        ("from=now&to=now-1d", "to"),
        ("from=now-1d&to=now&utm_source=x", "utm_source"),
        ("from=now-1d&to=now&domian=x", "domian"),
        ("from=now-1d&to=now&limit=abc", "limit"),
        ("from=now-1d&to=now&limit=-1", "limit"),
        ("from=now-1d&to=now&limit=1001", "limit"),
        ("from=now-1d&to=now&totals=yes", "totals"),
        ("from=now-1d&to=now&interval=fortnight", "interval"),
        ("from=now-1d&to=now&interval=day&tz=Mars/Olympus", "tz"),
    ],
)
async def test_a_bad_parameter_is_400_naming_it(
    http: HttpClient, stats_stub: stats_grpc.StatsServiceAsyncStub, query: str, parameter: str
) -> None:
    response = await http.get(f"/api/v1/stats/top-pages?{query}", headers=AUTH)
    assert response.status == 400
    body = await response.json()
    assert (body["error"], body["parameter"]) == ("invalid query parameter", parameter)
    fields = dict(pair.split("=", 1) for pair in query.split("&"))
    known = {k.replace("-", "_"): v for k, v in fields.items() if k not in {"utm_source", "domian"}}
    unknown = {k: v for k, v in fields.items() if k in {"utm_source", "domian"}}
    query_message = stats_pb.StatsQuery(**known, unknown=unknown)
    request = stats_pb.GetTopRequest(metric="top-pages", query=query_message)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stats_stub.GetTop(request, metadata=GRPC_AUTH)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_from_rpc(refused.value).field == parameter


async def test_unknown_routes_are_404(http: HttpClient) -> None:
    for path in ("/api/v1/stats/top-pages/", "/api/v1/stats/top-things", "/api/v1/stats/"):
        assert (await http.get(f"{path}?from=now-1d&to=now", headers=AUTH)).status == 404


async def test_a_range_under_32_seconds_has_one_second_buckets(
    ask: Ask, seeded: list[Sent]
) -> None:
    answer = await ask(
        "pageviews", **{"from": "2026-11-20T10:00:55Z", "to": "2026-11-20T10:01:05Z"}
    )
    assert (answer["keys"], answer["values"]) == (
        [int((T0 + timedelta(seconds=60)).timestamp() * 1000)],
        [1],
    )


async def test_calendar_buckets_follow_the_time_zone(ask: Ask, seeded: list[Sent]) -> None:
    answer = await ask("pageviews", **RANGE, interval="hour", tz="Asia/Kolkata")  # UTC+5:30
    half_past = T0 - timedelta(minutes=30)  # 10:00 UTC is 15:30 there: its hour began 09:30
    hours = Counter(
        int((half_past + (timedelta(seconds=t) + timedelta(minutes=30)) // timedelta(hours=1)
             * timedelta(hours=1)).timestamp() * 1000)
        for s in seeded for t, _ in s.views
    )  # fmt: skip
    assert answer["keys"] == sorted(hours)
    assert answer["values"] == [hours[k] for k in sorted(hours)]


async def test_only_listed_origins_may_read_across_origins(http: HttpClient) -> None:
    preflight = await http.options("/api/v1/stats/visitors", headers={
        "Origin": "https://app.example.com", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    })  # fmt: skip
    assert preflight.status == 204  # no token needed
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    assert preflight.headers["Access-Control-Allow-Methods"] == "GET"
    query = "/api/v1/stats/visitors?from=now-1d&to=now"
    listed = await http.get(query, headers=AUTH | {"Origin": "https://app.example.com"})
    assert listed.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert listed.headers["Vary"] == "Origin"
    other = await http.get(query, headers=AUTH | {"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


async def test_the_stats_token_does_not_make_an_event_sender_trusted(
    http: HttpClient, core_target: str
) -> None:
    async with grpc.aio.insecure_channel(core_target) as channel:
        stub = pb_grpc.EventServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.SendPageView(pb.SendPageViewRequest(), metadata=GRPC_AUTH)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


class StuckStats:
    """A store whose stats queries never finish."""

    async def timeseries(self, query: object) -> list[tuple[int, float]]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def top(self, query: object) -> list[tuple[str, int]]:
        return await self.timeseries(query)  # type: ignore[return-value]

    async def totals(self, query: object) -> Totals:
        return await self.timeseries(query)  # type: ignore[return-value]

    async def engagement(self, query: object) -> tuple[list[tuple[str, Reading]], Reading]:
        return await self.timeseries(query)  # type: ignore[return-value]

    async def close(self) -> None:
        pass


@contextlib.asynccontextmanager
async def stuck_core(
    settings: Settings, user_agents: UserAgentsParser, stats_timeout: float
) -> AsyncIterator[tuple[str, Settings]]:
    """A core whose stats never answer, with the stats timeout ``stats_timeout``: its address,
    and the settings it runs with."""
    short = changed(settings, "stats", timeout=stats_timeout)
    deps = dataclasses.replace(core_deps(short, user_agents), stats=StuckStats())
    server = create_server(short, deps, address="127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{server.port}", short
    finally:
        await server.stop(grace=0)


async def test_a_query_over_the_stats_timeout_is_503(
    settings: Settings, user_agents: UserAgentsParser, aiohttp_client: AiohttpClient
) -> None:
    async with stuck_core(settings, user_agents, stats_timeout=0.2) as (target, short):
        http = await aiohttp_client(create_app(facade_config(target, short)))
        started = time.monotonic()
        for route in ("top-pages", "time-on-page"):
            response = await http.get(f"/api/v1/stats/{route}?from=now-1d&to=now", headers=AUTH)
            assert response.status == 503
            assert (await response.json())["error"] == "query timeout"
        assert time.monotonic() - started < 4
        async with PrismeClient(target, stats_token=STATS_TOKEN, retries=0) as client:
            with pytest.raises(PrismeError) as late:
                await client.stats("visitors", "now-1d", "now")
        assert late.value.code == grpc.StatusCode.UNAVAILABLE
        assert late.value.reason == "QUERY_TIMEOUT"


def _calendar_start(at: datetime, interval: str, zone: str) -> int:
    """The start (Unix ms) of ``at``'s hour, day or week (from Sunday) in ``zone``."""
    local = at.astimezone(ZoneInfo(zone)).replace(minute=0, second=0, microsecond=0)
    if interval != "hour":
        local = local.replace(hour=0)
    if interval == "week":
        local -= timedelta(days=(local.weekday() + 1) % 7)
    return int(local.timestamp() * 1000)


SEALED_HOURS = 37  # 09:00 to 22:00 the next day: whole hours of the range ended 2 minutes ago


async def test_page_views_of_a_domain_are_counted_by_the_hour_once_sealed(
    http: HttpClient, clock: FixedClock, ask: Ask, core: CoreServer, mongo: AsyncDatabase[Document]
) -> None:
    """The domain's page-view routes read sealed hours from hourly counts, filled by the first
    query that needs them, and the rest from the page views: the same answers either way."""
    sent = [T0 + timedelta(minutes=37 * k) for k in range(60)]  # over 37 hours
    for k, at in enumerate(sent):
        clock.at = at
        visit = Visit(page_url=f"http://localhost/p{k % 3}", client_ip=f"84.200.69.{k + 1}")
        assert (await send_http(http, visit)).ok
    clock.at = sent[-1] + timedelta(minutes=30)  # the last hours are not sealed yet
    window = {"from": "2026-11-20T09:00:00Z", "to": "now", "domain": "localhost"}
    start, end = T0 - timedelta(hours=1), clock.at
    width = max(1, int((end - start).total_seconds()) // 32) * 1000
    expected_series = Counter(int(at.timestamp() * 1000) // width * width for at in sent)
    expected_pages = Counter(f"/p{k % 3}" for k in range(len(sent)))
    hours = 0
    for _ in range(2):  # read from the page views, then from the hours counted meanwhile
        series = await ask("pageviews", **window)
        assert dict(zip(series["keys"], series["values"], strict=True)) == expected_series
        pages = await ask("top-pages", **window, totals="true")
        assert dict(zip(pages["keys"], pages["values"], strict=True)) == expected_pages
        assert pages["totals"]["pageviews"] == len(sent)
        for interval, zone in (("day", "Europe/Berlin"), ("hour", "America/New_York"),
                               ("week", "Pacific/Auckland"), ("day", "Asia/Kolkata")):  # fmt: skip
            series = await ask("pageviews", **window, interval=interval, tz=zone)
            expected = Counter(_calendar_start(at, interval, zone) for at in sent)
            assert dict(zip(series["keys"], series["values"], strict=True)) == expected, zone

        async def counted() -> bool:
            return await mongo.pageview_hours_done.count_documents({}) == SEALED_HOURS

        for _ in range(200):
            if await counted():
                break
            await asyncio.sleep(0.05)
        hours = await mongo.pageview_hours_done.count_documents({})
    assert hours == SEALED_HOURS
    clock.advance(seconds=10)
    late = Visit(page_url="http://localhost/late", client_ip="84.200.69.200")
    assert (await send_http(http, late)).ok  # into an hour not counted yet
    pages = await ask("top-pages", **window)
    assert dict(zip(pages["keys"], pages["values"], strict=True)) == expected_pages | {"/late": 1}


def _passes(stats: MongoStats) -> list[str]:
    """The collections ``stats`` aggregates over from now on, one entry per aggregation."""
    passes: list[str] = []
    aggregate = stats._aggregate

    async def counted(collection: str, pipeline: list[Document]) -> list[Document]:
        passes.append(collection)
        return await aggregate(collection, pipeline)

    stats._aggregate = counted  # type: ignore[method-assign]
    return passes


async def test_session_lists_asked_together_share_one_pass(
    seeded: list[Sent], mongo: AsyncDatabase[Document], clock: FixedClock
) -> None:
    """A dashboard asks every list of one range at once: one aggregation answers them all,
    each as it would have been answered alone."""
    stats = MongoStats(mongo, timeout=10)
    passes = _passes(stats)
    given = {"from": RANGE["from"], "to": RANGE["to"], "limit": "2", "browser": "Firefox"}

    def query(metric: str) -> Query:
        return parse_query(metric, given, {}, clock.now())

    alone = {metric: await stats.top(query(metric)) for metric in SESSION_LISTS}
    assert passes == ["sessions"] * len(SESSION_LISTS)
    passes.clear()
    together = await asyncio.gather(*(stats.top(query(metric)) for metric in SESSION_LISTS))
    assert passes == ["sessions"]
    assert dict(zip(SESSION_LISTS, together, strict=True)) == alone
    assert alone["top-entry-pages"] == [("/a", 1), ("/pricing", 1)]  # Firefox: sessions 0 and 2
    assert len(alone["top-referrers"]) == 1  # both direct
    await stats.close()


async def test_a_finished_pass_answers_again_only_while_nothing_was_written(
    seeded: list[Sent], mongo: AsyncDatabase[Document], clock: FixedClock
) -> None:
    written = [0]
    stats = MongoStats(mongo, timeout=10, writes=lambda: written[0])
    passes = _passes(stats)
    query = parse_query("top-browsers", {"from": RANGE["from"], "to": RANGE["to"]}, {}, clock.now())
    first = await stats.top(query)
    totals = await stats.totals(dataclasses.replace(query, totals=True))
    assert passes.count("sessions") == 1  # the totals came from the same pass
    assert (totals.visitors, totals.sessions, totals.bounces) == (4, 4, 2)
    written[0] += 1
    assert await stats.top(query) == first == [("Firefox", 3), ("Chrome", 1)]
    assert passes.count("sessions") == 2  # something was written: counted again
    await stats.close()
