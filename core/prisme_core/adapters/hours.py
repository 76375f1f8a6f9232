"""The hours the stats count page views by (`mongo_rollups`): their arithmetic in Unix
milliseconds, when an hour is sealed, and the marker that says an hour of a domain is counted.

An hour is sealed `SEAL` after it ends: no page view arriving now can be stored into it any
more, unless its sender says it happened earlier (a backdated page view, DESIGN §13). Storing
one of those removes the marker of its hour (`uncounted`), which is counted again by the next
query that needs it.

Pure functions; must not import grpc or aiohttp.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Final

HOUR_MS: Final = 3_600_000
SEAL: Final = timedelta(minutes=2)
"""How long after an hour ends no page view arriving can still be stored into it by its
arrival time (the store's deadline is seconds), with room to spare."""
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def to_ms(at: datetime) -> int:
    """``at`` in Unix ms, exactly (no float rounding)."""
    return (at - EPOCH) // timedelta(milliseconds=1)


def at_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def marker(domain: str, hour_ms: int) -> str:
    """The id of the marker that says ``domain``'s hour is counted (neither a host nor a
    number holds ``|``)."""
    return f"{domain}|{hour_ms}"


def uncounted(pageviews: Iterable[tuple[str, datetime]], now: datetime) -> list[str]:
    """The markers of the sealed hours these page views (domain, time) land in: counted
    before they were stored, so no longer counted."""
    sealed_ms = to_ms(now - SEAL)
    before = at_ms(sealed_ms // HOUR_MS * HOUR_MS)  # the end of the latest sealed hour
    hours = {(d, to_ms(at) // HOUR_MS * HOUR_MS) for d, at in pageviews if at < before}
    return sorted(marker(d, h) for d, h in hours)
