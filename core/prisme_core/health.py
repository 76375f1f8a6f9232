"""The store's health: `StoreMonitor` keeps the standard gRPC health service in step with the
store, and `RecentHealth` answers `CheckHealth` cheaply.

`StoreMonitor` pings the store every few seconds, creates the schema once the store first
answers, and reports SERVING or NOT_SERVING for the whole server and for
`prisme.v1.EventService`. `RecentHealth` reuses the store's last answer for up to a second,
and asks once however many callers ask at the same time, so the healthcheck is cheap to poll.

Must not import aiohttp or pymongo.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from grpc_health.v1 import health, health_pb2

from prisme_core.errors import CoreError, StoreUnavailable
from prisme_core.ports import EventStore

logger = logging.getLogger(__name__)

SERVICE_NAME = "prisme.v1.EventService"
HEALTH_REUSE = 1.0
"""Seconds an answer of the store is reused."""


class RecentHealth:
    def __init__(
        self,
        ping: Callable[[], Awaitable[None]],
        reuse: float = HEALTH_REUSE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ping = ping
        self._reuse = reuse
        self._clock = clock
        self._last: tuple[float, float | CoreError] | None = None
        self._asking: asyncio.Future[float | CoreError] | None = None

    async def check(self) -> float:
        """The store's ping in milliseconds; raises the `CoreError` of a store that failed."""
        if self._last is None or self._clock() - self._last[0] >= self._reuse:
            if self._asking is None:
                self._asking = asyncio.ensure_future(self._ask())
            await asyncio.shield(self._asking)
        assert self._last is not None
        answer = self._last[1]
        if isinstance(answer, CoreError):
            raise answer
        return answer

    async def _ask(self) -> float | CoreError:
        started = self._clock()
        answer: float | CoreError
        try:
            await self._ping()
            answer = (self._clock() - started) * 1000
        except CoreError as error:
            answer = error
        finally:
            self._asking = None
        self._last = (self._clock(), answer)
        return answer


class StoreMonitor:
    def __init__(self, store: EventStore, interval: float) -> None:
        self.health = health.aio.HealthServicer()
        self._store = store
        self._interval = interval
        self._schema_ready = False
        self._serving: bool | None = None
        self._task: asyncio.Task[None] | None = None

    async def check_once(self) -> bool:
        """Pings the store (and creates the schema if still needed); returns whether it answered."""
        try:
            if not self._schema_ready:
                await self._store.ensure_schema()
                self._schema_ready = True
            await self._store.ping()
        except StoreUnavailable:
            await self._report(serving=False)
            return False
        await self._report(serving=True)
        return True

    async def _report(self, *, serving: bool) -> None:
        if serving == self._serving:
            return
        if serving:
            logger.info("store is reachable")
        else:
            logger.warning("store is unreachable")
        self._serving = serving
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="store-monitor")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.check_once()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.health.enter_graceful_shutdown()
