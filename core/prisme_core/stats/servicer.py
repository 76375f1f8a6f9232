"""`StatsServicer`: the gRPC edge of the read side (`prisme.v1.StatsService`).

Every call shows the stats token first (before any parameter is read): it grants reading, and
nothing else does, the service token of `EventService` included. Then the parameters are
parsed (`prisme_core.stats.query`) and the store answers within the stats timeout.

Must not import aiohttp or pymongo.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any, Protocol

import grpc
from google.protobuf.message import Message
from prisme.v1 import options_pb2
from prisme.v1 import stats_service_pb2 as pb
from prisme.v1 import stats_service_pb2_grpc as pb_grpc

from prisme_core.errors import CoreError, InvalidInput, QueryTimeout, Reason, StatsTokenRefused
from prisme_core.ports import Clock
from prisme_core.servicer import presents, refuse
from prisme_core.stats.figures import Reading, Totals
from prisme_core.stats.query import ENGAGEMENT, TIMESERIES, TOP, Query, parse_query
from prisme_core.status import rich_status

Context = grpc.aio.ServicerContext[Any, Any]
QUERY_FIELDS = tuple(f.name for f in pb.StatsQuery.DESCRIPTOR.fields if f.name != "unknown")
PARAMETER = {
    field.name: field.GetOptions().Extensions[options_pb2.query_param][0]
    for field in pb.StatsQuery.DESCRIPTOR.fields
    if field.name in QUERY_FIELDS
}
"""Each query field's parameter name (``entry_path``: ``entry-path``), from the proto."""


class StatsStore(Protocol):
    async def timeseries(self, query: Query) -> list[tuple[int, float]]: ...

    async def top(self, query: Query) -> list[tuple[str, int]]: ...

    async def totals(self, query: Query) -> Totals: ...

    async def engagement(self, query: Query) -> tuple[list[tuple[str, Reading]], Reading]: ...

    async def close(self) -> None:
        """Stops what it does in the background."""


class StatsServicer(pb_grpc.StatsServiceServicer):
    def __init__(self, store: StatsStore, token: str | None, timeout: float, clock: Clock) -> None:
        self._store = store
        self._token = None if token is None else token.encode()
        self._timeout = timeout
        self._clock = clock

    async def GetTimeseries(  # noqa: N802 (the generated servicer's name)
        self, request: pb.GetTimeseriesRequest, context: Context
    ) -> pb.GetTimeseriesResponse:
        answer = pb.GetTimeseriesResponse()
        try:
            query = self._query(request.metric, request.query, context, TIMESERIES)
            async with self._bounded():
                rows = await self._store.timeseries(query)
                for key, value in rows:
                    answer.keys.append(key)
                    answer.values.append(int(value))
                await self._fill(answer, query)
        except CoreError as error:
            refuse(context, rich_status(error))
        return answer

    async def GetTop(  # noqa: N802
        self, request: pb.GetTopRequest, context: Context
    ) -> pb.GetTopResponse:
        answer = pb.GetTopResponse()
        try:
            query = self._query(request.metric, request.query, context, frozenset(TOP))
            async with self._bounded():
                for key, value in await self._store.top(query):
                    answer.keys.append(key)
                    answer.values.append(value)
                await self._fill(answer, query)
        except CoreError as error:
            refuse(context, rich_status(error))
        return answer

    async def GetEngagement(  # noqa: N802
        self, request: pb.GetEngagementRequest, context: Context
    ) -> pb.GetEngagementResponse:
        answer = pb.GetEngagementResponse()
        try:
            query = self._query(request.metric, request.query, context, ENGAGEMENT)
            async with self._bounded():
                pages, overall = await self._store.engagement(query)
                for path, read in pages:
                    answer.keys.append(path)
                    answer.values.append(_leading(query.metric, read))
                    answer.pages.append(_figures(read))
                answer.overall.CopyFrom(_figures(overall))
                await self._fill(answer, query)
        except CoreError as error:
            refuse(context, rich_status(error))
        return answer

    def _query(
        self, metric: str, given: pb.StatsQuery, context: Context, metrics: frozenset[str]
    ) -> Query:
        self._check_token(context)
        if metric not in metrics:
            raise InvalidInput(Reason.UNKNOWN_METRIC, f"no metric {metric!r} here", "metric")
        values = {PARAMETER[name]: getattr(given, name) for name in QUERY_FIELDS}
        return parse_query(metric, values, dict(given.unknown), self._clock.now())

    @contextlib.asynccontextmanager
    async def _bounded(self) -> AsyncIterator[None]:
        """The store's part of one query, within the stats timeout."""
        try:
            async with asyncio.timeout(self._timeout):
                yield
        except TimeoutError as exc:
            raise QueryTimeout(self._timeout) from exc

    def _check_token(self, context: Context) -> None:
        metadata = {key: str(value) for key, value in context.invocation_metadata() or ()}
        if not presents(metadata.get("authorization", ""), self._token):
            raise StatsTokenRefused()

    async def _fill(self, answer: Message, query: Query) -> None:
        """The range in Unix seconds, and the totals when asked for."""
        setattr(answer, "from", int(query.start.timestamp()))
        answer.to = int(query.end.timestamp())  # type: ignore[attr-defined]
        if query.totals:
            totals = await self._store.totals(query)
            answer.totals.CopyFrom(  # type: ignore[attr-defined]
                pb.StatsTotals(
                    visitors=totals.visitors,
                    sessions=totals.sessions,
                    pageviews=totals.pageviews,
                    bounces=totals.bounces,
                    bounce_rate=totals.bounces / totals.sessions if totals.sessions else 0.0,
                    session_duration=totals.session_duration,
                    live_visitors=totals.live_visitors,
                )
            )


def _leading(metric: str, read: Reading) -> float:
    """The route's own figure: engaged seconds for time on page, else the scroll depth."""
    return read.mean_seconds if metric == "time-on-page" else read.mean_scroll_depth


def _figures(read: Reading) -> pb.EngagementFigures:
    return pb.EngagementFigures(**dataclasses.asdict(read))
