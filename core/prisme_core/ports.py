"""The core's ports: the small interfaces the pipeline needs from the outside world.

Adapters live in `prisme_core.adapters`: `MongoEventStore` for the store (with
`InMemoryEventStore` and `GatedEventStore` beside it for tests), `MaxMindDbLocator` for
countries (`StaticGeoLocator` for tests), `UserAgentsParser` for user agents; the clock is
`SystemClock` (`FixedClock` for tests). Adapters
translate their library's exceptions (the store into `StoreUnavailable`), so the pipeline
never sees a driver exception.

This module must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from prisme_core.model import (
    Click,
    ClientInfo,
    CustomEvent,
    Engagement,
    PageView,
    SessionProgress,
    SessionStart,
    StoredSession,
)


class EventStore(Protocol):
    """Durable storage. Every method raises `StoreUnavailable` when it cannot finish in time;
    writes return only once the store acknowledged them."""

    async def ensure_schema(self) -> None:
        """Creates collections and indexes; safe to call again."""

    async def insert_pageviews(self, pageviews: Sequence[PageView]) -> None: ...

    async def insert_sessions(self, sessions: Sequence[SessionStart]) -> None: ...

    async def update_sessions(self, progress: Sequence[SessionProgress]) -> None:
        """Adds page views to sessions and moves their exit forward (never backward)."""

    async def find_sessions(
        self, device_ids: Sequence[str], active_after: datetime, per_device: int
    ) -> dict[str, list[StoredSession]]:
        """The sessions of each device whose document's exit is after ``active_after``, at
        most ``per_device`` of the most recently begun, with their exit state rebuilt from
        their page views; a device with none is absent."""

    async def active_devices(self, active_after: datetime) -> set[str]:
        """The device ids of the sessions whose document's exit is after ``active_after``."""

    async def forget_devices(self, ended_before: datetime) -> None:
        """Removes the device id of every session whose exit is before ``ended_before``."""

    async def insert_custom_events(self, events: Sequence[CustomEvent]) -> None: ...

    async def insert_outbound_links(self, clicks: Sequence[Click]) -> None: ...

    async def insert_file_downloads(self, clicks: Sequence[Click]) -> None: ...

    async def insert_engagements(self, reports: Sequence[Engagement]) -> None: ...

    async def key(self, name: str, expires_at: datetime | None) -> bytes:
        """The random 16-byte key called ``name``, created on first use, shared by every
        instance; the store may forget it after ``expires_at``."""

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class GeoLocator(Protocol):
    def country(self, ip: str | None, /) -> str:
        """ISO 3166 alpha-2 code of ``ip``, or ``XX`` when unknown."""

    def close(self) -> None: ...


class UserAgentParser(Protocol):
    def parse(self, user_agent: str, /) -> ClientInfo: ...


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that stays where it is set (``at``) until moved, for tests."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)
