"""The core's ports: the small interfaces the pipeline needs from the outside world.

Adapters live in `prisme_core.adapters` (`MongoEventStore` for production, `InMemoryEventStore`
for pure unit tests). Adapters translate their library's exceptions into
`prisme_core.errors.StoreUnavailable` so the pipeline never sees a driver exception.

This module must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from prisme_core.model import CustomEvent, PageView


class EventStore(Protocol):
    """Durable storage of events. Every method raises `StoreUnavailable` when it cannot finish."""

    async def ensure_schema(self) -> None:
        """Creates collections and indexes; safe to call again."""

    async def insert_pageviews(self, pageviews: Sequence[PageView]) -> None:
        """Stores ``pageviews``; returns only once the store acknowledged them."""

    async def insert_custom_events(self, events: Sequence[CustomEvent]) -> None:
        """Stores ``events``; returns only once the store acknowledged them."""

    async def ping(self) -> None:
        """Returns when the store answers."""

    async def close(self) -> None:
        """Releases connections."""


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)
