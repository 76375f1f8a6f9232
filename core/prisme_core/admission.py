"""Admission: the steps every event takes, whatever its kind, before anything is looked up.

In order: the event counts against its client's rate limit (`Pipeline.count`, called by the
servicer before the event's fields are even read, so that malformed events count too); then
`admit` validates the origin, the page URL, the document referrer (page views only) and the
event id, parses the user agent and drops bots. Then each kind's own fields: a page view's
status and the site's visitor id (`pageview`), a custom event's name and properties
(`custom_event`). A validation failure raises; a drop is a value (`drop_bot` returns its
reason), answered as `Dropped`.

Must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prisme_core.errors import Dropped
from prisme_core.model import ClientContext, ClientInfo, CustomEventInput, PageViewInput
from prisme_core.ports import Clock, UserAgentParser
from prisme_core.properties import parse_properties
from prisme_core.urls import Url
from prisme_core.validate import (
    OriginRegistry,
    drop_bot,
    validate_document_referrer,
    validate_event_id,
    validate_event_name,
    validate_origin,
    validate_page_url,
    validate_status,
    validate_visitor_id,
)


@dataclass(frozen=True, slots=True)
class Admitted:
    """An event that passed every shared rule, with what they found out."""

    context: ClientContext
    client: ClientInfo
    page: Url
    referrer: Url | None
    key: uuid.UUID | None
    """The event id, if the sender gave one."""
    now: datetime
    """The receive time, to the millisecond."""
    internal: bool
    """A navigation within the site: it continues the device's live session, if any."""
    device: tuple[str, str, str]
    """What identifies the device and the visitor: user agent, client IP, page host."""


@dataclass(frozen=True, slots=True)
class AdmittedPageView:
    """A page view past its admission, status and visitor id."""

    admitted: Admitted
    status: int
    visitor_id: str | None
    """The site's own visitor id, if it gave one."""


@dataclass(frozen=True, slots=True)
class AdmittedCustomEvent:
    """A custom event past its admission, name and properties."""

    admitted: Admitted
    name: str
    properties: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Admission:
    origins: OriginRegistry
    agents: UserAgentParser
    clock: Clock
    max_body_bytes: int

    def pageview(self, event: PageViewInput) -> AdmittedPageView | Dropped:
        """The shared steps, then the status and the site's visitor id."""
        context = event.context
        admitted = self.admit(context, event.event_id, context.document_referrer)
        if isinstance(admitted, Dropped):
            return admitted
        status, visitor_id = validate_status(event.status), validate_visitor_id(event.visitor_id)
        return AdmittedPageView(admitted, status, visitor_id)

    def custom_event(self, event: CustomEventInput) -> AdmittedCustomEvent | Dropped:
        """The shared steps, then the name and the properties."""
        admitted = self.admit(event.context, event.event_id)
        if isinstance(admitted, Dropped):
            return admitted
        name = validate_event_name(event.name)
        properties = parse_properties(event.content_type, event.body, self.max_body_bytes)
        return AdmittedCustomEvent(admitted, name, properties)

    def admit(
        self, context: ClientContext, event_id: str, document_referrer: str = ""
    ) -> Admitted | Dropped:
        """The shared steps; raises an `InvalidInput` (or `OriginNotRegistered`)."""
        validate_origin(context.origin, self.origins)
        page = validate_page_url(context.page_url)
        referrer = validate_document_referrer(document_referrer)
        key = validate_event_id(event_id)
        client = self.agents.parse(context.user_agent)
        if (reason := drop_bot(client)) is not None:
            return Dropped(reason, "bots are not recorded")
        now = to_milliseconds(self.clock.now())
        internal = referrer is not None and referrer.host == page.host
        device = context.user_agent, context.client_ip or "", page.host
        return Admitted(context, client, page, referrer, key, now, internal, device)


def to_milliseconds(at: datetime) -> datetime:
    """BSON keeps milliseconds: cut to them, so what is stored is what was computed."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)
