"""`RateLimiter`: at most ``limit`` events per client IP in a fixed 60-second window.

A window opens at a client's first event and closes 60 s later; the event that would exceed
the limit is refused with the seconds left until the window closes. Events are counted as they
arrive, refused ones included, so an abusive client cannot probe for free.

Memory stays bounded: windows are kept in the order they opened, closed ones are dropped from
the front as time passes, and past ``max_clients`` open windows the oldest is forgotten (that
client starts afresh) rather than growing without limit.

The limit is per instance: sharing it across instances would cost a store write per event.
Behind a load balancer, route by client IP or divide the limit by the number of instances.

Must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

from prisme_core.errors import RateLimited

WINDOW = 60.0


class RateLimiter:
    def __init__(
        self, limit: int, clock: Callable[[], float], max_clients: int = 1_000_000
    ) -> None:
        self._limit = limit
        self._clock = clock
        self._max_clients = max_clients
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._windows)

    def check(self, client: str) -> None:
        """Counts one event for ``client``; raises `RateLimited` past the limit."""
        now = self._clock()
        self._drop_closed(now)
        opened, count = self._windows.get(client, (now, 0))
        if count >= self._limit:
            raise RateLimited(retry_after=max(1, math.ceil(opened + WINDOW - now)))
        if count == 0:
            self._windows.pop(client, None)
            if len(self._windows) >= self._max_clients:
                self._windows.popitem(last=False)
        self._windows[client] = (opened, count + 1)

    def _drop_closed(self, now: float) -> None:
        while self._windows:
            client, (opened, _) = next(iter(self._windows.items()))
            if opened + WINDOW > now:
                return
            del self._windows[client]
