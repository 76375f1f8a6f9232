"""`MongoStats`: the stats queries as MongoDB aggregations (reference stats §8).

Every route starts from the sessions that overlap the range and match the filters (`_select`);
time series group them (or their page views) into buckets, ranked lists into the values of a
dimension, sorted by count and then by key. Page-view and event counts are clipped to the
range. Everything is grouped by the store; only the answer (at most 1,000 rows, or one per
bucket) comes back. One pass over the sessions answers every session list and the totals of a
range and filters; answers are shared by the calls that ask while they are counted, and kept
while nothing is written (`Shared`). The caller's wait is bounded by the stats timeout; the
store's operations by `BACKGROUND` times it, so that a query answered 503 goes on for whoever
asks it again.

Must not import grpc or aiohttp.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import pymongo
from pymongo.asynchronous.database import AsyncDatabase

from prisme_core.adapters.hours import HOUR_MS, to_ms
from prisme_core.adapters.mongo import (
    ENGAGEMENTS,
    PAGEVIEWS,
    SESSIONS,
    Document,
    map_pymongo_errors,
)
from prisme_core.adapters.mongo_rollups import PageviewHours, epoch_bucket, one_of
from prisme_core.adapters.shared import Shared
from prisme_core.stats.figures import QUARTER, QUARTERS, UNREAD, Reading, Totals
from prisme_core.stats.query import LIVE_WINDOW, MAX_LIMIT, TOP, Query, Unit

SESSION_FIELDS_ON_EVENTS: Final = frozenset({"domain"})
"""Filters an event document answers itself; the others select its sessions."""
SESSION_FIELDS_ON_PAGEVIEWS: Final = frozenset(
    {"domain", "referrer_domain", "operating_system", "browser_family", "country_code"}
    | {"utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"}
)
"""Filters a page view answers itself (its session's attributes are copied onto it)."""
SESSION_LISTS: Final = {metric: d for metric, d in TOP.items() if d.unit is Unit.SESSIONS}
"""The ranked lists of sessions, counted together in one pass (`MongoStats._sessions`)."""
CLIPPED: Final = {"entry_path": "entry_timestamp", "exit_path": "exit_timestamp"}
"""The lists that count only what happened in the range: a session's entry or exit."""

BACKGROUND: Final = 3
"""How many stats timeouts a store operation may take: a query answered 503 at the timeout
goes on counting (`Shared`) for whoever asks it again."""


@dataclass(frozen=True, slots=True)
class Counted:
    """What one pass over the sessions of a range gives."""

    lists: dict[str, list[tuple[str, int]]]
    """Each ranked list of `SESSION_LISTS`: (value, sessions), highest first."""
    visitors: int
    sessions: int
    bounces: int
    duration_ms: float
    """Summed over the sessions."""
    live_visitors: int


class MongoStats:
    def __init__(
        self, db: AsyncDatabase[Document], timeout: float, writes: Callable[[], int] | None = None
    ) -> None:
        """``writes`` counts the writes to ``db`` (the event store's): without it, answers are
        shared only while they are counted."""
        self._db = db
        self._timeout = timeout
        self._hours = PageviewHours(db, self._aggregate, self._bounded)
        self._shared = Shared(writes)

    @contextmanager
    def _bounded(self, what: str) -> Iterator[None]:
        with map_pymongo_errors(what), pymongo.timeout(self._timeout * BACKGROUND):
            yield

    async def _aggregate(self, collection: str, pipeline: list[Document]) -> list[Document]:
        with self._bounded(f"read {collection} stats"):
            cursor = await self._db[collection].aggregate(pipeline)
            return await cursor.to_list()

    async def close(self) -> None:
        await self._hours.close()

    async def timeseries(self, query: Query) -> list[tuple[int, float]]:
        key = ("series", query.metric, query.start, query.end, _filters(query), query.interval,
               query.tz.key)  # fmt: skip
        return await self._shared.get(key, lambda: self._timeseries(query))

    async def _timeseries(self, query: Query) -> list[tuple[int, float]]:
        """The buckets that have data, in order: (start in Unix ms, value)."""
        metric = query.metric
        if metric == "pageviews" and _by_domain(query) and _in_whole_hours(query):
            width = query.bucket_ms if query.interval is None else HOUR_MS
            found = await self._hours.count(
                query.filters["domain"], query.start, query.end, query.now, width
            )
            buckets: Counter[int] = Counter()
            for key, n in found.items():
                buckets[_calendar(int(key), query)] += n
            return sorted((key, float(n)) for key, n in buckets.items())
        if metric == "pageviews":
            match = await self._events_match(query, SESSION_FIELDS_ON_PAGEVIEWS)
            stages = [{"$match": match}, _count_by(_bucket("timestamp", query))]
            return _series(await self._aggregate(PAGEVIEWS, stages))
        select = await self._select(query)
        if metric == "bounces":
            select["pageviews"] = 1
        if metric == "live-visitors":
            select["exit_timestamp"] = {"$gte": query.start, "$gt": query.end - LIVE_WINDOW}
        bucket = _bucket("entry_timestamp", query)
        if metric in {"visitors", "live-visitors"}:
            group: list[Document] = [
                {"$group": {"_id": {"b": bucket, "v": "$visitor_id"}}},
                {"$group": {"_id": "$_id.b", "n": {"$sum": 1}}},
            ]
        elif metric == "sessions-duration":
            duration = {"$subtract": ["$exit_timestamp", "$entry_timestamp"]}
            group = [{"$group": {"_id": bucket, "n": {"$avg": duration}}}]
        else:
            group = [_count_by(bucket)]
        rows = _series(await self._aggregate(SESSIONS, [{"$match": select}, *group]))
        if metric == "sessions-duration":
            return [(key, float(int(value // 1000))) for key, value in rows]
        return rows

    async def top(self, query: Query) -> list[tuple[str, int]]:
        """The most frequent values of the metric's dimension, highest first, then by key."""
        dimension = TOP[query.metric]
        if query.limit == 0:
            return []
        if query.metric == "top-pages" and _by_domain(query):
            found = await self._hours.count(
                query.filters["domain"], query.start, query.end, query.now, None
            )
            ranked = sorted(found.items(), key=lambda row: (-row[1], row[0]))
            return [(str(key), int(n)) for key, n in ranked[: query.limit]]
        if dimension.unit is Unit.SESSIONS:
            return (await self._sessions(query)).lists[query.metric][: query.limit]
        answers = SESSION_FIELDS_ON_PAGEVIEWS
        if dimension.unit is Unit.EVENTS:
            answers = SESSION_FIELDS_ON_EVENTS
        match = await self._events_match(query, answers)
        stages = [
            {"$match": match},
            _count_by(f"${dimension.field}"),
            {"$sort": {"n": -1, "_id": 1}},
            {"$limit": query.limit},
        ]
        rows = await self._aggregate(dimension.collection, stages)
        return [(str(row["_id"]), int(row["n"])) for row in rows]

    async def _sessions(self, query: Query) -> Counted:
        """What the sessions of ``query``'s range and filters give: every ranked list (to
        `MAX_LIMIT` rows) and the totals, in one pass (shared)."""
        key = ("sessions", query.start, query.end, _filters(query))
        return await self._shared.get(key, lambda: self._count_sessions(query))

    async def _count_sessions(self, query: Query) -> Counted:
        ranked: list[Document] = [{"$sort": {"n": -1, "_id": 1}}, {"$limit": MAX_LIMIT}]
        facets: dict[str, list[Document]] = {}
        for metric, dimension in SESSION_LISTS.items():
            clip = []
            if (at := CLIPPED.get(dimension.field)) is not None:
                clip = [{"$match": {at: {"$gte": query.start, "$lte": query.end}}}]
            facets[metric] = [*clip, _count_by(f"${dimension.field}"), *ranked]
        duration = {"$subtract": ["$exit_timestamp", "$entry_timestamp"]}
        # Per visitor first, then over all: distinct visitors are counted as groups, since an
        # `$addToSet` of every visitor costs the embedded store the square of their number.
        facets["totals"] = [
            {"$group": {
                "_id": "$visitor_id",
                "sessions": {"$sum": 1},
                "bounces": {"$sum": {"$cond": [{"$eq": ["$pageviews", 1]}, 1, 0]}},
                "duration": {"$sum": duration},
            }},
            {"$group": {
                "_id": None,
                "visitors": {"$sum": 1},
                "sessions": {"$sum": "$sessions"},
                "bounces": {"$sum": "$bounces"},
                "duration": {"$sum": "$duration"},
            }},
        ]  # fmt: skip
        facets["live"] = [
            {"$match": {"exit_timestamp": {"$gt": query.end - LIVE_WINDOW}}},
            {"$group": {"_id": "$visitor_id"}},
            {"$count": "n"},
        ]
        # No `$project` first: it costs the embedded store more than it saves the facets.
        found = await self._aggregate(
            SESSIONS, [{"$match": await self._select(query)}, {"$facet": facets}]
        )
        facet = found[0] if found else {}
        row: Document = next(iter(facet.get("totals", [])), {})
        live: Document = next(iter(facet.get("live", [])), {})
        return Counted(
            lists={
                metric: [(str(found["_id"]), int(found["n"])) for found in facet.get(metric, [])]
                for metric in SESSION_LISTS
            },
            visitors=int(row.get("visitors", 0)),
            sessions=int(row.get("sessions", 0)),
            bounces=int(row.get("bounces", 0)),
            duration_ms=float(row.get("duration") or 0),
            live_visitors=int(live.get("n", 0)),
        )

    async def totals(self, query: Query) -> Totals:
        counted = await self._sessions(query)
        sessions = counted.sessions
        return Totals(
            visitors=counted.visitors,
            sessions=sessions,
            pageviews=await self._pageviews(query),
            bounces=counted.bounces,
            session_duration=counted.duration_ms / 1000 / sessions if sessions else 0.0,
            live_visitors=counted.live_visitors,
        )

    async def _pageviews(self, query: Query) -> int:
        key = ("pageviews", query.start, query.end, _filters(query))
        return await self._shared.get(key, lambda: self._count_pageviews(query))

    async def _count_pageviews(self, query: Query) -> int:
        """The page views in the range: a domain's from the hourly counts, as `top-pages`."""
        if _by_domain(query):
            found = await self._hours.count(
                query.filters["domain"], query.start, query.end, query.now, None
            )
            return int(sum(found.values()))
        views = await self._aggregate(PAGEVIEWS, [
            {"$match": await self._events_match(query, SESSION_FIELDS_ON_PAGEVIEWS)},
            {"$count": "n"},
        ])  # fmt: skip
        return int(views[0]["n"]) if views else 0

    async def engagement(self, query: Query) -> tuple[list[tuple[str, Reading]], Reading]:
        key = ("engagement", query.start, query.end, _filters(query), query.limit)
        return await self._shared.get(key, lambda: self._engagement(query))

    async def _engagement(self, query: Query) -> tuple[list[tuple[str, Reading]], Reading]:
        """How the page views reported in the range were read: per path (most page views
        first, then by path) and overall.

        Each page view's reports are summed first. Then one pass per figure kind: the two
        middle values by `$percentile`, and the page views per quarter of scroll depth (with
        their engaged time and depth), from which the means and shares follow. Grouping by
        quarter costs the embedded store a quarter of what a condition per depth does."""
        per_view = {"$group": {
            "_id": {"view": "$pageview_id", "session": "$session_uuid"},
            "path": {"$first": "$path"},
            "ms": {"$sum": "$engaged_ms"},
            "depth": {"$max": "$scroll_depth"},
        }}  # fmt: skip
        facets: dict[str, list[Document]] = {
            "middle": [_middle(None)],
            "quarters": [_quarters(None)],
        }
        if query.limit:
            ranked: list[Document] = [{"$sort": {"n": -1, "_id": 1}}, {"$limit": query.limit}]
            facets["page_middles"] = [_middle("$path"), *ranked]
            facets["page_quarters"] = [_quarters("$path"), {"$group": {
                "_id": "$_id.of",
                "n": {"$sum": "$n"},
                "quarters": {"$push": {"q": "$_id.q", "n": "$n", "ms": "$ms", "depth": "$depth"}},
            }}, *ranked]  # fmt: skip
        match = await self._events_match(query, SESSION_FIELDS_ON_EVENTS)
        found = await self._aggregate(
            ENGAGEMENTS, [{"$match": match}, per_view, {"$facet": facets}]
        )
        facet = found[0] if found else {}
        middles = {row["_id"]: row["middle"] for row in facet.get("page_middles", [])}
        by_path = [
            (str(row["_id"]), _read(row["quarters"], middles[row["_id"]]))
            for row in facet.get("page_quarters", [])
        ]
        overall: list[float] = next((row["middle"] for row in facet.get("middle", [])), [])
        quarters = [row["_id"] | row for row in facet.get("quarters", [])]
        return by_path, _read(quarters, overall)

    async def _select(self, query: Query) -> Document:
        """The `$match` of the sessions that overlap the range and match every filter."""
        match: Document = {
            "entry_timestamp": {"$lte": query.end},
            "exit_timestamp": {"$gte": query.start},
        }
        for field, values in query.filters.items():
            if field != "path":
                match[field] = one_of(values)
        if "path" in query.filters:
            seen: Document = {"path": one_of(query.filters["path"]),
                              "timestamp": {"$lte": query.end}}  # fmt: skip
            if "domain" in query.filters:
                seen["domain"] = one_of(query.filters["domain"])
            with self._bounded("find sessions by page"):
                ids = await self._db[PAGEVIEWS].distinct("session_uuid", seen)
            match["session_uuid"] = {"$in": ids}
        return match

    async def _events_match(
        self, query: Query, answers: frozenset[str], select: Document | None = None
    ) -> Document:
        """The `$match` of page views (or events) in the range whose sessions match the
        filters: by their own copied fields when they have them, else by session id (of the
        sessions ``select`` matches, when the caller has it)."""
        match: Document = {"timestamp": {"$gte": query.start, "$lte": query.end}}
        for field, values in query.filters.items():
            if field in answers:
                match[field] = one_of(values)
        if set(query.filters) - answers:
            select = select or await self._select(query)
            with self._bounded("select sessions"):
                ids = await self._db[SESSIONS].distinct("session_uuid", select)
            match["session_uuid"] = {"$in": ids}
        return match


MIDDLE: Final = (0.5, 0.5 + 1e-9)
"""The percentiles of the two middle values: `$percentile` takes the value of rank ⌈p·n⌉, so
these are ranks n/2 and n/2 + 1 for an even n, and the middle rank twice for an odd one (exact
on the embedded store; on MongoDB ≥ 7.0, within its t-digest's accuracy)."""


def _middle(partition: str | None) -> Document:
    """The page views of each ``partition``, and their two middle engaged times."""
    middle = {"input": "$ms", "p": list(MIDDLE), "method": "approximate"}
    return {"$group": {"_id": partition, "n": {"$sum": 1}, "middle": {"$percentile": middle}}}


def _quarters(partition: str | None) -> Document:
    """The page views of each ``partition`` and quarter of scroll depth (0 to 4: 100 % is 4),
    with their engaged time and depth summed."""
    quarter = {"$floor": {"$divide": ["$depth", QUARTER]}}
    return {"$group": {
        "_id": {"of": partition, "q": quarter},
        "n": {"$sum": 1},
        "ms": {"$sum": "$ms"},
        "depth": {"$sum": "$depth"},
    }}  # fmt: skip


def _read(quarters: list[Document], middle: list[float]) -> Reading:
    """The figures from the page views per quarter (``q``, ``n``, ``ms``, ``depth``) and the
    two middle engaged times."""
    views = sum(int(row["n"]) for row in quarters)
    if not views or not middle:
        return UNREAD
    reached = [
        sum(int(row["n"]) for row in quarters if row["q"] * QUARTER >= depth) / views
        for depth in QUARTERS
    ]
    return Reading(
        views,
        mean_seconds=sum(row["ms"] for row in quarters) / views / 1000,
        median_seconds=sum(middle) / len(middle) / 1000,
        mean_scroll_depth=sum(row["depth"] for row in quarters) / views,
        reached_25=reached[0],
        reached_50=reached[1],
        reached_75=reached[2],
        reached_100=reached[3],
    )


def _filters(query: Query) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple(sorted(query.filters.items()))


def _by_domain(query: Query) -> bool:
    """Whether the hourly counts answer the query: it names domains and filters nothing else."""
    return set(query.filters) == {"domain"}


def _count_by(key: Any) -> Document:
    return {"$group": {"_id": key, "n": {"$sum": 1}}}


def _in_whole_hours(query: Query) -> bool:
    """Whether each hour of the range falls in one bucket: always for Prisme's epoch-aligned
    ones, and for calendar ones where the zone's offset is whole hours throughout (ranges of
    up to `HOURLY_AT_MOST` hours are checked; longer ones are counted from the page views)."""
    if query.interval is None:
        return True
    hours = range(to_ms(query.start) // HOUR_MS, to_ms(query.end) // HOUR_MS + 1)
    return len(hours) <= HOURLY_AT_MOST and all(
        (offset := datetime.fromtimestamp(h * 3600, query.tz).utcoffset()) is not None
        and offset.total_seconds() % 3600 == 0
        for h in hours
    )


HOURLY_AT_MOST: Final = 24 * 400


def _calendar(start_ms: int, query: Query) -> int:
    """The bucket of an hourly count that starts at ``start_ms``: itself for Prisme's buckets,
    else the start of its calendar unit in the query's zone (weeks start on Sunday)."""
    if query.interval in {None, "hour"}:  # an hour is its own bucket in whole-hour zones
        return start_ms
    local = datetime.fromtimestamp(start_ms / 1000, query.tz)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if query.interval == "week":
        day -= timedelta(days=(day.weekday() + 1) % 7)
    elif query.interval == "month":
        day = day.replace(day=1)
    return to_ms(day)


def _bucket(field: str, query: Query) -> Document:
    """The start of ``field``'s bucket: Prisme's epoch-aligned slice in ms, or with an
    ``interval`` the calendar unit's start in the query's time zone (a date)."""
    if query.interval is not None:
        return {"$dateTrunc": {"date": f"${field}", "unit": query.interval,
                               "timezone": query.tz.key, "startOfWeek": "sunday"}}  # fmt: skip
    return epoch_bucket(f"${field}", query.bucket_ms)


def _series(rows: list[Document]) -> list[tuple[int, float]]:
    found = [(_key_ms(row["_id"]), float(row["n"])) for row in rows if row["_id"] is not None]
    return sorted(found)


def _key_ms(key: object) -> int:
    """A bucket's key in Unix ms: an epoch slice's already is; a calendar unit's is a date."""
    if isinstance(key, datetime):
        return to_ms(key if key.tzinfo is not None else key.replace(tzinfo=UTC))
    assert isinstance(key, int | float)
    return int(key)
