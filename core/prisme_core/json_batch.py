"""The JSON batch of ``POST /api/v1/events/batch`` (`SendEventsRequest.body`), read into the
`Event` messages that `SendEvents` takes, so that both forms take one path:

    {"sent_at": "2026-12-01T10:00:00Z",
     "events": [{"kind": "pageview", "page_url": "https://example.com/a",
                 "timestamp": "2026-12-01T09:50:00Z", "event_id": "<uuid>"}, ...]}

An engagement's JSON body, on its own route, is read here too (`read_engagement`).

What concerns the whole batch is raised: a body (``application/json`` or ``text/plain``) that
is not a JSON object whose ``events``
is a list, more than `MAX_BATCH` events, a bad ``sent_at``. An event that is not an object,
of an unknown kind, with a field its kind does not have or of the wrong type, is refused on
its own (an `InvalidEvent` in its place); the rules of its kind are the pipeline's, as for
every other event. Each event takes the request's context (the HTTP request's headers), with
its own page URL and document referrer in place of the context's when it has them.

Protobuf types are made here, at the servicer's edge. Must not import aiohttp or pymongo.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from google.api.httpbody_pb2 import HttpBody
from google.protobuf.timestamp_pb2 import Timestamp
from prisme.v1 import event_service_pb2 as pb

from prisme_core.errors import InvalidInput, Reason
from prisme_core.properties import json_object

MAX_BATCH: Final = 1000
"""Events per batch, in either form."""
MAX_TIMESTAMP_LENGTH: Final = 64
CONTENT_TYPES: Final = ("application/json", "text/plain")
"""``text/plain`` too: what ``navigator.sendBeacon`` and a plain ``fetch`` of a string send,
which a page may send to another origin without a CORS preflight."""
KINDS: Final[Mapping[str, frozenset[str]]] = {
    "pageview": frozenset({"page_url", "document_referrer", "status", "visitor_id"}),
    "custom": frozenset({"page_url", "name", "properties"}),
    "outbound_link": frozenset({"page_url", "link"}),
    "file_download": frozenset({"page_url", "url"}),
    "engagement": frozenset({"page_url", "pageview_id", "engaged_ms", "scroll_depth"}),
}
"""The fields of each kind, beyond the ones every event may have (`COMMON`)."""
COMMON: Final = frozenset({"kind", "event_id", "timestamp"})


@dataclass(frozen=True, slots=True)
class InvalidEvent:
    """An event of the batch refused as it was read; it counts against ``client_ip``."""

    error: InvalidInput
    client_ip: str


@dataclass(frozen=True, slots=True)
class JsonBatch:
    sent_at: Timestamp | None
    events: list[pb.Event | InvalidEvent]


def read_batch(body: HttpBody, context: pb.ClientContext, max_bytes: int) -> JsonBatch:
    """The events of a JSON batch; raises `InvalidInput` for what concerns all of them."""
    root = json_object(body.content_type, body.data, max_bytes, "batch", CONTENT_TYPES)
    events = root.get("events")
    if not isinstance(events, list) or set(root) - {"events", "sent_at"}:
        message = 'a batch is {"sent_at": <RFC 3339, optional>, "events": [...]}'
        raise InvalidInput(Reason.INVALID_BATCH, message, field="body.data")
    if len(events) > MAX_BATCH:
        message = f"at most {MAX_BATCH} events per batch"
        raise InvalidInput(Reason.TOO_MANY_EVENTS, message, field="events")
    sent_at = None if root.get("sent_at") is None else timestamp(root["sent_at"], "sent_at")
    return JsonBatch(sent_at, [_event(i, event, context) for i, event in enumerate(events)])


def timestamp(value: object, field: str) -> Timestamp:
    """An RFC 3339 time with its offset (``Z`` or ``+01:00``), as a protobuf `Timestamp`."""
    if isinstance(value, str) and len(value) <= MAX_TIMESTAMP_LENGTH:
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if at.tzinfo is not None:
                stamp = Timestamp()
                stamp.FromDatetime(at.astimezone(UTC))
                return stamp
    message = f"{field} must be an RFC 3339 time with an offset, e.g. 2026-12-01T10:00:00Z"
    raise InvalidInput(Reason.INVALID_TIMESTAMP, message, field=field)


def _event(index: int, given: object, context: pb.ClientContext) -> pb.Event | InvalidEvent:
    where = f"events[{index}]"
    try:
        if not isinstance(given, dict):
            raise _invalid(f"{where} must be a JSON object", where)
        kind = given.get("kind")
        fields = KINDS.get(kind) if isinstance(kind, str) else None
        if not isinstance(kind, str) or fields is None:
            kinds = ", ".join(KINDS)
            raise _invalid(f"{where}.kind must be one of {kinds}", f"{where}.kind")
        if unknown := sorted(set(given) - fields - COMMON):
            raise _invalid(f"{where} has no field {unknown[0][:40]!r}", f"{where}.{unknown[0]}")
        return _MAKERS[kind](_Fields(given, where), context)
    except InvalidInput as error:
        return InvalidEvent(error, context.client_ip)


@dataclass(frozen=True, slots=True)
class _Fields:
    """One event's fields, each read with its type checked."""

    given: dict[str, Any]
    where: str

    def text(self, name: str, default: str = "") -> str:
        value = self.given.get(name)
        if value is None:
            return default
        if not isinstance(value, str):
            raise _invalid(f"{self.where}.{name} must be a string", f"{self.where}.{name}")
        return value

    def context(self, shared: pb.ClientContext, *, referrer: bool) -> pb.ClientContext:
        context = pb.ClientContext()
        context.CopyFrom(shared)
        context.page_url = self.text("page_url", shared.page_url)
        context.document_referrer = (
            self.text("document_referrer", shared.document_referrer) if referrer else ""
        )
        return context

    def common(self, request: Any) -> None:
        """The fields every event has: its id and its time."""
        request.event_id = self.text("event_id")
        if self.given.get("timestamp") is not None:
            request.timestamp.CopyFrom(
                timestamp(self.given["timestamp"], f"{self.where}.timestamp")
            )


def _pageview(fields: _Fields, context: pb.ClientContext) -> pb.Event:
    status = fields.given.get("status")
    if isinstance(status, int) and not isinstance(status, bool):
        status = str(status)
    elif status is not None and not isinstance(status, str):
        where = f"{fields.where}.status"
        raise _invalid(f"{where} must be an HTTP status, e.g. 404", where)
    request = pb.SendPageViewRequest(
        context=fields.context(context, referrer=True),
        status=status or "",
        visitor_id=fields.text("visitor_id"),
    )
    fields.common(request)
    return pb.Event(page_view=request)


def _custom(fields: _Fields, context: pb.ClientContext) -> pb.Event:
    request = pb.SendCustomEventRequest(
        context=fields.context(context, referrer=False), name=fields.text("name")
    )
    properties = fields.given.get("properties")
    if properties is not None:
        if not isinstance(properties, dict):
            where = f"{fields.where}.properties"
            raise InvalidInput(Reason.INVALID_JSON, f"{where} must be a JSON object", where)
        request.body.content_type = "application/json"
        request.body.data = json.dumps(properties, ensure_ascii=False).encode(
            "utf-8", "surrogatepass"
        )
    fields.common(request)
    return pb.Event(custom_event=request)


def _outbound_link(fields: _Fields, context: pb.ClientContext) -> pb.Event:
    link = fields.text("link")
    request = pb.SendOutboundLinkRequest(context=fields.context(context, referrer=False), link=link)
    fields.common(request)
    return pb.Event(outbound_link=request)


def _file_download(fields: _Fields, context: pb.ClientContext) -> pb.Event:
    url = fields.text("url")
    request = pb.SendFileDownloadRequest(context=fields.context(context, referrer=False), url=url)
    fields.common(request)
    return pb.Event(file_download=request)


def _engagement(fields: _Fields, context: pb.ClientContext) -> pb.Event:
    request = pb.SendEngagementRequest(context=fields.context(context, referrer=False))
    fill_engagement(request, fields.given, f"{fields.where}.")
    fields.common(request)
    return pb.Event(engagement=request)


ENGAGEMENT_FIELDS: Final = frozenset({"pageview_id", "engaged_ms", "scroll_depth"})
INT32: Final = range(-(2**31), 2**31)


def read_engagement(request: pb.SendEngagementRequest, max_bytes: int) -> None:
    """An engagement sent over HTTP: its JSON body (``{"pageview_id", "engaged_ms",
    "scroll_depth"}``) into the request's fields."""
    if request.pageview_id or request.engaged_ms or request.scroll_depth:
        message = "an engagement has its numbers in its fields or in its body, not in both"
        raise InvalidInput(Reason.INVALID_EVENT, message, field="body")
    given = json_object(request.body.content_type, request.body.data, max_bytes, "engagement",
                        CONTENT_TYPES)  # fmt: skip
    if unknown := sorted(set(given) - ENGAGEMENT_FIELDS):
        raise _invalid(f"an engagement has no field {unknown[0][:40]!r}", unknown[0][:40])
    fill_engagement(request, given, "")


def fill_engagement(request: pb.SendEngagementRequest, given: dict[str, Any], where: str) -> None:
    """The page view's id and the numbers, each of its JSON type (the ranges are the
    pipeline's)."""
    pageview_id = given.get("pageview_id", "")
    if not isinstance(pageview_id, str):
        message = f"{where}pageview_id must be the page view's event id (a UUID)"
        raise InvalidInput(Reason.INVALID_PAGEVIEW_ID, message, field=f"{where}pageview_id")
    request.pageview_id = pageview_id
    request.engaged_ms = _integer(given, "engaged_ms", where, Reason.INVALID_ENGAGED_MS, None)
    request.scroll_depth = _integer(
        given, "scroll_depth", where, Reason.INVALID_SCROLL_DEPTH, INT32
    )


def _integer(
    given: dict[str, Any], name: str, where: str, reason: Reason, within: range | None = None
) -> int:
    """A required JSON integer (within 64 bits, as `json_value` reads them, and ``within``)."""
    value = given.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or (within and value not in within):
        raise InvalidInput(reason, f"{where}{name} must be an integer", field=f"{where}{name}")
    return value


_MAKERS: Final[Mapping[str, Callable[[_Fields, pb.ClientContext], pb.Event]]] = {
    "pageview": _pageview,
    "custom": _custom,
    "outbound_link": _outbound_link,
    "file_download": _file_download,
    "engagement": _engagement,
}


def _invalid(message: str, field: str) -> InvalidInput:
    return InvalidInput(Reason.INVALID_EVENT, message, field=field)
