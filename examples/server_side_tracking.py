"""Server-side tracking: a backend records page views and a purchase for its users over gRPC.

    PRISME_GRPC_TOKEN=... python examples/server_side_tracking.py [HOST:PORT]

With the service token the backend is a trusted caller: it passes each end user's IP address
and user agent, so countries, sessions and rate limits are the user's, not the backend's.
Start the service with the same token, e.g. `PRISME_GRPC_TOKEN=... make run`.
"""

from __future__ import annotations

import asyncio
import os
import sys

from prisme_client import PageView, PrismeClient, PrismeError

USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0"
USER_IP = "84.200.69.80"


async def main(target: str) -> None:
    async with PrismeClient(target, token=os.environ.get("PRISME_GRPC_TOKEN")) as client:
        await client.send_pageview(
            page_url="http://localhost/shop",
            origin="http://localhost",
            user_agent=USER_AGENT,
            client_ip=USER_IP,
        )
        await client.send_custom_event(
            "purchase",
            {"amount": 12.5, "currency": "EUR", "items": 2},
            page_url="http://localhost/checkout",
            origin="http://localhost",
            user_agent=USER_AGENT,
            client_ip=USER_IP,
        )
        results = await client.send_events(
            [
                PageView("http://localhost/thanks", "http://localhost", USER_AGENT, USER_IP,
                         document_referrer="http://localhost/checkout"),
                PageView("http://localhost/x", "https://unregistered.example", USER_AGENT, USER_IP),
            ]
        )  # fmt: skip
        for result in results:
            print("stored" if result is None else f"refused: {result.reason}")


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"))
    except PrismeError as error:
        sys.exit(f"prisme: {error}")
