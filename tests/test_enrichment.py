"""User agents (browser, OS, device, bots) and countries (reference §2.5, §2.6)."""

from __future__ import annotations

from pathlib import Path

import crawleruseragents
import pytest
from prisme_core.adapters.maxmind import MaxMindDbLocator, NoGeoLocator
from prisme_core.adapters.useragents import CrawlerPatterns, UserAgentsParser
from prisme_core.identity import keyed_hash
from prisme_core.model import ClientInfo

from tests.geodb import write_country_db
from tests.support import FIREFOX

CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.3"
)
SAFARI_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/16.6 Safari/605.1.1"
)
EDGE = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0."
)
CHROME_ANDROID = (
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Mobile Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604."
)
HEADLESS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/120.0.0.0 Safari/537.36"
)


@pytest.fixture(scope="module")
def agents() -> UserAgentsParser:
    return UserAgentsParser()


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        pytest.param(CHROME_WINDOWS, ("Chrome", "Windows", "Other"), id="chrome-windows"),
        pytest.param(SAFARI_MAC, ("Safari", "Mac OS X", "Mac"), id="safari-mac"),
        pytest.param(EDGE, ("Edge", "Windows", "Other"), id="edge"),
        pytest.param(CHROME_ANDROID, ("Chrome Mobile", "Android", "K"), id="chrome-android"),
        pytest.param(IPHONE, ("Mobile Safari", "iOS", "iPhone"), id="iphone"),
    ],
)
def test_browsers_are_parsed(
    agents: UserAgentsParser, user_agent: str, expected: tuple[str, str, str]
) -> None:
    info = agents.parse(user_agent)
    assert (info.browser_family, info.operating_system, info.device) == expected
    assert info.is_bot is False


@pytest.mark.parametrize(
    "user_agent",
    [
        pytest.param(
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            id="googlebot",
        ),
        pytest.param("AdsBot-Google (+http://www.google.com/adsbot.html)", id="adsbot"),
        pytest.param("Mozilla/5.0 (compatible; bingbot/2.0)", id="bingbot"),
        pytest.param("curl/8.5.0", id="curl"),
        pytest.param("python-requests/2.32.3", id="python-requests"),
        pytest.param("Wget/1.21.4", id="wget"),
        pytest.param("Go-http-client/1.1", id="go"),
        pytest.param(HEADLESS, id="headless-chrome"),
        pytest.param("", id="empty"),
        pytest.param("-", id="dash"),
    ],
)
def test_bots_and_tools_are_flagged(agents: UserAgentsParser, user_agent: str) -> None:
    assert agents.parse(user_agent).is_bot is True


def test_results_are_cached(agents: UserAgentsParser) -> None:
    first = agents.parse(CHROME_WINDOWS + " cache-probe")
    assert agents.parse(CHROME_WINDOWS + " cache-probe") is first


def test_huge_user_agents_are_parsed_by_their_prefix(agents: UserAgentsParser) -> None:
    info = agents.parse(CHROME_WINDOWS + " x" * 100_000)
    assert info == ClientInfo("Chrome", "Windows", "Other", is_bot=False)


@pytest.fixture(scope="module", params=["geoip2-shape", "flat-shape"])
def locator(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> MaxMindDbLocator:
    flat = request.param == "flat-shape"
    path = write_country_db(tmp_path_factory.mktemp("geo") / "country.mmdb", flat=flat)
    return MaxMindDbLocator(str(path))


@pytest.mark.parametrize(
    ("ip", "country"),
    [
        pytest.param("8.8.8.8", "US", id="v4-us"),
        pytest.param("2001:4860:4860::8888", "US", id="v6-us"),
        pytest.param("84.200.69.80", "DE", id="v4-de"),
        pytest.param("2001:1608:10:25::1c04:b12f", "DE", id="v6-de"),
        pytest.param("::ffff:8.8.8.8", "US", id="ipv4-mapped"),
        pytest.param("81.2.69.142", "GB", id="gb"),
        pytest.param("127.0.0.1", "XX", id="loopback"),
        pytest.param("10.1.1.1", "XX", id="private-10"),
        pytest.param("172.16.1.10", "XX", id="private-172-mapped-in-db"),
        pytest.param("192.168.1.253", "XX", id="private-192-mapped-in-db"),
        pytest.param("1.1.1.1", "XX", id="not-in-db"),
        pytest.param("224.0.0.1", "XX", id="multicast"),
        pytest.param("", "XX", id="empty"),
        pytest.param("not_an_ip", "XX", id="garbage"),
        pytest.param(None, "XX", id="unknown"),
    ],
)
def test_countries(locator: MaxMindDbLocator, ip: str | None, country: str) -> None:
    assert locator.country(ip) == country


def test_no_database_means_unknown_countries() -> None:
    assert NoGeoLocator().country("8.8.8.8") == "XX"


def test_missing_database_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        MaxMindDbLocator(str(tmp_path / "absent.mmdb"))


def test_crawler_set_agrees_with_the_package_on_its_own_examples() -> None:
    examples = [
        instance
        for entry in crawleruseragents.CRAWLER_USER_AGENTS_DATA
        for instance in entry.get("instances", [])
    ]
    browsers = [CHROME_WINDOWS, SAFARI_MAC, EDGE, CHROME_ANDROID, IPHONE, FIREFOX]
    patterns = CrawlerPatterns()
    assert len(examples) > 1000
    for user_agent in examples + browsers:
        assert patterns.match(user_agent) == crawleruseragents.is_crawler(user_agent), user_agent


@pytest.mark.parametrize(
    ("user_agent", "ip", "host", "expected"),
    [
        ("Mozilla/5.0 (X11; Linux x86_64)", "203.0.113.7", "example.com", "774F49624D518D73"),
        ("agent \ud800", "2001:db8::1", "exämple.com", "6AAF0D079CB4657C"),
    ],
)
def test_ids_stay_what_they_were(user_agent: str, ip: str, host: str, expected: str) -> None:
    """Device and visitor ids are stored: the same key and device give the same hash in
    every version."""
    assert keyed_hash(bytes(range(32)), user_agent, ip, host) == expected
