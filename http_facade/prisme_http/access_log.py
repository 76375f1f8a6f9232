"""`AccessLog`: one access-log line per request, handed to logging in batches.

A log record per request cost the façade about as much as everything else it does for a page
view. Lines are gathered and passed to the ``prisme.access`` logger together, at most
``interval`` seconds after the first of them (and on `flush`, at shutdown), as one record whose
``access_lines`` the JSON-lines formatter writes one per line; each line keeps its own time,
request id and fields. Whether lines are kept at all follows the logger's level, as usual.

Must not import prisme_core.
"""

from __future__ import annotations

import asyncio
import logging
import time

ACCESS_LOGGER = logging.getLogger("prisme.access")


class AccessLog:
    def __init__(
        self, logger: logging.Logger = ACCESS_LOGGER, interval: float = 0.5, max_lines: int = 1000
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._max_lines = max_lines
        self._lines: list[dict[str, object]] = []
        self._timer: asyncio.TimerHandle | None = None

    def enabled(self) -> bool:
        return self._logger.isEnabledFor(logging.INFO)

    def add(self, fields: dict[str, object]) -> None:
        """Keeps one request's line (``fields`` plus its time) for the next batch."""
        fields["time"] = time.time()
        self._lines.append(fields)
        if len(self._lines) >= self._max_lines:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lines:
            lines, self._lines = self._lines, []
            self._logger.info("requests", extra={"access_lines": lines})
