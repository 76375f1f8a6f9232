"""Validation steps: each returns the parsed value or raises an `InvalidInput` error, and
``drop_*`` steps return the reason an event is not recorded, or None.

Must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

import json
from typing import Any

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


def drop_bot(client: ClientInfo) -> Reason | None:
    return Reason.BOT if client.is_bot else None


def validate_event_name(name: str) -> str:
    if not name or "/" in name:
        raise InvalidInput(
            Reason.INVALID_EVENT_NAME, "event name must be one non-empty segment", field="name"
        )
    return name


def validate_properties(content_type: str, body: bytes) -> dict[str, Any]:
    """The body as a JSON object; an empty body is ``{}``."""
    if not body:
        return {}
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise InvalidInput(
            Reason.INVALID_CONTENT_TYPE,
            "a non-empty body needs Content-Type: application/json",
            field="body.content_type",
        )
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(Reason.INVALID_JSON, "body is not valid JSON", field="body") from exc
    if not isinstance(value, dict):
        raise InvalidInput(Reason.INVALID_JSON, "body must be a JSON object", field="body")
    return value
