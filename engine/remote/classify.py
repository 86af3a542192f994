"""Naming what went wrong with a remote request: one short class per failure, plus a message.

Classes: connect_refused, connect_timeout, timeout (read, write, pool or the overall deadline),
tls, reset (connection reset, protocol error, closed mid-body), http_<code> for 4xx/5xx,
bad_body, too_large, other. Run summaries count failures by these names. This module names
transport failures (exceptions); an answer's status and body are judged with the same names by
`engine.remote.outcome.judge`, for load runs and remote predictions alike.

Both transports are understood: httpx's own (httpcore) and the aiohttp one. The aiohttp transport
maps aiohttp's errors onto httpx's coarsely (a refused connection arrives as `ConnectTimeout`), so
the original exception, kept as `__cause__`, is what gets judged.
"""

from __future__ import annotations

import errno
import ssl

import aiohttp
import httpx

ERROR_CLASSES = (
    "connect_refused",
    "connect_timeout",
    "timeout",
    "tls",
    "reset",
    "bad_body",
    "too_large",
    "other",
)
MAX_MESSAGE = 200
# Transport classes that mean "nothing answered" (a load run's preflight: "unreachable").
UNREACHABLE = frozenset({"connect_refused", "connect_timeout", "tls", "other"})

_RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})


class BodyError(Exception):
    """A body that was not read whole (`engine.remote.bodies.CappedBody`): `kind` is its
    class, `too_large` or `bad_body`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class ConnectTimeoutError(TimeoutError):
    """No connection within the target's connect timeout (`engine.remote.http1`)."""


class ProtocolError(Exception):
    """An answer that is not HTTP/1.1, or a connection closed in the middle of one
    (`engine.remote.http1`)."""


def http_class(status: int) -> str:
    return f"http_{status}"


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes, outermost first (bounded: chains can loop)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(seen) < 8 and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _one(exc: BaseException) -> str | None:
    """The class of one link in the chain, or None when this link says nothing definite."""
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError | ssl.CertificateError):
        return "tls"
    if isinstance(exc, ConnectionRefusedError):
        return "connect_refused"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return "connect_refused"
        if isinstance(exc.os_error, ssl.SSLError):
            return "tls"
        return None  # e.g. DNS failure: let an inner link (or `other`) decide
    if isinstance(exc, aiohttp.ConnectionTimeoutError | ConnectTimeoutError):
        return "connect_timeout"
    if isinstance(exc, ProtocolError):
        return "reset"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return "reset"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "reset"
    if isinstance(exc, OSError) and exc.errno in _RESET_ERRNOS:
        return "reset"
    if isinstance(exc, TimeoutError):  # also aiohttp's SocketTimeoutError, asyncio's deadline
        return "timeout"
    return None


def _httpx(exc: BaseException) -> str | None:
    """httpx's own errors, for when no deeper cause was more precise."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect_timeout"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        text = str(exc).lower()
        if "refused" in text:
            return "connect_refused"
        if "ssl" in text or "certificate" in text:
            return "tls"
        return None
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return "reset"
    return None


def classify(exc: BaseException) -> str:
    """The class of a transport-level failure (statuses and bodies: `engine.remote.outcome`);
    a body that could not be read whole carries its own class (`too_large`, `bad_body`)."""
    if isinstance(exc, BodyError):
        return exc.kind
    chain = _chain(exc)
    # aiohttp-transport exceptions first: httpx's mapped wrapper can be wrong about the kind.
    for link in reversed(chain):
        found = _one(link)
        if found is not None:
            return found
    for link in chain:
        found = _httpx(link)
        if found is not None:
            return found
    return "other"


def describe(exc: BaseException) -> str:
    """A short, single-line message: the type and text of the deepest cause that has any text
    (the aiohttp transport's wrapper type can mislead, its cause does not)."""
    chosen = exc
    for link in _chain(exc):
        if str(link).strip():
            chosen = link
    text = " ".join(str(chosen).split())
    line = f"{type(chosen).__name__}: {text}" if text else type(chosen).__name__
    return line[:MAX_MESSAGE]
