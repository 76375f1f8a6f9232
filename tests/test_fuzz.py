"""Fuzzing the real façade + core + store: the OpenAPI document matches the routes, and random
or malformed requests (methods, paths, headers, bodies) never get a 5xx and never hang."""

from __future__ import annotations

import asyncio
import json
import re
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prisme_http.openapi import openapi_document
from prisme_http.routes import routes_of

from tests.support import HttpClient

DOCUMENT = openapi_document()
OPERATIONS = [
    (path, method.upper(), operation)
    for path, item in DOCUMENT["paths"].items()
    for method, operation in item.items()
]


def test_openapi_document_describes_exactly_the_routes() -> None:
    documented = {(path, method) for path, method, _ in OPERATIONS if method != "OPTIONS"}
    assert documented == {(route.path, route.http_method) for route in routes_of()}
    page_view = DOCUMENT["paths"]["/api/v1/events/pageviews"]["post"]
    headers = {p["name"] for p in page_view["parameters"] if p["in"] == "header"}
    assert headers == {
        "Origin", "X-Prisme-Referrer", "Referer", "X-Prisme-Document-Referrer", "User-Agent",
        "X-Prisme-Event-Id", "X-Prisme-Status", "X-Prisme-Visitor-Id", "Sec-CH-UA-Platform",
        "Sec-CH-UA-Model", "Content-Encoding",
    }  # fmt: skip
    batch = DOCUMENT["paths"]["/api/v1/events/batch"]["post"]
    assert batch["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Batch"
    }
    assert "415" in batch["responses"]
    json.dumps(DOCUMENT)


async def test_openapi_document_is_served(http: HttpClient) -> None:
    response = await http.get("/api/v1/openapi.json")
    assert await response.json() == DOCUMENT


header_value = st.one_of(
    st.sampled_from(["http://localhost", "http://localhost/x?utm_source=a", "https://example.com/",
                     "", "null", "application/json", "8.8.8.8, 10.0.0.1", "//x", "http://[::1"]),
    st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    # Text fields ending in bytes that are not UTF-8 (they once gave a 500).
    st.sampled_from([b"http://localhost/\xff\xfe", b"Mozilla/5.0 \xff\xfe", b"\xc3"]),
)  # fmt: skip
header_name = st.sampled_from(
    ["Origin", "X-Prisme-Referrer", "Referer", "X-Prisme-Document-Referrer", "User-Agent",
     "Content-Type", "X-Forwarded-For", "X-Request-Id", "Access-Control-Request-Method",
     "Transfer-Encoding", "Expect", "X-Prisme-Status", "X-Prisme-Visitor-Id",
     "Sec-CH-UA-Platform", "Sec-CH-UA-Model"]
) | st.text(alphabet=string.ascii_letters + "-", min_size=1, max_size=20)  # fmt: skip
BODIES = st.sampled_from([b"{}", b'{"a": [1, {"b": null}]}', b"[", b"null"])
segment = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + "-_.~%", max_size=20),
    st.binary(max_size=20).map(lambda b: "".join(f"%{c:02X}" for c in b)),
)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    path, method, _ = draw(st.sampled_from(OPERATIONS))
    path = re.sub(r"\{\w+\}", lambda _: draw(segment), path)
    if draw(st.booleans()):
        path = draw(st.sampled_from(["/", "/api/v1/events/", "/api/v1/events/x/y", "/%", "*"]))
    path += draw(st.sampled_from(["", "?", "?a=1&a=2", "#frag", "/"]))
    method = draw(st.sampled_from([method, method, "GET", "HEAD", "PUT", "DELETE", "OPTIONS",
                                   "FOO", "G E T", ""]))  # fmt: skip
    headers = draw(st.lists(st.tuples(header_name, header_value), max_size=8))
    body = draw(st.one_of(st.just(b""), st.binary(max_size=300), BODIES))
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: localhost"]
    lines += [
        name.encode() + b": " + (value if isinstance(value, bytes) else value.encode())
        for name, value in headers
        if name.lower() not in {"content-length", "transfer-encoding", "expect"}
    ]
    lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join([*lines, b"", body])


async def _status(port: int, data: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)
        return int(head.split(b" ", 2)[1])
    finally:
        writer.close()


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=requests())
async def test_no_request_gets_a_5xx_or_hangs(facade_port: int, data: bytes) -> None:
    status = await _status(facade_port, data)
    assert status < 500, data[:300]
