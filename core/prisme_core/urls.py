"""Page and referrer URLs, parsed and normalised the way Prisme does it.

A URL is absolute when it contains ``//`` followed by a non-empty host (any scheme, even none:
``//host/x``). The host is lowercased and keeps its port; userinfo is dropped. The path is
percent-decoded, ``//`` runs collapse, ``.``/``..`` segments resolve (clamped at the root) and
one trailing ``/`` goes, except for ``/`` itself. UTM parameters come from the query with
first-occurrence-wins, ``+`` as space, and ``ref`` as the fallback for ``utm_source``.

Pure functions; must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from urllib.parse import unquote, unquote_plus


class InvalidUrl(ValueError):
    """The text is not an absolute URL with a valid host."""


@dataclass(frozen=True, slots=True)
class Url:
    host: str
    """Lowercased, with its port: ``example.com:8080``."""
    path: str
    """Normalised: ``/``, ``/a/b``; never a trailing ``/`` except the root."""
    query: str
    """Raw text between the first ``?`` and the first ``#``."""


@dataclass(frozen=True, slots=True)
class Utm:
    source: str = ""
    medium: str = ""
    campaign: str = ""
    term: str = ""
    content: str = ""


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HOST_TEXT = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2}|[^\x00-\x7f])*")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_IPV6_LITERAL = re.compile(r"\[[0-9A-Fa-f:.]+\]")
_FIRST_OF = {characters: re.compile(f"[{re.escape(characters)}]") for characters in ("/?#", "?#")}


CACHED_URL_LENGTH = 512
"""Longer URLs are parsed each time: the cache holds at most 8,192 of this length."""


def parse_url(text: str) -> Url:
    """Parses an absolute URL; raises `InvalidUrl` for anything else. Pages repeat, so the last
    few thousand answers for short URLs are kept (`Url` is immutable; refusals are not kept)."""
    if len(text) > CACHED_URL_LENGTH:
        return _parse_url(text)
    return _cached_parse_url(text)


def _parse_url(text: str) -> Url:
    if _CONTROL.search(text):
        raise InvalidUrl("control character in URL")
    scheme, sep, rest = text.partition("//")
    if not sep or "/" in scheme:
        raise InvalidUrl("not an absolute URL")
    authority_end = _first_of(rest, "/?#")
    host = _parse_host(rest[:authority_end])
    remainder = rest[authority_end:]
    path_end = _first_of(remainder, "?#")
    fragment_at = remainder.find("#")
    query = remainder[path_end + 1 : fragment_at if fragment_at >= 0 else None]
    if remainder[path_end : path_end + 1] != "?":
        query = ""
    return Url(host=host, path=normalize_path(remainder[:path_end]), query=query)


_cached_parse_url = functools.lru_cache(maxsize=8192)(_parse_url)


def _first_of(text: str, characters: str) -> int:
    found = _FIRST_OF[characters].search(text)
    return found.start() if found else len(text)


def _parse_host(authority: str) -> str:
    hostport = authority.rpartition("@")[2]
    if hostport.startswith("["):
        name, bracket, port = hostport.partition("]")
        name += bracket
        if not _IPV6_LITERAL.fullmatch(name):
            raise InvalidUrl("invalid IPv6 host")
        if port and not port.startswith(":"):
            raise InvalidUrl("invalid port")
        port = port[1:]
    else:
        name, _, port = hostport.partition(":")
        name = _unescape_host(name)
    if not name:
        raise InvalidUrl("empty host")
    if port and not (port.isascii() and port.isdigit()):
        raise InvalidUrl("invalid port")
    name = name.lower()
    return f"{name}:{port}" if port else name


def _unescape_host(name: str) -> str:
    """RFC 3986 host rules: escaped ASCII is refused (but ``%25``), as are ASCII characters
    outside unreserved and sub-delims; escaped and raw non-ASCII bytes are allowed. Checked by
    regular expressions, not a Python loop over the characters."""
    if not _HOST_TEXT.fullmatch(name):
        if _BAD_ESCAPE.search(name):
            raise InvalidUrl("invalid escape in host")
        raise InvalidUrl("invalid character in host")
    for escape in _ESCAPE.findall(name):
        value = int(escape, 16)
        if value < 0x80 and value != 0x25:
            raise InvalidUrl("escaped ASCII in host")
    return unquote(name, errors="replace")


def parse_link(text: str) -> tuple[Url, str]:
    """A link's URL, and its normalised text: its scheme, the host lowercased with its port,
    the normalised path, then the query and the fragment as given."""
    url = parse_url(text)
    scheme = text.partition("//")[0].lower()
    query = f"?{url.query}" if url.query else ""
    fragment = "#" + text.partition("#")[2] if "#" in text else ""
    return url, f"{scheme}//{url.host}{url.path}{query}{fragment}"


def normalize_path(path: str) -> str:
    segments: list[str] = []
    for segment in unquote(path, errors="replace").split("/"):
        if segment in {"", "."}:
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return "/" + "/".join(segments)


def query_params(query: str) -> dict[str, str]:
    """``a=1&b=2&a=3`` gives ``{"a": "1", "b": "2"}``: the first occurrence wins."""
    params: dict[str, str] = {}
    for pair in query.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        params.setdefault(
            unquote_plus(key, errors="replace"), unquote_plus(value, errors="replace")
        )
    return params


def utm_of(query: str) -> Utm:
    params = query_params(query)
    return Utm(
        source=params.get("utm_source") or params.get("ref", ""),
        medium=params.get("utm_medium", ""),
        campaign=params.get("utm_campaign", ""),
        term=params.get("utm_term", ""),
        content=params.get("utm_content", ""),
    )
