"""Enrichment throughput: user agent + country per event, on a realistic stream.

    .venv/bin/python bench/enrichment.py [GEOIP_DB]

The stream repeats user agents and addresses the way real traffic does (Zipf-like weights
over ~600 distinct browser agents, 5 % one-off agents such as in-app browsers, ~20,000
client addresses), so the per-agent and per-address caches see realistic hit rates. It also
reports the cold rate, where every agent is new.
"""

from __future__ import annotations

import random
import sys
import time

from prisme_core.adapters.maxmind import MaxMindDbLocator
from prisme_core.adapters.useragents import UserAgentsParser

TEMPLATES = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{s}.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.0.0",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS {s}_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{s}.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPad; CPU OS {s}_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{s}.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/{s}.0 Chrome/{v}.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS {s}_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/{v}.0.6778.73 Mobile/15E148 Safari/604.1",
]  # fmt: skip
EVENTS = 200_000


def population(rng: random.Random) -> list[str]:
    agents = {
        template.format(v=v, s=s)
        for template in TEMPLATES
        for v in range(100, 135)
        for s in range(14, 19)
    }
    return rng.sample(sorted(agents), len(agents))


def stream(rng: random.Random) -> list[tuple[str, str]]:
    agents = population(rng)
    agent_weights = [1 / (rank + 1) for rank in range(len(agents))]
    addresses = [
        f"{rng.choice([8, 23, 31, 46, 62, 81, 84, 91, 104, 151, 185, 212])}"
        f".{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        for _ in range(20_000)
    ]
    address_weights = [1 / (rank + 1) ** 0.6 for rank in range(len(addresses))]
    chosen_agents = rng.choices(agents, agent_weights, k=EVENTS)
    chosen_addresses = rng.choices(addresses, address_weights, k=EVENTS)
    for i in range(0, EVENTS, 20):  # 5 % one-off agents (in-app browsers and the like)
        chosen_agents[i] += f" App/{i}"
    return list(zip(chosen_agents, chosen_addresses, strict=True))


def main() -> None:
    geo_path = sys.argv[1] if len(sys.argv) > 1 else ".prisme-data/geoip/geo-whois-asn-country.mmdb"
    rng = random.Random(7)
    events = stream(rng)
    agents, geo = UserAgentsParser(), MaxMindDbLocator(geo_path)
    started = time.process_time()
    for agent, address in events:
        agents.parse(agent)
        geo.country(address)
    elapsed = time.process_time() - started
    distinct = len({agent for agent, _ in events})
    print(f"realistic: {EVENTS / elapsed:,.0f} events/s (UA + country), {distinct} distinct agents")
    cold = UserAgentsParser(cache_size=1)
    unique = [f"{agent} Cold/{i}" for i, (agent, _) in enumerate(events[:20_000])]
    started = time.process_time()
    for agent in unique:
        cold.parse(agent)
    print(f"cold: {len(unique) / (time.process_time() - started):,.0f} user-agent parses/s")


if __name__ == "__main__":
    main()
