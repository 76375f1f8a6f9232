"""The core's errors: why an event was refused or could not be stored.

Every error carries a stable `Reason`; the servicer turns it into a gRPC status through the
table in `prisme_core.status`, and the HTTP façade turns the reason into an HTTP status.

    CoreError
    ├── InvalidInput           the request itself is wrong (bad URL, bad JSON...)
    ├── Dropped                a valid event the service refuses to record (a bot)
    ├── SessionNotFound        a custom event whose visitor has no live session
    ├── OriginNotRegistered    the Origin is not in the registry
    ├── Unauthenticated        a wrong service token was presented
    ├── RateLimited            too many events from this client IP
    ├── StoreUnavailable       the store did not answer in time
    └── QueryTimeout           a stats query ran past the stats timeout

This module must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

ECHOED: Final = 200
"""Longest part of a caller's value echoed in a message (and so in statuses and logs)."""


class Reason(StrEnum):
    """Stable, machine-readable reasons; clients may match on them."""

    INVALID_PAGE_URL = "INVALID_PAGE_URL"
    INVALID_DOCUMENT_REFERRER = "INVALID_DOCUMENT_REFERRER"
    BOT = "BOT"
    INVALID_EVENT_NAME = "INVALID_EVENT_NAME"
    INVALID_EVENT_ID = "INVALID_EVENT_ID"
    INVALID_STATUS = "INVALID_STATUS"
    INVALID_VISITOR_ID = "INVALID_VISITOR_ID"
    INVALID_LINK = "INVALID_LINK"
    INTERNAL_LINK = "INTERNAL_LINK"
    EVENT_ID_REUSED = "EVENT_ID_REUSED"
    FIELD_TOO_LONG = "FIELD_TOO_LONG"
    INVALID_CLIENT_IP = "INVALID_CLIENT_IP"
    INVALID_CONTENT_TYPE = "INVALID_CONTENT_TYPE"
    INVALID_JSON = "INVALID_JSON"
    BODY_TOO_LARGE = "BODY_TOO_LARGE"
    PROPERTIES_TOO_DEEP = "PROPERTIES_TOO_DEEP"
    TOO_MANY_PROPERTIES = "TOO_MANY_PROPERTIES"
    INVALID_PROPERTY_KEY = "INVALID_PROPERTY_KEY"
    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
    MISSING_CONTEXT = "MISSING_CONTEXT"
    EMPTY_EVENT = "EMPTY_EVENT"
    REFUSED_BY_SENDER = "REFUSED_BY_SENDER"
    TOO_MANY_EVENTS = "TOO_MANY_EVENTS"
    ORIGIN_NOT_REGISTERED = "ORIGIN_NOT_REGISTERED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    RATE_LIMITED = "RATE_LIMITED"
    STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
    INVALID_QUERY_PARAMETER = "INVALID_QUERY_PARAMETER"
    INVALID_STATS_TOKEN = "INVALID_STATS_TOKEN"
    UNKNOWN_METRIC = "UNKNOWN_METRIC"
    INVALID_TIMESTAMP = "INVALID_TIMESTAMP"
    TOO_OLD = "TOO_OLD"
    INVALID_EVENT = "INVALID_EVENT"
    INVALID_BATCH = "INVALID_BATCH"
    INVALID_PAGEVIEW_ID = "INVALID_PAGEVIEW_ID"
    INVALID_ENGAGED_MS = "INVALID_ENGAGED_MS"
    INVALID_SCROLL_DEPTH = "INVALID_SCROLL_DEPTH"
    QUERY_TIMEOUT = "QUERY_TIMEOUT"


class CoreError(Exception):
    """Base of every error the core reports to a caller."""

    reason: Reason

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class InvalidInput(CoreError):
    """The request breaks a rule; ``field`` names the offending request field."""

    def __init__(self, reason: Reason, message: str, field: str) -> None:
        super().__init__(reason, message)
        self.field = field


class Dropped(CoreError):
    """The event is well-formed but is not recorded; ``reason`` says why."""


class SessionNotFound(CoreError):
    def __init__(self, waited: float) -> None:
        after = f" after {waited:g}s" if waited else ""
        super().__init__(Reason.SESSION_NOT_FOUND, f"no live session for this visitor{after}")


class OriginNotRegistered(CoreError):
    def __init__(self, origin: str) -> None:
        shown = origin if len(origin) <= ECHOED else origin[:ECHOED] + "..."
        super().__init__(Reason.ORIGIN_NOT_REGISTERED, f"origin {shown!r} is not registered")


class Unauthenticated(CoreError):
    def __init__(self) -> None:
        super().__init__(Reason.UNAUTHENTICATED, "invalid service token")


class StatsTokenRefused(CoreError):
    def __init__(self) -> None:
        super().__init__(Reason.INVALID_STATS_TOKEN, "a valid stats token is required")


class RateLimited(CoreError):
    def __init__(self, retry_after: int) -> None:
        super().__init__(Reason.RATE_LIMITED, "too many events from this client")
        self.retry_after = retry_after


class StoreUnavailable(CoreError):
    def __init__(self, message: str = "the event store did not answer") -> None:
        super().__init__(Reason.STORE_UNAVAILABLE, message)


class QueryTimeout(CoreError):
    def __init__(self, seconds: float) -> None:
        super().__init__(
            Reason.QUERY_TIMEOUT, f"the query took longer than the stats timeout ({seconds:g}s)"
        )
