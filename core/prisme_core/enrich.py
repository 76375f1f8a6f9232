"""Enrichment: what a new session records, one ``put_*`` step per attribute group.

Each step only adds: the session id, the client the user agent describes (with the client
hints' system and model in their place), the country of the client IP, the referrer domain,
the UTM parameters of the landing page. Every page view of the
session repeats them.

Must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from prisme_core.admission import Admitted
from prisme_core.model import SessionAttributes
from prisme_core.ports import GeoLocator, UserAgentParser
from prisme_core.urls import Url, Utm, utm_of


@dataclass(frozen=True, slots=True)
class Enrichers:
    """The adapters enrichment asks: countries, and what a user agent says."""

    geo: GeoLocator
    agents: UserAgentParser


def uuid7(at: datetime) -> uuid.UUID:
    """A UUIDv7 (RFC 9562) whose embedded time is ``at``, to the millisecond."""
    milliseconds = int(at.timestamp() * 1000) & ((1 << 48) - 1)
    value = milliseconds << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | 0x7 << 76
    value = (value & ~(0x3 << 62)) | 0x2 << 62
    return uuid.UUID(int=value)


def put_session_id(admitted: Admitted) -> uuid.UUID:
    """Time-ordered, so sessions sort by their start."""
    return uuid7(admitted.now)


PLATFORMS: Final = {
    "Android": "Android",
    "Chrome OS": "Chrome OS",
    "Chromium OS": "Chrome OS",
    "Linux": "Linux",
    "Windows": "Windows",
    "iOS": "iOS",
    "macOS": "Mac OS X",
}
"""`Sec-CH-UA-Platform` values, named as the user-agent parser names them: one name per
system, whichever the browser says it in."""
_SF_STRING = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\\"])*)"')
_SF_ESCAPE = re.compile(r"\\(.)")


def sf_string(text: str) -> str | None:
    """The value of an RFC 8941 structured-field string (``"Pixel 7"``), or None if ``text``
    is not one."""
    match = _SF_STRING.fullmatch(text.strip(" "))
    return None if match is None else _SF_ESCAPE.sub(r"\1", match.group(1))


def put_client(admitted: Admitted) -> tuple[str, str, str]:
    """Operating system, browser and device: the user agent's, with the client hints' system
    and (when not empty) model in their place."""
    client, context = admitted.client, admitted.context
    system = PLATFORMS.get(sf_string(context.ch_ua_platform) or "", client.operating_system)
    model = sf_string(context.ch_ua_model) or client.device
    return system, client.browser_family, model


def put_country(geo: GeoLocator, admitted: Admitted) -> str:
    return geo.country(admitted.context.client_ip)


def put_referrer_domain(referrer: Url | None) -> str:
    return referrer.host if referrer is not None else "direct"


def put_utm(page: Url) -> Utm:
    return utm_of(page.query)


def session_attributes(admitted: Admitted, visitor_id: str, geo: GeoLocator) -> SessionAttributes:
    """The attributes of the session ``admitted`` begins, step by step."""
    (system, browser, device), utm = put_client(admitted), put_utm(admitted.page)
    return SessionAttributes(
        session_uuid=put_session_id(admitted),
        domain=admitted.page.host,
        visitor_id=visitor_id,
        operating_system=system,
        browser_family=browser,
        device=device,
        referrer_domain=put_referrer_domain(admitted.referrer),
        country_code=put_country(geo, admitted),
        utm_source=utm.source,
        utm_medium=utm.medium,
        utm_campaign=utm.campaign,
        utm_term=utm.term,
        utm_content=utm.content,
    )
