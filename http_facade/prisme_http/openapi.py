"""The façade's OpenAPI 3.1 document, generated from the same route table as the routes.

Each annotated RPC becomes an operation: its path parameters, the headers its request fields
are bound to, its raw body, its success answer and the JSON error body; plus the CORS
preflight the façade answers on every events path. Served at ``GET /api/v1/openapi.json``.

Must not import prisme_core.
"""

from __future__ import annotations

from typing import Any

from prisme_http.routes import Answer, Route, routes_of

ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "stable reason, e.g. `origin not registered`"},
        "message": {"type": "string"},
    },
}
ERRORS = {
    "400": "invalid or refused event (origin, URLs, bot, body, session)",
    "404": "unknown path",
    "405": "wrong method (`Allow: POST`)",
    "413": "body over `PRISME_MAX_BODY_BYTES` (decoded)",
    "415": "a `Content-Encoding` other than gzip, deflate, br, zstd",
    "429": "rate limited (`Retry-After`)",
    "431": "request headers too large",
    "503": "the core or the store is unavailable",
}

BATCH_KINDS = ("pageview", "custom", "outbound_link", "file_download", "engagement")
TIME = {"type": "string", "format": "date-time", "description": "RFC 3339, with an offset"}
BATCH = {
    "type": "object",
    "required": ["events"],
    "additionalProperties": False,
    "properties": {
        "sent_at": TIME | {"description": "the client's clock when it sent the batch"},
        "events": {
            "type": "array",
            "maxItems": 1000,
            "items": {
                "type": "object",
                "required": ["kind"],
                "additionalProperties": False,
                "properties": {
                    "kind": {"enum": list(BATCH_KINDS)},
                    "page_url": {"type": "string", "description": "else the request's"},
                    "document_referrer": {"type": "string", "description": "page views"},
                    "status": {"type": ["integer", "string"], "description": "page views"},
                    "visitor_id": {"type": "string", "description": "page views"},
                    "name": {"type": "string", "description": "custom events"},
                    "properties": {"type": "object", "description": "custom events"},
                    "link": {"type": "string", "description": "outbound-link clicks"},
                    "url": {"type": "string", "description": "file downloads"},
                    "pageview_id": {
                        "type": "string",
                        "format": "uuid",
                        "description": "engagement: the page view's event id",
                    },
                    "engaged_ms": {"type": "integer", "minimum": 0, "maximum": 1_800_000},
                    "scroll_depth": {"type": "integer", "minimum": 0, "maximum": 100},
                    "event_id": {"type": "string", "format": "uuid"},
                    "timestamp": TIME | {"description": "when it happened, client clock"},
                },
            },
        },
    },
}
RESULTS = {
    "type": "object",
    "required": ["results"],
    "properties": {
        "results": {
            "type": "array",
            "description": "one per event, in order",
            "items": {
                "type": "object",
                "required": ["status"],
                "properties": {
                    "status": {"type": "integer", "description": "200: stored"},
                    "error": {"type": "string"},
                    "message": {"type": "string"},
                    "retry_after": {"type": "integer", "description": "429: seconds"},
                },
            },
        }
    },
}
BATCH_RPC = "/prisme.v1.EventService/SendEvents"

ANSWERS = {
    Answer.JSON: "stored (events) or healthy",
    Answer.PIXEL: "stored: a transparent GIF (`image/gif`)",
    Answer.REDIRECT: "not used: the answer is 302 to `url`",
}


def _parameter(name: str, where: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": {"type": "string"},
        "description": description,
    }


def _parameters(route: Route) -> list[dict[str, Any]]:
    """Path segments, headers, and on GET routes the query parameters, each field's."""
    parameters = [_parameter(name, "path", f"fills `{name}`") for name in route.path_fields]
    for binding in route.headers:
        fills = f"fills `{'.'.join(binding.path)}`"
        parameters += [_parameter(header, "header", fills) for header in binding.headers]
        if route.reads_query:
            parameters += [_parameter(name, "query", fills) for name in binding.query]
    if route.reads_query:
        parameters += [
            _parameter(f"{mapping.prefix}{{key}}", "query", "a property: a JSON value")
            for mapping in route.query_maps
        ]
    return parameters


def _operation(route: Route) -> dict[str, Any]:
    parameters = _parameters(route)
    if route.http_method == "POST":
        encoding = "gzip, deflate, br or zstd (or several, in the order applied)"
        parameters.append(_parameter("Content-Encoding", "header", encoding))
    responses: dict[str, Any] = {"200": {"description": ANSWERS[route.answer]}}
    if route.answer is Answer.REDIRECT:
        responses["302"] = {"description": "to `url`, whether or not the click was recorded"}
    responses |= {
        status: {
            "description": text,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for status, text in ERRORS.items()
    }
    operation: dict[str, Any] = {
        "operationId": _operation_id(route),
        "parameters": parameters,
        "responses": responses,
    }
    if route.caller_authorization:
        operation["security"] = [{"statsToken": []}]
        responses["200"] = {"description": "the figures: `{from, to, keys, values, ...}`"}
        responses["401"] = {"description": "no valid stats token (`WWW-Authenticate: Bearer`)"}
    if route.body_is_text:
        text = {"type": "string", "description": "an absolute URL, or PING"}
        operation["requestBody"] = {"required": True, "content": {"text/plain": {"schema": text}}}
    elif route.rpc_path == BATCH_RPC:
        batch = {"schema": {"$ref": "#/components/schemas/Batch"}}
        operation["requestBody"] = {"required": True, "content": {"application/json": batch}}
        results = {"schema": {"$ref": "#/components/schemas/Results"}}
        responses["200"] = {"description": "one result per event", "content": {
            "application/json": results}}  # fmt: skip
    elif route.body_field is not None:
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    return operation


def _operation_id(route: Route) -> str:
    """Unique per route: the RPC's name, the route's metric, and ``Noscript`` for those."""
    name = route.rpc_path.rsplit("/", 1)[1]
    for _, value in route.fixed_fields:
        name += "".join(part.title() for part in value.split("-"))
    return name + ("Noscript" if route.noscript else "")


def openapi_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes_of():
        paths.setdefault(route.path, {})[route.http_method.lower()] = _operation(route)
        if route.path.startswith("/api/v1/events/"):
            paths[route.path]["options"] = {
                "operationId": f"Preflight{route.rpc_path.rsplit('/', 1)[1]}",
                "responses": {"204": {"description": "CORS preflight answered"}},
            }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Prisme events API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR, "Batch": BATCH, "Results": RESULTS},
            "securitySchemes": {"statsToken": {"type": "http", "scheme": "bearer"}},
        },
    }
