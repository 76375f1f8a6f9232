"""The façade's error body: ``{"error": "<reason in words>", "message": "<detail>"}``, and
``"parameter"`` when the refusal names a query parameter.

Must not import prisme_core.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from prisme_http.status import error_text


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
