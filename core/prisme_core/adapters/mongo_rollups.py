"""`PageviewHours`: page views counted per domain, hour and path, for the stats' page-view
routes (``pageviews``, ``top-pages``) of one or more domains.

An hour is counted once it is sealed (`prisme_core.adapters.hours`), after the first query
that needs it, in the background: that query reads it from the page views, like the ones
that come before the counting is done. The counts go to ``pageview_hours`` (a document per
domain, hour and path) and a marker to ``pageview_hours_done`` (a document per domain and
hour) once they are there. A backdated page view's store removes its hour's marker, and the
next query counts that hour again. (One stored while its hour is first being counted, between
the count's read and its marker, is missed until that hour is counted again.) Counting is
idempotent (``$set``), so racing queries, or instances, count the same. Both are keyed by
text (``domain|hour|path``), which the embedded store finds by its primary key; an embedded
document as ``_id`` it scans for, which made each write cost as much as the collection. A
query reads its range's sealed hours from the counts, and the rest (its edges, the hours not
sealed yet, and for a time series the hours a bucket boundary cuts) from the page views
themselves.

Only the read side counts; ingestion writes here only for a backdated page view.

Must not import grpc or aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Final

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from prisme_core.adapters.hours import HOUR_MS, SEAL, at_ms, marker, to_ms
from prisme_core.adapters.mongo import HOURS, HOURS_DONE, PAGEVIEWS, Document
from prisme_core.errors import CoreError

logger = logging.getLogger(__name__)

FILL_HOURS: Final = 24
"""Hours counted per store call: a counting stopped (a restart, the store down) keeps what it
counted."""
HORIZON: Final = timedelta(days=400)
"""Hours older than this are read from the page views (a range from the year 2000 is not
counted hour by hour)."""

Aggregate = Callable[[str, list[Document]], Awaitable[list[Document]]]
Bounded = Callable[[str], AbstractContextManager[None]]


class PageviewHours:
    def __init__(self, db: AsyncDatabase[Document], aggregate: Aggregate, bounded: Bounded) -> None:
        self._db = db
        self._aggregate = aggregate
        self._bounded = bounded
        self._filling: asyncio.Task[None] | None = None

    async def count(
        self,
        domains: Sequence[str],
        start: datetime,
        end: datetime,
        now: datetime,
        bucket_ms: int | None,
    ) -> Counter[int] | Counter[str]:
        """The page views of ``domains`` in [``start``, ``end``]: per bucket of
        ``bucket_ms`` (by the bucket's start in ms), or without one per path."""
        start_ms, end_ms = to_ms(start), to_ms(end) + 1
        sealed = _sealed_hours(start_ms, end_ms, to_ms(now - SEAL), to_ms(now - HORIZON), bucket_ms)
        counted = await self._counted(domains, sealed)
        hours = [h for h in sealed if all((d, h) in counted for d in domains)]
        missing = {d: [h for h in sealed if (d, h) not in counted] for d in domains}
        if any(missing.values()):
            self._fill_later(missing)
        found: Counter[int] | Counter[str] = Counter()
        for row in await self._rolled(domains, hours, bucket_ms):
            found[row["_id"]] += row["n"]
        for low, high in _gaps(start_ms, end_ms, hours):
            for row in await self._raw(domains, low, high, bucket_ms):
                found[row["_id"]] += row["n"]
        return found

    async def _rolled(
        self, domains: Sequence[str], hours: list[int], bucket_ms: int | None
    ) -> list[Document]:
        if not hours:
            return []
        match: Document = {
            "domain": one_of(domains),
            "hour": {"$gte": at_ms(hours[0]), "$lte": at_ms(hours[-1])},
        }
        skipped = sorted(set(range(hours[0], hours[-1], HOUR_MS)) - set(hours))
        if skipped:  # a time series' hours that a bucket boundary cuts
            match["hour"]["$nin"] = [at_ms(h) for h in skipped]
        key: object = "$path" if bucket_ms is None else epoch_bucket("$hour", bucket_ms)
        group = {"$group": {"_id": key, "n": {"$sum": "$n"}}}
        return await self._aggregate(HOURS, [{"$match": match}, group])

    async def _raw(
        self, domains: Sequence[str], low: int, high: int, bucket_ms: int | None
    ) -> list[Document]:
        match = {"domain": one_of(domains),
                 "timestamp": {"$gte": at_ms(low), "$lt": at_ms(high)}}  # fmt: skip
        key: object = "$path" if bucket_ms is None else epoch_bucket("$timestamp", bucket_ms)
        group = {"$group": {"_id": key, "n": {"$sum": 1}}}
        return await self._aggregate(PAGEVIEWS, [{"$match": match}, group])

    async def close(self) -> None:
        """Stops a counting in progress (what it counted stays)."""
        if self._filling is not None:
            self._filling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._filling

    async def _counted(self, domains: Sequence[str], hours: list[int]) -> set[tuple[str, int]]:
        """Which of ``hours`` are counted, per domain."""
        if not hours:
            return set()
        with self._bounded("read the counted hours"):
            done = self._db[HOURS_DONE].find(
                {"domain": one_of(domains),
                 "hour": {"$gte": at_ms(hours[0]), "$lte": at_ms(hours[-1])}},
                {"domain": 1, "hour": 1},
            )  # fmt: skip
            return {(doc["domain"], to_ms(doc["hour"])) async for doc in done}

    def _fill_later(self, missing: dict[str, list[int]]) -> None:
        """Counts the ``missing`` hours in the background, one filling at a time (a query
        that comes meanwhile reads them from the page views, and asks again after)."""
        if self._filling is None or self._filling.done():
            self._filling = asyncio.create_task(self._fill(missing), name="stats-hours")

    async def _fill(self, missing: dict[str, list[int]]) -> None:
        try:
            for domain, hours in missing.items():
                for first in range(0, len(hours), FILL_HOURS):
                    await self._count(domain, hours[first : first + FILL_HOURS])
        except CoreError as error:  # counted next time
            logger.warning("counting page views by hour stopped: %s", error)

    async def _count(self, domain: str, hours: list[int]) -> None:
        """Counts ``hours`` (sorted) of ``domain``, then marks them counted."""
        span = {"$gte": at_ms(hours[0]), "$lt": at_ms(hours[-1] + HOUR_MS)}
        match = {"domain": domain, "timestamp": span}
        rows = await self._aggregate(PAGEVIEWS, [
            {"$match": match},
            {"$group": {"_id": {"h": epoch_bucket("$timestamp", HOUR_MS), "p": "$path"},
                        "n": {"$sum": 1}}},
        ])  # fmt: skip
        wanted = set(hours)
        counts = [
            UpdateOne(
                {"_id": f"{domain}|{row['_id']['h']}|{row['_id']['p']}"},
                {"$set": {"domain": domain, "hour": at_ms(row["_id"]["h"]),
                          "path": row["_id"]["p"], "n": row["n"]}},
                upsert=True,
            )
            for row in rows
            if row["_id"]["h"] in wanted
        ]  # fmt: skip
        markers = [
            UpdateOne({"_id": marker(domain, h)}, {"$set": {"domain": domain, "hour": at_ms(h)}},
                      upsert=True)
            for h in hours
        ]  # fmt: skip
        with self._bounded("count page views by hour"):
            if counts:
                await self._db[HOURS].bulk_write(counts, ordered=False)
            await self._db[HOURS_DONE].bulk_write(markers, ordered=False)


def _sealed_hours(
    start_ms: int, end_ms: int, sealed_ms: int, horizon_ms: int, bucket_ms: int | None
) -> list[int]:
    """The whole hours within [start_ms, end_ms) that ended before ``sealed_ms`` and began
    after ``horizon_ms`` (and, for a time series, lie within one bucket)."""
    first = max(-(-start_ms // HOUR_MS) * HOUR_MS, -(-horizon_ms // HOUR_MS) * HOUR_MS)
    last = min(end_ms, sealed_ms) - HOUR_MS
    return [
        hour
        for hour in range(first, last + 1, HOUR_MS)
        if bucket_ms is None or hour // bucket_ms == (hour + HOUR_MS - 1) // bucket_ms
    ]


def _gaps(start_ms: int, end_ms: int, hours: list[int]) -> list[tuple[int, int]]:
    """[start_ms, end_ms) without the given hours, as half-open spans."""
    gaps, cursor = [], start_ms
    for hour in hours:
        if hour > cursor:
            gaps.append((cursor, hour))
        cursor = hour + HOUR_MS
    if cursor < end_ms:
        gaps.append((cursor, end_ms))
    return gaps


def one_of(values: Sequence[str]) -> object:
    """A match of any of ``values``: the value itself when there is one, which the embedded
    store serves from an index (an ``$in`` it answers by scanning)."""
    return values[0] if len(values) == 1 else {"$in": list(values)}


def epoch_bucket(field: str, width_ms: int) -> Document:
    """The start (Unix ms) of the ``width_ms`` slice, aligned to the epoch, that ``field``
    falls in."""
    ms = {"$toLong": field}
    return {"$subtract": [ms, {"$mod": [ms, width_ms]}]}
