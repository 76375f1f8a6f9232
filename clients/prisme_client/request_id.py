"""Request ids, as the façade and the core both read them: what a valid one looks like, and a
log filter that adds the current one (from a `ContextVar`) to every record.

Each process keeps its own `ContextVar`; the façade sends its request's id to the core as
``x-request-id`` metadata.
"""

from __future__ import annotations

import logging
import re
from contextvars import ContextVar

METADATA_KEY = "x-request-id"
_VALID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


def valid_request_id(text: str | None) -> str | None:
    """``text`` if it looks like a request id (safe to log and to pass on), else None."""
    return text if text is not None and _VALID.fullmatch(text) else None


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to records logged while a request (or call) is handled."""

    def __init__(self, current: ContextVar[str | None]) -> None:
        super().__init__()
        self._current = current

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = self._current.get()
        return True
