"""How the noscript routes answer: a transparent GIF for pixels, a redirect for links.

A pixel (``<noscript><img src=…>``) gets the 35-byte transparent GIF as ``image/gif`` once the
event is stored; a refusal gets its usual status and JSON reason. A noscript outbound link
redirects (302) to its ``url`` whatever became of the click (no session, a bot, the store
down...): a visitor is never stranded on an error page. Only an absolute http(s) ``url`` is
followed (no open redirect: anything else is 400), only once the origin is registered, and not
past the rate limit (429). Every noscript answer is kept out of caches, so each view counts.

Must not import prisme_core.
"""

from __future__ import annotations

import base64
from typing import Final

from aiohttp import web
from prisme_client import PrismeError

from prisme_http.errors import json_error
from prisme_http.routes import REDIRECT_PARAM, Answer, Route

GIF: Final = base64.b64decode("R0lGODlhAQABAAAAACH5BAEAAAAALAAAAAABAAEAAAIBAAA=")
NO_STORE: Final = "no-store, no-cache, max-age=0, must-revalidate, proxy-revalidate"
NOT_REDIRECTED: Final = frozenset({"ORIGIN_NOT_REGISTERED", "RATE_LIMITED"})
"""Refusals a noscript link answers as such: the first keeps the route from being an open
redirect for any site, the second from being a way around the rate limit."""


def redirect_target(route: Route, request: web.Request) -> str | web.Response | None:
    """For a redirecting route, the absolute http(s) URL to send the visitor to, or the 400
    that refuses the request; None for other routes."""
    if route.answer is not Answer.REDIRECT:
        return None
    target = request.query.get(REDIRECT_PARAM, "")
    scheme, sep, rest = target.partition("://")
    if scheme.lower() not in {"http", "https"} or not sep or not rest.split("/", 1)[0]:
        return json_error(400, "INVALID_LINK", f"{REDIRECT_PARAM} must be an absolute http(s) URL")
    return target


def answer(route: Route, error: PrismeError | None, target: str | None) -> web.Response | None:
    """The noscript answer to an event whose outcome is ``error`` (None when stored); None
    when the usual answer stands (a JSON route, or a refusal that is not redirected)."""
    if route.answer is Answer.REDIRECT and target is not None:
        if error is None or error.reason not in NOT_REDIRECTED:
            return web.Response(status=302, headers={"Location": target})
        return None
    if route.answer is Answer.PIXEL and error is None:
        return web.Response(body=GIF, content_type="image/gif")
    return None
