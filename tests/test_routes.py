"""The façade's routes and header mapping come from the proto's annotations."""

from __future__ import annotations

from multidict import CIMultiDict
from prisme.v1 import event_service_pb2 as pb
from prisme_core.stats.query import ENGAGEMENT, TIMESERIES, TOP
from prisme_http.app import create_app
from prisme_http.routes import HeaderBinding, Route, routes_of
from prisme_http.transcode import to_message

from tests.conftest import facade_config


def _route(rpc: str) -> Route:
    return next(route for route in routes_of() if route.rpc_path.endswith(f"/{rpc}"))


def test_routes_are_the_annotated_rpcs() -> None:
    table = {(route.http_method, route.path): route.rpc_path for route in routes_of()}
    stats = {("GET", f"/api/v1/stats/{metric}"): "/prisme.v1.StatsService/GetTimeseries"
             for metric in TIMESERIES} | {
        ("GET", f"/api/v1/stats/{metric}"): "/prisme.v1.StatsService/GetTop" for metric in TOP
    } | {
        ("GET", f"/api/v1/stats/{metric}"): "/prisme.v1.StatsService/GetEngagement"
        for metric in ENGAGEMENT
    }  # fmt: skip
    assert len(stats) == 25
    assert table == stats | {
        ("POST", "/api/v1/events/pageviews"): "/prisme.v1.EventService/SendPageView",
        ("POST", "/api/v1/events/batch"): "/prisme.v1.EventService/SendEvents",
        ("POST", "/api/v1/events/engagement"): "/prisme.v1.EventService/SendEngagement",
        ("POST", "/api/v1/events/custom/{name}"): "/prisme.v1.EventService/SendCustomEvent",
        ("GET", "/api/v1/healthcheck"): "/prisme.v1.EventService/CheckHealth",
        ("POST", "/api/v1/events/outbound-links"): "/prisme.v1.EventService/SendOutboundLink",
        ("POST", "/api/v1/events/file-downloads"): "/prisme.v1.EventService/SendFileDownload",
        ("GET", "/api/v1/noscript/events/pageviews"): "/prisme.v1.EventService/SendPageView",
        ("GET", "/api/v1/noscript/events/custom/{name}"): "/prisme.v1.EventService/SendCustomEvent",
        (
            "GET",
            "/api/v1/noscript/events/outbound-links",
        ): "/prisme.v1.EventService/SendOutboundLink",
    }


def test_custom_event_route_takes_name_from_path_and_raw_body() -> None:
    route = _route("SendCustomEvent")
    assert route.path_fields == ("name",)
    assert route.body_field == "body"
    assert route.request_type is pb.SendCustomEventRequest


def test_header_bindings_are_read_from_field_options() -> None:
    assert set(_route("SendPageView").headers) == {
        HeaderBinding(("context", "origin"), ("Origin",)),
        HeaderBinding(("context", "page_url"), ("X-Prisme-Referrer", "Referer"), ("referrer",)),
        HeaderBinding(
            ("context", "document_referrer"),
            ("X-Prisme-Document-Referrer",),
            ("document-referrer",),
        ),
        HeaderBinding(("context", "user_agent"), ("User-Agent",)),
        HeaderBinding(("event_id",), ("X-Prisme-Event-Id",)),
        HeaderBinding(("context", "ch_ua_platform"), ("Sec-CH-UA-Platform",)),
        HeaderBinding(("context", "ch_ua_model"), ("Sec-CH-UA-Model",)),
        HeaderBinding(("status",), ("X-Prisme-Status",), ("status",)),
        HeaderBinding(("visitor_id",), ("X-Prisme-Visitor-Id",), ("visitor-id",)),
    }


def test_app_router_serves_exactly_the_annotated_routes() -> None:
    app = create_app(facade_config("127.0.0.1:1"))
    registered = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    annotated = {(route.http_method, route.path) for route in routes_of()}
    dashboard = {("GET", path) for path in (
        "/dashboard", "/dashboard/dashboard.js", "/dashboard/dashboard.css",
        "/dashboard/vendor/uPlot.iife.min.js", "/dashboard/vendor/uPlot.min.css",
    )}  # fmt: skip
    assert registered == annotated | dashboard | {
        ("GET", "/api/v1/openapi.json"), ("GET", "/static/wa.js"), ("GET", "/static/m.js"),
    }  # fmt: skip


def test_headers_fill_the_client_context() -> None:
    headers = CIMultiDict(
        {
            "origin": "https://example.com",
            "x-prisme-referrer": "https://example.com/a",
            "referer": "https://example.com/ignored",
            "x-prisme-document-referrer": "https://search.example/",
            "user-agent": "UA/1.0",
        }
    )
    message = to_message(_route("SendPageView"), headers, {}, b"", client_ip="192.0.2.1")
    assert message == pb.SendPageViewRequest(
        context=pb.ClientContext(
            origin="https://example.com",
            page_url="https://example.com/a",
            document_referrer="https://search.example/",
            user_agent="UA/1.0",
            client_ip="192.0.2.1",
        )
    )


def test_empty_preferred_header_falls_back_to_the_next() -> None:
    headers = CIMultiDict({"X-Prisme-Referrer": "", "Referer": "https://example.com/b"})
    message = to_message(_route("SendPageView"), headers, {}, b"", client_ip="")
    assert isinstance(message, pb.SendPageViewRequest)
    assert message.context.page_url == "https://example.com/b"


def test_custom_event_carries_name_content_type_and_raw_body() -> None:
    headers = CIMultiDict({"Content-Type": "application/json; charset=utf-8"})
    message = to_message(
        _route("SendCustomEvent"), headers, {"name": "sign up"}, b'{"a": 1}', client_ip=""
    )
    assert isinstance(message, pb.SendCustomEventRequest)
    assert message.name == "sign up"
    assert message.body.content_type == "application/json; charset=utf-8"
    assert message.body.data == b'{"a": 1}'
