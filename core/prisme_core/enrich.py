"""Enrichment: what a new session records, one ``put_*`` step per attribute group.

Each step only adds: the session id, the client the user agent describes, the country of the
client IP, the referrer domain, the UTM parameters of the landing page. Every page view of the
session repeats them.

Must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime

from prisme_core.admission import Admitted
from prisme_core.model import SessionAttributes
from prisme_core.ports import GeoLocator
from prisme_core.urls import Url, Utm, utm_of


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


def put_country(geo: GeoLocator, admitted: Admitted) -> str:
    return geo.country(admitted.context.client_ip)


def put_referrer_domain(referrer: Url | None) -> str:
    return referrer.host if referrer is not None else "direct"


def put_utm(page: Url) -> Utm:
    return utm_of(page.query)


def session_attributes(admitted: Admitted, visitor_id: str, geo: GeoLocator) -> SessionAttributes:
    """The attributes of the session ``admitted`` begins, step by step."""
    client, utm = admitted.client, put_utm(admitted.page)
    return SessionAttributes(
        session_uuid=put_session_id(admitted),
        domain=admitted.page.host,
        visitor_id=visitor_id,
        operating_system=client.operating_system,
        browser_family=client.browser_family,
        device=client.device,
        referrer_domain=put_referrer_domain(admitted.referrer),
        country_code=put_country(geo, admitted),
        utm_source=utm.source,
        utm_medium=utm.medium,
        utm_campaign=utm.campaign,
        utm_term=utm.term,
        utm_content=utm.content,
    )
