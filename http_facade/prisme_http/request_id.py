"""Request ids in the façade: the incoming ``X-Request-Id`` when it comes from a trusted proxy
and looks like an id, else a new one; kept in a `ContextVar` for the request, sent to the core
as ``x-request-id`` metadata, returned as ``X-Prisme-Request-Id``, and added to log records.

Must not import prisme_core.
"""

from __future__ import annotations

import os
from contextvars import ContextVar

from prisme_client.request_id import valid_request_id

REQUEST_ID: ContextVar[str | None] = ContextVar("prisme_http_request_id", default=None)


def choose_request_id(incoming: str | None, *, trusted: bool) -> str:
    if trusted and (given := valid_request_id(incoming)) is not None:
        return given
    return os.urandom(16).hex()  # 32 hex digits, like a UUID4's, without building one
