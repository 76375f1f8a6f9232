"""`RecentEvents`: a retried event (same event id) takes the outcome of its first attempt.

While the first attempt is in flight, a retry waits for it; once it succeeded, a retry succeeds
at once without a second store write or a second session. If it failed, the retry runs afresh.
Ids are per event kind: an id that a stored (or storing) event of another kind holds is
refused with `EVENT_ID_REUSED`, never answered as stored. This covers retries reaching this
instance; the store's primary key (an event's document is
keyed by its event id, in the collection of its kind) is what guarantees "stored once per
kind" everywhere else (another instance, after a restart).

Bounded: the oldest ids are forgotten past ``capacity``. Must not import grpc, aiohttp or
pymongo.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from uuid import UUID

from prisme_core.errors import InvalidInput, Reason


class RecentEvents:
    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._outcomes: OrderedDict[UUID, tuple[str, asyncio.Future[None]]] = OrderedDict()

    async def once(
        self, kind: str, event_id: UUID | None, attempt: Callable[[], Awaitable[None]]
    ) -> None:
        """Runs ``attempt`` unless the event already succeeded or is being stored; raises
        `InvalidInput` (``EVENT_ID_REUSED``) if an event of another kind holds the id."""
        if event_id is None:
            await attempt()
            return
        previous = self._outcomes.get(event_id)
        if previous is not None and not _failed(previous[1]):
            if previous[0] != kind:
                raise reused(event_id)
            await asyncio.shield(previous[1])
            return
        outcome = asyncio.get_running_loop().create_future()
        self._remember(kind, event_id, outcome)
        try:
            await attempt()
        except BaseException as error:
            if isinstance(error, Exception):
                outcome.set_exception(error)
                outcome.exception()  # nobody may be waiting: it must not be logged as lost
            else:
                outcome.cancel()
            raise
        outcome.set_result(None)

    def knows(self, event_id: UUID) -> bool:
        """Whether the event was seen lately (stored, being stored, or failed)."""
        return event_id in self._outcomes

    def track(self, kind: str, event_id: UUID, outcome: asyncio.Future[None]) -> None:
        """Records the first attempt of an event the caller is storing itself: ``outcome``
        resolves once it is stored, or fails."""
        self._remember(kind, event_id, outcome)

    def _remember(self, kind: str, event_id: UUID, outcome: asyncio.Future[None]) -> None:
        self._outcomes[event_id] = (kind, outcome)
        self._outcomes.move_to_end(event_id)
        while len(self._outcomes) > self._capacity:
            self._outcomes.popitem(last=False)


def reused(event_id: UUID) -> InvalidInput:
    return InvalidInput(
        Reason.EVENT_ID_REUSED,
        f"event id {event_id} belongs to an event of another kind",
        field="event_id",
    )


def _failed(outcome: asyncio.Future[None]) -> bool:
    return outcome.done() and (outcome.cancelled() or outcome.exception() is not None)
