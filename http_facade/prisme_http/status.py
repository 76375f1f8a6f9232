"""The one table from the core's answers to HTTP statuses.

The core's stable `ErrorInfo.reason` decides first; a call that carries no reason (the core is
down, a deadline passed) falls back on its gRPC code, as grpc-gateway does.

Must not import prisme_core.
"""

from __future__ import annotations

from typing import Final

import grpc

HTTP_STATUS_BY_REASON: Final[dict[str, int]] = {
    "INVALID_PAGE_URL": 400,
    "INVALID_DOCUMENT_REFERRER": 400,
    "BOT": 400,
    "INVALID_EVENT_NAME": 400,
    "INVALID_EVENT_ID": 400,
    "INVALID_STATUS": 400,
    "INVALID_VISITOR_ID": 400,
    "INVALID_LINK": 400,
    "INTERNAL_LINK": 400,
    "EVENT_ID_REUSED": 400,
    "FIELD_TOO_LONG": 400,
    "INVALID_CLIENT_IP": 400,
    "INVALID_CONTENT_TYPE": 400,
    "INVALID_JSON": 400,
    "BODY_TOO_LARGE": 413,
    "PROPERTIES_TOO_DEEP": 400,
    "TOO_MANY_PROPERTIES": 400,
    "INVALID_PROPERTY_KEY": 400,
    "SESSION_NOT_FOUND": 400,
    "MISSING_CONTEXT": 400,
    "EMPTY_EVENT": 400,
    "REFUSED_BY_SENDER": 400,
    "TOO_MANY_EVENTS": 400,
    "ORIGIN_NOT_REGISTERED": 400,
    "RATE_LIMITED": 429,
    "STORE_UNAVAILABLE": 503,
    "INVALID_QUERY_PARAMETER": 400,
    "INVALID_STATS_TOKEN": 401,
    "UNKNOWN_METRIC": 404,
    "INVALID_TIMESTAMP": 400,
    "TOO_OLD": 400,
    "INVALID_EVENT": 400,
    "INVALID_BATCH": 400,
    "INVALID_PAGEVIEW_ID": 400,
    "INVALID_ENGAGED_MS": 400,
    "INVALID_SCROLL_DEPTH": 400,
    "QUERY_TIMEOUT": 503,
    # The façade presents the service token: a refusal means it is misconfigured.
    "UNAUTHENTICATED": 502,
}

HTTP_STATUS_BY_CODE: Final[dict[grpc.StatusCode, int]] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 503,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 502,
}


def http_status(code: grpc.StatusCode, reason: str) -> int:
    return HTTP_STATUS_BY_REASON.get(reason) or HTTP_STATUS_BY_CODE[code]


def error_text(reason: str) -> str:
    """The short error text of the HTTP body: ``SESSION_NOT_FOUND`` gives ``session not found``."""
    return reason.lower().replace("_", " ")
