"""Validation steps: each returns the parsed value or raises an `InvalidInput` error, and
``drop_*`` steps return the reason an event is not recorded, or None. Custom event bodies
have their own module, `prisme_core.properties`.

Must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

import re
from typing import Final
from uuid import UUID

from prisme_core.errors import InvalidInput, OriginNotRegistered, Reason
from prisme_core.model import ClientInfo
from prisme_core.urls import InvalidUrl, Url, parse_url


def origin_host(origin: str) -> str:
    """The Origin header without its scheme and port: ``https://a.com:8443`` gives ``a.com``."""
    _, sep, rest = origin.partition("://")
    host = rest if sep else origin
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    name, colon, port = host.rpartition(":")
    return name if colon and port.isdigit() else host


def validate_origin(origin: str, registry: frozenset[str]) -> None:
    if origin_host(origin) not in registry:
        raise OriginNotRegistered(origin)


def validate_page_url(url: str) -> Url:
    """The page URL: absolute, with a host."""
    return _parse(url, Reason.INVALID_PAGE_URL, "context.page_url", "page URL")


def validate_document_referrer(url: str) -> Url | None:
    """The document referrer: None when empty (a direct visit), else an absolute URL."""
    if not url:
        return None
    return _parse(url, Reason.INVALID_DOCUMENT_REFERRER, "context.document_referrer", "referrer")


def _parse(url: str, reason: Reason, field: str, what: str) -> Url:
    try:
        return parse_url(url)
    except InvalidUrl as exc:
        message = f"{what} must be an absolute URL with a host: {exc}"
        raise InvalidInput(reason, message, field=field) from exc


def validate_event_id(text: str) -> UUID | None:
    """The optional idempotency key: empty, or a UUID."""
    if not text:
        return None
    try:
        return UUID(text)
    except ValueError as exc:
        raise InvalidInput(
            Reason.INVALID_EVENT_ID, "event id must be a UUID", field="event_id"
        ) from exc


def drop_bot(client: ClientInfo) -> Reason | None:
    return Reason.BOT if client.is_bot else None


MAX_EVENT_NAME_LENGTH: Final = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_event_name(name: str) -> str:
    """One non-empty path segment of at most `MAX_EVENT_NAME_LENGTH` characters, no controls."""
    if not name or "/" in name or _CONTROL.search(name) or len(name) > MAX_EVENT_NAME_LENGTH:
        raise InvalidInput(
            Reason.INVALID_EVENT_NAME,
            f"event name must be one path segment of 1 to {MAX_EVENT_NAME_LENGTH} characters "
            "without control characters",
            field="name",
        )
    return name
