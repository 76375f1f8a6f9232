"""URL parsing, path normalisation and UTM extraction (reference §2.1, §2.7)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prisme_core.urls import InvalidUrl, Url, normalize_path, parse_url, query_params, utm_of


@pytest.mark.parametrize(
    ("text", "host", "path"),
    [
        pytest.param("http://h", "h", "/", id="empty-path"),
        pytest.param("http://h///another/../another/foo?q#f", "h", "/another/foo", id="pv-14"),
        pytest.param("http://h/foo/", "h", "/foo", id="trailing-slash"),
        pytest.param("HTTP://Foo.Example.com:8080/x", "foo.example.com:8080", "/x", id="case-port"),
        pytest.param("http://h?x=1", "h", "/", id="query-no-path"),
        pytest.param("http://h/a%20b+c", "h", "/a b+c", id="percent-decoded-plus-kept"),
        pytest.param("http://h/A/B", "h", "/A/B", id="case-kept"),
        pytest.param("http://h/../../x", "h", "/x", id="dotdot-clamped"),
        pytest.param("http://h/a/./b/.", "h", "/a/b", id="dot-segments"),
        pytest.param("http://h/a/b/..", "h", "/a", id="trailing-dotdot"),
        pytest.param("http://user:pw@h.com/x", "h.com", "/x", id="userinfo-dropped"),
        pytest.param("//example.com/x", "example.com", "/x", id="no-scheme"),
        pytest.param("ftp://h/x", "h", "/x", id="any-scheme"),
        pytest.param("http://[::1]:8080/x", "[::1]:8080", "/x", id="ipv6"),
        pytest.param("http://h#frag", "h", "/", id="fragment"),
        pytest.param("http://caf%C3%A9.fr/", "café.fr", "/", id="escaped-unicode-host"),
    ],
)
def test_valid_urls(text: str, host: str, path: str) -> None:
    url = parse_url(text)
    assert (url.host, url.path) == (host, path)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("not an url", id="words"),
        pytest.param("/foo", id="relative"),
        pytest.param("example.com/foo", id="no-slashes"),
        pytest.param("about:blank", id="about"),
        pytest.param("http://", id="empty-host"),
        pytest.param("https:///x", id="empty-host-path"),
        pytest.param("http://h:80a/", id="bad-port"),
        pytest.param("http://h o/", id="space-in-host"),
        pytest.param("http://h%41/", id="escaped-ascii-host"),
        pytest.param("http://h/\x01", id="control-char"),
        pytest.param("http://h/\x7f", id="del"),
        pytest.param("http://[zz]/", id="bad-ipv6"),
        pytest.param("", id="empty"),
    ],
)
def test_invalid_urls(text: str) -> None:
    with pytest.raises(InvalidUrl):
        parse_url(text)


def test_query_is_between_question_mark_and_fragment() -> None:
    assert parse_url("http://h/p?a=1&b=2#x?c=3") == Url(host="h", path="/p", query="a=1&b=2")


def test_query_params_first_occurrence_wins_and_plus_is_space() -> None:
    assert query_params("a=1&b=x+y&a=2&c=%C3%A9&&d") == {"a": "1", "b": "x y", "c": "é", "d": ""}


@pytest.mark.parametrize(
    ("query", "source"),
    [
        pytest.param("utm_source=news", "news", id="utm-source"),
        pytest.param("ref=advertising1", "advertising1", id="pv-16-ref-fallback"),
        pytest.param("utm_source=&ref=r", "r", id="empty-source-falls-back"),
        pytest.param("utm_source=a&ref=r", "a", id="source-wins"),
        pytest.param("", "", id="none"),
    ],
)
def test_utm_source(query: str, source: str) -> None:
    assert utm_of(query).source == source


def test_all_utm_fields_and_others_ignored() -> None:
    utm = utm_of("utm_medium=m&utm_campaign=c&utm_term=t&utm_content=x&utm_id=ignored")
    assert (utm.medium, utm.campaign, utm.term, utm.content) == ("m", "c", "t", "x")


@given(st.text())
def test_parse_url_only_ever_raises_invalid_url(text: str) -> None:
    try:
        url = parse_url(text)
    except InvalidUrl:
        return
    assert url.host
    assert url.host == url.host.lower()
    assert url.path.startswith("/")


@given(st.text(alphabet=st.characters(exclude_characters="%")))
def test_normalized_paths_are_canonical(path: str) -> None:
    normalized = normalize_path(path)
    assert normalized.startswith("/")
    assert "//" not in normalized
    assert normalized == "/" or not normalized.endswith("/")
    assert not {".", ".."} & set(normalized.split("/"))
    assert normalize_path(normalized) == normalized


hosts = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z]{2,6}){0,2}", fullmatch=True)


@given(
    st.sampled_from(["http", "https"]),
    hosts,
    st.one_of(st.none(), st.integers(1, 65535)),
    st.lists(st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True), max_size=4),
)
def test_well_formed_urls_round_trip(
    scheme: str, host: str, port: int | None, segments: list[str]
) -> None:
    authority = host.upper() if port is None else f"{host.upper()}:{port}"
    url = parse_url(f"{scheme}://{authority}/{'/'.join(segments)}")
    assert url.host == (host if port is None else f"{host}:{port}")
    assert url.path == "/" + "/".join(segments)
