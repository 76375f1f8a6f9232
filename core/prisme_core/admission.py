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
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, ClassVar

from prisme_core.errors import Dropped, InvalidInput, Reason
from prisme_core.model import (
    ON_ARRIVAL,
    ClickInput,
    ClickKind,
    ClientContext,
    ClientInfo,
    CustomEventInput,
    EngagementInput,
    PageViewInput,
    Timing,
)
from prisme_core.ports import Clock, UserAgentParser
from prisme_core.properties import parse_properties, query_properties
from prisme_core.settings import LimitSettings
from prisme_core.urls import Url
from prisme_core.validate import (
    OriginRegistry,
    drop_bot,
    event_time,
    origin_root,
    validate_document_referrer,
    validate_engagement,
    validate_event_id,
    validate_event_name,
    validate_link,
    validate_origin,
    validate_page_url,
    validate_pageview_id,
    validate_status,
    validate_visitor_id,
)
from prisme_core.values import value


@value
class Admitted:
    """An event that passed every shared rule, with what they found out."""

    context: ClientContext
    client: ClientInfo
    page: Url
    referrer: Url | None
    key: uuid.UUID | None
    """The event id, if the sender gave one."""
    now: datetime
    """The receive time, to the millisecond: which day's keys identify the device."""
    at: datetime
    """When the event happened (`event_time`), to the millisecond: its stored time, and
    the time its session is decided by."""
    internal: bool
    """A navigation within the site: it continues the device's live session, if any."""
    device: tuple[str, str, str]
    """What identifies the device and the visitor: user agent, client IP, page host."""


@value
class AdmittedPageView:
    """A page view past its admission, status and visitor id."""

    kind: ClassVar[str] = "pageview"
    """The event's kind, as `RecentEvents` keeps ids apart."""
    admitted: Admitted
    status: int
    visitor_id: str | None
    """The site's own visitor id, if it gave one."""


@value
class AdmittedCustomEvent:
    """A custom event past its admission, name and properties."""

    kind: ClassVar[str] = "custom"
    waits: ClassVar[bool] = True
    """It may be sent before its page view is stored: it waits a little for its session."""
    admitted: Admitted
    name: str
    properties: dict[str, Any]


@value
class AdmittedClick:
    """An outbound-link click or a file download past its admission and its target."""

    waits: ClassVar[bool] = True
    admitted: Admitted
    click: ClickKind
    target: str
    """The normalised URL."""

    @property
    def kind(self) -> str:
        return self.click.value


@value
class AdmittedEngagement:
    """An engagement report past its admission, its page view's id and its numbers."""

    kind: ClassVar[str] = "engagement"
    waits: ClassVar[bool] = False
    """Its page view was answered before it was sent: no session now means none."""
    admitted: Admitted
    pageview_id: uuid.UUID
    engaged_ms: int
    scroll_depth: int


JoiningEvent = AdmittedCustomEvent | AdmittedClick | AdmittedEngagement
"""An event that joins its visitor's live session, never changing it."""
PING = "PING"
"""The body of an HTML ``<a ping>`` audit."""


@dataclass(frozen=True, slots=True)
class Admission:
    origins: OriginRegistry
    agents: UserAgentParser
    clock: Clock
    max_body_bytes: int
    max_age: timedelta

    @classmethod
    def of(cls, limits: LimitSettings, agents: UserAgentParser, clock: Clock) -> Admission:
        max_age = timedelta(seconds=limits.max_event_age)
        return cls(OriginRegistry.of(limits.origins), agents, clock, limits.max_body_bytes, max_age)

    def pageview(self, event: PageViewInput) -> AdmittedPageView | Dropped:
        """The shared steps, then the status and the site's visitor id."""
        context = event.context
        admitted = self.admit(context, event.event_id, event.timing, context.document_referrer)
        if isinstance(admitted, Dropped):
            return admitted
        status, visitor_id = validate_status(event.status), validate_visitor_id(event.visitor_id)
        return AdmittedPageView(admitted, status, visitor_id)

    def custom_event(self, event: CustomEventInput) -> AdmittedCustomEvent | Dropped:
        """The shared steps, then the name and the properties."""
        admitted = self.admit(event.context, event.event_id, event.timing)
        if isinstance(admitted, Dropped):
            return admitted
        name = validate_event_name(event.name)
        if event.query_properties and not event.body:
            properties = query_properties(event.query_properties, self.max_body_bytes)
        else:
            properties = parse_properties(event.content_type, event.body, self.max_body_bytes)
        return AdmittedCustomEvent(admitted, name, properties)

    def click(self, event: ClickInput) -> AdmittedClick | Dropped:
        """A click's page and target (for a ``PING``, ``Ping-From``, or the Origin's root URL,
        and ``Ping-To``), the shared steps, then the target: an absolute URL, which for an
        outbound link leaves the page's host."""
        context, target = event.context, event.target
        if target == PING:
            page = event.ping_from or origin_root(context.origin)
            context, target = replace(context, page_url=page), event.ping_to
        admitted = self.admit(context, event.event_id, event.timing)
        if isinstance(admitted, Dropped):
            return admitted
        field = "link" if event.kind is ClickKind.OUTBOUND_LINK else "url"
        url, normalised = validate_link(target, field)
        if event.kind is ClickKind.OUTBOUND_LINK and url.host == admitted.page.host:
            raise InvalidInput(Reason.INTERNAL_LINK, "the link stays on the page's host", field)
        return AdmittedClick(admitted, event.kind, normalised)

    def engagement(self, event: EngagementInput) -> AdmittedEngagement | Dropped:
        """The shared steps, then the page view's id and the numbers."""
        admitted = self.admit(event.context, event.event_id, event.timing)
        if isinstance(admitted, Dropped):
            return admitted
        pageview_id = validate_pageview_id(event.pageview_id)
        engaged_ms, scroll_depth = validate_engagement(event.engaged_ms, event.scroll_depth)
        return AdmittedEngagement(admitted, pageview_id, engaged_ms, scroll_depth)

    def admit(
        self, context: ClientContext, event_id: str, timing: Timing, document_referrer: str = ""
    ) -> Admitted | Dropped:
        """The shared steps; raises an `InvalidInput` (or `OriginNotRegistered`)."""
        validate_origin(context.origin, self.origins)
        page = validate_page_url(context.page_url)
        referrer = validate_document_referrer(document_referrer)
        key = validate_event_id(event_id)
        now = to_milliseconds(self.clock.now())
        at = now if timing is ON_ARRIVAL else to_milliseconds(event_time(now, timing, self.max_age))
        client = self.agents.parse(context.user_agent)
        if (reason := drop_bot(client)) is not None:
            return Dropped(reason, "bots are not recorded")
        internal = referrer is not None and referrer.host == page.host
        device = context.user_agent, context.client_ip or "", page.host
        return Admitted(context, client, page, referrer, key, now, at, internal, device)


def to_milliseconds(at: datetime) -> datetime:
    """BSON keeps milliseconds: cut to them, so what is stored is what was computed."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)
