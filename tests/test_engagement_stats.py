"""Time on page and scroll depth (DESIGN §14) over HTTP and gRPC against the real store:
reports sent through the events API, each answer compared with figures this test computes from
what it sent (each page view's reports summed first, then described)."""

from __future__ import annotations

import statistics
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from prisme_client import PrismeClient, PrismeError
from prisme_core.ports import FixedClock
from prisme_core.server import CoreServer

from tests.conftest import STATS_TOKEN
from tests.support import FIREFOX, HttpClient
from tests.transports import StatsAsk, Visit, send_batch_http, stats_asker

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
AUTH = {"Authorization": f"Bearer {STATS_TOKEN}"}
FROM, TO = T0 - timedelta(hours=1), T0 + timedelta(hours=3)
RANGE = {"from": "2026-11-20T09:00:00Z", "to": "2026-11-20T13:00:00Z"}
ROUTES = ("time-on-page", "scroll-depth")
REACHED = ("reached25", "reached50", "reached75", "reached100")


@dataclass
class Reader:
    """One visitor's session as sent: its pages in order, each with its reports as sent
    (engaged ms since the last report, deepest scroll so far)."""

    ip: str
    agent: str
    pages: list[tuple[str, list[tuple[int, int]]]]
    domain: str = "localhost"
    start: timedelta = timedelta()


TRAFFIC = [
    Reader("84.200.69.80", FIREFOX, [
        ("/a", [(3000, 40), (1500, 80)]), ("/b", [(2000, 100)]), ("/c", [(500, 10)]),
    ]),
    Reader("8.8.8.8", CHROME, [("/a", [(10_000, 100)]), ("/b", [])]),
    Reader("81.2.69.160", FIREFOX, [("/a", [(4000, 25), (0, 30)]), ("/c", [(7000, 75)])]),
    Reader("84.200.69.81", CHROME, [("/a", [(1000, 0)])]),
    Reader("84.200.69.82", FIREFOX, [("/a", [(60_000, 50)])], domain="example.com"),
    Reader("84.200.69.83", FIREFOX, [("/a", [(99_000, 100)])], start=timedelta(hours=5)),
]  # fmt: skip
"""Even and odd counts per page, a page view without reports, a report that does not deepen
the scroll, another domain, and a session after the range."""
IN_RANGE = TRAFFIC[:5]


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def core_clock(clock: FixedClock) -> FixedClock:
    return clock


@pytest.fixture
async def seeded(http: HttpClient, clock: FixedClock, core: CoreServer) -> list[Reader]:
    """Each page view, then its reports, 30 s apart, through the HTTP batch route."""
    for reader in TRAFFIC:
        clock.at = T0 + reader.start
        origin, previous = f"http://{reader.domain}", ""
        for path, reports in reader.pages:
            visit = Visit(origin=origin, page_url=f"{origin}{path}", user_agent=reader.agent,
                          client_ip=reader.ip)  # fmt: skip
            view_id = str(uuid.uuid4())
            view = {"kind": "pageview", "event_id": view_id, "document_referrer": previous}
            answers = await send_batch_http(http, [view], visit)
            previous = visit.page_url
            assert [a.ok for a in answers] == [True], answers
            events = [
                {"kind": "engagement", "pageview_id": view_id, "engaged_ms": ms,
                 "scroll_depth": depth}
                for ms, depth in reports
            ]  # fmt: skip
            clock.at += timedelta(seconds=30)
            if events:
                answers = await send_batch_http(http, events, visit)
                assert all(a.ok for a in answers), answers
    await core.flush()
    clock.at = T0 + timedelta(hours=6)
    return TRAFFIC


def figures(views: list[tuple[int, int]]) -> dict[str, Any]:
    """The figures of page views given as (engaged ms, deepest scroll), as the API names them."""
    seconds = [ms / 1000 for ms, _ in views]
    depths = [depth for _, depth in views]
    if not views:
        zero = ("meanSeconds", "medianSeconds", "meanScrollDepth", *REACHED)
        return {"pageviews": 0} | dict.fromkeys(zero, 0.0)
    return {
        "pageviews": len(views),
        "meanSeconds": pytest.approx(statistics.mean(seconds)),
        "medianSeconds": pytest.approx(statistics.median(seconds)),
        "meanScrollDepth": pytest.approx(statistics.mean(depths)),
    } | {name: pytest.approx(sum(d >= q for d in depths) / len(views))
         for name, q in zip(REACHED, (25, 50, 75, 100), strict=True)}  # fmt: skip


def expected(route: str, readers: list[Reader], limit: int = 10) -> dict[str, Any]:
    per_page: dict[str, list[tuple[int, int]]] = {}
    for reader in readers:
        for path, reports in reader.pages:
            if reports:
                view = (sum(ms for ms, _ in reports), max(depth for _, depth in reports))
                per_page.setdefault(path, []).append(view)
    ranked = sorted(per_page, key=lambda path: (-len(per_page[path]), path))[:limit]
    pages = [figures(per_page[path]) for path in ranked]
    lead = "meanSeconds" if route == "time-on-page" else "meanScrollDepth"
    return {
        "keys": ranked,
        "values": [page[lead] for page in pages],
        "pages": pages,
        "overall": figures([view for views in per_page.values() for view in views]),
    }


Ask = StatsAsk


@pytest.fixture(params=["http", "grpc"])
def ask(request: pytest.FixtureRequest, http: HttpClient, core_target: str) -> Ask:
    """``ask(route, **params)``: the answer's JSON (over gRPC, the same shape)."""
    return stats_asker(request.param, http, core_target, STATS_TOKEN)


def answered(answer: dict[str, Any]) -> dict[str, Any]:
    return {name: answer[name] for name in ("keys", "values", "pages", "overall")}


@pytest.mark.parametrize("route", ROUTES)
async def test_each_page_and_all_pages_are_described_from_what_was_sent(
    ask: Ask, seeded: list[Reader], route: str
) -> None:
    answer = await ask(route, **RANGE)
    assert (answer["from"], answer["to"]) == (int(FROM.timestamp()), int(TO.timestamp()))
    assert answered(answer) == expected(route, IN_RANGE)
    assert answer["keys"] == ["/a", "/c", "/b"]  # 5, 2 and 1 page views with reports


@pytest.mark.parametrize(
    ("filters", "chosen"),
    [
        ({"domain": "localhost"}, [0, 1, 2, 3]),  # an even count on /a: the middle two
        ({"browser": "Chrome"}, [1, 3]),
        ({"path": "/c"}, [0, 2]),  # the sessions that saw /c, all their pages
        ({"domain": "example.com"}, [4]),
        ({"country": "GB"}, [2]),
    ],
)
async def test_filters_select_sessions_as_on_every_route(
    ask: Ask, seeded: list[Reader], filters: dict[str, str], chosen: list[int]
) -> None:
    kept = [seeded[i] for i in chosen]
    for route in ROUTES:
        assert answered(await ask(route, **RANGE, **filters)) == expected(route, kept)


async def test_limit_keeps_the_most_read_pages_and_the_overall_figures(
    ask: Ask, seeded: list[Reader]
) -> None:
    assert answered(await ask("time-on-page", **RANGE, limit="1")) == expected(
        "time-on-page", IN_RANGE, limit=1
    )
    answer = await ask("scroll-depth", **RANGE, limit="0")
    assert (answer["keys"], answer["pages"]) == ([], [])
    assert answer["overall"] == expected("scroll-depth", IN_RANGE)["overall"]


async def test_a_range_without_reports_is_all_zero(ask: Ask, seeded: list[Reader]) -> None:
    answer = await ask("time-on-page", **{"from": "2026-11-19", "to": "2026-11-19"})
    assert answered(answer) == {"keys": [], "values": [], "pages": [], "overall": figures([])}


async def test_the_range_counts_only_its_own_reports(ask: Ask, seeded: list[Reader]) -> None:
    late = {"from": "2026-11-20T14:00:00Z", "to": "2026-11-20T16:00:00Z"}
    assert answered(await ask("time-on-page", **late)) == expected("time-on-page", TRAFFIC[5:])


async def test_totals_come_with_the_engagement_routes_too(ask: Ask, seeded: list[Reader]) -> None:
    answer = await ask("time-on-page", **RANGE, totals="true")
    assert answered(answer) == expected("time-on-page", IN_RANGE)
    totals = answer["totals"]
    assert (int(totals["visitors"]), int(totals["sessions"])) == (5, 5)


@pytest.mark.parametrize("route", ROUTES)
async def test_reading_needs_the_token_and_good_parameters(
    http: HttpClient, core_target: str, route: str
) -> None:
    refused = await http.get(f"/api/v1/stats/{route}", params=RANGE)
    assert (refused.status, refused.headers["WWW-Authenticate"]) == (401, "Bearer")
    for bad, parameter in (({"limit": "1001"}, "limit"), ({"domian": "x"}, "domian")):
        response = await http.get(f"/api/v1/stats/{route}", params=RANGE | bad, headers=AUTH)
        assert response.status == 400
        assert (await response.json())["parameter"] == parameter
    async with PrismeClient(core_target, stats_token=STATS_TOKEN) as client:
        with pytest.raises(PrismeError) as late:
            await client.stats(route, "now", "now-1d")
    assert (late.value.code, late.value.field) == (grpc.StatusCode.INVALID_ARGUMENT, "to")
