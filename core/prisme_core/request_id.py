"""Request ids in the core: read from the ``x-request-id`` metadata (the façade sends the HTTP
request's), or made up, kept in a `ContextVar` for the call, and added to every log record of
the call. A caller that sent one gets the call's id back in the response metadata (its own, or
the one that replaced an invalid one). It is not sent to the others, such as the façade's
batched calls: that separate metadata message is a large share of a small call's CPU on each
side (docs/performance.md, "Measured choices").

Must not import aiohttp or pymongo.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import grpc
from prisme_client.request_id import METADATA_KEY, valid_request_id

REQUEST_ID: ContextVar[str | None] = ContextVar("prisme_core_request_id", default=None)


class RequestIdInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        given = metadata.get(METADATA_KEY)
        request_id = valid_request_id(given if isinstance(given, str) else None)
        echo = given is not None
        behavior: Callable[..., Awaitable[Any]] = handler.unary_unary  # async under grpc.aio

        async def with_request_id(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            token = REQUEST_ID.set(request_id or uuid.uuid4().hex)
            try:
                if echo:
                    await context.send_initial_metadata(((METADATA_KEY, REQUEST_ID.get() or ""),))
                return await behavior(request, context)
            finally:
                REQUEST_ID.reset(token)

        return grpc.unary_unary_rpc_method_handler(
            with_request_id,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
