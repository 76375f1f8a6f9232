"""`Query`: one stats request, parsed and checked; every refusal names its parameter.

The metrics: six time series, the ranked lists (`TOP`), each list a dimension of one
collection, counted in sessions, page views or events, and the two `ENGAGEMENT` routes.
Filters select sessions (DESIGN §12, reference §2.2): values split on ``,`` (empty entries
dropped, the others kept as sent), any value of a filter matches, filters combine.

Must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from prisme_core.errors import InvalidInput, Reason
from prisme_core.stats.timexpr import BadTime, parse_time


class Unit(StrEnum):
    SESSIONS = "sessions"
    PAGEVIEWS = "pageviews"
    EVENTS = "events"


@dataclass(frozen=True, slots=True)
class Dimension:
    """What a ranked list counts: ``field`` of ``collection``, in ``unit``s."""

    collection: str
    field: str
    unit: Unit


TIMESERIES: Final = frozenset(
    {"visitors", "sessions", "pageviews", "bounces", "sessions-duration", "live-visitors"}
)
TOP: Final[dict[str, Dimension]] = {
    "top-pages": Dimension("pageviews", "path", Unit.PAGEVIEWS),
    "top-entry-pages": Dimension("sessions", "entry_path", Unit.SESSIONS),
    "top-exit-pages": Dimension("sessions", "exit_path", Unit.SESSIONS),
    "top-referrers": Dimension("sessions", "referrer_domain", Unit.SESSIONS),
    "top-utm-sources": Dimension("sessions", "utm_source", Unit.SESSIONS),
    "top-utm-mediums": Dimension("sessions", "utm_medium", Unit.SESSIONS),
    "top-utm-campaigns": Dimension("sessions", "utm_campaign", Unit.SESSIONS),
    "top-utm-terms": Dimension("sessions", "utm_term", Unit.SESSIONS),
    "top-utm-contents": Dimension("sessions", "utm_content", Unit.SESSIONS),
    "top-countries": Dimension("sessions", "country_code", Unit.SESSIONS),
    "top-operating-systems": Dimension("sessions", "operating_system", Unit.SESSIONS),
    "top-browsers": Dimension("sessions", "browser_family", Unit.SESSIONS),
    "top-devices": Dimension("sessions", "device", Unit.SESSIONS),
    "top-custom-events": Dimension("events_custom", "name", Unit.EVENTS),
    "top-outbound-links": Dimension("outbound_link_clicks", "link", Unit.EVENTS),
    "top-file-downloads": Dimension("file_downloads", "url", Unit.EVENTS),
    "top-domains": Dimension("sessions", "domain", Unit.SESSIONS),
}
ENGAGEMENT: Final = frozenset({"time-on-page", "scroll-depth"})
"""How page views were read, per page and overall (from the ``engagements`` reports)."""
FILTERS: Final = {
    "domain": "domain",
    "path": "path",
    "entry-path": "entry_path",
    "exit-path": "exit_path",
    "referrer": "referrer_domain",
    "os": "operating_system",
    "browser": "browser_family",
    "country": "country_code",
    "utm-source": "utm_source",
    "utm-medium": "utm_medium",
    "utm-campaign": "utm_campaign",
    "utm-term": "utm_term",
    "utm-content": "utm_content",
    "device": "device",
}
"""Each filter parameter and the session field it selects on (``path``: a page viewed)."""
INTERVALS: Final = frozenset({"hour", "day", "week", "month"})
DEFAULT_LIMIT: Final = 10
MAX_LIMIT: Final = 1000
BUCKETS: Final = 32
"""Prisme's time series: the range in 32 epoch-aligned buckets."""
LIVE_WINDOW: Final = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class Query:
    metric: str
    start: datetime
    end: datetime
    filters: Mapping[str, tuple[str, ...]]
    """Session field → the values any of which matches (``path``: a page the session saw)."""
    limit: int
    totals: bool
    interval: str | None
    tz: ZoneInfo
    now: datetime
    """When the query was asked: no page view can still arrive long before it."""

    @property
    def bucket_ms(self) -> int:
        """Prisme's bucket width: a 32nd of the range, at least a second."""
        seconds = int((self.end - self.start).total_seconds()) // BUCKETS
        return max(1, seconds) * 1000


def refuse(parameter: str, why: str) -> InvalidInput:
    return InvalidInput(Reason.INVALID_QUERY_PARAMETER, f"{parameter}: {why}", parameter)


def parse_query(
    metric: str, given: Mapping[str, str], unknown: Mapping[str, str], now: datetime
) -> Query:
    """The query of ``metric`` (one of `TIMESERIES`, `TOP` or `ENGAGEMENT`, which the caller
    checked) from its parameters (``given`` by name, ``unknown`` those no field takes); raises
    `InvalidInput` naming the first bad one."""
    for name in sorted(unknown):
        raise refuse(name, "unknown parameter")
    start, end = _time(given, "from", now, end=False), _time(given, "to", now, end=True)
    if end < start:
        raise refuse("to", "is before from")
    return Query(
        metric=metric,
        start=start,
        end=end,
        filters={
            column: values
            for name, column in FILTERS.items()
            if (values := tuple(v for v in given.get(name, "").split(",") if v.strip()))
        },
        limit=_limit(given.get("limit", "")),
        totals=_flag(given.get("totals", ""), "totals"),
        interval=_interval(given.get("interval", "")),
        tz=_zone(given.get("tz", "")),
        now=now,
    )


def _time(given: Mapping[str, str], name: str, now: datetime, *, end: bool) -> datetime:
    text = given.get(name, "")
    if not text:
        raise refuse(name, "is required")
    try:
        return parse_time(text, now, end=end)
    except BadTime as exc:
        raise refuse(name, str(exc)) from exc


def _limit(text: str) -> int:
    if not text:
        return DEFAULT_LIMIT
    if not text.isascii() or not text.isdigit() or int(text) > MAX_LIMIT:
        raise refuse("limit", f"must be an integer from 0 to {MAX_LIMIT}")
    return int(text)


def _flag(text: str, name: str) -> bool:
    if text not in {"", "true", "false"}:
        raise refuse(name, "must be true or false")
    return text == "true"


def _interval(text: str) -> str | None:
    if text and text not in INTERVALS:
        raise refuse("interval", "must be hour, day, week or month")
    return text or None


def _zone(text: str) -> ZoneInfo:
    try:
        return ZoneInfo(text or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise refuse("tz", "is not an IANA time zone") from exc
