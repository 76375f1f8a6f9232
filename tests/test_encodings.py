"""Request bodies in every Content-Encoding the façade takes, decoded within the body limit:
what decodes, what is refused, and bombs refused quickly without their memory."""

from __future__ import annotations

import time
import tracemalloc
import zlib

import pytest
from brotli import Compressor
from prisme_http.encodings import InvalidEncoding, TooLarge, UnsupportedEncoding, decoded
from zstandard import ZstdCompressor

from tests.transports import compress

LIMIT = 64 * 1024
BODY = b'{"events": [' + b'{"kind": "pageview"},' * 500 + b'{"kind": "pageview"}]}'
GIGABYTE = 1 << 30


@pytest.mark.parametrize(
    "encoding", ["gzip", "deflate", "br", "zstd", "identity", "gzip, br", "zstd, gzip", "GZIP"]
)
def test_each_encoding_decodes(encoding: str) -> None:
    assert decoded(compress(BODY, encoding.lower()), encoding, LIMIT) == BODY


def test_raw_deflate_and_several_gzip_members_decode_too() -> None:
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert decoded(raw.compress(BODY) + raw.flush(), "deflate", LIMIT) == BODY
    assert decoded(compress(b"ab", "gzip") + compress(b"cd", "gzip"), "gzip", LIMIT) == b"abcd"


def test_the_limit_is_on_the_decoded_body() -> None:
    assert decoded(compress(b"x" * LIMIT, "gzip"), "gzip", LIMIT) == b"x" * LIMIT
    with pytest.raises(TooLarge):
        decoded(compress(b"x" * (LIMIT + 1), "gzip"), "gzip", LIMIT)


@pytest.mark.parametrize("encoding", ["compress", "gzip, lzma", "br;q=1"])
def test_an_unknown_encoding_is_refused(encoding: str) -> None:
    with pytest.raises(UnsupportedEncoding):
        decoded(BODY, encoding, LIMIT)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
def test_a_body_not_in_its_encoding_is_refused(encoding: str) -> None:
    with pytest.raises(InvalidEncoding):
        decoded(b"not compressed at all, surely", encoding, LIMIT)
    truncated = compress(BODY, encoding)[:-8]
    with pytest.raises(InvalidEncoding):
        decoded(truncated, encoding, LIMIT)


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    """A gigabyte of zeros in under 2 KB (gzip twice, brotli) or 33 KB (zstd)."""
    megabyte = bytes(1 << 20)
    gzipped = compress(megabyte, "gzip") * 1024  # one member per megabyte
    brotli = Compressor(quality=5, lgwin=24)
    zstd = ZstdCompressor().compressobj()
    return {
        "gzip, gzip": compress(gzipped, "gzip"),
        "br": b"".join(brotli.process(megabyte) for _ in range(1024)) + brotli.finish(),
        "zstd": b"".join(zstd.compress(megabyte) for _ in range(1024)) + zstd.flush(),
    }


@pytest.mark.parametrize("encoding", ["gzip, gzip", "br", "zstd"])
def test_a_bomb_is_refused_quickly_holding_no_more_than_the_limit(
    bombs: dict[str, bytes], encoding: str
) -> None:
    bomb = bombs[encoding]
    assert len(bomb) < 40 * 1024
    tracemalloc.start()
    started = time.process_time()
    try:
        with pytest.raises(TooLarge):
            decoded(bomb, encoding, LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.process_time() - started < 0.5  # decoding 1 GB takes seconds
    assert peak < 4 * LIMIT
