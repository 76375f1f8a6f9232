"""The one table from core errors to gRPC statuses, and the rich status built from it.

A refused call carries a `google.rpc.Status` in its trailers with an `ErrorInfo` (domain
`prisme.v1`, the stable reason), a `BadRequest` field violation for invalid input, and a
`RetryInfo` when the caller should come back later.

Imports grpc and the google.rpc messages; must not import aiohttp or pymongo.
"""

from __future__ import annotations

from typing import Final

import google.rpc.error_details_pb2 as error_details_pb2
import google.rpc.status_pb2 as status_pb2
import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message

from prisme_core.errors import (
    CoreError,
    Dropped,
    InvalidInput,
    OriginNotRegistered,
    QueryTimeout,
    RateLimited,
    SessionNotFound,
    StatsTokenRefused,
    StoreUnavailable,
    Unauthenticated,
)

ERROR_DOMAIN: Final = "prisme.v1"

GRPC_CODES: Final[dict[type[CoreError], grpc.StatusCode]] = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    Dropped: grpc.StatusCode.INVALID_ARGUMENT,
    OriginNotRegistered: grpc.StatusCode.PERMISSION_DENIED,
    SessionNotFound: grpc.StatusCode.FAILED_PRECONDITION,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    StatsTokenRefused: grpc.StatusCode.UNAUTHENTICATED,
    RateLimited: grpc.StatusCode.RESOURCE_EXHAUSTED,
    StoreUnavailable: grpc.StatusCode.UNAVAILABLE,
    QueryTimeout: grpc.StatusCode.UNAVAILABLE,
}


def grpc_code(error: CoreError) -> grpc.StatusCode:
    """The gRPC code for ``error``; every `CoreError` subclass is in the table."""
    return GRPC_CODES[type(error)]


def rich_status(error: CoreError) -> status_pb2.Status:
    """The `google.rpc.Status` that describes ``error`` to any gRPC client."""
    code = grpc_code(error)
    status = status_pb2.Status(code=code.value[0], message=error.message)
    details: list[Message] = [error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN)]
    if isinstance(error, InvalidInput):
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=error.field, description=error.message, reason=error.reason
        )
        details.append(error_details_pb2.BadRequest(field_violations=[violation]))
    if isinstance(error, RateLimited):
        delay = duration_pb2.Duration(seconds=error.retry_after)
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return status
