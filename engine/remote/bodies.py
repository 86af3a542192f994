"""An answer's body, read with a cap on its decoded size, whatever reads it.

`CappedBody` takes the body a chunk at a time (from aiohttp's stream, httpx's, or the lean
HTTP/1.1 client's parser callbacks) and raises `BodyError` as soon as the decoded bytes pass the
cap: neither an endless body nor a gzip bomb can hold more than the cap in memory. gzip and
deflate are inflated in bounded steps (zlib's `max_length`); any other content-encoding is a
`bad_body` (the client asks for `identity`). `read_capped` is the same over an async iterator.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterable

from engine.remote.classify import BodyError


class _Inflater:
    """gzip or deflate, inflated a bounded step at a time: never more than `room` bytes out of
    one call, however small the input (one 16 KB chunk of a bomb would be 16 MB at once)."""

    def __init__(self, encoding: str) -> None:
        # 47: a zlib or gzip header, detected; deflate is zlib-wrapped or (wrongly, but often)
        # raw, which is tried when the zlib header is missing.
        self._wbits = 47 if encoding in ("gzip", "x-gzip") else zlib.MAX_WBITS
        self._raw_fallback = encoding == "deflate"
        self._zlib = zlib.decompressobj(self._wbits)
        self._started = False

    def feed(self, data: bytes, room: int) -> bytes:
        """At most `room` + 1 bytes decoded from `data` and what earlier calls left over."""
        try:
            out = self._zlib.decompress(data, room + 1)
        except zlib.error:
            if self._raw_fallback and not self._started:
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                self._raw_fallback = False
                return self.feed(data, room)
            raise
        self._started = True
        return out

    @property
    def pending(self) -> bytes:
        return self._zlib.unconsumed_tail


class CappedBody:
    """One body being read: `feed` each chunk as it comes, `result()` at its end."""

    __slots__ = ("_encoding", "_inflater", "_limit", "_parts", "_size")

    def __init__(self, content_encoding: str | None, limit: int) -> None:
        """`BodyError` (`bad_body`) at once for an encoding that cannot be decoded."""
        encoding = (content_encoding or "").strip().lower()
        self._encoding = encoding
        self._inflater: _Inflater | None = None
        if encoding in ("gzip", "x-gzip", "deflate"):
            self._inflater = _Inflater(encoding)
        elif encoding not in ("", "identity"):
            raise BodyError("bad_body", f"content-encoding {encoding[:40]!r} was not asked for")
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        """Take one chunk as it came off the wire; `BodyError` once past the cap decoded, or
        when it does not inflate."""
        limit = self._limit
        inflater = self._inflater
        if inflater is None:
            self._size += len(chunk)
            if self._size > limit:
                raise BodyError("too_large", f"body over {limit:,} bytes")
            self._parts.append(chunk)
            return
        data = chunk
        while data:
            try:
                out = inflater.feed(data, limit - self._size)
            except zlib.error as exc:
                raise BodyError(
                    "bad_body", f"{self._encoding} body does not inflate: {exc}"
                ) from None
            self._size += len(out)
            if self._size > limit:
                raise BodyError("too_large", f"body over {limit:,} bytes once inflated")
            self._parts.append(out)
            data = inflater.pending  # input held back by the step limit

    def result(self) -> bytes:
        """The decoded body so far (the whole of it, once the last chunk was fed)."""
        parts = self._parts
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)


async def read_capped(
    chunks: AsyncIterable[bytes], content_encoding: str | None, limit: int
) -> bytes:
    """The whole body, decoded, or `BodyError` as soon as it passes `limit` bytes decoded.
    The caller bounds the time (the read runs inside the exchange's deadline)."""
    body = CappedBody(content_encoding, limit)
    async for chunk in chunks:
        body.feed(chunk)
    return body.result()
