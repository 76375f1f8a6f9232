"""The façade's error body: ``{"error": "<reason in words>", "message": "<detail>"}``, and
``"parameter"`` when the refusal names a query parameter; and the same for each event of a
batch, with its HTTP ``"status"``.

Must not import prisme_core.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import google.rpc.status_pb2 as status_pb2
from aiohttp import web
from prisme_client import error_from_status

from prisme_http.status import error_text, http_status


def json_error(
    status: int,
    reason: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    parameter: str | None = None,
) -> web.Response:
    """The error body; with ``parameter``, the query parameter refused (the stats')."""
    body = {"error": error_text(reason), "message": message}
    if parameter is not None:
        body["parameter"] = parameter
    return web.json_response(body, status=status, headers=headers)


def body_too_large(limit: int) -> web.Response:
    return json_error(413, "BODY_TOO_LARGE", f"body is over {limit} bytes")


def event_result(status: status_pb2.Status) -> dict[str, Any]:
    """One event's answer in a batch: ``{"status": 200}``, or its refusal as a single event
    would have had it, ``{"status": 400, "error": ..., "message": ...}`` (and for a 429, its
    ``"retry_after"`` in seconds)."""
    error = error_from_status(status)
    if error is None:
        return {"status": 200}
    result = {"status": http_status(error.code, error.reason), "error": error_text(error.reason),
              "message": error.message}  # fmt: skip
    if error.retry_after:
        result["retry_after"] = round(error.retry_after)
    return result
