"""Request ids in the façade: the incoming ``X-Request-Id`` when it comes from a trusted proxy
and looks like an id, else a new one; kept in a `ContextVar` for the request, sent to the core
as ``x-request-id`` metadata, returned as ``X-Prisme-Request-Id``, and added to log records.

Must not import prisme_core.
"""

from __future__ import annotations

import logging
import os
import re
from contextvars import ContextVar

REQUEST_ID: ContextVar[str | None] = ContextVar("prisme_http_request_id", default=None)
_VALID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


def choose_request_id(incoming: str | None, *, trusted: bool) -> str:
    if trusted and incoming is not None and _VALID.fullmatch(incoming):
        return incoming
    return os.urandom(16).hex()  # 32 hex digits, like a UUID4's, without building one


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to records logged while a request is handled."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True
