"""Send one event through either door, the HTTP façade or gRPC, and get a comparable answer,
so each rule is tested through both."""

from __future__ import annotations

import gzip
import json
import urllib.parse
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import brotli
import grpc
import zstandard
from aiohttp import ClientResponse
from google.protobuf.timestamp_pb2 import Timestamp
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import event_service_pb2_grpc as pb_grpc
from prisme_client import PrismeClient, error_from_rpc, error_from_status
from prisme_http.render import json_of

from tests.support import FIREFOX, HttpClient

TOKEN = "test-token"
TRUSTED = (("authorization", f"Bearer {TOKEN}"),)

HEADER_OF = {
    "origin": "Origin",
    "page_url": "X-Prisme-Referrer",
    "document_referrer": "X-Prisme-Document-Referrer",
    "user_agent": "User-Agent",
    "client_ip": "X-Forwarded-For",
    "ch_ua_platform": "Sec-CH-UA-Platform",
    "ch_ua_model": "Sec-CH-UA-Model",
}
PAGE_VIEW_HEADER_OF = {"status": "X-Prisme-Status", "visitor_id": "X-Prisme-Visitor-Id"}


@dataclass(frozen=True)
class Visit:
    origin: str = "http://localhost"
    page_url: str = "http://localhost/hello"
    document_referrer: str = ""
    user_agent: str = FIREFOX
    client_ip: str = "84.200.69.80"
    extra_headers: dict[str, str] = field(default_factory=dict)
    ch_ua_platform: str = ""
    ch_ua_model: str = ""
    status: str = ""
    visitor_id: str = ""

    def headers(self) -> dict[str, str]:
        names = HEADER_OF | PAGE_VIEW_HEADER_OF
        headers = {names[name]: getattr(self, name) for name in names}
        return {k: v for k, v in headers.items() if v} | self.extra_headers

    def request(self) -> pb.SendPageViewRequest:
        fields = {name: getattr(self, name) for name in PAGE_VIEW_HEADER_OF}
        return pb.SendPageViewRequest(context=self.context(), **fields)

    def context(self) -> pb.ClientContext:
        return pb.ClientContext(**{name: getattr(self, name) for name in HEADER_OF})


@dataclass(frozen=True)
class Answer:
    ok: bool
    http_status: int | None = None
    error: str | None = None
    grpc_code: grpc.StatusCode | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Custom:
    """A custom event: its name (raw, as in the URL path), body and content type."""

    name: str = "click"
    body: bytes = b""
    content_type: str = "application/json"
    visit: Visit = field(default_factory=Visit)


async def send_http(client: HttpClient, visit: Visit) -> Answer:
    response = await client.post("/api/v1/events/pageviews", headers=visit.headers())
    return await _http_answer(response)


async def send_custom_http(client: HttpClient, event: Custom) -> Answer:
    headers = event.visit.headers()
    if event.content_type:
        headers["Content-Type"] = event.content_type
    response = await client.post(
        f"/api/v1/events/custom/{event.name}", headers=headers, data=event.body
    )
    return await _http_answer(response)


async def _http_answer(response: ClientResponse) -> Answer:
    body = await response.json() if response.content_type == "application/json" else {}
    return Answer(ok=response.status == 200, http_status=response.status, error=body.get("error"))


async def send_grpc(stub: pb_grpc.EventServiceAsyncStub, visit: Visit) -> Answer:
    return await _grpc_answer(stub.SendPageView(visit.request(), metadata=TRUSTED))


async def send_custom_grpc(stub: pb_grpc.EventServiceAsyncStub, event: Custom) -> Answer:
    request = pb.SendCustomEventRequest(
        context=event.visit.context(), name=urllib.parse.unquote(event.name)
    )
    request.body.content_type = event.content_type
    request.body.data = event.body
    return await _grpc_answer(stub.SendCustomEvent(request, metadata=TRUSTED))


async def _grpc_answer(call: Awaitable[object]) -> Answer:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        error = error_from_rpc(exc)
        return Answer(ok=False, grpc_code=error.code, reason=error.reason)
    return Answer(ok=True, grpc_code=grpc.StatusCode.OK)


@dataclass(frozen=True)
class Click:
    """An outbound-link click (``kind="outbound-links"``) or a file download
    (``"file-downloads"``): the body as sent over HTTP (a URL or ``PING``)."""

    target: str = "https://elsewhere.example/docs?page=2#intro"
    kind: str = "outbound-links"
    visit: Visit = field(default_factory=Visit)
    ping_from: str = ""
    ping_to: str = ""


async def send_click_http(client: HttpClient, click: Click) -> Answer:
    headers = click.visit.headers() | {"Content-Type": "text/plain;charset=UTF-8"}
    headers |= {k: v for k, v in (("Ping-From", click.ping_from), ("Ping-To", click.ping_to)) if v}
    response = await client.post(f"/api/v1/events/{click.kind}", headers=headers, data=click.target)
    return await _http_answer(response)


async def send_click_grpc(stub: pb_grpc.EventServiceAsyncStub, click: Click) -> Answer:
    context, ping_from, ping_to = click.visit.context(), click.ping_from, click.ping_to
    if click.kind == "outbound-links":
        link = pb.SendOutboundLinkRequest(
            context=context, link=click.target, ping_from=ping_from, ping_to=ping_to
        )
        return await _grpc_answer(stub.SendOutboundLink(link, metadata=TRUSTED))
    download = pb.SendFileDownloadRequest(
        context=context, url=click.target, ping_from=ping_from, ping_to=ping_to
    )
    return await _grpc_answer(stub.SendFileDownload(download, metadata=TRUSTED))


async def send_batch_http(
    client: HttpClient,
    events: list[dict[str, Any]],
    visit: Visit,
    sent_at: datetime | None = None,
    encoding: str = "",
) -> list[Answer]:
    """A JSON batch over HTTP, ``encoding`` one of `compress`'s; one answer per event."""
    batch: dict[str, Any] = {"events": events}
    if sent_at is not None:
        batch["sent_at"] = sent_at.isoformat()
    headers = visit.headers() | {"Content-Type": "application/json"}
    if encoding:
        headers["Content-Encoding"] = encoding
    body = compress(json.dumps(batch).encode(), encoding)
    response = await client.post("/api/v1/events/batch", headers=headers, data=body)
    assert response.status == 200, await response.text()
    results = (await response.json())["results"]
    return [
        Answer(ok=r["status"] == 200, http_status=r["status"], error=r.get("error"))
        for r in results
    ]


async def send_batch_grpc(
    stub: pb_grpc.EventServiceAsyncStub,
    events: list[dict[str, Any]],
    visit: Visit,
    sent_at: datetime | None = None,
) -> list[Answer]:
    """The same batch as `SendEvents` messages, from a trusted backend."""
    request = pb.SendEventsRequest(events=[_message(event, visit) for event in events])
    if sent_at is not None:
        request.sent_at.FromDatetime(sent_at)
    response = await stub.SendEvents(request, metadata=TRUSTED)
    answers = []
    for status in response.results:
        error = error_from_status(status)
        answers.append(
            Answer(ok=True, grpc_code=grpc.StatusCode.OK)
            if error is None
            else Answer(ok=False, grpc_code=error.code, reason=error.reason)
        )
    return answers


def _message(event: dict[str, Any], visit: Visit) -> pb.Event:
    """One event of a JSON batch as its message (the kinds the tests send)."""
    context = visit.context()
    context.page_url = event.get("page_url", context.page_url)
    fields: dict[str, Any] = {"context": context, "event_id": event.get("event_id", "")}
    if "timestamp" in event:
        stamp = Timestamp()
        stamp.FromDatetime(datetime.fromisoformat(event["timestamp"]))
        fields["timestamp"] = stamp
    if event["kind"] == "pageview":
        context.document_referrer = event.get("document_referrer", "")
        return pb.Event(
            page_view=pb.SendPageViewRequest(**fields, status=str(event.get("status", "")))
        )
    if event["kind"] == "custom":
        request = pb.SendCustomEventRequest(**fields, name=event["name"])
        if "properties" in event:
            request.body.content_type = "application/json"
            request.body.data = json.dumps(event["properties"]).encode()
        return pb.Event(custom_event=request)
    if event["kind"] == "outbound_link":
        return pb.Event(outbound_link=pb.SendOutboundLinkRequest(**fields, link=event["link"]))
    return pb.Event()  # no kind: what a malformed message is


def compress(body: bytes, encoding: str) -> bytes:
    """``body`` in ``encoding`` (several, comma-separated, applied in order)."""
    coders = {
        "gzip": gzip.compress,
        "deflate": zlib.compress,
        "br": brotli.compress,
        "zstd": zstandard.ZstdCompressor().compress,
        "identity": lambda data: data,
    }
    for name in filter(None, (n.strip() for n in encoding.split(","))):
        body = coders[name](body)
    return body


def why(answer: Answer) -> str | None:
    """The reason of a refusal, whichever door answered (``TOO_OLD``)."""
    if answer.reason is not None:
        return answer.reason
    return None if answer.error is None else answer.error.upper().replace(" ", "_")


StatsAsk = Callable[..., Awaitable[dict[str, Any]]]


def stats_asker(door: str, http: HttpClient, core_target: str, token: str) -> StatsAsk:
    """``ask(route, **params)``: a stats route's JSON over HTTP, or over gRPC through the typed
    client in the same shape (what the façade renders: `json_of` of each message)."""

    async def over_http(route: str, **params: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        response = await http.get(f"/api/v1/stats/{route}", params=params, headers=headers)
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body

    async def over_grpc(route: str, **params: str) -> dict[str, Any]:
        given = {k.replace("-", "_"): v for k, v in params.items()}
        start, end = given.pop("from"), given.pop("to")
        limit = int(given.pop("limit")) if "limit" in given else None
        totals = given.pop("totals", "") == "true"
        async with PrismeClient(core_target, stats_token=token) as client:
            answer = await client.stats(route, start, end, totals=totals, limit=limit, **given)
        body: dict[str, Any] = {"from": answer.start, "to": answer.end, "keys": answer.keys,
                                "values": answer.values}  # fmt: skip
        if answer.totals is not None:
            body["totals"] = json_of(answer.totals)
        if answer.overall is not None:
            body["pages"] = [json_of(page) for page in answer.pages]
            body["overall"] = json_of(answer.overall)
        return body

    return over_http if door == "http" else over_grpc
