"""`PrismeError`: a refused or failed call, with its gRPC code and stable reason.

The service puts a `google.rpc.Status` in the trailers of every refusal; `error_from_rpc`
reads its `ErrorInfo.reason` (e.g. ``ORIGIN_NOT_REGISTERED``) and `RetryInfo`. Calls that
never reached the service (no connection, deadline) carry no reason: ``reason`` is then the
gRPC code's name, e.g. ``UNAVAILABLE``.
"""

from __future__ import annotations

import google.rpc.error_details_pb2 as error_details_pb2
import google.rpc.status_pb2 as status_pb2
import grpc

STATUS_DETAILS_KEY = "grpc-status-details-bin"


class PrismeError(Exception):
    def __init__(
        self,
        code: grpc.StatusCode,
        reason: str,
        message: str,
        retry_after: float | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(f"{code.name} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        self.field = field
        """The request field (or stats query parameter) refused, when one is."""


def error_from_rpc(error: grpc.aio.AioRpcError) -> PrismeError:
    """The `PrismeError` described by a failed call's status and trailers."""
    for key, value in error.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            found = error_from_status(status_pb2.Status.FromString(value))
            if found is not None:
                return found
    return PrismeError(error.code(), error.code().name, error.details() or "")


def error_from_status(status: status_pb2.Status) -> PrismeError | None:
    """The `PrismeError` a `google.rpc.Status` describes; None for OK."""
    if status.code == grpc.StatusCode.OK.value[0]:
        return None
    code = _CODES.get(status.code, grpc.StatusCode.UNKNOWN)
    reason, retry_after, field = code.name, None, None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        retry = error_details_pb2.RetryInfo()
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reason = info.reason
        elif detail.Unpack(retry):
            retry_after = retry.retry_delay.ToTimedelta().total_seconds()
        elif detail.Unpack(bad) and bad.field_violations:
            field = bad.field_violations[0].field
    return PrismeError(code, reason, status.message, retry_after, field)


_CODES = {code.value[0]: code for code in grpc.StatusCode}
