"""`FacadeRunner`: aiohttp's `AppRunner`, with request-parser errors answered like every other
error: a short JSON body, and 431 for oversized request or header lines.

aiohttp answers its own parser errors with a fixed plain-text 400, before any middleware runs;
its request handler's `handle_error` is the one place to change that.

Must not import prisme_core.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

MAX_LINE_BYTES = 8192
"""Longest request line or header line; longer ones get 431."""


class _FacadeRequestHandler(RequestHandler):
    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, LineTooLong) or (
            isinstance(exc, HttpProcessingError) and "too many headers" in str(exc.message).lower()
        ):
            status, error = 431, "request header fields too large"
        elif isinstance(exc, HttpProcessingError):
            status, error = 400, "malformed request"
        else:
            status, error = 500, "internal error"
        self.log_exception("cannot handle request: %s", error, exc_info=exc)
        response = web.Response(
            status=status,
            text=json.dumps({"error": error, "message": str(exc or error)[:200]}),
            content_type="application/json",
        )
        response.force_close()
        return response


class _FacadeServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _FacadeRequestHandler(self, loop=self._loop, **self._kwargs)


class FacadeRunner(web.AppRunner):
    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        super().__init__(app, max_line_size=MAX_LINE_BYTES, max_field_size=MAX_LINE_BYTES, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _FacadeServer  # same state, our request handler
        return server
