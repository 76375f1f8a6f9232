"""Request bodies sent with ``Content-Encoding``: ``gzip``, ``deflate``, ``br`` and ``zstd``
(and ``identity``, and several in the order they were applied), decoded by the libraries made
for them and held to the body limit decoded.

The body as sent is read first, within the limit (no encoding makes a body smaller than
its encoded form, give or take a header). Each decoder then produces at most one byte more
than the limit: a body that decodes to more is refused there (`TooLarge`), having held no
more than the limit in memory and spent no more time than decoding the limit takes, however
far it would have inflated. An encoding not named here is `UnsupportedEncoding` (415).

Must not import prisme_core.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from typing import Final

import brotli
import zstandard

Decoder = Callable[[bytes, int], bytes]
"""Decodes a body, returning at most the given number of bytes (more means too large)."""


class UnsupportedEncoding(ValueError):
    def __init__(self, name: str) -> None:
        shown = name[:40]
        super().__init__(f"Content-Encoding {shown!r} is not one of {', '.join(DECODERS)}")


class InvalidEncoding(ValueError):
    """A body that is not what its ``Content-Encoding`` says."""


class TooLarge(ValueError):
    pass


def _zlib(wbits: int) -> Decoder:
    def decode(data: bytes, most: int) -> bytes:
        decoder = zlib.decompressobj(wbits=wbits)
        parts = [decoder.decompress(data, most)]
        size = len(parts[0])
        while decoder.eof and decoder.unused_data and size < most:  # gzip members
            rest, decoder = decoder.unused_data, zlib.decompressobj(wbits=wbits)
            parts.append(decoder.decompress(rest, most - size))
            size += len(parts[-1])
        if not decoder.eof and size < most:
            raise zlib.error("the body ends before its compressed stream")
        return b"".join(parts)

    return decode


def _deflate(data: bytes, most: int) -> bytes:
    """``deflate`` is the zlib format; some senders send raw deflate, also accepted."""
    raw = len(data) < 2 or (data[0] & 0x0F) != 8 or ((data[0] << 8) | data[1]) % 31 != 0
    return _zlib(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)(data, most)


def _brotli(data: bytes, most: int) -> bytes:
    decoder = brotli.Decompressor()
    out: bytes = decoder.process(data, output_buffer_limit=most)
    if len(out) < most and not decoder.is_finished():
        raise brotli.error("the body ends before its compressed stream")
    return out


def _zstd(data: bytes, most: int) -> bytes:
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
    with reader:
        out: bytes = reader.read(most)
    rest = data if len(out) < most else b""  # it all fits: check that every frame ends
    while rest:
        frame = zstandard.ZstdDecompressor().decompressobj()
        frame.decompress(rest)
        if not frame.eof:
            raise zstandard.ZstdError("the body ends before its compressed stream")
        rest = frame.unused_data
    return out


DECODERS: Final[dict[str, Decoder]] = {
    "gzip": _zlib(16 + zlib.MAX_WBITS),
    "x-gzip": _zlib(16 + zlib.MAX_WBITS),
    "deflate": _deflate,
    "br": _brotli,
    "zstd": _zstd,
}
ERRORS: Final = (zlib.error, brotli.error, zstandard.ZstdError)


def decoders(content_encoding: str) -> list[Decoder]:
    """The decoders of the encodings ``content_encoding`` lists, in the order applied;
    raises `UnsupportedEncoding`."""
    found = []
    for name in (n.strip().lower() for n in content_encoding.split(",")):
        if name and name != "identity":
            if (decoder := DECODERS.get(name)) is None:
                raise UnsupportedEncoding(name)
            found.append(decoder)
    return found


def decoded(body: bytes, content_encoding: str, limit: int) -> bytes:
    """``body`` decoded from every encoding ``content_encoding`` lists, the last applied
    undone first; raises `TooLarge` past ``limit`` bytes, `UnsupportedEncoding`, or
    `InvalidEncoding`."""
    for decode in reversed(decoders(content_encoding)):
        try:
            body = decode(body, limit + 1)
        except ERRORS as exc:
            raise InvalidEncoding(f"the body is not valid {content_encoding[:40]}: {exc}") from exc
        if len(body) > limit:
            raise TooLarge(f"the decoded body is over {limit} bytes")
    return body
