"""What an event comes to: refused at once, or on its way to the store (`PendingEvent`).

The pipeline's entry points return an `Outcome` without waiting; the servicer and the link
wait for the pending ones, each within its deadline, and withdraw what is late.

Must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from prisme_core.errors import CoreError, StoreUnavailable
from prisme_core.values import value


@value
class PendingEvent:
    future: asyncio.Future[None]
    """Resolves once the event is stored; fails with a `CoreError` if it could not be."""
    _withdraw: Callable[[], None] | None = None

    @property
    def keeps_own_deadline(self) -> bool:
        """True for an event deciding in a task that bounds its own wait (for a key, a
        session, the store); False for one queued for the store, which its caller withdraws
        at the store deadline."""
        return self._withdraw is None

    def withdraw(self) -> None:
        """The caller stops waiting: an event still queued is not written (503 means not
        stored); one already being written stays."""
        if self._withdraw is not None:
            self._withdraw()
        else:
            self.future.cancel()


Outcome = CoreError | PendingEvent


def store_late() -> StoreUnavailable:
    """Past the store deadline of an event: 503 rather than a longer wait."""
    return StoreUnavailable("the event store did not answer in time")


@contextlib.asynccontextmanager
async def store_deadline(seconds: float) -> AsyncIterator[None]:
    """Bounds the store part of one event: past it, 503 instead of a longer wait."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError as exc:
        raise store_late() from exc


def failure(outcome: Outcome) -> CoreError | None:
    """Why an event whose outcome is known was not stored, or None if it was."""
    if isinstance(outcome, CoreError):
        return outcome
    future = outcome.future
    if not future.done() or future.cancelled():  # withdrawn at the deadline
        return store_late()
    error = future.exception()
    if error is None:
        return None
    if isinstance(error, CoreError):
        return error
    raise error  # a defect: the call fails as a whole, as an unexpected error would


async def settled(pending: PendingEvent) -> None:
    """Waits for ``pending``; a caller that stops waiting (its deadline) withdraws it."""
    try:
        await pending.future
    except asyncio.CancelledError:
        pending.withdraw()
        raise


def after_both(
    written: asyncio.Future[None], persisted: asyncio.Future[None]
) -> asyncio.Future[None]:
    """Resolves once an event and its session are stored; fails as soon as either fails."""
    if persisted.done() and not persisted.cancelled() and persisted.exception() is None:
        return written
    both = written.get_loop().create_future()

    def settle(_: asyncio.Future[None]) -> None:
        if both.done():
            return
        for part in (written, persisted):
            if part.done() and (part.cancelled() or part.exception() is not None):
                failure = part.exception() if not part.cancelled() else None
                both.set_exception(failure or StoreUnavailable("the write was withdrawn"))
                both.exception()  # nobody may be waiting any more: not to be logged as lost
                return
        if written.done() and persisted.done():
            both.set_result(None)

    written.add_done_callback(settle)
    persisted.add_done_callback(settle)
    return both
