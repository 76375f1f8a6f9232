"""`FacadeRunner`: aiohttp's `AppRunner`, with request-parser errors answered like every other
error (a short JSON body, and 431 for oversized request or header lines), and slow clients
closed: a request head must arrive within the read timeout of its first byte, and an idle
keep-alive connection is closed after the idle timeout (both from the app's `FacadeConfig`;
the handler bounds reading the body).

aiohttp answers its own parser errors with a fixed plain-text 400, before any middleware runs;
its request handler's `handle_error` is the one place to change that. It has no timeout for a
request head that arrives byte by byte: `data_received` arms one.

Must not import prisme_core.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from prisme_http.app import CONFIG

logger = logging.getLogger(__name__)

LINGERING_TIME = 10.0
MAX_LINE_BYTES = 8192
"""Longest request line or header line; longer ones get 431."""


class _FacadeRequestHandler(RequestHandler):
    def __init__(self, *args: Any, read_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timeout = read_timeout
        self._head_timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        idle = self._waiter is not None  # waiting for a request: these bytes begin its head
        super().data_received(data)
        if self._messages or self._force_close:
            self._stop_head_timer()  # a whole head arrived: the handler bounds the body
        elif idle and data and self._head_timer is None:
            self._head_timer = self._loop.call_later(self._read_timeout, self._head_too_slow)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self._messages:
            logger.info("closing a connection whose request head took over %gs", self._read_timeout)
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

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
        # What the client sent stays out of the log above debug: the message may quote it.
        logger.info("cannot handle request: %s (%s)", error, type(exc).__name__)
        logger.debug("cannot handle request", exc_info=exc)
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
        config = app[CONFIG]
        super().__init__(
            app,
            max_line_size=MAX_LINE_BYTES,
            max_field_size=MAX_LINE_BYTES,
            keepalive_timeout=config.idle_timeout,
            read_timeout=config.read_timeout,
            # A body the handler left unread is drained for at most this long before closing.
            lingering_time=min(LINGERING_TIME, config.read_timeout),
            # Bodies are decoded by the handler, within the body limit (prisme_http.encodings).
            auto_decompress=False,
            **kwargs,
        )

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _FacadeServer  # same state, our request handler
        return server
