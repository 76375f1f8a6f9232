"""Validation steps: each returns the parsed value or raises an `InvalidInput` error, and
``drop_*`` steps return the reason an event is not recorded, or None. Custom event bodies
have their own module, `prisme_core.properties`.

Must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from uuid import UUID

from prisme_core.errors import InvalidInput, OriginNotRegistered, Reason
from prisme_core.model import ClientContext, ClientInfo, Timing
from prisme_core.urls import InvalidUrl, Url, parse_link, parse_url

MAX_FIELD_BYTES: Final = 8 * 1024
"""Longest `ClientContext` field, in UTF-8 bytes: what an HTTP header line may carry."""
MAX_EVENT_ID_LENGTH: Final = 64
MAX_IP_LENGTH: Final = 64
"""Longer than any IP address text (IPv6 with a zone included)."""


def bounded(value: str, field: str, limit: int = MAX_FIELD_BYTES) -> str:
    """``value`` if it is at most ``limit`` UTF-8 bytes, checked before anything reads it."""
    if len(value) > limit // 4 and (
        len(value) > limit or len(value.encode("utf-8", "surrogatepass")) > limit
    ):
        raise InvalidInput(Reason.FIELD_TOO_LONG, f"{field} is over {limit} bytes", field=field)
    return value


def validate_context(
    *,
    origin: str,
    page_url: str,
    document_referrer: str,
    user_agent: str,
    client_ip: str,
    ch_ua_platform: str = "",
    ch_ua_model: str = "",
) -> ClientContext:
    """The browser context with every field bounded, and the client IP normalised."""
    return ClientContext(
        origin=bounded(origin, "context.origin"),
        page_url=bounded(page_url, "context.page_url"),
        document_referrer=bounded(document_referrer, "context.document_referrer"),
        user_agent=bounded(user_agent, "context.user_agent"),
        client_ip=validate_client_ip(bounded(client_ip, "context.client_ip")),
        ch_ua_platform=bounded(ch_ua_platform, "context.ch_ua_platform"),
        ch_ua_model=bounded(ch_ua_model, "context.ch_ua_model"),
    )


def validate_client_ip(text: str) -> str | None:
    """None when unknown (empty), else the address as text; IPv4-mapped IPv6 unwrapped."""
    if not text:
        return None
    if len(text) > MAX_IP_LENGTH or (address := _address(text)) is None:
        raise InvalidInput(
            Reason.INVALID_CLIENT_IP, "client_ip must be an IP address", field="context.client_ip"
        )
    return address


@functools.lru_cache(maxsize=65536)
def _address(text: str) -> str | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def origin_root(origin: str) -> str:
    """The root URL of an Origin header (``https://a.com`` gives ``https://a.com/``); empty
    when there is none."""
    return f"{origin}/" if origin and origin != "null" else ""


def origin_host(origin: str) -> str:
    """The Origin header without its scheme and port: ``https://a.com:8443`` gives ``a.com``."""
    _, sep, rest = origin.partition("://")
    host = rest if sep else origin
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    name, colon, port = host.rpartition(":")
    return name if colon and port.isdigit() else host


@dataclass(frozen=True, slots=True)
class OriginRegistry:
    """The registered origins: exact hosts, and wildcards (``*.example.com``) that admit every
    subdomain of a domain, not the domain itself."""

    hosts: frozenset[str]
    suffixes: tuple[str, ...]
    """``.example.com`` for ``*.example.com``."""

    @classmethod
    def of(cls, origins: Iterable[str]) -> OriginRegistry:
        wildcards = {o for o in origins if o.startswith("*.")}
        return cls(frozenset(origins) - wildcards, tuple(sorted(w[1:] for w in wildcards)))

    def admits(self, host: str) -> bool:
        return host in self.hosts or any(host.endswith(suffix) for suffix in self.suffixes)


def validate_origin(origin: str, registry: OriginRegistry) -> None:
    if not registry.admits(origin_host(origin)):
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
    return _uuid(text, Reason.INVALID_EVENT_ID, "event id must be a UUID", "event_id")


def _uuid(text: str, reason: Reason, message: str, field: str) -> UUID:
    """``text`` as a UUID (at most `MAX_EVENT_ID_LENGTH` characters), else refused."""
    try:
        if len(text) > MAX_EVENT_ID_LENGTH:
            raise ValueError(text)
        return UUID(text)
    except ValueError as exc:
        raise InvalidInput(reason, message, field=field) from exc


_STATUS = re.compile(r"[0-9]{1,5}")
_VISITOR_ID = re.compile(r"[\x20-\x7e]{1,128}")


def validate_status(text: str) -> int:
    """The page's HTTP status: empty means 200, else a decimal integer from 100 to 599."""
    if not text:
        return 200
    if not _STATUS.fullmatch(text) or not 100 <= int(text) <= 599:
        raise InvalidInput(
            Reason.INVALID_STATUS, "status must be an HTTP status from 100 to 599", field="status"
        )
    return int(text)


def validate_visitor_id(text: str) -> str | None:
    """The site's own visitor id: empty means none, else 1-128 printable ASCII characters."""
    if not text:
        return None
    if not _VISITOR_ID.fullmatch(text):
        raise InvalidInput(
            Reason.INVALID_VISITOR_ID,
            "visitor id must be 1 to 128 printable ASCII characters",
            field="visitor_id",
        )
    return text


def drop_bot(client: ClientInfo) -> Reason | None:
    return Reason.BOT if client.is_bot else None


MAX_EVENT_NAME_LENGTH: Final = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_link(text: str, field: str) -> tuple[Url, str]:
    """A clicked link or file: an absolute URL, and its normalised text."""
    try:
        return parse_link(text)
    except InvalidUrl as exc:
        message = f"the link must be an absolute URL with a host: {exc}"
        raise InvalidInput(Reason.INVALID_LINK, message, field=field) from exc


def validate_event_name(name: str) -> str:
    """One non-empty path segment of at most `MAX_EVENT_NAME_LENGTH` characters, no controls."""
    if not name or len(name) > MAX_EVENT_NAME_LENGTH or "/" in name or _CONTROL.search(name):
        raise InvalidInput(
            Reason.INVALID_EVENT_NAME,
            f"event name must be one path segment of 1 to {MAX_EVENT_NAME_LENGTH} characters "
            "without control characters",
            field="name",
        )
    return name


def event_time(received: datetime, timing: Timing, max_age: timedelta) -> datetime:
    """When the event happened, by the service's clock: its arrival, moved back by how long
    the client says it held the event (``sent_at`` - ``timestamp``), or without ``sent_at``
    its ``timestamp``; never after its arrival, and not more than ``max_age`` before it."""
    happened, sent = timing.timestamp, timing.sent_at
    if happened is None:
        return received
    held = received - happened if sent is None else sent - happened
    if held > max_age:
        hours = max_age.total_seconds() / 3600
        raise InvalidInput(
            Reason.TOO_OLD, f"the event happened over {hours:g}h before it arrived", "timestamp"
        )
    return received - max(held, timedelta(0))


MAX_ENGAGED_MS: Final = 30 * 60 * 1000
"""Engaged time one report may add: 30 minutes (a tab reports at least when it is hidden)."""


def validate_pageview_id(text: str) -> UUID:
    """The event id of the page view an engagement reports on: a UUID, required."""
    message = "pageview_id must be the page view's event id (a UUID)"
    return _uuid(text, Reason.INVALID_PAGEVIEW_ID, message, "pageview_id")


def validate_engagement(engaged_ms: int, scroll_depth: int) -> tuple[int, int]:
    """Engaged milliseconds from 0 to `MAX_ENGAGED_MS`, and a scroll depth from 0 to 100."""
    if not 0 <= engaged_ms <= MAX_ENGAGED_MS:
        message = f"engaged_ms must be an integer from 0 to {MAX_ENGAGED_MS} (30 minutes)"
        raise InvalidInput(Reason.INVALID_ENGAGED_MS, message, field="engaged_ms")
    if not 0 <= scroll_depth <= 100:
        message = "scroll_depth must be an integer from 0 to 100 (percent)"
        raise InvalidInput(Reason.INVALID_SCROLL_DEPTH, message, field="scroll_depth")
    return engaged_ms, scroll_depth
