"""Send one page view through either door, the HTTP façade or gRPC, and get a comparable
answer, so each status-matrix row runs through both."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import event_service_pb2_grpc as pb_grpc
from prisme_client import error_from_rpc

from tests.support import FIREFOX, HttpClient

TOKEN = "test-token"

HEADER_OF = {
    "origin": "Origin",
    "page_url": "X-Prisme-Referrer",
    "document_referrer": "X-Prisme-Document-Referrer",
    "user_agent": "User-Agent",
    "client_ip": "X-Forwarded-For",
}


@dataclass(frozen=True)
class Visit:
    origin: str = "http://localhost"
    page_url: str = "http://localhost/hello"
    document_referrer: str = ""
    user_agent: str = FIREFOX
    client_ip: str = "84.200.69.80"
    extra_headers: dict[str, str] = field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        headers = {HEADER_OF[name]: getattr(self, name) for name in HEADER_OF}
        return {k: v for k, v in headers.items() if v} | self.extra_headers

    def context(self) -> pb.ClientContext:
        return pb.ClientContext(**{name: getattr(self, name) for name in HEADER_OF})


@dataclass(frozen=True)
class Answer:
    ok: bool
    http_status: int | None = None
    error: str | None = None
    grpc_code: grpc.StatusCode | None = None
    reason: str | None = None


async def send_http(client: HttpClient, visit: Visit) -> Answer:
    response = await client.post("/api/v1/events/pageviews", headers=visit.headers())
    body = await response.json()
    return Answer(ok=response.status == 200, http_status=response.status, error=body.get("error"))


async def send_grpc(stub: pb_grpc.EventServiceAsyncStub, visit: Visit) -> Answer:
    request = pb.SendPageViewRequest(context=visit.context())
    try:
        await stub.SendPageView(request, metadata=(("authorization", f"Bearer {TOKEN}"),))
    except grpc.aio.AioRpcError as exc:
        error = error_from_rpc(exc)
        return Answer(ok=False, grpc_code=error.code, reason=error.reason)
    return Answer(ok=True, grpc_code=grpc.StatusCode.OK)
