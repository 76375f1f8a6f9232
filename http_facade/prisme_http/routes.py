"""The façade's route table, read from the proto's `google.api.http` annotations.

Each `Route` says which HTTP method and path reach which RPC (additional bindings included),
which request fields come from the path, which field takes the raw body, which fields come
from which headers (the `prisme.v1.http_header` option) and, on GET routes, from which query
parameters (`prisme.v1.query_param`, `prisme.v1.query_prefix`, `prisme.v1.query_rest`),
whether the call carries the caller's own ``Authorization`` (`prisme.v1.caller_authorization`),
and how the route answers:
JSON, or for the noscript routes (under `NOSCRIPT_PREFIX`) a transparent GIF, or a redirect
to the ``url`` parameter. Adding an annotated RPC adds a route: no code changes here.

Must not import prisme_core.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from google.api import http_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from prisme.v1 import event_service_pb2, options_pb2, stats_service_pb2

HTTP_BODY = "google.api.HttpBody"
CLIENT_CONTEXT = "prisme.v1.ClientContext"
_PATH_VARIABLE = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_FIXED_VARIABLE = re.compile(r"\{([a-z_][a-z0-9_]*)=([A-Za-z0-9_-]+)\}")
"""``{metric=visitors}``: the segment ``visitors``, which fills ``metric``."""
SERVICES = (event_service_pb2, stats_service_pb2)
NOSCRIPT_PREFIX = "/api/v1/noscript/"
REDIRECT_PARAM = "url"
"""The query parameter a noscript route that redirects sends the visitor to."""


class Answer(StrEnum):
    JSON = "json"
    PIXEL = "pixel"
    """A transparent GIF, for ``<img>`` in ``<noscript>``."""
    REDIRECT = "redirect"
    """302 to the `REDIRECT_PARAM` query parameter."""


@dataclass(frozen=True, slots=True)
class HeaderBinding:
    """Request field at ``path`` (field names from the root) filled from ``headers``, or
    first, on GET routes, from the ``query`` parameters."""

    path: tuple[str, ...]
    headers: tuple[str, ...]
    query: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class QueryMap:
    """A ``map<string, string>`` field at ``path`` filled from ``<prefix><key>`` parameters."""

    path: tuple[str, ...]
    prefix: str


@dataclass(frozen=True, slots=True)
class Route:
    http_method: str
    path: str
    rpc_path: str
    request_type: type[Message]
    response_type: type[Message]
    path_fields: tuple[str, ...]
    body_field: str | None
    body_is_text: bool
    """The body fills a string field (a URL, say) rather than a `google.api.HttpBody`."""
    headers: tuple[HeaderBinding, ...]
    context_fields: tuple[str, ...]
    query_maps: tuple[QueryMap, ...] = ()
    answer: Answer = Answer.JSON
    fixed_fields: tuple[tuple[str, str], ...] = ()
    """Fields the path's literal variables fill: (``metric``, ``visitors``)."""
    query_rest: tuple[str, ...] | None = None
    """The ``map<string, string>`` field that takes the query parameters no field is bound
    to (for the service to refuse)."""
    caller_authorization: bool = False
    """The call carries the request's own ``Authorization``, not the façade's token."""
    query_names: frozenset[str] = frozenset()
    """The query parameters some field is bound to."""

    @property
    def reads_query(self) -> bool:
        return self.http_method == "GET"

    @property
    def noscript(self) -> bool:
        """Reached by an ``<img>`` or a link, which send no ``Origin``."""
        return self.answer is not Answer.JSON


def routes_of() -> tuple[Route, ...]:
    """The routes of every annotated method of the ``prisme.v1`` services."""
    return tuple(
        _route(method, binding)
        for module in SERVICES
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
        if (rule := _http_rule(method)) is not None
        for binding in (rule, *rule.additional_bindings)
    )


def _http_rule(method: MethodDescriptor) -> http_pb2.HttpRule | None:
    for field, value in method.GetOptions().ListFields():
        if field.full_name == "google.api.http" and isinstance(value, http_pb2.HttpRule):
            return value
    return None


def _route(method: MethodDescriptor, rule: http_pb2.HttpRule) -> Route:
    kind = rule.WhichOneof("pattern")
    if kind not in {"get", "put", "post", "delete", "patch"}:
        raise ValueError(f"{method.full_name}: unsupported google.api.http pattern {kind}")
    template = str(getattr(rule, kind))
    request = method.input_type
    fixed_fields = tuple(_FIXED_VARIABLE.findall(template))
    path = _FIXED_VARIABLE.sub(lambda match: match[2], template)
    path_fields = tuple(_PATH_VARIABLE.findall(path))
    for name in (*path_fields, *(name for name, _ in fixed_fields)):
        _field(request, name, FieldDescriptor.TYPE_STRING)
    body_is_text = False
    if rule.body:
        given = request.fields_by_name.get(rule.body)
        body_is_text = given is not None and given.type == FieldDescriptor.TYPE_STRING
        if not body_is_text:
            _field(request, rule.body, FieldDescriptor.TYPE_MESSAGE, HTTP_BODY)
    headers = tuple(_header_bindings(request, ()))
    return Route(
        fixed_fields=fixed_fields,
        query_rest=_query_rest(request, ()),
        query_names=frozenset(name for binding in headers for name in binding.query),
        caller_authorization=method.GetOptions().Extensions[options_pb2.caller_authorization],
        answer=_answer(path, headers),
        query_maps=tuple(_query_maps(request, ())),
        http_method=kind.upper(),
        path=path,
        rpc_path=f"/{method.containing_service.full_name}/{method.name}",
        request_type=GetMessageClass(request),
        response_type=GetMessageClass(method.output_type),
        path_fields=path_fields,
        body_field=rule.body or None,
        body_is_text=body_is_text,
        headers=headers,
        context_fields=tuple(
            field.name
            for field in request.fields
            if field.message_type is not None and field.message_type.full_name == CLIENT_CONTEXT
        ),
    )


def _field(
    message: Descriptor, name: str, kind: int, message_name: str | None = None
) -> FieldDescriptor:
    field = message.fields_by_name.get(name)
    if field is None or field.type != kind:
        raise ValueError(f"{message.full_name} has no suitable field {name!r}")
    if message_name and (
        field.message_type is None or field.message_type.full_name != message_name
    ):
        raise ValueError(f"{message.full_name}.{name} must be a {message_name}")
    return field


def _answer(path: str, headers: tuple[HeaderBinding, ...]) -> Answer:
    if not path.startswith(NOSCRIPT_PREFIX):
        return Answer.JSON
    if any(REDIRECT_PARAM in binding.query for binding in headers):
        return Answer.REDIRECT
    return Answer.PIXEL


def _header_bindings(message: Descriptor, prefix: tuple[str, ...]) -> list[HeaderBinding]:
    bindings: list[HeaderBinding] = []
    for field in message.fields:
        path = (*prefix, field.name)
        options = field.GetOptions()
        headers = tuple(options.Extensions[options_pb2.http_header])
        query = tuple(options.Extensions[options_pb2.query_param])
        if headers or query:
            bindings.append(HeaderBinding(path=path, headers=headers, query=query))
        elif (nested := _nested(field)) is not None:
            bindings.extend(_header_bindings(nested, path))
    return bindings


def _query_maps(message: Descriptor, prefix: tuple[str, ...]) -> list[QueryMap]:
    maps: list[QueryMap] = []
    for field in message.fields:
        path = (*prefix, field.name)
        if query_prefix := field.GetOptions().Extensions[options_pb2.query_prefix]:
            maps.append(QueryMap(path=path, prefix=query_prefix))
        elif (nested := _nested(field)) is not None:
            maps.extend(_query_maps(nested, path))
    return maps


def _query_rest(message: Descriptor, prefix: tuple[str, ...]) -> tuple[str, ...] | None:
    for field in message.fields:
        path = (*prefix, field.name)
        if field.GetOptions().Extensions[options_pb2.query_rest]:
            return path
        if (nested := _nested(field)) is not None and (found := _query_rest(nested, path)):
            return found
    return None


def _nested(field: FieldDescriptor) -> Descriptor | None:
    """The message of a field to look into: not a body, a map or a list."""
    kind = field.message_type
    if kind is None or kind.full_name == HTTP_BODY or kind.GetOptions().map_entry:
        return None
    return None if field.is_repeated else kind
