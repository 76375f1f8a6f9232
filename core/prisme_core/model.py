"""The values the pipeline speaks: what arrives, what enrichment adds, and what is stored.

Dataclasses (those made for every event with `prisme_core.values.value`); protobuf types
stay at the servicer's edge. Field names of the stored documents are the MongoDB field names
of the contract.

This module must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from prisme_core.values import value


@value
class ClientContext:
    """What a browser tells about itself; ``client_ip`` is already resolved by the servicer."""

    origin: str
    page_url: str
    document_referrer: str
    user_agent: str
    client_ip: str | None
    ch_ua_platform: str = ""
    """The `Sec-CH-UA-Platform` client hint, raw (a structured-field string)."""
    ch_ua_model: str = ""
    """The `Sec-CH-UA-Model` client hint, raw."""


@value
class Timing:
    """When the client says an event happened, and when it sent it, both by its own clock;
    None when it does not say."""

    timestamp: datetime | None = None
    sent_at: datetime | None = None


ON_ARRIVAL = Timing()
"""An event that happened when it arrives."""


@value
class PageViewInput:
    context: ClientContext
    event_id: str = ""
    status: str = ""
    """The page's HTTP status as sent (decimal text; empty means 200)."""
    visitor_id: str = ""
    """The site's own visitor id as sent (empty means none)."""
    timing: Timing = ON_ARRIVAL


@value
class CustomEventInput:
    context: ClientContext
    name: str
    content_type: str
    body: bytes
    event_id: str = ""
    query_properties: Mapping[str, str] = field(default_factory=dict)
    """Properties as JSON texts by key, from a noscript request without a body."""
    timing: Timing = ON_ARRIVAL


class ClickKind(StrEnum):
    """What a click is on: a link that leaves the site, or a file to download."""

    OUTBOUND_LINK = "outbound_link"
    FILE_DOWNLOAD = "file_download"


@value
class ClickInput:
    kind: ClickKind
    context: ClientContext
    target: str
    """The link's or the file's absolute URL, or ``PING``."""
    ping_from: str = ""
    ping_to: str = ""
    event_id: str = ""
    timing: Timing = ON_ARRIVAL


@value
class EngagementInput:
    """A report of a page view's engagement, its numbers as sent (checked at admission)."""

    context: ClientContext
    pageview_id: str
    engaged_ms: int
    scroll_depth: int
    event_id: str = ""
    timing: Timing = ON_ARRIVAL


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """What the User-Agent says about the client."""

    browser_family: str
    operating_system: str
    device: str
    is_bot: bool


@value
class SessionAttributes:
    """What a session records at its start and every one of its page views repeats."""

    session_uuid: UUID
    domain: str
    visitor_id: str
    operating_system: str
    browser_family: str
    device: str
    referrer_domain: str
    country_code: str
    utm_source: str
    utm_medium: str
    utm_campaign: str
    utm_term: str
    utm_content: str


@value
class PageView:
    """One accepted page view, as stored in ``pageviews``."""

    timestamp: datetime
    path: str
    session: SessionAttributes
    """Its session's attributes, which the page view's document repeats."""
    event_id: UUID | None = None
    """The sender's idempotency key, if it gave one."""
    status: int = 200
    """The page's HTTP status."""


@value
class SessionStart:
    """A new session, as first stored in ``sessions`` together with its first page view."""

    device_id: str
    """What the session is looked up by: a hash under the day's device key."""
    entry_path: str
    entry_timestamp: datetime
    attributes: SessionAttributes


@value
class CustomEvent:
    """One accepted custom event, as stored in ``events_custom``."""

    timestamp: datetime
    path: str
    session: SessionAttributes
    """The session it belongs to: its domain, visitor id and session id are stored."""
    name: str
    properties: dict[str, Any]
    event_id: UUID | None = None

    @property
    def domain(self) -> str:
        return self.session.domain

    @property
    def visitor_id(self) -> str:
        return self.session.visitor_id

    @property
    def session_uuid(self) -> UUID:
        return self.session.session_uuid


@dataclass(frozen=True, slots=True)
class SessionProgress:
    """Later state of a session, written behind: ``added`` page views since the last write,
    and the device id to find it by from now on, if that changed (the day's device key)."""

    session_uuid: UUID
    exit_path: str
    exit_timestamp: datetime
    added: int
    device_id: str | None = None
    visitor_id: str | None = None
    """The visitor id to carry from now on, if the site gave another."""


@dataclass(frozen=True, slots=True)
class StoredSession:
    """A session as found in the store, its exit state rebuilt from its page views."""

    start: SessionStart
    exit_path: str
    exit_timestamp: datetime
    pageviews: int
    recorded_pageviews: int
    """The count the session document holds; less than ``pageviews`` after a crash."""


@value
class Click:
    """One accepted click, as stored in ``outbound_link_clicks`` (``link``) or
    ``file_downloads`` (``url``)."""

    timestamp: datetime
    path: str
    session: SessionAttributes
    target: str
    """The normalised URL: lowercased host, normalised path, query and fragment kept."""
    event_id: UUID | None = None


@value
class Engagement:
    """One accepted engagement report, as stored in ``engagements``: time on the page (visible
    and focused) since the page view's last report, and the deepest scroll so far."""

    timestamp: datetime
    path: str
    session: SessionAttributes
    pageview_id: UUID
    """The event id of the page view it reports on."""
    engaged_ms: int
    scroll_depth: int
    event_id: UUID | None = None
