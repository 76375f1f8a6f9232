"""`InMemoryEventStore`: the `EventStore` port in a list, for pure pipeline unit tests.

It keeps the same promise as the real adapter: a failed call (``available = False``) raises
`StoreUnavailable` and stores nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from prisme_core.errors import StoreUnavailable
from prisme_core.model import CustomEvent, PageView


class InMemoryEventStore:
    def __init__(self) -> None:
        self.pageviews: list[PageView] = []
        self.custom_events: list[CustomEvent] = []
        self.available = True

    def _check(self) -> None:
        if not self.available:
            raise StoreUnavailable()

    async def ensure_schema(self) -> None:
        self._check()

    async def insert_pageviews(self, pageviews: Sequence[PageView]) -> None:
        self._check()
        self.pageviews.extend(pageviews)

    async def insert_custom_events(self, events: Sequence[CustomEvent]) -> None:
        self._check()
        self.custom_events.extend(events)

    async def ping(self) -> None:
        self._check()

    async def close(self) -> None:
        return None
